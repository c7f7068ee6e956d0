//! One executor per core. A shard owns a set of partitions and is the only
//! code that touches their logs; it reaches partitions of other shards only
//! by sending a [`ShardMsg`] and awaiting the reply.
//!
//! Architecture invariants:
//! - a partition's log is opened, written, read and closed on its owning
//!   shard only (`debug_assert!`ed on every local operation);
//! - no lock and no shared mutable state crosses shards; each shard has its
//!   own copy of the metadata, changed only by the committed commands the
//!   quorum shard (shard 0, `cluster::service`) sends every shard, in log
//!   order, each applied with the same `Metadata::apply`;
//! - a shard serves produce and fetch only for partitions this broker
//!   leads; others get `NotLeader`, and the client follows the metadata.
//! - what crosses shards is `Send` data: batch bytes as `BytesMut`/`Bytes`
//!   (moved, not copied) and plain values.

pub mod mesh;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;

use crate::cluster::metadata::{Command, Metadata, MetadataError, NewTopic, NodeId, Outcome, Proposal, TopicMeta, NO_LEADER};
use crate::cluster::service::Service;
use crate::config::BrokerConfig;
use crate::group::membership::{GroupError, Heartbeat, Membership, Subscription};
use crate::group::{commit_key, offsets_partition, parse_commit, OffsetTable, OFFSETS_TOPIC};
use crate::protocol::ErrorCode;
use crate::record::BatchInfo;
use crate::rt;
use crate::storage::{Chunk, PartitionLog, StorageError};

/// Messages in each direction between a pair of shards.
pub const MESH_CAPACITY: usize = 1024;
/// Partitions a shard opens (recovers) at once at start.
pub const RECOVERY_CONCURRENCY: usize = 32;
/// The shard that runs this broker's voter of the metadata quorum.
pub const QUORUM_SHARD: u16 = 0;
/// How long a describe waits to catch up with the quorum's commit index.
pub const READ_BARRIER_WAIT: Duration = Duration::from_secs(2);

/// Work one shard asks of another.
pub enum ShardMsg {
    Produce {
        topic: String,
        partition: u32,
        data: BytesMut,
        batches: Vec<BatchInfo>,
        acks: i8,
        timeout: Duration,
        reply: oneshot::Sender<ProduceResult>,
    },
    Fetch {
        topic: String,
        partition: u32,
        offset: i64,
        max_bytes: usize,
        wait_until: Option<Instant>,
        reply: oneshot::Sender<FetchResult<Bytes>>,
    },
    ListOffset {
        topic: String,
        partition: u32,
        timestamp: i64,
        reply: oneshot::Sender<OffsetResult>,
    },
    /// To the quorum shard: commit a command, answer with its outcome.
    Propose {
        command: Command,
        reply: oneshot::Sender<Result<Outcome, MetadataError>>,
    },
    /// To the quorum shard: the commit index a linearizable read waits for.
    ReadIndex {
        reply: oneshot::Sender<Option<u64>>,
    },
    /// From the quorum shard: committed commands, in log order.
    /// Answered with the topics whose partitions could not be opened.
    Apply {
        entries: Vec<(u64, Proposal)>,
        reply: oneshot::Sender<Vec<(String, String)>>,
    },
    /// From the quorum shard: a snapshot replaced the whole metadata.
    Install {
        state: Box<Metadata>,
        reply: oneshot::Sender<()>,
    },
    /// From the quorum shard: the quorum's leader changed.
    Controller(Option<NodeId>),
    CommitOffsets {
        group: String,
        member: Option<(String, i32)>,
        offsets: Vec<(String, u32, i64)>,
        reply: oneshot::Sender<Vec<ErrorCode>>,
    },
    GroupHeartbeat {
        group: String,
        member_id: Option<String>,
        sub: Subscription,
        leave: bool,
        reply: oneshot::Sender<Result<Heartbeat, GroupError>>,
    },
    FetchOffsets {
        group: String,
        partitions: Vec<(String, u32)>,
        reply: oneshot::Sender<Vec<(ErrorCode, i64)>>,
    },
}

/// The outcome of a produce to one partition.
#[derive(Debug, Clone)]
pub struct ProduceResult {
    pub error: ErrorCode,
    pub message: Option<String>,
    pub base_offset: i64,
    pub log_start_offset: i64,
}

impl ProduceResult {
    pub fn err(error: ErrorCode, message: impl Into<String>) -> Self {
        ProduceResult { error, message: Some(message.into()), base_offset: -1, log_start_offset: -1 }
    }
}

/// The outcome of a fetch from one partition; `C` is the chunk type:
/// [`Chunk`] on the owning shard, `Bytes` once it crossed shards.
#[derive(Debug)]
pub struct FetchResult<C> {
    pub error: ErrorCode,
    pub message: Option<String>,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    pub chunks: Vec<C>,
    pub bytes: usize,
}

impl<C> FetchResult<C> {
    pub fn err(error: ErrorCode, message: impl Into<String>) -> Self {
        FetchResult { error, message: Some(message.into()), high_watermark: -1, log_start_offset: -1, chunks: Vec::new(), bytes: 0 }
    }
}

#[derive(Debug, Clone)]
pub struct OffsetResult {
    pub error: ErrorCode,
    pub message: Option<String>,
    pub offset: i64,
    pub timestamp: i64,
}

struct Partition {
    log: PartitionLog,
    /// Notified after every append, for long-poll fetches.
    appended: rt::Event,
}

/// The state of one shard.
pub struct Shard {
    pub id: u16,
    pub config: Rc<BrokerConfig>,
    mesh: mesh::Mesh<ShardMsg>,
    metadata: RefCell<Metadata>,
    /// Partitions owned by this shard: topic -> partition index -> log.
    partitions: RefCell<HashMap<String, HashMap<u32, Rc<Partition>>>>,
    /// Committed offsets of the groups this shard coordinates.
    offsets: RefCell<OffsetTable>,
    /// Members and assignments of the groups this shard coordinates.
    membership: RefCell<Membership>,
    /// Notified whenever this shard's copy of the metadata changes.
    metadata_changed: rt::Event,
    /// Applies committed changes one after another, in the order sent.
    apply_lock: rt::Semaphore,
    /// The quorum's leader, as the quorum shard last said.
    controller: Cell<Option<NodeId>>,
    /// This broker's voter (on the quorum shard only).
    quorum: RefCell<Option<Rc<Service>>>,
    /// What this shard's logs share (the tail cache budget).
    memory: Rc<crate::storage::ShardMemory>,
    shutting_down: Cell<bool>,
    pub shutdown: rt::Event,
}

fn storage_code(e: &StorageError) -> ErrorCode {
    match e {
        StorageError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        StorageError::BatchTooLarge(_) => ErrorCode::MessageTooLarge,
        StorageError::Closed => ErrorCode::BrokerShuttingDown,
        _ => ErrorCode::StorageError,
    }
}

pub fn group_code(e: &GroupError) -> ErrorCode {
    match e {
        GroupError::UnknownMember(_) => ErrorCode::UnknownMemberId,
        GroupError::StaleGeneration { .. } => ErrorCode::IllegalGeneration,
        GroupError::Full => ErrorCode::PolicyViolation,
        GroupError::BadSessionTimeout(_) => ErrorCode::InvalidRequest,
        GroupError::Unavailable => ErrorCode::CoordinatorNotAvailable,
        GroupError::NotCoordinator => ErrorCode::NotCoordinator,
    }
}

pub fn metadata_code(e: &MetadataError) -> ErrorCode {
    match e {
        MetadataError::TopicExists(_) => ErrorCode::TopicAlreadyExists,
        MetadataError::UnknownTopic(_) => ErrorCode::UnknownTopicOrPartition,
        MetadataError::InvalidName { .. } => ErrorCode::InvalidTopicName,
        MetadataError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
        MetadataError::InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
        MetadataError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        MetadataError::Storage(_) => ErrorCode::StorageError,
        MetadataError::Unavailable(_) => ErrorCode::RequestTimedOut,
        MetadataError::Internal(_) => ErrorCode::PolicyViolation,
    }
}

/// Where the metadata is kept, under the data directory.
pub fn metadata_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("meta").join("metadata.json")
}

fn partition_dir(data_dir: &std::path::Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join("topics").join(format!("{topic}-{partition}"))
}

fn unknown(topic: &str, partition: u32) -> String {
    format!("topic '{topic}' has no partition {partition} on this broker")
}

impl Shard {
    /// Opens the partitions this shard owns and returns the shard.
    pub async fn start(config: Rc<BrokerConfig>, mesh: mesh::Mesh<ShardMsg>, metadata: Metadata) -> Result<Rc<Self>, StorageError> {
        let cache_max_bytes_per_shard = config.cache_max_bytes_per_shard;
        let shard = Rc::new(Shard {
            id: mesh.id,
            config,
            mesh,
            metadata: RefCell::new(metadata),
            partitions: RefCell::new(HashMap::new()),
            offsets: RefCell::new(OffsetTable::default()),
            membership: RefCell::new(Membership::default()),
            metadata_changed: rt::Event::default(),
            apply_lock: rt::Semaphore::new(1),
            controller: Cell::new(None),
            quorum: RefCell::new(None),
            memory: crate::storage::ShardMemory::new(cache_max_bytes_per_shard),
            shutting_down: Cell::new(false),
            shutdown: rt::Event::default(),
        });
        let topics: Vec<_> = shard.metadata.borrow().topics.values().cloned().collect();
        shard.open_owned(&topics).await?;
        let offsets: Vec<u32> = shard.partitions.borrow().get(OFFSETS_TOPIC).map(|m| m.keys().copied().collect()).unwrap_or_default();
        shard.replay_offsets(&offsets).await?;
        Ok(shard)
    }

    /// Rebuilds the committed offsets of this shard's groups from its
    /// partitions of the offsets topic.
    async fn replay_offsets(&self, which: &[u32]) -> Result<(), StorageError> {
        let parts: Vec<Rc<Partition>> = which.iter().filter_map(|&p| self.partition(OFFSETS_TOPIC, p)).collect();
        for p in parts {
            let mut next = p.log.log_start_offset();
            loop {
                let out = p.log.read(next, 1 << 20).await?;
                if out.chunks.is_empty() {
                    break;
                }
                for c in &out.chunks {
                    for b in crate::record::batches(c) {
                        let Ok((start, info)) = b else { break };
                        if let Ok(it) = crate::record::RecordIter::new(&c[start..]) {
                            for r in it.flatten() {
                                if let Some((g, t, part, o)) = r.key.zip(r.value).and_then(|(k, v)| parse_commit(k, v)) {
                                    self.offsets.borrow_mut().apply(g, t, part, o);
                                }
                            }
                        }
                        next = info.next_offset();
                    }
                }
            }
        }
        if !self.offsets.borrow().is_empty() {
            tracing::info!(shard = self.id, committed = self.offsets.borrow().len(), "recovered committed offsets");
        }
        Ok(())
    }

    /// Creates the internal offsets topic if it is missing: one partition
    /// per shard of the live brokers.
    async fn ensure_offsets_topic(&self) -> Result<(), MetadataError> {
        if self.metadata.borrow().topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        let partitions = self.metadata.borrow().live_brokers().map(|b| u32::from(b.shards)).sum::<u32>().max(1);
        let t = NewTopic { name: OFFSETS_TOPIC.into(), partitions, replication_factor: 1, configs: Default::default() };
        match self.create_topics(vec![t]).await.pop() {
            Some(Err(MetadataError::TopicExists(_))) | Some(Ok(())) | None => Ok(()),
            Some(Err(e)) => Err(e),
        }
    }

    /// The offsets partition of `group` and its shard, if this broker
    /// coordinates the group (leads that partition).
    fn coordinator(&self, group: &str) -> Result<(u32, u16), ErrorCode> {
        let n = self.metadata.borrow().topics.get(OFFSETS_TOPIC).map(TopicMeta::partitions).ok_or(ErrorCode::CoordinatorNotAvailable)?;
        let p = offsets_partition(group, n);
        match self.route(OFFSETS_TOPIC, p) {
            Ok(s) => Ok((p, s)),
            Err((ErrorCode::NotLeader, _)) => Err(ErrorCode::NotCoordinator),
            Err(_) => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// The broker that coordinates `group`, creating the offsets topic on
    /// first use: (node id, host, port), or why there is none yet.
    pub async fn find_coordinator(&self, group: &str) -> Result<(NodeId, String, u16), (ErrorCode, String)> {
        if let Err(e) = self.ensure_offsets_topic().await {
            return Err((ErrorCode::CoordinatorNotAvailable, e.to_string()));
        }
        let md = self.metadata.borrow();
        let t = md.topics.get(OFFSETS_TOPIC).ok_or((ErrorCode::CoordinatorNotAvailable, "the offsets topic is being created".to_string()))?;
        let leader = t.leader(offsets_partition(group, t.partitions())).unwrap_or(NO_LEADER);
        match md.brokers.get(&leader) {
            Some(b) if !b.fenced => Ok((b.id, b.host.clone(), b.port)),
            _ => Err((ErrorCode::CoordinatorNotAvailable, format!("the coordinator of group '{group}' is not available (its broker is down)"))),
        }
    }

    /// Commits a group's offsets durably; one error code per offset.
    pub async fn commit_offsets(&self, group: String, member: Option<(String, i32)>, offsets: Vec<(String, u32, i64)>) -> Vec<ErrorCode> {
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
                .ask(owner, ShardMsg::CommitOffsets { group, member, offsets, reply }, rx)
                .await
                .unwrap_or_else(|| vec![ErrorCode::CoordinatorNotAvailable; n]);
        }
        let (member_id, generation) = member.as_ref().map_or((None, -1), |(m, g)| (Some(m.as_str()), *g));
        if let Err(e) = self.membership.borrow().check_commit(&group, member_id, generation) {
            return vec![group_code(&e); n];
        }
        let codes: Vec<ErrorCode> = offsets
            .iter()
            .map(|(t, p, o)| match self.metadata.borrow().topics.get(t).is_some_and(|t| *p < t.partitions()) {
                false => ErrorCode::UnknownTopicOrPartition,
                true if *o < 0 => ErrorCode::InvalidRequest,
                true => ErrorCode::None,
            })
            .collect();
        let mut b = crate::record::BatchBuilder::new(64 + 48 * n);
        for ((t, p, o), code) in offsets.iter().zip(&codes) {
            if *code == ErrorCode::None {
                b.push(crate::time::now_ms(), Some(&commit_key(&group, t, *p)), Some(&o.to_le_bytes()), &[]);
            }
        }
        if b.is_empty() {
            return codes;
        }
        let batch = b.finish();
        let info = crate::record::validate(&batch).expect("a batch this shard built is valid");
        let r = self.produce_local(OFFSETS_TOPIC, partition, BytesMut::from(&batch[..]), vec![info], -1, Duration::from_secs(30)).await;
        if r.error != ErrorCode::None {
            return codes.into_iter().map(|c| if c == ErrorCode::None { r.error } else { c }).collect();
        }
        let mut table = self.offsets.borrow_mut();
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
            return self.ask(owner, ShardMsg::GroupHeartbeat { group, member_id, sub, leave, reply }, rx).await.unwrap_or(Err(GroupError::Unavailable));
        }
        let md = self.metadata.borrow();
        let partitions = |t: &str| md.topics.get(t).map(|t| t.partitions());
        let mut m = self.membership.borrow_mut();
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
            let md = self.metadata.borrow();
            let partitions = |t: &str| md.topics.get(t).map(|t| t.partitions());
            self.membership.borrow_mut().expire(crate::time::now_ms(), &partitions);
        }
    }

    /// A group's committed offsets; -1 where it has none.
    pub async fn fetch_offsets(&self, group: String, partitions: Vec<(String, u32)>) -> Vec<(ErrorCode, i64)> {
        // A client that skipped FindCoordinator still gets its group.
        let _ = self.ensure_offsets_topic().await;
        let n = partitions.len();
        let (_, owner) = match self.coordinator(&group) {
            Ok(c) => c,
            Err(code) => return vec![(code, -1); n],
        };
        if owner != self.id {
            let (reply, rx) = oneshot::channel();
            return self
                .ask(owner, ShardMsg::FetchOffsets { group, partitions, reply }, rx)
                .await
                .unwrap_or_else(|| vec![(ErrorCode::CoordinatorNotAvailable, -1); n]);
        }
        let table = self.offsets.borrow();
        partitions.iter().map(|(t, p)| (ErrorCode::None, table.get(&group, t, *p).unwrap_or(-1))).collect()
    }

    pub fn nr_shards(&self) -> u16 {
        self.mesh.nr_shards()
    }

    pub fn metadata(&self) -> std::cell::Ref<'_, Metadata> {
        self.metadata.borrow()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// Opens (recovering) this shard's partitions of `topics`, up to
    /// `RECOVERY_CONCURRENCY` at a time: a restart waits on the disk, not on
    /// one partition after another.
    async fn open_owned(&self, topics: &[crate::cluster::metadata::TopicMeta]) -> Result<(), StorageError> {
        use futures::StreamExt;
        let mut opens = Vec::new();
        for t in topics {
            let cfg = t.log_config(&self.config.log);
            let node = self.config.node_id;
            for p in (0..t.partitions()).filter(|&p| t.shard_on(p, node, self.nr_shards()) == Some(self.id) && self.partition(&t.name, p).is_none()) {
                let (dir, cfg, name, memory) = (partition_dir(&self.config.data_dir, &t.name, p), cfg.clone(), t.name.clone(), self.memory.clone());
                opens.push(async move { (name, p, PartitionLog::open_on_shard(&dir, cfg, memory).await) });
            }
        }
        let mut opened = futures::stream::iter(opens).buffer_unordered(RECOVERY_CONCURRENCY);
        while let Some((name, p, log)) = opened.next().await {
            let part = Rc::new(Partition { log: log?, appended: rt::Event::default() });
            self.partitions.borrow_mut().entry(name).or_default().insert(p, part);
        }
        Ok(())
    }

    fn partition(&self, topic: &str, partition: u32) -> Option<Rc<Partition>> {
        self.partitions.borrow().get(topic).and_then(|m| m.get(&partition)).cloned()
    }

    /// The shard of this broker that serves a partition, by this shard's
    /// copy of the metadata: the partition must exist and this broker
    /// must lead it.
    pub fn route(&self, topic: &str, partition: u32) -> Result<u16, (ErrorCode, String)> {
        let md = self.metadata.borrow();
        let Some(t) = md.topics.get(topic).filter(|t| partition < t.partitions()) else {
            return Err((ErrorCode::UnknownTopicOrPartition, unknown(topic, partition)));
        };
        let me = self.config.node_id;
        match t.leader(partition) {
            Some(l) if l == me => t
                .shard_on(partition, me, self.nr_shards())
                .ok_or_else(|| (ErrorCode::NotLeader, format!("partition {partition} of '{topic}' has no replica on broker {me}"))),
            Some(NO_LEADER) | None => Err((ErrorCode::NotLeader, format!("partition {partition} of '{topic}' has no live leader"))),
            Some(l) => Err((ErrorCode::NotLeader, format!("partition {partition} of '{topic}' is led by broker {l}"))),
        }
    }

    // ---- produce ------------------------------------------------------------

    /// Appends validated batches to a partition, wherever it lives.
    pub async fn produce(&self, topic: &str, partition: u32, data: BytesMut, batches: Vec<BatchInfo>, acks: i8, timeout: Duration) -> ProduceResult {
        match self.route(topic, partition) {
            Err((code, m)) => ProduceResult::err(code, m),
            Ok(s) if s == self.id => self.produce_local(topic, partition, data, batches, acks, timeout).await,
            Ok(s) => {
                let (reply, rx) = oneshot::channel();
                let msg = ShardMsg::Produce { topic: topic.to_string(), partition, data, batches, acks, timeout, reply };
                self.ask(s, msg, rx).await.unwrap_or_else(|| ProduceResult::err(ErrorCode::BrokerShuttingDown, "the owning shard is stopping"))
            }
        }
    }

    async fn produce_local(&self, topic: &str, partition: u32, mut data: BytesMut, batches: Vec<BatchInfo>, acks: i8, timeout: Duration) -> ProduceResult {
        let Some(p) = self.partition(topic, partition) else {
            return ProduceResult::err(ErrorCode::UnknownTopicOrPartition, unknown(topic, partition));
        };
        debug_assert!(self.route(topic, partition).map_or(true, |s| s == self.id), "a shard only touches partitions it owns");
        let mut first = None;
        let mut last = -1;
        for info in &batches {
            let batch = data.split_to(info.batch_len as usize);
            match p.log.append(batch, info).await {
                Ok(a) => {
                    first.get_or_insert(a.base_offset);
                    last = a.last_offset;
                }
                Err(e) => {
                    p.appended.notify();
                    return ProduceResult::err(storage_code(&e), e.to_string());
                }
            }
        }
        p.appended.notify();
        // acks=1: the direct write completed (survives a crash of the
        // process); acks=all: an fdatasync after it (survives the host's).
        if acks != 0 {
            let (synced, what) = if acks == -1 { (true, "synced") } else { (false, "written") };
            match rt::timeout(timeout, p.log.wait(last, synced)).await {
                None => return ProduceResult::err(ErrorCode::RequestTimedOut, format!("not {what} within {} ms", timeout.as_millis())),
                Some(Err(e)) => return ProduceResult::err(storage_code(&e), e.to_string()),
                Some(Ok(())) => {}
            }
        }
        ProduceResult { error: ErrorCode::None, message: None, base_offset: first.unwrap_or(-1), log_start_offset: p.log.log_start_offset() }
    }

    // ---- fetch --------------------------------------------------------------

    /// Reads from a local partition. With `wait_until`, waits (long poll)
    /// until the partition has something at `offset` or the time passes.
    async fn fetch_local(&self, topic: &str, partition: u32, offset: i64, max_bytes: usize, wait_until: Option<Instant>) -> FetchResult<Chunk> {
        let Some(p) = self.partition(topic, partition) else {
            return FetchResult::err(ErrorCode::UnknownTopicOrPartition, unknown(topic, partition));
        };
        if let Some(until) = wait_until {
            while p.log.next_offset() <= offset && !self.is_shutting_down() {
                let now = Instant::now();
                if now >= until {
                    break;
                }
                let woken = std::pin::pin!(async {
                    futures::future::select(std::pin::pin!(p.appended.listen()), std::pin::pin!(self.shutdown.listen())).await;
                });
                rt::timeout(until - now, woken).await;
            }
        }
        match p.log.read(offset, max_bytes).await {
            Ok(out) => FetchResult {
                error: ErrorCode::None,
                message: None,
                high_watermark: out.high_watermark,
                log_start_offset: out.log_start_offset,
                chunks: out.chunks,
                bytes: out.bytes,
            },
            Err(e) => {
                let mut r = FetchResult::err(storage_code(&e), e.to_string());
                r.high_watermark = p.log.next_offset();
                r.log_start_offset = p.log.log_start_offset();
                r
            }
        }
    }

    /// Reads from a partition wherever it lives. A remote read comes back as
    /// `Bytes`: a direct-read buffer belongs to the executor that read it, so
    /// bytes read from disk on another shard are copied once to cross over.
    pub async fn fetch(&self, topic: &str, partition: u32, offset: i64, max_bytes: usize, wait_until: Option<Instant>) -> FetchResult<Chunk> {
        match self.route(topic, partition) {
            Err((code, m)) => FetchResult::err(code, m),
            Ok(s) if s == self.id => self.fetch_local(topic, partition, offset, max_bytes, wait_until).await,
            Ok(s) => {
                let (reply, rx) = oneshot::channel();
                let msg = ShardMsg::Fetch { topic: topic.to_string(), partition, offset, max_bytes, wait_until, reply };
                match self.ask(s, msg, rx).await {
                    Some(r) => FetchResult {
                        error: r.error,
                        message: r.message,
                        high_watermark: r.high_watermark,
                        log_start_offset: r.log_start_offset,
                        bytes: r.bytes,
                        chunks: r.chunks.into_iter().map(Chunk::Mem).collect(),
                    },
                    None => FetchResult::err(ErrorCode::BrokerShuttingDown, "the owning shard is stopping"),
                }
            }
        }
    }

    // ---- list offsets -------------------------------------------------------

    pub async fn list_offset(&self, topic: &str, partition: u32, timestamp: i64) -> OffsetResult {
        let bad = |error, m: String| OffsetResult { error, message: Some(m), offset: -1, timestamp: -1 };
        match self.route(topic, partition) {
            Err((code, m)) => bad(code, m),
            Ok(s) if s == self.id => {
                let Some(p) = self.partition(topic, partition) else {
                    return bad(ErrorCode::UnknownTopicOrPartition, unknown(topic, partition));
                };
                let ok = |offset, timestamp| OffsetResult { error: ErrorCode::None, message: None, offset, timestamp };
                match timestamp {
                    -2 => ok(p.log.log_start_offset(), -1),
                    -1 => ok(p.log.next_offset(), -1),
                    ts if ts >= 0 => match p.log.offset_for_timestamp(ts).await {
                        Ok(Some((o, t))) => ok(o, t),
                        Ok(None) => ok(p.log.next_offset(), -1),
                        Err(e) => bad(storage_code(&e), e.to_string()),
                    },
                    ts => bad(ErrorCode::InvalidRequest, format!("timestamp {ts} is neither -2, -1 nor a time")),
                }
            }
            Ok(s) => {
                let (reply, rx) = oneshot::channel();
                let msg = ShardMsg::ListOffset { topic: topic.to_string(), partition, timestamp, reply };
                self.ask(s, msg, rx).await.unwrap_or_else(|| bad(ErrorCode::BrokerShuttingDown, "the owning shard is stopping".into()))
            }
        }
    }

    // ---- the metadata quorum ----------------------------------------------

    /// Gives the quorum shard this broker's voter.
    pub fn set_quorum(&self, svc: Rc<Service>) {
        *self.quorum.borrow_mut() = Some(svc);
    }

    pub fn quorum(&self) -> Option<Rc<Service>> {
        self.quorum.borrow().clone()
    }

    /// The quorum's leader, as this shard last heard.
    pub fn controller(&self) -> Option<NodeId> {
        self.controller.get()
    }

    /// Commits a command through the quorum (from any shard) and returns
    /// its outcome once every shard of this broker applied it.
    pub async fn propose(&self, command: Command) -> Result<Outcome, MetadataError> {
        if let Some(q) = self.quorum() {
            return q.propose(command).await;
        }
        let (reply, rx) = oneshot::channel();
        self.ask(QUORUM_SHARD, ShardMsg::Propose { command, reply }, rx)
            .await
            .unwrap_or_else(|| Err(MetadataError::Unavailable("the quorum shard is stopping".into())))
    }

    /// Creates topics through the quorum; one result per topic.
    pub async fn create_topics(&self, topics: Vec<NewTopic>) -> Vec<Result<(), MetadataError>> {
        let n = topics.len();
        outcomes(self.propose(Command::CreateTopics(topics)).await, n)
    }

    pub async fn delete_topics(&self, names: Vec<String>) -> Vec<Result<(), MetadataError>> {
        let n = names.len();
        outcomes(self.propose(Command::DeleteTopics(names)).await, n)
    }

    /// Waits until this shard's copy of the metadata holds everything the
    /// quorum committed before now, so a read through any broker sees a
    /// change another broker answered for. Without a quorum leader it
    /// gives up after [`READ_BARRIER_WAIT`]; the copy is then served as is.
    pub async fn read_barrier(&self) {
        let index = match self.quorum() {
            Some(q) => q.read_index(READ_BARRIER_WAIT).await,
            None => {
                let (reply, rx) = oneshot::channel();
                self.ask(QUORUM_SHARD, ShardMsg::ReadIndex { reply }, rx).await.flatten()
            }
        };
        let Some(index) = index else { return };
        let deadline = Instant::now() + READ_BARRIER_WAIT;
        while self.metadata.borrow().applied < index && Instant::now() < deadline {
            rt::timeout(deadline - Instant::now(), self.metadata_changed.listen()).await;
        }
    }

    /// Applies committed commands to this shard's copy, in order, then
    /// opens or removes the partitions they gave or took from this shard;
    /// returns the topics whose partitions could not be opened, and why.
    async fn apply(&self, entries: Vec<(u64, Proposal)>) -> Vec<(String, String)> {
        let _turn = self.apply_lock.acquire_permit(1).await;
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        {
            let mut md = self.metadata.borrow_mut();
            for (index, p) in &entries {
                if *index <= md.applied {
                    continue;
                }
                let o = md.apply(*index, p);
                created.extend(o.created);
                deleted.extend(o.deleted);
            }
        }
        self.metadata_changed.notify();
        self.apply_effects(created, deleted).await
    }

    /// Replaces this shard's copy by a snapshot's state.
    async fn install(&self, state: Metadata) {
        let _turn = self.apply_lock.acquire_permit(1).await;
        let old = std::mem::replace(&mut *self.metadata.borrow_mut(), state);
        self.metadata_changed.notify();
        let (created, deleted) = {
            let md = self.metadata.borrow();
            (md.topics.keys().cloned().collect(), old.topics.keys().filter(|n| !md.topics.contains_key(*n)).cloned().collect())
        };
        for (topic, e) in self.apply_effects(created, deleted).await {
            tracing::error!(%topic, error = %e, "could not open partitions of a topic from a snapshot");
        }
    }

    async fn apply_effects(&self, created: Vec<String>, deleted: Vec<String>) -> Vec<(String, String)> {
        for name in deleted {
            if self.metadata.borrow().topics.contains_key(&name) {
                continue;
            }
            let removed = self.partitions.borrow_mut().remove(&name);
            for (p, part) in removed.into_iter().flatten() {
                let _ = part.log.close().await;
                part.appended.notify();
                let dir = partition_dir(&self.config.data_dir, &name, p);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted partition");
                }
            }
        }
        let topics: Vec<TopicMeta> = {
            let md = self.metadata.borrow();
            created.iter().filter_map(|n| md.topics.get(n).cloned()).collect()
        };
        let mut failed = Vec::new();
        for t in topics {
            let before: Vec<u32> = self.partitions.borrow().get(&t.name).map(|m| m.keys().copied().collect()).unwrap_or_default();
            let opened = self.open_owned(std::slice::from_ref(&t)).await;
            if t.name == OFFSETS_TOPIC {
                // Partitions of the offsets topic that came with this change
                // (a restart re-applying the log, a new topic) hold commits.
                let new: Vec<u32> =
                    self.partitions.borrow().get(OFFSETS_TOPIC).map(|m| m.keys().copied().filter(|p| !before.contains(p)).collect()).unwrap_or_default();
                if let Err(e) = self.replay_offsets(&new).await {
                    tracing::error!(error = %e, "could not read committed offsets");
                }
            }
            if let Err(e) = opened {
                // The change is committed; the partition stays unserved on
                // this broker until it restarts and opens it again.
                tracing::error!(topic = %t.name, error = %e, "could not open partitions of a committed topic");
                failed.push((t.name.clone(), format!("could not open the partitions of '{}' on shard {}: {e}", t.name, self.id)));
            }
        }
        failed
    }

    /// Runs on the quorum shard: passes every committed change to every
    /// shard, in order, then answers the proposers.
    pub async fn deliver_loop(self: Rc<Self>, rx: rt::LocalReceiver<crate::cluster::service::Delivery>) {
        use crate::cluster::service::Delivery;
        let Some(svc) = self.quorum() else { return };
        while let Some(d) = rx.recv().await {
            match d {
                Delivery::Applied(mut applied) => {
                    let entries: Vec<(u64, Proposal)> = applied.iter().map(|a| (a.index, a.proposal.clone())).collect();
                    let mut acks = Vec::new();
                    for peer in self.mesh.peers() {
                        let (reply, rx) = oneshot::channel();
                        if self.mesh.send(peer, ShardMsg::Apply { entries: entries.clone(), reply }).await.is_ok() {
                            acks.push(rx);
                        }
                    }
                    let mut failed = self.apply(entries).await;
                    for rx in acks {
                        failed.extend(rx.await.unwrap_or_default());
                    }
                    // A create committed, but this broker could not open
                    // its partitions: its proposer hears so.
                    for a in &mut applied {
                        if let Command::CreateTopics(ts) = &a.proposal.command {
                            for (t, r) in ts.iter().zip(a.outcome.results.iter_mut()) {
                                if let Some((_, e)) = failed.iter().find(|(name, _)| *name == t.name) {
                                    *r = Err(MetadataError::Storage(e.clone()));
                                }
                            }
                        }
                    }
                    if applied.iter().any(|a| matches!(a.proposal.command, Command::Import(_))) {
                        svc.imported();
                    }
                    svc.resolve(&applied);
                }
                Delivery::Installed(state) => {
                    let mut acks = Vec::new();
                    for peer in self.mesh.peers() {
                        let (reply, rx) = oneshot::channel();
                        if self.mesh.send(peer, ShardMsg::Install { state: Box::new(state.clone()), reply }).await.is_ok() {
                            acks.push(rx);
                        }
                    }
                    self.install(state).await;
                    for rx in acks {
                        let _ = rx.await;
                    }
                }
                Delivery::Controller(c) => {
                    self.controller.set(c);
                    for peer in self.mesh.peers() {
                        let _ = self.mesh.send(peer, ShardMsg::Controller(c)).await;
                    }
                }
            }
        }
    }

    // ---- messages -----------------------------------------------------------

    async fn ask<R>(&self, to: u16, msg: ShardMsg, rx: oneshot::Receiver<R>) -> Option<R> {
        self.mesh.send(to, msg).await.ok()?;
        rx.await.ok()
    }

    /// Serves one message from another shard.
    pub async fn serve(self: Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Produce { topic, partition, data, batches, acks, timeout, reply } => {
                let _ = reply.send(self.produce_local(&topic, partition, data, batches, acks, timeout).await);
            }
            ShardMsg::Fetch { topic, partition, offset, max_bytes, wait_until, reply } => {
                let r = self.fetch_local(&topic, partition, offset, max_bytes, wait_until).await;
                let chunks = r
                    .chunks
                    .into_iter()
                    .map(|c| match c {
                        Chunk::Mem(b) => b,
                        Chunk::Disk(d) => Bytes::copy_from_slice(&d),
                    })
                    .collect();
                let r = FetchResult {
                    error: r.error,
                    message: r.message,
                    high_watermark: r.high_watermark,
                    log_start_offset: r.log_start_offset,
                    chunks,
                    bytes: r.bytes,
                };
                let _ = reply.send(r);
            }
            ShardMsg::ListOffset { topic, partition, timestamp, reply } => {
                let _ = reply.send(self.list_offset(&topic, partition, timestamp).await);
            }
            ShardMsg::Propose { command, reply } => {
                let _ = reply.send(self.propose(command).await);
            }
            ShardMsg::ReadIndex { reply } => {
                let r = match self.quorum() {
                    Some(q) => q.read_index(READ_BARRIER_WAIT).await,
                    None => None,
                };
                let _ = reply.send(r);
            }
            ShardMsg::Apply { entries, reply } => {
                let _ = reply.send(self.apply(entries).await);
            }
            ShardMsg::Install { state, reply } => {
                self.install(*state).await;
                let _ = reply.send(());
            }
            ShardMsg::Controller(c) => self.controller.set(c),
            ShardMsg::CommitOffsets { group, member, offsets, reply } => {
                let _ = reply.send(self.commit_offsets(group, member, offsets).await);
            }
            ShardMsg::GroupHeartbeat { group, member_id, sub, leave, reply } => {
                let _ = reply.send(self.group_heartbeat(group, member_id, sub, leave).await);
            }
            ShardMsg::FetchOffsets { group, partitions, reply } => {
                let _ = reply.send(self.fetch_offsets(group, partitions).await);
            }
        }
    }

    // ---- housekeeping -------------------------------------------------------

    /// Applies retention to every partition of this shard, now and then.
    pub async fn retention_loop(self: Rc<Self>) {
        let every = Duration::from_millis(self.config.retention_check_interval_ms.max(10));
        while !self.is_shutting_down() {
            rt::timeout(every, self.shutdown.listen()).await;
            let parts: Vec<Rc<Partition>> = self.partitions.borrow().values().flat_map(|m| m.values().cloned()).collect();
            let now_ms = crate::time::now_ms();
            for p in parts {
                if let Err(e) = p.log.enforce_retention(now_ms).await {
                    tracing::warn!(error = %e, "retention failed");
                }
            }
        }
    }

    /// Stops serving: wakes long polls, then flushes and closes every log.
    pub async fn close(&self) {
        self.shutting_down.set(true);
        self.shutdown.notify();
        let parts: Vec<Rc<Partition>> = self.partitions.borrow().values().flat_map(|m| m.values().cloned()).collect();
        for p in parts {
            if let Err(e) = p.log.close().await {
                tracing::error!(error = %e, "closing a log failed");
            }
        }
    }

    /// Marks the shard as stopping, so connections stop taking requests.
    pub fn begin_shutdown(&self) {
        self.shutting_down.set(true);
        self.shutdown.notify();
    }
}

/// One result per topic of a create or delete.
fn outcomes(r: Result<Outcome, MetadataError>, n: usize) -> Vec<Result<(), MetadataError>> {
    match r {
        Ok(o) if o.results.len() == n => o.results,
        Ok(_) => vec![Ok(()); n],
        Err(e) => vec![Err(e); n],
    }
}
