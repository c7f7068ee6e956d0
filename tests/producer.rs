//! The SDK producer against a real broker.

mod common;

use std::time::Duration;

use common::Broker;
use shardlog::client::producer::{Acks, Producer, ProducerConfig, ProducerError, ProducerRecord};
use shardlog::client::raw::Connection;

fn config(b: &Broker) -> ProducerConfig {
    ProducerConfig { bootstrap: vec![b.addr.to_string()], ..Default::default() }
}

fn record(topic: &str, key: Option<&str>, value: String) -> ProducerRecord {
    ProducerRecord { topic: topic.into(), key: key.map(|k| k.as_bytes().to_vec()), value: Some(value.into_bytes()), ..Default::default() }
}

#[test]
fn keyed_records_keep_their_order_and_get_offsets() {
    let b = Broker::start(2);
    Connection::connect(b.addr).unwrap().create_topic("sdk", 3).unwrap();
    let p = Producer::connect(config(&b)).unwrap();
    let deliveries: Vec<_> = (0..900).map(|i| (i, p.send(record("sdk", Some(&format!("k{}", i % 7)), format!("v{i}"))).unwrap())).collect();
    p.flush().unwrap();
    let mut by_partition: std::collections::BTreeMap<u32, Vec<(i64, usize)>> = Default::default();
    for (i, d) in deliveries {
        let m = d.wait().unwrap();
        by_partition.entry(m.partition).or_default().push((m.offset, i));
    }
    let mut c = Connection::connect(b.addr).unwrap();
    for (part, mut got) in by_partition {
        got.sort_unstable();
        let offsets: Vec<i64> = got.iter().map(|x| x.0).collect();
        assert_eq!(offsets, (0..got.len() as i64).collect::<Vec<_>>(), "partition {part}: offsets are contiguous");
        let sends: Vec<usize> = got.iter().map(|x| x.1).collect();
        let mut sorted = sends.clone();
        sorted.sort_unstable();
        assert_eq!(sends, sorted, "partition {part}: stored in send order");
        // What is stored is what was sent.
        c.send_fetch("sdk", &[(part, 0)], 1 << 20, 0, 1).unwrap();
        let reply = c.recv().unwrap();
        let mut values = Vec::new();
        for b in shardlog::record::batches(&reply.payload) {
            let (start, _) = b.unwrap();
            for r in shardlog::record::RecordIter::new(&reply.payload[start..]).unwrap() {
                values.push(String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap());
            }
        }
        let want: Vec<String> = sends.iter().map(|i| format!("v{i}")).collect();
        assert_eq!(values, want);
    }
}

#[test]
fn usable_as_a_future() {
    let b = Broker::start(1);
    Connection::connect(b.addr).unwrap().create_topic("fut", 1).unwrap();
    let p = Producer::connect(ProducerConfig { acks: Acks::Leader, ..config(&b) }).unwrap();
    let m = futures::executor::block_on(async { p.send(record("fut", None, "x".into())).unwrap().await }).unwrap();
    assert_eq!((m.partition, m.offset), (0, 0));
    let err = p.send(record("no-such-topic", None, "x".into())).unwrap().wait();
    assert_eq!(err, Err(ProducerError::UnknownTopic("no-such-topic".into())));
}

#[test]
fn a_stalled_broker_applies_backpressure_then_everything_is_delivered() {
    let b = Broker::start(1);
    Connection::connect(b.addr).unwrap().create_topic("bp", 1).unwrap();
    let p =
        Producer::connect(ProducerConfig { buffer_max_bytes: 4096, send_timeout: Duration::from_millis(300), linger: Duration::from_millis(1), ..config(&b) })
            .unwrap();
    // Freeze the broker: nothing is acknowledged, the buffer fills.
    unsafe { libc::kill(b.pid() as i32, libc::SIGSTOP) };
    let mut accepted = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        match p.send(record("bp", None, format!("{i:0>100}"))) {
            Ok(d) => accepted.push(d),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(refused, Some(ProducerError::BufferFull(Duration::from_millis(300))), "send blocks, then gives up, when the buffer is full");
    assert!(!accepted.is_empty() && accepted.len() < 200);
    unsafe { libc::kill(b.pid() as i32, libc::SIGCONT) };
    for d in accepted {
        d.wait().unwrap();
    }
    assert!(p.send(record("bp", None, "after".into())).unwrap().wait().is_ok());
}

/// The broker restarts while a producer sends to one partition: retries
/// deliver everything, and the partition holds the records in send order
/// (a batch that was stored but whose acknowledgement was lost may repeat,
/// never jump ahead).
#[test]
fn ordering_within_a_partition_survives_retries_across_a_broker_restart() {
    let tmp = common::temp_dir();
    let mut b = Broker::start_in(tmp.path(), 2, &[]);
    let addr = b.addr;
    Connection::connect(addr).unwrap().create_topic("retry", 2).unwrap();
    let p = Producer::connect(ProducerConfig { linger: Duration::from_millis(1), retries: 8, ..config(&b) }).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..3000 {
        if i == 1500 {
            assert_eq!(b.terminate().code(), Some(0));
            b = Broker::start_listening(None, tmp.path(), 2, &addr.to_string(), &[]);
        }
        let mut r = record("retry", None, format!("{i:06}"));
        r.partition = Some(1);
        deliveries.push(p.send(r).unwrap());
    }
    p.flush().unwrap();
    for d in deliveries {
        d.wait().expect("every record is delivered, after retries");
    }
    let mut c = Connection::connect(addr).unwrap();
    let mut values: Vec<u32> = Vec::new();
    let mut next = 0i64;
    loop {
        c.send_fetch("retry", &[(1, next)], 1 << 20, 0, 1).unwrap();
        let reply = c.recv().unwrap();
        if reply.payload.is_empty() {
            break;
        }
        for bt in shardlog::record::batches(&reply.payload) {
            let (start, info) = bt.unwrap();
            for r in shardlog::record::RecordIter::new(&reply.payload[start..]).unwrap() {
                values.push(std::str::from_utf8(r.unwrap().value.unwrap()).unwrap().parse().unwrap());
            }
            next = info.next_offset();
        }
    }
    // Every value is there, and a value never appears after a larger one
    // unless it is a repeat of a batch (a run that restarts earlier).
    let distinct: std::collections::BTreeSet<u32> = values.iter().copied().collect();
    assert_eq!(distinct.len(), 3000);
    let mut max_seen = None;
    for w in values.windows(2) {
        if w[1] <= w[0] {
            // A repeat: it must re-send values already stored, in order.
            assert!(max_seen.is_some_and(|m| w[1] <= m), "{} after {}", w[1], w[0]);
        }
        max_seen = Some(max_seen.map_or(w[0], |m: u32| m.max(w[0])));
    }
}

/// With acks=leader several requests of a partition are in flight at once
/// (`max_in_flight`); across a broker restart the partition still holds
/// every record, and a record appears after a later one only as a repeat.
#[test]
fn pipelined_requests_keep_a_partitions_order_across_a_broker_restart() {
    let tmp = common::temp_dir();
    let mut b = Broker::start_in(tmp.path(), 1, &[]);
    let addr = b.addr;
    Connection::connect(addr).unwrap().create_topic("piped", 1).unwrap();
    let config = ProducerConfig { acks: Acks::Leader, max_in_flight: 5, linger: Duration::from_millis(1), batch_max_bytes: 2048, retries: 8, ..config(&b) };
    let p = Producer::connect(config).unwrap();
    let mut deliveries = Vec::new();
    for i in 0..20_000u32 {
        if i == 10_000 {
            assert_eq!(b.terminate().code(), Some(0));
            b = Broker::start_listening(None, tmp.path(), 1, &addr.to_string(), &[]);
        }
        deliveries.push(p.send(record("piped", None, format!("{i:06}"))).unwrap());
    }
    p.flush().unwrap();
    for d in deliveries {
        d.wait().expect("every record is delivered, after retries");
    }
    let mut c = Connection::connect(addr).unwrap();
    let (mut values, mut next) = (Vec::<u32>::new(), 0i64);
    loop {
        c.send_fetch("piped", &[(0, next)], 1 << 20, 0, 1).unwrap();
        let reply = c.recv().unwrap();
        if reply.payload.is_empty() {
            break;
        }
        for bt in shardlog::record::batches(&reply.payload) {
            let (start, info) = bt.unwrap();
            for r in shardlog::record::RecordIter::new(&reply.payload[start..]).unwrap() {
                values.push(std::str::from_utf8(r.unwrap().value.unwrap()).unwrap().parse().unwrap());
            }
            next = info.next_offset();
        }
    }
    assert_eq!(values.iter().copied().collect::<std::collections::BTreeSet<u32>>().len(), 20_000);
    // The first time each value appears, it appears in send order.
    let mut seen = std::collections::BTreeSet::new();
    let firsts: Vec<u32> = values.iter().copied().filter(|v| seen.insert(*v)).collect();
    assert!(firsts.windows(2).all(|w| w[0] < w[1]), "a record was stored ahead of one sent before it");
}

/// Several threads send through one producer, each its own keyed run of
/// records: every record is stored once, and each thread's records keep
/// their order in its partition (a thread's batches are its own, and are
/// queued in the order it opened them).
#[test]
fn threads_sharing_a_producer_keep_each_threads_order() {
    let b = Broker::start(2);
    Connection::connect(b.addr).unwrap().create_topic("threads", 2).unwrap();
    // Small batches, so each thread hands many over, interleaved with the
    // others' and with the sender thread stealing lingered ones.
    let p = std::sync::Arc::new(
        Producer::connect(ProducerConfig { acks: Acks::Leader, batch_max_bytes: 1500, linger: Duration::from_millis(1), ..config(&b) }).unwrap(),
    );
    const PER_THREAD: usize = 3000;
    let senders: Vec<_> = (0..4)
        .map(|t| {
            let p = p.clone();
            std::thread::spawn(move || {
                let key = format!("thread-{t}");
                (0..PER_THREAD).map(|i| p.send(record("threads", Some(&key), format!("{t}:{i}"))).unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    // The threads have exited by now; their deliveries still complete.
    let deliveries: Vec<_> = senders.into_iter().flat_map(|s| s.join().unwrap()).collect();
    let mut by_partition: std::collections::BTreeMap<u32, Vec<i64>> = Default::default();
    for d in deliveries {
        let m = d.wait().unwrap();
        by_partition.entry(m.partition).or_default().push(m.offset);
    }
    let mut c = Connection::connect(b.addr).unwrap();
    let mut next = [0usize; 4];
    for (part, offsets) in by_partition {
        let n = offsets.len();
        let mut values = Vec::new();
        while values.len() < n {
            c.send_fetch("threads", &[(part, values.len() as i64)], 1 << 20, 0, 1).unwrap();
            let reply = c.recv().unwrap();
            for b in shardlog::record::batches(&reply.payload) {
                let (start, _) = b.unwrap();
                for r in shardlog::record::RecordIter::new(&reply.payload[start..]).unwrap() {
                    values.push(String::from_utf8(r.unwrap().value.unwrap().to_vec()).unwrap());
                }
            }
        }
        assert_eq!(values.len(), n, "partition {part}: one record per delivery");
        for v in values {
            let (t, i) = v.split_once(':').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "partition {part}: thread {t}'s records in send order");
            next[t] += 1;
        }
    }
    assert_eq!(next, [PER_THREAD; 4], "every thread's records were stored");
}

/// `flush` from one thread sends what other threads left in their open
/// batches, long before those would have lingered out.
#[test]
fn flush_sends_other_threads_open_batches() {
    let b = Broker::start(1);
    Connection::connect(b.addr).unwrap().create_topic("other", 1).unwrap();
    let p = std::sync::Arc::new(Producer::connect(ProducerConfig { linger: Duration::from_secs(600), ..config(&b) }).unwrap());
    // The topic is known first, so the records below go into the sending
    // threads' own batches.
    p.send(record("other", None, "first".into())).unwrap();
    p.flush().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    let idle = std::thread::spawn(move || {
        let ds: Vec<_> = (0..10).map(|i| p2.send(record("other", None, format!("{i}"))).unwrap()).collect();
        tx.send(ds).unwrap();
        // Stays alive and idle: its lane keeps the batch until stolen.
        std::thread::sleep(Duration::from_secs(2));
    });
    let ds = rx.recv().unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let p3 = p.clone();
    std::thread::spawn(move || done_tx.send(p3.flush()).unwrap());
    assert_eq!(done_rx.recv_timeout(Duration::from_secs(30)), Ok(Ok(())), "flush returned");
    let offsets: Vec<i64> = ds.into_iter().map(|d| d.wait().unwrap().offset).collect();
    assert_eq!(offsets, (1..=10).collect::<Vec<i64>>());
    idle.join().unwrap();
}

/// A send that waits for buffer space waits outside its thread's lane: the
/// sender thread, which must take the lane's lingering batch to free space,
/// is never held up by it. A small buffer against a healthy broker: every
/// send goes through, none gives up.
#[test]
fn waiting_for_buffer_space_never_holds_up_the_sender() {
    let b = Broker::start(1);
    Connection::connect(b.addr).unwrap().create_topic("tight", 1).unwrap();
    let p = Producer::connect(ProducerConfig {
        buffer_max_bytes: 4096,
        send_timeout: Duration::from_secs(20),
        linger: Duration::from_millis(1),
        acks: Acks::Leader,
        ..config(&b)
    })
    .unwrap();
    let ds: Vec<_> = (0..2000).map(|i| p.send(record("tight", None, format!("{i:0>100}"))).unwrap()).collect();
    let offsets: Vec<i64> = ds.into_iter().map(|d| d.wait().unwrap().offset).collect();
    assert_eq!(offsets, (0..2000).collect::<Vec<i64>>());
}
