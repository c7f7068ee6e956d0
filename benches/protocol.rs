//! Frame and request codec hot paths, and index lookups.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use flatbuffers::FlatBufferBuilder;
use shardlog::protocol::{self, produce, Acks, Request};
use shardlog::storage::SegmentIndex;

/// A produce request for 2 partitions, each with `payload`.
fn produce_frame(payload: &[u8]) -> Vec<u8> {
    let partitions = (0..2).map(|partition| produce::Partition { partition, records: payload }).collect();
    let req = produce::Request::one_topic("bench", Acks::Leader, 1000, partitions);
    let mut b = FlatBufferBuilder::new();
    let mut out = protocol::frame_head(protocol::encode_request(&mut b, protocol::API_VERSION, 1, None, &req), req.payload_len()).to_vec();
    for r in req.records() {
        out.extend_from_slice(r);
    }
    out
}

fn benches(c: &mut Criterion) {
    let payload = vec![7u8; 64];
    // A small payload: the bench measures framing and verification, not
    // the copy of the frame into a buffer each iteration needs.
    let frame = produce_frame(&payload);
    let mut g = c.benchmark_group("frame");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_produce_request", |b| b.iter(|| black_box(produce_frame(black_box(&payload)))));
    g.bench_function("decode_produce_request", |b| {
        b.iter(|| {
            let body = BytesMut::from(&frame[4..]);
            let (msg, payload) = protocol::split_frame(body).unwrap();
            let req = protocol::parse_request(&msg).unwrap();
            let Ok(Request::Produce(p)) = Request::decode(req, payload) else { panic!("a produce request") };
            black_box(p.records().map(|r| r.len()).sum::<usize>())
        })
    });
    g.finish();

    let mut ix = SegmentIndex::default();
    for i in 0..250_000u32 {
        ix.on_append(i * 10, i * 4096, 4096, i64::from(i) * 1000, 4096);
    }
    let mut g = c.benchmark_group("index_250k_entries");
    g.bench_function("lookup_offset", |b| {
        let mut x = 0u32;
        b.iter(|| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345) % 2_500_000;
            black_box(ix.lookup_offset(x))
        })
    });
    g.bench_function("lookup_time", |b| {
        let mut x = 0i64;
        b.iter(|| {
            x = (x * 1_103_515_245 + 12345) % 250_000_000;
            black_box(ix.lookup_time(x))
        })
    });
    g.finish();
}

criterion_group!(protocol_benches, benches);
criterion_main!(protocol_benches);
