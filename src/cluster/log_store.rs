//! The quorum's log as raft-rs reads it: hard state, the latest snapshot
//! and the entries after it, in memory, with an encoding of the whole for
//! the disk.
//!
//! Invariants: `entries` are contiguous and start at `snapshot.index + 1`;
//! nothing at or below the snapshot's index is kept.

// raft-rs's protobuf types carry hidden fields: they are built by
// assigning to a default, not by a struct literal.
#![allow(clippy::field_reassign_with_default)]

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::codec::{self, DecodeError, Reader, Writer};

/// The first bytes of an encoded log store, with its format version.
const MAGIC: &[u8; 8] = b"SLQUORM1";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogStore {
    pub hard_state: HardState,
    pub conf_state: ConfState,
    /// Index, term and data of the latest snapshot (index 0: none).
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl LogStore {
    /// A new store for a cluster of `voters`.
    pub fn new(voters: Vec<u64>) -> Self {
        let mut s = LogStore::default();
        s.conf_state.voters = voters;
        s.snapshot.mut_metadata().set_conf_state(s.conf_state.clone());
        s
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    fn first(&self) -> u64 {
        self.snapshot_index() + 1
    }

    fn last(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_index(), |e| e.index)
    }

    /// Appends entries from a Ready, replacing any it overwrites. raft-rs
    /// never hands entries below the snapshot or with a gap.
    pub fn append(&mut self, ents: &[Entry]) {
        let Some(first) = ents.first() else { return };
        let keep = first.index.saturating_sub(self.first()) as usize;
        self.entries.truncate(keep);
        self.entries.extend_from_slice(ents);
    }

    /// Installs a snapshot received from the leader.
    pub fn apply_snapshot(&mut self, s: Snapshot) {
        let m = s.get_metadata();
        self.hard_state.term = self.hard_state.term.max(m.term);
        self.hard_state.commit = self.hard_state.commit.max(m.index);
        self.conf_state = m.get_conf_state().clone();
        self.entries.retain(|e| e.index > m.index);
        if self.entries.first().is_some_and(|e| e.index != m.index + 1) {
            self.entries.clear();
        }
        self.snapshot = s;
    }

    /// Replaces everything up to `index` (applied, so committed) by a
    /// snapshot of the state machine at `index`.
    pub fn compact(&mut self, index: u64, data: Vec<u8>) {
        if index <= self.snapshot_index() || index > self.last() {
            return;
        }
        let term = self.term_of(index).unwrap_or(0);
        self.entries.retain(|e| e.index > index);
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s.mut_metadata().set_conf_state(self.conf_state.clone());
        s.data = data.into();
        self.snapshot = s;
    }

    fn term_of(&self, idx: u64) -> Option<u64> {
        if idx == self.snapshot_index() {
            return Some(self.snapshot.get_metadata().term);
        }
        let i = idx.checked_sub(self.first())? as usize;
        self.entries.get(i).map(|e| e.term)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(MAGIC.to_vec());
        codec::put_hard_state(&mut w, &self.hard_state);
        codec::put_conf_state(&mut w, &self.conf_state);
        codec::put_snapshot(&mut w, &self.snapshot);
        codec::put_entries(&mut w, &self.entries);
        let crc = crc32fast::hash(&w.0);
        w.u32(crc);
        w.0
    }

    pub fn decode(b: &[u8]) -> Result<Self, DecodeError> {
        if b.len() < MAGIC.len() + 4 || &b[..MAGIC.len()] != MAGIC {
            return Err(DecodeError("not a quorum log (bad magic)"));
        }
        let (body, crc) = b.split_at(b.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(DecodeError("checksum mismatch"));
        }
        let mut r = Reader(&body[MAGIC.len()..]);
        let s = LogStore {
            hard_state: codec::get_hard_state(&mut r)?,
            conf_state: codec::get_conf_state(&mut r)?,
            snapshot: codec::get_snapshot(&mut r)?,
            entries: codec::get_entries(&mut r)?,
        };
        r.end()?;
        let contiguous = s.entries.iter().enumerate().all(|(i, e)| e.index == s.first() + i as u64);
        if !contiguous {
            return Err(DecodeError("entries are not contiguous after the snapshot"));
        }
        Ok(s)
    }
}

impl raft::Storage for LogStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state.clone(), self.conf_state.clone()))
    }

    fn entries(&self, low: u64, high: u64, max_size: impl Into<Option<u64>>, _: GetEntriesContext) -> raft::Result<Vec<Entry>> {
        if low < self.first() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last() + 1 || low > high {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let (lo, hi) = ((low - self.first()) as usize, (high - self.first()) as usize);
        let mut ents = self.entries[lo..hi].to_vec();
        if let Some(max) = max_size.into() {
            let mut size = 0u64;
            let keep = ents
                .iter()
                .take_while(|e| {
                    size += (e.data.len() + e.context.len() + 24) as u64;
                    size <= max
                })
                .count();
            ents.truncate(keep.max(1));
        }
        Ok(ents)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx).ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::Storage;

    fn entry(index: u64, term: u64) -> Entry {
        let mut e = Entry::default();
        (e.index, e.term, e.data) = (index, term, vec![index as u8; 3].into());
        e
    }

    #[test]
    fn append_overwrites_compact_keeps_the_tail_and_the_encoding_round_trips() {
        let mut s = LogStore::new(vec![1, 2, 3]);
        s.append(&[entry(1, 1), entry(2, 1), entry(3, 1)]);
        s.append(&[entry(3, 2), entry(4, 2)]);
        assert_eq!(s.term(3).unwrap(), 2);
        assert_eq!(s.last_index().unwrap(), 4);
        s.compact(2, b"state@2".to_vec());
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 1);
        assert!(s.term(1).is_err());
        assert!(matches!(s.entries(1, 3, None, GetEntriesContext::empty(false)), Err(raft::Error::Store(StorageError::Compacted))));
        assert_eq!(s.entries(3, 5, None, GetEntriesContext::empty(false)).unwrap().len(), 2);
        let b = s.encode();
        assert_eq!(LogStore::decode(&b).unwrap(), s);
        for cut in [0, 8, b.len() / 2, b.len() - 1] {
            assert!(LogStore::decode(&b[..cut]).is_err());
        }
        let mut flipped = b.clone();
        flipped[20] ^= 1;
        assert!(LogStore::decode(&flipped).is_err());
    }

    #[test]
    fn a_snapshot_from_the_leader_replaces_what_it_covers() {
        let mut s = LogStore::new(vec![1]);
        s.append(&[entry(1, 1), entry(2, 1)]);
        let mut snap = Snapshot::default();
        snap.mut_metadata().index = 5;
        snap.mut_metadata().term = 3;
        s.apply_snapshot(snap);
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap(), s.term(5).unwrap()), (6, 5, 3));
        assert_eq!(s.hard_state.commit, 5);
    }
}
