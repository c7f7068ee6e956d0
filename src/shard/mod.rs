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

mod coordinator;
mod idempotence;
pub mod mesh;
mod metrics;
mod quorum;
pub mod replica;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;

use crate::cluster::metadata::{Metadata, MetadataError, NO_LEADER};
use crate::config::BrokerConfig;
use crate::group::membership::GroupError;
use crate::group::OFFSETS_TOPIC;
use crate::producers::Verdict;
use crate::protocol::{Acks, ErrorCode};
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

/// Work one shard asks of another, by the component that serves it.
pub enum ShardMsg {
    /// To the owner of a partition.
    Partition(PartitionMsg),
    /// Between the quorum shard and the others, about the metadata.
    Metadata(MetadataMsg),
    /// To a group's coordinator.
    Group(GroupMsg),
    /// About replicas: a follower's fetch, the replicas' lags.
    Replica(ReplicaMsg),
    /// A scrape's question for this shard's figures.
    Metrics(metrics::MetricsMsg),
}

pub use coordinator::{ClassicAnswer, ClassicCall, GroupMsg};
pub use quorum::{outcomes, MetadataMsg};
pub use replica::ReplicaMsg;

/// What the owner of a partition is asked.
pub enum PartitionMsg {
    Produce { topic: String, partition: u32, data: BytesMut, batches: Vec<BatchInfo>, acks: Acks, timeout: Duration, reply: oneshot::Sender<ProduceResult> },
    Fetch { topic: String, partition: u32, offset: i64, max_bytes: usize, wait_until: Option<Instant>, reply: oneshot::Sender<FetchResult<Bytes>> },
    ListOffset { topic: String, partition: u32, timestamp: i64, reply: oneshot::Sender<OffsetResult> },
    EpochEnd { topic: String, partition: u32, current_epoch: i32, epoch: i32, reply: oneshot::Sender<EpochEnd> },
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

impl FetchResult<Chunk> {
    /// The result as it crosses shards: a direct-read buffer belongs to the
    /// executor that read it, so bytes read from disk are copied once.
    fn into_sendable(self) -> FetchResult<Bytes> {
        let chunks = self
            .chunks
            .into_iter()
            .map(|c| match c {
                Chunk::Mem(b) => b,
                Chunk::Disk(d) => Bytes::copy_from_slice(&d),
            })
            .collect();
        FetchResult {
            error: self.error,
            message: self.message,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            chunks,
            bytes: self.bytes,
        }
    }
}

impl<C> FetchResult<C> {
    pub fn err(error: ErrorCode, message: impl Into<String>) -> Self {
        FetchResult { error, message: Some(message.into()), high_watermark: -1, log_start_offset: -1, chunks: Vec::new(), bytes: 0 }
    }
}

/// Where a leader epoch ended in a partition's log (Kafka's
/// OffsetForLeaderEpoch): the largest epoch at or below the one asked,
/// and the offset after its last batch; -1 and -1 when the log holds no
/// such epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub error: ErrorCode,
    pub leader_epoch: i32,
    pub end_offset: i64,
}

impl EpochEnd {
    const UNDEFINED: EpochEnd = EpochEnd { error: ErrorCode::None, leader_epoch: -1, end_offset: -1 };

    fn err(error: ErrorCode) -> EpochEnd {
        EpochEnd { error, ..Self::UNDEFINED }
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
    /// Replaced when a follower cuts its log (closed, cut, opened again).
    log: RefCell<PartitionLog>,
    dir: PathBuf,
    config: crate::storage::LogConfig,
    /// Notified after every append and high watermark move, for long polls.
    appended: rt::Event,
    /// Held from a produce's first append to its last, so requests
    /// pipelined on one connection are stored in the order they came even
    /// when one waits (for a roll, or to write a new epoch) before it
    /// appends: the permit is granted in arrival order.
    append_lock: rt::Semaphore,
    replica: replica::Replica,
    /// A failed write is being recovered from (`Partition::recover_from`).
    recovering: Cell<bool>,
    /// Its idempotent producers' windows (`idempotence.rs`).
    producers: RefCell<crate::producers::ProducerStates>,
    /// The state's end when its snapshot was last written.
    producers_snapshot_end: Cell<i64>,
}

impl Partition {
    fn log(&self) -> PartitionLog {
        self.log.borrow().clone()
    }

    /// Its log start, high watermark (as this replica knows it), log end
    /// and bytes on disk: what DescribeTopic and a scrape report.
    fn figures(&self, st: &crate::storage::LogStats) -> crate::protocol::metadata::PartitionFigures {
        let high_watermark = if self.replica.replicated { self.replica.hw.get() } else { st.written_offset };
        crate::protocol::metadata::PartitionFigures {
            log_start_offset: st.log_start_offset,
            high_watermark,
            log_end_offset: st.next_offset,
            size_bytes: st.bytes as i64,
        }
    }
}

/// The partitions a shard owns.
struct Partitions {
    /// topic -> partition index -> log.
    owned: RefCell<HashMap<String, HashMap<u32, Rc<Partition>>>>,
    /// What their logs share (the tail cache budget).
    memory: Rc<crate::storage::ShardMemory>,
}

/// The state of one shard: the components it owns, each served its own
/// messages ([`ShardMsg`]).
pub struct Shard {
    pub id: u16,
    pub config: Rc<BrokerConfig>,
    /// This broker process's incarnation: its partitions are led only once
    /// the metadata holds this incarnation registered and unfenced.
    incarnation: u64,
    mesh: mesh::Mesh<ShardMsg>,
    /// The partitions it owns: routing, produce, fetch (this file).
    partitions: Partitions,
    /// Its copy of the metadata and its side of the quorum (`quorum.rs`).
    meta: quorum::MetadataCopy,
    /// The groups it coordinates (`coordinator.rs`).
    groups: coordinator::Groups,
    /// Its replicas' roles and the followers' fetches (`replica.rs`).
    replication: replica::Replication,
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
        GroupError::InconsistentProtocol => ErrorCode::InconsistentGroupProtocol,
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
        MetadataError::StaleLeaderEpoch(_) => ErrorCode::NotLeader,
        MetadataError::UnknownUser(_) | MetadataError::UnknownAcl(_) => ErrorCode::InvalidRequest,
        MetadataError::LimitReached(_) => ErrorCode::PolicyViolation,
    }
}

fn partition_dir(data_dir: &std::path::Path, topic: &str, partition: u32) -> PathBuf {
    data_dir.join("topics").join(format!("{topic}-{partition}"))
}

fn unknown(topic: &str, partition: u32) -> String {
    format!("topic '{topic}' has no partition {partition} on this broker")
}

impl Shard {
    /// Opens the partitions this shard owns and returns the shard.
    pub async fn start(config: Rc<BrokerConfig>, mesh: mesh::Mesh<ShardMsg>, metadata: Metadata, incarnation: u64) -> Result<Rc<Self>, StorageError> {
        let cache_max_bytes_per_shard = config.cache_max_bytes_per_shard;
        let shard = Rc::new(Shard {
            id: mesh.id,
            config,
            incarnation,
            mesh,
            partitions: Partitions { owned: RefCell::new(HashMap::new()), memory: crate::storage::ShardMemory::new(cache_max_bytes_per_shard) },
            meta: quorum::MetadataCopy::new(metadata),
            groups: coordinator::Groups::default(),
            replication: replica::Replication::default(),
            shutting_down: Cell::new(false),
            shutdown: rt::Event::default(),
        });
        let topics: Vec<_> = shard.meta.state.borrow().topics.values().cloned().collect();
        shard.open_owned(&topics).await?;
        let offsets: Vec<u32> = shard.partitions.owned.borrow().get(OFFSETS_TOPIC).map(|m| m.keys().copied().collect()).unwrap_or_default();
        shard.replay_offsets(&offsets).await?;
        shard.reconcile_replicas();
        Ok(shard)
    }

    pub fn nr_shards(&self) -> u16 {
        self.mesh.nr_shards()
    }

    pub fn metadata(&self) -> std::cell::Ref<'_, Metadata> {
        self.meta.state.borrow()
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
            let replicated = t.replication_factor > 1 && t.name != OFFSETS_TOPIC;
            let max_producers = self.config.max_producers_per_partition;
            for p in (0..t.partitions()).filter(|&p| t.shard_on(p, node, self.nr_shards()) == Some(self.id) && self.partition(&t.name, p).is_none()) {
                let (dir, cfg, name, memory) = (partition_dir(&self.config.data_dir, &t.name, p), cfg.clone(), t.name.clone(), self.partitions.memory.clone());
                opens.push(async move {
                    let log = match PartitionLog::open_on_shard(&dir, cfg.clone(), memory).await {
                        Ok(l) => l,
                        Err(e) => return (name, p, Err(e)),
                    };
                    let replica = replica::Replica::load(&dir, replicated, log.next_offset());
                    let part = Partition {
                        log: RefCell::new(log),
                        dir,
                        config: cfg,
                        appended: rt::Event::default(),
                        append_lock: rt::Semaphore::new(1),
                        replica,
                        recovering: Cell::new(false),
                        producers: RefCell::new(crate::producers::ProducerStates::new(max_producers)),
                        producers_snapshot_end: Cell::new(-1),
                    };
                    if let Err(e) = part.rebuild_producers().await {
                        return (name, p, Err(e));
                    }
                    (name, p, Ok(part))
                });
            }
        }
        let mut opened = futures::stream::iter(opens).buffer_unordered(RECOVERY_CONCURRENCY);
        while let Some((name, p, part)) = opened.next().await {
            self.partitions.owned.borrow_mut().entry(name).or_default().insert(p, Rc::new(part?));
        }
        Ok(())
    }

    fn partition(&self, topic: &str, partition: u32) -> Option<Rc<Partition>> {
        self.partitions.owned.borrow().get(topic).and_then(|m| m.get(&partition)).cloned()
    }

    /// The shard of this broker that serves a partition, by this shard's
    /// copy of the metadata: the partition must exist and this broker
    /// must lead it.
    pub fn route(&self, topic: &str, partition: u32) -> Result<u16, (ErrorCode, String)> {
        let md = self.meta.state.borrow();
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

    /// A partition this shard owns, once it is open: a committed change
    /// reaches the shard's copy of the metadata before its partitions are
    /// opened (under the apply lock), so a request routed in between
    /// waits for that rather than call the partition unknown.
    async fn open_partition(&self, topic: &str, partition: u32) -> Option<Rc<Partition>> {
        if let Some(p) = self.partition(topic, partition) {
            return Some(p);
        }
        if self.route(topic, partition).ok() != Some(self.id) {
            return None;
        }
        drop(self.meta.apply_lock.acquire_permit(1).await);
        self.partition(topic, partition)
    }

    /// Like [`Shard::route`], but a topic this copy does not know is looked
    /// up again once the copy holds what the quorum committed: a topic
    /// created through another broker is usable here as soon as its
    /// create returned there.
    async fn route_fresh(&self, topic: &str, partition: u32) -> Result<u16, (ErrorCode, String)> {
        match self.route(topic, partition) {
            Err((ErrorCode::UnknownTopicOrPartition, _)) => {
                self.read_barrier().await;
                self.route(topic, partition)
            }
            r => r,
        }
    }

    // ---- produce ------------------------------------------------------------

    /// Appends validated batches to a partition, wherever it lives.
    pub async fn produce(&self, topic: &str, partition: u32, data: BytesMut, batches: Vec<BatchInfo>, acks: Acks, timeout: Duration) -> ProduceResult {
        match self.route_fresh(topic, partition).await {
            Err((code, m)) => ProduceResult::err(code, m),
            Ok(s) if s == self.id => self.produce_local(topic, partition, data, batches, acks, timeout).await,
            Ok(s) => {
                let (reply, rx) = oneshot::channel();
                let msg = ShardMsg::Partition(PartitionMsg::Produce { topic: topic.to_string(), partition, data, batches, acks, timeout, reply });
                self.ask(s, msg, rx).await.unwrap_or_else(|| ProduceResult::err(ErrorCode::BrokerShuttingDown, "the owning shard is stopping"))
            }
        }
    }

    async fn produce_local(&self, topic: &str, partition: u32, mut data: BytesMut, batches: Vec<BatchInfo>, acks: Acks, timeout: Duration) -> ProduceResult {
        let Some(p) = self.open_partition(topic, partition).await else {
            return ProduceResult::err(ErrorCode::UnknownTopicOrPartition, unknown(topic, partition));
        };
        debug_assert!(self.route(topic, partition).map_or(true, |s| s == self.id), "a shard only touches partitions it owns");
        let turn = p.append_lock.acquire_permit(1).await;
        let log = p.log();
        // A replicated partition: only its leader appends, stamping its
        // epoch into each batch (outside the CRC), and acks=all is refused
        // up front while too few replicas are in sync.
        let epoch = if p.replica.replicated {
            let epoch = match &*p.replica.role.borrow() {
                replica::Role::Leader(l) => {
                    if acks == Acks::All {
                        if let Err(e) = l.acked(0) {
                            return ProduceResult::err(ErrorCode::NotEnoughReplicas, e.to_string());
                        }
                    }
                    l.epoch
                }
                replica::Role::Follower { leader, .. } if *leader == self.config.node_id => {
                    return ProduceResult::err(
                        ErrorCode::NotLeader,
                        format!("partition {partition} of '{topic}': this broker restarted and leads again only once the controller registered it"),
                    )
                }
                replica::Role::Follower { leader, .. } => {
                    return ProduceResult::err(ErrorCode::NotLeader, format!("partition {partition} of '{topic}' is led by broker {leader}"))
                }
            };
            if let Err(e) = p.begin_epoch(epoch, log.next_offset()).await {
                return ProduceResult::err(storage_code(&e), e.to_string());
            }
            Some(epoch)
        } else {
            None
        };
        let mut first = None;
        let mut last = -1;
        for info in &batches {
            let mut batch = data.split_to(info.batch_len as usize);
            // An idempotent producer's batch sent again is answered with
            // where it was stored; one out of sequence or from a fenced
            // epoch is refused (Kafka's KIP-98).
            let refused = match p.producers.borrow().check(info) {
                Verdict::Append => None,
                Verdict::Duplicate { first_offset, last_offset } => {
                    first.get_or_insert(first_offset);
                    last = last.max(last_offset);
                    continue;
                }
                Verdict::OutOfOrder { expected, got } => Some((
                    ErrorCode::OutOfOrderSequence,
                    format!("producer {} sent sequence {got} to partition {partition} of '{topic}', which expects {expected}", info.producer_id),
                )),
                Verdict::StaleEpoch { current, got } => Some((
                    ErrorCode::InvalidProducerEpoch,
                    format!("producer {} is at epoch {current}, not {got}: a newer instance replaced this one", info.producer_id),
                )),
            };
            if let Some((code, m)) = refused {
                p.appended.notify();
                return ProduceResult::err(code, m);
            }
            if let Some(e) = epoch {
                crate::record::set_leader_epoch(&mut batch, e);
            }
            match log.append(batch, info).await {
                Ok(a) => {
                    crate::metrics::produced(topic, u64::from(info.batch_len), u64::from(info.record_count));
                    p.producers.borrow_mut().record(info, a.base_offset);
                    first.get_or_insert(a.base_offset);
                    last = a.last_offset;
                }
                Err(e) => {
                    p.appended.notify();
                    Partition::recover_from(&p, &e, self.partitions.memory.clone());
                    return ProduceResult::err(storage_code(&e), e.to_string());
                }
            }
        }
        p.appended.notify();
        drop(turn);
        if let Some(epoch) = epoch {
            // The leader's own copy counts once synced: sync in the
            // background whatever the acks, then move the watermark.
            let (part, synced_log, memory) = (p.clone(), log.clone(), self.partitions.memory.clone());
            rt::spawn(async move {
                match synced_log.wait_synced(last).await {
                    Ok(()) => part.advance_hw(),
                    Err(e) => Partition::recover_from(&part, &e, memory),
                }
            });
            // acks=all: a majority of replicas holds it synced.
            let r = match acks {
                Acks::All => self.wait_replicated(&p, epoch, last + 1, timeout).await,
                Acks::Leader => match rt::timeout(timeout, log.wait(last, false)).await {
                    None => Err((ErrorCode::RequestTimedOut, format!("not written within {} ms", timeout.as_millis()))),
                    Some(Err(e)) => {
                        Partition::recover_from(&p, &e, self.partitions.memory.clone());
                        Err((storage_code(&e), e.to_string()))
                    }
                    Some(Ok(())) => Ok(()),
                },
                Acks::None => Ok(()),
            };
            if let Err((code, m)) = r {
                return ProduceResult::err(code, m);
            }
        } else if acks != Acks::None {
            // acks=1: the direct write completed (survives a crash of the
            // process); acks=all: an fdatasync after it (survives the host's).
            let (synced, what) = if acks == Acks::All { (true, "synced") } else { (false, "written") };
            match rt::timeout(timeout, log.wait(last, synced)).await {
                None => return ProduceResult::err(ErrorCode::RequestTimedOut, format!("not {what} within {} ms", timeout.as_millis())),
                Some(Err(e)) => {
                    Partition::recover_from(&p, &e, self.partitions.memory.clone());
                    return ProduceResult::err(storage_code(&e), e.to_string());
                }
                Some(Ok(())) => {}
            }
        }
        // Long polls wake when the writes complete (`written_moved`); a
        // failed write of an acks=0 batch is found by the next append.
        ProduceResult { error: ErrorCode::None, message: None, base_offset: first.unwrap_or(-1), log_start_offset: log.log_start_offset() }
    }

    /// The offset consumers may read up to: the high watermark of a
    /// replicated partition this broker leads, what is written otherwise
    /// (never an append whose write may still fail: a failed write cuts
    /// the log back to what was written, and those offsets are given
    /// again). `None` when a replicated partition is not led here.
    fn visible_end(p: &Partition) -> Option<i64> {
        if !p.replica.replicated {
            return Some(p.log().written_offset());
        }
        p.replica.leading().map(|_| p.replica.hw.get())
    }

    // ---- fetch --------------------------------------------------------------

    /// Reads from a local partition. With `wait_until`, waits (long poll)
    /// until the partition has something at `offset` or the time passes.
    async fn fetch_local(&self, topic: &str, partition: u32, offset: i64, max_bytes: usize, wait_until: Option<Instant>) -> FetchResult<Chunk> {
        let Some(p) = self.open_partition(topic, partition).await else {
            return FetchResult::err(ErrorCode::UnknownTopicOrPartition, unknown(topic, partition));
        };
        let not_leader = || FetchResult::err(ErrorCode::NotLeader, format!("partition {partition} of '{topic}' is not led by this broker"));
        let Some(mut end) = Self::visible_end(&p) else { return not_leader() };
        if let Some(until) = wait_until {
            while end <= offset && self.wait_for_append(&p, until).await {
                let Some(e) = Self::visible_end(&p) else { return not_leader() };
                end = e;
            }
        }
        let log = p.log();
        // Past the visible end but within the log: nothing yet, not an error.
        let read = if p.replica.replicated && offset > end && offset <= log.next_offset() {
            Ok(crate::storage::ReadOutput { log_start_offset: log.log_start_offset(), ..Default::default() })
        } else {
            log.read_below(offset, max_bytes, end).await
        };
        match read {
            Ok(out) => FetchResult {
                error: ErrorCode::None,
                message: None,
                high_watermark: end,
                log_start_offset: out.log_start_offset,
                chunks: out.chunks,
                bytes: out.bytes,
            },
            Err(e) => {
                let mut r = FetchResult::err(storage_code(&e), e.to_string());
                r.high_watermark = end;
                r.log_start_offset = log.log_start_offset();
                r
            }
        }
    }

    /// Waits until `p` appends or moves its high watermark, the shard
    /// stops, or `until` passes; false once waiting is over.
    async fn wait_for_append(&self, p: &Partition, until: Instant) -> bool {
        let now = Instant::now();
        if now >= until || self.is_shutting_down() {
            return false;
        }
        let log = p.log();
        let woken = std::pin::pin!(async {
            let (appended, written, shutdown) =
                (std::pin::pin!(p.appended.listen()), std::pin::pin!(log.written_moved()), std::pin::pin!(self.shutdown.listen()));
            futures::future::select(futures::future::select(appended, written), shutdown).await;
        });
        rt::timeout(until - now, woken).await;
        true
    }

    /// Reads from a partition wherever it lives. A remote read comes back as
    /// `Bytes`: a direct-read buffer belongs to the executor that read it, so
    /// bytes read from disk on another shard are copied once to cross over.
    pub async fn fetch(&self, topic: &str, partition: u32, offset: i64, max_bytes: usize, wait_until: Option<Instant>) -> FetchResult<Chunk> {
        match self.route_fresh(topic, partition).await {
            Err((code, m)) => FetchResult::err(code, m),
            Ok(s) if s == self.id => self.fetch_local(topic, partition, offset, max_bytes, wait_until).await,
            Ok(s) => {
                let (reply, rx) = oneshot::channel();
                let msg = ShardMsg::Partition(PartitionMsg::Fetch { topic: topic.to_string(), partition, offset, max_bytes, wait_until, reply });
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
        match self.route_fresh(topic, partition).await {
            Err((code, m)) => bad(code, m),
            Ok(s) if s == self.id => {
                let Some(p) = self.open_partition(topic, partition).await else {
                    return bad(ErrorCode::UnknownTopicOrPartition, unknown(topic, partition));
                };
                let ok = |offset, timestamp| OffsetResult { error: ErrorCode::None, message: None, offset, timestamp };
                let Some(end) = Self::visible_end(&p) else {
                    return bad(ErrorCode::NotLeader, format!("partition {partition} of '{topic}' is not led by this broker"));
                };
                let log = p.log();
                match timestamp {
                    -2 => ok(log.log_start_offset(), -1),
                    -1 => ok(end, -1),
                    ts if ts >= 0 => match log.offset_for_timestamp(ts).await {
                        Ok(Some((o, t))) if o < end => ok(o, t),
                        Ok(_) => ok(end, -1),
                        Err(e) => bad(storage_code(&e), e.to_string()),
                    },
                    ts => bad(ErrorCode::InvalidRequest, format!("timestamp {ts} is neither -2, -1 nor a time")),
                }
            }
            Ok(s) => {
                let (reply, rx) = oneshot::channel();
                let msg = ShardMsg::Partition(PartitionMsg::ListOffset { topic: topic.to_string(), partition, timestamp, reply });
                self.ask(s, msg, rx).await.unwrap_or_else(|| bad(ErrorCode::BrokerShuttingDown, "the owning shard is stopping".into()))
            }
        }
    }

    // ---- epoch ends -----------------------------------------------------------

    /// Where `epoch` ended in a partition this broker leads, for a client
    /// that last saw the partition led in `current_epoch` (-1: any), which
    /// is fenced if older than the leader's and told to retry if newer.
    pub async fn epoch_end(&self, topic: &str, partition: u32, current_epoch: i32, epoch: i32) -> EpochEnd {
        match self.route_fresh(topic, partition).await {
            Err((code, _)) => EpochEnd::err(code),
            Ok(s) if s == self.id => {
                let Some(p) = self.open_partition(topic, partition).await else {
                    return EpochEnd::err(ErrorCode::UnknownTopicOrPartition);
                };
                let leader_epoch = if p.replica.replicated {
                    match p.replica.leading() {
                        Some(e) => e,
                        None => return EpochEnd::err(ErrorCode::NotLeader),
                    }
                } else {
                    let md = self.metadata();
                    md.topics.get(topic).and_then(|t| t.partitions.get(partition as usize)).map_or(0, |m| m.leader_epoch)
                };
                let Ok(leader_epoch) = i32::try_from(leader_epoch) else { return EpochEnd::err(ErrorCode::UnknownServerError) };
                match current_epoch {
                    -1 => {}
                    c if c < leader_epoch => return EpochEnd::err(ErrorCode::FencedLeaderEpoch),
                    c if c > leader_epoch => return EpochEnd::err(ErrorCode::UnknownLeaderEpoch),
                    _ => {}
                }
                let log_end = p.log().next_offset();
                let ended = |(e, o): (u32, i64)| EpochEnd { error: ErrorCode::None, leader_epoch: e as i32, end_offset: o };
                match u32::try_from(epoch) {
                    Err(_) => EpochEnd::UNDEFINED,
                    Ok(_) if epoch > leader_epoch => EpochEnd::UNDEFINED,
                    // The leader's own epoch runs to the log's end; so does
                    // every epoch of a partition of one replica, which keeps
                    // no history: nothing it acknowledged is ever cut.
                    Ok(e) if epoch == leader_epoch || !p.replica.replicated => ended((e, log_end)),
                    Ok(e) => {
                        let h = p.replica.epochs.borrow();
                        match h.end_of(e, log_end) {
                            Some(found) => ended(found),
                            // Older than the log's first epoch: Kafka
                            // answers that epoch ended where the log's
                            // first epoch began.
                            None => h.first_start().map_or(EpochEnd::UNDEFINED, |o| ended((e, o))),
                        }
                    }
                }
            }
            Ok(s) => {
                let (reply, rx) = oneshot::channel();
                let msg = ShardMsg::Partition(PartitionMsg::EpochEnd { topic: topic.to_string(), partition, current_epoch, epoch, reply });
                self.ask(s, msg, rx).await.unwrap_or(EpochEnd::err(ErrorCode::BrokerShuttingDown))
            }
        }
    }

    // ---- messages -----------------------------------------------------------

    async fn ask<R>(&self, to: u16, msg: ShardMsg, rx: oneshot::Receiver<R>) -> Option<R> {
        self.mesh.send(to, msg).await.ok()?;
        rx.await.ok()
    }

    /// Serves one message from another shard: its component does.
    pub async fn serve(self: Rc<Self>, msg: ShardMsg) {
        match msg {
            ShardMsg::Partition(m) => self.serve_partition(m).await,
            ShardMsg::Metadata(m) => self.serve_metadata(m).await,
            ShardMsg::Group(m) => self.serve_group(m).await,
            ShardMsg::Replica(m) => self.serve_replica(m).await,
            ShardMsg::Metrics(m) => self.serve_metrics(m).await,
        }
    }

    async fn serve_partition(&self, msg: PartitionMsg) {
        match msg {
            PartitionMsg::Produce { topic, partition, data, batches, acks, timeout, reply } => {
                let _ = reply.send(self.produce_local(&topic, partition, data, batches, acks, timeout).await);
            }
            PartitionMsg::Fetch { topic, partition, offset, max_bytes, wait_until, reply } => {
                let _ = reply.send(self.fetch_local(&topic, partition, offset, max_bytes, wait_until).await.into_sendable());
            }
            PartitionMsg::ListOffset { topic, partition, timestamp, reply } => {
                let _ = reply.send(self.list_offset(&topic, partition, timestamp).await);
            }
            PartitionMsg::EpochEnd { topic, partition, current_epoch, epoch, reply } => {
                let _ = reply.send(self.epoch_end(&topic, partition, current_epoch, epoch).await);
            }
        }
    }

    // ---- housekeeping -------------------------------------------------------

    /// Applies retention to every partition of this shard, now and then.
    pub async fn retention_loop(self: Rc<Self>) {
        let every = Duration::from_millis(self.config.retention_check_interval_ms.max(10));
        while !self.is_shutting_down() {
            rt::timeout(every, self.shutdown.listen()).await;
            let parts: Vec<Rc<Partition>> = self.partitions.owned.borrow().values().flat_map(|m| m.values().cloned()).collect();
            let now_ms = crate::time::now_ms();
            for p in parts {
                if let Err(e) = p.log().enforce_retention(now_ms).await {
                    tracing::warn!(error = %e, "retention failed");
                }
                if let Err(e) = p.snapshot_producers(self.producer_expiry(now_ms)).await {
                    tracing::warn!(dir = %p.dir.display(), error = %e, "could not write the producer snapshot");
                }
            }
        }
    }

    /// Stops serving: wakes long polls, then flushes and closes every log.
    pub async fn close(&self) {
        self.shutting_down.set(true);
        self.shutdown.notify();
        let parts: Vec<Rc<Partition>> = self.partitions.owned.borrow().values().flat_map(|m| m.values().cloned()).collect();
        let expiry = self.producer_expiry(crate::time::now_ms());
        for p in parts {
            if let Err(e) = p.log().close().await {
                tracing::error!(error = %e, "closing a log failed");
            }
            if let Err(e) = p.snapshot_producers(expiry).await {
                tracing::warn!(dir = %p.dir.display(), error = %e, "could not write the producer snapshot");
            }
        }
    }

    /// Marks the shard as stopping, so connections stop taking requests.
    pub fn begin_shutdown(&self) {
        self.shutting_down.set(true);
        self.shutdown.notify();
    }
}
