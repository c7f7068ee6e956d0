//! Encoding batches: what a producer does before sending.

use super::varint::{put_varint, varint_len};
use super::{field, HEADER_BYTES, MAGIC};

/// A record header: a string key and an optional byte value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub key: &'a str,
    pub value: Option<&'a [u8]>,
}

/// Builds one record batch (Kafka's v2 batch) in a growable buffer.
///
/// Offsets inside the batch are deltas from a base the broker assigns on
/// append; a producer leaves the base at 0 and the leader epoch at -1, as
/// Kafka's producers do.
///
/// ```
/// use shardlog::record::{self, BatchBuilder, Header, RecordIter};
///
/// let mut b = BatchBuilder::new(256);
/// b.push(1_700_000_000_000, Some(b"user-1"), Some(b"hello"), &[Header { key: "trace", value: Some(b"42") }]);
/// b.push(1_700_000_000_005, None, Some(b"world"), &[]);
/// let batch = b.finish();
///
/// // What the broker does on arrival: header and CRC, no decoding.
/// let info = record::validate(&batch).unwrap();
/// assert_eq!((info.record_count, info.max_timestamp), (2, 1_700_000_000_005));
///
/// // What a consumer does.
/// let values: Vec<_> = RecordIter::new(&batch).unwrap().map(|r| r.unwrap().value.unwrap().to_vec()).collect();
/// assert_eq!(values, vec![b"hello".to_vec(), b"world".to_vec()]);
/// ```
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    first_timestamp: i64,
    max_timestamp: i64,
    /// [`finish_in_place`](Self::finish_in_place) ran: the header is written.
    finished: bool,
    /// The idempotent producer's id, epoch and this batch's first
    /// sequence; -1 for a producer that is not idempotent.
    producer: (i64, i16, i32),
}

const NOT_IDEMPOTENT: (i64, i16, i32) = (-1, -1, -1);

impl BatchBuilder {
    /// Starts a batch; `capacity_bytes` is a hint for the first allocation.
    pub fn new(capacity_bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity_bytes.max(HEADER_BYTES));
        buf.resize(HEADER_BYTES, 0);
        BatchBuilder { buf, count: 0, first_timestamp: 0, max_timestamp: 0, finished: false, producer: NOT_IDEMPOTENT }
    }

    /// Starts a batch in a buffer that held an earlier one, keeping its
    /// allocation (a producer recycles the buffers of acknowledged batches).
    pub fn reuse(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.resize(HEADER_BYTES, 0);
        BatchBuilder { buf, count: 0, first_timestamp: 0, max_timestamp: 0, finished: false, producer: NOT_IDEMPOTENT }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Bytes the finished batch will take.
    pub fn encoded_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes a record would add to the batch, so a producer can cut batches
    /// at a size limit before pushing.
    pub fn record_len(&self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header<'_>]) -> usize {
        let body = self.body_len(timestamp_ms, key, value, headers);
        varint_len(body as i64) + body
    }

    fn body_len(&self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header<'_>]) -> usize {
        let ts_delta = if self.count == 0 { 0 } else { timestamp_ms.wrapping_sub(self.first_timestamp) };
        let opt = |b: Option<&[u8]>| b.map_or(varint_len(-1), |b| varint_len(b.len() as i64) + b.len());
        let mut n = 1 + varint_len(ts_delta) + varint_len(i64::from(self.count)) + opt(key) + opt(value);
        n += varint_len(headers.len() as i64);
        for h in headers {
            n += varint_len(h.key.len() as i64) + h.key.len() + opt(h.value);
        }
        n
    }

    /// Appends one record.
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, value: Option<&[u8]>, headers: &[Header<'_>]) {
        debug_assert!(!self.finished, "a record pushed into a finished batch");
        if self.count == 0 {
            self.first_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);
        let ts_delta = timestamp_ms.wrapping_sub(self.first_timestamp);
        let body_len = self.body_len(timestamp_ms, key, value, headers);
        // Written once, straight into the batch: its length is known first.
        let s = &mut self.buf;
        let start = s.len();
        s.reserve(varint_len(body_len as i64) + body_len);
        put_varint(s, body_len as i64);
        s.push(0); // record attributes, unused
        put_varint(s, ts_delta);
        put_varint(s, i64::from(self.count));
        put_opt(s, key);
        put_opt(s, value);
        put_varint(s, headers.len() as i64);
        for h in headers {
            put_varint(s, h.key.len() as i64);
            s.extend_from_slice(h.key.as_bytes());
            put_opt(s, h.value);
        }
        debug_assert_eq!(s.len() - start, varint_len(body_len as i64) + body_len);
        self.count += 1;
        prefetch_for_write(&self.buf);
    }

    /// Fills in the header and CRC and returns the batch bytes.
    /// A batch needs at least one record.
    pub fn finish(mut self) -> Vec<u8> {
        self.finish_header();
        self.buf
    }

    /// Like [`finish`](Self::finish), but in place: the finished batch
    /// stays in the builder (no more records may follow), so whoever sends
    /// it can finish it later, on its own thread. Calling it again returns
    /// the same bytes without computing them again.
    pub fn finish_in_place(&mut self) -> &[u8] {
        if !self.finished {
            self.finish_header();
            self.finished = true;
        }
        &self.buf
    }

    /// Marks the batch as an idempotent producer's: its id and epoch, and
    /// the sequence of its first record (the broker stores a batch sent
    /// again once). Before the batch is finished.
    /// Once the batch is finished in place its header keeps what it was
    /// finished with (a producer's retry sends the same bytes).
    pub fn set_producer(&mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) {
        if !self.finished {
            self.producer = (producer_id, producer_epoch, base_sequence);
        }
    }

    /// The buffer, for the next batch ([`reuse`](Self::reuse)).
    pub fn into_buf(self) -> Vec<u8> {
        self.buf
    }

    /// Like [`finish`](Self::finish), but writes into `out` and leaves the
    /// builder empty for reuse, keeping its allocations.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        self.finish_header();
        out.extend_from_slice(&self.buf);
        self.buf.truncate(HEADER_BYTES);
        self.buf.fill(0);
        self.count = 0;
        self.producer = NOT_IDEMPOTENT;
    }

    fn finish_header(&mut self) {
        assert!(self.count > 0, "a batch needs at least one record");
        let b = &mut self.buf;
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(field::BASE_OFFSET, &0i64.to_be_bytes());
        put(field::LEADER_EPOCH, &(-1i32).to_be_bytes());
        put(field::MAGIC, &[MAGIC]);
        put(field::ATTRIBUTES, &0u16.to_be_bytes());
        put(field::LAST_OFFSET_DELTA, &(self.count - 1).to_be_bytes());
        put(field::FIRST_TIMESTAMP, &self.first_timestamp.to_be_bytes());
        put(field::MAX_TIMESTAMP, &self.max_timestamp.to_be_bytes());
        let (id, epoch, sequence) = self.producer;
        put(field::PRODUCER_ID, &id.to_be_bytes());
        put(field::PRODUCER_EPOCH, &epoch.to_be_bytes());
        put(field::BASE_SEQUENCE, &sequence.to_be_bytes());
        put(field::RECORD_COUNT, &self.count.to_be_bytes());
        super::seal(b);
    }
}

/// Asks for the cache lines the next records will be written to, so their
/// stores hit the cache: a producer's batch buffers outnumber what the cache
/// holds, and a store that misses stalls the next atomic operation (the
/// producer's lock) until it completes.
#[inline]
fn prefetch_for_write(buf: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let end = buf.as_ptr().wrapping_add(buf.len());
        // A prefetch never faults, even past the allocation.
        for line in [1usize, 2, 3, 4] {
            // SAFETY: a prefetch is a hint: it reads nothing into the
            // program and never faults, whatever the address; SSE, which it
            // needs, is part of the x86_64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(end.wrapping_add(line * 64) as *const i8) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = buf;
}

fn put_opt(s: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(s, -1),
        Some(b) => {
            put_varint(s, b.len() as i64);
            s.extend_from_slice(b);
        }
    }
}
