//! Kafka's compression codecs, the reading side. A compressed batch keeps
//! its 61-byte header as it is; everything after it is one compressed
//! stream of the records, which the broker inflates only to check them
//! (and never stores inflated) and a consumer inflates to read them.
//!
//! Every decoder is bounded: the records of one batch may inflate to at
//! most [`MAX_INFLATED_BYTES`], and nothing is allocated past that
//! whatever the stream claims, so a small hostile batch cannot make the
//! broker allocate gigabytes.

use std::io::Read;

use super::{RecordError, HEADER_BYTES, MAX_BATCH_BYTES};

pub const GZIP: u16 = 1;
pub const SNAPPY: u16 = 2;
pub const LZ4: u16 = 3;
pub const ZSTD: u16 = 4;

/// The most bytes the records of one compressed batch may inflate to: an
/// inflated batch stays within [`MAX_BATCH_BYTES`].
pub const MAX_INFLATED_BYTES: usize = MAX_BATCH_BYTES - HEADER_BYTES;

/// The largest zstd window a frame may ask for (2^23 = 8 MiB). Kafka's
/// producers compress batches of at most a few MiB at default levels,
/// whose windows are smaller; a frame that asks for more is refused rather
/// than given the memory.
const ZSTD_MAX_WINDOW_LOG: u32 = 23;

/// The header Java's snappy codec (xerial's snappy-java, which Kafka's
/// Java client uses) puts before its blocks; librdkafka sends raw snappy.
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
/// The magic, then a version and a compatible version, 4 bytes each.
const XERIAL_HEADER_BYTES: usize = 16;

fn fail(codec: u16, reason: impl ToString) -> RecordError {
    RecordError::Decompress { codec, reason: reason.to_string() }
}

/// Inflates the records of a batch compressed with `codec`.
pub fn decompress(codec: u16, input: &[u8]) -> Result<Vec<u8>, RecordError> {
    match codec {
        GZIP => read_bounded(codec, flate2::read::MultiGzDecoder::new(input)),
        SNAPPY if input.starts_with(&XERIAL_MAGIC) => xerial_snappy(input),
        SNAPPY => {
            let mut out = Vec::new();
            raw_snappy(input, &mut out)?;
            Ok(out)
        }
        LZ4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(input)),
        ZSTD => {
            let mut d = zstd::stream::read::Decoder::with_buffer(input).map_err(|e| fail(codec, e))?;
            d.window_log_max(ZSTD_MAX_WINDOW_LOG).map_err(|e| fail(codec, e))?;
            read_bounded(codec, d)
        }
        _ => Err(RecordError::UnsupportedCompression(codec)),
    }
}

/// Reads a decoder to its end, failing past [`MAX_INFLATED_BYTES`].
fn read_bounded(codec: u16, r: impl Read) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    r.take(MAX_INFLATED_BYTES as u64 + 1).read_to_end(&mut out).map_err(|e| fail(codec, e))?;
    if out.len() > MAX_INFLATED_BYTES {
        return Err(fail(codec, format!("the records inflate past {MAX_INFLATED_BYTES} bytes")));
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, after checking the length it
/// claims against what `out` may still take.
fn raw_snappy(block: &[u8], out: &mut Vec<u8>) -> Result<(), RecordError> {
    let len = snap::raw::decompress_len(block).map_err(|e| fail(SNAPPY, e))?;
    if len > MAX_INFLATED_BYTES - out.len() {
        return Err(fail(SNAPPY, format!("the records inflate past {MAX_INFLATED_BYTES} bytes")));
    }
    let at = out.len();
    out.resize(at + len, 0);
    let n = snap::raw::Decoder::new().decompress(block, &mut out[at..]).map_err(|e| fail(SNAPPY, e))?;
    out.truncate(at + n);
    Ok(())
}

/// snappy-java's framing: the header, then blocks, each a big-endian
/// 4-byte length and a raw snappy block.
fn xerial_snappy(input: &[u8]) -> Result<Vec<u8>, RecordError> {
    let mut rest = input.get(XERIAL_HEADER_BYTES..).ok_or_else(|| fail(SNAPPY, "truncated snappy-java header"))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest.split_first_chunk::<4>().ok_or_else(|| fail(SNAPPY, "truncated snappy-java block length"))?;
        let len = u32::from_be_bytes(*len) as usize;
        let block = tail.get(..len).ok_or_else(|| fail(SNAPPY, "snappy-java block past the batch's end"))?;
        raw_snappy(block, &mut out)?;
        rest = &tail[len..];
    }
    Ok(out)
}
