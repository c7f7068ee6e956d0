//! A deterministic simulation of the metadata quorum: three voters running
//! the real [`Quorum`] and [`Metadata`] code, driven by a seeded scheduler
//! that delivers, delays, drops, duplicates and reorders messages, cuts
//! and heals links, and crashes and restarts voters (losing whatever they
//! had not persisted). After every step it checks that no term has two
//! leaders, that no applied (so committed) entry is ever lost or changed,
//! and that every voter that applied an index holds the same state there.
//! Then it heals everything and checks the voters converge and still
//! commit.
//!
//! `SHARDLOG_SIM_SEEDS=N` runs N seeds (default 10000);
//! `SHARDLOG_SIM_SEED=S` replays one seed; a failure prints its seed.

// raft-rs's protobuf types carry hidden fields: they are built by
// assigning to a default, not by a struct literal.
#![allow(clippy::field_reassign_with_default)]

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::Message;

use super::log_store::LogStore;
use super::metadata::{BrokerMeta, Command, Metadata, NewTopic, Proposal};
use super::quorum::{Io, Quorum, QuorumConfig};
use super::seeded::Rng;

const VOTERS: u64 = 3;
const STEPS: usize = 1500;

struct Node {
    id: u64,
    q: Option<Quorum>,
    /// What survives a crash: the log store as last persisted.
    durable: LogStore,
    /// A round is between `ready` and `advance`: its changes are not durable.
    unpersisted: bool,
    restarts: u64,
    requests: u64,
}

struct Sim {
    rng: Rng,
    nodes: Vec<Node>,
    net: Vec<Message>,
    cut: BTreeSet<(u64, u64)>,
    leaders: BTreeMap<u64, u64>,
    committed: BTreeMap<u64, Proposal>,
    states: BTreeMap<u64, Metadata>,
    proposals: u64,
}

fn config(id: u64, rng: &mut Rng) -> QuorumConfig {
    let e = 6 + rng.below(10) as usize;
    QuorumConfig { id, election_ticks: (e, e + 1), heartbeat_ticks: 2, snapshot_every: 8 }
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = Rng(seed);
        let voters: Vec<u64> = (1..=VOTERS).collect();
        let nodes = voters
            .iter()
            .map(|&id| {
                let store = LogStore::new(voters.clone());
                Node { id, q: Some(Quorum::new(config(id, &mut rng), store.clone()).unwrap()), durable: store, unpersisted: false, restarts: 0, requests: 0 }
            })
            .collect();
        Sim { rng, nodes, net: Vec::new(), cut: BTreeSet::new(), leaders: BTreeMap::new(), committed: BTreeMap::new(), states: BTreeMap::new(), proposals: 0 }
    }

    fn linked(&self, a: u64, b: u64) -> bool {
        !self.cut.contains(&(a.min(b), a.max(b)))
    }

    /// Takes what a round produced: messages onto the network, applied
    /// commands into the checks.
    fn absorb(&mut self, i: usize, io: Io) -> Result<(), String> {
        self.net.extend(io.send);
        let q = self.nodes[i].q.as_ref().expect("a live node");
        for a in &io.applied {
            match self.committed.get(&a.index) {
                Some(p) if p != &a.proposal => {
                    return Err(format!("index {} applied as {:?} on node {} but as {:?} before", a.index, a.proposal, self.nodes[i].id, p))
                }
                Some(_) => {}
                None => {
                    self.committed.insert(a.index, a.proposal.clone());
                }
            }
        }
        let st = q.state();
        match self.states.get(&st.applied) {
            Some(s) if s != st => return Err(format!("node {} differs from another node at index {}", self.nodes[i].id, st.applied)),
            Some(_) => {}
            None => {
                self.states.insert(st.applied, st.clone());
            }
        }
        Ok(())
    }

    fn check_leaders(&mut self) -> Result<(), String> {
        for n in &self.nodes {
            let Some(q) = &n.q else { continue };
            if q.is_leader() {
                if let Some(&other) = self.leaders.get(&q.term()) {
                    if other != n.id {
                        return Err(format!("term {} has two leaders: {} and {}", q.term(), other, n.id));
                    }
                }
                self.leaders.insert(q.term(), n.id);
            }
        }
        Ok(())
    }

    fn ready(&mut self, i: usize) -> Result<(), String> {
        let n = &mut self.nodes[i];
        let Some(q) = n.q.as_mut() else { return Ok(()) };
        if n.unpersisted {
            return Ok(());
        }
        if let Some(io) = q.ready() {
            n.unpersisted = true;
            self.absorb(i, io)?;
        }
        Ok(())
    }

    fn persist(&mut self, i: usize) -> Result<(), String> {
        let n = &mut self.nodes[i];
        let Some(q) = n.q.as_mut() else { return Ok(()) };
        if !n.unpersisted {
            return Ok(());
        }
        n.durable = q.store().clone();
        n.unpersisted = false;
        let io = q.advance();
        self.absorb(i, io)
    }

    fn deliver(&mut self, k: usize, keep_copy: bool) {
        let m = if keep_copy { self.net[k].clone() } else { self.net.swap_remove(k) };
        if !self.linked(m.from, m.to) {
            return;
        }
        if let Some(q) = self.nodes.iter_mut().find(|n| n.id == m.to).and_then(|n| n.q.as_mut()) {
            q.step(m);
        }
    }

    fn command(&mut self) -> Command {
        self.proposals += 1;
        let k = self.proposals;
        match self.rng.below(6) {
            0 | 1 => Command::CreateTopics(vec![NewTopic {
                name: format!("t{}", self.rng.below(20)),
                partitions: 1 + self.rng.below(3) as u32,
                replication_factor: 1,
                configs: Default::default(),
            }]),
            2 => Command::DeleteTopics(vec![format!("t{}", self.rng.below(20))]),
            3 => {
                let id = 1 + self.rng.below(VOTERS) as i32;
                Command::RegisterBroker(BrokerMeta {
                    id,
                    host: "127.0.0.1".into(),
                    port: 9000 + id as u16,
                    shards: 2,
                    incarnation: k,
                    fenced: false,
                    external: None,
                })
            }
            4 => Command::FenceBroker { id: 1 + self.rng.below(VOTERS) as i32, incarnation: self.rng.below(k + 1) },
            _ => Command::AlterIsr {
                topic: format!("t{}", self.rng.below(20)),
                partition: 0,
                leader_epoch: self.rng.below(3) as u32,
                partition_epoch: self.rng.below(3) as u32,
                isr: (1..=VOTERS as i32).filter(|_| self.rng.chance(70)).collect(),
            },
        }
    }

    fn propose(&mut self, i: usize) {
        let command = self.command();
        let n = &mut self.nodes[i];
        let Some(q) = n.q.as_mut() else { return };
        n.requests += 1;
        let p = Proposal { origin: n.id as i32, request: (n.restarts << 32) | n.requests, command };
        let _ = q.propose(&p);
    }

    fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.q = None;
        n.unpersisted = false;
    }

    fn restart(&mut self, i: usize) {
        let cfg = config(self.nodes[i].id, &mut self.rng);
        let n = &mut self.nodes[i];
        if n.q.is_none() {
            n.restarts += 1;
            n.q = Some(Quorum::new(cfg, n.durable.clone()).expect("a persisted store reopens"));
        }
    }

    fn step(&mut self) -> Result<(), String> {
        let i = self.rng.below(VOTERS) as usize;
        let r = self.rng.below(1000);
        match r {
            0..=349 if !self.net.is_empty() => {
                let k = self.rng.below(self.net.len() as u64) as usize;
                let dup = self.rng.chance(5);
                self.deliver(k, dup);
            }
            350..=399 if !self.net.is_empty() => {
                let k = self.rng.below(self.net.len() as u64) as usize;
                self.net.swap_remove(k);
            }
            400..=649 => {
                if let Some(q) = self.nodes[i].q.as_mut() {
                    q.tick();
                }
            }
            650..=779 => self.ready(i)?,
            780..=909 => self.persist(i)?,
            910..=959 => self.propose(i),
            960..=969 => {
                if let Some(q) = self.nodes[i].q.as_mut() {
                    q.read_index(vec![1]);
                }
            }
            970..=977 => self.crash(i),
            978..=989 => self.restart(i),
            990..=994 => {
                let j = self.rng.below(VOTERS) + 1;
                let a = i as u64 + 1;
                if a != j {
                    self.cut.insert((a.min(j), a.max(j)));
                }
            }
            _ => self.cut.clear(),
        }
        self.check_leaders()
    }

    /// Heals everything and runs the voters in lock step until they agree.
    fn settle(&mut self) -> Result<(), String> {
        self.cut.clear();
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        let mut final_proposed = false;
        for round in 0..4000 {
            // Clocks drift: a voter misses a tick now and then, so voters
            // whose (fixed, in the simulation) election timeouts are equal
            // do not split the vote forever.
            for i in 0..self.nodes.len() {
                if !self.rng.chance(15) {
                    self.nodes[i].q.as_mut().expect("all restarted").tick();
                }
            }
            while !self.net.is_empty() {
                self.deliver(0, false);
                for i in 0..self.nodes.len() {
                    self.ready(i)?;
                    self.persist(i)?;
                }
            }
            for i in 0..self.nodes.len() {
                self.ready(i)?;
                self.persist(i)?;
            }
            self.check_leaders()?;
            let leader = self.nodes.iter().position(|n| n.q.as_ref().is_some_and(|q| q.is_leader()));
            let applied: BTreeSet<u64> = self.nodes.iter().map(|n| n.q.as_ref().expect("live").state().applied).collect();
            if let Some(l) = leader {
                if !final_proposed && round > 5 {
                    self.propose(l);
                    final_proposed = true;
                } else if final_proposed && applied.len() == 1 && self.nodes[l].q.as_ref().expect("live").commit_index() == *applied.first().expect("one") {
                    let top = *applied.first().expect("one");
                    let last = self.committed.keys().next_back().copied().unwrap_or(0);
                    if top < last {
                        return Err(format!("the voters agree on index {top} but index {last} was applied before"));
                    }
                    return Ok(());
                }
            }
        }
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| {
                let q = n.q.as_ref().expect("live");
                format!("node {}: term {} leader {:?} applied {} commit {} [{}]", n.id, q.term(), q.leader(), q.state().applied, q.commit_index(), q.progress())
            })
            .collect();
        Err(format!("the voters did not converge within 4000 rounds after healing: {}", nodes.join("; ")))
    }
}

#[test]
fn the_quorum_keeps_its_promises_under_faults() {
    let one: Option<u64> = std::env::var("SHARDLOG_SIM_SEED").ok().and_then(|s| s.parse().ok());
    let count: u64 = std::env::var("SHARDLOG_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let seeds: Vec<u64> = match one {
        Some(s) => vec![s],
        None => (0..count).collect(),
    };
    let started = std::time::Instant::now();
    let mut committed = 0usize;
    for &seed in &seeds {
        let r = std::panic::catch_unwind(|| {
            let mut sim = Sim::new(seed);
            (0..STEPS).try_for_each(|step| sim.step().map_err(|e| format!("step {step}: {e}"))).and_then(|()| sim.settle()).map(|()| sim.committed.len())
        });
        match r {
            Ok(Ok(n)) => committed += n,
            Ok(Err(e)) => panic!("seed {seed} failed: {e}\nreplay it with SHARDLOG_SIM_SEED={seed} cargo test --lib cluster::sim"),
            Err(_) => panic!("seed {seed} panicked (above)\nreplay it with SHARDLOG_SIM_SEED={seed} cargo test --lib cluster::sim"),
        }
    }
    // The faults must not be so many that nothing ever commits.
    assert!(committed >= seeds.len(), "only {committed} entries committed over {} seeds", seeds.len());
    eprintln!("simulated {} seeds in {:.1} s; {committed} entries committed", seeds.len(), started.elapsed().as_secs_f64());
}

#[test]
fn a_seed_replays_identically() {
    let trace = |seed| {
        let mut sim = Sim::new(seed);
        for _ in 0..STEPS {
            sim.step().unwrap();
        }
        (sim.committed.clone(), sim.leaders.clone())
    };
    assert_eq!(trace(7), trace(7));
}
