//! The idempotent producer's state of one partition (Kafka's KIP-98): per
//! producer id, its epoch and the sequence ranges and offsets of its last
//! [`WINDOW`] runs of batches, so a batch sent again after a lost answer is
//! recognised and answered with the offsets it was stored at instead of
//! being stored twice, a gap in the sequence is refused, and a producer
//! fenced by a newer epoch is refused.
//!
//! A run is one batch, or several of one producer stored back to back:
//! consecutive in sequence and in offset, so record `seq` of the run sits
//! at `first_offset + (seq - first_seq)`. Kafka remembers five batches,
//! which matches its clients' five requests in flight of one batch each
//! per partition; remembering five runs keeps at least those five, and
//! also covers a producer whose requests carry several batches of a
//! partition (the shard appends one request's batches of a partition
//! together), such as the SDK's, with five requests in flight.
//!
//! Sans-IO. The owning shard asks [`ProducerStates::check`] before it
//! appends a batch and tells [`ProducerStates::record`] after, on the
//! leader and on every follower alike: the producer id, epoch and first
//! sequence are in the batch header (Kafka's v2 batch), so every replica
//! derives the same state from the same log, and a new leader knows every
//! producer's window the moment it is elected. A replica that opens its
//! log rebuilds the state from the batch headers it holds.
//!
//! Invariant: the state is a function of the log. Everything here is
//! computed from batch headers and the offsets they were stored at, never
//! from a clock, so two replicas holding the same batches hold the same
//! state (expiry uses the batches' own timestamps).

use std::collections::{HashMap, VecDeque};

pub use crate::record::next_sequence;
use crate::record::BatchInfo;

/// Runs of batches remembered per producer: Kafka's window, which
/// matches a producer's at most five requests in flight per partition.
pub const WINDOW: usize = 5;

/// The most records one run spans: batches join a run only while it stays
/// within this, so the [`WINDOW`] runs together span less than the
/// sequence space (2^31) and a sequence that wrapped around is never
/// mistaken for one stored before. A request of the largest frame
/// (1 GiB, of records of at least 7 bytes) holds fewer, so one request's
/// batches of a partition are always one run.
pub const MAX_RUN_RECORDS: i64 = 1 << 28;

/// One remembered run of batches: its sequence range and where it was
/// stored. Invariant: a run of more than one batch does not wrap its
/// sequence, and `last_seq - first_seq == last_offset - first_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    first_seq: i32,
    last_seq: i32,
    first_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Producer {
    epoch: i16,
    batches: VecDeque<Stored>,
    /// The largest record timestamp of its last batch: what expiry
    /// compares (a timestamp from the log, the same on every replica).
    last_timestamp: i64,
}

/// What to do with one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not from an idempotent producer, or the next in its sequence (or
    /// the first this partition sees of it): append it.
    Append,
    /// Sent before and stored at these offsets: answer with them and do
    /// not store it again.
    Duplicate { first_offset: i64, last_offset: i64 },
    /// Not the next in sequence: a batch before it was lost, or this one
    /// came out of order. Kafka's OUT_OF_ORDER_SEQUENCE_NUMBER.
    OutOfOrder { expected: i32, got: i32 },
    /// An epoch older than the producer's current one: a producer that
    /// was replaced. Kafka's INVALID_PRODUCER_EPOCH.
    StaleEpoch { current: i16, got: i16 },
}

/// Every idempotent producer's state in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerStates {
    producers: HashMap<i64, Producer>,
    /// The most producers kept; past it the one idle longest is forgotten
    /// (its next batch is then accepted whatever its sequence, as a
    /// producer expired by age is).
    max_producers: usize,
    /// The offset after the last batch recorded, idempotent or not: the
    /// state is that of every batch below it.
    end: i64,
}

impl ProducerStates {
    pub fn new(max_producers: usize) -> Self {
        Self::starting_at(max_producers, 0)
    }

    /// No producers, for a log whose batches below `end` are not known
    /// (it starts there, or they are gone).
    pub fn starting_at(max_producers: usize, end: i64) -> Self {
        ProducerStates { producers: HashMap::new(), max_producers: max_producers.max(1), end }
    }

    /// The offset after the last batch recorded.
    pub fn end(&self) -> i64 {
        self.end
    }

    pub fn max_producers(&self) -> usize {
        self.max_producers
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Judges one batch against what its producer stored before.
    pub fn check(&self, info: &BatchInfo) -> Verdict {
        if info.producer_id < 0 {
            return Verdict::Append;
        }
        // A producer this partition does not know (new, expired, or older
        // than the log's start) may start anywhere in its sequence, as
        // Kafka accepts since KIP-360.
        let Some(p) = self.producers.get(&info.producer_id) else { return Verdict::Append };
        let (first, last) = (info.base_sequence, last_sequence(info));
        if info.producer_epoch < p.epoch {
            return Verdict::StaleEpoch { current: p.epoch, got: info.producer_epoch };
        }
        if info.producer_epoch > p.epoch {
            // A new epoch starts its sequence again.
            return if first == 0 { Verdict::Append } else { Verdict::OutOfOrder { expected: 0, got: first } };
        }
        if let Some(b) = p.batches.iter().find(|b| b.first_seq == first && b.last_seq == last) {
            return Verdict::Duplicate { first_offset: b.first_offset, last_offset: b.last_offset };
        }
        // Part of a run: its records sit where their sequences say.
        if first <= last {
            if let Some(b) = p.batches.iter().find(|b| b.first_seq <= first && last <= b.last_seq) {
                let first_offset = b.first_offset + i64::from(first - b.first_seq);
                return Verdict::Duplicate { first_offset, last_offset: first_offset + i64::from(last - first) };
            }
        }
        match p.batches.back() {
            None => Verdict::Append,
            Some(b) if next_sequence(b.last_seq, 1) == first => Verdict::Append,
            Some(b) => Verdict::OutOfOrder { expected: next_sequence(b.last_seq, 1), got: first },
        }
    }

    /// Remembers a batch stored at `first_offset` (an appended one, or one
    /// read from the log).
    pub fn record(&mut self, info: &BatchInfo, first_offset: i64) {
        self.end = self.end.max(first_offset + i64::from(info.record_count));
        if info.producer_id < 0 {
            return;
        }
        if !self.producers.contains_key(&info.producer_id) && self.producers.len() >= self.max_producers {
            if let Some(idle) = self.producers.iter().min_by_key(|(_, p)| p.last_timestamp).map(|(&id, _)| id) {
                self.producers.remove(&idle);
            }
        }
        let p = self.producers.entry(info.producer_id).or_insert_with(|| Producer {
            epoch: info.producer_epoch,
            batches: VecDeque::new(),
            last_timestamp: i64::MIN,
        });
        if info.producer_epoch != p.epoch {
            p.epoch = info.producer_epoch;
            p.batches.clear();
        }
        let last_offset = first_offset + i64::from(info.record_count) - 1;
        let (first_seq, last_seq) = (info.base_sequence, last_sequence(info));
        // Stored right after the producer's previous batch, in sequence and
        // in offset: it extends that run.
        if let Some(b) = p.batches.back_mut() {
            let joins = b.first_seq <= b.last_seq
                && first_seq <= last_seq
                && b.last_seq < i32::MAX
                && first_seq == b.last_seq + 1
                && first_offset == b.last_offset + 1
                && last_offset - b.first_offset < MAX_RUN_RECORDS;
            if joins {
                b.last_seq = last_seq;
                b.last_offset = last_offset;
                p.last_timestamp = p.last_timestamp.max(info.max_timestamp);
                return;
            }
        }
        if p.batches.len() == WINDOW {
            p.batches.pop_front();
        }
        p.batches.push_back(Stored { first_seq, last_seq, first_offset, last_offset });
        p.last_timestamp = p.last_timestamp.max(info.max_timestamp);
    }

    /// Forgets producers whose last batch is older than `before_ms` (a
    /// record timestamp); returns how many.
    pub fn expire(&mut self, before_ms: i64) -> usize {
        let n = self.producers.len();
        self.producers.retain(|_, p| p.last_timestamp >= before_ms);
        n - self.producers.len()
    }
}

/// The first bytes of a snapshot file, with its format version.
const SNAPSHOT_MAGIC: &[u8; 8] = b"SLPRODS1";
/// Bytes of one producer's fixed part and of one remembered batch.
const PRODUCER_BYTES: usize = 8 + 2 + 8 + 1;
const STORED_BYTES: usize = 4 + 4 + 8 + 8;

impl ProducerStates {
    /// The snapshot form: a magic and version, [`Self::end`], the
    /// producers, and a CRC-32 of all that before it.
    pub fn encode(&self) -> Vec<u8> {
        let offset = self.end;
        let mut out = Vec::with_capacity(24 + self.producers.len() * (PRODUCER_BYTES + WINDOW * STORED_BYTES));
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_le_bytes());
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        for id in ids {
            let p = &self.producers[id];
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&p.epoch.to_le_bytes());
            out.extend_from_slice(&p.last_timestamp.to_le_bytes());
            out.push(p.batches.len() as u8);
            for b in &p.batches {
                out.extend_from_slice(&b.first_seq.to_le_bytes());
                out.extend_from_slice(&b.last_seq.to_le_bytes());
                out.extend_from_slice(&b.first_offset.to_le_bytes());
                out.extend_from_slice(&b.last_offset.to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads a snapshot. Damaged or truncated bytes are an error, never a
    /// panic.
    pub fn decode(bytes: &[u8], max_producers: usize) -> Result<ProducerStates, String> {
        let body_len = bytes.len().checked_sub(4).ok_or("a producer snapshot shorter than its CRC")?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err("producer snapshot CRC mismatch".into());
        }
        let mut r = body;
        let mut take = |n: usize| -> Result<&[u8], String> {
            if r.len() < n {
                return Err("a truncated producer snapshot".into());
            }
            let (a, b) = r.split_at(n);
            r = b;
            Ok(a)
        };
        if take(8)? != SNAPSHOT_MAGIC {
            return Err("not a producer snapshot of this format".into());
        }
        let le8 = |b: &[u8]| i64::from_le_bytes(b.try_into().expect("8 bytes"));
        let le4 = |b: &[u8]| i32::from_le_bytes(b.try_into().expect("4 bytes"));
        let offset = le8(take(8)?);
        let n = le4(take(4)?) as u32 as usize;
        let mut s = ProducerStates::starting_at(max_producers, offset);
        for _ in 0..n {
            let id = le8(take(8)?);
            let epoch = i16::from_le_bytes(take(2)?.try_into().expect("2 bytes"));
            let last_timestamp = le8(take(8)?);
            let m = take(1)?[0] as usize;
            if m > WINDOW {
                return Err(format!("a producer snapshot remembers {m} batches of one producer, more than {WINDOW}"));
            }
            let mut batches = VecDeque::with_capacity(m);
            for _ in 0..m {
                let b = take(STORED_BYTES)?;
                let run = Stored { first_seq: le4(&b[0..4]), last_seq: le4(&b[4..8]), first_offset: le8(&b[8..16]), last_offset: le8(&b[16..24]) };
                if !run.is_sound() {
                    return Err(format!("a producer snapshot holds an impossible run {run:?} of producer {id}"));
                }
                batches.push_back(run);
            }
            s.producers.insert(id, Producer { epoch, batches, last_timestamp });
        }
        if !r.is_empty() {
            return Err("trailing bytes in a producer snapshot".into());
        }
        Ok(s)
    }
}

impl Stored {
    /// Whether the run's sequences and offsets can be what
    /// [`ProducerStates::record`] stores: as many offsets as sequences (a
    /// single batch may wrap its sequence), fewer than [`MAX_RUN_RECORDS`].
    fn is_sound(&self) -> bool {
        let seqs = if self.first_seq <= self.last_seq {
            i64::from(self.last_seq) - i64::from(self.first_seq)
        } else {
            i64::from(self.last_seq) + 1 + i64::from(i32::MAX) - i64::from(self.first_seq)
        };
        self.first_offset >= 0 && self.last_offset.checked_sub(self.first_offset) == Some(seqs) && seqs < MAX_RUN_RECORDS
    }
}

/// The sequence of a batch's last record.
fn last_sequence(info: &BatchInfo) -> i32 {
    next_sequence(info.base_sequence, info.record_count.saturating_sub(1).min(i32::MAX as u32) as i32)
}

#[cfg(test)]
mod tests;
