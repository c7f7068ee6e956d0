//! Seeded chaos over three real brokers: producers with acks=all keep a
//! ledger of every acknowledged (partition, offset, payload) while rounds
//! of faults hit random brokers, leaders included: SIGKILL and restart
//! (after a pause, or at once), SIGKILL of the whole cluster and an
//! immediate restart, SIGSTOP and SIGCONT, cutting the link of the broker
//! that lives in its own network namespace, and filling the disk a
//! broker's data lives on (each has a small ext4 of its own where loop
//! devices can be used). At the end every acknowledged message must be
//! read back at its offset. Prints its seed; `SHARDLOG_CHAOS_SEED=<seed>`
//! replays the same faults (the brokers' timing is the machine's), and
//! `SHARDLOG_CHAOS_ROUNDS` sets the rounds (50 by default). Needs root for
//! the namespace, as the cluster tests do.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::Island;
use shardlog::client::consumer::{Consumer, ConsumerConfig, OffsetReset, StartFrom};
use shardlog::client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use shardlog::client::raw::Connection;

const TOPIC: &str = "chaos";
const PARTITIONS: u32 = 3;

/// splitmix64: the faults of a seed, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One acknowledged message.
#[derive(Debug, Clone)]
struct Acked {
    partition: u32,
    offset: i64,
    value: Vec<u8>,
}

#[test]
fn acknowledged_messages_survive_kills_pauses_and_cuts_of_any_broker() {
    let seed: u64 = std::env::var("SHARDLOG_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 ^ u64::from(std::process::id()));
    let rounds: u32 = std::env::var("SHARDLOG_CHAOS_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    eprintln!("chaos seed {seed}, {rounds} rounds (replay with SHARDLOG_CHAOS_SEED={seed})");
    let mut rng = Rng(seed);

    let island = Island::new();
    let mut c = Cluster::start_with(Some(&island), true, Some(192));
    let disks = c.nodes.iter().all(|n| n.disk.is_some());
    c.create(TOPIC, PARTITIONS);

    // One producer per partition, each waiting for every acknowledgement;
    // the faults begin once all are connected.
    let connected = Arc::new(std::sync::Barrier::new(PARTITIONS as usize + 1));
    let ledger: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            let (ledger, refused, stop, bootstrap, connected) = (ledger.clone(), refused.clone(), stop.clone(), c.bootstrap(), connected.clone());
            std::thread::spawn(move || {
                let producer = Producer::connect(ProducerConfig { bootstrap, acks: Acks::All, linger: Duration::ZERO, ..Default::default() }).unwrap();
                connected.wait();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let value = format!("{seed}:{p}:{seq}").into_bytes();
                    seq += 1;
                    let r = producer
                        .send(ProducerRecord { topic: TOPIC.into(), partition: Some(p), value: Some(value.clone()), ..Default::default() })
                        .and_then(|d| d.wait());
                    match r {
                        Ok(md) => ledger.lock().unwrap().push(Acked { partition: md.partition, offset: md.offset, value }),
                        Err(_) => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    connected.wait();

    let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
    for round in 0..rounds {
        let victim = rng.below(3) as usize;
        let fault = rng.below(6);
        let pause = Duration::from_millis(200 + rng.below(2800));
        let before = ledger.lock().unwrap().len();
        let what = match fault {
            1 => {
                c.signal(victim, libc::SIGSTOP);
                std::thread::sleep(pause);
                c.signal(victim, libc::SIGCONT);
                "pause"
            }
            2 => {
                // Only broker 1 lives behind a link of its own.
                island.cut();
                std::thread::sleep(pause);
                island.heal();
                "cut"
            }
            3 => {
                // A power cut of the whole cluster, and a supervisor that
                // restarts every broker at once.
                for i in 0..3 {
                    c.nodes[i].broker.as_mut().unwrap().kill9();
                }
                for i in 0..3 {
                    c.start_node(i);
                }
                "kill all, restart at once"
            }
            4 => {
                c.nodes[victim].broker.as_mut().unwrap().kill9();
                c.start_node(victim);
                "kill, restart at once"
            }
            5 if disks => {
                let disk = c.nodes[victim].disk.as_ref().unwrap();
                disk.fill().unwrap();
                std::thread::sleep(pause);
                disk.unfill();
                "fill the disk of"
            }
            _ => {
                c.nodes[victim].broker.as_mut().unwrap().kill9();
                std::thread::sleep(pause);
                c.start_node(victim);
                "kill"
            }
        };
        *counts.entry(what).or_default() += 1;
        let target = if what == "cut" { 1 } else { victim + 1 };
        let target = if what.starts_with("kill all") { "every".to_string() } else { target.to_string() };
        let settled = c.settle(Duration::from_secs(30));
        let acked = ledger.lock().unwrap().len();
        let held = if what.ends_with("at once") { 0 } else { pause.as_millis() };
        eprintln!("round {round}: {what} broker {target} for {held} ms; {} acknowledged during the round, {acked} in all", acked - before);
        assert!(settled, "the cluster did not recover within 30 s of round {round}\n{}", c.logs());
    }
    // A last stretch without faults, so the ledger ends with a healthy cluster.
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for p in producers {
        p.join().unwrap();
    }
    let ledger = ledger.lock().unwrap().clone();
    assert!(c.settle(Duration::from_secs(30)), "the cluster did not settle at the end\n{}", c.logs());

    // Read every partition back from the start through its leader.
    let mut stored: HashMap<(u32, i64), Vec<u8>> = HashMap::new();
    for p in 0..PARTITIONS {
        let want = ledger.iter().filter(|a| a.partition == p).map(|a| a.offset).max().unwrap_or(-1);
        let cfg =
            ConsumerConfig { bootstrap: c.bootstrap(), start: StartFrom::Earliest, offset_reset: OffsetReset::None, auto_commit: false, ..Default::default() };
        let mut consumer = Consumer::assign(cfg, TOPIC, &[p]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut next = 0i64;
        while next <= want && Instant::now() < deadline {
            for r in consumer.poll(Duration::from_millis(500)).unwrap() {
                assert_eq!(r.offset, next, "partition {p} skips from {next} to {}", r.offset);
                stored.insert((p, r.offset), r.value.unwrap_or_default());
                next = r.offset + 1;
            }
        }
    }

    // Lost: an acknowledged message not at its offset. Duplicated: an
    // acknowledged payload stored at more than one offset. Reordered: a
    // producer's acknowledged messages stored out of the order it sent them.
    let mut where_stored: HashMap<&[u8], u32> = HashMap::new();
    for v in stored.values() {
        *where_stored.entry(v.as_slice()).or_default() += 1;
    }
    let lost: Vec<&Acked> = ledger.iter().filter(|a| stored.get(&(a.partition, a.offset)) != Some(&a.value)).collect();
    let duplicated = ledger.iter().filter(|a| where_stored.get(a.value.as_slice()).is_some_and(|&n| n > 1)).count();
    let mut reordered = 0;
    for p in 0..PARTITIONS {
        let offsets: Vec<i64> = ledger.iter().filter(|a| a.partition == p).map(|a| a.offset).collect();
        reordered += offsets.windows(2).filter(|w| w[1] <= w[0]).count();
    }
    eprintln!(
        "chaos seed {seed}: {rounds} rounds ({counts:?}); {} acknowledged, {} not acknowledged (refused or timed out); lost {}, duplicated {duplicated}, reordered {reordered}",
        ledger.len(),
        refused.load(Ordering::Relaxed),
        lost.len()
    );
    assert!(ledger.len() as u32 >= rounds * 10, "too few acknowledged messages ({}) for the test to mean anything\n{}", ledger.len(), c.logs());
    assert!(lost.is_empty(), "seed {seed}: {} acknowledged messages lost, first {:?}\n{}", lost.len(), &lost[..lost.len().min(5)], c.logs());
    assert_eq!(reordered, 0, "seed {seed}: acknowledged messages stored out of order");
    // The producer is idempotent (the SDK's default): a batch sent again
    // after a lost answer is stored once.
    assert_eq!(duplicated, 0, "seed {seed}: acknowledged messages stored twice or more\n{}", c.logs());
}

/// With the default session timeout, SIGKILL of a partition's leader: the
/// SDK producer (acks=all) and consumer, running across it, go on through
/// the new leader by themselves, and the console producer started right
/// after the kill stores everything it was given. Prints how long after
/// the kill the first message was acknowledged again (the failover time a
/// client sees; BENCHMARKS.md quotes it).
#[test]
fn clients_follow_a_killed_leader_to_its_successor() {
    let mut c = Cluster::start(None, false);
    c.create("fo", 1);
    let acked: Arc<Mutex<Vec<(Instant, i64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (acked, stop, bootstrap) = (acked.clone(), stop.clone(), c.bootstrap());
        std::thread::spawn(move || {
            let producer = Producer::connect(ProducerConfig { bootstrap, acks: Acks::All, linger: Duration::ZERO, ..Default::default() }).unwrap();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                let r = producer
                    .send(ProducerRecord { topic: "fo".into(), partition: Some(0), value: Some(format!("m{seq}").into_bytes()), ..Default::default() })
                    .and_then(|d| d.wait());
                if let Ok(md) = r {
                    acked.lock().unwrap().push((Instant::now(), md.offset));
                }
            }
        })
    };
    let consumed: Arc<Mutex<Vec<i64>>> = Arc::default();
    let consumer = {
        let (consumed, stop, bootstrap) = (consumed.clone(), stop.clone(), c.bootstrap());
        std::thread::spawn(move || {
            let cfg = ConsumerConfig { bootstrap, start: StartFrom::Earliest, auto_commit: false, ..Default::default() };
            let mut consumer = Consumer::assign(cfg, "fo", &[0]).unwrap();
            // Reads on for a while after the producer stops.
            let mut quiet = 0;
            while quiet < 10 {
                let got = consumer.poll(Duration::from_millis(200)).expect("the consumer follows the new leader");
                quiet = if got.is_empty() && stop.load(Ordering::Relaxed) { quiet + 1 } else { 0 };
                consumed.lock().unwrap().extend(got.iter().map(|r| r.offset));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(1));
    let info = Connection::connect_any(&c.bootstrap()).unwrap().cluster_info(Some(&["fo"])).unwrap();
    let leader = info.topics[0].partitions[0].leader as usize - 1;
    let was_controller = info.controller as usize == leader + 1;
    let before = acked.lock().unwrap().len();
    assert!(before > 0, "nothing acknowledged before the kill\n{}", c.logs());
    c.nodes[leader].broker.as_mut().unwrap().kill9();
    let killed = Instant::now();

    // The console producer, started at once, rides out the failover.
    let survivor = c.nodes[(leader + 1) % 3].broker.as_ref().unwrap();
    let lines: String = (0..500).map(|i| format!("cli{i}\n")).collect();
    let cli = common::cli(survivor, &["produce", "--topic", "fo", "--partition", "0"], Some(lines.as_bytes()));
    assert!(cli.status.success(), "the console producer did not ride out the failover: {}", String::from_utf8_lossy(&cli.stderr));

    let deadline = killed + Duration::from_secs(30);
    let first_after = loop {
        if let Some(&(t, _)) = acked.lock().unwrap().iter().find(|(t, _)| *t > killed) {
            break t;
        }
        assert!(Instant::now() < deadline, "no acknowledgement within 30 s of killing the leader\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "failover: the SDK producer's first acknowledgement came {} ms after SIGKILL of the leader{}",
        (first_after - killed).as_millis(),
        if was_controller { " (the controller too)" } else { "" }
    );
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    consumer.join().unwrap();
    let consumed = consumed.lock().unwrap().clone();
    let acked = acked.lock().unwrap().clone();
    assert!(consumed.windows(2).all(|w| w[1] == w[0] + 1), "the consumer skipped or repeated offsets across the failover");
    let seen: std::collections::HashSet<i64> = consumed.iter().copied().collect();
    let missing = acked.iter().filter(|(_, o)| !seen.contains(o)).count();
    assert_eq!(missing, 0, "{missing} acknowledged offsets never consumed\n{}", c.logs());
    assert!(consumed.len() >= acked.len() + 500, "the console producer's 500 lines are not all there");
}
