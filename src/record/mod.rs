//! The record batch: the unit a producer builds, the broker stores and
//! replicates, and a consumer receives, byte for byte.
//!
//! The layout is documented in `schemas/record_batch.md`; this module is its
//! only implementation. It is sans-IO: it reads and writes byte slices.
//!
//! Architecture invariant: the broker's hot path only calls [`validate`] and
//! [`set_base_offset`] / [`set_leader_epoch`]. It never decodes records, and
//! the CRC never covers the fields the broker rewrites, so appending a batch
//! costs one header check and one CRC pass, never a re-encode.

mod builder;
mod iter;
mod varint;

pub use builder::{BatchBuilder, Header};
pub use iter::{validate_records, Record, RecordIter};

/// Size of the fixed batch header in bytes.
pub const HEADER_BYTES: usize = 64;
/// The only batch format version this build reads and writes.
pub const MAGIC: u8 = 1;
/// Bytes from the start of a batch at which the CRC coverage begins.
pub const CRC_START: usize = 20;
/// A batch may never claim more than this, whatever the configured limits are;
/// it keeps every length in a `u32` and every allocation bounded.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

pub(crate) mod field {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LEN: usize = 8;
    pub const LEADER_EPOCH: usize = 12;
    pub const CRC: usize = 16;
    pub const MAGIC: usize = 20;
    pub const RESERVED0: usize = 21;
    pub const ATTRIBUTES: usize = 22;
    pub const RECORD_COUNT: usize = 24;
    pub const BASE_SEQUENCE: usize = 28;
    pub const FIRST_TIMESTAMP: usize = 32;
    pub const MAX_TIMESTAMP: usize = 40;
    pub const PRODUCER_ID: usize = 48;
    pub const PRODUCER_EPOCH: usize = 56;
    pub const RESERVED1: usize = 58;
}

/// Attribute bits 0..=2: compression codec. Only `0` (none) is accepted until
/// a codec is implemented; the bits are reserved so the layout need not change.
pub const ATTR_COMPRESSION_MASK: u16 = 0b111;

/// What is wrong with bytes that claim to be a record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("batch truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    #[error("batch length {0} is outside {HEADER_BYTES}..={MAX_BATCH_BYTES}")]
    BadLength(u32),
    #[error("unsupported batch magic {0}")]
    BadMagic(u8),
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("batch has no records")]
    Empty,
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(u16),
    #[error("reserved header bits are set")]
    ReservedBits,
    #[error("max timestamp {max} is before first timestamp {first}")]
    BadTimestamps { first: i64, max: i64 },
    #[error("malformed record {index}: {reason}")]
    BadRecord { index: u32, reason: &'static str },
}

/// The validated header fields of one batch, read without touching records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    pub batch_len: u32,
    pub leader_epoch: u32,
    pub crc: u32,
    pub attributes: u16,
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
}

impl BatchInfo {
    /// The offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.record_count) - 1
    }
    /// The offset the next batch after this one starts at.
    pub fn next_offset(&self) -> i64 {
        self.base_offset + i64::from(self.record_count)
    }
}

#[inline]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
#[inline]
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Reads the length a batch claims from the first 12 bytes, so a reader can
/// tell how many bytes to wait for. Checks the bounds, not the CRC.
pub fn peek_len(bytes: &[u8]) -> Result<usize, RecordError> {
    if bytes.len() < field::BATCH_LEN + 4 {
        return Err(RecordError::Truncated { needed: field::BATCH_LEN + 4, have: bytes.len() });
    }
    let len = u32_at(bytes, field::BATCH_LEN);
    if (len as usize) < HEADER_BYTES || len as usize > MAX_BATCH_BYTES {
        return Err(RecordError::BadLength(len));
    }
    Ok(len as usize)
}

/// Checks the header and the CRC of the batch at the start of `bytes`,
/// without decoding its records. `bytes` may extend past the batch.
pub fn validate(bytes: &[u8]) -> Result<BatchInfo, RecordError> {
    let len = peek_len(bytes)?;
    if bytes.len() < len {
        return Err(RecordError::Truncated { needed: len, have: bytes.len() });
    }
    let b = &bytes[..len];
    let magic = b[field::MAGIC];
    if magic != MAGIC {
        return Err(RecordError::BadMagic(magic));
    }
    let stored = u32_at(b, field::CRC);
    let computed = crc32fast::hash(&b[CRC_START..]);
    if stored != computed {
        return Err(RecordError::CrcMismatch { stored, computed });
    }
    if b[field::RESERVED0] != 0 || u16_at(b, field::RESERVED1) != 0 || u32_at(b, 60) != 0 {
        return Err(RecordError::ReservedBits);
    }
    let attributes = u16_at(b, field::ATTRIBUTES);
    if attributes & ATTR_COMPRESSION_MASK != 0 {
        return Err(RecordError::UnsupportedCompression(attributes & ATTR_COMPRESSION_MASK));
    }
    if attributes & !ATTR_COMPRESSION_MASK != 0 {
        return Err(RecordError::ReservedBits);
    }
    let record_count = u32_at(b, field::RECORD_COUNT);
    // Each record takes at least 7 bytes (see the layout), which bounds the
    // count by the length and keeps `base + count` far from overflow.
    if record_count == 0 {
        return Err(RecordError::Empty);
    }
    if record_count as usize > (len - HEADER_BYTES) / iter::MIN_RECORD_BYTES {
        return Err(RecordError::BadRecord { index: 0, reason: "record count exceeds batch length" });
    }
    let first_timestamp = i64_at(b, field::FIRST_TIMESTAMP);
    let max_timestamp = i64_at(b, field::MAX_TIMESTAMP);
    if max_timestamp < first_timestamp {
        return Err(RecordError::BadTimestamps { first: first_timestamp, max: max_timestamp });
    }
    Ok(BatchInfo {
        base_offset: i64_at(b, field::BASE_OFFSET),
        batch_len: len as u32,
        leader_epoch: u32_at(b, field::LEADER_EPOCH),
        crc: stored,
        attributes,
        record_count,
        first_timestamp,
        max_timestamp,
    })
}

/// Writes the broker-assigned base offset. Not covered by the CRC.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[field::BASE_OFFSET..field::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
}

/// Writes the leader epoch the batch was appended under. Not covered by the CRC.
pub fn set_leader_epoch(batch: &mut [u8], epoch: u32) {
    batch[field::LEADER_EPOCH..field::LEADER_EPOCH + 4].copy_from_slice(&epoch.to_le_bytes());
}

/// The base offset and record count of a batch already
/// validated (stored, or read back from a log), without checking anything
/// again; `None` if the bytes are shorter than a header.
pub fn peek_header(bytes: &[u8]) -> Option<(i64, u32)> {
    (bytes.len() >= HEADER_BYTES).then(|| (i64_at(bytes, field::BASE_OFFSET), u32_at(bytes, field::RECORD_COUNT)))
}

/// The leader epoch stored in a batch's header; `None` if shorter than one.
pub fn peek_leader_epoch(bytes: &[u8]) -> Option<u32> {
    (bytes.len() >= HEADER_BYTES).then(|| u32_at(bytes, field::LEADER_EPOCH))
}

/// Walks a buffer of back-to-back batches, validating each one's header and
/// CRC. Yields `(start, info)` for each whole batch.
pub fn batches(bytes: &[u8]) -> BatchWalk<'_> {
    BatchWalk { bytes, pos: 0, failed: false }
}

/// Iterator returned by [`batches`].
pub struct BatchWalk<'a> {
    bytes: &'a [u8],
    pos: usize,
    failed: bool,
}

impl BatchWalk<'_> {
    /// Bytes consumed by the whole, valid batches yielded so far.
    pub fn position(&self) -> usize {
        self.pos
    }
}

impl Iterator for BatchWalk<'_> {
    type Item = Result<(usize, BatchInfo), RecordError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.bytes.len() {
            return None;
        }
        let start = self.pos;
        match validate(&self.bytes[start..]) {
            Ok(info) => {
                self.pos += info.batch_len as usize;
                Some(Ok((start, info)))
            }
            Err(e) => {
                // Stop for good: nothing after a bad batch can be trusted.
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests;
