//! A partition log: an ordered set of segments, the active one written
//! through aligned buffers, a hot-tail cache, and group commit.
//!
//! Invariants:
//! - offsets are assigned here, contiguously, in append order;
//! - `flushed_offset <= next_offset`; every offset below `flushed_offset`
//!   is on disk and synced, every batch at or above it is in the cache;
//! - direct writes are issued one at a time in file order, because the
//!   partial last block of one write is rewritten by the next;
//! - only one of flush, roll, retention and close does I/O at a time
//!   (`io_lock`); appends never wait for the disk unless the unflushed
//!   bytes pass `unflushed_max_bytes`.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::channel::oneshot;

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

/// A snapshot of a log's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogStats {
    pub log_start_offset: i64,
    pub next_offset: i64,
    pub flushed_offset: i64,
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
    /// Whether bytes were appended since the buffer was started (the seeded
    /// partial block alone is already on disk).
    has_new: bool,
}

/// A sealed buffer waiting to be written.
struct PendingWrite {
    seg_base: i64,
    file: Rc<DirectFile>,
    write: Option<(IoBuf, u64)>,
    end_pos: u64,
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
    flushed_offset: i64,
    appended_bytes: u64,
    flushed_bytes: u64,
    cache: TailCache,
    wbuf: WriteBuf,
    pending: VecDeque<PendingWrite>,
    waiters: Vec<(i64, oneshot::Sender<Result<(), String>>)>,
    failed: Option<String>,
    closed: bool,
    rolling: bool,
    read_tick: u64,
    kick: rt::LocalSender<()>,
}

struct Inner {
    st: RefCell<State>,
    io_lock: rt::Semaphore,
    /// Notified when a roll ends; appends wait on it while one runs.
    rolled: rt::Event,
}

/// One partition's log. Cheap to clone; all clones share the log.
#[derive(Clone)]
pub struct PartitionLog {
    inner: Rc<Inner>,
}

impl State {
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
    fn append_in_memory(&mut self, mut batch: BytesMut, info: &BatchInfo) -> AppendInfo {
        let len = batch.len();
        if self.wbuf.len + len > self.wbuf.buf.len() {
            self.seal_wbuf(false);
        }
        let base = self.next_offset;
        record::set_base_offset(&mut batch, base);
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
        self.cache.push(base, next, bytes);
        self.next_offset = next;
        self.appended_bytes += len as u64;
        let _ = self.kick.try_send(());
        AppendInfo { base_offset: base, last_offset: next - 1 }
    }

    /// Moves the write buffer to the pending queue and starts a new one that
    /// holds the partial last block. With `seals`, the new buffer is left
    /// for the caller to replace.
    fn seal_wbuf(&mut self, seals: bool) {
        if !self.wbuf.has_new && !seals {
            return;
        }
        let a = self.alignment as usize;
        let active = self.active();
        let file = active.file.clone().expect("the active segment's file is open");
        let (seg_base, end_pos) = (active.base_offset, self.wbuf.file_pos + self.wbuf.len as u64);
        let tail_start = (self.wbuf.len / a) * a;
        let mut fresh = file::alloc(self.config.write_buffer_bytes);
        fresh.as_bytes_mut()[..self.wbuf.len - tail_start].copy_from_slice(&self.wbuf.buf.as_bytes()[tail_start..self.wbuf.len]);
        let new = WriteBuf { buf: fresh, file_pos: self.wbuf.file_pos + tail_start as u64, len: self.wbuf.len - tail_start, has_new: false };
        let mut old = std::mem::replace(&mut self.wbuf, new);
        let write = if old.has_new {
            let padded = old.len.div_ceil(a) * a;
            old.buf.as_bytes_mut()[old.len..padded].fill(0);
            old.buf.trim_to_size(padded);
            Some((old.buf, old.file_pos))
        } else {
            None
        };
        self.pending.push_back(PendingWrite { seg_base, file, write, end_pos, seals });
    }
}

impl PartitionLog {
    /// Opens the log in `dir` (creating it if needed), recovering the last
    /// segment batch by batch. Must run on the shard that will own the log.
    pub async fn open(dir: &Path, config: LogConfig) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)?;
        let mut bases: Vec<i64> =
            std::fs::read_dir(dir)?.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str().and_then(segment::parse_log_name)).collect();
        bases.sort_unstable();
        let mut segments = BTreeMap::new();
        let mut expected_base: Option<i64> = None;
        let mut broken = false;
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
            // The last segment is always checked batch by batch: it is the
            // one a crash can tear. Sealed ones trust a valid index file.
            let trusted = if last {
                let _ = std::fs::remove_file(&ix_path);
                None
            } else {
                load_index(&ix_path, file_size, base).await
            };
            // Sealed segments with a valid index stay closed until read.
            let mut file = None;
            let (index, size, next_offset, max_ts) = match trusted {
                Some(ix) => (ix.index, ix.segment_bytes, ix.next_offset, ix.max_timestamp),
                None => {
                    let f = DirectFile::open(&path).await?;
                    let s = segment::scan(&f, base, file_size, config.index_interval_bytes).await?;
                    if let Some(why) = &s.stopped_by {
                        tracing::warn!(file = %path.display(), valid_bytes = s.valid_bytes, dropped_bytes = file_size - s.valid_bytes, reason = %why, "truncating segment at the first bad batch");
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
                Segment { base_offset: base, file, size, durable_size: size, next_offset, max_timestamp: max_ts, index, created: Instant::now(), last_read: 0 },
            );
        }
        if segments.is_empty() {
            let base = expected_base.unwrap_or(0);
            let path = segment::log_path(dir, base);
            let f = DirectFile::open(&path).await?;
            file::sync_dir(dir).await?;
            segments.insert(base, Segment::empty(base, Rc::new(f)));
        }
        let (alignment, wbuf, next_offset) = {
            let active = segments.values().next_back().expect("inserted above");
            let active_file = active.file.as_ref().expect("the last segment was opened");
            let a = active_file.alignment();
            let tail_pos = active.size / a * a;
            let mut buf = file::alloc(config.write_buffer_bytes);
            let tail_len = (active.size - tail_pos) as usize;
            if tail_len > 0 {
                let r = active_file.read_at(tail_pos, tail_len).await?;
                buf.as_bytes_mut()[..tail_len].copy_from_slice(&r);
            }
            (a, WriteBuf { buf, file_pos: tail_pos, len: tail_len, has_new: false }, active.next_offset)
        };
        let (kick, kicked) = rt::local_bounded(1);
        let st = State {
            dir: dir.to_path_buf(),
            cache: TailCache::new(config.cache_max_bytes),
            config,
            alignment,
            segments,
            next_offset,
            flushed_offset: next_offset,
            appended_bytes: 0,
            flushed_bytes: 0,
            wbuf,
            pending: VecDeque::new(),
            waiters: Vec::new(),
            failed: None,
            closed: false,
            rolling: false,
            read_tick: 0,
            kick,
        };
        let log = PartitionLog { inner: Rc::new(Inner { st: RefCell::new(st), io_lock: rt::Semaphore::new(1), rolled: rt::Event::default() }) };
        rt::spawn_background(flusher(Rc::downgrade(&log.inner), kicked));
        Ok(log)
    }

    /// Appends one validated batch: assigns its offsets by patching its base
    /// offset in place, copies it into the write buffer and the cache holds
    /// it. Returns once it is readable, not once it is durable: see
    /// [`wait_flushed`](Self::wait_flushed).
    pub async fn append(&self, batch: BytesMut, info: &BatchInfo) -> Result<AppendInfo, StorageError> {
        debug_assert_eq!(record::validate(&batch).map(|i| i.crc), Ok(info.crc), "only validated batches are appended");
        let len = batch.len();
        enum Step<W> {
            Roll,
            WaitRoll(W),
            WaitFlush(i64),
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
                } else if (st.appended_bytes - st.flushed_bytes) as usize + len > st.config.unflushed_max_bytes {
                    Step::WaitFlush(st.next_offset - 1)
                } else if st.needs_roll(len) {
                    st.rolling = true;
                    Step::Roll
                } else {
                    return Ok(st.append_in_memory(batch, info));
                }
            };
            match step {
                Step::WaitRoll(rolled) => rolled.await,
                Step::WaitFlush(target) => self.wait_flushed(target).await?,
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

    /// Resolves once every offset up to and including `offset` is synced.
    pub async fn wait_flushed(&self, offset: i64) -> Result<(), StorageError> {
        let rx = {
            let mut st = self.inner.st.borrow_mut();
            if let Some(f) = &st.failed {
                return Err(StorageError::Failed(f.clone()));
            }
            if st.flushed_offset > offset {
                return Ok(());
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.push((offset, tx));
            let _ = st.kick.try_send(());
            rx
        };
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StorageError::Failed(e)),
            Err(_) => Err(StorageError::Closed),
        }
    }

    /// Writes and syncs everything appended so far (group commit: one sync
    /// covers every append since the last one). Returns the flushed offset.
    pub async fn flush(&self) -> Result<i64, StorageError> {
        let _p = self.inner.io_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        self.flush_locked().await
    }

    async fn flush_locked(&self) -> Result<i64, StorageError> {
        let (writes, target, target_bytes) = {
            let mut st = self.inner.st.borrow_mut();
            if let Some(f) = &st.failed {
                return Err(StorageError::Failed(f.clone()));
            }
            st.seal_wbuf(false);
            (std::mem::take(&mut st.pending), st.next_offset, st.appended_bytes)
        };
        if writes.is_empty() {
            return Ok(target);
        }
        match self.write_out(writes).await {
            Ok(()) => {
                let mut st = self.inner.st.borrow_mut();
                st.flushed_offset = target;
                st.flushed_bytes = target_bytes;
                st.cache.evict(target);
                let waiters = std::mem::take(&mut st.waiters);
                let (done, waiting): (Vec<_>, Vec<_>) = waiters.into_iter().partition(|(o, _)| *o < target);
                st.waiters = waiting;
                drop(st);
                for (_, tx) in done {
                    let _ = tx.send(Ok(()));
                }
                Ok(target)
            }
            Err(e) => {
                // The disk refused a write or a sync: what is on disk is now
                // unknown, so the log stops taking writes rather than
                // acknowledge what it may not have. A restart recovers.
                let msg = e.to_string();
                tracing::error!(dir = %self.inner.st.borrow().dir.display(), error = %msg, "log write failed; the log is now read-only");
                let mut st = self.inner.st.borrow_mut();
                st.failed = Some(msg.clone());
                let waiters = std::mem::take(&mut st.waiters);
                drop(st);
                for (_, tx) in waiters {
                    let _ = tx.send(Err(msg.clone()));
                }
                Err(e)
            }
        }
    }

    async fn write_out(&self, writes: VecDeque<PendingWrite>) -> Result<(), StorageError> {
        let mut to_sync: Vec<(i64, Rc<DirectFile>, u64)> = Vec::new();
        for w in writes {
            if let Some((buf, pos)) = w.write {
                w.file.write_at(buf, pos).await?;
            }
            if w.seals {
                w.file.sync().await?;
                w.file.truncate(w.end_pos).await?;
                w.file.sync().await?;
                let ix = {
                    let st = self.inner.st.borrow();
                    st.segments.get(&w.seg_base).map(|s| (s.index.encode(s.size, s.next_offset, s.max_timestamp), st.dir.clone()))
                };
                if let Some((bytes, dir)) = ix {
                    file::write_atomic(&segment::index_path(&dir, w.seg_base), &bytes).await?;
                }
                self.set_durable(w.seg_base, w.end_pos);
                // Sealed: its file reopens on demand, within open_segments_max.
                if let Some(seg) = self.inner.st.borrow_mut().segments.get_mut(&w.seg_base) {
                    seg.file = None;
                }
            } else {
                match to_sync.iter_mut().find(|(b, _, _)| *b == w.seg_base) {
                    Some(e) => e.2 = w.end_pos,
                    None => to_sync.push((w.seg_base, w.file, w.end_pos)),
                }
            }
        }
        for (base, f, end) in to_sync {
            f.sync().await?;
            self.set_durable(base, end);
        }
        Ok(())
    }

    fn set_durable(&self, base: i64, end: u64) {
        if let Some(s) = self.inner.st.borrow_mut().segments.get_mut(&base) {
            s.durable_size = s.durable_size.max(end);
        }
    }

    /// Starts a new active segment at the current end of the log.
    async fn roll(&self) -> Result<(), StorageError> {
        let _p = self.inner.io_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        let (dir, base, buf_bytes) = {
            let st = self.inner.st.borrow();
            (st.dir.clone(), st.next_offset, st.config.write_buffer_bytes)
        };
        let f = Rc::new(DirectFile::open(&segment::log_path(&dir, base)).await?);
        file::sync_dir(&dir).await?;
        let mut st = self.inner.st.borrow_mut();
        st.seal_wbuf(true);
        st.wbuf = WriteBuf { buf: file::alloc(buf_bytes), file_pos: 0, len: 0, has_new: false };
        st.segments.insert(base, Segment::empty(base, f));
        let _ = st.kick.try_send(());
        tracing::debug!(dir = %dir.display(), base, "rolled segment");
        Ok(())
    }

    /// Whole batches starting with the one that holds `offset`, up to
    /// `max_bytes` (the first batch always comes whole).
    pub async fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadOutput, StorageError> {
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
            (seg.base_offset, seg.file.clone(), pos, seg.durable_size, st.config.read_ahead_bytes)
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
                        let it = record::RecordIter::new(&chunk[start..]).map_err(|e| StorageError::Corrupt {
                            file: "read".into(),
                            pos: 0,
                            reason: e.to_string(),
                        })?;
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

    /// Flushes, then leaves the files so the next open trusts their indexes.
    pub async fn close(&self) -> Result<(), StorageError> {
        let _p = self.inner.io_lock.acquire_permit(1).await.map_err(|_| StorageError::Closed)?;
        self.flush_locked().await?;
        let (file, dir, base, bytes, size) = {
            let mut st = self.inner.st.borrow_mut();
            st.closed = true;
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

    pub fn next_offset(&self) -> i64 {
        self.inner.st.borrow().next_offset
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.st.borrow().log_start()
    }

    pub fn stats(&self) -> LogStats {
        let st = self.inner.st.borrow();
        LogStats {
            log_start_offset: st.log_start(),
            next_offset: st.next_offset,
            flushed_offset: st.flushed_offset,
            segments: st.segments.len(),
            bytes: st.segments.values().map(|s| s.size).sum(),
            cache_bytes: st.cache.bytes(),
        }
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
    for p in [segment::log_path(dir, base), segment::index_path(dir, base)] {
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(file = %p.display(), error = %e, "could not remove");
            }
        }
    }
}

/// The group-commit loop of one log: woken by appends and waiters, it
/// writes and syncs everything pending, then sleeps until the next kick.
async fn flusher(log: Weak<Inner>, kicked: rt::LocalReceiver<()>) {
    while kicked.recv().await.is_some() {
        let Some(inner) = log.upgrade() else { break };
        let log = PartitionLog { inner };
        let delay = log.inner.st.borrow().config.flush_delay_ms;
        if delay > 0 {
            rt::sleep(Duration::from_millis(delay)).await;
        }
        if log.inner.st.borrow().closed {
            break;
        }
        let _ = log.flush().await;
    }
}
