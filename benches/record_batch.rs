//! The record batch hot paths: building a batch (producer side) and the
//! broker's only per-batch work: header validation, CRC and the walk of
//! the record lengths.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use shardlog::record::{self, BatchBuilder};

fn build(n: usize, size: usize) -> Vec<u8> {
    let value = vec![0x5au8; size];
    let mut b = BatchBuilder::new(n * (size + 16) + 64);
    for i in 0..n {
        b.push(1_700_000_000_000 + i as i64, None, Some(&value), &[]);
    }
    b.finish()
}

fn benches(c: &mut Criterion) {
    for &(n, size) in &[(1000usize, 100usize), (100, 1024)] {
        let batch = build(n, size);
        let mut g = c.benchmark_group(format!("batch_{n}x{size}B"));
        g.throughput(Throughput::Bytes(batch.len() as u64));
        g.bench_function(BenchmarkId::new("encode", batch.len()), |b| {
            let value = vec![0x5au8; size];
            let mut builder = BatchBuilder::new(batch.len());
            let mut out = Vec::with_capacity(batch.len());
            b.iter(|| {
                out.clear();
                for i in 0..n {
                    builder.push(1_700_000_000_000 + i as i64, None, Some(&value), &[]);
                }
                builder.finish_into(&mut out);
                black_box(&out);
            })
        });
        // What produce checked before the record walk, and what it checks now.
        g.bench_function(BenchmarkId::new("validate", batch.len()), |b| b.iter(|| black_box(record::validate(black_box(&batch)).unwrap())));
        g.bench_function(BenchmarkId::new("validate_and_walk_records", batch.len()), |b| {
            b.iter(|| {
                let info = record::validate(black_box(&batch)).unwrap();
                record::validate_records(black_box(&batch), &info).unwrap();
                black_box(info)
            })
        });
        g.bench_function(BenchmarkId::new("decode_all_records", batch.len()), |b| {
            b.iter(|| {
                let mut sum = 0usize;
                for r in record::RecordIter::new(black_box(&batch)).unwrap() {
                    sum += r.unwrap().value.map_or(0, |v| v.len());
                }
                black_box(sum)
            })
        });
        g.finish();
    }
}

criterion_group!(record_batch, benches);
criterion_main!(record_batch);
