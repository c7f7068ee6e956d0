//! Reading Kafka requests from untrusted bytes, bounded: every length and
//! every array count is checked against the bytes left before anything is
//! allocated for it (an element takes at least one byte), so a few bytes
//! can never make the broker reserve more memory than the frame holds.
//! Errors are values, never panics.

use std::ops::Range;

/// Why a Kafka request could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("the request ends before its {0}")]
    Short(&'static str),
    #[error("the request's {0} is invalid")]
    Invalid(&'static str),
}

/// A cursor over one request frame.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ReadError> {
        if n > self.remaining() {
            return Err(ReadError::Short(what));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn i8(&mut self, what: &'static str) -> Result<i8, ReadError> {
        Ok(self.take(1, what)?[0] as i8)
    }

    pub fn i16(&mut self, what: &'static str) -> Result<i16, ReadError> {
        Ok(i16::from_be_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }

    pub fn i32(&mut self, what: &'static str) -> Result<i32, ReadError> {
        Ok(i32::from_be_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }

    pub fn i64(&mut self, what: &'static str) -> Result<i64, ReadError> {
        Ok(i64::from_be_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, ReadError> {
        Ok(self.i8(what)? != 0)
    }

    /// An unsigned varint (flexible versions' lengths and tags).
    pub fn uvarint(&mut self, what: &'static str) -> Result<u32, ReadError> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.take(1, what)?[0];
            if i == 4 && b > 0x0f {
                return Err(ReadError::Invalid(what));
            }
            v |= u32::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(ReadError::Invalid(what))
    }

    /// A STRING or NULLABLE_STRING (i16 length, -1 for null).
    pub fn nullable_string(&mut self, what: &'static str) -> Result<Option<&'a str>, ReadError> {
        match self.i16(what)? {
            -1 => Ok(None),
            n if n >= 0 => {
                let b = self.take(n as usize, what)?;
                std::str::from_utf8(b).map(Some).map_err(|_| ReadError::Invalid(what))
            }
            _ => Err(ReadError::Invalid(what)),
        }
    }

    pub fn string(&mut self, what: &'static str) -> Result<&'a str, ReadError> {
        self.nullable_string(what)?.ok_or(ReadError::Invalid(what))
    }

    /// NULLABLE_BYTES (i32 length, -1 for null) as a range of the frame,
    /// so the bytes can be taken out of it without a copy.
    pub fn nullable_bytes(&mut self, what: &'static str) -> Result<Option<Range<usize>>, ReadError> {
        match self.i32(what)? {
            -1 => Ok(None),
            n if n >= 0 => {
                let start = self.pos;
                self.take(n as usize, what)?;
                Ok(Some(start..self.pos))
            }
            _ => Err(ReadError::Invalid(what)),
        }
    }

    /// BYTES (null read as empty), borrowed from the frame.
    pub fn bytes(&mut self, what: &'static str) -> Result<&'a [u8], ReadError> {
        Ok(match self.nullable_bytes(what)? {
            Some(r) => &self.buf[r],
            None => &[],
        })
    }

    /// An ARRAY's count (-1 for null), at most the bytes left: every
    /// element takes at least one byte.
    pub fn nullable_array(&mut self, what: &'static str) -> Result<Option<usize>, ReadError> {
        match self.i32(what)? {
            -1 => Ok(None),
            n if n >= 0 && n as usize <= self.remaining() => Ok(Some(n as usize)),
            n if n >= 0 => Err(ReadError::Short(what)),
            _ => Err(ReadError::Invalid(what)),
        }
    }

    pub fn array(&mut self, what: &'static str) -> Result<usize, ReadError> {
        Ok(self.nullable_array(what)?.unwrap_or(0))
    }

    /// Skips a flexible version's tagged fields.
    pub fn tagged_fields(&mut self) -> Result<(), ReadError> {
        let n = self.uvarint("tagged fields")?;
        if n as usize > self.remaining() {
            return Err(ReadError::Short("tagged fields"));
        }
        for _ in 0..n {
            self.uvarint("a tag")?;
            let size = self.uvarint("a tagged field's size")?;
            self.take(size as usize, "a tagged field")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_past_the_frame_are_refused_before_anything_is_allocated() {
        // i32::MAX elements announced in a 4-byte array head.
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert_eq!(r.array("topics"), Err(ReadError::Short("topics")));
        // A tagged-field count past the frame.
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x07]);
        assert_eq!(r.tagged_fields(), Err(ReadError::Short("tagged fields")));
        let mut r = Reader::new(&[0, 2, 1]);
        assert_eq!(r.nullable_string("name"), Err(ReadError::Short("name")));
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.nullable_bytes("records"), Err(ReadError::Invalid("records")));
    }

    #[test]
    fn reads_what_it_is_given() {
        let bytes = [0, 3, b'a', b'b', b'c', 0xff, 0xff, 0, 0, 0, 2, 9, 9, 1, 5, 2, 7, 7];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.string("s").unwrap(), "abc");
        assert_eq!(r.nullable_string("n").unwrap(), None);
        assert_eq!(r.nullable_bytes("b").unwrap(), Some(11..13));
        r.tagged_fields().unwrap(); // one field, tag 5, two bytes

        assert_eq!(r.remaining(), 0);
    }
}
