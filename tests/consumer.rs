//! The SDK consumer against a real broker, fed by the SDK producer.

mod common;

use std::time::{Duration, Instant};

use common::Broker;
use shardlog::client::consumer::{Consumer, ConsumerConfig, StartFrom};
use shardlog::client::producer::{Producer, ProducerConfig, ProducerRecord};
use shardlog::client::raw::Connection;

fn produce(b: &Broker, topic: &str, n: usize) {
    let p = Producer::connect(ProducerConfig { bootstrap: vec![b.addr.to_string()], ..Default::default() }).unwrap();
    for i in 0..n {
        p.send(ProducerRecord {
            topic: topic.into(),
            key: Some(format!("k{i}").into_bytes()),
            value: Some(format!("v{i}").into_bytes()),
            ..Default::default()
        })
        .unwrap();
    }
    p.flush().unwrap();
}

fn config(b: &Broker, group: Option<&str>) -> ConsumerConfig {
    ConsumerConfig {
        bootstrap: vec![b.addr.to_string()],
        group: group.map(str::to_string),
        start: StartFrom::Earliest,
        session_timeout_ms: 1_500,
        ..Default::default()
    }
}

fn drain(c: &mut Consumer, want: usize) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.len() < want && Instant::now() < deadline {
        for r in c.poll(Duration::from_millis(200)).unwrap() {
            got.push(String::from_utf8(r.value.unwrap()).unwrap());
        }
    }
    got
}

#[test]
fn a_group_consumer_commits_and_the_next_one_continues() {
    let b = Broker::start(2);
    Connection::connect(b.addr).unwrap().create_topic("c1", 3).unwrap();
    produce(&b, "c1", 300);
    let mut c = Consumer::assign(config(&b, Some("g")), "c1", &[]).unwrap();
    let first = drain(&mut c, 300);
    assert_eq!(first.len(), 300);
    c.close().unwrap(); // auto commit
    produce(&b, "c1", 30);
    let mut c = Consumer::assign(config(&b, Some("g")), "c1", &[]).unwrap();
    let next = drain(&mut c, 30);
    let mut next_sorted = next.clone();
    next_sorted.sort();
    let mut want: Vec<String> = (0..30).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(next_sorted, want, "exactly the records after the commit");
}

#[test]
fn two_subscribers_split_the_partitions_and_one_takes_over() {
    let b = Broker::start(2);
    Connection::connect(b.addr).unwrap().create_topic("c2", 4).unwrap();
    let mut a = Consumer::subscribe(config(&b, Some("split")), "c2").unwrap();
    assert_eq!(a.assignment(), vec![0, 1, 2, 3]);
    let c = Consumer::subscribe(config(&b, Some("split")), "c2").unwrap();
    // a learns of the new member at its next heartbeat.
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.assignment().len() != 2 && Instant::now() < deadline {
        a.poll(Duration::from_millis(100)).unwrap();
    }
    let (pa, pc) = (a.assignment(), c.assignment());
    assert_eq!((pa.len(), pc.len()), (2, 2), "{pa:?} {pc:?}");
    assert!(pa.iter().all(|p| !pc.contains(p)));
    c.close().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.assignment().len() != 4 && Instant::now() < deadline {
        a.poll(Duration::from_millis(100)).unwrap();
    }
    assert_eq!(a.assignment(), vec![0, 1, 2, 3], "the remaining member owns every partition");
}

#[test]
fn admin_creates_lists_describes_and_deletes() {
    use shardlog::client::admin::Admin;
    let b = Broker::start(2);
    let addr = b.addr.to_string();
    let mut admin = Admin::connect(&[&addr]).unwrap();
    assert!(admin.create_topic("adm", 4, 1, &[("retention.ms", "60000")]).unwrap());
    assert!(!admin.create_topic("adm", 4, 1, &[]).unwrap(), "a second create says it existed");
    assert_eq!(admin.list_topics().unwrap(), vec!["adm".to_string()]);
    let t = admin.describe_topic("adm").unwrap().unwrap();
    assert_eq!((t.partitions.len(), t.configs.clone()), (4, vec![("retention.ms".to_string(), "60000".to_string())]));
    let (brokers, _) = admin.cluster().unwrap();
    assert_eq!((brokers.len(), brokers[0].shards), (1, 2));
    admin.delete_topic("adm").unwrap();
    assert!(admin.describe_topic("adm").unwrap().is_none());
}

#[test]
fn a_consumer_rides_out_a_broker_restart() {
    let tmp = common::temp_dir();
    let mut b = Broker::start_in(tmp.path(), 2, &[]);
    let addr = b.addr;
    Connection::connect(addr).unwrap().create_topic("ride", 2).unwrap();
    produce(&b, "ride", 50);
    let mut c = Consumer::assign(config(&b, Some("rider")), "ride", &[]).unwrap();
    assert_eq!(drain(&mut c, 50).len(), 50);
    assert_eq!(b.terminate().code(), Some(0));
    let b = Broker::start_listening(None, tmp.path(), 2, &addr.to_string(), &[]);
    produce(&b, "ride", 20);
    assert_eq!(drain(&mut c, 20).len(), 20, "the consumer reconnects and goes on where it was");
}
