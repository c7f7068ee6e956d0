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

/// A batch of `n` records whose values look like log lines (compressible
/// about as well as real text, unlike a repeated byte).
fn build_text(n: usize, size: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new(n * (size + 16) + 64);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..n {
        let mut v = format!("{} INFO request id={i} user={} path=/api/v1/items status=200 ms=", 1_700_000_000_000u64 + i as u64, x % 1000).into_bytes();
        while v.len() < size {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.push(b'0' + (x % 10) as u8);
        }
        v.truncate(size);
        b.push(1_700_000_000_000 + i as i64, None, Some(&v), &[]);
    }
    b.finish()
}

/// `plain`'s records compressed with `codec` as Kafka's clients send them.
fn compress(plain: &[u8], codec: u16) -> Vec<u8> {
    use std::io::Write;
    let records = &plain[record::HEADER_BYTES..];
    let body = match codec {
        1 => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(records).unwrap();
            e.finish().unwrap()
        }
        2 => snap::raw::Encoder::new().compress_vec(records).unwrap(),
        3 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(records).unwrap();
            e.finish().unwrap()
        }
        4 => zstd::encode_all(records, 3).unwrap(),
        _ => unreachable!(),
    };
    let mut out = plain[..record::HEADER_BYTES].to_vec();
    out.extend_from_slice(&body);
    out[22] = codec as u8; // the attributes' low byte
    record::seal(&mut out);
    out
}

/// The broker's check of a compressed batch (header, CRC, inflating the
/// records into scratch memory and walking them) beside an uncompressed
/// one's, per batch of 1000 records of 100 B.
fn compressed(c: &mut Criterion) {
    let plain = build_text(1000, 100);
    let mut g = c.benchmark_group("compressed_1000x100B");
    g.throughput(Throughput::Bytes(plain.len() as u64));
    for codec in 0u16..=4 {
        let batch = if codec == 0 { plain.clone() } else { compress(&plain, codec) };
        let name = format!("{}_{}B", record::codec_name(codec), batch.len());
        g.bench_function(BenchmarkId::new("validate_and_walk_records", name), |b| {
            b.iter(|| {
                let info = record::validate(black_box(&batch)).unwrap();
                record::validate_records(black_box(&batch), &info).unwrap();
                black_box(info)
            })
        });
    }
    g.finish();
}

criterion_group!(record_batch, benches, compressed);
criterion_main!(record_batch);
