//! The record batch: the unit a producer builds, the broker stores and
//! replicates, and a consumer receives, byte for byte.
//!
//! It is Kafka's record batch, magic 2, exactly: the layout is documented
//! in `schemas/record_batch.md`, and this module is its only
//! implementation. It is sans-IO: it reads and writes byte slices.
//!
//! Architecture invariant: the broker's hot path only calls [`validate`],
//! [`validate_records`] and [`set_base_offset`] / [`set_leader_epoch`]. It
//! never decodes records, and the CRC never covers the fields the broker
//! rewrites, so appending a batch costs one header check, one CRC pass and
//! one walk over the record lengths, never a re-encode. A compressed batch
//! is stored as sent too: its records are inflated into a scratch buffer
//! only to walk them, and a consumer inflates them again with [`inflate`].

mod builder;
pub mod compression;
mod iter;
mod varint;

pub use builder::{BatchBuilder, Header};
pub use iter::{validate_records, Record, RecordIter};

/// Size of the fixed batch header in bytes (Kafka's v2 batch).
pub const HEADER_BYTES: usize = 61;
/// The only batch format version this build reads and writes: Kafka's
/// "magic" 2.
pub const MAGIC: u8 = 2;
/// Bytes from the start of a batch at which the CRC coverage begins (the
/// attributes): everything before it is either the length, the fields the
/// broker rewrites, the magic or the CRC itself.
pub const CRC_START: usize = 21;
/// Bytes of the batch before `batchLength`'s count starts: the base offset
/// and the length field itself.
pub const LOG_OVERHEAD: usize = 12;
/// A batch may never claim more than this, whatever the configured limits are;
/// it keeps every length in a `u32` and every allocation bounded.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

pub(crate) mod field {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LEN: usize = 8;
    pub const LEADER_EPOCH: usize = 12;
    pub const MAGIC: usize = 16;
    pub const CRC: usize = 17;
    pub const ATTRIBUTES: usize = 21;
    pub const LAST_OFFSET_DELTA: usize = 23;
    pub const FIRST_TIMESTAMP: usize = 27;
    pub const MAX_TIMESTAMP: usize = 35;
    pub const PRODUCER_ID: usize = 43;
    pub const PRODUCER_EPOCH: usize = 51;
    pub const BASE_SEQUENCE: usize = 53;
    pub const RECORD_COUNT: usize = 57;
}

/// Attribute bits 0..=2: the compression codec (0 none, 1 gzip, 2 snappy,
/// 3 lz4, 4 zstd).
pub const ATTR_COMPRESSION_MASK: u16 = 0b111;
/// Attribute bit 3: the timestamps are the broker's (LogAppendTime).
pub const ATTR_LOG_APPEND_TIME: u16 = 1 << 3;
/// Attribute bit 4: the batch is part of a transaction.
pub const ATTR_TRANSACTIONAL: u16 = 1 << 4;
/// Attribute bit 5: a control batch (a transaction marker).
pub const ATTR_CONTROL: u16 = 1 << 5;
/// Attribute bits a batch may carry; the rest (bit 6, the log cleaner's
/// delete horizon, and up) are never set by a producer.
const ATTR_KNOWN: u16 = ATTR_COMPRESSION_MASK | ATTR_LOG_APPEND_TIME | ATTR_TRANSACTIONAL | ATTR_CONTROL;

/// The name of a compression codec, as Kafka's `compression.type` says it.
pub fn codec_name(codec: u16) -> &'static str {
    match codec {
        0 => "none",
        1 => "gzip",
        2 => "snappy",
        3 => "lz4",
        4 => "zstd",
        _ => "unknown",
    }
}

/// What is wrong with bytes that claim to be a record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("batch truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    #[error("batch length {0} is outside {HEADER_BYTES}..={MAX_BATCH_BYTES}")]
    BadLength(i64),
    #[error("unsupported batch magic {0} (only Kafka's record batch v2, magic 2, is accepted)")]
    BadMagic(u8),
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("batch has no records")]
    Empty,
    #[error("compression codec {0} is none of gzip (1), snappy (2), lz4 (3) and zstd (4)")]
    UnsupportedCompression(u16),
    #[error("{name} records do not inflate: {reason}", name = codec_name(*.codec))]
    Decompress { codec: u16, reason: String },
    #[error("the records of this batch are {name}-compressed: inflate the batch first (record::inflate)", name = codec_name(*.0))]
    Compressed(u16),
    #[error("batch attributes {0:#06x} set bits no producer sets")]
    ReservedBits(u16),
    #[error("LogAppendTime batches are not accepted: timestamps are the producer's (CreateTime)")]
    LogAppendTime,
    #[error("transactional and control batches are not accepted yet")]
    Transactional,
    #[error("max timestamp {max} is before first timestamp {first}")]
    BadTimestamps { first: i64, max: i64 },
    #[error("last offset delta {last_offset_delta} does not match {record_count} records")]
    BadOffsetDelta { last_offset_delta: i32, record_count: i32 },
    #[error("malformed record {index}: {reason}")]
    BadRecord { index: u32, reason: &'static str },
}

/// The validated header fields of one batch, read without touching records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchInfo {
    pub base_offset: i64,
    /// Bytes of the whole batch, from its base offset to its last record
    /// (Kafka's `batchLength` plus the 12 bytes before it counts).
    pub batch_len: u32,
    pub leader_epoch: u32,
    pub crc: u32,
    pub attributes: u16,
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
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
    /// The compression codec of the records, 0 for none ([`codec_name`]
    /// names it).
    pub fn codec(&self) -> u16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
}

#[inline]
fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
#[inline]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
#[inline]
fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// CRC-32C (Castagnoli), Kafka's batch checksum, with the hardware's CRC
/// instructions where it has them (crc-fast; see BENCHMARKS.md).
#[inline]
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32
}

/// Reads the length a batch claims from the first 12 bytes, so a reader can
/// tell how many bytes to wait for. Returns the whole batch's size. Checks
/// the bounds, not the CRC.
pub fn peek_len(bytes: &[u8]) -> Result<usize, RecordError> {
    if bytes.len() < LOG_OVERHEAD {
        return Err(RecordError::Truncated { needed: LOG_OVERHEAD, have: bytes.len() });
    }
    let len = i64::from(u32_at(bytes, field::BATCH_LEN) as i32) + LOG_OVERHEAD as i64;
    if len < HEADER_BYTES as i64 || len > MAX_BATCH_BYTES as i64 {
        return Err(RecordError::BadLength(len));
    }
    Ok(len as usize)
}

/// Whether the bytes where a batch should start were never written: a
/// zero length field, as a preallocated or torn tail of a segment reads.
pub fn is_unwritten(bytes: &[u8]) -> bool {
    bytes.get(field::BATCH_LEN..LOG_OVERHEAD).is_some_and(|l| l == [0; 4])
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
    let computed = crc32c(&b[CRC_START..]);
    if stored != computed {
        return Err(RecordError::CrcMismatch { stored, computed });
    }
    let attributes = u16_at(b, field::ATTRIBUTES);
    if attributes & !ATTR_KNOWN != 0 {
        return Err(RecordError::ReservedBits(attributes));
    }
    if attributes & (ATTR_TRANSACTIONAL | ATTR_CONTROL) != 0 {
        return Err(RecordError::Transactional);
    }
    if attributes & ATTR_LOG_APPEND_TIME != 0 {
        return Err(RecordError::LogAppendTime);
    }
    let codec = attributes & ATTR_COMPRESSION_MASK;
    if codec > compression::ZSTD {
        return Err(RecordError::UnsupportedCompression(codec));
    }
    let count = u32_at(b, field::RECORD_COUNT) as i32;
    // Each record takes at least 7 bytes (see the layout), which bounds the
    // count by the length (inflated, for a compressed batch) and keeps
    // `base + count` far from overflow.
    if count <= 0 {
        return Err(RecordError::Empty);
    }
    let records_bytes = if codec == 0 { len - HEADER_BYTES } else { compression::MAX_INFLATED_BYTES };
    if count as usize > records_bytes / iter::MIN_RECORD_BYTES {
        return Err(RecordError::BadRecord { index: 0, reason: "record count exceeds batch length" });
    }
    let last_offset_delta = u32_at(b, field::LAST_OFFSET_DELTA) as i32;
    if last_offset_delta != count - 1 {
        return Err(RecordError::BadOffsetDelta { last_offset_delta, record_count: count });
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
        record_count: count as u32,
        first_timestamp,
        max_timestamp,
        producer_id: i64_at(b, field::PRODUCER_ID),
        producer_epoch: u16_at(b, field::PRODUCER_EPOCH) as i16,
        base_sequence: u32_at(b, field::BASE_SEQUENCE) as i32,
    })
}

/// Writes a batch's length (from the slice's) and its CRC over what the
/// slice holds: the last step of building one. Tests also use it to
/// send batches changed on purpose, as a hostile producer would.
pub fn seal(batch: &mut [u8]) {
    let len = (batch.len() - LOG_OVERHEAD) as u32;
    batch[field::BATCH_LEN..field::BATCH_LEN + 4].copy_from_slice(&len.to_be_bytes());
    let crc = crc32c(&batch[CRC_START..]);
    batch[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// The batch at the start of `bytes` (which passed [`validate`], giving
/// `info`) with its records inflated: the header as it was but for the
/// codec bits, the length and the CRC. What a consumer reads the records
/// of a compressed batch from; the broker never calls it.
pub fn inflate(bytes: &[u8], info: &BatchInfo) -> Result<Vec<u8>, RecordError> {
    let len = info.batch_len as usize;
    let compressed = bytes.get(HEADER_BYTES..len).ok_or(RecordError::Truncated { needed: len, have: bytes.len() })?;
    let records = compression::decompress(info.codec(), compressed)?;
    let mut out = Vec::with_capacity(HEADER_BYTES + records.len());
    out.extend_from_slice(&bytes[..HEADER_BYTES]);
    out.extend_from_slice(&records);
    let attributes = info.attributes & !ATTR_COMPRESSION_MASK;
    out[field::ATTRIBUTES..field::ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    seal(&mut out);
    Ok(out)
}

/// Every batch of `bytes` as [`inflate`] gives it, the uncompressed ones
/// as they are; `None` when none is compressed (nothing to copy). Stops
/// at the first bytes that are not a whole valid batch, which are kept.
pub fn inflate_all(bytes: &[u8]) -> Result<Option<Vec<u8>>, RecordError> {
    if !any_compressed(bytes) {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    let mut walk = batches(bytes);
    for b in walk.by_ref() {
        let Ok((start, info)) = b else { break };
        let batch = &bytes[start..start + info.batch_len as usize];
        if info.codec() == 0 {
            out.extend_from_slice(batch);
        } else {
            out.extend_from_slice(&inflate(batch, &info)?);
        }
    }
    out.extend_from_slice(&bytes[walk.position()..]);
    Ok(Some(out))
}

/// The sequence `by` records after `seq`, as an idempotent producer
/// numbers its records per partition: Kafka's `incrementSequence`, which
/// wraps from `i32::MAX` to 0.
pub fn next_sequence(seq: i32, by: i32) -> i32 {
    if seq > i32::MAX - by {
        by - (i32::MAX - seq) - 1
    } else {
        seq + by
    }
}

/// Whether a batch of `bytes` says it is compressed: a walk over the
/// lengths and attributes alone, so a consumer's fetch of uncompressed
/// batches costs no CRC pass more than its own validation.
fn any_compressed(mut bytes: &[u8]) -> bool {
    while let Ok(len) = peek_len(bytes) {
        let Some(batch) = bytes.get(..len) else { return false };
        if u16_at(batch, field::ATTRIBUTES) & ATTR_COMPRESSION_MASK != 0 {
            return true;
        }
        bytes = &bytes[len..];
    }
    false
}

/// Writes the broker-assigned base offset. Not covered by the CRC.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[field::BASE_OFFSET..field::BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Writes the leader epoch the batch was appended under (Kafka's
/// `partitionLeaderEpoch`). Not covered by the CRC.
pub fn set_leader_epoch(batch: &mut [u8], epoch: u32) {
    batch[field::LEADER_EPOCH..field::LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// The base offset and record count of a batch already
/// validated (stored, or read back from a log), without checking anything
/// again; `None` if the bytes are shorter than a header.
pub fn peek_header(bytes: &[u8]) -> Option<(i64, u32)> {
    (bytes.len() >= HEADER_BYTES).then(|| (i64_at(bytes, field::BASE_OFFSET), u32_at(bytes, field::RECORD_COUNT)))
}

/// Records in back-to-back batches already validated (stored ones, as a
/// fetch returns them): a walk over lengths and record counts alone, no
/// CRC pass. A trailing partial batch is not counted.
pub fn stored_record_count(mut bytes: &[u8]) -> u64 {
    let mut n = 0;
    while let Ok(len) = peek_len(bytes) {
        let Some(batch) = bytes.get(..len) else { break };
        n += u64::from(peek_header(batch).map_or(0, |h| h.1));
        bytes = &bytes[len..];
    }
    n
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
