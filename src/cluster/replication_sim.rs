//! A seeded simulation of one partition replicated on three brokers: the
//! replication core the broker runs (a replica's [`Role`] from the
//! metadata, the leader's [`LeaderProgress`] and its judgement of each
//! fetch, the follower's cut and high watermark, [`EpochHistory`]) and
//! the metadata's elections (`Metadata::apply`), with producers, follower
//! fetches, syncs, ISR changes, crashes that lose what was not synced,
//! fences of live leaders (zombies that go on until they learn),
//! restarts (before or after a fence, learning the metadata before the
//! controller registers them) and host crashes of the whole cluster at
//! once. After every step: every acknowledged record is in the
//! current leader's log at its offset. At the end, with every broker back
//! and caught up: every acknowledged record is on every in-sync replica.
//!
//! `SHARDLOG_REPL_SEEDS=N` runs N seeds (default 3000); a failure prints
//! the `SHARDLOG_REPL_SEED=S` that replays it, and `SHARDLOG_REPL_TRACE=1`
//! prints every step and truncation of the replay.

use std::collections::BTreeMap;

use super::metadata::{BrokerMeta, Command, Metadata, NewTopic, NodeId, Proposal, NO_LEADER};
use super::replication::{follower_cut, follower_high_watermark, Assignment, EpochHistory, FetchVerdict, Role};
use super::seeded::Rng;

const STEPS: usize = 400;
/// The rule the wiring keeps (switchable here to see the simulation find
/// what breaks without it).
const RULE_LEADS_ONLY_REGISTERED: bool = true;
const LAG_MS: u64 = 50;

/// A record: the epoch it was written in and a unique id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    epoch: u32,
    id: u64,
}

struct Replica {
    log: Vec<Rec>,
    synced: usize,
    history: EpochHistory,
    alive: bool,
    incarnation: u64,
    /// Its role, as this replica believes (a zombie may still lead).
    role: Role,
    /// Records produced to it as leader, waiting for acks=all.
    pending: Vec<(usize, u64)>,
    /// The high watermark as it last heard (or knew, leading).
    hw: i64,
}

struct Sim {
    rng: Rng,
    now_ms: u64,
    md: Metadata,
    index: u64,
    reps: BTreeMap<NodeId, Replica>,
    next_id: u64,
    /// Acknowledged records: offset -> id.
    acked: BTreeMap<usize, u64>,
}

impl Sim {
    fn commit(&mut self, command: Command) -> Result<(), String> {
        self.index += 1;
        let r = self.md.apply(self.index, &Proposal { origin: 0, request: self.index, command });
        r.results.into_iter().next().unwrap_or(Ok(())).map_err(|e| e.to_string())
    }

    fn new(seed: u64) -> Sim {
        let mut s = Sim { rng: Rng(seed), now_ms: 0, md: Metadata::default(), index: 0, reps: BTreeMap::new(), next_id: 0, acked: BTreeMap::new() };
        for id in 1..=3 {
            s.reps.insert(
                id,
                Replica {
                    log: Vec::new(),
                    synced: 0,
                    history: EpochHistory::default(),
                    alive: true,
                    incarnation: 1,
                    role: Role::unassigned(),
                    pending: Vec::new(),
                    hw: 0,
                },
            );
            s.commit(Command::RegisterBroker(BrokerMeta { id, host: "h".into(), port: 1, shards: 1, incarnation: 1, fenced: false, external: None })).unwrap();
        }
        s.commit(Command::CreateTopics(vec![NewTopic { name: "p".into(), partitions: 1, replication_factor: 3, configs: Default::default() }])).unwrap();
        s.learn_all();
        s
    }

    fn partition(&self) -> &super::metadata::PartitionMeta {
        &self.md.topics["p"].partitions[0]
    }

    /// A live broker learns the metadata: the leader starts leading (a new
    /// epoch begins at its log end); a deposed leader stops.
    fn learn(&mut self, id: NodeId) {
        let p = self.partition().clone();
        let now = self.now_ms;
        let registered = {
            let r = &self.reps[&id];
            self.md.brokers.get(&id).is_some_and(|b| b.incarnation == r.incarnation && !b.fenced)
        };
        let r = self.reps.get_mut(&id).expect("a replica");
        if !r.alive {
            return;
        }
        // `Role::reconcile`, as `Shard::reconcile_replicas` calls it; the
        // rule that a broker leads only once the controller registered
        // this incarnation can be switched off here.
        let registered = registered || !RULE_LEADS_ONLY_REGISTERED;
        let replicas: Vec<NodeId> = p.replicas.iter().map(|x| x.broker).collect();
        let a = Assignment { leader: p.leader, leader_epoch: p.leader_epoch, partition_epoch: p.partition_epoch, replicas: &replicas, isr: &p.isr };
        let hw = r.role.leading().map_or(r.hw, |l| l.high_watermark());
        if r.role.reconcile(id, registered, &a, r.log.len() as i64, hw, now) {
            r.pending.clear();
        }
    }

    fn learn_all(&mut self) {
        for id in 1..=3 {
            self.learn(id);
        }
    }

    fn check(&self) -> Result<(), String> {
        let p = self.partition();
        if p.leader == NO_LEADER {
            return Ok(());
        }
        let l = &self.reps[&p.leader];
        if !l.alive {
            return Ok(());
        }
        for (&off, &id) in &self.acked {
            match l.log.get(off) {
                Some(r) if r.id == id => {}
                other => return Err(format!("acknowledged record {id} at offset {off} is {other:?} on the leader {} (epoch {})", p.leader, p.leader_epoch)),
            }
        }
        Ok(())
    }

    fn produce(&mut self, id: NodeId) {
        let next = self.next_id;
        let r = self.reps.get_mut(&id).expect("a replica");
        let Some(l) = r.role.leading() else { return };
        if !r.alive {
            return;
        }
        let epoch = l.epoch;
        // As the shard's produce: the epoch begins at its first batch.
        r.history.begin(epoch, r.log.len() as i64);
        r.log.push(Rec { epoch, id: next });
        r.pending.push((r.log.len() - 1, next));
        self.next_id += 1;
    }

    fn sync(&mut self, id: NodeId) {
        let r = self.reps.get_mut(&id).expect("a replica");
        if r.alive {
            r.synced = r.log.len();
        }
    }

    /// The leader (as `id` believes) moves its high watermark and answers
    /// acks=all, and asks for the ISR it wants.
    fn lead(&mut self, id: NodeId) -> Result<(), String> {
        let now = self.now_ms;
        let r = self.reps.get_mut(&id).expect("a replica");
        if !r.alive {
            return Ok(());
        }
        let synced = r.synced as i64;
        let Role::Leader(l) = &mut r.role else { return Ok(()) };
        l.advance(synced);
        r.hw = l.high_watermark();
        let mut newly = Vec::new();
        r.pending.retain(|&(off, rid)| match l.acked(off as i64 + 1) {
            Ok(true) => {
                newly.push((off, rid));
                false
            }
            _ => true,
        });
        let fenced: Vec<NodeId> = self.md.brokers.values().filter(|b| b.fenced).map(|b| b.id).collect();
        let want = l.wanted_isr(now, LAG_MS, |b| fenced.contains(&b));
        let (epoch, partition_epoch) = (l.epoch, l.partition_epoch);
        for (off, rid) in newly {
            if let Some(&other) = self.acked.get(&off) {
                if other != rid {
                    return Err(format!("offset {off} acknowledged twice: {other} then {rid}"));
                }
            }
            self.acked.insert(off, rid);
        }
        if let Some(isr) = want {
            if self.commit(Command::AlterIsr { topic: "p".into(), partition: 0, leader_epoch: epoch, partition_epoch, isr: isr.clone() }).is_ok() {
                if let Some(Role::Leader(l)) = self.reps.get_mut(&id).map(|r| &mut r.role) {
                    l.learn_isr(isr, partition_epoch + 1);
                }
            }
        }
        Ok(())
    }

    /// Follower `id` fetches from the leader it follows, which judges the
    /// fetch as the broker's leader does: the follower cuts a diverged
    /// log, or takes up to four records and the high watermark.
    fn fetch(&mut self, id: NodeId) {
        let f = &self.reps[&id];
        let Role::Follower { leader, epoch } = f.role else { return };
        if !f.alive || leader == NO_LEADER || leader == id || !self.reps[&leader].alive {
            return;
        }
        let l = &self.reps[&leader];
        // A deposed leader answers NotLeader; the follower asks again later.
        let Some(lp) = l.role.leading() else { return };
        let (fetch_offset, last_epoch) = (f.log.len() as i64, f.history.last_epoch().map_or(-1, i64::from));
        let verdict = lp.judge_fetch(&l.history, l.log.len() as i64, id, epoch, fetch_offset, last_epoch);
        let (l_log, l_hw) = (l.log.clone(), lp.high_watermark());
        let take = 1 + self.rng.below(4) as usize;
        let now = self.now_ms;
        match verdict {
            FetchVerdict::Diverging(answer) => {
                let f = self.reps.get_mut(&id).expect("a replica");
                let cut = follower_cut(&f.history, fetch_offset, answer);
                if std::env::var("SHARDLOG_REPL_TRACE").is_ok() {
                    eprintln!("  follower {id} e{epoch} cuts: mine {:?} end {fetch_offset} answer {answer:?} cut {cut}", f.history);
                }
                f.log.truncate(cut as usize);
                f.history.truncate(cut);
                f.synced = f.synced.min(cut as usize);
            }
            FetchVerdict::Serve => {
                let synced = self.reps[&id].synced as i64;
                if let Some(Role::Leader(l)) = self.reps.get_mut(&leader).map(|r| &mut r.role) {
                    l.on_fetch(id, fetch_offset, synced, l_log.len() as i64, now);
                }
                let f = self.reps.get_mut(&id).expect("a replica");
                for rec in l_log.iter().skip(fetch_offset as usize).take(take) {
                    f.history.begin(rec.epoch, f.log.len() as i64);
                    f.log.push(*rec);
                }
                f.hw = follower_high_watermark(l_hw, f.log.len() as i64);
            }
            FetchVerdict::FencedEpoch | FetchVerdict::NewerEpoch | FetchVerdict::NotAReplica => {}
        }
    }

    fn crash(&mut self, id: NodeId) {
        let r = self.reps.get_mut(&id).expect("a replica");
        if !r.alive {
            return;
        }
        r.alive = false;
        r.log.truncate(r.synced);
        r.history.truncate(r.synced as i64);
        r.hw = r.hw.min(r.synced as i64);
        // A process starts again knowing no leader.
        r.role = Role::unassigned();
        r.pending.clear();
    }

    fn fence(&mut self, id: NodeId) {
        let inc = self.reps[&id].incarnation;
        let _ = self.commit(Command::FenceBroker { id, incarnation: inc });
        // The new leader hears at once; the others when they next learn.
        let leader = self.partition().leader;
        if leader != NO_LEADER {
            self.learn(leader);
        }
    }

    /// A live broker heartbeats and the controller registers it if the
    /// metadata does not hold it as it is (fenced, or restarted: another
    /// incarnation), as `controller::Liveness` does.
    fn heartbeat(&mut self, id: NodeId) {
        let r = &self.reps[&id];
        if r.alive && self.md.brokers.get(&id).is_some_and(|b| b.fenced || b.incarnation != r.incarnation) {
            let inc = r.incarnation;
            let _ =
                self.commit(Command::RegisterBroker(BrokerMeta { id, host: "h".into(), port: 1, shards: 1, incarnation: inc, fenced: false, external: None }));
            self.learn_all();
        }
    }

    /// A dead broker starts again, a new incarnation, and learns the
    /// metadata as it is, before the controller registers it (that takes a
    /// `heartbeat`): possibly before it was fenced, and possibly with the
    /// whole cluster down and no quorum to register anyone.
    fn restart(&mut self, id: NodeId) {
        let r = self.reps.get_mut(&id).expect("a replica");
        if r.alive {
            self.heartbeat(id);
            return;
        }
        r.alive = true;
        r.incarnation += 1;
        self.learn(id);
    }

    /// A host crash of every broker at once (each loses its unsynced tail).
    fn crash_all(&mut self) {
        for id in 1..=3 {
            self.crash(id);
        }
    }

    fn step(&mut self) -> Result<(), String> {
        self.now_ms += 1 + self.rng.below(5);
        let id = 1 + self.rng.below(3) as NodeId;
        let ev = self.rng.below(100);
        if std::env::var("SHARDLOG_REPL_TRACE").is_ok() {
            let p = self.partition();
            let logs: Vec<String> = self
                .reps
                .iter()
                .map(|(k, r)| {
                    format!(
                        "{k}:{}{}/{}s{}{}",
                        if r.alive { "" } else { "X" },
                        r.log.len(),
                        r.synced,
                        match &r.role {
                            Role::Leader(l) => format!(" L{} hw{} isr{:?}", l.epoch, l.high_watermark(), l.isr),
                            Role::Follower { leader, epoch } => format!(" f{leader}e{epoch}"),
                        },
                        String::new()
                    )
                })
                .collect();
            eprintln!(
                "t{} ev{ev} id{id} | leader {} e{} isr {:?} | {} | acked {}",
                self.now_ms,
                p.leader,
                p.leader_epoch,
                p.isr,
                logs.join(" ; "),
                self.acked.len()
            );
        }
        match ev {
            0..=24 => {
                let leader = self.partition().leader;
                // Producers also reach a zombie that still thinks it leads.
                let target = if self.rng.below(4) == 0 { id } else { leader };
                if target != NO_LEADER {
                    self.produce(target);
                }
            }
            25..=49 => self.fetch(id),
            50..=64 => self.sync(id),
            65..=79 => self.lead(id)?,
            80..=84 => self.learn(id),
            85..=88 if self.rng.below(10) == 0 => self.crash_all(),
            85..=88 => self.crash(id),
            89..=90 => self.heartbeat(id),
            91..=92 => {
                if !self.reps[&id].alive || self.rng.below(3) == 0 {
                    // A dead broker, or a live one the controller stopped
                    // hearing (it goes on as a zombie until it learns).
                    self.fence(id);
                }
            }
            _ => self.restart(id),
        }
        self.check()
    }

    /// Everyone back, fetching and syncing until the ISR holds all.
    fn settle(&mut self) -> Result<(), String> {
        for id in 1..=3 {
            self.restart(id);
        }
        for id in 1..=3 {
            self.heartbeat(id);
        }
        self.learn_all();
        for _ in 0..400 {
            self.now_ms += 1;
            for id in 1..=3 {
                self.fetch(id);
                self.sync(id);
                self.lead(id)?;
                self.learn(id);
            }
            self.check()?;
        }
        let p = self.partition().clone();
        if p.leader == NO_LEADER {
            return Err("no leader after every broker came back".into());
        }
        for &b in &p.isr {
            let log = &self.reps[&b].log;
            for (&off, &rid) in &self.acked {
                if log.get(off).map(|r| r.id) != Some(rid) {
                    return Err(format!("in-sync replica {b} lacks acknowledged record {rid} at offset {off}"));
                }
            }
        }
        Ok(())
    }
}

#[test]
fn no_acknowledged_record_is_lost_through_crashes_fences_and_zombies() {
    let one: Option<u64> = std::env::var("SHARDLOG_REPL_SEED").ok().and_then(|s| s.parse().ok());
    let count: u64 = std::env::var("SHARDLOG_REPL_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3000);
    let seeds: Vec<u64> = one.map_or_else(|| (0..count).collect(), |s| vec![s]);
    let mut acked = 0;
    for &seed in &seeds {
        let mut sim = Sim::new(seed);
        let r = (0..STEPS).try_for_each(|i| sim.step().map_err(|e| format!("step {i}: {e}"))).and_then(|()| sim.settle());
        if let Err(e) = r {
            panic!("seed {seed} failed: {e}\nreplay it with SHARDLOG_REPL_SEED={seed} cargo test --lib cluster::replication_sim");
        }
        acked += sim.acked.len();
    }
    assert!(acked > seeds.len(), "only {acked} records acknowledged over {} seeds", seeds.len());
    eprintln!("{} seeds; {acked} records acknowledged, none lost", seeds.len());
}
