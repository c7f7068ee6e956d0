//! The SDK's hot paths, per record, against an in-process broker of one
//! shard on the same cores: `Producer::send` of a 100 B value (borrowed
//! and owned records), and `Consumer::poll_records` / `poll` over stored
//! 100 B records. Each figure is the whole cost an application sees per
//! record, the broker's share of the cores included.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardlog::client::consumer::{Consumer, ConsumerConfig, StartFrom};
use shardlog::client::producer::{Acks, Producer, ProducerConfig, ProducerRecord, RecordRef};

/// Deliveries left outstanding before the oldest is waited for.
const OUTSTANDING: usize = 64 * 1024;
/// Records stored for the poll benches (read round and round).
const STORED: u64 = 2_000_000;

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let config = shardlog::config::BrokerConfig {
        data_dir: dir.path().into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".into(),
        shards: 1,
        ..Default::default()
    };
    let broker = shardlog::broker::start(config).unwrap();
    let addr = broker.addr().to_string();
    let mut admin = shardlog::client::admin::Admin::connect(&[addr.as_str()]).unwrap();
    admin.create_topic("send", 1, 1, &[]).unwrap();
    admin.create_topic("poll", 1, 1, &[]).unwrap();
    let producer =
        Producer::connect(ProducerConfig { bootstrap: vec![addr.clone()], acks: Acks::Leader, batch_max_bytes: 108_000, ..Default::default() }).unwrap();
    let value = [0x61u8; 100];

    let mut g = c.benchmark_group("sdk");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    g.bench_function("send_100B_borrowed", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut out = VecDeque::with_capacity(OUTSTANDING);
            for _ in 0..iters {
                out.push_back(producer.send(RecordRef { topic: "send", value: Some(&value), ..Default::default() }).unwrap());
                if out.len() == OUTSTANDING {
                    black_box(out.pop_front().unwrap().wait().unwrap());
                }
            }
            for d in out {
                black_box(d.wait().unwrap());
            }
            start.elapsed()
        })
    });
    g.bench_function("send_100B_owned", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut out = VecDeque::with_capacity(OUTSTANDING);
            for _ in 0..iters {
                let r = ProducerRecord { topic: "send".into(), value: Some(value.to_vec()), ..Default::default() };
                out.push_back(producer.send(r).unwrap());
                if out.len() == OUTSTANDING {
                    black_box(out.pop_front().unwrap().wait().unwrap());
                }
            }
            for d in out {
                black_box(d.wait().unwrap());
            }
            start.elapsed()
        })
    });

    for _ in 0..STORED {
        producer.send(RecordRef { topic: "poll", value: Some(&value), ..Default::default() }).unwrap();
    }
    producer.flush().unwrap();
    let consumer = || {
        let config =
            ConsumerConfig { bootstrap: vec![addr.clone()], start: StartFrom::Earliest, auto_commit: false, fetch_max_bytes: 4 << 20, ..Default::default() };
        Consumer::assign(config, "poll", &[0]).unwrap()
    };
    // Reads `iters` records, starting over at the first once all are read.
    let read = |iters: u64, owned: bool| {
        let mut c = consumer();
        let start = Instant::now();
        let mut left = iters;
        while left > 0 {
            let n = if owned {
                let rs = c.poll(Duration::from_millis(100)).unwrap();
                rs.iter()
                    .take(left as usize)
                    .inspect(|r| {
                        black_box(r.value.as_ref().map_or(0, Vec::len));
                    })
                    .count()
            } else {
                let rs = c.poll_records(Duration::from_millis(100)).unwrap();
                rs.iter()
                    .take(left as usize)
                    .inspect(|r| {
                        black_box(r.value.map_or(0, <[u8]>::len));
                    })
                    .count()
            };
            if n == 0 {
                c = consumer();
            }
            left -= n as u64;
        }
        start.elapsed()
    };
    g.bench_function("poll_records_100B", |b| b.iter_custom(|iters| read(iters, false)));
    g.bench_function("poll_100B_owned", |b| b.iter_custom(|iters| read(iters, true)));
    g.finish();
    drop(producer);
    drop(broker);
}

criterion_group!(sdk, benches);
criterion_main!(sdk);
