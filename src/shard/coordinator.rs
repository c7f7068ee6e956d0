//! The group coordinator's side of a shard: committed offsets (kept in
//! the internal offsets topic, replayed when its partitions open) and
//! group membership, for the groups whose offsets partition this shard
//! owns and this broker leads. Other shards forward to the owner; other
//! brokers answer `NotCoordinator`.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures::channel::oneshot;

use super::{group_code, Partition, Shard, ShardMsg};
use crate::cluster::metadata::{MetadataError, NewTopic, NodeId, TopicMeta, NO_LEADER};
use crate::group::classic::{self, ClassicGroups, Refusal, Step};
use crate::group::membership::{GroupError, Heartbeat, Membership, Subscription};
use crate::group::{
    commit_key, commit_value, offsets_partition, parse_commit, Committed, GroupPositions, OffsetTable, MAX_COMMIT_METADATA_BYTES, OFFSETS_TOPIC,
};
use crate::protocol::{Acks, ErrorCode};
use crate::rt;
use crate::storage::StorageError;

/// The groups a shard coordinates.
#[derive(Default)]
pub(super) struct Groups {
    /// Their committed offsets.
    pub(super) offsets: RefCell<OffsetTable>,
    /// Their members and assignments.
    pub(super) membership: RefCell<Membership>,
    /// Their Kafka clients' groups (the classic protocol, `group::classic`).
    pub(super) classic: RefCell<ClassicGroups>,
    /// Notified whenever a classic group moves: joins and syncs waiting
    /// for their answers look again.
    pub(super) classic_moved: rt::Event,
}

/// A Kafka group request, for its coordinator shard.
pub enum ClassicCall {
    Join(classic::Join),
    Sync { member_id: String, generation: i32, assignments: Vec<(String, Vec<u8>)> },
    Heartbeat { member_id: String, generation: i32 },
    Leave(Vec<String>),
    Describe,
}

/// Its answer.
pub enum ClassicAnswer {
    Joined(Result<classic::Joined, Refusal>),
    Synced(Result<Vec<u8>, Refusal>),
    Heartbeat(Result<(), Refusal>),
    Left(Vec<Result<(), Refusal>>),
    Described(Option<classic::Description>),
}

/// Longest a JoinGroup or SyncGroup waits for its answer past the
/// rebalance timeout the members gave.
const CLASSIC_WAIT_MARGIN: Duration = Duration::from_secs(5);

/// What a group's coordinator shard is asked.
pub enum GroupMsg {
    CommitOffsets { group: String, member: Option<(String, i32)>, offsets: Vec<(String, u32, Committed)>, reply: oneshot::Sender<Vec<ErrorCode>> },
    GroupHeartbeat { group: String, member_id: Option<String>, sub: Subscription, leave: bool, reply: oneshot::Sender<Result<Heartbeat, GroupError>> },
    FetchOffsets { group: String, partitions: Vec<(String, u32)>, reply: oneshot::Sender<Vec<(ErrorCode, Option<Committed>)>> },
    GroupOffsets { group: String, reply: oneshot::Sender<Result<GroupPositions, ErrorCode>> },
    Classic { group: String, call: ClassicCall, reply: oneshot::Sender<ClassicAnswer> },
    ListClassic { reply: oneshot::Sender<Vec<(String, String, classic::State)>> },
}

impl Shard {
    pub(super) async fn serve_group(&self, msg: GroupMsg) {
        match msg {
            GroupMsg::CommitOffsets { group, member, offsets, reply } => {
                let _ = reply.send(self.commit_offsets(group, member, offsets).await);
            }
            GroupMsg::GroupHeartbeat { group, member_id, sub, leave, reply } => {
                let _ = reply.send(self.group_heartbeat(group, member_id, sub, leave).await);
            }
            GroupMsg::FetchOffsets { group, partitions, reply } => {
                let _ = reply.send(self.fetch_offsets(group, partitions).await);
            }
            GroupMsg::GroupOffsets { group, reply } => {
                let _ = reply.send(self.group_offsets(group).await);
            }
            GroupMsg::Classic { group, call, reply } => {
                let _ = reply.send(self.classic_local(group, call).await);
            }
            GroupMsg::ListClassic { reply } => {
                let _ = reply.send(self.groups.classic.borrow().list());
            }
        }
    }

    /// Rebuilds the committed offsets of this shard's groups from its
    /// partitions of the offsets topic.
    pub(super) async fn replay_offsets(&self, which: &[u32]) -> Result<(), StorageError> {
        let parts: Vec<Rc<Partition>> = which.iter().filter_map(|&p| self.partition(OFFSETS_TOPIC, p)).collect();
        for p in parts {
            let mut next = p.log().log_start_offset();
            loop {
                let out = p.log().read(next, 1 << 20).await?;
                if out.chunks.is_empty() {
                    break;
                }
                for c in &out.chunks {
                    for b in crate::record::batches(c) {
                        let Ok((start, info)) = b else { break };
                        if let Ok(it) = crate::record::RecordIter::new(&c[start..]) {
                            for r in it.flatten() {
                                if let Some((g, t, part, o)) = r.key.zip(r.value).and_then(|(k, v)| parse_commit(k, v)) {
                                    self.groups.offsets.borrow_mut().apply(g, t, part, o);
                                }
                            }
                        }
                        next = info.next_offset();
                    }
                }
            }
        }
        if !self.groups.offsets.borrow().is_empty() {
            tracing::info!(shard = self.id, committed = self.groups.offsets.borrow().len(), "recovered committed offsets");
        }
        Ok(())
    }

    /// Creates the internal offsets topic if it is missing: one partition
    /// per shard of the live brokers.
    pub(super) async fn ensure_offsets_topic(&self) -> Result<(), MetadataError> {
        if self.meta.state.borrow().topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        let partitions = self.meta.state.borrow().live_brokers().map(|b| u32::from(b.shards)).sum::<u32>().max(1);
        let t = NewTopic { name: OFFSETS_TOPIC.into(), partitions, replication_factor: 1, configs: Default::default() };
        match self.create_topics(vec![t]).await.pop() {
            Some(Err(MetadataError::TopicExists(_))) | Some(Ok(())) | None => Ok(()),
            Some(Err(e)) => Err(e),
        }
    }

    /// The offsets partition of `group` and its shard, if this broker
    /// coordinates the group (leads that partition).
    fn coordinator(&self, group: &str) -> Result<(u32, u16), ErrorCode> {
        let n = self.meta.state.borrow().topics.get(OFFSETS_TOPIC).map(TopicMeta::partitions).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let p = offsets_partition(group, n);
        match self.route(OFFSETS_TOPIC, p) {
            Ok(s) => Ok((p, s)),
            Err((ErrorCode::NotLeader, _)) => Err(ErrorCode::NotCoordinator),
            Err(_) => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// The broker that coordinates `group`, creating the offsets topic on
    /// first use: (node id, host, port), or why there is none yet.
    /// `external`: answer with the coordinator's external address.
    pub async fn find_coordinator(&self, group: &str, external: bool) -> Result<(NodeId, String, u16), (ErrorCode, String)> {
        if let Err(e) = self.ensure_offsets_topic().await {
            return Err((ErrorCode::CoordinatorNotAvailable, e.to_string()));
        }
        let md = self.meta.state.borrow();
        let t = md.topics.get(OFFSETS_TOPIC).ok_or((ErrorCode::CoordinatorNotAvailable, "the offsets topic is being created".to_string()))?;
        let leader = t.leader(offsets_partition(group, t.partitions())).unwrap_or(NO_LEADER);
        match md.brokers.get(&leader) {
            Some(b) if !b.fenced => {
                let (host, port) = b.address_for(external);
                Ok((b.id, host.to_string(), port))
            }
            _ => Err((ErrorCode::CoordinatorNotAvailable, format!("the coordinator of group '{group}' is not available (its broker is down)"))),
        }
    }

    /// Commits a group's offsets durably; one error code per offset.
    pub async fn commit_offsets(&self, group: String, member: Option<(String, i32)>, offsets: Vec<(String, u32, Committed)>) -> Vec<ErrorCode> {
        // A client that skipped FindCoordinator still gets its group.
        let _ = self.ensure_offsets_topic().await;
        let n = offsets.len();
        let (partition, owner) = match self.coordinator(&group) {
            Ok(c) => c,
            Err(code) => return vec![code; n],
        };
        if owner != self.id {
            let (reply, rx) = oneshot::channel();
            return self
                .ask(owner, ShardMsg::Group(GroupMsg::CommitOffsets { group, member, offsets, reply }), rx)
                .await
                .unwrap_or_else(|| vec![ErrorCode::CoordinatorNotAvailable; n]);
        }
        let (member_id, generation) = member.as_ref().map_or((None, -1), |(m, g)| (Some(m.as_str()), *g));
        if self.groups.classic.borrow().has_members(&group) {
            if let Err(r) = self.groups.classic.borrow().check_commit(&group, member_id.unwrap_or(""), generation) {
                return vec![refusal_code(&r); n];
            }
        } else if let Err(e) = self.groups.membership.borrow().check_commit(&group, member_id, generation) {
            return vec![group_code(&e); n];
        }
        let codes: Vec<ErrorCode> = offsets
            .iter()
            .map(|(t, p, o)| match self.meta.state.borrow().topics.get(t).is_some_and(|t| *p < t.partitions()) {
                false => ErrorCode::UnknownTopicOrPartition,
                true if o.offset < 0 => ErrorCode::InvalidRequest,
                true if o.metadata.as_ref().is_some_and(|m| m.len() > MAX_COMMIT_METADATA_BYTES) => ErrorCode::OffsetMetadataTooLarge,
                true => ErrorCode::None,
            })
            .collect();
        let mut b = crate::record::BatchBuilder::new(64 + 48 * n);
        for ((t, p, o), code) in offsets.iter().zip(&codes) {
            if *code == ErrorCode::None {
                b.push(crate::time::now_ms(), Some(&commit_key(&group, t, *p)), Some(&commit_value(o)), &[]);
            }
        }
        if b.is_empty() {
            return codes;
        }
        let batch = b.finish();
        let info = crate::record::validate(&batch).expect("a batch this shard built is valid");
        let r = self.produce_local(OFFSETS_TOPIC, partition, BytesMut::from(&batch[..]), vec![info], Acks::All, Duration::from_secs(30)).await;
        if r.error != ErrorCode::None {
            return codes.into_iter().map(|c| if c == ErrorCode::None { r.error } else { c }).collect();
        }
        let mut table = self.groups.offsets.borrow_mut();
        for ((t, p, o), code) in offsets.into_iter().zip(&codes) {
            if *code == ErrorCode::None {
                table.apply(group.clone(), t, p, o);
            }
        }
        codes
    }

    /// Joins, renews or leaves a group on its coordinator.
    pub async fn group_heartbeat(&self, group: String, member_id: Option<String>, sub: Subscription, leave: bool) -> Result<Heartbeat, GroupError> {
        // A client that skipped FindCoordinator still gets its group.
        let _ = self.ensure_offsets_topic().await;
        let (_, owner) = match self.coordinator(&group) {
            Ok(c) => c,
            Err(ErrorCode::NotCoordinator) => return Err(GroupError::NotCoordinator),
            Err(_) => return Err(GroupError::Unavailable),
        };
        if owner != self.id {
            let (reply, rx) = oneshot::channel();
            return self
                .ask(owner, ShardMsg::Group(GroupMsg::GroupHeartbeat { group, member_id, sub, leave, reply }), rx)
                .await
                .unwrap_or(Err(GroupError::Unavailable));
        }
        if self.groups.classic.borrow().has_members(&group) {
            return Err(GroupError::InconsistentProtocol);
        }
        let md = self.meta.state.borrow();
        let partitions = |t: &str| md.topics.get(t).map(|t| t.partitions());
        let mut m = self.groups.membership.borrow_mut();
        if leave {
            let id = member_id.unwrap_or_default();
            m.leave(&group, &id, &partitions)?;
            return Ok(Heartbeat { member_id: id, generation: -1, assignment: Vec::new() });
        }
        m.heartbeat(&group, member_id.as_deref(), &sub, crate::time::now_ms(), &partitions)
    }

    /// Removes group members whose session ran out, now and then.
    pub async fn group_expiry_loop(self: Rc<Self>) {
        while !self.is_shutting_down() {
            rt::timeout(Duration::from_millis(500), self.shutdown.listen()).await;
            let md = self.meta.state.borrow();
            let partitions = |t: &str| md.topics.get(t).map(|t| t.partitions());
            self.groups.membership.borrow_mut().expire(crate::time::now_ms(), &partitions);
            drop(md);
            if self.groups.classic.borrow_mut().tick(crate::time::now_ms()) {
                self.groups.classic_moved.notify();
            }
        }
    }

    /// A group's committed positions; `None` where it has none.
    pub async fn fetch_offsets(&self, group: String, partitions: Vec<(String, u32)>) -> Vec<(ErrorCode, Option<Committed>)> {
        // A client that skipped FindCoordinator still gets its group.
        let _ = self.ensure_offsets_topic().await;
        let n = partitions.len();
        let (_, owner) = match self.coordinator(&group) {
            Ok(c) => c,
            Err(code) => return vec![(code, None); n],
        };
        if owner != self.id {
            let (reply, rx) = oneshot::channel();
            return self
                .ask(owner, ShardMsg::Group(GroupMsg::FetchOffsets { group, partitions, reply }), rx)
                .await
                .unwrap_or_else(|| vec![(ErrorCode::CoordinatorNotAvailable, None); n]);
        }
        let table = self.groups.offsets.borrow();
        partitions.iter().map(|(t, p)| (ErrorCode::None, table.get(&group, t, *p).cloned())).collect()
    }

    /// A Kafka group request, run by the group's coordinator shard.
    pub async fn classic_group(&self, group: String, call: ClassicCall) -> Result<ClassicAnswer, ErrorCode> {
        let _ = self.ensure_offsets_topic().await;
        let (_, owner) = self.coordinator(&group)?;
        if owner != self.id {
            let (reply, rx) = oneshot::channel();
            return self.ask(owner, ShardMsg::Group(GroupMsg::Classic { group, call, reply }), rx).await.ok_or(ErrorCode::CoordinatorNotAvailable);
        }
        Ok(self.classic_local(group, call).await)
    }

    /// The Kafka groups every shard of this broker coordinates.
    pub async fn list_classic_groups(&self) -> Vec<(String, String, classic::State)> {
        let mut out = self.groups.classic.borrow().list();
        for s in (0..self.nr_shards()).filter(|&s| s != self.id) {
            let (reply, rx) = oneshot::channel();
            if let Some(l) = self.ask(s, ShardMsg::Group(GroupMsg::ListClassic { reply }), rx).await {
                out.extend(l);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    async fn classic_local(&self, group: String, call: ClassicCall) -> ClassicAnswer {
        let now = crate::time::now_ms();
        match call {
            ClassicCall::Join(j) => {
                if self.groups.membership.borrow().has_members(&group) {
                    return ClassicAnswer::Joined(Err(Refusal::InconsistentGroupProtocol));
                }
                let wait = Duration::from_millis(u64::try_from(j.rebalance_timeout_ms).unwrap_or(0)) + CLASSIC_WAIT_MARGIN;
                let step = self.groups.classic.borrow_mut().join(&group, j, now);
                self.groups.classic_moved.notify();
                match step {
                    Step::Done(r) => ClassicAnswer::Joined(r),
                    Step::Wait(id) => ClassicAnswer::Joined(self.classic_wait(wait, || self.groups.classic.borrow_mut().take_join(&group, &id)).await),
                }
            }
            ClassicCall::Sync { member_id, generation, assignments } => {
                let step = self.groups.classic.borrow_mut().sync(&group, &member_id, generation, assignments, now);
                self.groups.classic_moved.notify();
                match step {
                    Step::Done(r) => ClassicAnswer::Synced(r),
                    Step::Wait(id) => {
                        let wait = Duration::from_millis(classic::MAX_SESSION_TIMEOUT_MS as u64);
                        ClassicAnswer::Synced(self.classic_wait(wait, || self.groups.classic.borrow_mut().take_sync(&group, &id)).await)
                    }
                }
            }
            ClassicCall::Heartbeat { member_id, generation } => {
                ClassicAnswer::Heartbeat(self.groups.classic.borrow_mut().heartbeat(&group, &member_id, generation, now))
            }
            ClassicCall::Leave(members) => {
                let r = self.groups.classic.borrow_mut().leave(&group, &members, now);
                self.groups.classic_moved.notify();
                ClassicAnswer::Left(r)
            }
            ClassicCall::Describe => ClassicAnswer::Described(self.groups.classic.borrow().describe(&group)),
        }
    }

    /// Waits until `take` gives an answer (a later join, sync, leave or
    /// expiry made it), or `longest` passes: then the member is told the
    /// group is rebalancing, and joins again.
    async fn classic_wait<T>(&self, longest: Duration, mut take: impl FnMut() -> Option<Result<T, Refusal>>) -> Result<T, Refusal> {
        let until = std::time::Instant::now() + longest;
        loop {
            if let Some(a) = take() {
                return a;
            }
            if std::time::Instant::now() >= until || self.is_shutting_down() {
                return Err(Refusal::RebalanceInProgress);
            }
            rt::timeout(Duration::from_millis(500), self.groups.classic_moved.listen()).await;
        }
    }

    /// Every position a group committed, by topic and partition.
    pub async fn group_offsets(&self, group: String) -> Result<GroupPositions, ErrorCode> {
        let _ = self.ensure_offsets_topic().await;
        let (_, owner) = self.coordinator(&group)?;
        if owner != self.id {
            let (reply, rx) = oneshot::channel();
            return self.ask(owner, ShardMsg::Group(GroupMsg::GroupOffsets { group, reply }), rx).await.unwrap_or(Err(ErrorCode::CoordinatorNotAvailable));
        }
        Ok(self.groups.offsets.borrow().of_group(&group))
    }
}

/// The native error code of a classic group's refusal (for the commit
/// path, which answers with native codes).
pub fn refusal_code(r: &Refusal) -> ErrorCode {
    match r {
        Refusal::UnknownMemberId => ErrorCode::UnknownMemberId,
        Refusal::IllegalGeneration => ErrorCode::IllegalGeneration,
        Refusal::RebalanceInProgress => ErrorCode::RebalanceInProgress,
        Refusal::InconsistentGroupProtocol => ErrorCode::InconsistentGroupProtocol,
        Refusal::MemberIdRequired(_) | Refusal::GroupMaxSizeReached | Refusal::InvalidSessionTimeout => ErrorCode::InvalidRequest,
    }
}
