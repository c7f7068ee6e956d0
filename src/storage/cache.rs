//! The hot tail: recent batches of one partition kept in memory, so that
//! consumers that keep up are served without touching the disk, and so that
//! bytes not yet on disk can be read at all.
//!
//! Invariant: every batch at or above the flushed offset is in the cache;
//! eviction only removes flushed batches from the front.

use bytes::Bytes;
use std::collections::VecDeque;

#[derive(Debug)]
struct Entry {
    base_offset: i64,
    next_offset: i64,
    bytes: Bytes,
}

/// A bounded FIFO of the most recent batches of one partition.
#[derive(Debug)]
pub struct TailCache {
    entries: VecDeque<Entry>,
    bytes: usize,
    max_bytes: usize,
}

impl TailCache {
    pub fn new(max_bytes: usize) -> Self {
        TailCache { entries: VecDeque::new(), bytes: 0, max_bytes }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The lowest offset the cache can serve, if any.
    pub fn start_offset(&self) -> Option<i64> {
        self.entries.front().map(|e| e.base_offset)
    }

    pub fn push(&mut self, base_offset: i64, next_offset: i64, bytes: Bytes) {
        debug_assert!(self.entries.back().is_none_or(|e| e.next_offset == base_offset));
        self.bytes += bytes.len();
        self.entries.push_back(Entry { base_offset, next_offset, bytes });
    }

    /// Drops written batches from the front while over `max_bytes` (or the
    /// cache's own limit, if lower).
    pub fn evict(&mut self, flushed_offset: i64, max_bytes: usize) {
        while self.bytes > self.max_bytes.min(max_bytes) {
            match self.entries.front() {
                Some(e) if e.next_offset <= flushed_offset => {
                    self.bytes -= e.bytes.len();
                    self.entries.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Drops everything; used when the log is truncated or deleted.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Whole batches from the one holding `offset`, up to `max_bytes` (but
    /// always the first one). `None` when the cache does not hold `offset`.
    pub fn read(&self, offset: i64, max_bytes: usize, out: &mut Vec<Bytes>) -> Option<usize> {
        let first = self.entries.front()?;
        if offset < first.base_offset {
            return None;
        }
        let i = self.entries.partition_point(|e| e.next_offset <= offset);
        let mut total = 0;
        for e in self.entries.range(i..) {
            if total > 0 && total + e.bytes.len() > max_bytes {
                break;
            }
            total += e.bytes.len();
            out.push(e.bytes.clone());
        }
        Some(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled() -> TailCache {
        let mut c = TailCache::new(250);
        for i in 0..5 {
            c.push(i * 10, i * 10 + 10, Bytes::from(vec![i as u8; 100]));
        }
        c
    }

    #[test]
    fn read_starts_at_the_batch_holding_the_offset() {
        let c = filled();
        let mut out = Vec::new();
        assert_eq!(c.read(25, 150, &mut out), Some(100));
        assert_eq!(out[0][0], 2);
        out.clear();
        assert_eq!(c.read(25, 10, &mut out), Some(100), "the first batch always comes whole");
        out.clear();
        assert_eq!(c.read(25, 1000, &mut out), Some(300));
        out.clear();
        assert_eq!(c.read(50, 1000, &mut out), Some(0));
    }

    #[test]
    fn never_evicts_unflushed_batches() {
        let mut c = filled();
        c.evict(0, usize::MAX);
        assert_eq!(c.bytes(), 500);
        c.evict(20, usize::MAX);
        assert_eq!((c.bytes(), c.start_offset()), (300, Some(20)));
        c.evict(50, usize::MAX);
        assert_eq!((c.bytes(), c.start_offset()), (200, Some(30)));
        c.evict(50, 100);
        assert_eq!((c.bytes(), c.start_offset()), (100, Some(40)), "a tighter share evicts more");
        let mut out = Vec::new();
        assert_eq!(c.read(5, 1000, &mut out), None);
    }
}
