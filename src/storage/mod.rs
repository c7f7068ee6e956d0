//! The storage engine: partition logs made of direct-I/O segment files.
//!
//! Owns: segment files, their indexes, the hot-tail cache, group commit,
//! recovery and retention. It knows nothing of the network or of shards;
//! a [`PartitionLog`] is `!Send` and lives on the one shard that owns it.
//!
//! Architecture invariant: only batches that passed [`crate::record::validate`]
//! reach a log, and a log never decodes records except to answer a lookup by
//! timestamp.

mod cache;
pub mod file;
mod index;
mod log;
mod segment;

pub use cache::TailCache;
pub use index::{IndexEntry, IndexFile, SegmentIndex};
pub use log::{AppendInfo, Chunk, LogStats, PartitionLog, ReadOutput};
pub use segment::parse_log_name;

/// Recovery checkpoints one shard writes at once: a checkpoint is a sync
/// and a small file, and 10,000 logs that all come due together must not
/// flood the disk queue that produce writes wait in.
pub const CHECKPOINTS_IN_FLIGHT_PER_SHARD: u64 = 4;

/// What the logs of one shard share: the tail cache's budget, split evenly
/// between the logs open on the shard, so 10,000 partitions cache what 10
/// do (each log also keeps its own `cache_max_bytes` ceiling); and the
/// slots for recovery checkpoints.
pub struct ShardMemory {
    cache_max_bytes: usize,
    logs: std::cell::Cell<usize>,
    checkpoints: crate::rt::Semaphore,
}

impl std::fmt::Debug for ShardMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardMemory").field("cache_max_bytes", &self.cache_max_bytes).field("logs", &self.logs.get()).finish()
    }
}

impl ShardMemory {
    pub fn new(cache_max_bytes_per_shard: usize) -> std::rc::Rc<Self> {
        std::rc::Rc::new(ShardMemory {
            cache_max_bytes: cache_max_bytes_per_shard,
            logs: std::cell::Cell::new(0),
            checkpoints: crate::rt::Semaphore::new(CHECKPOINTS_IN_FLIGHT_PER_SHARD),
        })
    }

    /// One log's share of the cache budget now.
    pub fn cache_share(&self) -> usize {
        self.cache_max_bytes / self.logs.get().max(1)
    }

    pub fn logs(&self) -> usize {
        self.logs.get()
    }

    fn log_opened(&self) {
        self.logs.set(self.logs.get() + 1);
    }

    fn log_dropped(&self) {
        self.logs.set(self.logs.get().saturating_sub(1));
    }
}

use serde::{Deserialize, Serialize};

/// Per-partition storage settings; every size and time carries its unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would pass this size.
    pub segment_max_bytes: u64,
    /// Roll to a new segment when the active one is older than this
    /// (`u64::MAX`: never by age).
    pub segment_max_age_ms: u64,
    /// Delete the oldest segments while the log is larger than this.
    pub retention_max_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this.
    pub retention_max_age_ms: Option<u64>,
    /// Bytes of log between two sparse index entries.
    pub index_interval_bytes: u32,
    /// Budget of the hot-tail cache (unflushed batches are always kept).
    pub cache_max_bytes: usize,
    /// Size of one aligned write buffer; a batch never spans two.
    pub write_buffer_bytes: usize,
    /// Bytes appended but not yet written after which appends wait for
    /// the disk.
    pub unwritten_max_bytes: usize,
    /// Smallest cold read, so sequential consumers read ahead.
    pub read_ahead_bytes: usize,
    /// How often a log with at least `CHECKPOINT_MIN_BYTES` of new writes
    /// syncs them and checkpoints the synced prefix of its active segment,
    /// so a restart scans only what came after (Kafka's recovery point).
    pub checkpoint_interval_ms: u64,
    /// Sealed segment files a log keeps open for reads; the least recently
    /// read are closed past this (the active segment is always open).
    pub open_segments_max: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_max_bytes: 1 << 30,
            segment_max_age_ms: 7 * 24 * 3600 * 1000,
            retention_max_bytes: None,
            retention_max_age_ms: Some(7 * 24 * 3600 * 1000),
            index_interval_bytes: 4096,
            cache_max_bytes: 16 << 20,
            write_buffer_bytes: 4 << 20,
            unwritten_max_bytes: 16 << 20,
            read_ahead_bytes: 256 << 10,
            open_segments_max: 8,
            checkpoint_interval_ms: 2_000,
        }
    }
}

impl LogConfig {
    /// Checks the settings against each other and against the batch limit.
    pub fn validate(&self, max_batch_bytes: usize) -> Result<(), String> {
        if self.write_buffer_bytes < max_batch_bytes + 8192 {
            return Err(format!("write_buffer_bytes ({}) must exceed the max batch size ({max_batch_bytes}) by 8 KiB", self.write_buffer_bytes));
        }
        if self.unwritten_max_bytes < self.write_buffer_bytes {
            return Err("unwritten_max_bytes must be at least write_buffer_bytes".into());
        }
        if self.segment_max_bytes < 4096 || self.segment_max_bytes > u32::MAX as u64 {
            return Err("segment_max_bytes must be between 4 KiB and 4 GiB".into());
        }
        if self.segment_max_age_ms == 0 {
            return Err("segment_max_age_ms must be positive (a segment would roll on every append)".into());
        }
        if self.retention_max_age_ms == Some(0) || self.retention_max_bytes == Some(0) {
            return Err("retention_max_age_ms and retention_max_bytes must be positive when set".into());
        }
        if self.checkpoint_interval_ms == 0 {
            return Err("checkpoint_interval_ms must be positive".into());
        }
        if self.open_segments_max == 0 {
            return Err("open_segments_max must be positive".into());
        }
        if self.index_interval_bytes == 0 {
            return Err("index_interval_bytes must be positive".into());
        }
        Ok(())
    }
}

/// What can go wrong in the storage engine, in the caller's terms.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("corrupt batch on disk in {file} at byte {pos}: {reason}")]
    Corrupt { file: String, pos: u64, reason: String },
    #[error("corrupt index: {0}")]
    CorruptIndex(String),
    #[error("the log failed earlier and accepts no writes: {0}")]
    Failed(String),
    #[error("the log is closed")]
    Closed,
    #[error("batch of {0} bytes does not fit the log's write buffer")]
    BatchTooLarge(usize),
}
