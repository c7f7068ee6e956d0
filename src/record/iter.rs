//! Decoding the records of a batch: what a consumer does. The broker never
//! calls this on its hot path.

use super::varint::get_varint;
use super::{validate, BatchInfo, RecordError, HEADER_BYTES};

/// The fewest bytes one record can take: length, attributes, timestamp
/// delta, offset delta, null key, null value, header count.
pub const MIN_RECORD_BYTES: usize = 7;

/// One decoded record, borrowing from the batch bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub offset: i64,
    pub timestamp_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

/// Iterates the records of one validated batch.
pub struct RecordIter<'a> {
    info: BatchInfo,
    rest: &'a [u8],
    index: u32,
    /// Why the batch cannot be iterated at all, yielded once.
    refused: Option<RecordError>,
}

impl<'a> RecordIter<'a> {
    /// Validates the batch at the front of `bytes` and iterates its records.
    /// A compressed batch is refused ([`RecordError::Compressed`]): its
    /// records are read from [`super::inflate`]'s copy.
    pub fn new(bytes: &'a [u8]) -> Result<Self, RecordError> {
        let info = validate(bytes)?;
        if info.codec() != 0 {
            return Err(RecordError::Compressed(info.codec()));
        }
        Ok(RecordIter { info, rest: &bytes[HEADER_BYTES..info.batch_len as usize], index: 0, refused: None })
    }

    /// Iterates a batch that already passed [`validate`] and
    /// [`validate_records`], without checking its CRC a second time. Bytes
    /// that did not pass them yield an error or end early; never a panic.
    /// A compressed batch yields [`RecordError::Compressed`].
    pub fn validated(bytes: &'a [u8], info: BatchInfo) -> Self {
        if info.codec() != 0 {
            return RecordIter { info, rest: &[], index: 0, refused: Some(RecordError::Compressed(info.codec())) };
        }
        let rest = bytes.get(HEADER_BYTES..info.batch_len as usize).unwrap_or_default();
        RecordIter { info, rest, index: 0, refused: None }
    }

    pub fn info(&self) -> &BatchInfo {
        &self.info
    }

    fn bad(&self, reason: &'static str) -> RecordError {
        RecordError::BadRecord { index: self.index, reason }
    }

    fn decode_one(&mut self) -> Result<Record<'a>, RecordError> {
        let mut headers = Vec::new();
        let r = parse_record(&mut self.rest, self.index, |k, v| headers.push((k, v)))?;
        Ok(Record {
            offset: self.info.base_offset + i64::from(self.index),
            timestamp_ms: self.info.first_timestamp.wrapping_add(r.timestamp_delta),
            key: r.key,
            value: r.value,
            headers,
        })
    }
}

/// The fields of one record, borrowing from the batch; headers go to the
/// caller's callback so the framing walk allocates nothing.
struct RawRecord<'a> {
    timestamp_delta: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
}

/// Parses the record at the front of `rest` (advancing it past the record).
/// The one definition of a well-formed record: [`RecordIter`] and
/// [`validate_records`] both use it, so a batch the broker accepts is a
/// batch every consumer can read.
#[inline(always)]
fn parse_record<'a>(rest: &mut &'a [u8], index: u32, mut on_header: impl FnMut(&'a str, Option<&'a [u8]>)) -> Result<RawRecord<'a>, RecordError> {
    let bad = |reason| RecordError::BadRecord { index, reason };
    let (body_len, n) = get_varint(rest).ok_or_else(|| bad("bad length"))?;
    let body_len = usize::try_from(body_len).map_err(|_| bad("bad length"))?;
    if body_len > rest.len() - n {
        return Err(bad("length past batch end"));
    }
    let mut body = Cursor { buf: &rest[n..n + body_len] };
    *rest = &rest[n + body_len..];
    let _attributes = body.byte().ok_or_else(|| bad("missing attributes"))?;
    let timestamp_delta = body.varint().ok_or_else(|| bad("bad timestamp delta"))?;
    let offset_delta = body.varint().ok_or_else(|| bad("bad offset delta"))?;
    if offset_delta != i64::from(index) {
        return Err(bad("offset delta out of sequence"));
    }
    let key = body.opt_bytes().ok_or_else(|| bad("bad key"))?;
    let value = body.opt_bytes().ok_or_else(|| bad("bad value"))?;
    let header_count = body.varint().ok_or_else(|| bad("bad header count"))?;
    if header_count < 0 || header_count > body.buf.len() as i64 {
        return Err(bad("header count past record end"));
    }
    for _ in 0..header_count {
        let klen = body.varint().ok_or_else(|| bad("bad header key"))?;
        let k = u64::try_from(klen).ok().and_then(|klen| body.take(klen)).ok_or_else(|| bad("bad header key"))?;
        let k = std::str::from_utf8(k).map_err(|_| bad("header key is not UTF-8"))?;
        let v = body.opt_bytes().ok_or_else(|| bad("bad header value"))?;
        on_header(k, v);
    }
    if !body.buf.is_empty() {
        return Err(bad("trailing bytes in record"));
    }
    Ok(RawRecord { timestamp_delta, key, value })
}

/// Walks the record framing of a batch that passed [`validate`]: every
/// record's length and fields fill the batch exactly and there are
/// `record_count` of them. Reads lengths only; copies and allocates
/// nothing, unless the batch is compressed: its records are then inflated
/// into a buffer of their own (bounded, dropped on return) to be walked.
/// The broker runs this on produce so that every stored batch is readable
/// by every consumer.
pub fn validate_records(batch: &[u8], info: &BatchInfo) -> Result<(), RecordError> {
    let Some(rest) = batch.get(HEADER_BYTES..info.batch_len as usize) else {
        return Err(RecordError::Truncated { needed: info.batch_len as usize, have: batch.len() });
    };
    if info.codec() != 0 {
        return walk_records(&super::compression::decompress(info.codec(), rest)?, info.record_count);
    }
    walk_records(rest, info.record_count)
}

fn walk_records(mut rest: &[u8], record_count: u32) -> Result<(), RecordError> {
    for index in 0..record_count {
        parse_record(&mut rest, index, |_, _| {})?;
    }
    if !rest.is_empty() {
        return Err(RecordError::BadRecord { index: record_count, reason: "trailing bytes after last record" });
    }
    Ok(())
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, RecordError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.refused.take() {
            self.index = self.info.record_count;
            return Some(Err(e));
        }
        if self.index == self.info.record_count {
            if !self.rest.is_empty() {
                self.rest = &[];
                return Some(Err(self.bad("trailing bytes after last record")));
            }
            return None;
        }
        let r = self.decode_one();
        match r {
            Ok(_) => self.index += 1,
            Err(_) => self.index = self.info.record_count,
        }
        Some(r)
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    #[inline(always)]
    fn varint(&mut self) -> Option<i64> {
        let (v, n) = get_varint(self.buf)?;
        self.buf = &self.buf[n..];
        Some(v)
    }
    #[inline(always)]
    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let len = usize::try_from(len).ok()?;
        if len > self.buf.len() {
            return None;
        }
        let (a, b) = self.buf.split_at(len);
        self.buf = b;
        Some(a)
    }
    #[inline(always)]
    fn opt_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varint()? {
            -1 => Some(None),
            n if n >= 0 => self.take(n as u64).map(Some),
            _ => None,
        }
    }
}
