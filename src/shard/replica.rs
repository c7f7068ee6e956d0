//! Replication between brokers, the shard's side: the IO around the
//! sans-IO decisions of `cluster::replication`.
//!
//! - A leader stamps its epoch into every batch it stores, answers its
//!   followers' `ReplicaFetch` with the stored batches unchanged, moves
//!   the high watermark to what every in-sync replica holds synced, and
//!   answers acks=all once the watermark passes the batch. It asks the
//!   quorum to shrink or grow the ISR as followers fall behind or catch up.
//! - A follower's shard runs one fetcher per leading broker: it asks for
//!   every partition it follows from that broker, appends the batches at
//!   the leader's offsets, syncs them, and reports both in its next fetch.
//!   A follower whose log diverges cuts its tail and fetches again.
//!
//! Invariants: a partition's replication state lives on its owning shard
//! and is changed only there; a role changes only when the shard's copy of
//! the metadata does; an epoch is written to the partition's epoch file
//! before the first batch of that epoch is appended, so after a crash the
//! file never lacks an epoch the log holds; consumers of a replicated
//! partition read only below the high watermark.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use flatbuffers::FlatBufferBuilder;
use futures::channel::oneshot;
use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures::StreamExt;

use super::{storage_code, FetchResult, Partition, Shard, ShardMsg};
use crate::cluster::metadata::{Command, NodeId, NO_LEADER};
pub(super) use crate::cluster::replication::Role;
use crate::cluster::replication::{follower_cut, follower_high_watermark, Assignment, EpochHistory, FetchVerdict};
use crate::protocol::{self, replica_fetch, ErrorCode};
use crate::record;
use crate::rt;
use crate::storage::{file, Chunk, PartitionLog, StorageError};

/// Longest a leader holds a replica fetch that found nothing new.
pub const REPLICA_FETCH_WAIT: Duration = Duration::from_millis(500);
/// Bytes a follower asks for per fetch (the first batch of each partition
/// always comes whole).
pub const REPLICA_FETCH_MAX_BYTES: u32 = 8 << 20;
/// How often a shard looks at its leaders' ISRs and its followers' fetchers.
pub const REPLICATION_TICK: Duration = Duration::from_millis(100);
/// How long a follower waits before it tries a leader it could not reach.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(200);
/// How often a log whose write failed is tried again (cut and reopened)
/// while reopening it fails.
pub const STORAGE_RETRY: Duration = Duration::from_secs(1);
/// The name of a partition's epoch file, beside its segments.
const EPOCHS_FILE: &str = "leader-epochs";

/// Each replica's lag in messages behind its leader, by partition.
pub type Lags = Vec<(u32, Vec<(NodeId, i64)>, crate::protocol::metadata::PartitionFigures)>;

/// A shard's replication: its partitions' roles and the followers' fetch
/// loops that follow them.
#[derive(Default)]
pub(super) struct Replication {
    /// Notified when a partition of this shard starts leading or following.
    pub(super) roles_changed: rt::Event,
}

/// What shards ask of each other about replicas.
pub enum ReplicaMsg {
    /// The lag of each replica of the partitions of a topic this shard leads.
    Lags { topic: String, reply: oneshot::Sender<Lags> },
    /// A follower's fetch of one partition this shard owns.
    ReplicaFetch { replica: NodeId, part: ReplicaFetchPart, max_bytes: usize, wait_until: Option<Instant>, reply: oneshot::Sender<ReplicaFetchResult<Bytes>> },
}

/// The replication state of one partition on its owning shard.
pub(super) struct Replica {
    /// Replication factor above 1: a partition of one replica keeps the
    /// single-broker behaviour (no epochs, consumers read the whole log).
    pub replicated: bool,
    pub role: RefCell<Role>,
    pub epochs: RefCell<EpochHistory>,
    /// The high watermark: the leader's own, or the last a follower heard.
    pub hw: Cell<i64>,
    /// Notified when the high watermark moves or the role changes.
    pub hw_moved: rt::Event,
}

impl Replica {
    /// A replica's state as its files left it: the epoch file is read,
    /// and epochs past the log's end (a crash lost their batches) dropped.
    pub fn load(dir: &Path, replicated: bool, log_end: i64) -> Replica {
        let mut epochs = EpochHistory::default();
        if replicated {
            match std::fs::read(dir.join(EPOCHS_FILE)) {
                Ok(bytes) => match EpochHistory::decode(&bytes) {
                    Ok(h) => epochs = h,
                    // Without it, the leader's answer cuts this replica's
                    // log to nothing and it fetches everything again.
                    Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "damaged epoch file; this replica will copy its log again"),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "unreadable epoch file"),
            }
            epochs.truncate(log_end);
        }
        Replica {
            replicated,
            role: RefCell::new(Role::Follower { leader: NO_LEADER, epoch: 0 }),
            epochs: RefCell::new(epochs),
            hw: Cell::new(0),
            hw_moved: rt::Event::default(),
        }
    }

    /// The epoch this broker leads the partition in, if it does.
    pub fn leading(&self) -> Option<u32> {
        match &*self.role.borrow() {
            Role::Leader(l) => Some(l.epoch),
            Role::Follower { .. } => None,
        }
    }
}

/// One partition of a replica fetch, as the follower asks.
#[derive(Debug, Clone)]
pub struct ReplicaFetchPart {
    pub topic: String,
    pub partition: u32,
    pub leader_epoch: u32,
    pub fetch_offset: i64,
    pub synced_offset: i64,
    pub last_epoch: i64,
}

impl ReplicaFetchPart {
    pub fn new(topic: &str, p: &replica_fetch::Partition) -> Self {
        ReplicaFetchPart {
            topic: topic.to_string(),
            partition: p.partition,
            leader_epoch: p.leader_epoch,
            fetch_offset: p.fetch_offset,
            synced_offset: p.synced_offset,
            last_epoch: p.last_epoch,
        }
    }

    fn wire(&self) -> replica_fetch::Partition {
        replica_fetch::Partition {
            partition: self.partition,
            leader_epoch: self.leader_epoch,
            fetch_offset: self.fetch_offset,
            synced_offset: self.synced_offset,
            last_epoch: self.last_epoch,
        }
    }
}

/// The leader's answer for one partition; `C` as in [`FetchResult`].
#[derive(Debug)]
pub struct ReplicaFetchResult<C> {
    pub fetch: FetchResult<C>,
    pub log_end: i64,
    /// The follower's log diverges: `(epoch, end)` per KIP-279 (`-1, 0`:
    /// the leader has no epoch that old).
    pub diverging: Option<(i64, i64)>,
}

impl<C> ReplicaFetchResult<C> {
    fn err(code: ErrorCode, msg: impl Into<String>) -> Self {
        ReplicaFetchResult { fetch: FetchResult::err(code, msg), log_end: -1, diverging: None }
    }
}

impl Partition {
    /// Closes the log (a failed one without writing anything more), cuts
    /// it before `offset` and opens it again; returns the new end.
    async fn reopen_cut(&self, offset: i64, memory: Rc<crate::storage::ShardMemory>) -> Result<i64, StorageError> {
        let old = self.log();
        old.close().await?;
        let end = PartitionLog::cut(&self.dir, offset).await?;
        let log = PartitionLog::open_on_shard(&self.dir, self.config.clone(), memory).await?;
        *self.log.borrow_mut() = log;
        // The windows may name batches the cut removed.
        self.rebuild_producers().await?;
        Ok(end)
    }

    /// After `e` on this partition's log: if the log failed (the disk
    /// refused a write or a sync: full, or an I/O error), cut it back to
    /// what was written and open it again, in the background, retried every
    /// `STORAGE_RETRY` until it works or the partition is gone. Nothing
    /// past the written offset was visible to anyone (consumers and
    /// followers read below it), so the offsets given again were never
    /// seen; what was acknowledged (acks=1: written; all: synced) stays.
    pub(super) fn recover_from(part: &Rc<Partition>, e: &StorageError, memory: Rc<crate::storage::ShardMemory>) {
        if !matches!(e, StorageError::Failed(_)) || !part.log().failed() || part.recovering.replace(true) {
            return;
        }
        let part = part.clone();
        rt::spawn(async move {
            loop {
                let turn = part.append_lock.acquire_permit(1).await;
                let written = part.log().written_offset();
                let r = part.reopen_cut(written, memory.clone()).await;
                drop(turn);
                match r {
                    Ok(end) => {
                        debug_assert_eq!(end, written, "a log is cut at a batch boundary it wrote");
                        tracing::warn!(dir = %part.dir.display(), end, "a write failed; the log is cut back to what was written and takes writes again");
                        part.replica.hw.set(part.replica.hw.get().min(end));
                        break;
                    }
                    Err(e) => tracing::warn!(dir = %part.dir.display(), error = %e, "could not reopen a failed log; retrying"),
                }
                rt::sleep(STORAGE_RETRY).await;
                // Deleted meanwhile: this task holds the last reference.
                if Rc::strong_count(&part) == 1 {
                    return;
                }
            }
            part.recovering.set(false);
            part.appended.notify();
        });
    }

    /// Writes `epoch` as begun at the log's end, if it is new to this
    /// replica, before any batch of it is appended.
    pub(super) async fn begin_epoch(&self, epoch: u32, at: i64) -> Result<(), StorageError> {
        let bytes = {
            let mut h = self.replica.epochs.borrow_mut();
            if h.last_epoch().is_some_and(|e| e >= epoch) {
                return Ok(());
            }
            h.begin(epoch, at);
            h.encode()
        };
        self.write_epochs(&bytes).await
    }

    /// Replaces the partition's epoch file (written whole, atomically).
    async fn write_epochs(&self, bytes: &[u8]) -> Result<(), StorageError> {
        file::write_atomic(&self.dir.join(EPOCHS_FILE), bytes).await?;
        Ok(())
    }

    /// The leader moves its high watermark to what its ISR holds synced,
    /// and wakes who waits for it.
    pub(super) fn advance_hw(&self) {
        let synced = self.log().synced_offset();
        let moved = match &mut *self.replica.role.borrow_mut() {
            Role::Leader(l) => l.advance(synced),
            Role::Follower { .. } => None,
        };
        if let Some(hw) = moved {
            self.replica.hw.set(hw);
            self.replica.hw_moved.notify();
            self.appended.notify();
        }
    }

    /// Closes the log, cuts it before `offset`, and opens it again.
    async fn cut(&self, offset: i64, memory: Rc<crate::storage::ShardMemory>) -> Result<i64, StorageError> {
        let end = self.reopen_cut(offset, memory).await?;
        let bytes = {
            let mut h = self.replica.epochs.borrow_mut();
            h.truncate(end);
            h.encode()
        };
        self.write_epochs(&bytes).await?;
        self.replica.hw.set(self.replica.hw.get().min(end));
        Ok(end)
    }
}

impl Shard {
    /// Brings every replicated partition's role in line with this shard's
    /// copy of the metadata: a new leader starts counting its followers,
    /// a new follower starts (or keeps) fetching from its leader.
    pub(super) fn reconcile_replicas(&self) {
        let me = self.config.node_id;
        let now = crate::time::now_ms() as u64;
        let md = self.meta.state.borrow();
        // A broker leads only once the controller registered this process:
        // until then the metadata's leadership is that of the process before
        // a restart (whose unsynced tail may be gone), and registering the
        // new process is what gives its partitions a new epoch.
        let registered = md.brokers.get(&me).is_some_and(|b| b.incarnation == self.incarnation && !b.fenced);
        let parts = self.partitions.owned.borrow();
        let mut any = false;
        for (topic, map) in parts.iter() {
            let Some(t) = md.topics.get(topic) else { continue };
            for (&pi, p) in map {
                let Some(meta) = t.partitions.get(pi as usize) else { continue };
                if !p.replica.replicated {
                    continue;
                }
                let replicas: Vec<NodeId> = meta.replicas.iter().map(|r| r.broker).collect();
                let assignment = Assignment {
                    leader: meta.leader,
                    leader_epoch: meta.leader_epoch,
                    partition_epoch: meta.partition_epoch,
                    replicas: &replicas,
                    isr: &meta.isr,
                };
                let mut role = p.replica.role.borrow_mut();
                let end = p.log().next_offset();
                let isr_before = match &*role {
                    Role::Leader(l) => Some((l.epoch, l.isr.len())),
                    Role::Follower { .. } => None,
                };
                let changed = role.reconcile(me, registered, &assignment, end, p.replica.hw.get(), now);
                // The ISR of a partition led here moved (its leader asked, or
                // the controller took a fenced broker out).
                if let (Some((epoch, before)), Role::Leader(l)) = (isr_before, &*role) {
                    if l.epoch == epoch && l.isr.len() != before {
                        crate::metrics::count(|c| if l.isr.len() < before { c.isr_shrinks += 1 } else { c.isr_expands += 1 });
                    }
                }
                if changed {
                    match &*role {
                        Role::Leader(_) => {
                            crate::metrics::count(|c| c.leader_elections += 1);
                            tracing::info!(%topic, partition = pi, epoch = meta.leader_epoch, log_end = end, "leading")
                        }
                        Role::Follower { .. } => tracing::info!(%topic, partition = pi, leader = meta.leader, epoch = meta.leader_epoch, "following"),
                    }
                }
                drop(role);
                if changed {
                    any = true;
                    p.replica.hw_moved.notify();
                    p.appended.notify();
                }
            }
        }
        if any {
            self.replication.roles_changed.notify();
        }
    }

    pub(super) async fn serve_replica(&self, msg: ReplicaMsg) {
        match msg {
            ReplicaMsg::Lags { topic, reply } => {
                let _ = reply.send(self.lags_local(&topic));
            }
            ReplicaMsg::ReplicaFetch { replica, part, max_bytes, wait_until, reply } => {
                let r = self.replica_fetch_local(replica, &part, max_bytes, wait_until).await;
                let _ = reply.send(ReplicaFetchResult { fetch: r.fetch.into_sendable(), log_end: r.log_end, diverging: r.diverging });
            }
        }
    }

    /// Each replica's lag behind this shard's leaders of `topic`, in
    /// messages, by partition (the followers' log ends as last fetched),
    /// with the leader's offsets and size (for a partition of one replica,
    /// no lags and its offsets and size).
    pub(super) fn lags_local(&self, topic: &str) -> Lags {
        let parts = self.partitions.owned.borrow();
        let Some(map) = parts.get(topic) else { return Vec::new() };
        let mut out = Vec::new();
        for (&pi, p) in map {
            let st = p.log().stats();
            if !p.replica.replicated {
                out.push((pi, Vec::new(), p.figures(&st)));
            } else if let Role::Leader(l) = &*p.replica.role.borrow() {
                let end = st.next_offset;
                let mut lags = vec![(l.me, 0)];
                lags.extend(l.followers().map(|(id, f)| (id, if f.fetched { (end - f.log_end).max(0) } else { -1 })));
                out.push((pi, lags, p.figures(&st)));
            }
        }
        out
    }

    /// [`lags_local`](Self::lags_local) over every shard of this broker.
    pub async fn lags(&self, topic: &str) -> Lags {
        let mut out = self.lags_local(topic);
        for s in self.mesh.peers() {
            let (reply, rx) = futures::channel::oneshot::channel();
            if let Some(more) = self.ask(s, ShardMsg::Replica(ReplicaMsg::Lags { topic: topic.to_string(), reply }), rx).await {
                out.extend(more);
            }
        }
        out
    }

    // ---- the leader's side --------------------------------------------------

    /// Answers one partition of a follower's fetch, on the owning shard.
    pub(super) async fn replica_fetch_local(
        &self,
        replica: NodeId,
        q: &ReplicaFetchPart,
        max_bytes: usize,
        wait_until: Option<Instant>,
    ) -> ReplicaFetchResult<Chunk> {
        let Some(p) = self.open_partition(&q.topic, q.partition).await else {
            return ReplicaFetchResult::err(ErrorCode::UnknownTopicOrPartition, super::unknown(&q.topic, q.partition));
        };
        let log = p.log();
        let end = log.next_offset();
        let verdict = match &*p.replica.role.borrow() {
            Role::Leader(l) => l.judge_fetch(&p.replica.epochs.borrow(), end, replica, q.leader_epoch, q.fetch_offset, q.last_epoch),
            Role::Follower { .. } => {
                return ReplicaFetchResult::err(ErrorCode::NotLeader, format!("broker {} does not lead {}/{}", self.config.node_id, q.topic, q.partition))
            }
        };
        let part = || format!("{}/{}", q.topic, q.partition);
        match verdict {
            FetchVerdict::Serve => {}
            FetchVerdict::FencedEpoch => {
                return ReplicaFetchResult::err(ErrorCode::FencedLeaderEpoch, format!("{}: epoch {} is older than the leader's", part(), q.leader_epoch))
            }
            FetchVerdict::NewerEpoch => {
                return ReplicaFetchResult::err(ErrorCode::NotLeader, format!("{}: epoch {} is newer than this leader's", part(), q.leader_epoch))
            }
            FetchVerdict::NotAReplica => return ReplicaFetchResult::err(ErrorCode::InvalidRequest, format!("broker {replica} holds no replica of {}", part())),
            FetchVerdict::Diverging(answer) => {
                let mut r = ReplicaFetchResult::err(ErrorCode::None, "");
                r.fetch.message = None;
                r.fetch.high_watermark = p.replica.hw.get();
                r.log_end = end;
                r.diverging = Some(answer.map_or((-1, 0), |(e, o)| (i64::from(e), o)));
                return r;
            }
        }
        if let Role::Leader(l) = &mut *p.replica.role.borrow_mut() {
            l.on_fetch(replica, q.fetch_offset, q.synced_offset, end, crate::time::now_ms() as u64);
        }
        p.advance_hw();
        // Followers copy only what the leader wrote: a failed write cuts
        // the leader's log back to it, so no follower holds an offset the
        // leader gives again.
        if let Some(until) = wait_until {
            while p.log().written_offset() <= q.fetch_offset && p.replica.leading().is_some() && self.wait_for_append(&p, until).await {}
        }
        let log = p.log();
        let mut r = match log.read_below(q.fetch_offset, max_bytes, log.written_offset()).await {
            Ok(out) => FetchResult {
                error: ErrorCode::None,
                message: None,
                high_watermark: 0,
                log_start_offset: out.log_start_offset,
                chunks: out.chunks,
                bytes: out.bytes,
            },
            Err(e) => FetchResult::err(storage_code(&e), e.to_string()),
        };
        r.high_watermark = p.replica.hw.get();
        ReplicaFetchResult { fetch: r, log_end: log.written_offset(), diverging: None }
    }

    /// Answers one partition of a replica fetch wherever it lives on this
    /// broker (the owning shard's bytes cross shards like a fetch's).
    pub async fn replica_fetch(&self, replica: NodeId, q: ReplicaFetchPart, max_bytes: usize, wait_until: Option<Instant>) -> ReplicaFetchResult<Chunk> {
        let owner = {
            let md = self.meta.state.borrow();
            md.topics.get(&q.topic).and_then(|t| t.shard_on(q.partition, self.config.node_id, self.nr_shards()))
        };
        match owner {
            None => ReplicaFetchResult::err(ErrorCode::UnknownTopicOrPartition, super::unknown(&q.topic, q.partition)),
            Some(s) if s == self.id => self.replica_fetch_local(replica, &q, max_bytes, wait_until).await,
            Some(s) => {
                let (reply, rx) = futures::channel::oneshot::channel();
                match self.ask(s, ShardMsg::Replica(ReplicaMsg::ReplicaFetch { replica, part: q, max_bytes, wait_until, reply }), rx).await {
                    Some(r) => ReplicaFetchResult {
                        fetch: FetchResult {
                            error: r.fetch.error,
                            message: r.fetch.message,
                            high_watermark: r.fetch.high_watermark,
                            log_start_offset: r.fetch.log_start_offset,
                            bytes: r.fetch.bytes,
                            chunks: r.fetch.chunks.into_iter().map(Chunk::Mem).collect(),
                        },
                        log_end: r.log_end,
                        diverging: r.diverging,
                    },
                    None => ReplicaFetchResult::err(ErrorCode::BrokerShuttingDown, "the owning shard is stopping"),
                }
            }
        }
    }

    /// Waits until the high watermark passes `end` (acks=all on a
    /// replicated partition), the leadership ends, the ISR is too small,
    /// or `timeout` passes.
    pub(super) async fn wait_replicated(&self, p: &Partition, epoch: u32, end: i64, timeout: Duration) -> Result<(), (ErrorCode, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            match &*p.replica.role.borrow() {
                Role::Leader(l) if l.epoch == epoch => match l.acked(end) {
                    Ok(true) => return Ok(()),
                    Ok(false) => {}
                    Err(e) => return Err((ErrorCode::NotEnoughReplicas, e.to_string())),
                },
                _ => return Err((ErrorCode::NotLeader, "leadership moved before the batch was replicated; it may or may not be kept".into())),
            }
            let now = Instant::now();
            if now >= deadline || self.is_shutting_down() {
                return Err((ErrorCode::RequestTimedOut, format!("not replicated to the in-sync replicas within {} ms", timeout.as_millis())));
            }
            let woken = std::pin::pin!(async {
                futures::future::select(std::pin::pin!(p.replica.hw_moved.listen()), std::pin::pin!(self.shutdown.listen())).await;
            });
            rt::timeout(deadline - now, woken).await;
        }
    }

    // ---- the loop: ISR changes and fetchers ---------------------------------

    /// Every [`REPLICATION_TICK`] (and when roles change): proposes the
    /// ISR changes this shard's leaders want, and starts a fetcher for
    /// each broker this shard's followers follow.
    pub async fn replication_loop(self: Rc<Self>) {
        let fetchers: Rc<RefCell<HashSet<NodeId>>> = Rc::default();
        while !self.is_shutting_down() {
            let tick = std::pin::pin!(rt::sleep(REPLICATION_TICK));
            let changed = std::pin::pin!(self.replication.roles_changed.listen());
            let stop = std::pin::pin!(self.shutdown.listen());
            futures::future::select(tick, futures::future::select(changed, stop)).await;
            let now = crate::time::now_ms() as u64;
            let lag = self.config.replica_lag_max_ms;
            let mut leaders = HashSet::new();
            let mut proposals = Vec::new();
            let fenced: Vec<NodeId> = self.meta.state.borrow().brokers.values().filter(|b| b.fenced).map(|b| b.id).collect();
            for (topic, map) in self.partitions.owned.borrow().iter() {
                for (&pi, p) in map {
                    match &mut *p.replica.role.borrow_mut() {
                        Role::Leader(l) => {
                            if let Some(isr) = l.wanted_isr(now, lag, |b| fenced.contains(&b)) {
                                l.isr_proposed(isr.clone());
                                proposals.push((p.clone(), topic.clone(), pi, l.epoch, l.partition_epoch, isr));
                            }
                        }
                        Role::Follower { leader, .. } if *leader != NO_LEADER && *leader != self.config.node_id => {
                            leaders.insert(*leader);
                        }
                        Role::Follower { .. } => {}
                    }
                }
            }
            for (p, topic, partition, leader_epoch, partition_epoch, isr) in proposals {
                let shard = self.clone();
                rt::spawn(async move {
                    tracing::info!(%topic, partition, ?isr, "asking the quorum to change the ISR");
                    let cmd = Command::AlterIsr { topic: topic.clone(), partition, leader_epoch, partition_epoch, isr };
                    let ok = matches!(shard.propose(cmd).await, Ok(o) if o.results.iter().all(|r| r.is_ok()));
                    if !ok {
                        if let Role::Leader(l) = &mut *p.replica.role.borrow_mut() {
                            l.isr_refused();
                        }
                    }
                });
            }
            for leader in leaders {
                if fetchers.borrow_mut().insert(leader) {
                    let (shard, fetchers) = (self.clone(), fetchers.clone());
                    rt::spawn(async move {
                        shard.fetcher(leader).await;
                        fetchers.borrow_mut().remove(&leader);
                    });
                }
            }
        }
    }

    // ---- the follower's side ------------------------------------------------

    /// The partitions of this shard that follow `leader`, with the epoch.
    fn following(&self, leader: NodeId) -> Vec<(String, u32, Rc<Partition>, u32)> {
        let mut out = Vec::new();
        for (topic, map) in self.partitions.owned.borrow().iter() {
            for (&pi, p) in map {
                if let Role::Follower { leader: l, epoch } = &*p.replica.role.borrow() {
                    if *l == leader {
                        out.push((topic.clone(), pi, p.clone(), *epoch));
                    }
                }
            }
        }
        out
    }

    /// Fetches from `leader` for every partition of this shard that
    /// follows it, until none does.
    async fn fetcher(self: Rc<Self>, leader: NodeId) {
        let mut conn: Option<crate::net::Stream> = None;
        let mut corr = 0u32;
        while !self.is_shutting_down() {
            let parts = self.following(leader);
            if parts.is_empty() {
                return;
            }
            if conn.is_none() {
                let addr = self.meta.state.borrow().brokers.get(&leader).map(|b| (b.host.clone(), b.port));
                let Some((host, port)) = addr else {
                    rt::sleep(RECONNECT_BACKOFF).await;
                    continue;
                };
                match rt::timeout(Duration::from_secs(2), crate::tls::server::connect_peer(&host, port)).await {
                    Some(Ok(s)) => conn = Some(s),
                    _ => {
                        rt::sleep(RECONNECT_BACKOFF).await;
                        continue;
                    }
                }
            }
            let stream = conn.as_mut().expect("connected above");
            corr = corr.wrapping_add(1);
            let asked: Vec<(ReplicaFetchPart, Rc<Partition>)> = parts
                .into_iter()
                .map(|(topic, partition, p, epoch)| {
                    let log = p.log();
                    let q = ReplicaFetchPart {
                        topic,
                        partition,
                        leader_epoch: epoch,
                        fetch_offset: log.next_offset(),
                        synced_offset: log.synced_offset(),
                        last_epoch: p.replica.epochs.borrow().last_epoch().map_or(-1, i64::from),
                    };
                    (q, p)
                })
                .collect();
            let frame = replica_fetch_frame(corr, self.config.node_id, &asked);
            let max = self.config.max_frame_bytes + (REPLICA_FETCH_MAX_BYTES as usize);
            let answer = rt::timeout(REPLICA_FETCH_WAIT + Duration::from_secs(10), async {
                stream.write_all(&frame).await?;
                stream.flush().await?;
                read_frame(stream, max).await
            })
            .await;
            let body = match answer {
                Some(Ok(b)) => b,
                Some(Err(e)) => {
                    tracing::debug!(leader, error = %e, "replica fetch failed; reconnecting");
                    conn = None;
                    rt::sleep(RECONNECT_BACKOFF).await;
                    continue;
                }
                None => {
                    conn = None;
                    continue;
                }
            };
            match self.take_replica_answer(corr, body, &asked).await {
                Ok(true) => {}
                Ok(false) => rt::sleep(Duration::from_millis(50)).await,
                Err(e) => {
                    tracing::warn!(leader, error = %e, "bad replica fetch answer; reconnecting");
                    conn = None;
                    rt::sleep(RECONNECT_BACKOFF).await;
                }
            }
        }
    }

    /// Applies a leader's answer: appends each partition's batches at the
    /// leader's offsets, or cuts a diverged log, then syncs what it
    /// appended. `Ok(false)` when no partition made progress.
    async fn take_replica_answer(&self, corr: u32, body: BytesMut, asked: &[(ReplicaFetchPart, Rc<Partition>)]) -> Result<bool, String> {
        let (message, payload) = protocol::split_frame(body).map_err(|e| e.to_string())?;
        let resp = protocol::parse_response(&message).map_err(|e| e.to_string())?;
        if resp.correlation_id() != corr {
            return Err(format!("answer {} to request {corr}", resp.correlation_id()));
        }
        let Some(r) = resp.body_as_replica_fetch_response() else {
            return Err(format!("not a replica fetch answer: {:?} {}", resp.error(), resp.error_message().unwrap_or_default()));
        };
        let r = replica_fetch::Response::decode(r, payload).map_err(|e| e.to_string())?;
        let mut progress = false;
        let mut to_sync = Vec::new();
        for (name, pr) in r.into_partitions() {
            let mut data = pr.records;
            let Some((q, p)) = asked.iter().find(|(q, _)| q.topic == name && q.partition == pr.partition) else { continue };
            // The role or the log changed while the fetch was out.
            let current = matches!(&*p.replica.role.borrow(), Role::Follower { epoch, .. } if *epoch == q.leader_epoch);
            if !current || p.log().next_offset() != q.fetch_offset {
                continue;
            }
            if pr.error != ErrorCode::None {
                continue;
            }
            if let Some((epoch, end)) = pr.diverging {
                let answer = u32::try_from(epoch).ok().map(|e| (e, end));
                let at = follower_cut(&p.replica.epochs.borrow(), q.fetch_offset, answer);
                tracing::info!(topic = %q.topic, partition = q.partition, from = q.fetch_offset, to = at, "cutting the log where it diverges from the leader's");
                p.cut(at, self.partitions.memory.clone()).await.map_err(|e| e.to_string())?;
                progress = true;
                continue;
            }
            let log = p.log();
            let mut appended = false;
            while !data.is_empty() {
                let info = match record::batches(&data).next() {
                    Some(Ok((0, info))) => info,
                    Some(Ok(_)) | None => break,
                    Some(Err(e)) => return Err(format!("{}/{}: {e}", q.topic, q.partition)),
                };
                let batch = data.split_to(info.batch_len as usize);
                if info.base_offset != log.next_offset() {
                    break;
                }
                p.begin_epoch(info.leader_epoch, info.base_offset).await.map_err(|e| e.to_string())?;
                if let Err(e) = log.append_replica(batch, &info).await {
                    tracing::warn!(topic = %q.topic, partition = q.partition, error = %e, "could not append the leader's batch");
                    Partition::recover_from(p, &e, self.partitions.memory.clone());
                    break;
                }
                p.producers.borrow_mut().record(&info, info.base_offset);
                appended = true;
            }
            p.replica.hw.set(follower_high_watermark(pr.high_watermark, log.next_offset()));
            if appended {
                progress = true;
                to_sync.push(log);
            }
        }
        // One group commit per log; the next fetch reports what it synced.
        let syncs = to_sync.iter().map(|log| log.wait_synced(log.next_offset() - 1));
        for r in futures::future::join_all(syncs).await {
            r.map_err(|e| e.to_string())?;
        }
        Ok(progress)
    }
}

/// The request frame of one replica fetch.
fn replica_fetch_frame(corr: u32, replica: NodeId, asked: &[(ReplicaFetchPart, Rc<Partition>)]) -> Bytes {
    let mut topics: Vec<replica_fetch::Topic> = Vec::new();
    for (q, _) in asked {
        match topics.last_mut() {
            Some(t) if t.name == q.topic => t.partitions.push(q.wire()),
            _ => topics.push(replica_fetch::Topic { name: q.topic.clone(), partitions: vec![q.wire()] }),
        }
    }
    let req = replica_fetch::Request { replica_id: replica, max_wait_ms: REPLICA_FETCH_WAIT.as_millis() as u32, max_bytes: REPLICA_FETCH_MAX_BYTES, topics };
    let mut fbb = FlatBufferBuilder::with_capacity(256 + 64 * asked.len());
    protocol::frame_head(protocol::encode_request(&mut fbb, protocol::API_VERSION, corr, None, &req), 0)
}

/// Reads one frame body (everything after its length), refusing a length
/// over `max` before anything is allocated.
async fn read_frame(stream: &mut crate::net::Stream, max: usize) -> std::io::Result<BytesMut> {
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let len = protocol::frame_len(prefix, max).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    let mut body = BytesMut::zeroed(len);
    stream.read_exact(&mut body).await?;
    Ok(body)
}

/// A multi-partition replica fetch, answered as the fetch handler does:
/// every partition at once, then, if none had anything new, a long poll
/// that ends with the first that does.
pub async fn answer(shard: &Rc<Shard>, replica: NodeId, asked: Vec<ReplicaFetchPart>, max_bytes: usize, wait: Duration) -> Vec<ReplicaFetchResult<Chunk>> {
    let first = asked.iter().map(|q| shard.replica_fetch(replica, q.clone(), max_bytes, None));
    let mut results: Vec<ReplicaFetchResult<Chunk>> = futures::future::join_all(first).await;
    let total: usize = results.iter().map(|r| r.fetch.bytes).sum();
    let quiet = results.iter().all(|r| r.fetch.error == ErrorCode::None && r.diverging.is_none() && r.fetch.bytes == 0);
    if total == 0 && quiet && !wait.is_zero() && !shard.is_shutting_down() {
        let deadline = Instant::now() + wait;
        let mut pending: futures::stream::FuturesUnordered<_> =
            asked.iter().enumerate().map(|(i, q)| async move { (i, shard.replica_fetch(replica, q.clone(), max_bytes, Some(deadline)).await) }).collect();
        while let Some((i, r)) = pending.next().await {
            let got = r.fetch.bytes > 0 || r.fetch.error != ErrorCode::None || r.diverging.is_some();
            results[i] = r;
            if got {
                break;
            }
        }
    }
    // The byte budget: whole batches, and always each partition's first.
    let mut used = 0usize;
    for r in results.iter_mut() {
        let mut keep = 0;
        let mut bytes = 0;
        for c in &r.fetch.chunks {
            if keep > 0 && used + c.len() > max_bytes {
                break;
            }
            used += c.len();
            bytes += c.len();
            keep += 1;
        }
        r.fetch.chunks.truncate(keep);
        r.fetch.bytes = bytes;
    }
    results
}
