//! A shard's side of the metadata quorum: proposing changes (through the
//! quorum shard), waiting for the quorum's read index, and applying the
//! committed changes the quorum shard sends, in log order, to this
//! shard's own copy and its partitions.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use futures::channel::oneshot;

use super::{partition_dir, Shard, ShardMsg, QUORUM_SHARD, READ_BARRIER_WAIT};
use crate::cluster::metadata::{Command, Metadata, MetadataError, NewTopic, NodeId, Outcome, Proposal, TopicMeta};
use crate::cluster::{Delivery, QuorumHandle};
use crate::group::OFFSETS_TOPIC;
use crate::rt;

/// A shard's copy of the metadata and what goes with it.
pub(super) struct MetadataCopy {
    pub(super) state: RefCell<Metadata>,
    /// Notified whenever the copy changes.
    pub(super) changed: rt::Event,
    /// Applies committed changes one after another, in the order sent.
    pub(super) apply_lock: rt::Semaphore,
    /// The quorum's leader, as the quorum shard last said.
    pub(super) controller: Cell<Option<NodeId>>,
    /// This broker's voter (on the quorum shard only).
    pub(super) quorum: RefCell<Option<Rc<dyn QuorumHandle>>>,
    /// The idempotent producer ids this shard still has to hand out: a
    /// block taken from the quorum, [`PRODUCER_ID_BLOCK`] at a time.
    pub(super) producer_ids: RefCell<std::ops::Range<i64>>,
}

/// Producer ids a shard takes from the quorum at a time: one quorum write
/// per thousand producers.
pub const PRODUCER_ID_BLOCK: u32 = 1000;

impl MetadataCopy {
    pub(super) fn new(state: Metadata) -> Self {
        MetadataCopy {
            state: RefCell::new(state),
            changed: rt::Event::default(),
            apply_lock: rt::Semaphore::new(1),
            controller: Cell::new(None),
            quorum: RefCell::new(None),
            producer_ids: RefCell::new(0..0),
        }
    }
}

/// What shards ask of each other about the metadata.
pub enum MetadataMsg {
    /// To the quorum shard: commit a command, answer with its outcome.
    Propose { command: Command, reply: oneshot::Sender<Result<Outcome, MetadataError>> },
    /// To the quorum shard: the commit index a linearizable read waits for.
    ReadIndex { reply: oneshot::Sender<Option<u64>> },
    /// From the quorum shard: committed commands, in log order.
    /// Answered with the topics whose partitions could not be opened.
    Apply { entries: Vec<(u64, Proposal)>, reply: oneshot::Sender<Vec<(String, String)>> },
    /// From the quorum shard: a snapshot replaced the whole metadata.
    Install { state: Box<Metadata>, reply: oneshot::Sender<()> },
    /// From the quorum shard: the quorum's leader changed.
    Controller(Option<NodeId>),
}

impl Shard {
    pub(super) async fn serve_metadata(&self, msg: MetadataMsg) {
        match msg {
            MetadataMsg::Propose { command, reply } => {
                let _ = reply.send(self.propose(command).await);
            }
            MetadataMsg::ReadIndex { reply } => {
                let r = match self.quorum() {
                    Some(q) => q.read_index(READ_BARRIER_WAIT).await,
                    None => None,
                };
                let _ = reply.send(r);
            }
            MetadataMsg::Apply { entries, reply } => {
                let _ = reply.send(self.apply(entries).await);
            }
            MetadataMsg::Install { state, reply } => {
                self.install(*state).await;
                let _ = reply.send(());
            }
            MetadataMsg::Controller(c) => self.meta.controller.set(c),
        }
    }

    /// Gives the quorum shard this broker's voter.
    pub fn set_quorum(&self, svc: Rc<dyn QuorumHandle>) {
        *self.meta.quorum.borrow_mut() = Some(svc);
    }

    pub fn quorum(&self) -> Option<Rc<dyn QuorumHandle>> {
        self.meta.quorum.borrow().clone()
    }

    /// The quorum's leader, as this shard last heard.
    pub fn controller(&self) -> Option<NodeId> {
        self.meta.controller.get()
    }

    /// Commits a command through the quorum (from any shard) and returns
    /// its outcome once every shard of this broker applied it.
    pub async fn propose(&self, command: Command) -> Result<Outcome, MetadataError> {
        if let Some(q) = self.quorum() {
            return q.propose(command).await;
        }
        let (reply, rx) = oneshot::channel();
        self.ask(QUORUM_SHARD, ShardMsg::Metadata(MetadataMsg::Propose { command, reply }), rx)
            .await
            .unwrap_or_else(|| Err(MetadataError::Unavailable("the quorum shard is stopping".into())))
    }

    /// A producer id no one else in the cluster was given: the next of
    /// this shard's block, taking a new block through the quorum when it
    /// runs out.
    pub async fn new_producer_id(&self) -> Result<i64, MetadataError> {
        loop {
            {
                let mut ids = self.meta.producer_ids.borrow_mut();
                if let Some(id) = ids.next() {
                    return Ok(id);
                }
            }
            let out = self.propose(Command::AllocateProducerIds { count: PRODUCER_ID_BLOCK }).await?;
            if let Some(block) = out.producer_ids {
                let mut ids = self.meta.producer_ids.borrow_mut();
                // Another request may have taken a block meanwhile: keep
                // the one with ids left.
                if ids.is_empty() {
                    *ids = block;
                }
            }
        }
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
                self.ask(QUORUM_SHARD, ShardMsg::Metadata(MetadataMsg::ReadIndex { reply }), rx).await.flatten()
            }
        };
        let Some(index) = index else { return };
        let deadline = Instant::now() + READ_BARRIER_WAIT;
        while self.meta.state.borrow().applied < index && Instant::now() < deadline {
            rt::timeout(deadline - Instant::now(), self.meta.changed.listen()).await;
        }
        // The copy is updated first and the partitions opened or removed
        // after, under the apply lock: waiting for it means a read also
        // sees the partitions of what it sees in the metadata.
        drop(self.meta.apply_lock.acquire_permit(1).await);
    }

    /// Applies committed commands to this shard's copy, in order, then
    /// opens or removes the partitions they gave or took from this shard;
    /// returns the topics whose partitions could not be opened, and why.
    pub(super) async fn apply(&self, entries: Vec<(u64, Proposal)>) -> Vec<(String, String)> {
        let _turn = self.meta.apply_lock.acquire_permit(1).await;
        let mut created = Vec::new();
        let mut deleted = Vec::new();
        {
            let mut md = self.meta.state.borrow_mut();
            for (index, p) in &entries {
                if *index <= md.applied {
                    continue;
                }
                let o = md.apply(*index, p);
                created.extend(o.created);
                deleted.extend(o.deleted);
            }
        }
        self.meta.changed.notify();
        let failed = self.apply_effects(created, deleted).await;
        self.reconcile_replicas();
        failed
    }

    /// Replaces this shard's copy by a snapshot's state.
    pub(super) async fn install(&self, state: Metadata) {
        let _turn = self.meta.apply_lock.acquire_permit(1).await;
        let old = std::mem::replace(&mut *self.meta.state.borrow_mut(), state);
        self.meta.changed.notify();
        let (created, deleted) = {
            let md = self.meta.state.borrow();
            (md.topics.keys().cloned().collect(), old.topics.keys().filter(|n| !md.topics.contains_key(*n)).cloned().collect())
        };
        for (topic, e) in self.apply_effects(created, deleted).await {
            tracing::error!(%topic, error = %e, "could not open partitions of a topic from a snapshot");
        }
        self.reconcile_replicas();
    }

    async fn apply_effects(&self, created: Vec<String>, deleted: Vec<String>) -> Vec<(String, String)> {
        for name in deleted {
            if self.meta.state.borrow().topics.contains_key(&name) {
                continue;
            }
            let removed = self.partitions.owned.borrow_mut().remove(&name);
            for (p, part) in removed.into_iter().flatten() {
                let _ = part.log().close().await;
                part.appended.notify();
                let dir = partition_dir(&self.config.data_dir, &name, p);
                if let Err(e) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), error = %e, "could not remove a deleted partition");
                }
            }
        }
        let topics: Vec<TopicMeta> = {
            let md = self.meta.state.borrow();
            created.iter().filter_map(|n| md.topics.get(n).cloned()).collect()
        };
        let mut failed = Vec::new();
        for t in topics {
            let before: Vec<u32> = self.partitions.owned.borrow().get(&t.name).map(|m| m.keys().copied().collect()).unwrap_or_default();
            let opened = self.open_owned(std::slice::from_ref(&t)).await;
            if t.name == OFFSETS_TOPIC {
                // Partitions of the offsets topic that came with this change
                // (a restart re-applying the log, a new topic) hold commits.
                let new: Vec<u32> =
                    self.partitions.owned.borrow().get(OFFSETS_TOPIC).map(|m| m.keys().copied().filter(|p| !before.contains(p)).collect()).unwrap_or_default();
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
    pub async fn deliver_loop(self: Rc<Self>, rx: rt::LocalReceiver<Delivery>) {
        let Some(svc) = self.quorum() else { return };
        while let Some(d) = rx.recv().await {
            match d {
                Delivery::Applied(mut applied) => {
                    let entries: Vec<(u64, Proposal)> = applied.iter().map(|a| (a.index, a.proposal.clone())).collect();
                    let mut acks = Vec::new();
                    for peer in self.mesh.peers() {
                        let (reply, rx) = oneshot::channel();
                        if self.mesh.send(peer, ShardMsg::Metadata(MetadataMsg::Apply { entries: entries.clone(), reply })).await.is_ok() {
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
                    svc.applied(&applied);
                }
                Delivery::Installed(state) => {
                    let mut acks = Vec::new();
                    for peer in self.mesh.peers() {
                        let (reply, rx) = oneshot::channel();
                        if self.mesh.send(peer, ShardMsg::Metadata(MetadataMsg::Install { state: Box::new(state.clone()), reply })).await.is_ok() {
                            acks.push(rx);
                        }
                    }
                    self.install(state).await;
                    for rx in acks {
                        let _ = rx.await;
                    }
                }
                Delivery::Controller(c) => {
                    self.meta.controller.set(c);
                    for peer in self.mesh.peers() {
                        let _ = self.mesh.send(peer, ShardMsg::Metadata(MetadataMsg::Controller(c))).await;
                    }
                }
            }
        }
    }
}

/// One result per topic of a create or delete.
pub fn outcomes(r: Result<Outcome, MetadataError>, n: usize) -> Vec<Result<(), MetadataError>> {
    match r {
        Ok(o) if o.results.len() == n => o.results,
        Ok(_) => vec![Ok(()); n],
        Err(e) => vec![Err(e); n],
    }
}
