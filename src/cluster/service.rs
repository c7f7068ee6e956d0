//! The I/O around this broker's voter, on its quorum shard (shard 0): the
//! quorum listener and one connection to each other voter, the clock that
//! ticks Raft, the disk that keeps its log, broker heartbeats, and the
//! delivery of every committed change to the shards.
//!
//! Invariants:
//! - the voter's log store is on disk (`meta/quorum.log`, written whole
//!   and atomically) before the votes and acks of a round leave;
//! - committed changes reach the shards in log order, through one bounded
//!   channel; a proposer hears its outcome only after every shard of its
//!   broker applied it;
//! - every queue is bounded: a peer's outgoing frames (oldest dropped,
//!   which Raft tolerates), the deliveries (backpressure), the waiters
//!   (one per request in flight).
//!
//! The quorum port speaks only to brokers: it must not be reachable by
//! clients (as Kafka's controller listener). Frames are checked (length
//! bound, CRC, our own decoder), but Raft trusts a voter's messages.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::io::{AsyncReadExt, AsyncWriteExt};

use super::codec::{self, Reader, Writer};
use super::controller::Liveness;
use super::log_store::LogStore;
use super::metadata::{BrokerMeta, Command, Metadata, MetadataError, NodeId, Outcome, Proposal};
use super::quorum::{Applied, Quorum, QuorumConfig};
use super::{Delivery, QuorumHandle, Voter};
use crate::net::{Listener, Stream};
use crate::rt;
use crate::storage::file;

/// One Raft tick.
pub const TICK: Duration = Duration::from_millis(100);
/// A follower campaigns after 1 to 2 s without a leader.
pub const ELECTION_TICKS: (usize, usize) = (10, 20);
pub const HEARTBEAT_TICKS: usize = 2;
/// Applied entries kept before a snapshot replaces them.
pub const SNAPSHOT_EVERY: u64 = 1024;
/// How often a broker heartbeats to the controller.
pub const BROKER_HEARTBEAT: Duration = Duration::from_millis(500);
/// Largest frame between voters (a snapshot of the whole metadata).
pub const MAX_PEER_FRAME: usize = 64 << 20;
/// A peer's connection and TLS handshake must finish within this long.
const PEER_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

/// Inbound quorum connections at once, per voter: past it new ones are
/// closed (a voter keeps one; the rest allow for reconnects).
pub const INBOUND_PER_VOTER: usize = 4;
/// Frames waiting for one peer; past it the oldest is dropped.
pub const PEER_QUEUE_FRAMES: usize = 4096;
/// Committed changes waiting for the shards.
pub const DELIVERY_QUEUE: usize = 1024;
/// A proposal not applied within this is proposed again (same request id).
pub const REPROPOSE_AFTER: Duration = Duration::from_secs(2);
/// A proposal not applied within this fails.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a voter keeps its log, under the data directory.
/// The disk space kept back for the quorum log, so a full disk does not
/// stop the quorum (the whole log is rewritten per round; snapshots keep it
/// far smaller than this).
pub const QUORUM_RESERVE_BYTES: u64 = 16 << 20;
/// How often a missing reserve is tried again while the disk is full.
pub const RESERVE_RETRY: Duration = Duration::from_secs(5);

/// Where the quorum's disk reserve lives.
pub fn reserve_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("meta").join("quorum.reserve")
}

pub fn store_path(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("meta").join("quorum.log")
}

const HELLO: u8 = 1;
const RAFT: u8 = 2;
const HEARTBEAT: u8 = 3;

/// Raft ids start at 1; node ids at 0.
pub fn raft_id(n: NodeId) -> u64 {
    n as u64 + 1
}

pub fn node_of(r: u64) -> NodeId {
    r.saturating_sub(1) as NodeId
}

/// What a broker needs to join the quorum.
pub struct ServiceConfig {
    pub me: BrokerMeta,
    pub voters: Vec<Voter>,
    pub data_dir: PathBuf,
    pub session_timeout: Duration,
}

struct Peer {
    voter: Voter,
    queue: RefCell<VecDeque<Vec<u8>>>,
    ready: rt::Event,
}

impl Peer {
    fn push(&self, frame: Vec<u8>) {
        let mut q = self.queue.borrow_mut();
        if q.len() >= PEER_QUEUE_FRAMES {
            q.pop_front();
        }
        q.push_back(frame);
        drop(q);
        self.ready.notify();
    }
}

pub struct Service {
    me: BrokerMeta,
    voters: Vec<Voter>,
    q: RefCell<Quorum>,
    wake: rt::Event,
    path: PathBuf,
    /// Disk space kept back for the quorum log (`meta/quorum.reserve`):
    /// given up when the disk is full, so deleting topics (the way to free
    /// space) can still be committed; made again once there is room.
    reserve: PathBuf,
    /// When the reserve was last found missing and could not be made.
    reserve_tried: Cell<Option<Instant>>,
    peers: BTreeMap<u64, Rc<Peer>>,
    waiters: RefCell<HashMap<u64, oneshot::Sender<Outcome>>>,
    reads: RefCell<HashMap<u64, oneshot::Sender<u64>>>,
    next_request: Cell<u64>,
    liveness: RefCell<Liveness>,
    session_ms: u64,
    deliveries: rt::LocalSender<Delivery>,
    started: Instant,
    stopped: Cell<bool>,
    /// Set by a controlled shutdown: this broker no longer heartbeats, so
    /// the controller does not register it again once it is fenced.
    leaving: Cell<bool>,
}

fn frame(tag: u8, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer(vec![0; 8]);
    w.u8(tag);
    body(&mut w);
    let len = (w.0.len() - 8) as u32;
    let crc = crc32fast::hash(&w.0[8..]);
    w.0[..4].copy_from_slice(&len.to_le_bytes());
    w.0[4..8].copy_from_slice(&crc.to_le_bytes());
    w.0
}

fn put_broker(w: &mut Writer, b: &BrokerMeta) {
    w.u64(b.id as u64);
    w.bytes(b.host.as_bytes());
    w.u32(u32::from(b.port));
    w.u32(u32::from(b.shards));
    w.u64(b.incarnation);
    match &b.external {
        Some((h, p)) => {
            w.u32(1);
            w.bytes(h.as_bytes());
            w.u32(u32::from(*p));
        }
        None => w.u32(0),
    }
}

fn get_broker(r: &mut Reader<'_>) -> Result<BrokerMeta, codec::DecodeError> {
    let id = NodeId::try_from(r.u64()?).map_err(|_| codec::DecodeError("node id"))?;
    let host = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| codec::DecodeError("host"))?;
    let port = u16::try_from(r.u32()?).map_err(|_| codec::DecodeError("port"))?;
    let shards = u16::try_from(r.u32()?).map_err(|_| codec::DecodeError("shards"))?;
    let incarnation = r.u64()?;
    let external = match r.u32()? {
        0 => None,
        1 => {
            let h = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| codec::DecodeError("external host"))?;
            Some((h, u16::try_from(r.u32()?).map_err(|_| codec::DecodeError("external port"))?))
        }
        _ => return Err(codec::DecodeError("external address flag")),
    };
    Ok(BrokerMeta { id, host, port, shards, incarnation, fenced: false, external })
}

impl Service {
    /// Takes this voter's log (read at start by the broker) and returns the
    /// service and the channel of committed changes after the log's
    /// snapshot.
    pub fn open(cfg: ServiceConfig, store: LogStore) -> Result<(Rc<Self>, rt::LocalReceiver<Delivery>), String> {
        let ServiceConfig { me, voters, data_dir, session_timeout } = cfg;
        let ids: Vec<u64> = voters.iter().map(|v| raft_id(v.id)).collect();
        if !voters.iter().any(|v| v.id == me.id) {
            return Err(format!("node id {} is not among the quorum voters ({})", me.id, voters.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")));
        }
        let path = store_path(&data_dir);
        let mut stored = store.conf_state.voters.clone();
        stored.sort_unstable();
        let mut given = ids.clone();
        given.sort_unstable();
        if stored != given {
            let show = |v: &[u64]| v.iter().map(|&r| node_of(r).to_string()).collect::<Vec<_>>().join(",");
            return Err(format!(
                "this data directory belongs to a quorum of voters {} but --quorum-voters names {}; changing the voters is not supported",
                show(&stored),
                show(&given)
            ));
        }
        let qc = QuorumConfig { id: raft_id(me.id), election_ticks: ELECTION_TICKS, heartbeat_ticks: HEARTBEAT_TICKS, snapshot_every: SNAPSHOT_EVERY };
        let q = Quorum::new(qc, store).map_err(|e| e.to_string())?;
        let peers = voters
            .iter()
            .filter(|v| v.id != me.id)
            .map(|v| (raft_id(v.id), Rc::new(Peer { voter: v.clone(), queue: RefCell::new(VecDeque::new()), ready: rt::Event::default() })))
            .collect();
        let (tx, rx) = rt::local_bounded(DELIVERY_QUEUE);
        let incarnation = me.incarnation;
        let svc = Rc::new(Service {
            me,
            voters,
            q: RefCell::new(q),
            wake: rt::Event::default(),
            path,
            reserve: reserve_path(&data_dir),
            reserve_tried: Cell::new(None),
            peers,
            waiters: RefCell::new(HashMap::new()),
            reads: RefCell::new(HashMap::new()),
            next_request: Cell::new((incarnation & 0xffff_ffff) << 32),
            liveness: RefCell::new(Liveness::default()),
            session_ms: session_timeout.as_millis() as u64,
            deliveries: tx,
            started: Instant::now(),
            stopped: Cell::new(false),
            leaving: Cell::new(false),
        });
        svc.keep_reserve();
        Ok((svc, rx))
    }

    /// Whether `md` holds this process's registration, unfenced.
    pub fn registered(&self, md: &Metadata) -> bool {
        md.brokers.get(&self.me.id).is_some_and(|b| b.incarnation == self.me.incarnation && !b.fenced)
    }

    pub fn voters(&self) -> &[Voter] {
        &self.voters
    }

    /// This broker's own listener among the voters.
    pub fn my_voter(&self) -> &Voter {
        self.voters.iter().find(|v| v.id == self.me.id).expect("checked at open")
    }

    pub fn controller(&self) -> Option<NodeId> {
        self.q.borrow().leader().map(node_of)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Starts the listener, the peer connections and the driver.
    pub fn start(self: &Rc<Self>) -> Result<(), String> {
        if self.peers.is_empty() {
            // A one-voter quorum talks to no one and opens no port.
            return Ok(());
        }
        let v = self.my_voter();
        let addr = (v.host.as_str(), v.port);
        let addr = std::net::ToSocketAddrs::to_socket_addrs(&addr).ok().and_then(|mut a| a.next()).ok_or_else(|| format!("quorum listener {v}: no address"))?;
        // `broker::start_with` checked, before any shard ran, that no other
        // process listens here (SO_REUSEPORT would let this bind join it).
        let listener = Listener::bind(addr).map_err(|e| format!("quorum listener {addr}: {e}"))?;
        tracing::info!(node_id = self.me.id, voters = %self.voters.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(","), "quorum voter accepting peers at {addr}");
        let svc = self.clone();
        let max_inbound = INBOUND_PER_VOTER * self.voters.len();
        let inbound = Rc::new(Cell::new(0usize));
        rt::spawn(async move {
            while !svc.stopped.get() {
                let accepted = rt::timeout(Duration::from_millis(500), listener.accept()).await;
                match accepted {
                    Some(Ok(s)) if inbound.get() >= max_inbound => {
                        tracing::warn!(max_inbound, "too many quorum connections; closing a new one");
                        drop(s);
                    }
                    Some(Ok(s)) => {
                        inbound.set(inbound.get() + 1);
                        let (svc, inbound) = (svc.clone(), inbound.clone());
                        rt::spawn(async move {
                            match crate::tls::server::accept_peer(s, PEER_HANDSHAKE_WAIT).await {
                                Ok(s) => svc.serve_peer(s).await,
                                Err(e) => {
                                    tracing::warn!(error = %e, "refused a quorum connection at its TLS handshake: it did not show the cluster's peer certificate")
                                }
                            }
                            inbound.set(inbound.get() - 1);
                        });
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "quorum accept failed");
                        rt::sleep(Duration::from_millis(50)).await;
                    }
                    None => {}
                }
            }
        });
        for peer in self.peers.values() {
            rt::spawn(self.clone().send_to(peer.clone()));
        }
        Ok(())
    }

    pub fn stop(&self) {
        self.stopped.set(true);
        self.wake.notify();
        for p in self.peers.values() {
            p.ready.notify();
        }
    }

    /// Keeps one connection to `peer` and writes its queued frames.
    async fn send_to(self: Rc<Self>, peer: Rc<Peer>) {
        let hello = frame(HELLO, |w| w.u64(raft_id(self.me.id)));
        let mut warned = false;
        while !self.stopped.get() {
            let conn = rt::timeout(PEER_HANDSHAKE_WAIT, crate::tls::server::connect_peer(&peer.voter.host, peer.voter.port)).await;
            let mut s = match conn {
                Some(Ok(s)) => s,
                failed => {
                    if !warned {
                        let why = match failed {
                            Some(Err(e)) => e.to_string(),
                            _ => "timed out".into(),
                        };
                        tracing::info!(peer = %peer.voter, error = %why, "cannot reach a quorum voter yet; retrying");
                        warned = true;
                    }
                    peer.queue.borrow_mut().clear();
                    rt::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            warned = false;
            if s.write_all(&hello).await.is_err() || s.flush().await.is_err() {
                continue;
            }
            loop {
                let woken = peer.ready.listen();
                let batch: Vec<Vec<u8>> = peer.queue.borrow_mut().drain(..).collect();
                if self.stopped.get() {
                    return;
                }
                if batch.is_empty() {
                    rt::timeout(Duration::from_secs(1), woken).await;
                    continue;
                }
                let mut failed = false;
                for f in &batch {
                    if s.write_all(f).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || s.flush().await.is_err() {
                    self.q.borrow_mut().unreachable(raft_id(peer.voter.id));
                    break;
                }
            }
        }
    }

    /// Reads frames from a voter that connected to us.
    async fn serve_peer(self: Rc<Self>, mut s: Stream) {
        let idle = Duration::from_secs(30);
        loop {
            let mut head = [0u8; 8];
            match rt::timeout(idle, s.read_exact(&mut head)).await {
                Some(Ok(())) => {}
                _ => return,
            }
            let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
            if len == 0 || len > MAX_PEER_FRAME {
                tracing::warn!(len, "quorum peer sent a frame of a bad length; closing");
                return;
            }
            // Grown as the bytes arrive, not allocated from the length.
            let mut body = Vec::new();
            match rt::timeout(idle, (&mut s).take(len as u64).read_to_end(&mut body)).await {
                Some(Ok(n)) if n == len => {}
                _ => return,
            }
            if crc32fast::hash(&body) != crc {
                tracing::warn!("quorum peer sent a frame with a bad checksum; closing");
                return;
            }
            let mut r = Reader(&body[1..]);
            let ok = match body[0] {
                HELLO => r.u64().is_ok(),
                RAFT => match codec::get_message(&mut r) {
                    Ok(m) => {
                        self.q.borrow_mut().step(m);
                        self.wake.notify();
                        true
                    }
                    Err(_) => false,
                },
                HEARTBEAT => match get_broker(&mut r) {
                    Ok(b) => {
                        self.on_heartbeat(b);
                        true
                    }
                    Err(_) => false,
                },
                _ => false,
            };
            if !ok {
                tracing::warn!(tag = body[0], "quorum peer sent a frame that does not decode; closing");
                return;
            }
        }
    }

    fn send(&self, msgs: Vec<raft::eraftpb::Message>) {
        for m in msgs {
            if let Some(p) = self.peers.get(&m.to) {
                p.push(frame(RAFT, |w| codec::put_message(w, &m)));
            }
        }
    }

    /// Runs Raft until the service stops; an error (the log cannot be
    /// written) stops the broker, which must not vote on what it cannot keep.
    pub async fn run(self: Rc<Self>) -> Result<(), String> {
        let mut next_tick = Instant::now() + TICK;
        let mut next_heartbeat = Instant::now();
        let mut leader: Option<u64> = None;
        while !self.stopped.get() {
            let woken = self.wake.listen();
            let now = Instant::now();
            if now >= next_tick {
                self.q.borrow_mut().tick();
                next_tick = now + TICK;
            }
            self.rounds().await?;
            let l = self.q.borrow().leader();
            if l != leader {
                leader = l;
                if self.q.borrow().is_leader() {
                    tracing::info!(node_id = self.me.id, term = self.q.borrow().term(), "this broker is now the controller");
                    self.liveness.borrow_mut().reset(self.now_ms());
                }
                let _ = self.deliveries.send(Delivery::Controller(l.map(node_of))).await;
            }
            if now >= next_heartbeat {
                next_heartbeat = now + BROKER_HEARTBEAT;
                self.heartbeat();
                self.fence_expired();
            }
            let wait = next_tick.min(next_heartbeat).saturating_duration_since(Instant::now());
            rt::timeout(wait, woken).await;
        }
        Ok(())
    }

    async fn rounds(&self) -> Result<(), String> {
        loop {
            let Some(io) = self.q.borrow_mut().ready() else { return Ok(()) };
            self.send(io.send);
            if io.persist {
                let bytes = self.q.borrow().store().encode();
                self.persist(&bytes).await?;
            }
            let more = self.q.borrow_mut().advance();
            self.send(more.send);
            for rs in io.read_states {
                let ctx = rs.request_ctx.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
                if let Some(tx) = ctx.and_then(|c| self.reads.borrow_mut().remove(&c)) {
                    let _ = tx.send(rs.index);
                }
            }
            if io.installed_snapshot {
                let state = self.q.borrow().state().clone();
                let _ = self.deliveries.send(Delivery::Installed(state)).await;
            }
            let mut applied = io.applied;
            applied.extend(more.applied);
            if !applied.is_empty() {
                let _ = self.deliveries.send(Delivery::Applied(applied)).await;
            }
        }
    }

    /// Writes the log whole. On a full disk the reserve is given up and the
    /// write tried again: the voter keeps its promises, and an operator can
    /// still delete topics or lower retention to free space.
    async fn persist(&self, bytes: &[u8]) -> Result<(), String> {
        let failed = |e: std::io::Error| format!("could not write the quorum log {}: {e}", self.path.display());
        match file::write_atomic(&self.path, bytes).await {
            Ok(()) => {
                self.keep_reserve();
                Ok(())
            }
            Err(e) if file::is_disk_full(&e) && file::release_reserve(&self.reserve) => {
                tracing::error!(
                    reserve_mib = QUORUM_RESERVE_BYTES >> 20,
                    "the data disk is full: the metadata quorum's log used its reserve. Free space: delete topics, or lower their retention"
                );
                self.reserve_tried.set(Some(Instant::now()));
                file::write_atomic(&self.path, bytes).await.map_err(failed)
            }
            Err(e) => Err(failed(e)),
        }
    }

    /// Makes the reserve again if it is missing, at most every
    /// `RESERVE_RETRY` while the disk stays full.
    fn keep_reserve(&self) {
        if self.reserve_tried.get().is_some_and(|t| t.elapsed() < RESERVE_RETRY) {
            return;
        }
        match file::ensure_reserve(&self.reserve, QUORUM_RESERVE_BYTES) {
            Ok(()) => {
                if self.reserve_tried.take().is_some() {
                    tracing::info!("the metadata quorum's disk reserve is back");
                }
            }
            Err(e) => {
                if self.reserve_tried.get().is_none() {
                    tracing::warn!(error = %e, "could not keep disk space in reserve for the metadata quorum's log");
                }
                self.reserve_tried.set(Some(Instant::now()));
            }
        }
    }

    /// Called once every shard applied `applied`: answers their proposers.
    pub fn resolve(&self, applied: &[Applied]) {
        let mut w = self.waiters.borrow_mut();
        for a in applied.iter().filter(|a| a.proposal.origin == self.me.id) {
            if let Some(tx) = w.remove(&a.proposal.request) {
                let _ = tx.send(a.outcome.clone());
            }
        }
    }

    /// A request id (or read-index context) this process never used.
    fn fresh_id(&self) -> u64 {
        let id = self.next_request.get() + 1;
        self.next_request.set(id);
        id
    }

    /// Proposes a command and waits until it is committed and applied on
    /// every shard of this broker; proposes again (same request id, so it
    /// applies once) if it was lost to a leader change.
    pub async fn propose(&self, command: Command) -> Result<Outcome, MetadataError> {
        let request = self.fresh_id();
        let (tx, mut rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(request, tx);
        let p = Proposal { origin: self.me.id, request, command };
        let deadline = Instant::now() + COMMIT_TIMEOUT;
        loop {
            let sent = self.q.borrow_mut().propose(&p).is_ok();
            self.wake.notify();
            let wait = if sent { REPROPOSE_AFTER } else { Duration::from_millis(100) };
            let left = deadline.saturating_duration_since(Instant::now());
            match rt::timeout(wait.min(left), &mut rx).await {
                Some(Ok(o)) => return Ok(o),
                Some(Err(_)) => return Err(MetadataError::Unavailable("the broker is stopping".into())),
                None if Instant::now() >= deadline => {
                    self.waiters.borrow_mut().remove(&request);
                    return Err(MetadataError::Unavailable(format!(
                        "the change was not committed within {} s: a majority of the quorum voters must be up and connected",
                        COMMIT_TIMEOUT.as_secs()
                    )));
                }
                None => {}
            }
        }
    }

    /// Kafka's controlled shutdown: before this broker stops serving, the
    /// quorum fences it (as the controller would once its session expired,
    /// but now), which moves the leadership of each of its partitions to an
    /// in-sync follower and takes it out of their ISRs; then, if it is the
    /// controller, it hands the quorum's leadership to a caught-up voter.
    /// Once this returns Ok, every shard of this broker has applied the
    /// fence, so none of them leads anything. Bounded by `within`; a
    /// quorum without a majority gives up, and the broker stops as it
    /// would have without it. A one-voter quorum has no one to hand over
    /// to and returns `Ok(false)` at once.
    pub async fn controlled_shutdown(&self, within: Duration) -> Result<bool, String> {
        if self.peers.is_empty() {
            return Ok(false);
        }
        let deadline = Instant::now() + within;
        self.leaving.set(true);
        let fence = Command::FenceBroker { id: self.me.id, incarnation: self.me.incarnation };
        match rt::timeout(within, self.propose(fence)).await {
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("the quorum did not move this broker's partitions: {e}")),
            None => return Err(format!("the quorum did not move this broker's partitions within {} ms", within.as_millis())),
        }
        let successor = self.q.borrow().successor();
        if let Some(to) = successor {
            self.q.borrow_mut().transfer_leader(to);
            self.wake.notify();
            while self.q.borrow().is_leader() {
                if Instant::now() >= deadline {
                    return Err(format!("node {} did not take over as controller in time", node_of(to)));
                }
                rt::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(true)
    }

    /// The commit index a linearizable read must wait for, confirmed by
    /// the leader; `None` without a leader within `wait`.
    pub async fn read_index(&self, wait: Duration) -> Option<u64> {
        let ctx = self.fresh_id();
        let (tx, rx) = oneshot::channel();
        self.reads.borrow_mut().insert(ctx, tx);
        self.q.borrow_mut().read_index(ctx.to_le_bytes().to_vec());
        self.wake.notify();
        let r = rt::timeout(wait, rx).await.and_then(Result::ok);
        self.reads.borrow_mut().remove(&ctx);
        r
    }

    fn heartbeat(&self) {
        if self.leaving.get() {
            return;
        }
        let leader = self.q.borrow().leader();
        match leader {
            Some(l) if l == raft_id(self.me.id) => self.on_heartbeat(self.me.clone()),
            Some(l) => {
                if let Some(p) = self.peers.get(&l) {
                    p.push(frame(HEARTBEAT, |w| put_broker(w, &self.me)));
                }
            }
            None => {}
        }
    }

    fn on_heartbeat(self: &Service, b: BrokerMeta) {
        if !self.q.borrow().is_leader() {
            return;
        }
        let cmd = self.liveness.borrow_mut().heartbeat(self.q.borrow().state(), &b, self.now_ms());
        if let Some(c) = cmd {
            self.propose_detached(c);
        }
    }

    fn fence_expired(&self) {
        if !self.q.borrow().is_leader() {
            return;
        }
        let cmds = self.liveness.borrow_mut().expired(self.q.borrow().state(), self.now_ms(), self.session_ms);
        for c in cmds {
            if let Command::FenceBroker { id, .. } = &c {
                tracing::warn!(broker = id, session_timeout_ms = self.session_ms, "fencing a broker that stopped heartbeating");
            }
            self.propose_detached(c);
        }
    }

    fn propose_detached(&self, c: Command) {
        // Controller commands need no answer; the outcome is in the log.
        let request = self.fresh_id();
        let _ = self.q.borrow_mut().propose(&Proposal { origin: self.me.id, request, command: c });
        self.wake.notify();
    }
}

impl QuorumHandle for Service {
    fn figures(&self) -> (u64, Option<NodeId>, u64) {
        let q = self.q.borrow();
        (q.term(), q.leader().map(node_of), q.commit_index())
    }

    fn propose(&self, command: Command) -> futures::future::LocalBoxFuture<'_, Result<Outcome, MetadataError>> {
        Box::pin(Service::propose(self, command))
    }

    fn read_index(&self, wait: Duration) -> futures::future::LocalBoxFuture<'_, Option<u64>> {
        Box::pin(Service::read_index(self, wait))
    }

    fn applied(&self, applied: &[Applied]) {
        self.resolve(applied);
    }
}
