//! The partition log against real direct-I/O files in a temp dir.

use bytes::BytesMut;
use shardlog::record::{self, BatchBuilder, RecordIter};
use shardlog::rt::block_on;
use shardlog::storage::{LogConfig, PartitionLog, StorageError};
use std::path::Path;

/// A batch of `n` records whose values encode `tag` and the record index.
fn batch(tag: u64, n: u32, ts: i64) -> BytesMut {
    let mut b = BatchBuilder::new(128);
    for i in 0..n {
        b.push(ts + i64::from(i), Some(format!("k{tag}").as_bytes()), Some(format!("v{tag}-{i}").as_bytes()), &[]);
    }
    BytesMut::from(&b.finish()[..])
}

async fn append(log: &PartitionLog, b: BytesMut) -> (i64, i64) {
    let info = record::validate(&b).unwrap();
    let a = log.append(b, &info).await.unwrap();
    (a.base_offset, a.last_offset)
}

/// Reads every record from `from` to the end, following the log.
async fn read_all(log: &PartitionLog, from: i64) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut next = from;
    loop {
        let r = log.read(next, 64 * 1024).await.unwrap();
        if r.chunks.is_empty() {
            return out;
        }
        for c in &r.chunks {
            for rec in RecordIter::new(c).unwrap() {
                let rec = rec.unwrap();
                if rec.offset >= next {
                    out.push((rec.offset, rec.timestamp_ms, rec.value.unwrap().to_vec()));
                }
            }
            next = record::validate(c).unwrap().next_offset();
        }
    }
}

fn open_log_files(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .filter(|t| t.starts_with(dir) && t.extension().is_some_and(|e| e == "log"))
        .count()
}

fn small_config() -> LogConfig {
    LogConfig {
        open_segments_max: 2,
        segment_max_bytes: 4096,
        index_interval_bytes: 512,
        cache_max_bytes: 4096,
        write_buffer_bytes: 64 * 1024,
        unwritten_max_bytes: 128 * 1024,
        read_ahead_bytes: 4096,
        retention_max_age_ms: None,
        ..LogConfig::default()
    }
}

fn segment_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).filter(|n| n.ends_with(".log")).collect();
    v.sort();
    v
}

#[test]
fn append_reopen_read_by_offset_and_time() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let mut expected = Vec::new();
        for t in 0..200u64 {
            let (base, last) = append(&log, batch(t, 3, 1_000_000 + t as i64 * 10)).await;
            assert_eq!((base, last), (t as i64 * 3, t as i64 * 3 + 2));
            for i in 0..3 {
                expected.push((base + i, 1_000_000 + t as i64 * 10 + i, format!("v{t}-{i}").into_bytes()));
            }
        }
        assert_eq!(read_all(&log, 0).await, expected, "before any flush (from the cache and the disk)");
        log.flush().await.unwrap();
        assert!(log.stats().segments > 3, "4 KiB segments must have rolled: {:?}", log.stats());
        assert_eq!(read_all(&log, 0).await, expected);
        assert_eq!(read_all(&log, 301).await, expected[301..].to_vec(), "a read in the middle of a batch");
        let open = open_log_files(&path);
        assert!((1..=3).contains(&open), "{open} segment files open: the active one and at most 2 sealed");
        log.close().await.unwrap();
        drop(log);

        // Clean reopen: indexes are trusted.
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.next_offset(), 600);
        assert_eq!(read_all(&log, 0).await, expected);
        for (target, want) in [(0, 0), (1_000_000, 0), (1_000_012, 3 + 2), (1_000_015, 6), (1_001_992, 599), (1_001_990, 597), (1_001_993, -1)] {
            let got = log.offset_for_timestamp(target).await.unwrap().map_or(-1, |(o, _)| o);
            assert_eq!(got, want, "timestamp {target}");
        }
        let (base, _) = append(&log, batch(999, 1, 5)).await;
        assert_eq!(base, 600);
        log.flush().await.unwrap();
        drop(log);

        // Unclean reopen (no close): indexes are rebuilt by scanning.
        for f in std::fs::read_dir(&path).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "index") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        assert_eq!(log.next_offset(), 601);
        assert_eq!(read_all(&log, 0).await[..600], expected[..]);
        assert_eq!(log.offset_for_timestamp(1_000_015).await.unwrap().map(|x| x.0), Some(6));
        assert!(matches!(log.read(602, 100).await, Err(StorageError::OffsetOutOfRange { .. })));
    });
}

#[test]
fn acknowledged_only_after_sync_and_group_commit() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(&path, LogConfig::default()).await.unwrap();
        let mut lasts = Vec::new();
        for t in 0..50 {
            lasts.push(append(&log, batch(t, 2, 1)).await.1);
        }
        assert!(log.stats().synced_offset <= 100);
        log.wait_synced(*lasts.last().unwrap()).await.unwrap();
        assert_eq!(log.stats().synced_offset, 100);
        // Bytes on disk: the segment holds all 50 batches.
        drop(log);
        let log = PartitionLog::open(&path, LogConfig::default()).await.unwrap();
        assert_eq!(log.next_offset(), 100);
    });
}

#[test]
fn retention_deletes_oldest_whole_segments() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let cfg = LogConfig { retention_max_bytes: Some(20 * 1024), ..small_config() };
        let log = PartitionLog::open(&path, cfg).await.unwrap();
        for t in 0..400u64 {
            append(&log, batch(t, 5, t as i64)).await;
        }
        log.flush().await.unwrap();
        let before = segment_files(&path);
        let stats = log.stats();
        assert!(stats.bytes > 40 * 1024, "{stats:?}");
        let deleted = log.enforce_retention(0).await.unwrap();
        assert!(deleted > 0);
        let after = segment_files(&path);
        assert_eq!(after[..], before[deleted..], "the oldest segments go first");
        let stats = log.stats();
        assert!(stats.bytes <= 20 * 1024 && stats.bytes > 20 * 1024 - 4096, "{stats:?}");
        assert_eq!(stats.log_start_offset, after[0].trim_end_matches(".log").parse::<i64>().unwrap());
        assert!(matches!(log.read(0, 100).await, Err(StorageError::OffsetOutOfRange { .. })));
        let all = read_all(&log, stats.log_start_offset).await;
        assert_eq!(all.len() as i64, 2000 - stats.log_start_offset);

        // By age: every closed segment is older than the limit. The newest
        // timestamps are 399+4; the cut-off `now - age` is above them.
        drop(log);
        let cfg = LogConfig { retention_max_age_ms: Some(1000), ..small_config() };
        let log = PartitionLog::open(&path, cfg).await.unwrap();
        log.enforce_retention(10_000).await.unwrap();
        assert_eq!(log.stats().segments, 1, "only the active segment is left");
        assert_eq!(log.next_offset(), 2000);
    });
}

/// Cuts the last segment at every byte of its last batch: reopening must give
/// exactly the batches before it, and take new appends right after them.
#[test]
fn torn_tail_at_every_byte_recovers_the_intact_prefix() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    let (seg, prefix_len, full) = block_on({
        let path = path.clone();
        async move {
            let log = PartitionLog::open(&path, LogConfig::default()).await.unwrap();
            for t in 0..4 {
                append(&log, batch(t, 3, 7)).await;
            }
            log.flush().await.unwrap();
            let prefix = log.stats().bytes;
            append(&log, batch(4, 3, 8)).await;
            log.flush().await.unwrap();
            let end = log.stats().bytes as usize;
            let seg = path.join(&segment_files(&path)[0]);
            drop(log);
            let mut full = std::fs::read(&seg).unwrap();
            assert!(full[end..].iter().all(|&b| b == 0), "only padding after the last batch");
            full.truncate(end);
            (seg, prefix as usize, full)
        }
    });
    assert!(full.len() > prefix_len, "{} {}", full.len(), prefix_len);
    for cut in prefix_len..full.len() {
        std::fs::write(&seg, &full[..cut]).unwrap();
        let _ = std::fs::remove_file(seg.with_extension("index"));
        let path = path.clone();
        let seg = seg.clone();
        block_on(async move {
            let log = PartitionLog::open(&path, LogConfig::default()).await.unwrap();
            assert_eq!(log.next_offset(), 12, "cut at {cut}");
            assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, prefix_len, "torn bytes are truncated away");
            let (base, _) = append(&log, batch(9, 1, 9)).await;
            assert_eq!(base, 12);
            log.flush().await.unwrap();
            let all = read_all(&log, 0).await;
            assert_eq!(all.len(), 13);
            assert_eq!(all[12].2, b"v9-0");
        });
    }
}

/// Garbage after the last batch and a flipped byte inside it.
#[test]
fn garbage_and_corruption_in_the_tail_are_dropped() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(&path, LogConfig::default()).await.unwrap();
        for t in 0..3 {
            append(&log, batch(t, 2, 1)).await;
        }
        log.close().await.unwrap();
        drop(log);
        let seg = path.join(&segment_files(&path)[0]);
        let good = std::fs::read(&seg).unwrap();
        let mut garbage = good.clone();
        garbage.extend((0..5000u32).map(|i| (i * 7 + 3) as u8));
        std::fs::write(&seg, &garbage).unwrap();
        let log = PartitionLog::open(&path, LogConfig::default()).await.unwrap();
        assert_eq!(log.next_offset(), 6);
        assert_eq!(std::fs::read(&seg).unwrap(), good);
        append(&log, batch(3, 2, 1)).await;
        log.close().await.unwrap();
        drop(log);

        // Flip one byte inside the last batch's records: its CRC fails, it
        // is dropped, and nothing before it is.
        let mut bytes = std::fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0x55;
        std::fs::write(&seg, &bytes).unwrap();
        let log = PartitionLog::open(&path, LogConfig::default()).await.unwrap();
        assert_eq!(log.next_offset(), 6);
        assert_eq!(read_all(&log, 0).await.len(), 6);
    });
}

/// Many appends in flight at once while segments roll under them: every
/// append completes, and offsets are unique and contiguous.
#[test]
fn concurrent_appends_across_rolls() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let log = PartitionLog::open(&path, small_config()).await.unwrap();
        let appends = (0..400u64).map(|t| {
            let log = log.clone();
            async move {
                let b = batch(t, 2, 1);
                let info = record::validate(&b).unwrap();
                let a = log.append(b, &info).await.unwrap();
                log.wait_synced(a.last_offset).await.unwrap();
                a.base_offset
            }
        });
        let mut bases = futures::future::join_all(appends).await;
        bases.sort_unstable();
        assert_eq!(bases, (0..400).map(|i| i * 2).collect::<Vec<i64>>());
        assert!(log.stats().segments > 5, "{:?}", log.stats());
        assert_eq!(read_all(&log, 0).await.len(), 800);
    });
}

/// What `wait_written` acknowledges is in the file: a log dropped without
/// closing (as a crash of the process leaves it) reopens with all of it.
/// Small write buffers and batches of many sizes, appended many at a time,
/// make whole-block writes in flight together, carried partial blocks and
/// padded tail writes all happen.
#[test]
fn written_data_survives_a_log_dropped_without_close() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let config = LogConfig { write_buffer_bytes: 64 * 1024, unwritten_max_bytes: 256 * 1024, cache_max_bytes: 0, ..LogConfig::default() };
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        let mut want = Vec::new();
        for round in 0..20u64 {
            let appends = (0..32u64).map(|k| {
                let log = log.clone();
                let tag = round * 100 + k;
                async move {
                    let b = batch(tag, 1 + (tag * 7 % 60) as u32, 1);
                    let info = record::validate(&b).unwrap();
                    let a = log.append(b, &info).await.unwrap();
                    log.wait_written(a.last_offset).await.unwrap();
                    (a.base_offset, tag, info.record_count)
                }
            });
            want.extend(futures::future::join_all(appends).await);
        }
        let stats = log.stats();
        assert_eq!(stats.written_offset, stats.next_offset);
        drop(log);
        let log = PartitionLog::open(&path, config).await.unwrap();
        let got = read_all(&log, 0).await;
        want.sort_unstable();
        let mut expect = Vec::new();
        for (base, tag, n) in want {
            for i in 0..i64::from(n) {
                expect.push((base + i, format!("v{tag}-{i}").into_bytes()));
            }
        }
        let got: Vec<(i64, Vec<u8>)> = got.into_iter().map(|(o, _, v)| (o, v)).collect();
        assert_eq!(got.len(), expect.len());
        assert!(got == expect, "the reopened log differs from what was acknowledged as written");
    });
}

/// A restart scans only what came after the recovery checkpoint (and the
/// last index interval before it, to check the prefix's end); a clean close
/// leaves almost nothing to scan; a damaged checkpoint falls back to a full
/// scan. Every time, the log reopens whole.
#[test]
fn restart_scans_only_past_the_checkpoint() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let config = LogConfig { checkpoint_interval_ms: 20, write_buffer_bytes: 64 * 1024, unwritten_max_bytes: 256 * 1024, ..LogConfig::default() };
        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        // Past CHECKPOINT_MIN_BYTES, so a checkpoint comes due.
        for t in 0..300 {
            let (_, last) = append(&log, batch(t, 200, 1)).await;
            log.wait_written(last).await.unwrap();
        }
        // Every batch has the same size, so offsets convert to bytes.
        let batch_bytes = log.stats().bytes / 300;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while log.stats().checkpointed_offset == 0 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint: {:?}", log.stats());
            shardlog::rt::sleep(std::time::Duration::from_millis(5)).await;
        }
        let checkpointed = log.stats().checkpointed_offset;
        for t in 300..310 {
            let (_, last) = append(&log, batch(t, 200, 1)).await;
            log.wait_written(last).await.unwrap();
        }
        let want = read_all(&log, 0).await;
        assert_eq!(want.len(), 62_000);
        let total = log.stats().bytes;
        drop(log);

        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        let scanned = log.stats().recovery_scanned_bytes;
        // What came after the checkpoint, plus what lies between the last
        // index entry and the checkpoint's end, checked again: under one
        // index interval (4 KiB) and two batches; batch sizes vary a little
        // with their tags, so allow one more.
        let after = (62_000 - checkpointed) as u64 / 200 * batch_bytes;
        assert!(scanned <= after + 4096 + 3 * batch_bytes, "scanned {scanned} of {total} bytes; {after} came after the checkpoint");
        assert!(scanned < total / 2, "scanned {scanned} of {total} bytes");
        assert_eq!(read_all(&log, 0).await, want);
        log.close().await.unwrap();
        drop(log);

        let log = PartitionLog::open(&path, config.clone()).await.unwrap();
        // Only the batches after the last index entry are checked again.
        let scanned = log.stats().recovery_scanned_bytes;
        assert!(scanned <= 4096 + 8192, "a clean close leaves little to scan, not {scanned} bytes");
        drop(log);

        std::fs::remove_file(path.join("00000000000000000000.index")).unwrap();
        std::fs::write(path.join("00000000000000000000.checkpoint"), b"not a checkpoint").unwrap();
        let log = PartitionLog::open(&path, config).await.unwrap();
        assert_eq!(log.stats().recovery_scanned_bytes, total, "a damaged checkpoint means a full scan");
        assert_eq!(read_all(&log, 0).await, want);
    });
}

/// A log's cache is its share of the shard's budget: when more logs open
/// on the shard, a quiet log gives back what it cached beyond its new
/// share within a checkpoint interval, without writing anything itself.
#[test]
fn a_quiet_log_shrinks_its_cache_to_its_share_of_the_shard() {
    use shardlog::storage::ShardMemory;
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().to_path_buf();
    block_on(async move {
        let config = LogConfig { checkpoint_interval_ms: 20, cache_max_bytes: 1 << 20, ..LogConfig::default() };
        let memory = ShardMemory::new(256 * 1024);
        let quiet = PartitionLog::open_on_shard(&path.join("quiet"), config.clone(), memory.clone()).await.unwrap();
        for t in 0..40 {
            let (_, last) = append(&quiet, batch(t, 200, 1)).await;
            quiet.wait_written(last).await.unwrap();
        }
        let alone = quiet.stats().cache_bytes;
        assert!(alone > 128 * 1024 && alone <= 256 * 1024, "alone on the shard it caches up to the whole budget: {alone}");
        let mut others = Vec::new();
        for i in 0..7 {
            others.push(PartitionLog::open_on_shard(&path.join(format!("other{i}")), config.clone(), memory.clone()).await.unwrap());
        }
        assert_eq!(memory.logs(), 8);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while quiet.stats().cache_bytes > 32 * 1024 {
            assert!(std::time::Instant::now() < deadline, "the quiet log kept {} bytes cached", quiet.stats().cache_bytes);
            shardlog::rt::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(read_all(&quiet, 0).await.len(), 8000, "what left the cache is read from disk");
    });
}

/// A follower's log: batches keep the leader's offsets and bytes, reads
/// stop at a bound, and a cut drops the tail (across segments), after
/// which appends continue from the cut.
#[test]
fn a_replica_keeps_offsets_reads_below_a_bound_and_cuts_its_tail() {
    let leader_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let follower_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (lp, fp) = (leader_dir.path().to_path_buf(), follower_dir.path().to_path_buf());
    block_on(async move {
        let leader = PartitionLog::open(&lp, small_config()).await.unwrap();
        let follower = PartitionLog::open(&fp, small_config()).await.unwrap();
        for t in 0..200u64 {
            append(&leader, batch(t, 3, 1_000 + t as i64)).await;
        }
        // Copy the leader's stored batches as they are.
        let mut next = 0;
        while next < leader.next_offset() {
            let r = leader.read(next, 8 * 1024).await.unwrap();
            for c in &r.chunks {
                let info = record::validate(c).unwrap();
                follower.append_replica(BytesMut::from(&c[..]), &info).await.unwrap();
                next = info.next_offset();
            }
        }
        assert_eq!(read_all(&follower, 0).await, read_all(&leader, 0).await);
        let stray = batch(7, 1, 5);
        let mut info = record::validate(&stray).unwrap();
        info.base_offset = 500;
        assert!(matches!(follower.append_replica(stray, &info).await, Err(StorageError::OffsetOutOfRange { .. })), "a gap is refused");

        // Bounded reads: nothing at or past the bound, never half a batch.
        let r = follower.read_below(90, 64 * 1024, 99).await.unwrap();
        let last = r.chunks.iter().map(|c| record::validate(c).unwrap().next_offset()).max().unwrap();
        assert_eq!(last, 99);
        assert!(follower.read_below(99, 64 * 1024, 100).await.unwrap().chunks.is_empty(), "the batch 99..102 crosses the bound");

        // Cut inside a batch: the batch that holds the offset goes too.
        follower.close().await.unwrap();
        drop(follower);
        assert!(segment_files(&fp).len() > 3, "the cut crosses segments");
        assert_eq!(PartitionLog::cut(&fp, 100).await.unwrap(), 99);
        let follower = PartitionLog::open(&fp, small_config()).await.unwrap();
        assert_eq!(follower.next_offset(), 99);
        assert_eq!(read_all(&follower, 0).await, read_all(&leader, 0).await[..99].to_vec());
        let r = leader.read(99, 64).await.unwrap();
        let info = record::validate(&r.chunks[0]).unwrap();
        follower.append_replica(BytesMut::from(&r.chunks[0][..]), &info).await.unwrap();
        assert_eq!(follower.next_offset(), 102);
        follower.close().await.unwrap();
        drop(follower);
        // Below the start: the log empties and starts again at the cut.
        assert_eq!(PartitionLog::cut(&fp, 0).await.unwrap(), 0);
        let follower = PartitionLog::open(&fp, small_config()).await.unwrap();
        assert_eq!(follower.next_offset(), 0);
        assert!(read_all(&follower, 0).await.is_empty());
    });
}
