//! Decoding the records of a batch: what a consumer does. The broker never
//! calls this on its hot path.

use super::varint::{get_uvarint, get_varint};
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
}

impl<'a> RecordIter<'a> {
    /// Validates the batch at the front of `bytes` and iterates its records.
    pub fn new(bytes: &'a [u8]) -> Result<Self, RecordError> {
        let info = validate(bytes)?;
        Ok(RecordIter { info, rest: &bytes[HEADER_BYTES..info.batch_len as usize], index: 0 })
    }

    pub fn info(&self) -> &BatchInfo {
        &self.info
    }

    fn bad(&self, reason: &'static str) -> RecordError {
        RecordError::BadRecord { index: self.index, reason }
    }

    fn decode_one(&mut self) -> Result<Record<'a>, RecordError> {
        let (body_len, n) = get_uvarint(self.rest).ok_or_else(|| self.bad("bad length"))?;
        let body_len = usize::try_from(body_len).map_err(|_| self.bad("bad length"))?;
        if body_len > self.rest.len() - n {
            return Err(self.bad("length past batch end"));
        }
        let mut body = Cursor { buf: &self.rest[n..n + body_len] };
        self.rest = &self.rest[n + body_len..];
        let _attributes = body.byte().ok_or_else(|| self.bad("missing attributes"))?;
        let ts_delta = body.varint().ok_or_else(|| self.bad("bad timestamp delta"))?;
        let offset_delta = body.uvarint().ok_or_else(|| self.bad("bad offset delta"))?;
        if offset_delta != u64::from(self.index) {
            return Err(self.bad("offset delta out of sequence"));
        }
        let key = body.opt_bytes().ok_or_else(|| self.bad("bad key"))?;
        let value = body.opt_bytes().ok_or_else(|| self.bad("bad value"))?;
        let header_count = body.uvarint().ok_or_else(|| self.bad("bad header count"))?;
        if header_count > body.buf.len() as u64 {
            return Err(self.bad("header count past record end"));
        }
        let mut headers = Vec::with_capacity(header_count as usize);
        for _ in 0..header_count {
            let klen = body.uvarint().ok_or_else(|| self.bad("bad header key"))?;
            let k = body.take(klen).ok_or_else(|| self.bad("bad header key"))?;
            let k = std::str::from_utf8(k).map_err(|_| self.bad("header key is not UTF-8"))?;
            let v = body.opt_bytes().ok_or_else(|| self.bad("bad header value"))?;
            headers.push((k, v));
        }
        if !body.buf.is_empty() {
            return Err(self.bad("trailing bytes in record"));
        }
        Ok(Record { offset: self.info.base_offset + offset_delta as i64, timestamp_ms: self.info.first_timestamp.wrapping_add(ts_delta), key, value, headers })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<Record<'a>, RecordError>;
    fn next(&mut self) -> Option<Self::Item> {
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
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.buf.split_first()?;
        self.buf = rest;
        Some(b)
    }
    fn uvarint(&mut self) -> Option<u64> {
        let (v, n) = get_uvarint(self.buf)?;
        self.buf = &self.buf[n..];
        Some(v)
    }
    fn varint(&mut self) -> Option<i64> {
        let (v, n) = get_varint(self.buf)?;
        self.buf = &self.buf[n..];
        Some(v)
    }
    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let len = usize::try_from(len).ok()?;
        if len > self.buf.len() {
            return None;
        }
        let (a, b) = self.buf.split_at(len);
        self.buf = b;
        Some(a)
    }
    fn opt_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varint()? {
            -1 => Some(None),
            n if n >= 0 => self.take(n as u64).map(Some),
            _ => None,
        }
    }
}
