//! Append throughput of a partition log on direct-I/O segments, synced:
//! every iteration appends `BATCHES` batches and waits for the fdatasync
//! that covers them, as an acks=all producer would.
//!
//! The data directory is under target/ so it sits on the real disk.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use shardlog::record::{self, BatchBuilder};
use shardlog::storage::{LogConfig, PartitionLog};

const BATCHES: usize = 64;

fn batch(n: usize, size: usize) -> Vec<u8> {
    let value = vec![0x5au8; size];
    let mut b = BatchBuilder::new(n * (size + 16) + 64);
    for i in 0..n {
        b.push(i as i64, None, Some(&value), &[]);
    }
    b.finish()
}

fn bench_append(c: &mut Criterion) {
    let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("bench-data");
    std::fs::create_dir_all(&base).unwrap();
    for &(n, size) in &[(1000usize, 100usize), (128, 1024)] {
        let proto = batch(n, size);
        let info = record::validate(&proto).unwrap();
        let mut g = c.benchmark_group(format!("append_{n}x{size}B"));
        g.throughput(Throughput::Bytes((proto.len() * BATCHES) as u64));
        g.sample_size(20);
        g.measurement_time(Duration::from_secs(8));
        g.bench_function("append_and_sync", |b| {
            b.iter_custom(|iters| {
                let dir = tempfile::tempdir_in(&base).unwrap();
                let path = dir.path().to_path_buf();
                let proto = proto.clone();
                shardlog::rt::block_on(async move {
                    let cfg = LogConfig { write_buffer_bytes: 8 << 20, unwritten_max_bytes: 64 << 20, cache_max_bytes: 8 << 20, ..LogConfig::default() };
                    let log = PartitionLog::open(&path, cfg).await.unwrap();
                    let start = Instant::now();
                    for _ in 0..iters {
                        let mut last = 0;
                        for _ in 0..BATCHES {
                            last = log.append(BytesMut::from(&proto[..]), &info).await.unwrap().last_offset;
                        }
                        log.wait_synced(last).await.unwrap();
                    }
                    let t = start.elapsed();
                    log.close().await.unwrap();
                    t
                })
            })
        });
        g.finish();
    }
}

criterion_group!(append, bench_append);
criterion_main!(append);
