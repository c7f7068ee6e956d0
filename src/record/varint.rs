//! Unsigned LEB128 and zigzag varints, as in protobuf and Kafka's records.

/// Longest encoding of a `u64`.
pub const MAX_VARINT_BYTES: usize = 10;

#[inline(always)]
pub fn put_uvarint(out: &mut Vec<u8>, v: u64) {
    // Most lengths and deltas in a batch take one or two bytes.
    if v < 0x80 {
        out.push(v as u8);
    } else if v < 0x4000 {
        out.extend_from_slice(&[(v as u8) | 0x80, (v >> 7) as u8]);
    } else {
        let mut buf = [0u8; MAX_VARINT_BYTES];
        let mut n = 0;
        let mut v = v;
        while v >= 0x80 {
            buf[n] = (v as u8) | 0x80;
            v >>= 7;
            n += 1;
        }
        buf[n] = v as u8;
        out.extend_from_slice(&buf[..=n]);
    }
}

#[inline(always)]
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// Bytes of `v` as a varint: one per 7 significant bits, at least one.
#[inline(always)]
pub fn uvarint_len(v: u64) -> usize {
    (70 - (v | 1).leading_zeros() as usize) / 7
}

#[inline(always)]
pub fn varint_len(v: i64) -> usize {
    uvarint_len(((v << 1) ^ (v >> 63)) as u64)
}

/// Reads an unsigned varint from the front of `buf`; returns it and its size.
/// `None` when `buf` ends first or the encoding is longer than a `u64`.
#[inline(always)]
pub fn get_uvarint(buf: &[u8]) -> Option<(u64, usize)> {
    // Most lengths and deltas in a batch fit one or two bytes.
    match *buf {
        [b0, ..] if b0 < 0x80 => return Some((u64::from(b0), 1)),
        [b0, b1, ..] if b1 < 0x80 => return Some((u64::from(b0 & 0x7f) | (u64::from(b1) << 7), 2)),
        _ => {}
    }
    let mut v: u64 = 0;
    for (i, &b) in buf.iter().enumerate().take(MAX_VARINT_BYTES) {
        if i == MAX_VARINT_BYTES - 1 && b > 1 {
            return None;
        }
        v |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some((v, i + 1));
        }
    }
    None
}

#[inline(always)]
pub fn get_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let (u, n) = get_uvarint(buf)?;
    Some((((u >> 1) as i64) ^ -((u & 1) as i64), n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn uvarint_round_trip(v: u64) {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            prop_assert_eq!(out.len(), uvarint_len(v));
            prop_assert_eq!(get_uvarint(&out), Some((v, out.len())));
        }

        #[test]
        fn varint_round_trip(v: i64) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(out.len(), varint_len(v));
            prop_assert_eq!(get_varint(&out), Some((v, out.len())));
        }

        #[test]
        fn truncated_varint_is_none(v in 128u64..) {
            let mut out = Vec::new();
            put_uvarint(&mut out, v);
            prop_assert_eq!(get_uvarint(&out[..out.len() - 1]), None);
        }
    }

    #[test]
    fn overlong_varint_is_none() {
        assert_eq!(get_uvarint(&[0xff; 11]), None);
        assert_eq!(get_uvarint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]), None);
    }
}
