//! CRC throughput on this host: crc32fast's CRC-32 (today's batch CRC)
//! beside two CRC-32C crates (Kafka's record batch v2 checksums with
//! CRC-32C), over the sizes a batch has: a few records, a typical produce
//! batch, and the largest.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn benches(c: &mut Criterion) {
    // The check value of every CRC-32C: "123456789" -> 0xE3069283.
    assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    assert_eq!(crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, b"123456789"), 0xE306_9283);
    let mut g = c.benchmark_group("crc");
    for size in [256usize, 16 << 10, 1 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 131 % 251) as u8).collect();
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("crc32fast_crc32", size), &data, |b, d| b.iter(|| crc32fast::hash(black_box(d))));
        g.bench_with_input(BenchmarkId::new("crc32c_crc32c", size), &data, |b, d| b.iter(|| crc32c::crc32c(black_box(d))));
        g.bench_with_input(BenchmarkId::new("crc_fast_crc32c", size), &data, |b, d| {
            b.iter(|| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, black_box(d)))
        });
    }
    g.finish();
}

criterion_group!(crc_benches, benches);
criterion_main!(crc_benches);
