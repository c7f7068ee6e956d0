//! Cluster metadata: which topics exist, their partitions, settings, and
//! which broker and shard owns each partition.
//!
//! Sans-IO: [`Metadata`] is a value; [`Metadata::plan_create`] and
//! [`Metadata::plan_delete`] validate a change (the *frontend*, run once
//! on the controller shard) and [`Metadata::apply`] applies a validated
//! change (the *backend*, run on every shard, each on its own copy).
//!
//! Architecture invariant: no shard mutates another shard's copy; the
//! controller sends every shard the same [`Change`] and each applies it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::storage::LogConfig;

/// Longest topic name, as in Kafka.
pub const MAX_TOPIC_NAME_BYTES: usize = 249;
/// Most partitions one topic may have.
pub const MAX_PARTITIONS_PER_TOPIC: u32 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    pub replication_factor: u16,
    /// Owning shard of each partition, by partition index.
    pub shards: Vec<u16>,
    /// The settings given at creation, as key/value strings.
    pub configs: BTreeMap<String, String>,
}

impl TopicMeta {
    pub fn partitions(&self) -> u32 {
        self.shards.len() as u32
    }

    /// The owning shard of `partition` on a broker with `nr_shards` shards.
    /// A broker restarted with fewer shards folds the assignment.
    pub fn shard_of(&self, partition: u32, nr_shards: u16) -> Option<u16> {
        self.shards.get(partition as usize).map(|s| s % nr_shards.max(1))
    }

    pub fn log_config(&self, base: &LogConfig) -> LogConfig {
        log_config(base, &self.configs)
    }
}

/// The whole metadata table; every shard holds its own copy.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Bumped by every applied change.
    pub version: u64,
    pub topics: BTreeMap<String, TopicMeta>,
}

/// A request to create a topic, as a client states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u16,
    pub configs: BTreeMap<String, String>,
}

/// What the placement of partitions depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterShape {
    pub brokers: u16,
    pub shards: u16,
}

/// A validated change, applied the same way on every shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    CreateTopic(TopicMeta),
    DeleteTopic(String),
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

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

impl Metadata {
    /// Validates a new topic and places its partitions on shards round-robin
    /// from a start chosen by the topic's name, so many small topics do not
    /// all land on shard 0.
    pub fn plan_create(&self, req: NewTopic, cluster: &ClusterShape) -> Result<Change, MetadataError> {
        let NewTopic { name, partitions, replication_factor, configs } = req;
        let (name, brokers, nr_shards) = (name.as_str(), cluster.brokers, cluster.shards);
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(MetadataError::TopicExists(name.to_string()));
        }
        if partitions == 0 || partitions > MAX_PARTITIONS_PER_TOPIC {
            return Err(MetadataError::InvalidPartitions(partitions));
        }
        if replication_factor == 0 || replication_factor > brokers {
            return Err(MetadataError::InvalidReplicationFactor { asked: replication_factor, brokers });
        }
        check_topic_settings(&configs)?;
        let start = (fnv1a(name) % u64::from(nr_shards.max(1))) as u32;
        let shards = (0..partitions).map(|p| ((start + p) % u32::from(nr_shards.max(1))) as u16).collect();
        Ok(Change::CreateTopic(TopicMeta { name: name.to_string(), replication_factor, shards, configs }))
    }

    pub fn plan_delete(&self, name: &str) -> Result<Change, MetadataError> {
        if name.starts_with("__") && self.topics.contains_key(name) {
            return Err(MetadataError::Internal(name.to_string()));
        }
        if !self.topics.contains_key(name) {
            return Err(MetadataError::UnknownTopic(name.to_string()));
        }
        Ok(Change::DeleteTopic(name.to_string()))
    }

    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::CreateTopic(t) => {
                self.topics.insert(t.name.clone(), t.clone());
            }
            Change::DeleteTopic(n) => {
                self.topics.remove(n);
            }
        }
        self.version += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: ClusterShape = ClusterShape { brokers: 1, shards: 2 };

    fn topic(name: &str, partitions: u32, replication_factor: u16, configs: BTreeMap<String, String>) -> NewTopic {
        NewTopic { name: name.into(), partitions, replication_factor, configs }
    }

    fn plan(m: &Metadata, name: &str, p: u32, rf: u16) -> Result<Change, MetadataError> {
        m.plan_create(topic(name, p, rf, BTreeMap::new()), &SHAPE)
    }

    #[test]
    fn partitions_spread_over_shards() {
        let m = Metadata::default();
        let Change::CreateTopic(t) = plan(&m, "t", 4, 1).unwrap() else { panic!() };
        let on0 = t.shards.iter().filter(|&&s| s == 0).count();
        assert_eq!(on0, 2);
        assert_eq!(t.shard_of(3, 1), Some(0));
        assert_eq!(t.shard_of(4, 2), None);
    }

    #[test]
    fn refuses_bad_topics() {
        let mut m = Metadata::default();
        m.apply(&plan(&m, "t", 1, 1).unwrap());
        assert_eq!(plan(&m, "t", 1, 1), Err(MetadataError::TopicExists("t".into())));
        assert!(matches!(plan(&m, "a/b", 1, 1), Err(MetadataError::InvalidName { .. })));
        assert!(matches!(plan(&m, "..", 1, 1), Err(MetadataError::InvalidName { .. })));
        assert!(matches!(plan(&m, &"x".repeat(250), 1, 1), Err(MetadataError::InvalidName { .. })));
        assert_eq!(plan(&m, "u", 0, 1), Err(MetadataError::InvalidPartitions(0)));
        assert_eq!(plan(&m, "u", 1, 3), Err(MetadataError::InvalidReplicationFactor { asked: 3, brokers: 1 }));
        let bad = BTreeMap::from([("retention.ms".to_string(), "soon".to_string())]);
        assert!(matches!(m.plan_create(topic("u", 1, 1, bad), &SHAPE), Err(MetadataError::InvalidConfig(_))));
        let unknown = BTreeMap::from([("colour".to_string(), "red".to_string())]);
        assert!(matches!(m.plan_create(topic("u", 1, 1, unknown), &SHAPE), Err(MetadataError::InvalidConfig(_))));
        assert_eq!(m.plan_delete("nope"), Err(MetadataError::UnknownTopic("nope".into())));
        m.apply(&m.plan_delete("t").unwrap());
        assert!(m.topics.is_empty());
        assert_eq!(m.version, 2);
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
