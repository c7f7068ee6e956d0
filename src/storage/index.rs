//! Sparse per-segment indexes, sans-IO: offsets and timestamps to file
//! positions. Built as batches are appended or a segment is scanned, and
//! persisted beside a segment when it is sealed.
//!
//! Invariant: entries are appended in file order, so relative offsets,
//! positions and (running maximum) timestamps all never decrease.

use super::StorageError;

/// One index point: the batch starting at `pos` has base offset
/// `segment base + rel_offset`; `max_ts` is the largest timestamp of all
/// batches before it in the segment, itself included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub rel_offset: u32,
    pub pos: u32,
    pub max_ts: i64,
}

const ENTRY_BYTES: usize = 16;
const FILE_MAGIC: u32 = 0x5344_4958; // "SDIX"
/// Header: magic, entry count, CRC of the rest, logical segment bytes,
/// the segment's next offset, and the segment's largest timestamp.
pub const FILE_HEADER_BYTES: usize = 32;

/// The sparse index of one segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    entries: Vec<IndexEntry>,
    bytes_since_entry: u32,
}

/// What a sealed segment's index file says about the segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexFile {
    pub index: SegmentIndex,
    pub segment_bytes: u64,
    pub next_offset: i64,
    pub max_timestamp: i64,
}

impl SegmentIndex {
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Records a batch appended at `pos`; adds an entry for the first batch
    /// and then once every `interval_bytes`.
    pub fn on_append(&mut self, rel_offset: u32, pos: u32, batch_bytes: u32, running_max_ts: i64, interval_bytes: u32) {
        if let Some(last) = self.entries.last() {
            debug_assert!(rel_offset > last.rel_offset && pos > last.pos);
        }
        if self.entries.is_empty() || self.bytes_since_entry >= interval_bytes {
            self.entries.push(IndexEntry { rel_offset, pos, max_ts: running_max_ts });
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry = self.bytes_since_entry.saturating_add(batch_bytes);
    }

    /// Removes the last entry, so a scan can start again at its batch.
    pub fn pop_last(&mut self) -> Option<IndexEntry> {
        self.bytes_since_entry = 0;
        self.entries.pop()
    }

    /// The entry to start scanning from for `rel_offset`: the last one at or
    /// before it.
    pub fn lookup_offset(&self, rel_offset: u32) -> Option<IndexEntry> {
        let i = self.entries.partition_point(|e| e.rel_offset <= rel_offset);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// The entry to start scanning from for the first batch whose timestamps
    /// reach `ts`: the last entry whose running maximum is still below `ts`
    /// (everything before it is older), or the first entry.
    pub fn lookup_time(&self, ts: i64) -> Option<IndexEntry> {
        let i = self.entries.partition_point(|e| e.max_ts < ts);
        self.entries.get(i.saturating_sub(1)).copied()
    }

    /// Encodes the index of the segment's first `segment_bytes` (a batch
    /// boundary): entries of batches past it are left out, so a prefix of
    /// the active segment can be checkpointed while it grows.
    pub fn encode(&self, segment_bytes: u64, next_offset: i64, max_timestamp: i64) -> Vec<u8> {
        let entries: Vec<&IndexEntry> = self.entries.iter().filter(|e| u64::from(e.pos) < segment_bytes).collect();
        let mut body = Vec::with_capacity(entries.len() * ENTRY_BYTES + 24);
        body.extend_from_slice(&segment_bytes.to_le_bytes());
        body.extend_from_slice(&next_offset.to_le_bytes());
        body.extend_from_slice(&max_timestamp.to_le_bytes());
        for e in &entries {
            body.extend_from_slice(&e.rel_offset.to_le_bytes());
            body.extend_from_slice(&e.pos.to_le_bytes());
            body.extend_from_slice(&e.max_ts.to_le_bytes());
        }
        let mut out = Vec::with_capacity(8 + body.len());
        out.extend_from_slice(&FILE_MAGIC.to_le_bytes());
        out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Decodes an index file; any damage is an error, and the caller then
    /// rebuilds the index by scanning the segment.
    pub fn decode(bytes: &[u8]) -> Result<IndexFile, StorageError> {
        let bad = |why: &str| StorageError::CorruptIndex(why.to_string());
        if bytes.len() < FILE_HEADER_BYTES + 8 {
            return Err(bad("short header"));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let i64_at = |at: usize| i64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        if u32_at(0) != FILE_MAGIC {
            return Err(bad("bad magic"));
        }
        let count = u32_at(4) as usize;
        let body_len = count.checked_mul(ENTRY_BYTES).and_then(|n| n.checked_add(24)).ok_or_else(|| bad("bad count"))?;
        if bytes.len() < 16 + body_len {
            return Err(bad("truncated"));
        }
        let body = &bytes[16..16 + body_len];
        if crc32fast::hash(body) != u32_at(8) {
            return Err(bad("CRC mismatch"));
        }
        let segment_bytes = i64_at(16) as u64;
        let next_offset = i64_at(24);
        let max_timestamp = i64_at(32);
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let at = 40 + i * ENTRY_BYTES;
            let e = IndexEntry { rel_offset: u32_at(at), pos: u32_at(at + 4), max_ts: i64_at(at + 8) };
            if let Some(prev) = entries.last() {
                let prev: &IndexEntry = prev;
                if e.rel_offset <= prev.rel_offset || e.pos <= prev.pos || e.max_ts < prev.max_ts {
                    return Err(bad("entries out of order"));
                }
            }
            if u64::from(e.pos) >= segment_bytes {
                return Err(bad("entry past segment end"));
            }
            entries.push(e);
        }
        Ok(IndexFile { index: SegmentIndex { entries, bytes_since_entry: 0 }, segment_bytes, next_offset, max_timestamp })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SegmentIndex {
        let mut ix = SegmentIndex::default();
        // 10 batches of 1000 bytes, 5 records each, timestamps 100, 110, ...
        for i in 0..10u32 {
            ix.on_append(i * 5, i * 1000, 1000, 100 + i64::from(i) * 10, 2500);
        }
        ix
    }

    #[test]
    fn sparse_by_interval() {
        let ix = sample();
        let pos: Vec<u32> = ix.entries().iter().map(|e| e.pos).collect();
        assert_eq!(pos, vec![0, 3000, 6000, 9000]);
    }

    #[test]
    fn offset_lookup_finds_floor() {
        let ix = sample();
        assert_eq!(ix.lookup_offset(0).unwrap().pos, 0);
        assert_eq!(ix.lookup_offset(14).unwrap().pos, 0);
        assert_eq!(ix.lookup_offset(15).unwrap().pos, 3000);
        assert_eq!(ix.lookup_offset(1000).unwrap().pos, 9000);
        assert_eq!(SegmentIndex::default().lookup_offset(3), None);
    }

    #[test]
    fn time_lookup_never_skips_a_match() {
        let ix = sample();
        // batch i has max ts 100 + 10 i; the entry returned must be at or
        // before the first batch whose max ts reaches the target.
        for ts in 0..250 {
            let first_match = (0..10u32).find(|i| 100 + i64::from(*i) * 10 >= ts).map(|i| i * 1000);
            let e = ix.lookup_time(ts).unwrap();
            if let Some(m) = first_match {
                assert!(e.pos <= m, "ts {ts}: entry {} after match {m}", e.pos);
            }
        }
    }

    #[test]
    fn file_round_trip_and_damage() {
        let ix = sample();
        let bytes = ix.encode(10_000, 50, 190);
        let f = SegmentIndex::decode(&bytes).unwrap();
        assert_eq!((f.segment_bytes, f.next_offset, f.max_timestamp), (10_000, 50, 190));
        assert_eq!(f.index.entries(), ix.entries());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            if (12..16).contains(&i) {
                continue; // padding
            }
            assert!(SegmentIndex::decode(&bad).is_err(), "damage at {i} unnoticed");
        }
        for cut in 0..bytes.len() {
            assert!(SegmentIndex::decode(&bytes[..cut]).is_err());
        }
    }
}
