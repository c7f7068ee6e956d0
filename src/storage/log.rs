//! A partition log: an ordered set of segments, the active one written
//! through aligned buffers, a hot-tail cache, and two watermarks.
//!
//! Written is not synced. A *writer* task issues direct writes as data
//! comes; a batch is *written* once its write completed (it survives a
//! crash of the process: acks=1 waits for this). A *syncer* task runs
//! fdatasync for whoever waits on it, beside the writes that keep going;
//! a batch is *synced* once a sync that started after its write completed
//! has finished (it survives a crash of the host: acks=all waits for this).
//! One sync covers every write before it (group commit).
//!
//! Invariants:
//! - offsets are assigned here, contiguously, in append order;
//! - `synced_offset <= written_offset <= next_offset`; every batch below
//!   `written_offset` is on disk, every batch at or above it is in the
//!   cache, so unwritten data is readable;
//! - writes that end on a block boundary (full buffers, whole blocks only)
//!   may be in flight together, up to `MAX_INFLIGHT_WRITES`; a write that
//!   ends inside a block (the writer caught up and writes the tail padded
//!   with zeros) is in flight alone, because the next write rewrites that
//!   block; completions are taken in issue order, so the watermarks only
//!   move forward over a contiguous prefix;
//! - only one of roll, retention and close runs at a time (`io_lock`);
//!   appends wait for the disk only past `unwritten_max_bytes`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;
use futures::StreamExt;

use super::cache::TailCache;
use super::file::{self, DirectFile, IoBuf, ReadBuf};
use super::index::SegmentIndex;
use super::segment::{self, Segment};
use super::{LogConfig, StorageError};
use crate::record::{self, BatchInfo};
use crate::rt;

/// Where an appended batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
}

/// A piece of a read: stored batch bytes, from memory or straight from a
/// direct read. Either way the bytes are the stored ones, unchanged.
#[derive(Debug, Clone)]
pub enum Chunk {
    Mem(Bytes),
    Disk(ReadBuf),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Mem(b) => b,
            Chunk::Disk(r) => r,
        }
    }
}

/// Whole batches read from a log.
#[derive(Debug, Default)]
pub struct ReadOutput {
    pub chunks: Vec<Chunk>,
    pub bytes: usize,
    pub log_start_offset: i64,
    pub high_watermark: i64,
}

/// Direct writes of one log in flight at once: enough to keep a disk's
/// queue busy while one write's completion is handled.
pub const MAX_INFLIGHT_WRITES: usize = 4;
/// Written bytes past the last checkpoint below which a log does not
/// checkpoint again: scanning that little at a restart costs less.
pub const CHECKPOINT_MIN_BYTES: u64 = 1 << 20;
/// A log's write buffer holds one block (the partial last one) while the
/// log is at rest, grows with appends up to `write_buffer_bytes`, and is
/// replaced by one block again once its write is sealed: 10,000 quiet
/// partitions hold 10,000 blocks, not 10,000 buffers.
fn rest_buffer(alignment: u64) -> IoBuf {
    file::alloc(alignment as usize)
}

/// A snapshot of a log's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    pub log_start_offset: i64,
    pub next_offset: i64,
    pub written_offset: i64,
    pub synced_offset: i64,
    /// Offsets below this are vouched for by a recovery checkpoint.
    pub checkpointed_offset: i64,
    /// Bytes the open that recovered this log scanned.
    pub recovery_scanned_bytes: u64,
    pub segments: usize,
    pub bytes: u64,
    pub cache_bytes: usize,
}

/// The aligned buffer the active segment's new bytes are copied into.
struct WriteBuf {
    buf: IoBuf,
    /// Aligned file position of `buf[0]`.
    file_pos: u64,
    len: usize,
    /// Whether the buffer holds bytes not yet written (a seeded partial
    /// block alone is already on disk).
    has_new: bool,
    /// Where each batch in the buffer ends (file position), the offset
    /// after it and the segment's largest timestamp so far, oldest first:
    /// what a write up to a position covers.
    batch_ends: VecDeque<BatchEnd>,
}

/// The end of a whole batch in a segment: what a checkpoint describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchEnd {
    pos: u64,
    next_offset: i64,
    max_timestamp: i64,
}

/// How much of the write buffer a seal sends to the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seal {
    /// The buffer is full: write its whole blocks, carry the partial last
    /// block (not yet written) into the next buffer. Such writes may
    /// overlap in time with each other.
    WholeBlocks,
    /// The writer caught up: write everything, the last block padded with
    /// zeros; the next buffer starts with that block and rewrites it.
    Everything,
    /// The segment is done: write everything, then sync, trim the padding
    /// and persist its index.
    Segment,
}

/// A sealed buffer waiting to be written.
struct PendingWrite {
    seg_base: i64,
    file: Rc<DirectFile>,
    write: Option<(IoBuf, u64)>,
    /// File position up to which the segment is written once this is.
    written_end: u64,
    /// The last whole batch this write completes, if any.
    batch_end: Option<BatchEnd>,
    /// `appended_bytes` covered once this is written.
    end_bytes: u64,
    /// Ends inside a block: the next write must not be in flight with it.
    partial: bool,
    /// This is the last write to its segment: sync it, trim the padding and
    /// persist its index afterwards.
    seals: bool,
}

struct State {
    dir: PathBuf,
    config: LogConfig,
    alignment: u64,
    segments: BTreeMap<i64, Segment>,
    next_offset: i64,
    written_offset: i64,
    synced_offset: i64,
    appended_bytes: u64,
    written_bytes: u64,
    cache: TailCache,
    wbuf: WriteBuf,
    pending: VecDeque<PendingWrite>,
    write_waiters: Vec<(i64, oneshot::Sender<Result<(), String>>)>,
    sync_waiters: Vec<(i64, oneshot::Sender<Result<(), String>>)>,
    failed: Option<String>,
    closed: bool,
    rolling: bool,
    read_tick: u64,
    /// Wakes the writer: new data, or a waiter.
    kick: rt::LocalSender<()>,
    /// Wakes the syncer: a sync waiter, or newly written data for one.
    sync_kick: rt::LocalSender<()>,
    /// The last whole batch of the active segment whose write completed.
    written_batch_end: (i64, BatchEnd),
    /// The offset the last recovery checkpoint covers, `written_bytes` then,
    /// and when it was written.
    checkpointed: (i64, u64, Instant),
    /// Bytes the last open scanned (past checkpoints).
    recovery_scanned_bytes: u64,
}

struct Inner {
    st: RefCell<State>,
    /// What this log shares with the other logs of its shard.
    memory: Rc<super::ShardMemory>,
    io_lock: rt::Semaphore,
    /// Notified when a roll ends; appends wait on it while one runs.
    rolled: rt::Event,
    /// Notified when the written watermark moves (what readers may see)
    /// and when the log fails.
    written: rt::Event,
    /// Whether the writer task runs; `writer_stopped` is notified when it
    /// ends (a closed log, its last write completed).
    writer_running: Cell<bool>,
    writer_stopped: rt::Event,
}

/// One partition's log. Cheap to clone; all clones share the log.
#[derive(Clone)]
pub struct PartitionLog {
    inner: Rc<Inner>,
}

impl State {
    /// The log's watermarks keep their order: what is synced is written,
    /// what is written was appended.
    fn check_watermarks(&self) {
        debug_assert!(
            self.synced_offset <= self.written_offset && self.written_offset <= self.next_offset,
            "synced {} <= written {} <= next {}",
            self.synced_offset,
            self.written_offset,
            self.next_offset
        );
    }

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }
    fn log_start(&self) -> i64 {
        *self.segments.keys().next().expect("a log always has an active segment")
    }
    fn check_writable(&self) -> Result<(), StorageError> {
        if let Some(f) = &self.failed {
            return Err(StorageError::Failed(f.clone()));
        }
        if self.closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    fn needs_roll(&self, len: usize) -> bool {
        let a = self.active();
        a.size > 0 && (a.size + len as u64 > self.config.segment_max_bytes || a.created.elapsed() >= Duration::from_millis(self.config.segment_max_age_ms))
    }

    /// Marks a segment as just read, and closes the least recently read
    /// sealed segment files past `open_segments_max`.
    fn touch(&mut self, base: i64) {
        self.read_tick += 1;
        let tick = self.read_tick;
        if let Some(s) = self.segments.get_mut(&base) {
            s.last_read = tick;
        }
        let active = self.active().base_offset;
        loop {
            let open: Vec<(u64, i64)> =
                self.segments.values().filter(|s| s.file.is_some() && s.base_offset != active).map(|s| (s.last_read, s.base_offset)).collect();
            if open.len() <= self.config.open_segments_max {
                return;
            }
            let (_, victim) = *open.iter().min().expect("more open than the limit");
            if let Some(s) = self.segments.get_mut(&victim) {
                s.file = None;
            }
        }
    }

    /// The in-memory half of an append; the caller checked the limits.
    fn append_in_memory(&mut self, mut batch: BytesMut, info: &BatchInfo, assign: bool) -> AppendInfo {
        let len = batch.len();
        if self.wbuf.len + len > self.wbuf.buf.len() {
            let need = self.wbuf.len + len;
            if need <= self.config.write_buffer_bytes {
                // Grow a small buffer rather than write a part of it.
                let grown = need.next_power_of_two().max(2 * self.wbuf.buf.len()).min(self.config.write_buffer_bytes);
                let mut bigger = file::alloc(grown);
                bigger.as_bytes_mut()[..self.wbuf.len].copy_from_slice(&self.wbuf.buf.as_bytes()[..self.wbuf.len]);
                self.wbuf.buf = bigger;
            } else {
                self.seal_wbuf(Seal::WholeBlocks);
            }
        }
        let base = self.next_offset;
        if assign {
            record::set_base_offset(&mut batch, base);
        }
        let bytes = batch.freeze();
        let w = &mut self.wbuf;
        w.buf.as_bytes_mut()[w.len..w.len + len].copy_from_slice(&bytes);
        w.len += len;
        w.has_new = true;
        let wbuf_end = w.file_pos + w.len as u64;
        let interval = self.config.index_interval_bytes;
        let seg = self.active_mut();
        let pos = seg.size;
        seg.max_timestamp = seg.max_timestamp.max(info.max_timestamp);
        let rel = (base - seg.base_offset) as u32;
        seg.index.on_append(rel, pos as u32, len as u32, seg.max_timestamp, interval);
        seg.size += len as u64;
        seg.next_offset = base + i64::from(info.record_count);
        debug_assert_eq!(wbuf_end, seg.size, "the write buffer ends where the segment does");
        let next = seg.next_offset;
        let max_timestamp = self.active().max_timestamp;
        self.wbuf.batch_ends.push_back(BatchEnd { pos: wbuf_end, next_offset: next, max_timestamp });
        self.cache.push(base, next, bytes);
        debug_assert!(next > self.next_offset, "offsets only grow");
        self.next_offset = next;
        self.appended_bytes += len as u64;
        self.check_watermarks();
        let _ = self.kick.try_send(());
        AppendInfo { base_offset: base, last_offset: next - 1 }
    }

    /// Moves (part of) the write buffer to the pending queue and starts a
    /// new one with what stays in memory: the partial last block, written
    /// already or not. With `Seal::Segment` the caller replaces the new
    /// buffer.
    fn seal_wbuf(&mut self, how: Seal) {
        if !self.wbuf.has_new && how != Seal::Segment {
            return;
        }
        let a = self.alignment as usize;
        let active = self.active();
        let file = active.file.clone().expect("the active segment's file is open");
        let seg_base = active.base_offset;
        let w = &mut self.wbuf;
        // What goes to disk now: whole blocks only, or everything padded.
        let send = if how == Seal::WholeBlocks { w.len / a * a } else { w.len };
        let written_end = w.file_pos + send as u64;
        let keep_from = send / a * a;
        // A full buffer is followed by a full one; otherwise the log may be
        // going quiet: keep one block, and grow again with the next appends.
        let mut fresh = if how == Seal::WholeBlocks { file::alloc(w.buf.len()) } else { rest_buffer(self.alignment) };
        fresh.as_bytes_mut()[..w.len - keep_from].copy_from_slice(&w.buf.as_bytes()[keep_from..w.len]);
        let mut batch_end = None;
        while let Some(&e) = w.batch_ends.front() {
            if e.pos > written_end {
                break;
            }
            batch_end = Some(e);
            w.batch_ends.pop_front();
        }
        let new = WriteBuf {
            buf: fresh,
            file_pos: w.file_pos + keep_from as u64,
            len: w.len - keep_from,
            has_new: send < w.len,
            batch_ends: std::mem::take(&mut w.batch_ends),
        };
        let end_bytes = self.appended_bytes - (w.len - send) as u64;
        let mut old = std::mem::replace(&mut self.wbuf, new);
        let write = if send > 0 && (old.has_new || how != Seal::Segment) {
            let padded = send.div_ceil(a) * a;
            old.buf.as_bytes_mut()[send..padded].fill(0);
            old.buf.trim_to_size(padded);
            Some((old.buf, old.file_pos))
        } else {
            None
        };
        let partial = send % a != 0;
        self.pending.push_back(PendingWrite { seg_base, file, write, written_end, batch_end, end_bytes, partial, seals: how == Seal::Segment });
    }

    /// Wakes every waiter whose offset is below `upto` in `waiters`.
    fn wake(waiters: &mut Vec<(i64, oneshot::Sender<Result<(), String>>)>, upto: i64) {
        let all = std::mem::take(waiters);
        for (o, tx) in all {
            if o < upto {
                let _ = tx.send(Ok(()));
            } else {
                waiters.push((o, tx));
            }
        }
    }

    /// The disk refused a write or a sync: what is on disk past the
    /// written offset is now unknown, so the log stops taking writes rather
    /// than acknowledge what it may not have. Its owner closes it, cuts it
    /// back to the written offset and opens it again (`Partition::recover_from`).
    fn fail(&mut self, e: &StorageError) {
        let msg = e.to_string();
        if self.failed.is_none() {
            tracing::error!(dir = %self.dir.display(), error = %msg, "log write failed; it takes no writes until it is cut back to what was written and reopened");
            self.failed = Some(msg.clone());
        }
        for (_, tx) in self.write_waiters.drain(..).chain(self.sync_waiters.drain(..)) {
            let _ = tx.send(Err(msg.clone()));
        }
    }
}

impl PartitionLog {
    /// Opens the log in `dir` (creating it if needed), recovering the last
    /// segment batch by batch. Must run on the shard that will own the log.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<Self, StorageError> {
        PartitionLog::open_on_shard(dir, config, super::ShardMemory::new(usize::MAX)).await
    }

    /// [`open`](Self::open), sharing `memory` with the shard's other logs.
    pub async fn open_on_shard(dir: &Path, config: LogConfig, memory: Rc<super::ShardMemory>) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let mut bases: Vec<i64> =
            std::fs::read_dir(dir)?.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(segment::parse_log_name)).collect();
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut expected_base: Option<i64> = None;
        let mut broken = false;
        let mut recovery_scanned_bytes = 0u64;
        for (i, &base) in bases.iter().enumerate() {
            let path = segment::log_path(dir, base);
            if broken || expected_base.is_some_and(|e| e != base) {
                if !broken {
                    tracing::error!(dir = %dir.display(), base, expected = ?expected_base, "segment does not follow the previous one; dropping it and all later segments");
                }
                broken = true;
                remove_segment_files(dir, base);
                continue;
            }
            let last = i + 1 == bases.len();
            let file_size = std::fs::metadata(&path)?.len();
            let ix_path = segment::index_path(dir, base);
            // The last segment is checked batch by batch past the prefix its
            // checkpoint vouches for (all of it without one): it is the one a
            // crash can tear. Sealed ones trust a valid index file.
            let (trusted, from) = if last { (None, load_checkpoint(dir, base, file_size).await) } else { (load_index(&ix_path, file_size, base).await, None) };
            // Sealed segments with a valid index stay closed until read.
            let mut file = None;
            let (index, size, next_offset, max_ts) = match trusted {
                Some(ix) => (ix.index, ix.segment_bytes, ix.next_offset, ix.max_timestamp),
                None => {
                    let f = DirectFile::open(&path).await?;
                    let s = segment::scan(&f, base, file_size, config.index_interval_bytes, from).await?;
                    recovery_scanned_bytes += file_size - s.scanned_from;
                    if let Some(why) = &s.stopped_by {
                        if last && s.unfinished_write {
                            tracing::info!(file = %path.display(), valid_bytes = s.valid_bytes, dropped_bytes = file_size - s.valid_bytes, reason = %why, "dropping the tail of writes a crash left unfinished (never acknowledged)");
                        } else {
                            tracing::warn!(file = %path.display(), valid_bytes = s.valid_bytes, dropped_bytes = file_size - s.valid_bytes, reason = %why, "truncating segment at the first bad batch");
                        }
                        if !last {
                            broken = true;
                        }
                    } else if s.padding_bytes > 0 {
                        tracing::debug!(file = %path.display(), padding_bytes = s.padding_bytes, "trimming the zero padding of the last block (the broker did not stop cleanly)");
                    }
                    if s.valid_bytes != file_size {
                        f.truncate(s.valid_bytes).await?;
                        f.sync().await?;
                    }
                    if last {
                        file = Some(Rc::new(f));
                    }
                    (s.index, s.valid_bytes, s.next_offset, s.max_timestamp)
                }
            };
            if size == 0 && !last && !broken {
                drop(file);
                remove_segment_files(dir, base);
                continue;
            }
            expected_base = Some(next_offset);
            segments.insert(
                base,
                Segment { base_offset: base, file, size, written_size: size, next_offset, max_timestamp: max_ts, index, created: Instant::now(), last_read: 0 },
            );
        }
        if segments.is_empty() {
            let base = expected_base.unwrap_or(0);
            let path = segment::log_path(dir, base);
            let f = DirectFile::open(&path).await?;
            file::sync_dir(dir).await?;
            segments.insert(base, Segment::empty(base, Rc::new(f)));
        }
        let (alignment, wbuf, next_offset, written_batch_end) = {
            let active = segments.values().next_back().expect("inserted above");
            let active_file = active.file.as_ref().expect("the last segment was opened");
            let a = active_file.alignment();
            let tail_pos = active.size / a * a;
            let mut buf = rest_buffer(a);
            let tail_len = (active.size - tail_pos) as usize;
            if tail_len > 0 {
                let r = active_file.read_at(tail_pos, tail_len).await?;
                buf.as_bytes_mut()[..tail_len].copy_from_slice(&r);
            }
            let end = BatchEnd { pos: active.size, next_offset: active.next_offset, max_timestamp: active.max_timestamp };
            (a, WriteBuf { buf, file_pos: tail_pos, len: tail_len, has_new: false, batch_ends: VecDeque::new() }, active.next_offset, (active.base_offset, end))
        };
        let (kick, kicked) = rt::local_bounded(1);
        let (sync_kick, sync_kicked) = rt::local_bounded(1);
        let st = State {
            dir: dir.to_path_buf(),
            cache: TailCache::new(config.cache_max_bytes),
            config,
            alignment,
            segments,
            next_offset,
            written_offset: next_offset,
            synced_offset: next_offset,
            appended_bytes: 0,
            written_bytes: 0,
            wbuf,
            pending: VecDeque::new(),
            write_waiters: Vec::new(),
            sync_waiters: Vec::new(),
            failed: None,
            closed: false,
            rolling: false,
            read_tick: 0,
            kick,
            sync_kick,
            written_batch_end,
            checkpointed: (next_offset, 0, Instant::now()),
            recovery_scanned_bytes,
        };
        memory.log_opened();
        let log = PartitionLog {
            inner: Rc::new(Inner {
                st: RefCell::new(st),
                memory,
                io_lock: rt::Semaphore::new(1),
                rolled: rt::Event::default(),
                written: rt::Event::default(),
                writer_running: Cell::new(true),
                writer_stopped: rt::Event::default(),
            }),
        };
        // Writes and syncs answer producers: they run in the default queue.
        rt::spawn(writer(Rc::downgrade(&log.inner), kicked));
        rt::spawn(syncer(Rc::downgrade(&log.inner), sync_kicked));
        Ok(log)
    }

    /// Appends one validated batch: assigns its offsets by patching its base
    /// offset in place, copies it into the write buffer and the cache holds
    /// it. Returns once it is readable, not once it is on disk: see
    /// [`wait_written`](Self::wait_written) and [`wait_synced`](Self::wait_synced).
    pub async fn append(&self, batch: BytesMut, info: &BatchInfo) -> Result<AppendInfo, StorageError> {
        self.append_as(batch, info, true).await
    }

    /// Appends a batch a leader stored, keeping its offsets: a follower's
    /// copy is byte for byte the leader's. The batch must start at this
    /// log's next offset.
    pub async fn append_replica(&self, batch: BytesMut, info: &BatchInfo) -> Result<AppendInfo, StorageError> {
        let next = self.next_offset();
        if info.base_offset != next {
            return Err(StorageError::OffsetOutOfRange { offset: info.base_offset, start: self.log_start_offset(), end: next });
        }
        self.append_as(batch, info, false).await
    }

    async fn append_as(&self, batch: BytesMut, info: &BatchInfo, assign: bool) -> Result<AppendInfo, StorageError> {
        debug_assert_eq!(record::validate(&batch).map(|i| i.crc), Ok(info.crc), "only validated batches are appended");
        let len = batch.len();
        enum Step<W> {
            Roll,
            WaitRoll(W),
            WaitWritten(i64),
        }
        loop {
            let step = {
                let mut st = self.inner.st.borrow_mut();
                st.check_writable()?;
                if len + st.alignment as usize > st.config.write_buffer_bytes {
                    return Err(StorageError::BatchTooLarge(len));
                }
                if st.rolling {
                    // Created before the borrow ends, so the roll's notify
                    // cannot slip in between.
                    Step::WaitRoll(self.inner.rolled.listen())
                } else if (st.appended_bytes - st.written_bytes) as usize + len > st.config.unwritten_max_bytes {
                    Step::WaitWritten(st.next_offset - 1)
                } else if st.needs_roll(len) {
                    st.rolling = true;
                    Step::Roll
                } else if !assign && info.base_offset != st.next_offset {
                    // A roll or a wait let another append in first.
                    return Err(StorageError::OffsetOutOfRange { offset: info.base_offset, start: st.log_start(), end: st.next_offset });
                } else {
                    return Ok(st.append_in_memory(batch, info, assign));
                }
            };
            match step {
                Step::WaitRoll(rolled) => rolled.await,
                Step::WaitWritten(target) => self.wait_written(target).await?,
                Step::Roll => {
                    let r = self.roll().await;
                    self.inner.st.borrow_mut().rolling = false;
                    self.inner.rolled.notify();
                    r?;
                }
            }
        }
    }

    /// Opens a sealed segment's file for reading (it must already exist).
    async fn open_sealed(&self, base: i64) -> Result<Rc<DirectFile>, StorageError> {
        let path = segment::log_path(&self.inner.st.borrow().dir, base);
        let f = Rc::new(DirectFile::open_existing(&path).await?);
        let mut st = self.inner.st.borrow_mut();
        match st.segments.get_mut(&base) {
            Some(s) => Ok(s.file.get_or_insert(f).clone()),
            None => Err(StorageError::OffsetOutOfRange { offset: base, start: st.log_start(), end: st.next_offset }),
        }
    }

    /// Resolves once every offset up to and including `offset` is written:
    /// its direct write completed, so it survives a crash of the process.
    pub async fn wait_written(&self, offset: i64) -> Result<(), StorageError> {
        self.wait(offset, false).await
    }

    /// Resolves once every offset up to and including `offset` is synced:
    /// an fdatasync after its write completed, so it survives a crash of
    /// the host.
    pub async fn wait_synced(&self, offset: i64) -> Result<(), StorageError> {
        self.wait(offset, true).await
    }

    /// [`wait_synced`](Self::wait_synced) when `synced`, else
    /// [`wait_written`](Self::wait_written).
    pub async fn wait(&self, offset: i64, synced: bool) -> Result<(), StorageError> {
        let rx = {
            let mut st = self.inner.st.borrow_mut();
            if let Some(f) = &st.failed {
                return Err(StorageError::Failed(f.clone()));
            }
            let mark = if synced { st.synced_offset } else { st.written_offset };
            if mark > offset {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            if synced {
                st.sync_waiters.push((offset, tx));
                let _ = st.sync_kick.try_send(());
            } else {
                st.write_waiters.push((offset, tx));
            }
            let _ = st.kick.try_send(());
            rx
        };
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageError::Failed(e)),
            Err(_) => Err(StorageError::Closed),
        }
    }

    /// Writes and syncs everything appended so far. Returns the synced
    /// offset.
    pub async fn flush(&self) -> Result<i64, StorageError> {
        let last = self.next_offset() - 1;
        self.wait_synced(last).await?;
        Ok(self.inner.st.borrow().synced_offset)
    }

    /// Handles a completed write: a sealed segment is synced, trimmed and
    /// indexed; then the written watermark moves and its waiters wake.
    async fn complete_write(&self, w: PendingWrite) -> Result<(), StorageError> {
        if w.seals {
            w.file.sync().await?;
            let end = self.inner.st.borrow().segments.get(&w.seg_base).map(|s| s.size);
            if let Some(end) = end {
                w.file.truncate(end).await?;
                w.file.sync().await?;
                let ix = {
                    let st = self.inner.st.borrow();
                    st.segments.get(&w.seg_base).map(|s| (s.index.encode(s.size, s.next_offset, s.max_timestamp), st.dir.clone()))
                };
                if let Some((bytes, dir)) = ix {
                    file::write_atomic(&segment::index_path(&dir, w.seg_base), &bytes).await?;
                    remove_file_if_there(&segment::checkpoint_path(&dir, w.seg_base));
                }
            }
        }
        let mut st = self.inner.st.borrow_mut();
        // A write that completes no whole batch leaves the watermark where
        // the writes before it (completed first: issue order) put it.
        if let Some(e) = w.batch_end {
            debug_assert!(e.next_offset >= st.written_offset, "completions are taken in issue order");
            st.written_offset = e.next_offset;
            st.written_batch_end = (w.seg_base, e);
            st.check_watermarks();
        }
        if let Some(seg) = st.segments.get_mut(&w.seg_base) {
            seg.written_size = seg.written_size.max(w.written_end.min(seg.size));
            if w.seals {
                // Sealed: its file reopens on demand, within open_segments_max.
                seg.file = None;
            }
        }
        st.written_bytes = st.written_bytes.max(w.end_bytes);
        let written = st.written_offset;
        let share = self.inner.memory.cache_share();
        st.cache.evict(written, share);
        State::wake(&mut st.write_waiters, written);
        if !st.sync_waiters.is_empty() {
            let _ = st.sync_kick.try_send(());
        }
        drop(st);
        if w.batch_end.is_some() {
            self.inner.written.notify();
        }
        Ok(())
    }

    /// Starts a new active segment at the current end of the log.
    async fn roll(&self) -> Result<(), StorageError> {
        let _p = self.inner.io_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let (dir, base) = {
            let st = self.inner.st.borrow();
            (st.dir.clone(), st.next_offset)
        };
        let f = Rc::new(DirectFile::open(&segment::log_path(&dir, base)).await?);
        file::sync_dir(&dir).await?;
        let mut st = self.inner.st.borrow_mut();
        st.seal_wbuf(Seal::Segment);
        st.wbuf = WriteBuf { buf: rest_buffer(st.alignment), file_pos: 0, len: 0, has_new: false, batch_ends: VecDeque::new() };
        st.segments.insert(base, Segment::empty(base, f));
        let _ = st.kick.try_send(());
        tracing::debug!(dir = %dir.display(), base, "rolled segment");
        Ok(())
    }

    /// Whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (the first batch always comes whole).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadOutput, StorageError> {
        self.read_below(offset, max_bytes, i64::MAX).await
    }

    /// [`read`](Self::read), but only batches that end at or below
    /// `limit` (a replicated partition's high watermark): nothing past it
    /// is returned, and a read at a batch that crosses it returns nothing.
    pub async fn read_below(&self, offset: i64, max_bytes: usize, limit: i64) -> Result<ReadOutput, StorageError> {
        let mut out = self.read_all(offset, max_bytes).await?;
        if limit < out.high_watermark {
            let mut keep = 0;
            let mut bytes = 0;
            for c in &out.chunks {
                match record::peek_header(c) {
                    Some((base, count)) if base + i64::from(count) <= limit => {
                        keep += 1;
                        bytes += c.len();
                    }
                    _ => break,
                }
            }
            out.chunks.truncate(keep);
            out.bytes = bytes;
        }
        Ok(out)
    }

    async fn read_all(&self, offset: i64, max_bytes: usize) -> Result<ReadOutput, StorageError> {
        let found = {
            let st = self.inner.st.borrow();
            let start = st.log_start();
            let mut out = ReadOutput { log_start_offset: start, high_watermark: st.next_offset, ..Default::default() };
            if offset < start || offset > st.next_offset {
                return Err(StorageError::OffsetOutOfRange { offset, start, end: st.next_offset });
            }
            if offset == st.next_offset {
                return Ok(out);
            }
            let mut mem = Vec::new();
            if let Some(n) = st.cache.read(offset, max_bytes, &mut mem) {
                out.bytes = n;
                out.chunks = mem.into_iter().map(Chunk::Mem).collect();
                return Ok(out);
            }
            let (_, seg) = st.segments.range(..=offset).next_back().expect("offset >= log start");
            let pos = seg.index.lookup_offset((offset - seg.base_offset) as u32).map_or(0, |e| u64::from(e.pos));
            (seg.base_offset, seg.file.clone(), pos, seg.written_size, st.config.read_ahead_bytes)
        };
        let (base, file, mut pos, end_pos, read_ahead) = found;
        let file = match file {
            Some(f) => f,
            None => self.open_sealed(base).await?,
        };
        self.inner.st.borrow_mut().touch(base);
        let mut want = max_bytes.max(read_ahead);
        let mut out = ReadOutput::default();
        loop {
            let len = want.min((end_pos - pos) as usize);
            if len == 0 {
                break;
            }
            let buf = file.read_at(pos, len).await?;
            let mut consumed = 0usize;
            let mut grow_to = None;
            for item in record::batches(&buf) {
                match item {
                    Ok((start, info)) => {
                        consumed = start + info.batch_len as usize;
                        if info.next_offset() <= offset {
                            continue;
                        }
                        if out.chunks.is_empty() && info.base_offset > offset {
                            return Err(corrupt(&file, pos + start as u64, format!("expected offset {offset}, found batch at {}", info.base_offset)));
                        }
                        if !out.chunks.is_empty() && out.bytes + info.batch_len as usize > max_bytes {
                            break;
                        }
                        let slice = ReadBuf::slice(&buf, start, info.batch_len as usize).expect("walked inside the buffer");
                        out.bytes += slice.len();
                        out.chunks.push(Chunk::Disk(slice));
                    }
                    Err(record::RecordError::Truncated { needed, .. }) => {
                        if out.chunks.is_empty() {
                            grow_to = Some(needed);
                        }
                        break;
                    }
                    Err(e) => {
                        if out.chunks.is_empty() {
                            return Err(corrupt(&file, pos + consumed as u64, e.to_string()));
                        }
                        break;
                    }
                }
            }
            if !out.chunks.is_empty() {
                break;
            }
            pos += consumed as u64;
            if let Some(n) = grow_to {
                want = n.max(want);
            }
        }
        let st = self.inner.st.borrow();
        out.log_start_offset = st.log_start();
        out.high_watermark = st.next_offset;
        Ok(out)
    }

    /// The first offset whose record timestamp is at or after `ts_ms`, with
    /// that timestamp; `None` if every record is older.
    pub async fn offset_for_timestamp(&self, ts_ms: i64) -> Result<Option<(i64, i64)>, StorageError> {
        let mut offset = {
            let st = self.inner.st.borrow();
            let Some(seg) = st.segments.values().find(|s| s.max_timestamp >= ts_ms) else {
                return Ok(None);
            };
            seg.base_offset + seg.index.lookup_time(ts_ms).map_or(0, |e| i64::from(e.rel_offset))
        };
        loop {
            let out = self.read(offset, 1 << 20).await?;
            if out.chunks.is_empty() {
                return Ok(None);
            }
            for chunk in &out.chunks {
                for item in record::batches(chunk) {
                    let (start, info) = item.map_err(|e| StorageError::Corrupt { file: "cache".into(), pos: 0, reason: e.to_string() })?;
                    if info.max_timestamp >= ts_ms {
                        let corrupt = |e: record::RecordError| StorageError::Corrupt { file: "read".into(), pos: 0, reason: e.to_string() };
                        let inflated = match info.codec() {
                            0 => None,
                            _ => Some(record::inflate(&chunk[start..], &info).map_err(corrupt)?),
                        };
                        let it = record::RecordIter::new(inflated.as_deref().unwrap_or(&chunk[start..])).map_err(corrupt)?;
                        for r in it {
                            let r = r.map_err(|e| StorageError::Corrupt { file: "read".into(), pos: 0, reason: e.to_string() })?;
                            if r.timestamp_ms >= ts_ms && r.offset >= offset {
                                return Ok(Some((r.offset, r.timestamp_ms)));
                            }
                        }
                    }
                    offset = info.next_offset();
                }
            }
        }
    }

    /// Deletes whole segments (never the active one) that are past the
    /// retention limits. Returns how many were deleted.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<usize, StorageError> {
        let _p = self.inner.io_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let (dir, victims) = {
            let mut st = self.inner.st.borrow_mut();
            let mut total: u64 = st.segments.values().map(|s| s.size).sum();
            let max_bytes = st.config.retention_max_bytes;
            let max_age = st.config.retention_max_age_ms;
            let active = st.active().base_offset;
            let mut victims = Vec::new();
            for s in st.segments.values() {
                if s.base_offset == active {
                    break;
                }
                let by_size = max_bytes.is_some_and(|m| total > m);
                let by_age = max_age.is_some_and(|m| s.max_timestamp < now_ms.saturating_sub(m as i64));
                if !(by_size || by_age) {
                    break;
                }
                total -= s.size;
                victims.push(s.base_offset);
            }
            for b in &victims {
                st.segments.remove(b);
            }
            (st.dir.clone(), victims)
        };
        for &b in &victims {
            remove_segment_files(&dir, b);
            tracing::info!(dir = %dir.display(), base = b, "retention deleted segment");
        }
        Ok(victims.len())
    }

    /// Writes and syncs everything, stops the writer, then leaves the files
    /// so the next open trusts their indexes.
    pub async fn close(&self) -> Result<(), StorageError> {
        let _p = self.inner.io_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        if self.inner.st.borrow().failed.is_some() {
            self.abandon().await;
            return Ok(());
        }
        self.flush().await?;
        let (file, dir, base, bytes, size) = {
            let mut st = self.inner.st.borrow_mut();
            st.closed = true;
            let _ = st.kick.try_send(());
            let _ = st.sync_kick.try_send(());
            let a = st.active();
            (
                a.file.clone().expect("the active segment's file is open"),
                st.dir.clone(),
                a.base_offset,
                a.index.encode(a.size, a.next_offset, a.max_timestamp),
                a.size,
            )
        };
        file.truncate(size).await?;
        file.sync().await?;
        file::write_atomic(&segment::index_path(&dir, base), &bytes).await?;
        Ok(())
    }

    /// A failed log's close: nothing more is written (what is on disk past
    /// `written_offset` is unknown, so no index describes it); returns once
    /// the writes still in flight completed, so the files may be cut.
    async fn abandon(&self) {
        {
            let mut st = self.inner.st.borrow_mut();
            st.closed = true;
            let _ = st.kick.try_send(());
            let _ = st.sync_kick.try_send(());
        }
        while self.inner.writer_running.get() {
            let stopped = self.inner.writer_stopped.listen();
            if !self.inner.writer_running.get() {
                break;
            }
            stopped.await;
        }
    }

    pub fn next_offset(&self) -> i64 {
        self.inner.st.borrow().next_offset
    }

    /// Everything below is written (its direct write completed): what
    /// readers may see, since a failed write cuts the log back to it.
    pub fn written_offset(&self) -> i64 {
        self.inner.st.borrow().written_offset
    }

    /// Whether a write or sync failed: the log takes no more writes until
    /// it is closed and opened again (see `Partition::recover_from`).
    pub fn failed(&self) -> bool {
        self.inner.st.borrow().failed.is_some()
    }

    /// Resolves at the next move of the written watermark (or failure).
    pub fn written_moved(&self) -> impl std::future::Future<Output = ()> + '_ {
        self.inner.written.listen()
    }

    /// Cuts the log in `dir`, which must be closed, so that it ends before
    /// `offset`, at the start of the batch that holds it: a follower drops
    /// a tail its new leader does not have. Whole segments from `offset` on
    /// go; the segment that holds it is cut and loses its index and
    /// checkpoint, so the next open scans it. A log cut below its start is
    /// emptied and starts again at `offset`. Returns the new end.
    pub async fn cut(dir: &Path, offset: i64) -> Result<i64, StorageError> {
        let mut bases: Vec<i64> =
            std::fs::read_dir(dir)?.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(segment::parse_log_name)).collect();
        bases.sort_unstable();
        for &b in bases.iter().filter(|&&b| b >= offset) {
            remove_segment_files(dir, b);
        }
        let Some(&last) = bases.iter().rev().find(|&&b| b < offset) else {
            DirectFile::open(&segment::log_path(dir, offset)).await?;
            file::sync_dir(dir).await?;
            return Ok(offset);
        };
        let path = segment::log_path(dir, last);
        let f = DirectFile::open_existing(&path).await?;
        let size = f.size().await?;
        // Start from the clean close's index entry at or below `offset`.
        let (mut pos, mut next) = match load_index(&segment::index_path(dir, last), size, last).await {
            Some(ix) => ix
                .index
                .lookup_offset((offset - last).min(i64::from(u32::MAX)) as u32)
                .map_or((0, last), |e| (u64::from(e.pos), last + i64::from(e.rel_offset))),
            None => (0, last),
        };
        for p in [segment::index_path(dir, last), segment::checkpoint_path(dir, last)] {
            remove_file_if_there(&p);
        }
        while pos < size {
            let h = f.read_at(pos, record::HEADER_BYTES).await?;
            let (Ok(len), Some((base, count))) = (record::peek_len(&h), record::peek_header(&h)) else { break };
            let end = base + i64::from(count);
            if base != next || end > offset {
                break;
            }
            pos += len as u64;
            next = end;
        }
        f.truncate(pos).await?;
        f.sync().await?;
        file::sync_dir(dir).await?;
        Ok(next)
    }

    /// Everything below is synced.
    pub fn synced_offset(&self) -> i64 {
        self.inner.st.borrow().synced_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.st.borrow().log_start()
    }

    pub fn stats(&self) -> LogStats {
        let st = self.inner.st.borrow();
        LogStats {
            log_start_offset: st.log_start(),
            next_offset: st.next_offset,
            written_offset: st.written_offset,
            synced_offset: st.synced_offset,
            checkpointed_offset: st.checkpointed.0,
            recovery_scanned_bytes: st.recovery_scanned_bytes,
            segments: st.segments.len(),
            bytes: st.segments.values().map(|s| s.size).sum(),
            cache_bytes: st.cache.bytes(),
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.memory.log_dropped();
    }
}

/// The index file of a sealed segment, if it is whole and matches the file.
async fn load_index(path: &Path, file_size: u64, base: i64) -> Option<super::IndexFile> {
    match file::read_whole(path, 1 << 30).await {
        Ok(Some(bytes)) => match SegmentIndex::decode(&bytes) {
            Ok(ix) if ix.segment_bytes == file_size && ix.next_offset >= base => Some(ix),
            Ok(_) => {
                tracing::warn!(file = %path.display(), "index does not match its segment; rebuilding");
                None
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "rebuilding index");
                None
            }
        },
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "unreadable index; rebuilding");
            None
        }
    }
}

fn corrupt(file: &DirectFile, pos: u64, reason: String) -> StorageError {
    StorageError::Corrupt { file: file.path().display().to_string(), pos, reason }
}

fn remove_segment_files(dir: &Path, base: i64) {
    for p in [segment::log_path(dir, base), segment::index_path(dir, base), segment::checkpoint_path(dir, base)] {
        remove_file_if_there(&p);
    }
}

fn remove_file_if_there(p: &Path) {
    if let Err(e) = std::fs::remove_file(p) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(file = %p.display(), error = %e, "could not remove");
        }
    }
}

/// The best prefix of the last segment a restart may trust without
/// scanning: its recovery checkpoint, or the index a clean close wrote,
/// whichever covers more. Either describes bytes that were synced; one
/// that is damaged or claims more than the file holds is ignored (a full
/// scan follows).
async fn load_checkpoint(dir: &Path, base: i64, file_size: u64) -> Option<super::IndexFile> {
    let mut best: Option<super::IndexFile> = None;
    for path in [segment::index_path(dir, base), segment::checkpoint_path(dir, base)] {
        let Ok(Some(bytes)) = file::read_whole(&path, 1 << 30).await else { continue };
        match SegmentIndex::decode(&bytes) {
            Ok(ix) if ix.segment_bytes <= file_size && ix.next_offset >= base => {
                if best.as_ref().is_none_or(|b| ix.segment_bytes > b.segment_bytes) {
                    best = Some(ix);
                }
            }
            Ok(_) => tracing::warn!(file = %path.display(), "checkpoint does not match its segment; scanning the segment"),
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "damaged checkpoint; scanning the segment"),
        }
    }
    best
}

/// The writer of one log: woken by appends and waiters, it seals what was
/// appended and keeps direct writes in flight (several whole-block writes,
/// or one that ends inside a block), taking completions in issue order.
/// It seals the partial tail only when nothing is in flight, so under load
/// data gathers into full buffers and at rest it goes out at once.
async fn writer(log: Weak<Inner>, kicked: rt::LocalReceiver<()>) {
    type Inflight = std::pin::Pin<Box<dyn std::future::Future<Output = (PendingWrite, Result<(), StorageError>)>>>;
    let mut inflight: futures::stream::FuturesOrdered<Inflight> = futures::stream::FuturesOrdered::new();
    let mut last_partial = false;
    loop {
        let Some(inner) = log.upgrade() else { return };
        let log_ref = PartitionLog { inner };
        // Issue what may go now.
        loop {
            if inflight.len() >= MAX_INFLIGHT_WRITES || (last_partial && !inflight.is_empty()) {
                break;
            }
            let next = {
                let mut st = log_ref.inner.st.borrow_mut();
                if st.failed.is_some() {
                    None
                } else {
                    if st.pending.is_empty() && inflight.is_empty() {
                        st.seal_wbuf(Seal::Everything);
                    }
                    st.pending.pop_front()
                }
            };
            let Some(mut w) = next else { break };
            last_partial = w.partial;
            let write = w.write.take();
            let file = w.file.clone();
            inflight.push_back(Box::pin(async move {
                let r = match write {
                    Some((buf, pos)) => file.write_at(buf, pos).await.map_err(StorageError::from),
                    None => Ok(()),
                };
                (w, r)
            }));
        }
        if inflight.is_empty() {
            let closed = log_ref.inner.st.borrow().closed;
            if closed {
                log_ref.inner.writer_running.set(false);
                log_ref.inner.writer_stopped.notify();
                return;
            }
            drop(log_ref);
            if kicked.recv().await.is_none() {
                return;
            }
            continue;
        }
        // Wait for the oldest write, or for more to issue beside it.
        let done = {
            let next = std::pin::pin!(inflight.next());
            let kick = std::pin::pin!(kicked.recv());
            match futures::future::select(next, kick).await {
                futures::future::Either::Left((done, _)) => done,
                futures::future::Either::Right(_) => None,
            }
        };
        if let Some((w, r)) = done {
            // After a failure nothing more counts as written: a later write
            // that completed may sit past one that did not.
            let failed = log_ref.inner.st.borrow().failed.is_some();
            let r = match r {
                Ok(()) if failed => Ok(()),
                Ok(()) => log_ref.complete_write(w).await,
                Err(e) => Err(e),
            };
            if let Err(e) = r {
                log_ref.inner.st.borrow_mut().fail(&e);
                log_ref.inner.written.notify();
            }
        }
    }
}

/// The syncer of one log: while anyone waits for a sync, it runs one
/// fdatasync of the active segment covering everything written when it
/// started (a sealed segment was synced when it was sealed), beside the
/// writes that go on. Every `checkpoint_interval_ms` it also syncs what was
/// written without anyone waiting, checkpoints the synced prefix of the
/// active segment, and trims the log's cache to its share of the shard's.
async fn syncer(log: Weak<Inner>, kicked: rt::LocalReceiver<()>) {
    let interval = match log.upgrade() {
        Some(inner) => Duration::from_millis(inner.st.borrow().config.checkpoint_interval_ms),
        None => return,
    };
    loop {
        if let Some(None) = rt::timeout(interval, kicked.recv()).await {
            return; // the log is gone
        }
        // A quiet log gives back what it cached beyond its current share of
        // the shard's budget (which shrinks as other logs open).
        if let Some(inner) = log.upgrade() {
            let share = inner.memory.cache_share();
            let mut st = inner.st.borrow_mut();
            let written = st.written_offset;
            st.cache.evict(written, share);
        }
        loop {
            let Some(inner) = log.upgrade() else { return };
            let log = PartitionLog { inner };
            let is_due = |st: &State| {
                st.checkpointed.2.elapsed() >= interval && st.written_offset > st.checkpointed.0 && st.written_bytes - st.checkpointed.1 >= CHECKPOINT_MIN_BYTES
            };
            let waited_for = |st: &State| !st.sync_waiters.is_empty() && st.written_offset > st.synced_offset;
            // A checkpoint nobody waits for takes one of the shard's slots.
            let memory = log.inner.memory.clone();
            let slot_needed = {
                let st = log.inner.st.borrow();
                is_due(&st) && !waited_for(&st)
            };
            let _slot = if slot_needed { memory.checkpoints.acquire_permit(1).await.ok() } else { None };
            let job = {
                let st = log.inner.st.borrow();
                let due = is_due(&st);
                if st.failed.is_some() || st.closed || !(waited_for(&st) || due) {
                    None
                } else {
                    let active = st.active();
                    let file = active.file.clone().expect("the active segment's file is open");
                    let (seg, end) = st.written_batch_end;
                    let checkpoint = (due && seg == active.base_offset)
                        .then(|| (seg, end, active.index.encode(end.pos, end.next_offset, end.max_timestamp), st.dir.clone()));
                    Some((st.written_offset, st.written_bytes, file, due, checkpoint))
                }
            };
            let Some((target, target_bytes, file, due, checkpoint)) = job else { break };
            let r = if target > log.inner.st.borrow().synced_offset { file.sync().await } else { Ok(()) };
            if let Err(e) = r {
                log.inner.st.borrow_mut().fail(&StorageError::from(e));
                break;
            }
            {
                let mut st = log.inner.st.borrow_mut();
                debug_assert!(target <= st.written_offset, "a sync covers only what was written");
                st.synced_offset = st.synced_offset.max(target);
                st.check_watermarks();
                let synced = st.synced_offset;
                State::wake(&mut st.sync_waiters, synced);
            }
            if due {
                let (mut done, mut done_bytes) = {
                    let st = log.inner.st.borrow();
                    (st.checkpointed.0, st.checkpointed.1)
                };
                if let Some((base, end, bytes, dir)) = checkpoint {
                    // The prefix is synced: the sync above covered every write
                    // that completed before it started, this batch's included.
                    match file::write_atomic(&segment::checkpoint_path(&dir, base), &bytes).await {
                        Ok(()) => (done, done_bytes) = (end.next_offset, target_bytes),
                        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "could not write a recovery checkpoint; a restart will scan more"),
                    }
                }
                // Tried, or the segment just rolled (its seal wrote its index):
                // the next try is an interval away.
                log.inner.st.borrow_mut().checkpointed = (done, done_bytes, Instant::now());
            }
        }
    }
}
