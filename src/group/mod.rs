//! Consumer groups. Today: committed offsets, sans-IO.
//!
//! Each group has a coordinator: the shard that owns partition
//! `hash(group) % partitions` of the internal topic [`OFFSETS_TOPIC`]. A
//! commit is appended there as one record per partition (key: group,
//! topic, partition; value: the offset, and the leader epoch and metadata
//! a Kafka client gives with it) and synced before it is
//! acknowledged; on start the coordinator replays its partitions into an
//! [`OffsetTable`]. The last commit for a key wins.

pub mod classic;
pub mod membership;

use std::collections::HashMap;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Longest group name accepted.
pub const MAX_GROUP_BYTES: usize = 255;

/// Topics whose names start with this are internal: hidden from listings.
pub fn is_internal(topic: &str) -> bool {
    topic.starts_with("__")
}

/// The partition of [`OFFSETS_TOPIC`] that holds `group`'s offsets.
pub fn offsets_partition(group: &str, partitions: u32) -> u32 {
    crate::hash::partition_for_key(group.as_bytes(), partitions)
}

/// A group name is 1..=255 bytes with no NUL (the record key separator).
pub fn valid_group(group: &str) -> bool {
    !group.is_empty() && group.len() <= MAX_GROUP_BYTES && !group.contains('\0')
}

/// The record key of a committed offset.
pub fn commit_key(group: &str, topic: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(group.len() + topic.len() + 6);
    k.extend_from_slice(group.as_bytes());
    k.push(0);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_le_bytes());
    k
}

/// Longest metadata string a commit may carry (Kafka's
/// `offset.metadata.max.bytes`).
pub const MAX_COMMIT_METADATA_BYTES: usize = 4096;

/// One committed position: the next offset the group reads, and what a
/// Kafka client commits with it (the leader epoch of the record before
/// it, -1 if unknown, and a string of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

impl Committed {
    /// An offset alone, as the native protocol commits it.
    pub fn offset(offset: i64) -> Self {
        Committed { offset, leader_epoch: -1, metadata: None }
    }
}

/// The record value of a committed position: the offset (8 bytes, little
/// endian), then, only when either is given, the leader epoch (4 bytes)
/// and the metadata (absent: nothing; else its bytes, after a 0 byte that
/// tells an empty string from none).
pub fn commit_value(c: &Committed) -> Vec<u8> {
    let mut v = c.offset.to_le_bytes().to_vec();
    if c.leader_epoch != -1 || c.metadata.is_some() {
        v.extend_from_slice(&c.leader_epoch.to_le_bytes());
        if let Some(m) = &c.metadata {
            v.push(0);
            v.extend_from_slice(m.as_bytes());
        }
    }
    v
}

/// Reads a committed position back from its record; `None` for anything
/// that is not one (such records are skipped on replay, never fatal).
pub fn parse_commit(key: &[u8], value: &[u8]) -> Option<(String, String, u32, Committed)> {
    let (group, rest) = split_nul(key)?;
    let (topic, part) = split_nul(rest)?;
    let partition = u32::from_le_bytes(part.try_into().ok()?);
    let (offset, rest) = value.split_first_chunk::<8>()?;
    let mut c = Committed::offset(i64::from_le_bytes(*offset));
    if !rest.is_empty() {
        let (epoch, rest) = rest.split_first_chunk::<4>()?;
        c.leader_epoch = i32::from_le_bytes(*epoch);
        match rest.split_first() {
            None => {}
            Some((0, m)) => c.metadata = Some(String::from_utf8(m.to_vec()).ok()?),
            Some(_) => return None,
        }
    }
    Some((String::from_utf8(group.to_vec()).ok()?, String::from_utf8(topic.to_vec()).ok()?, partition, c))
}

fn split_nul(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&x| x == 0)?;
    Some((&b[..i], &b[i + 1..]))
}

/// Every position one group committed: topic, partition, position.
pub type GroupPositions = Vec<(String, u32, Committed)>;

/// Committed offsets of the groups one coordinator owns.
#[derive(Debug, Default)]
pub struct OffsetTable {
    offsets: HashMap<(String, String, u32), Committed>,
}

impl OffsetTable {
    pub fn apply(&mut self, group: String, topic: String, partition: u32, committed: Committed) {
        self.offsets.insert((group, topic, partition), committed);
    }

    /// Every committed offset: (group, topic, partition, commit).
    pub fn all(&self) -> impl Iterator<Item = (&str, &str, u32, &Committed)> {
        self.offsets.iter().map(|((g, t, p), c)| (g.as_str(), t.as_str(), *p, c))
    }

    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<&Committed> {
        self.offsets.get(&(group.to_string(), topic.to_string(), partition))
    }

    /// Every position `group` committed, ordered by topic and partition.
    pub fn of_group(&self, group: &str) -> GroupPositions {
        let mut out: Vec<_> = self.offsets.iter().filter(|((g, _, _), _)| g == group).map(|((_, t, p), c)| (t.clone(), *p, c.clone())).collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_their_offsets_partitions() {
        // Persisted: a group's commits are in this partition of the offsets
        // topic; a change would lose every group's committed offsets.
        let got: Vec<u32> = ["g", "orders-app", "seed", "消费者"].iter().map(|g| offsets_partition(g, 6)).collect();
        assert_eq!(got, [2, 0, 4, 1]);
    }

    #[test]
    fn commit_records_round_trip_and_reject_junk() {
        let k = commit_key("g", "topic.a", 7);
        assert_eq!(parse_commit(&k, &42i64.to_le_bytes()), Some(("g".into(), "topic.a".into(), 7, Committed::offset(42))));
        for c in [
            Committed::offset(42),
            Committed { offset: 42, leader_epoch: 3, metadata: None },
            Committed { offset: 42, leader_epoch: -1, metadata: Some(String::new()) },
            Committed { offset: 42, leader_epoch: 9, metadata: Some("阿牛".into()) },
        ] {
            assert_eq!(parse_commit(&k, &commit_value(&c)).map(|x| x.3), Some(c));
        }
        assert_eq!(commit_value(&Committed::offset(42)), 42i64.to_le_bytes(), "an offset alone keeps the record it always had");
        assert_eq!(parse_commit(&k, &[1, 2, 3]), None);
        assert_eq!(parse_commit(&k, &[0; 10]), None);
        assert_eq!(parse_commit(&k, &[&[0; 12][..], &[1, b'x']].concat()), None);
        assert_eq!(parse_commit(b"no separators", &0i64.to_le_bytes()), None);
        assert_eq!(parse_commit(b"g\0t\0\x01", &0i64.to_le_bytes()), None);
    }

    #[test]
    fn the_last_commit_wins_and_groups_spread() {
        let mut t = OffsetTable::default();
        t.apply("g".into(), "t".into(), 0, Committed::offset(5));
        t.apply("g".into(), "t".into(), 0, Committed::offset(9));
        assert_eq!((t.get("g", "t", 0).map(|c| c.offset), t.get("g", "t", 1), t.len()), (Some(9), None, 1));
        let spread: std::collections::HashSet<u32> = (0..50).map(|i| offsets_partition(&format!("group-{i}"), 4)).collect();
        assert_eq!(spread.len(), 4);
        assert!(valid_group("g") && !valid_group("") && !valid_group("a\0b") && !valid_group(&"x".repeat(256)));
    }
}
