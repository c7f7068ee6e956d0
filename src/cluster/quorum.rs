//! The seam over raft-rs: one voter of the metadata quorum, sans-IO.
//!
//! [`Quorum`] takes messages, ticks and proposals, and hands back what to
//! send, what to persist and which commands it applied to its
//! [`Metadata`]. The caller owns the clock, the sockets and the disk: the
//! broker's quorum driver (`cluster::service`) and the deterministic
//! simulation (`cluster::sim`) drive the same code.
//!
//! The protocol of one round, raft-rs's "async ready": messages may be
//! stepped in at any time, also while a round is being persisted.
//! 1. [`Quorum::ready`]: send [`Io::send`] at once; the in-memory log
//!    store already holds the new entries and hard state;
//! 2. if [`Io::persist`], write [`Quorum::store`] durably;
//! 3. [`Quorum::advance`]: send what it returns (votes and acks, which
//!    must not leave before the entries they promise are on disk); what
//!    became committed by the write comes with the next `ready`.

use raft::eraftpb::{EntryType, Message, MessageType};
use raft::{RawNode, ReadState, StateRole};

use super::log_store::LogStore;
use super::metadata::{Metadata, Outcome, Proposal};

/// Messages held while a snapshot is persisted; past it they are dropped.
pub const MAX_HELD: usize = 4096;

/// Timing and compaction settings of one voter.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    pub id: u64,
    /// A follower campaigns after a random number of ticks in
    /// `election_ticks` without hearing from a leader.
    pub election_ticks: (usize, usize),
    pub heartbeat_ticks: usize,
    /// Applied entries kept in the log before a snapshot replaces them.
    pub snapshot_every: u64,
}

/// A committed command this voter applied.
#[derive(Debug, Clone)]
pub struct Applied {
    pub index: u64,
    pub proposal: Proposal,
    pub outcome: Outcome,
}

/// What one round asks of the caller.
#[derive(Debug, Default)]
pub struct Io {
    /// Messages to send now.
    pub send: Vec<Message>,
    /// The log store changed: write it durably before [`Quorum::advance`].
    pub persist: bool,
    /// Commands applied to the state machine, in log order.
    pub applied: Vec<Applied>,
    /// A snapshot from the leader replaced the state machine.
    pub installed_snapshot: bool,
    /// Answers to [`Quorum::read_index`]: the index a read must wait for.
    pub read_states: Vec<ReadState>,
}

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error("the stored quorum state is unusable: {0}")]
    Store(String),
    #[error("no leader is known; the proposal was not sent")]
    NoLeader,
}

pub struct Quorum {
    raw: RawNode<LogStore>,
    state: Metadata,
    cfg: QuorumConfig,
    /// The number of the Ready being persisted.
    pending: Option<u64>,
    /// Votes and acks of the pending round, sent once it is durable.
    after_persist: Vec<Message>,
    /// Messages that arrived while a round that installs a snapshot is
    /// being persisted: raft-rs must not act (become leader, say) on a
    /// log whose snapshot it has not yet been told is applied.
    held: Option<Vec<Message>>,
    /// The log store changed outside a Ready (a compaction).
    compacted: bool,
}

/// The state machine as of a log store's snapshot (empty without one).
pub fn snapshot_state(store: &LogStore) -> Result<Metadata, String> {
    let data = &store.snapshot.data;
    if data.is_empty() {
        return Ok(Metadata::default());
    }
    serde_json::from_slice(data).map_err(|e| e.to_string())
}

fn logger() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

impl Quorum {
    /// Starts a voter from its stored log (a new one: [`LogStore::new`]).
    /// The state machine starts from the log's snapshot; raft hands the
    /// committed entries after it to the first rounds again.
    pub fn new(cfg: QuorumConfig, store: LogStore) -> Result<Self, QuorumError> {
        let state = snapshot_state(&store).map_err(QuorumError::Store)?;
        let (min, max) = cfg.election_ticks;
        let rc = raft::Config {
            id: cfg.id,
            election_tick: min,
            min_election_tick: min,
            max_election_tick: max,
            heartbeat_tick: cfg.heartbeat_ticks,
            applied: store.snapshot_index(),
            max_size_per_msg: 1 << 20,
            max_inflight_msgs: 256,
            // A voter cut off from the others neither disrupts them when it
            // comes back (pre-vote) nor stays leader alone (check quorum).
            pre_vote: true,
            check_quorum: true,
            ..Default::default()
        };
        let raw = RawNode::new(&rc, store, &logger()).map_err(|e| QuorumError::Store(e.to_string()))?;
        let mut q = Quorum { raw, state, cfg, pending: None, after_persist: Vec::new(), held: None, compacted: false };
        if q.voters() == [q.cfg.id] && !q.is_leader() {
            // A one-voter quorum needs no election timeout to lead.
            let _ = q.raw.campaign();
        }
        Ok(q)
    }

    pub fn id(&self) -> u64 {
        self.cfg.id
    }

    pub fn state(&self) -> &Metadata {
        &self.state
    }

    pub fn store(&self) -> &LogStore {
        self.raw.store()
    }

    pub fn voters(&self) -> Vec<u64> {
        self.raw.store().conf_state.voters.clone()
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The leader this voter knows of, if any.
    pub fn leader(&self) -> Option<u64> {
        Some(self.raw.raft.leader_id).filter(|&l| l != raft::INVALID_ID)
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The leader's view of each follower, for diagnostics.
    pub fn progress(&self) -> String {
        let mut out = Vec::new();
        for (id, pr) in self.raw.raft.prs().iter() {
            out.push(format!("{id}: {:?} matched {} next {} paused {} inflight full {}", pr.state, pr.matched, pr.next_idx, pr.is_paused(), pr.ins.full()));
        }
        out.sort();
        format!("{} first {} last {} pending {:?}", out.join(", "), self.raw.store().snapshot_index() + 1, self.raw.raft.raft_log.last_index(), self.pending)
    }

    /// Counts one tick. Skipped while a snapshot is being persisted (a
    /// late tick only delays an election).
    pub fn tick(&mut self) {
        if self.held.is_none() {
            self.raw.tick();
        }
    }

    /// Takes a message from a peer. Messages not addressed to this voter,
    /// from a node that is not a voter, or of a kind only a node sends
    /// itself, are dropped: raft-rs trusts what it steps.
    pub fn step(&mut self, m: Message) {
        let local = matches!(
            m.msg_type,
            MessageType::MsgHup | MessageType::MsgBeat | MessageType::MsgUnreachable | MessageType::MsgSnapStatus | MessageType::MsgCheckQuorum
        );
        if local || m.to != self.cfg.id || !self.voters().contains(&m.from) || m.from == self.cfg.id {
            return;
        }
        match &mut self.held {
            Some(held) if held.len() < MAX_HELD => held.push(m),
            // Raft resends what is lost.
            Some(_) => {}
            None => {
                let _ = self.raw.step(m);
            }
        }
    }

    /// Proposes a command; the leader appends it, a follower forwards it.
    /// It may still be lost (a leader change): the proposer watches for
    /// its request id in [`Io::applied`] and proposes again if need be.
    pub fn propose(&mut self, p: &Proposal) -> Result<(), QuorumError> {
        if self.leader().is_none() {
            return Err(QuorumError::NoLeader);
        }
        let data = serde_json::to_vec(p).expect("a proposal serialises");
        self.raw.propose(Vec::new(), data).map_err(|_| QuorumError::NoLeader)
    }

    /// Asks for the commit index a linearizable read must wait for; the
    /// answer comes in [`Io::read_states`] with `ctx`.
    pub fn read_index(&mut self, ctx: Vec<u8>) {
        self.raw.read_index(ctx);
    }

    /// The voter to hand leadership to: the follower with the longest log
    /// this leader knows of, if one holds all of it (so the transfer does
    /// not wait for it to catch up). `None` on a follower.
    pub fn successor(&self) -> Option<u64> {
        if !self.is_leader() {
            return None;
        }
        let last = self.raw.raft.raft_log.last_index();
        self.raw.raft.prs().iter().filter(|(&id, pr)| id != self.cfg.id && pr.matched == last).map(|(&id, _)| id).min()
    }

    /// Asks this leader to hand leadership to `to` (Raft's leadership
    /// transfer: `to` campaigns at once, without waiting for an election
    /// timeout).
    pub fn transfer_leader(&mut self, to: u64) {
        self.raw.transfer_leader(to);
    }

    /// Tells raft a peer could not be reached, so it stops streaming to it.
    pub fn unreachable(&mut self, peer: u64) {
        self.raw.report_unreachable(peer);
    }

    /// Step 1 of a round; `None` when there is nothing to do. Call
    /// [`Quorum::advance`] before the next `ready`.
    pub fn ready(&mut self) -> Option<Io> {
        if self.pending.is_some() {
            return None;
        }
        if !self.raw.has_ready() {
            if std::mem::take(&mut self.compacted) {
                return Some(Io { persist: true, ..Default::default() });
            }
            return None;
        }
        let mut rd = self.raw.ready();
        let number = rd.number();
        let mut io = Io { send: rd.take_messages(), read_states: rd.take_read_states(), ..Default::default() };
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            match serde_json::from_slice::<Metadata>(&snap.data) {
                Ok(state) => self.state = state,
                Err(e) => tracing::error!(error = %e, "a snapshot from the leader does not decode; keeping the old state"),
            }
            self.raw.mut_store().apply_snapshot(snap);
            io.installed_snapshot = true;
            io.persist = true;
            self.held = Some(Vec::new());
        }
        let committed = rd.take_committed_entries();
        let last_committed = committed.last().map(|e| e.index);
        self.apply(committed, &mut io.applied);
        if !rd.entries().is_empty() {
            self.raw.mut_store().append(rd.entries());
            io.persist = true;
        }
        if let Some(hs) = rd.hs() {
            self.raw.mut_store().hard_state = hs.clone();
            io.persist = true;
        }
        self.after_persist = rd.take_persisted_messages();
        io.persist |= std::mem::take(&mut self.compacted);
        self.raw.advance_append_async(rd);
        if let Some(i) = last_committed {
            self.raw.advance_apply_to(i);
        }
        self.pending = Some(number);
        self.snapshots_sent(&io.send);
        Some(io)
    }

    /// Step 3 of a round, once the store is durable: what else to send and
    /// what else was applied.
    pub fn advance(&mut self) -> Io {
        let mut io = Io::default();
        let Some(number) = self.pending.take() else { return io };
        self.raw.on_persist_ready(number);
        // A snapshot installed by that round is applied now that it is
        // durable (committed entries were marked applied as they were).
        if self.state.applied > self.raw.raft.raft_log.applied && self.state.applied <= self.raw.raft.raft_log.committed {
            self.raw.advance_apply_to(self.state.applied);
        }
        for m in self.held.take().unwrap_or_default() {
            let _ = self.raw.step(m);
        }
        io.send = std::mem::take(&mut self.after_persist);
        self.snapshots_sent(&io.send);
        self.maybe_compact();
        io
    }

    /// A leader waits for word on a snapshot it sent before it streams
    /// to that follower again. The transport cannot tell whether it
    /// arrived, so the word is "sent": the follower's answer (or its
    /// silence, and then a probe) says the rest.
    fn snapshots_sent(&mut self, msgs: &[Message]) {
        for m in msgs.iter().filter(|m| m.msg_type == MessageType::MsgSnapshot) {
            self.raw.report_snapshot(m.to, raft::SnapshotStatus::Finish);
        }
    }

    fn apply(&mut self, entries: Vec<raft::eraftpb::Entry>, out: &mut Vec<Applied>) {
        for e in entries {
            if e.index <= self.state.applied {
                continue;
            }
            if e.entry_type != EntryType::EntryNormal || e.data.is_empty() {
                // A new leader's empty entry, or a configuration change
                // (the voters are fixed at start).
                self.state.applied = e.index;
                continue;
            }
            match serde_json::from_slice::<Proposal>(&e.data) {
                Ok(p) => {
                    let outcome = self.state.apply(e.index, &p);
                    out.push(Applied { index: e.index, proposal: p, outcome });
                }
                Err(err) => {
                    // Every voter skips the same bytes, so copies stay equal.
                    tracing::error!(index = e.index, error = %err, "a committed metadata entry does not decode; skipping it");
                    self.state.applied = e.index;
                }
            }
        }
    }

    fn maybe_compact(&mut self) {
        let applied = self.state.applied;
        if applied >= self.raw.store().snapshot_index() + self.cfg.snapshot_every {
            let data = serde_json::to_vec(&self.state).expect("metadata serialises");
            self.raw.mut_store().compact(applied, data);
            self.compacted = true;
        }
    }
}
