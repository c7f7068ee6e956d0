//! Consumer groups. Today: committed offsets, sans-IO.
//!
//! Each group has a coordinator: the shard that owns partition
//! `hash(group) % partitions` of the internal topic [`OFFSETS_TOPIC`]. A
//! commit is appended there as one record per partition (key: group,
//! topic, partition; value: the offset) and synced before it is
//! acknowledged; on start the coordinator replays its partitions into an
//! [`OffsetTable`]. The last commit for a key wins.

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

/// Reads a committed offset back from its record; `None` for anything
/// that is not one (such records are skipped on replay, never fatal).
pub fn parse_commit(key: &[u8], value: &[u8]) -> Option<(String, String, u32, i64)> {
    let (group, rest) = split_nul(key)?;
    let (topic, part) = split_nul(rest)?;
    let partition = u32::from_le_bytes(part.try_into().ok()?);
    let offset = i64::from_le_bytes(value.try_into().ok()?);
    Some((String::from_utf8(group.to_vec()).ok()?, String::from_utf8(topic.to_vec()).ok()?, partition, offset))
}

fn split_nul(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = b.iter().position(|&x| x == 0)?;
    Some((&b[..i], &b[i + 1..]))
}

/// Committed offsets of the groups one coordinator owns.
#[derive(Debug, Default)]
pub struct OffsetTable {
    offsets: HashMap<(String, String, u32), i64>,
}

impl OffsetTable {
    pub fn apply(&mut self, group: String, topic: String, partition: u32, offset: i64) {
        self.offsets.insert((group, topic, partition), offset);
    }

    pub fn get(&self, group: &str, topic: &str, partition: u32) -> Option<i64> {
        self.offsets.get(&(group.to_string(), topic.to_string(), partition)).copied()
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
        assert_eq!(parse_commit(&k, &42i64.to_le_bytes()), Some(("g".into(), "topic.a".into(), 7, 42)));
        assert_eq!(parse_commit(&k, &[1, 2, 3]), None);
        assert_eq!(parse_commit(b"no separators", &0i64.to_le_bytes()), None);
        assert_eq!(parse_commit(b"g\0t\0\x01", &0i64.to_le_bytes()), None);
    }

    #[test]
    fn the_last_commit_wins_and_groups_spread() {
        let mut t = OffsetTable::default();
        t.apply("g".into(), "t".into(), 0, 5);
        t.apply("g".into(), "t".into(), 0, 9);
        assert_eq!((t.get("g", "t", 0), t.get("g", "t", 1), t.len()), (Some(9), None, 1));
        let spread: std::collections::HashSet<u32> = (0..50).map(|i| offsets_partition(&format!("group-{i}"), 4)).collect();
        assert_eq!(spread.len(), 4);
        assert!(valid_group("g") && !valid_group("") && !valid_group("a\0b") && !valid_group(&"x".repeat(256)));
    }
}
