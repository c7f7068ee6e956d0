//! Partition replication's state, sans-IO: the shards drive it
//! (`shard::replica`), and so does the simulation. The design is Kafka's, after KIP-101 and
//! KIP-279: a leader per partition chosen by the controller, followers
//! that fetch the leader's batches unchanged, an in-sync replica set
//! (ISR) kept in the metadata quorum, and leader epochs to find where a
//! returning replica's log diverges.
//!
//! - [`EpochHistory`]: the first offset written in each leader epoch (the
//!   epoch is in every stored batch's header), and the end of an epoch as
//!   the leader answers a follower's "where did epoch E end?";
//! - [`truncation_offset`]: where a follower cuts its log before it
//!   follows a new leader, so it never keeps a tail the leader lacks;
//! - [`LeaderProgress`]: the leader's view of its followers: which are
//!   caught up (the ISR), the high watermark (synced on every ISR member),
//!   when acks=all may be answered, and what a follower's fetch gets
//!   ([`LeaderProgress::judge_fetch`]);
//! - [`Role`]: a replica's role, changed only by [`Role::reconcile`] from
//!   the metadata; [`follower_cut`] and [`follower_high_watermark`]: what a
//!   follower does with its leader's answer.
//!
//! The broker (`shard::replica`) and the replication simulation call the
//! same functions for every decision; only the I/O differs.
//!
//! Invariants: an ISR always holds the leader; the high watermark never
//! moves back within an epoch; acks=all is answered only for offsets
//! below the high watermark and only while the ISR is a majority of the
//! replicas, so every acknowledged batch is on a majority, and the
//! controller elects only ISR members.

use std::collections::BTreeMap;

use super::metadata::NodeId;

/// The first offset of each leader epoch in one replica's log, ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochHistory {
    starts: Vec<(u32, i64)>,
}

impl EpochHistory {
    /// Records that `epoch` starts at `offset` (a new leader's first
    /// batch, or a follower appending the first batch of a new epoch).
    /// Epochs only grow; an older or equal epoch is ignored.
    pub fn begin(&mut self, epoch: u32, offset: i64) {
        if self.starts.last().is_some_and(|&(e, _)| e >= epoch) {
            return;
        }
        debug_assert!(self.starts.last().is_none_or(|&(_, o)| o <= offset), "epochs start at increasing offsets");
        self.starts.push((epoch, offset));
    }

    pub fn last_epoch(&self) -> Option<u32> {
        self.starts.last().map(|&(e, _)| e)
    }

    /// The largest epoch not above `epoch` and the offset where it ended
    /// in this log (the next epoch's start, or `log_end` for the last):
    /// the leader's answer to a follower (KIP-279). `None` if this log has
    /// no epoch that old.
    pub fn end_of(&self, epoch: u32, log_end: i64) -> Option<(u32, i64)> {
        let i = self.starts.iter().rposition(|&(e, _)| e <= epoch)?;
        let end = self.starts.get(i + 1).map_or(log_end, |&(_, o)| o);
        Some((self.starts[i].0, end))
    }

    /// Where the first epoch this log holds began.
    pub fn first_start(&self) -> Option<i64> {
        self.starts.first().map(|&(_, o)| o)
    }

    /// Forgets epochs that start at or after `offset` (the log was cut there).
    pub fn truncate(&mut self, offset: i64) {
        self.starts.retain(|&(_, o)| o < offset);
    }

    /// The file form: one `epoch start` line per epoch, then a `crc` line
    /// over the lines before it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::from("shardlog-epochs 1\n");
        for &(e, o) in &self.starts {
            out.push_str(&format!("{e} {o}\n"));
        }
        let crc = crc32fast::hash(out.as_bytes());
        out.push_str(&format!("crc {crc:08x}\n"));
        out.into_bytes()
    }

    /// Reads [`encode`](Self::encode)'s form back; anything damaged,
    /// unordered or out of range is an error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
        let body_end = text.trim_end_matches('\n').rfind('\n').map(|i| i + 1).ok_or("no crc line")?;
        let (body, tail) = text.split_at(body_end);
        let crc = tail.trim().strip_prefix("crc ").and_then(|c| u32::from_str_radix(c, 16).ok()).ok_or("bad crc line")?;
        if crc32fast::hash(body.as_bytes()) != crc {
            return Err("crc mismatch".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some("shardlog-epochs 1") {
            return Err("unknown header".into());
        }
        let mut h = EpochHistory::default();
        for line in lines {
            let (e, o) = line.split_once(' ').ok_or("bad line")?;
            let (e, o): (u32, i64) = (e.parse().map_err(|_| "bad epoch")?, o.parse().map_err(|_| "bad offset")?);
            if o < 0 || h.starts.last().is_some_and(|&(le, lo)| le >= e || lo > o) {
                return Err(format!("epoch {e} at {o} does not follow the one before"));
            }
            h.starts.push((e, o));
        }
        Ok(h)
    }
}

/// Where a follower with `mine` (log end `my_end`) cuts its log, given
/// the leader's answer `(epoch, end)` for the follower's last epoch: the
/// follower keeps what the leader also has. `None` from the leader (it
/// has no epoch that old) cuts everything.
pub fn truncation_offset(mine: &EpochHistory, my_end: i64, leader_answer: Option<(u32, i64)>) -> i64 {
    let Some((epoch, leader_end)) = leader_answer else { return 0 };
    // The follower's own end of the epoch the leader answered with: when
    // the leader's epoch is older than the follower's last, the follower's
    // later epochs are not the leader's.
    let my_end_of_epoch = mine.end_of(epoch, my_end).filter(|&(e, _)| e == epoch).map_or(0, |(_, end)| end);
    my_end_of_epoch.min(leader_end).min(my_end)
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Follower {
    /// The offset it asked for last: everything below is on it.
    pub log_end: i64,
    /// Everything below is synced on it.
    pub synced: i64,
    /// When it last asked for an offset at or past the leader's log end
    /// of that moment (ms).
    pub caught_up_at_ms: u64,
    /// It fetched from this leader in this epoch.
    pub fetched: bool,
}

/// Why acks=all cannot be answered now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("only {isr} of {replicas} replicas are in sync; acks=all needs {needed}")]
    NotEnoughReplicas { isr: usize, replicas: usize, needed: usize },
}

/// The leader's side of one partition in one epoch.
#[derive(Debug, Clone)]
pub struct LeaderProgress {
    pub me: NodeId,
    pub epoch: u32,
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas as the metadata quorum last committed them,
    /// and the partition epoch they came with.
    pub isr: Vec<NodeId>,
    pub partition_epoch: u32,
    /// An ISR change proposed and not yet committed: until it is, the high
    /// watermark counts the members of both (Kafka's "maximal ISR"), so a
    /// replica that joins holds everything acknowledged once it is in.
    pending_isr: Option<Vec<NodeId>>,
    followers: BTreeMap<NodeId, Follower>,
    high_watermark: i64,
    /// The leader's log end when this epoch began: a replica short of it
    /// lacks batches of earlier epochs that may have been acknowledged.
    epoch_start: i64,
}

impl LeaderProgress {
    /// A new leader whose log ends at `epoch_start`; every follower counts
    /// as caught up at `now_ms`, so a new leader does not shrink the ISR
    /// before a follower could fetch (but none joins before it fetched).
    pub fn new(
        me: NodeId,
        (epoch, partition_epoch): (u32, u32),
        replicas: Vec<NodeId>,
        isr: Vec<NodeId>,
        high_watermark: i64,
        epoch_start: i64,
        now_ms: u64,
    ) -> Self {
        debug_assert!(isr.contains(&me), "the leader is in its ISR");
        debug_assert!(isr.iter().all(|r| replicas.contains(r)), "the ISR is within the replicas");
        debug_assert!(high_watermark <= epoch_start, "a new leader's high watermark is within its log");
        let followers =
            replicas.iter().filter(|&&r| r != me).map(|&r| (r, Follower { log_end: 0, synced: 0, caught_up_at_ms: now_ms, fetched: false })).collect();
        LeaderProgress { me, epoch, replicas, isr, partition_epoch, pending_isr: None, followers, high_watermark, epoch_start }
    }

    /// Takes the ISR the quorum committed (its own change, or the
    /// controller's after a fence). The quorum's ISR is never larger than
    /// the one the leader counts for the high watermark, since only the
    /// leader adds members, so every member it elects holds every
    /// acknowledged batch.
    pub fn learn_isr(&mut self, isr: Vec<NodeId>, partition_epoch: u32) {
        if partition_epoch > self.partition_epoch {
            self.isr = isr;
            self.partition_epoch = partition_epoch;
            self.pending_isr = None;
        }
        self.check();
    }

    /// What holds of a leader at every step: it is in its ISR, its ISR
    /// (committed or proposed) is within the replicas.
    fn check(&self) {
        debug_assert!(self.isr.contains(&self.me), "the leader {} is in its ISR {:?}", self.me, self.isr);
        debug_assert!(
            self.isr.iter().chain(self.pending_isr.iter().flatten()).all(|r| self.replicas.contains(r)),
            "the ISR {:?} (proposed {:?}) is within the replicas {:?}",
            self.isr,
            self.pending_isr,
            self.replicas
        );
    }

    /// Notes an ISR change sent to the quorum; the high watermark counts
    /// its members too until [`learn_isr`](Self::learn_isr) or
    /// [`isr_refused`](Self::isr_refused).
    pub fn isr_proposed(&mut self, isr: Vec<NodeId>) {
        debug_assert!(isr.contains(&self.me), "a leader never proposes to leave its own ISR");
        self.pending_isr = Some(isr);
        self.check();
    }

    /// The quorum refused the change (or it timed out).
    pub fn isr_refused(&mut self) {
        self.pending_isr = None;
    }

    pub fn isr_pending(&self) -> bool {
        self.pending_isr.is_some()
    }

    /// Each follower's (log end, synced), for lag reports.
    pub fn followers(&self) -> impl Iterator<Item = (NodeId, &Follower)> {
        self.followers.iter().map(|(&id, f)| (id, f))
    }

    /// The fewest in-sync replicas (the leader included) acks=all needs:
    /// a majority of the replicas.
    pub fn min_isr(&self) -> usize {
        self.replicas.len() / 2 + 1
    }

    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    pub fn follower(&self, id: NodeId) -> Option<&Follower> {
        self.followers.get(&id)
    }

    /// Takes a follower's fetch: it holds everything below `log_end`,
    /// synced below `synced`, while the leader's log ends at `leader_end`.
    pub fn on_fetch(&mut self, id: NodeId, log_end: i64, synced: i64, leader_end: i64, now_ms: u64) {
        let Some(f) = self.followers.get_mut(&id) else { return };
        f.log_end = log_end.min(leader_end);
        f.synced = synced.min(f.log_end);
        f.fetched = true;
        if log_end >= leader_end {
            f.caught_up_at_ms = now_ms;
        }
    }

    /// Moves the high watermark to what every ISR member holds synced
    /// (`leader_synced` for the leader), if that is further; returns it
    /// when it moved. With the ISR below `min_isr` it does not move, so
    /// nothing is visible to consumers that a majority does not hold.
    pub fn advance(&mut self, leader_synced: i64) -> Option<i64> {
        if self.isr.len() < self.min_isr() {
            return None;
        }
        let counted = self.isr.iter().chain(self.pending_isr.iter().flatten());
        let hw = counted.map(|&r| if r == self.me { leader_synced } else { self.followers.get(&r).map_or(0, |f| f.synced) }).min()?;
        (hw > self.high_watermark).then(|| {
            self.high_watermark = hw;
            hw
        })
        // The high watermark only moves forward: a smaller one is not taken.
    }

    /// Whether acks=all may be answered for a batch ending before `end`.
    pub fn acked(&self, end: i64) -> Result<bool, AckError> {
        if self.isr.len() < self.min_isr() {
            return Err(AckError::NotEnoughReplicas { isr: self.isr.len(), replicas: self.replicas.len(), needed: self.min_isr() });
        }
        Ok(self.high_watermark >= end)
    }

    /// The ISR the leader should ask the quorum for: followers not caught
    /// up within `lag_ms` leave it; followers out of it that fetched in
    /// this epoch, are caught up, and hold synced at least the high
    /// watermark and everything from before this epoch (so every
    /// acknowledged batch, durably) join it, unless `fenced` says the
    /// quorum fenced them (a broker that stopped, or was found dead, may
    /// have fetched moments ago; asking for it back would make acks=all
    /// wait for it until it lags out).
    /// `None` when it should stay as it is.
    pub fn wanted_isr(&self, now_ms: u64, lag_ms: u64, fenced: impl Fn(NodeId) -> bool) -> Option<Vec<NodeId>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let mut want: Vec<NodeId> = self
            .replicas
            .iter()
            .copied()
            .filter(|&r| {
                if r == self.me {
                    return true;
                }
                let Some(f) = self.followers.get(&r) else { return false };
                if fenced(r) {
                    return false;
                }
                if self.isr.contains(&r) {
                    now_ms < f.caught_up_at_ms + lag_ms
                } else {
                    // Synced, not only written: a member that crashes keeps
                    // what it synced, and the ISR must keep every ack.
                    f.fetched && f.synced >= self.high_watermark.max(self.epoch_start) && now_ms < f.caught_up_at_ms + lag_ms
                }
            })
            .collect();
        want.sort_unstable();
        let mut now: Vec<NodeId> = self.isr.clone();
        now.sort_unstable();
        (want != now).then_some(want)
    }
}

/// What a replica of a partition is doing now, as this broker believes
/// (a deposed leader believes it leads until it learns otherwise).
#[derive(Debug, Clone)]
pub enum Role {
    Leader(LeaderProgress),
    /// Following `leader` (possibly [`super::metadata::NO_LEADER`]) in `epoch`.
    Follower {
        leader: NodeId,
        epoch: u32,
    },
}

/// The metadata's word on one partition, as a replica reads it.
#[derive(Debug, Clone, Copy)]
pub struct Assignment<'a> {
    pub leader: NodeId,
    pub leader_epoch: u32,
    pub partition_epoch: u32,
    pub replicas: &'a [NodeId],
    /// Empty: every replica (a partition's first ISR).
    pub isr: &'a [NodeId],
}

impl Role {
    /// A replica that has not heard of any leader yet.
    pub fn unassigned() -> Self {
        Role::Follower { leader: super::metadata::NO_LEADER, epoch: 0 }
    }

    pub fn leading(&self) -> Option<&LeaderProgress> {
        match self {
            Role::Leader(l) => Some(l),
            Role::Follower { .. } => None,
        }
    }

    /// Takes the metadata's word on the partition. This broker leads when
    /// the metadata names it and the controller `registered` this process:
    /// until then the leadership is that of the process before a restart
    /// (whose unsynced tail may be gone), and registering the new one is
    /// what gives its partitions a new epoch. A leader of the same epoch
    /// only learns the ISR; a new leader starts at its log end
    /// (`log_end`) with the high watermark it last heard (`hw`), at most
    /// its log end. Returns whether the role changed.
    pub fn reconcile(&mut self, me: NodeId, registered: bool, a: &Assignment<'_>, log_end: i64, hw: i64, now_ms: u64) -> bool {
        let isr = if a.isr.is_empty() { a.replicas.to_vec() } else { a.isr.to_vec() };
        if a.leader == me && registered {
            if let Role::Leader(l) = self {
                if l.epoch == a.leader_epoch {
                    l.learn_isr(isr, a.partition_epoch);
                    return false;
                }
                debug_assert!(a.leader_epoch > l.epoch, "leader epochs never move back");
            }
            *self = Role::Leader(LeaderProgress::new(me, (a.leader_epoch, a.partition_epoch), a.replicas.to_vec(), isr, hw.min(log_end), log_end, now_ms));
            return true;
        }
        if matches!(self, Role::Follower { leader, epoch } if *leader == a.leader && *epoch == a.leader_epoch) {
            return false;
        }
        *self = Role::Follower { leader: a.leader, epoch: a.leader_epoch };
        true
    }
}

/// What a leader does with one partition of a follower's fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchVerdict {
    /// The follower follows an older epoch of this partition.
    FencedEpoch,
    /// The follower names an epoch newer than this leader's.
    NewerEpoch,
    /// The follower holds no replica of the partition.
    NotAReplica,
    /// The follower's log diverges from this one: it cuts it where
    /// [`follower_cut`] says, given the leader's end of the follower's
    /// last epoch (`None`: the leader has no epoch that old).
    Diverging(Option<(u32, i64)>),
    /// Serve it from its fetch offset.
    Serve,
}

impl LeaderProgress {
    /// Judges a follower's fetch: its epoch must be this leader's, and its
    /// log (ending at `fetch_offset`, its last batch in `last_epoch`, -1
    /// for none) must agree with this one (`history`, ending at
    /// `log_end`) up to its end (KIP-101/279, answered inline as KIP-320).
    pub fn judge_fetch(&self, history: &EpochHistory, log_end: i64, replica: NodeId, epoch: u32, fetch_offset: i64, last_epoch: i64) -> FetchVerdict {
        if epoch < self.epoch {
            return FetchVerdict::FencedEpoch;
        }
        if epoch > self.epoch {
            return FetchVerdict::NewerEpoch;
        }
        if !self.replicas.contains(&replica) {
            return FetchVerdict::NotAReplica;
        }
        if last_epoch < 0 && fetch_offset == 0 {
            return FetchVerdict::Serve;
        }
        let answer = u32::try_from(last_epoch).ok().and_then(|e| history.end_of(e, log_end));
        if answer.is_some_and(|(e, end)| i64::from(e) == last_epoch && end >= fetch_offset) {
            FetchVerdict::Serve
        } else {
            FetchVerdict::Diverging(answer)
        }
    }
}

/// Where a follower cuts its log (`mine`, ending at `my_end`) when its
/// leader says it diverges, with the leader's end of the follower's last
/// epoch.
pub fn follower_cut(mine: &EpochHistory, my_end: i64, answer: Option<(u32, i64)>) -> i64 {
    let at = truncation_offset(mine, my_end, answer);
    debug_assert!((0..=my_end).contains(&at), "a cut stays within the log");
    at
}

/// A follower's high watermark after its leader's answer: the leader's,
/// at most what the follower holds.
pub fn follower_high_watermark(leader_hw: i64, log_end: i64) -> i64 {
    leader_hw.min(log_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(starts: &[(u32, i64)]) -> EpochHistory {
        let mut h = EpochHistory::default();
        for &(e, o) in starts {
            h.begin(e, o);
        }
        h
    }

    #[test]
    fn an_epoch_ends_where_the_next_begins() {
        let h = history(&[(1, 0), (3, 10), (4, 25)]);
        assert_eq!(h.end_of(1, 40), Some((1, 10)));
        assert_eq!(h.end_of(2, 40), Some((1, 10)), "the largest epoch not above the one asked");
        assert_eq!(h.end_of(4, 40), Some((4, 40)));
        assert_eq!(h.end_of(0, 40), None);
        let mut t = h.clone();
        t.truncate(25);
        assert_eq!(t.last_epoch(), Some(3));
        let mut same = h.clone();
        same.begin(2, 30);
        assert_eq!(same, h, "an older epoch is ignored");
    }

    #[test]
    fn a_follower_drops_the_tail_the_new_leader_lacks() {
        // KIP-101's case: both wrote epoch 1 up to 10; the old leader (now
        // a follower) also wrote 10..12 in epoch 1, which was never acked.
        let leader = history(&[(1, 0), (2, 10)]);
        let follower = history(&[(1, 0)]);
        let answer = leader.end_of(follower.last_epoch().unwrap(), 20);
        assert_eq!(truncation_offset(&follower, 12, answer), 10);
        // KIP-279's case: the follower wrote in an epoch the leader never
        // had (2, from 8), so it cuts at the end of the last shared epoch.
        let leader = history(&[(1, 0), (3, 9)]);
        let follower = history(&[(1, 0), (2, 8)]);
        let answer = leader.end_of(follower.last_epoch().unwrap(), 15);
        assert_eq!(answer, Some((1, 9)));
        assert_eq!(truncation_offset(&follower, 11, answer), 8);
        // A follower behind the leader keeps everything it has.
        assert_eq!(truncation_offset(&history(&[(1, 0)]), 5, Some((1, 9))), 5);
        assert_eq!(truncation_offset(&follower, 11, None), 0);
    }

    #[test]
    fn the_high_watermark_is_what_every_isr_member_holds_synced() {
        let mut l = LeaderProgress::new(1, (5, 0), vec![1, 2, 3], vec![1, 2, 3], 0, 0, 0);
        assert_eq!(l.min_isr(), 2);
        l.on_fetch(2, 10, 8, 10, 1);
        assert_eq!(l.advance(10), None, "follower 3 holds nothing yet");
        l.on_fetch(3, 6, 6, 10, 1);
        assert_eq!(l.advance(10), Some(6));
        assert_eq!(l.acked(6), Ok(true));
        assert_eq!(l.acked(7), Ok(false));
        // Follower 3 stops fetching: it leaves the ISR after the lag.
        assert_eq!(l.wanted_isr(500, 1000, |_| false), None);
        l.on_fetch(2, 10, 8, 10, 900);
        assert_eq!(l.wanted_isr(1001, 1000, |_| false), Some(vec![1, 2]));
        l.isr = vec![1, 2];
        assert_eq!(l.advance(10), Some(8), "now only 1 and 2 count");
        // With the leader alone in sync, nothing is acknowledged.
        l.isr = vec![1];
        assert!(l.acked(8).is_err());
        assert_eq!(l.advance(10), None);
        // Follower 2 catches up again and rejoins.
        l.on_fetch(2, 10, 10, 10, 2000);
        assert_eq!(l.wanted_isr(2000, 1000, |_| false), Some(vec![1, 2]));
    }

    #[test]
    fn the_epoch_file_round_trips_and_refuses_damage() {
        let h = history(&[(1, 0), (3, 10), (4, 25)]);
        let bytes = h.encode();
        assert_eq!(EpochHistory::decode(&bytes), Ok(h.clone()));
        assert_eq!(EpochHistory::decode(&EpochHistory::default().encode()), Ok(EpochHistory::default()));
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x04;
            assert!(EpochHistory::decode(&bad).is_err(), "flipped byte {i} went unnoticed");
            assert!(EpochHistory::decode(&bytes[..i]).is_err() || i == bytes.len() - 1);
        }
    }

    #[test]
    fn a_pending_isr_change_counts_its_members_until_it_commits() {
        let mut l = LeaderProgress::new(1, (1, 0), vec![1, 2, 3], vec![1, 2], 0, 0, 0);
        l.on_fetch(2, 10, 10, 10, 5);
        assert_eq!(l.advance(10), Some(10));
        l.on_fetch(3, 10, 4, 10, 5);
        assert_eq!(l.wanted_isr(5, 1000, |_| false), None, "3 lacks synced data");
        l.on_fetch(3, 10, 10, 10, 6);
        let want = l.wanted_isr(6, 1000, |_| false).unwrap();
        l.isr_proposed(want.clone());
        assert_eq!(l.wanted_isr(6, 1000, |_| false), None, "one change at a time");
        l.on_fetch(2, 20, 20, 20, 7);
        assert_eq!(l.advance(20), None, "3 counts while its join is pending");
        l.learn_isr(want, 1);
        assert!(!l.isr_pending());
        l.on_fetch(3, 20, 20, 20, 8);
        assert_eq!(l.advance(20), Some(20));
    }

    #[test]
    fn a_lagging_follower_joins_the_isr_only_once_it_holds_the_high_watermark() {
        let mut l = LeaderProgress::new(1, (1, 0), vec![1, 2, 3], vec![1, 2], 0, 0, 0);
        l.on_fetch(2, 20, 20, 20, 10);
        l.advance(20);
        l.on_fetch(3, 15, 15, 20, 10);
        assert_eq!(l.wanted_isr(10, 1000, |_| false), None, "3 lacks 15..20");
        l.on_fetch(3, 20, 17, 20, 15);
        assert_eq!(l.wanted_isr(15, 1000, |_| false), None, "3 has 17..20 but not synced");
        l.on_fetch(3, 20, 20, 20, 20);
        assert_eq!(l.wanted_isr(20, 1000, |b| b == 3), None, "a fenced broker does not join, however caught up");
        assert_eq!(l.wanted_isr(20, 1000, |_| false), Some(vec![1, 2, 3]));
    }

    #[test]
    fn a_leader_judges_each_fetch_by_epoch_replica_and_log() {
        let l = LeaderProgress::new(1, (5, 0), vec![1, 2, 3], vec![1, 2, 3], 0, 20, 0);
        let mine = history(&[(1, 0), (5, 12)]);
        assert_eq!(l.judge_fetch(&mine, 20, 2, 4, 0, -1), FetchVerdict::FencedEpoch);
        assert_eq!(l.judge_fetch(&mine, 20, 2, 6, 0, -1), FetchVerdict::NewerEpoch);
        assert_eq!(l.judge_fetch(&mine, 20, 9, 5, 0, -1), FetchVerdict::NotAReplica);
        assert_eq!(l.judge_fetch(&mine, 20, 2, 5, 0, -1), FetchVerdict::Serve, "an empty follower");
        assert_eq!(l.judge_fetch(&mine, 20, 2, 5, 10, 1), FetchVerdict::Serve, "behind, in a shared epoch");
        assert_eq!(l.judge_fetch(&mine, 20, 2, 5, 14, 1), FetchVerdict::Diverging(Some((1, 12))), "epoch 1 ended at 12 here");
        assert_eq!(l.judge_fetch(&mine, 20, 2, 5, 14, 3), FetchVerdict::Diverging(Some((1, 12))), "an epoch this leader never had");
        assert_eq!(l.judge_fetch(&history(&[(2, 0)]), 20, 2, 5, 3, 1), FetchVerdict::Diverging(None), "older than any epoch here");
        // What the follower then keeps.
        assert_eq!(follower_cut(&history(&[(1, 0), (3, 12)]), 14, Some((1, 12))), 12);
        assert_eq!(follower_cut(&history(&[(1, 0)]), 3, None), 0);
        assert_eq!((follower_high_watermark(10, 7), follower_high_watermark(5, 7)), (7, 5));
    }

    #[test]
    fn a_replica_leads_only_as_its_registered_self_and_learns_the_isr_in_its_epoch() {
        let replicas = [1, 2, 3];
        let at = |leader, leader_epoch, isr: &'static [NodeId]| Assignment { leader, leader_epoch, partition_epoch: leader_epoch, replicas: &replicas, isr };
        let mut r = Role::unassigned();
        assert!(r.reconcile(1, false, &at(1, 1, &[]), 10, 4, 0));
        assert!(matches!(r, Role::Follower { leader: 1, epoch: 1 }), "named leader but not registered: it follows");
        assert!(r.leading().is_none());
        assert!(r.reconcile(1, true, &at(1, 2, &[]), 10, 40, 0));
        let l = r.leading().unwrap();
        assert_eq!((l.epoch, l.high_watermark(), l.isr.clone()), (2, 10, vec![1, 2, 3]), "a high watermark within its log; every replica at first");
        let isr_changed = Assignment { partition_epoch: 3, ..at(1, 2, &[1, 2]) };
        assert!(!r.reconcile(1, true, &isr_changed, 10, 0, 0), "the same epoch: only the ISR");
        assert_eq!(r.leading().unwrap().isr, vec![1, 2]);
        assert!(r.reconcile(1, true, &at(2, 3, &[2]), 10, 0, 0));
        assert!(matches!(r, Role::Follower { leader: 2, epoch: 3 }));
        assert!(!r.reconcile(1, true, &at(2, 3, &[2]), 12, 0, 0), "nothing new");
    }
}
