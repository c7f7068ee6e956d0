//! The cluster's metadata, the state machine the quorum replicates:
//! registered brokers, topics with their settings, and each partition's
//! replicas as (broker, shard) with its leader and leader epoch.
//!
//! Sans-IO and deterministic: [`Metadata::apply`] turns the same sequence
//! of [`Command`]s into the same state and the same outcomes on every
//! broker and every shard, so a command's validation (does the topic
//! exist, is the replication factor possible) runs inside `apply`, on
//! state every replica agrees on, and the proposer reads its outcome from
//! its own replica.
//!
//! Architecture invariants:
//! - only committed commands change a [`Metadata`], in log order, through
//!   [`Metadata::apply`] (or a whole snapshot replaces it);
//! - `applied` is the quorum log index of the last command applied; two
//!   copies with the same `applied` are equal.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::auth::acl::{Acl, MAX_ACLS};
use crate::auth::scram::{Mechanism, ScramCredential};

use crate::storage::LogConfig;

/// A broker's id in the cluster (`--node-id`).
pub type NodeId = i32;
/// "No broker": a partition without a live leader.
pub const NO_LEADER: NodeId = -1;

/// Longest topic name, as in Kafka.
pub const MAX_TOPIC_NAME_BYTES: usize = 249;
/// Most partitions one topic may have.
pub const MAX_PARTITIONS_PER_TOPIC: u32 = 10_000;
/// Request ids remembered per proposing broker, to apply a re-proposed
/// command once.
pub const DEDUP_WINDOW: usize = 1024;

/// A broker as it registered with the controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerMeta {
    pub id: NodeId,
    /// The address clients are told to connect to.
    pub host: String,
    pub port: u16,
    pub shards: u16,
    /// Differs on every start of the broker's process; a heartbeat or a
    /// fence for an older incarnation is ignored.
    pub incarnation: u64,
    /// Missed heartbeats for the session timeout: leads nothing.
    pub fenced: bool,
    /// The address clients outside the brokers' network are told (the
    /// external listener's advertised address), if the broker has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<(String, u16)>,
}

impl BrokerMeta {
    /// Where a client that came in through an external listener (when
    /// `external`) or the main one connects to this broker.
    pub fn address_for(&self, external: bool) -> (&str, u16) {
        match (&self.external, external) {
            (Some((h, p)), true) => (h, *p),
            _ => (&self.host, self.port),
        }
    }
}

/// One copy of a partition: the broker and the shard on it that owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replica {
    pub broker: NodeId,
    pub shard: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// The first replica is the preferred leader.
    pub replicas: Vec<Replica>,
    /// [`NO_LEADER`] while every replica is fenced.
    pub leader: NodeId,
    /// Bumped whenever the leader changes.
    pub leader_epoch: u32,
    /// The in-sync replicas: only they may be elected leader. Empty in
    /// state from before replication: every replica then counts.
    #[serde(default)]
    pub isr: Vec<NodeId>,
    /// Bumped whenever the leader or the ISR changes: an ISR change is
    /// refused unless it was computed from the current one.
    #[serde(default)]
    pub partition_epoch: u32,
}

impl PartitionMeta {
    /// Whether `broker` is in sync (may be elected).
    pub fn in_sync(&self, broker: NodeId) -> bool {
        if self.isr.is_empty() {
            self.replicas.iter().any(|r| r.broker == broker)
        } else {
            self.isr.contains(&broker)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub replication_factor: u16,
    pub partitions: Vec<PartitionMeta>,
    /// The settings given at creation, as key/value strings.
    pub configs: BTreeMap<String, String>,
}

impl TopicMeta {
    pub fn partitions(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// The shard of broker `node` that owns `partition`, if `node` holds a
    /// replica of it. A broker restarted with fewer shards folds the
    /// assignment onto the shards it has.
    pub fn shard_on(&self, partition: u32, node: NodeId, nr_shards: u16) -> Option<u16> {
        let p = self.partitions.get(partition as usize)?;
        p.replicas.iter().find(|r| r.broker == node).map(|r| r.shard % nr_shards.max(1))
    }

    pub fn leader(&self, partition: u32) -> Option<NodeId> {
        self.partitions.get(partition as usize).map(|p| p.leader)
    }

    pub fn log_config(&self, base: &LogConfig) -> LogConfig {
        log_config(base, &self.configs)
    }
}

/// The whole metadata table; every shard of every broker holds a copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The quorum log index of the last applied command.
    pub applied: u64,
    pub brokers: BTreeMap<NodeId, BrokerMeta>,
    pub topics: BTreeMap<String, TopicMeta>,
    /// Recent request ids per proposing broker (see [`DEDUP_WINDOW`]).
    pub requests: BTreeMap<NodeId, VecDeque<u64>>,
    /// The first idempotent producer id not handed out yet: brokers take
    /// blocks of ids from here ([`Command::AllocateProducerIds`]), so an
    /// id is unique in the cluster.
    #[serde(default)]
    pub next_producer_id: i64,
    /// SCRAM credentials by user and mechanism (salted keys, never a
    /// password), as Kafka's KRaft keeps them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, BTreeMap<Mechanism, ScramCredential>>,
    /// Access-control entries ([`crate::auth::acl`]).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub acls: BTreeSet<Acl>,
}

/// Most users the cluster holds.
pub const MAX_USERS: usize = 10_000;

/// A request to create a topic, as a client states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u16,
    pub configs: BTreeMap<String, String>,
}

/// What a broker asks the quorum to do; an entry of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    CreateTopics(Vec<NewTopic>),
    DeleteTopics(Vec<String>),
    /// Registers (or re-registers after a restart or a fence) a broker.
    RegisterBroker(BrokerMeta),
    /// The controller stopped hearing from this incarnation of a broker.
    FenceBroker {
        id: NodeId,
        incarnation: u64,
    },
    /// A partition's leader changes its in-sync replicas; refused unless
    /// `leader_epoch` is the partition's current one (a deposed leader
    /// cannot change it).
    AlterIsr {
        topic: String,
        partition: u32,
        leader_epoch: u32,
        partition_epoch: u32,
        isr: Vec<NodeId>,
    },
    /// A block of `count` idempotent producer ids for the proposer.
    AllocateProducerIds {
        count: u32,
    },
    /// Sets users' SCRAM credentials (one result each), then deletes
    /// users (one result each).
    AlterUsers {
        upserts: Vec<(String, Mechanism, ScramCredential)>,
        deletions: Vec<String>,
    },
    /// Adds entries, then removes entries (one result each).
    AlterAcls {
        additions: Vec<Acl>,
        removals: Vec<Acl>,
    },
}

/// A command with who proposed it, so the proposer can find its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub origin: NodeId,
    pub request: u64,
    pub command: Command,
}

/// What applying one command did, for the proposer and for the shards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// One result per topic of a create or delete; one otherwise.
    pub results: Vec<Result<(), MetadataError>>,
    /// Topics whose partitions appeared or whose placement changed.
    pub created: Vec<String>,
    /// Topics that no longer exist.
    pub deleted: Vec<String>,
    /// A re-proposal of a command already applied: nothing changed.
    pub duplicate: bool,
    /// The block of producer ids an `AllocateProducerIds` took.
    pub producer_ids: Option<std::ops::Range<i64>>,
}

/// Why a change was refused; maps one to one onto protocol error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    #[error("invalid topic name '{name}': {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("a topic needs between 1 and {MAX_PARTITIONS_PER_TOPIC} partitions, not {0}")]
    InvalidPartitions(u32),
    #[error("{}", replication_factor_problem(*asked, *brokers))]
    InvalidReplicationFactor { asked: u16, brokers: u16 },
    #[error("invalid config: {0}")]
    InvalidConfig(String),
    #[error("the change could not be stored: {0}")]
    Storage(String),
    #[error("the controller is unavailable: {0}")]
    Unavailable(String),
    #[error("topic '{0}' is internal to the broker")]
    Internal(String),
    #[error("{0}")]
    StaleLeaderEpoch(String),
    #[error("user '{0}' does not exist")]
    UnknownUser(String),
    #[error("no such ACL: {0}")]
    UnknownAcl(String),
    #[error("{0}")]
    LimitReached(String),
}

fn replication_factor_problem(asked: u16, brokers: u16) -> String {
    if asked == 0 {
        "the replication factor must be at least 1 (the number of copies of each partition)".into()
    } else {
        format!("replication factor {asked} is larger than the {brokers} broker(s) in the cluster")
    }
}

pub fn validate_topic_name(name: &str) -> Result<(), MetadataError> {
    let bad = |reason| Err(MetadataError::InvalidName { name: name.chars().take(MAX_TOPIC_NAME_BYTES).collect(), reason });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_TOPIC_NAME_BYTES {
        return bad("it is longer than 249 bytes");
    }
    if name == "." || name == ".." {
        return bad("'.' and '..' are not allowed");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// The topic settings a client may give, each with what it means.
pub const TOPIC_SETTINGS: [&str; 4] = ["retention.ms", "retention.bytes", "segment.bytes", "segment.ms"];

/// The smallest segment a topic may ask for with `segment.bytes`.
pub const MIN_SEGMENT_BYTES: i64 = 4096;
/// The largest segment: positions inside a segment are 32-bit. This is
/// what `segment.bytes=-1` (no limit) gives.
pub const MAX_SEGMENT_BYTES: i64 = u32::MAX as i64;

/// Checks topic settings as a client typed them, naming each as typed:
/// every value is an integer, -1 means no limit, 0 and other negative
/// values are refused (a zero age or size limit would roll or delete on
/// every check).
pub fn check_topic_settings(configs: &BTreeMap<String, String>) -> Result<(), MetadataError> {
    for (k, v) in configs {
        if !TOPIC_SETTINGS.contains(&k.as_str()) {
            return Err(MetadataError::InvalidConfig(format!("unknown setting '{k}' (known: {})", TOPIC_SETTINGS.join(", "))));
        }
        let n: i64 = v.parse().map_err(|_| MetadataError::InvalidConfig(format!("{k}={v}: not an integer")))?;
        let (min, max) = if k == "segment.bytes" { (MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES) } else { (1, i64::MAX) };
        if n != -1 && !(min..=max).contains(&n) {
            return Err(MetadataError::InvalidConfig(format!("{k}={v}: must be between {min} and {max}, or -1 for no limit")));
        }
    }
    Ok(())
}

/// Applies topic settings on top of the broker's defaults. Settings are
/// checked by [`check_topic_settings`] when a topic is created; stored
/// ones are applied as they are (-1, and any other negative value, is no
/// limit), since a stored topic must always open.
pub fn log_config(base: &LogConfig, configs: &BTreeMap<String, String>) -> LogConfig {
    let mut c = base.clone();
    for (k, v) in configs {
        let Ok(n) = v.parse::<i64>() else { continue };
        let limit = if n < 0 { None } else { Some(n as u64) };
        match k.as_str() {
            "retention.ms" => c.retention_max_age_ms = limit,
            "retention.bytes" => c.retention_max_bytes = limit,
            "segment.bytes" => c.segment_max_bytes = limit.unwrap_or(MAX_SEGMENT_BYTES as u64).clamp(MIN_SEGMENT_BYTES as u64, MAX_SEGMENT_BYTES as u64),
            "segment.ms" => c.segment_max_age_ms = limit.filter(|&ms| ms > 0).unwrap_or(u64::MAX),
            _ => {}
        }
    }
    c
}

impl Metadata {
    /// Brokers that may lead partitions, by id.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerMeta> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// Applies one committed command at log index `index`.
    pub fn apply(&mut self, index: u64, p: &Proposal) -> Outcome {
        #[cfg(debug_assertions)]
        let before = self.epochs();
        let out = self.apply_command(index, p);
        #[cfg(debug_assertions)]
        self.check(&before);
        out
    }

    /// Each partition's (leader epoch, partition epoch), for the checks.
    #[cfg(debug_assertions)]
    fn epochs(&self) -> BTreeMap<(String, usize), (u32, u32)> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter().enumerate().map(move |(i, p)| ((t.name.clone(), i), (p.leader_epoch, p.partition_epoch))))
            .collect()
    }

    /// What every command leaves true: a partition's ISR is within its
    /// replicas and holds its leader, and no epoch moved back.
    #[cfg(debug_assertions)]
    fn check(&self, before: &BTreeMap<(String, usize), (u32, u32)>) {
        for t in self.topics.values() {
            for (i, p) in t.partitions.iter().enumerate() {
                let holds = |b: &NodeId| p.replicas.iter().any(|r| r.broker == *b);
                debug_assert!(p.isr.iter().all(holds), "{}/{i}: the ISR {:?} is within the replicas", t.name, p.isr);
                debug_assert!(
                    p.leader == NO_LEADER || (holds(&p.leader) && (p.isr.is_empty() || p.isr.contains(&p.leader))),
                    "{}/{i}: the leader {} is a replica in the ISR {:?}",
                    t.name,
                    p.leader,
                    p.isr
                );
                if let Some(&(le, pe)) = before.get(&(t.name.clone(), i)) {
                    debug_assert!(p.leader_epoch >= le && p.partition_epoch >= pe, "{}/{i}: epochs never move back", t.name);
                }
            }
        }
    }

    fn apply_command(&mut self, index: u64, p: &Proposal) -> Outcome {
        self.applied = index;
        if !self.remember(p.origin, p.request) {
            return Outcome { duplicate: true, ..Default::default() };
        }
        let mut out = Outcome::default();
        match &p.command {
            Command::CreateTopics(ts) => {
                for t in ts {
                    let r = self.plan_create(t).map(|meta| {
                        out.created.push(meta.name.clone());
                        self.topics.insert(meta.name.clone(), meta);
                    });
                    out.results.push(r);
                }
            }
            Command::DeleteTopics(names) => {
                for n in names {
                    let r = self.check_delete(n).map(|()| {
                        self.topics.remove(n);
                        out.deleted.push(n.clone());
                    });
                    out.results.push(r);
                }
            }
            Command::RegisterBroker(b) => {
                let restarted = self.brokers.get(&b.id).is_some_and(|old| old.incarnation != b.incarnation && !old.fenced);
                if restarted {
                    // It restarted before it was fenced: what it had not
                    // synced is gone, so it leads nothing in an epoch it led
                    // before. Its partitions get a new leader, or itself in
                    // a new epoch if it is their last in-sync replica.
                    self.leave_isrs(b.id);
                    for p in self.topics.values_mut().flat_map(|t| t.partitions.iter_mut()).filter(|p| p.leader == b.id) {
                        p.leader = NO_LEADER;
                    }
                }
                self.brokers.insert(b.id, BrokerMeta { fenced: false, ..b.clone() });
                out.created = self.elect_leaders();
                out.results.push(Ok(()));
            }
            Command::FenceBroker { id, incarnation } => {
                if let Some(b) = self.brokers.get_mut(id).filter(|b| b.incarnation == *incarnation && !b.fenced) {
                    b.fenced = true;
                    self.leave_isrs(*id);
                    out.created = self.elect_leaders();
                }
                out.results.push(Ok(()));
            }
            Command::AlterIsr { topic, partition, leader_epoch, partition_epoch, isr } => {
                let r = self.alter_isr(topic, *partition, (*leader_epoch, *partition_epoch), isr);
                if r.is_ok() {
                    out.created.push(topic.clone());
                }
                out.results.push(r);
            }
            Command::AlterUsers { upserts, deletions } => {
                for (user, mechanism, credential) in upserts {
                    let r = if user.is_empty() || user.len() > 256 {
                        Err(MetadataError::InvalidConfig("a user name must have 1 to 256 bytes".into()))
                    } else if !credential.is_sound(*mechanism) {
                        Err(MetadataError::InvalidConfig(format!("the {mechanism} credential of '{user}' is malformed")))
                    } else if !self.users.contains_key(user) && self.users.len() >= MAX_USERS {
                        Err(MetadataError::LimitReached(format!("the cluster holds {MAX_USERS} users, its most")))
                    } else {
                        self.users.entry(user.clone()).or_default().insert(*mechanism, credential.clone());
                        Ok(())
                    };
                    out.results.push(r);
                }
                for user in deletions {
                    out.results.push(self.users.remove(user).map(|_| ()).ok_or_else(|| MetadataError::UnknownUser(user.clone())));
                }
            }
            Command::AlterAcls { additions, removals } => {
                for a in additions {
                    let r = match a.validate() {
                        Err(e) => Err(MetadataError::InvalidConfig(e)),
                        Ok(()) if !self.acls.contains(a) && self.acls.len() >= MAX_ACLS => {
                            Err(MetadataError::LimitReached(format!("the cluster holds {MAX_ACLS} ACLs, its most")))
                        }
                        Ok(()) => {
                            self.acls.insert(a.clone());
                            Ok(())
                        }
                    };
                    out.results.push(r);
                }
                for a in removals {
                    out.results.push(if self.acls.remove(a) { Ok(()) } else { Err(MetadataError::UnknownAcl(a.to_string())) });
                }
            }
            Command::AllocateProducerIds { count } => {
                let start = self.next_producer_id;
                self.next_producer_id = start.saturating_add(i64::from(*count));
                out.producer_ids = Some(start..self.next_producer_id);
                out.results.push(Ok(()));
            }
        }
        out
    }

    /// Records a request id; false if it was applied already.
    fn remember(&mut self, origin: NodeId, request: u64) -> bool {
        let seen = self.requests.entry(origin).or_default();
        if seen.contains(&request) {
            return false;
        }
        if seen.len() == DEDUP_WINDOW {
            seen.pop_front();
        }
        seen.push_back(request);
        true
    }

    /// Takes a fenced broker out of every ISR it is in, unless it is the
    /// last member: the last in-sync replica stays so, and the partition
    /// waits for it rather than lose what only it holds.
    fn leave_isrs(&mut self, id: NodeId) {
        for p in self.topics.values_mut().flat_map(|t| t.partitions.iter_mut()) {
            if p.isr.contains(&id) && p.isr.len() > 1 {
                p.isr.retain(|&b| b != id);
                p.partition_epoch += 1;
            }
        }
    }

    fn alter_isr(&mut self, topic: &str, partition: u32, (leader_epoch, partition_epoch): (u32, u32), isr: &[NodeId]) -> Result<(), MetadataError> {
        let p =
            self.topics.get_mut(topic).and_then(|t| t.partitions.get_mut(partition as usize)).ok_or_else(|| MetadataError::UnknownTopic(topic.to_string()))?;
        if (p.leader_epoch, p.partition_epoch) != (leader_epoch, partition_epoch) {
            return Err(MetadataError::StaleLeaderEpoch(format!(
                "partition {partition} of '{topic}' is at leader epoch {} and partition epoch {}, not {leader_epoch} and {partition_epoch}",
                p.leader_epoch, p.partition_epoch
            )));
        }
        if !isr.contains(&p.leader) || !isr.iter().all(|b| p.replicas.iter().any(|r| r.broker == *b)) {
            return Err(MetadataError::InvalidConfig(format!("an ISR holds the leader and only replicas of partition {partition} of '{topic}'")));
        }
        // A fenced broker leaves every ISR and joins none until it is
        // registered again: a leader that saw it fetch just before it
        // stopped must not bring it back.
        if let Some(b) = isr.iter().find(|b| !p.isr.contains(b) && self.brokers.get(b).is_none_or(|m| m.fenced)) {
            return Err(MetadataError::InvalidConfig(format!("broker {b} is fenced and cannot join the ISR of partition {partition} of '{topic}'")));
        }
        p.isr = isr.to_vec();
        p.partition_epoch += 1;
        Ok(())
    }

    /// Gives every partition whose leader is fenced (or missing) its first
    /// live in-sync replica as leader (none: no leader, never an unclean
    /// election); returns the topics whose leaders changed.
    fn elect_leaders(&mut self) -> Vec<String> {
        let live = |id: NodeId, brokers: &BTreeMap<NodeId, BrokerMeta>| brokers.get(&id).is_some_and(|b| !b.fenced);
        let mut changed = Vec::new();
        for t in self.topics.values_mut() {
            let mut any = false;
            for p in &mut t.partitions {
                if live(p.leader, &self.brokers) {
                    continue;
                }
                let next = p.replicas.iter().map(|r| r.broker).find(|&b| live(b, &self.brokers) && p.in_sync(b)).unwrap_or(NO_LEADER);
                if next != p.leader {
                    p.leader = next;
                    p.leader_epoch += 1;
                    p.partition_epoch += 1;
                    any = true;
                }
            }
            if any {
                changed.push(t.name.clone());
            }
        }
        changed
    }

    /// Validates a new topic and places it: replicas spread round-robin
    /// over the live brokers from a start chosen by the topic's name (so
    /// many small topics do not all land on the same broker and shard),
    /// and over each broker's shards.
    pub fn plan_create(&self, req: &NewTopic) -> Result<TopicMeta, MetadataError> {
        let NewTopic { name, partitions, replication_factor, configs } = req;
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        if *partitions == 0 || *partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err(MetadataError::InvalidPartitions(*partitions));
        }
        let brokers: Vec<&BrokerMeta> = self.live_brokers().collect();
        let n = brokers.len() as u64;
        if *replication_factor == 0 || u64::from(*replication_factor) > n {
            return Err(MetadataError::InvalidReplicationFactor { asked: *replication_factor, brokers: n as u16 });
        }
        check_topic_settings(configs)?;
        let start = crate::hash::fnv1a(name.as_bytes());
        let parts = (0..u64::from(*partitions))
            .map(|p| {
                let slot = start.wrapping_add(p);
                let replicas: Vec<Replica> = (0..u64::from(*replication_factor))
                    .map(|i| {
                        let b = brokers[((slot + i) % n) as usize];
                        Replica { broker: b.id, shard: ((slot / n + i) % u64::from(b.shards.max(1))) as u16 }
                    })
                    .collect();
                let isr = replicas.iter().map(|r| r.broker).collect();
                PartitionMeta { leader: replicas[0].broker, replicas, leader_epoch: 0, isr, partition_epoch: 0 }
            })
            .collect();
        Ok(TopicMeta { name: name.to_string(), replication_factor: *replication_factor, partitions: parts, configs: configs.clone() })
    }

    fn check_delete(&self, name: &str) -> Result<(), MetadataError> {
        if name.starts_with("__") && self.topics.contains_key(name) {
            return Err(MetadataError::Internal(name.to_string()));
        }
        if !self.topics.contains_key(name) {
            return Err(MetadataError::UnknownTopic(name.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(id: NodeId, shards: u16) -> BrokerMeta {
        BrokerMeta { id, host: "127.0.0.1".into(), port: 9000 + id as u16, shards, incarnation: 1, fenced: false, external: None }
    }

    fn topic(name: &str, partitions: u32, replication_factor: u16, configs: BTreeMap<String, String>) -> NewTopic {
        NewTopic { name: name.into(), partitions, replication_factor, configs }
    }

    /// A state with brokers 1..=n of `shards` shards each.
    fn cluster(n: NodeId, shards: u16) -> (Metadata, u64) {
        let mut m = Metadata::default();
        let mut i = 0;
        for id in 1..=n {
            i += 1;
            m.apply(i, &Proposal { origin: id, request: 0, command: Command::RegisterBroker(broker(id, shards)) });
        }
        (m, i)
    }

    fn run(m: &mut Metadata, i: &mut u64, c: Command) -> Outcome {
        *i += 1;
        m.apply(*i, &Proposal { origin: 1, request: *i, command: c })
    }

    fn create(m: &mut Metadata, i: &mut u64, name: &str, p: u32, rf: u16) -> Result<(), MetadataError> {
        run(m, i, Command::CreateTopics(vec![topic(name, p, rf, BTreeMap::new())])).results.pop().unwrap()
    }

    #[test]
    fn partitions_and_leaders_spread_over_brokers_and_shards() {
        let (mut m, mut i) = cluster(3, 2);
        create(&mut m, &mut i, "t", 12, 3).unwrap();
        let t = &m.topics["t"];
        let mut leaders = BTreeMap::new();
        let mut slots = BTreeMap::new();
        for p in &t.partitions {
            *leaders.entry(p.leader).or_insert(0) += 1;
            let brokers: std::collections::BTreeSet<_> = p.replicas.iter().map(|r| r.broker).collect();
            assert_eq!(brokers.len(), 3, "replicas on distinct brokers");
            for r in &p.replicas {
                *slots.entry((r.broker, r.shard)).or_insert(0) += 1;
            }
        }
        assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![4, 4, 4]);
        assert_eq!(slots.len(), 6);
        assert!(slots.values().all(|&n| n == 6), "{slots:?}");
        assert_eq!(t.shard_on(0, t.partitions[0].replicas[0].broker, 1), Some(0));
        assert_eq!(t.shard_on(99, 1, 2), None);
    }

    #[test]
    fn refuses_bad_topics() {
        let (mut m, mut i) = cluster(1, 2);
        create(&mut m, &mut i, "t", 1, 1).unwrap();
        assert_eq!(create(&mut m, &mut i, "t", 1, 1), Err(MetadataError::TopicExists("t".into())));
        assert!(matches!(create(&mut m, &mut i, "a/b", 1, 1), Err(MetadataError::InvalidName { .. })));
        assert!(matches!(create(&mut m, &mut i, "..", 1, 1), Err(MetadataError::InvalidName { .. })));
        assert!(matches!(create(&mut m, &mut i, &"x".repeat(250), 1, 1), Err(MetadataError::InvalidName { .. })));
        assert_eq!(create(&mut m, &mut i, "u", 0, 1), Err(MetadataError::InvalidPartitions(0)));
        assert_eq!(create(&mut m, &mut i, "u", 1, 3), Err(MetadataError::InvalidReplicationFactor { asked: 3, brokers: 1 }));
        let bad = BTreeMap::from([("retention.ms".to_string(), "soon".to_string())]);
        assert!(matches!(m.plan_create(&topic("u", 1, 1, bad)), Err(MetadataError::InvalidConfig(_))));
        let unknown = BTreeMap::from([("colour".to_string(), "red".to_string())]);
        assert!(matches!(m.plan_create(&topic("u", 1, 1, unknown)), Err(MetadataError::InvalidConfig(_))));
        let r = run(&mut m, &mut i, Command::DeleteTopics(vec!["nope".into(), "t".into()]));
        assert_eq!(r.results, vec![Err(MetadataError::UnknownTopic("nope".into())), Ok(())]);
        assert_eq!(r.deleted, vec!["t".to_string()]);
        assert!(m.topics.is_empty());
        assert_eq!(m.applied, i);
    }

    #[test]
    fn a_fenced_broker_leads_nothing_and_leads_again_when_it_registers() {
        let (mut m, mut i) = cluster(2, 1);
        create(&mut m, &mut i, "r", 4, 2).unwrap();
        create(&mut m, &mut i, "one", 4, 1).unwrap();
        let r = run(&mut m, &mut i, Command::FenceBroker { id: 1, incarnation: 1 });
        assert!(!r.created.is_empty());
        for p in &m.topics["r"].partitions {
            assert_eq!(p.leader, 2);
        }
        for p in &m.topics["one"].partitions {
            assert!(p.leader == 2 || p.leader == NO_LEADER);
            assert_eq!(p.leader == NO_LEADER, p.replicas[0].broker == 1);
        }
        // A fence of an older incarnation changes nothing.
        run(&mut m, &mut i, Command::RegisterBroker(BrokerMeta { incarnation: 2, ..broker(1, 1) }));
        let before = m.clone();
        run(&mut m, &mut i, Command::FenceBroker { id: 1, incarnation: 1 });
        assert_eq!((m.topics.clone(), m.brokers.clone()), (before.topics, before.brokers));
        assert!(m.topics["one"].partitions.iter().all(|p| p.leader != NO_LEADER));
        assert_eq!(create(&mut m, &mut i, "two", 2, 2), Ok(()));
    }

    #[test]
    fn only_in_sync_replicas_are_elected_and_a_deposed_leader_cannot_alter_the_isr() {
        let (mut m, mut i) = cluster(3, 1);
        create(&mut m, &mut i, "r", 1, 3).unwrap();
        let p = m.topics["r"].partitions[0].clone();
        let (lead, others) = (p.leader, p.replicas.iter().map(|r| r.broker).filter(|&b| b != p.leader).collect::<Vec<_>>());
        assert_eq!(p.isr.len(), 3);
        // The leader drops one follower from the ISR; then the leader dies.
        let r = run(&mut m, &mut i, Command::AlterIsr { topic: "r".into(), partition: 0, leader_epoch: 0, partition_epoch: 0, isr: vec![lead, others[1]] });
        assert_eq!(r.results, vec![Ok(())]);
        run(&mut m, &mut i, Command::FenceBroker { id: lead, incarnation: 1 });
        let p = &m.topics["r"].partitions[0];
        assert_eq!((p.leader, p.leader_epoch, p.isr.clone()), (others[1], 1, vec![others[1]]), "the in-sync follower leads, not the first live one");
        // The old leader's ISR change from leader epoch 0 is refused.
        let r =
            run(&mut m, &mut i, Command::AlterIsr { topic: "r".into(), partition: 0, leader_epoch: 0, partition_epoch: 1, isr: vec![others[1], others[0]] });
        assert!(matches!(r.results[0], Err(MetadataError::StaleLeaderEpoch(_))));
        // The last in-sync replica dies: no unclean election.
        run(&mut m, &mut i, Command::FenceBroker { id: others[1], incarnation: 1 });
        let p = &m.topics["r"].partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![others[1]]));
        run(&mut m, &mut i, Command::RegisterBroker(BrokerMeta { incarnation: 2, ..broker(others[1], 1) }));
        assert_eq!(m.topics["r"].partitions[0].leader, others[1]);
    }

    #[test]
    fn a_fenced_broker_does_not_join_an_isr_until_it_registers_again() {
        let (mut m, mut i) = cluster(3, 1);
        create(&mut m, &mut i, "r", 1, 3).unwrap();
        let p = m.topics["r"].partitions[0].clone();
        let follower = p.replicas.iter().map(|r| r.broker).find(|&b| b != p.leader).unwrap();
        // A controlled shutdown (or an expired session) fences a follower.
        run(&mut m, &mut i, Command::FenceBroker { id: follower, incarnation: 1 });
        let p = m.topics["r"].partitions[0].clone();
        assert!(!p.isr.contains(&follower));
        let all: Vec<NodeId> = p.replicas.iter().map(|r| r.broker).collect();
        let alter = |pe| Command::AlterIsr { topic: "r".into(), partition: 0, leader_epoch: p.leader_epoch, partition_epoch: pe, isr: all.clone() };
        let r = run(&mut m, &mut i, alter(p.partition_epoch));
        assert!(matches!(r.results[0], Err(MetadataError::InvalidConfig(_))), "{r:?}");
        run(&mut m, &mut i, Command::RegisterBroker(BrokerMeta { incarnation: 2, ..broker(follower, 1) }));
        let pe = m.topics["r"].partitions[0].partition_epoch;
        assert_eq!(run(&mut m, &mut i, alter(pe)).results, vec![Ok(())]);
    }

    #[test]
    fn a_re_proposed_command_applies_once() {
        let (mut m, _) = cluster(1, 1);
        let p = Proposal { origin: 7, request: 42, command: Command::CreateTopics(vec![topic("t", 1, 1, BTreeMap::new())]) };
        assert_eq!(m.apply(10, &p).results, vec![Ok(())]);
        let again = m.apply(11, &p);
        assert!(again.duplicate && again.results.is_empty());
        assert_eq!(m.applied, 11);
    }

    #[test]
    fn a_topics_placement_is_pinned_by_its_name() {
        // Persisted: brokers open a topic's partitions where the metadata
        // placed them; a change to the hash would move new topics only,
        // but the rule must stay the one every broker applies.
        let (mut m, mut i) = cluster(3, 2);
        create(&mut m, &mut i, "orders", 3, 2).unwrap();
        let placed: Vec<Vec<(NodeId, u16)>> = m.topics["orders"].partitions.iter().map(|p| p.replicas.iter().map(|r| (r.broker, r.shard)).collect()).collect();
        assert_eq!(placed, vec![vec![(2, 1), (3, 0)], vec![(3, 1), (1, 0)], vec![(1, 0), (2, 1)]]);
    }

    #[test]
    fn topic_settings_minus_one_is_no_limit_and_zero_is_refused() {
        let c = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
        let lc = log_config(&LogConfig::default(), &c("segment.ms", "-1"));
        assert_eq!(lc.segment_max_age_ms, u64::MAX);
        assert_eq!(log_config(&LogConfig::default(), &c("segment.bytes", "-1")).segment_max_bytes, u32::MAX as u64);
        for k in TOPIC_SETTINGS {
            check_topic_settings(&c(k, "-1")).unwrap();
            let e = check_topic_settings(&c(k, "0")).unwrap_err().to_string();
            assert!(e.contains(k), "{e}");
            assert!(check_topic_settings(&c(k, "-2")).is_err());
        }
        assert!(check_topic_settings(&c("segment.bytes", "100")).unwrap_err().to_string().contains("segment.bytes=100"));
    }

    #[test]
    fn topic_settings_map_to_log_config() {
        let c = BTreeMap::from([("retention.ms".to_string(), "-1".to_string()), ("segment.bytes".to_string(), "1048576".to_string())]);
        let lc = log_config(&LogConfig::default(), &c);
        assert_eq!((lc.retention_max_age_ms, lc.segment_max_bytes), (None, 1 << 20));
    }
}
