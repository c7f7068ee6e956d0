//! Frame and request codec hot paths, and index lookups.

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use flatbuffers::FlatBufferBuilder;
use shardlog::protocol::{self, fb};
use shardlog::storage::SegmentIndex;

/// A produce request for 2 partitions, each with `payload`.
fn produce_frame(payload: &[u8]) -> Vec<u8> {
    let mut b = FlatBufferBuilder::new();
    let name = b.create_string("bench");
    let ps: Vec<_> =
        (0..2).map(|p| fb::ProducePartition::create(&mut b, &fb::ProducePartitionArgs { partition: p, records_bytes: payload.len() as u32 })).collect();
    let ps = b.create_vector(&ps);
    let t = fb::ProduceTopic::create(&mut b, &fb::ProduceTopicArgs { name: Some(name), partitions: Some(ps) });
    let ts = b.create_vector(&[t]);
    let body = fb::ProduceRequest::create(&mut b, &fb::ProduceRequestArgs { acks: 1, timeout_ms: 1000, topics: Some(ts) });
    let r = fb::Request::create(
        &mut b,
        &fb::RequestArgs { api_version: 0, correlation_id: 1, client_id: None, body_type: fb::RequestBody::ProduceRequest, body: Some(body.as_union_value()) },
    );
    b.finish(r, None);
    let mut out = protocol::frame_head(b.finished_data(), payload.len() * 2).to_vec();
    out.extend_from_slice(payload);
    out.extend_from_slice(payload);
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
            let p = req.body_as_produce_request().unwrap();
            let n: u32 = p.topics().unwrap().iter().flat_map(|t| t.partitions().unwrap().iter().map(|p| p.records_bytes())).sum();
            black_box((n, payload.len()))
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
