//! One segment of a partition log: a direct-I/O file of back-to-back
//! batches named by its base offset, plus its sparse index.
//!
//! Invariant: batches in a segment have strictly increasing, contiguous
//! offsets starting at the segment's base; `size` counts the bytes of whole
//! batches, and only bytes below `written_size` (whose direct writes
//! completed) are read from the file.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Instant;

use super::file::DirectFile;
use super::index::{IndexFile, SegmentIndex};
use super::StorageError;
use crate::record;

/// Bytes read per step while scanning a segment on recovery.
const SCAN_CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Debug)]
pub struct Segment {
    pub base_offset: i64,
    /// Open while active, and while recently read when sealed.
    pub file: Option<Rc<DirectFile>>,
    /// Bytes of whole batches appended, written or not.
    pub size: u64,
    /// Bytes whose direct writes completed: readable from the file.
    pub written_size: u64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub index: SegmentIndex,
    pub created: Instant,
    /// When the segment was last read, in the log's read ticks.
    pub last_read: u64,
}

impl Segment {
    /// A new, empty segment starting at `base_offset`.
    pub fn empty(base_offset: i64, file: Rc<DirectFile>) -> Self {
        Segment {
            base_offset,
            file: Some(file),
            size: 0,
            written_size: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            index: SegmentIndex::default(),
            created: Instant::now(),
            last_read: 0,
        }
    }
}

pub fn log_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.log"))
}

pub fn index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.index"))
}

/// The recovery checkpoint of the active segment: the index of a prefix
/// known to be synced, so a restart scans only past it.
pub fn checkpoint_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.checkpoint"))
}

/// Parses a segment file name back into its base offset.
pub fn parse_log_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What a scan of a segment file found.
#[derive(Debug)]
pub struct Scan {
    pub index: SegmentIndex,
    /// Bytes of whole, valid, contiguous batches from the start.
    pub valid_bytes: u64,
    pub next_offset: i64,
    pub max_timestamp: i64,
    pub batches: u64,
    /// Why the scan stopped before the end of the file, if it did because
    /// of damage.
    pub stopped_by: Option<String>,
    /// Zero bytes after the last batch up to the end of its block: what a
    /// direct write pads with, left when the broker stopped without trimming
    /// them (a crash). Not damage.
    pub padding_bytes: u64,
    /// The scan stopped where writes may not have finished: a batch cut by
    /// the end of the file, or zeros where a batch should start (a write
    /// after them completed first). In the last segment that is a crash
    /// during writes, not damage.
    pub unfinished_write: bool,
    /// Where the scan started: the end of the prefix a checkpoint vouched
    /// for, or 0.
    pub scanned_from: u64,
}

/// Reads a segment from the start, or from the end of the prefix `from`
/// describes, checking every batch's length, CRC and offset continuity,
/// and rebuilds its index on the way.
pub async fn scan(file: &DirectFile, base_offset: i64, file_size: u64, index_interval_bytes: u32, from: Option<IndexFile>) -> Result<Scan, StorageError> {
    let mut s = Scan {
        index: SegmentIndex::default(),
        valid_bytes: 0,
        next_offset: base_offset,
        max_timestamp: i64::MIN,
        batches: 0,
        stopped_by: None,
        padding_bytes: 0,
        unfinished_write: false,
        scanned_from: 0,
    };
    let mut pos = 0u64;
    if let Some(mut ix) = from {
        debug_assert!(ix.segment_bytes <= file_size);
        // Trust the prefix, but check its end: scan again from the batch of
        // its last index entry, so damage to the last batches it vouches
        // for is still found.
        if let Some(e) = ix.index.pop_last() {
            s.index = ix.index;
            s.valid_bytes = u64::from(e.pos);
            s.next_offset = base_offset + i64::from(e.rel_offset);
            s.max_timestamp = e.max_ts;
            s.scanned_from = u64::from(e.pos);
            pos = u64::from(e.pos);
        }
    }
    while pos < file_size {
        let want = SCAN_CHUNK_BYTES.min((file_size - pos) as usize);
        let mut chunk = file.read_at(pos, want).await?;
        let need = match record::peek_len(&chunk) {
            Ok(n) => n,
            Err(e) => {
                s.unfinished_write = record::is_unwritten(&chunk);
                s.stopped_by = Some(e.to_string());
                break;
            }
        };
        if need > chunk.len() {
            if pos + need as u64 > file_size {
                s.unfinished_write = true;
                s.stopped_by = Some(format!("batch at {pos} claims {need} bytes, past the end of the file"));
                break;
            }
            chunk = file.read_at(pos, need).await?;
        }
        let mut good_end = 0usize;
        for item in record::batches(&chunk) {
            let (start, info) = match item {
                Ok(x) => x,
                Err(record::RecordError::Truncated { .. }) => break,
                Err(e) => {
                    s.stopped_by = Some(format!("batch at {}: {e}", pos + good_end as u64));
                    break;
                }
            };
            if info.base_offset != s.next_offset {
                s.stopped_by = Some(format!("batch at {} has base offset {}, expected {}", pos + start as u64, info.base_offset, s.next_offset));
                break;
            }
            s.max_timestamp = s.max_timestamp.max(info.max_timestamp);
            let rel = (info.base_offset - base_offset) as u32;
            s.index.on_append(rel, (pos + start as u64) as u32, info.batch_len, s.max_timestamp, index_interval_bytes);
            s.next_offset = info.next_offset();
            s.batches += 1;
            good_end = start + info.batch_len as usize;
        }
        let consumed = good_end as u64;
        pos += consumed;
        s.valid_bytes = pos;
        if s.stopped_by.is_some() {
            break;
        }
        if consumed == 0 {
            s.stopped_by = Some(format!("batch at {pos} is truncated"));
            break;
        }
    }
    if s.stopped_by.is_some() && is_padding(file, s.valid_bytes, file_size).await? {
        s.stopped_by = None;
        s.padding_bytes = file_size - s.valid_bytes;
    }
    Ok(s)
}

/// Whether the bytes from `from` to the end of the file are the zero
/// padding of the last direct-I/O block: all zero, less than a block, and
/// ending on a block boundary.
async fn is_padding(file: &DirectFile, from: u64, file_size: u64) -> Result<bool, StorageError> {
    let a = file.alignment();
    if from >= file_size || file_size % a != 0 || file_size - from >= a {
        return Ok(false);
    }
    let tail = file.read_at(from, (file_size - from) as usize).await?;
    Ok(tail.len() as u64 == file_size - from && tail.iter().all(|&b| b == 0))
}
