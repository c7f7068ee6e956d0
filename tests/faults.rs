//! The faults a cluster meets in its first week, over real broker
//! processes: restarts straight after SIGKILL, more shards than cores,
//! a full disk, brokers restarting under consumers, controlled shutdown.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::disk::SmallDisk;
use common::{batch_of, reserved_port, temp_dir, Broker};
use shardlog::client::consumer::{Consumer, ConsumerConfig, OffsetReset, StartFrom};
use shardlog::client::producer::{Acks, Producer, ProducerConfig, ProducerRecord};
use shardlog::client::raw::Connection;
use shardlog::protocol::ErrorCode;

fn online_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A supervisor restarts a broker the moment it died: the dead process's
/// listener lingers in the kernel's table for a moment after it was
/// reaped, and that must not read as "another broker listens here".
#[test]
fn a_broker_killed_with_sigkill_restarts_at_once_on_its_port() {
    let dir = temp_dir();
    let listen = format!("127.0.0.1:{}", reserved_port());
    let mut b = Broker::start_listening(None, dir.path(), 1, &listen, &[]);
    assert_eq!(b.client().create_topic("t", 1), ErrorCode::None);
    for round in 0..5 {
        let mut c = b.client();
        let (err, _) = c.produce("t", 0, &batch_of(&[format!("m{round}").as_bytes()]), Acks::All);
        assert_eq!(err, ErrorCode::None);
        drop(c);
        b.kill9();
        // No pause: what a supervisor does. `start_listening` panics with
        // the broker's output if it refuses to start.
        b = Broker::start_listening(None, dir.path(), 1, &listen, &[]);
        assert_eq!(b.addr.to_string(), listen, "round {round}");
    }
    let values = b.client().fetch_all_values("t", 0, 0);
    let want: Vec<Vec<u8>> = (0..5).map(|r| format!("m{r}").into_bytes()).collect();
    assert_eq!(values, want, "every acknowledged record is there");
}

#[test]
fn more_shards_than_cores_is_refused_with_the_override_named() {
    let dir = temp_dir();
    let shards = (online_cores() + 1).to_string();
    // `refused` fails the test if the broker starts serving instead.
    let (status, err) = Broker::refused_with(dir.path(), &["--listen", "127.0.0.1:0", "--shards", &shards]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("--shards {shards}")) && err.contains("--allow-more-shards-than-cores"), "{err}");
}

#[test]
fn a_data_directory_in_another_format_is_refused_with_what_to_do() {
    // A new directory gets the format this release writes, and starts again.
    let dir = temp_dir();
    let mut b = Broker::start_in(dir.path(), 1, &[]);
    assert_eq!(b.client().create_topic("t", 1), ErrorCode::None);
    assert!(b.terminate().success());
    let format = std::fs::read_to_string(dir.path().join("format")).unwrap();
    let version: u32 = format.strip_prefix("shardlog-data-format ").and_then(|v| v.trim_end().parse().ok()).unwrap_or_else(|| panic!("{format:?}"));
    assert!(Broker::start_in(dir.path(), 1, &[]).terminate().success());
    // One from another release is refused, saying what to do; so is a
    // damaged format file. Neither is changed.
    std::fs::write(dir.path().join("format"), "shardlog-data-format 99\n").unwrap();
    let (status, err) = Broker::refused_with(dir.path(), &["--listen", "127.0.0.1:0", "--shards", "1"]);
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("format 99") && err.contains(&format!("reads format {version}")) && err.contains("empty data directory"), "{err}");
    std::fs::write(dir.path().join("format"), "garbage").unwrap();
    let (_, err) = Broker::refused_with(dir.path(), &["--listen", "127.0.0.1:0", "--shards", "1"]);
    assert!(err.contains("is damaged"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.path().join("format")).unwrap(), "garbage");
    // A directory that holds data from before the file existed is in
    // format 1, and refused the same way; nothing is written into it.
    std::fs::remove_file(dir.path().join("format")).unwrap();
    let (_, err) = Broker::refused_with(dir.path(), &["--listen", "127.0.0.1:0", "--shards", "1"]);
    assert!(err.contains("format 1 ") && err.contains("empty data directory"), "{err}");
    assert!(!dir.path().join("format").exists());
}

// ---- brokers restarting under clients -------------------------------------

/// The index of the broker whose address is `addr`.
fn node_at(c: &Cluster, addr: &str) -> usize {
    (0..3).find(|&i| c.nodes[i].listen == addr).unwrap_or_else(|| panic!("{addr} is none of the brokers"))
}

/// A commit made while the group's coordinator is down waits for it, as
/// a poll waits for a partition's new leader, rather than failing after a
/// few seconds of its own.
#[test]
fn a_commit_rides_through_an_outage_of_the_coordinator_longer_than_five_seconds() {
    let mut c = Cluster::start(None, false);
    c.create("orders", 1);
    let lines: String = (0..8).map(|i| format!("o{i}\n")).collect();
    let o = common::cli(c.nodes[0].broker.as_ref().unwrap(), &["produce", "--topic", "orders"], Some(lines.as_bytes()));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let bootstrap = c.bootstrap();
    let config =
        || ConsumerConfig { bootstrap: bootstrap.clone(), group: Some("g".into()), start: StartFrom::Earliest, auto_commit: false, ..Default::default() };
    let mut consumer = Consumer::assign(config(), "orders", &[0]).unwrap();
    consumer.commit_offsets(&BTreeMap::from([(0, 2)])).expect("a commit with every broker up");

    let coordinator = Connection::connect_any(&c.bootstrap()).unwrap().find_coordinator("g").unwrap().expect("a coordinator");
    let dead = node_at(&c, &coordinator);
    c.nodes[dead].broker.as_mut().unwrap().kill9();
    let killed = Instant::now();
    let outage = Duration::from_secs(7);
    let committed = std::thread::scope(|s| {
        let commit = s.spawn(|| consumer.commit_offsets(&BTreeMap::from([(0, 4)])));
        std::thread::sleep(outage.saturating_sub(killed.elapsed()));
        c.start_node(dead);
        commit.join().unwrap()
    });
    assert!(committed.is_ok(), "the commit gave up after {} ms: {committed:?}\n{}", killed.elapsed().as_millis(), c.logs());
    assert!(killed.elapsed() >= outage, "the commit cannot have been stored while the coordinator was down");
    drop(consumer);

    // The group goes on after what was committed during the outage.
    let mut next = Consumer::assign(config(), "orders", &[0]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let first = loop {
        if let Some(r) = next.poll(Duration::from_millis(200)).unwrap().first() {
            break r.offset;
        }
        assert!(Instant::now() < deadline, "nothing to read after the commit");
    };
    assert_eq!(first, 4);
}

/// One acknowledged record: when, its offset, its value.
type Ack = (Instant, i64, String);

/// What a client saw of a rolling restart.
#[derive(Debug, Default)]
struct Roll {
    acknowledged: usize,
    lost: usize,
    consumed: usize,
    skipped: usize,
    /// The longest time between two acknowledgements, per partition.
    longest_gap_ms: Vec<u128>,
}

/// A broker stopped with SIGTERM handed everything over before it exited:
/// the quorum fenced it (its partitions led elsewhere, its place in their
/// ISRs given up) and, if it was the controller, another voter leads the
/// quorum. Without a controlled shutdown none of this happens until its
/// session times out (2.5 s); the survivors' copies may apply the committed
/// change a moment after the stopped broker did, hence the short wait.
fn handed_over_before_exit(c: &Cluster, stopped: usize) {
    let id = stopped as i32 + 1;
    let survivors: Vec<String> = (0..3).filter(|&j| j != stopped).map(|j| c.nodes[j].listen.clone()).collect();
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let info = Connection::connect_any(&survivors).and_then(|mut a| a.cluster_info(Some(&["roll"]))).expect("cluster info through a survivor");
        let fenced = info.brokers.iter().any(|b| b.node_id == id && b.fenced);
        let leads = info.topics.iter().flat_map(|t| &t.partitions).any(|p| p.leader == id || p.isr.contains(&id));
        if fenced && !leads && info.controller != id {
            return;
        }
        assert!(Instant::now() < deadline, "broker {id} exited before it handed over: {info:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Restarts each broker of three in turn with SIGTERM under a producer
/// with acks=all (one thread a partition) and a group consumer, and
/// counts what they saw. The consumer must never fail and never skip an
/// offset; every acknowledged record must be stored at its offset.
fn rolling_restart(partitions: u32) -> Roll {
    let mut c = Cluster::start(None, false);
    c.create("roll", partitions);
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Vec<Ack>>>> = Arc::new(Mutex::new(vec![Vec::new(); partitions as usize]));
    let producer =
        Arc::new(Producer::connect(ProducerConfig { bootstrap: c.bootstrap(), acks: Acks::All, linger: Duration::ZERO, ..Default::default() }).unwrap());
    let senders: Vec<_> = (0..partitions)
        .map(|p| {
            let (stop, acked, producer) = (stop.clone(), acked.clone(), producer.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let value = format!("p{p}-{seq}");
                    let r = producer
                        .send(ProducerRecord { topic: "roll".into(), partition: Some(p), value: Some(value.clone().into_bytes()), ..Default::default() })
                        .and_then(|d| d.wait());
                    if let Ok(md) = r {
                        acked.lock().unwrap()[p as usize].push((Instant::now(), md.offset, value));
                    }
                }
            })
        })
        .collect();
    let consumed: Arc<Mutex<BTreeMap<u32, Vec<i64>>>> = Arc::default();
    let consumer = {
        let (stop, consumed, bootstrap) = (stop.clone(), consumed.clone(), c.bootstrap());
        std::thread::spawn(move || {
            let cfg = ConsumerConfig { bootstrap, group: Some("roll-g".into()), start: StartFrom::Earliest, ..Default::default() };
            let mut consumer = Consumer::subscribe(cfg, "roll").unwrap();
            let mut quiet = 0;
            while quiet < 15 {
                let got = consumer.poll(Duration::from_millis(200)).expect("the group consumer rides through the restarts");
                quiet = if got.is_empty() && stop.load(Ordering::Relaxed) { quiet + 1 } else { 0 };
                let mut seen = consumed.lock().unwrap();
                for r in got {
                    seen.entry(r.partition).or_default().push(r.offset);
                }
            }
            consumer.close().unwrap();
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..3 {
        let status = c.nodes[i].broker.as_mut().unwrap().terminate();
        assert!(status.success(), "broker {} did not stop cleanly: {status}\n{}", i + 1, c.logs());
        handed_over_before_exit(&c, i);
        // Down as long as an upgrade takes (a new binary, a container
        // restarted): longer than the brokers' session timeout.
        std::thread::sleep(Duration::from_secs(3));
        c.start_node(i);
        assert!(c.settle(Duration::from_secs(30)), "the cluster did not settle after restarting broker {}\n{}", i + 1, c.logs());
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    consumer.join().unwrap();

    let acked = acked.lock().unwrap().clone();
    let consumed = consumed.lock().unwrap().clone();
    let mut roll = Roll::default();
    let mut reader = Consumer::assign(
        ConsumerConfig { bootstrap: c.bootstrap(), start: StartFrom::Earliest, offset_reset: OffsetReset::None, auto_commit: false, ..Default::default() },
        "roll",
        &(0..partitions).collect::<Vec<_>>(),
    )
    .unwrap();
    let want: usize = acked.iter().map(|a| a.len()).sum();
    let mut stored: BTreeMap<(u32, i64), Vec<u8>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while stored.len() < want && Instant::now() < deadline {
        for r in reader.poll(Duration::from_millis(200)).unwrap() {
            stored.insert((r.partition, r.offset), r.value.unwrap_or_default());
        }
    }
    for (p, acks) in acked.iter().enumerate() {
        roll.acknowledged += acks.len();
        roll.lost += acks.iter().filter(|(_, o, v)| stored.get(&(p as u32, *o)).map(Vec::as_slice) != Some(v.as_bytes())).count();
        roll.longest_gap_ms.push(acks.windows(2).map(|w| (w[1].0 - w[0].0).as_millis()).max().unwrap_or(0));
        let offsets = consumed.get(&(p as u32)).cloned().unwrap_or_default();
        let mut distinct: Vec<i64> = offsets.clone();
        distinct.sort_unstable();
        distinct.dedup();
        roll.consumed += distinct.len();
        // A skip: the consumer moved past offsets it never returned. A
        // repeat (offsets returned again after a rejoin) is allowed.
        let mut high = -1i64;
        for o in offsets {
            if o > high + 1 && high >= 0 {
                roll.skipped += (o - high - 1) as usize;
            }
            high = high.max(o);
        }
        if distinct.first().is_some_and(|&f| f > 0) {
            roll.skipped += distinct[0] as usize;
        }
    }
    roll
}

#[test]
fn a_rolling_restart_loses_and_skips_nothing() {
    let roll = rolling_restart(3);
    eprintln!(
        "rolling restart: acknowledged {}, lost {}, consumed {}, skipped {}, longest gap in acknowledgements per partition {:?} ms",
        roll.acknowledged, roll.lost, roll.consumed, roll.skipped, roll.longest_gap_ms
    );
    assert!(roll.acknowledged > 0);
    assert_eq!(roll.lost, 0, "{roll:?}");
    assert_eq!(roll.skipped, 0, "{roll:?}");
    assert!(roll.consumed >= roll.acknowledged, "{roll:?}");
}

// ---- fencing on restart ---------------------------------------------------

/// The whole cluster is killed and restarted at once, so there is no
/// quorum for a moment: no broker may acknowledge acks=all in the epoch it
/// led before the crash (a host crash could have cost it a synced tail the
/// followers acknowledged under that same epoch). The first batch any
/// broker acknowledges after the restart carries a newer epoch.
#[test]
fn after_a_whole_cluster_restart_nothing_is_acknowledged_in_an_epoch_led_before() {
    let mut c = Cluster::start(None, false);
    c.create("epochs", 1);
    let mut admin = Connection::connect_any(&c.bootstrap()).unwrap();
    let before = admin.cluster_info(Some(&["epochs"])).unwrap().topics[0].partitions[0].clone();
    drop(admin);
    let leader = before.leader as usize - 1;
    let (err, _) = common::Client::connect(c.nodes[leader].broker.as_ref().unwrap().addr).produce("epochs", 0, &batch_of(&[b"before"]), Acks::All);
    assert_eq!(err, ErrorCode::None);

    for i in 0..3 {
        c.nodes[i].broker.as_mut().unwrap().kill9();
    }
    // The old leader first, so it serves before anyone else could elect.
    for i in [leader, (leader + 1) % 3, (leader + 2) % 3] {
        c.start_node(i);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let (at, offset) = 'acked: loop {
        for i in [leader, (leader + 1) % 3, (leader + 2) % 3] {
            let mut client = common::Client::connect(c.nodes[i].broker.as_ref().unwrap().addr);
            if let (ErrorCode::None, offset) = client.produce("epochs", 0, &batch_of(&[b"after"]), Acks::All) {
                break 'acked (i, offset);
            }
        }
        assert!(Instant::now() < deadline, "nothing acknowledged within 30 s of the restart\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(5));
    };
    let (err, _, bytes) = common::Client::connect(c.nodes[at].broker.as_ref().unwrap().addr).fetch("epochs", 0, offset, 0);
    assert_eq!(err, ErrorCode::None);
    let (_, info) = shardlog::record::batches(&bytes).next().expect("the acknowledged batch").unwrap();
    assert_eq!(info.base_offset, offset);
    assert!(
        info.leader_epoch > before.leader_epoch,
        "broker {} acknowledged at offset {offset} in epoch {}, the epoch broker {} led before the crash",
        at + 1,
        info.leader_epoch,
        leader + 1
    );
}

// ---- a full disk ----------------------------------------------------------

/// Every value of a partition, with its offset, read through fetch.
fn offsets_and_values(c: &mut common::Client, topic: &str) -> Vec<(i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let (err, _, bytes) = c.fetch(topic, 0, offset, 0);
        assert_eq!(err, ErrorCode::None);
        if bytes.is_empty() {
            return out;
        }
        for b in shardlog::record::batches(&bytes) {
            let (start, info) = b.unwrap();
            for r in shardlog::record::RecordIter::new(&bytes[start..]).unwrap() {
                let r = r.unwrap();
                out.push((r.offset, r.value.unwrap().to_vec()));
            }
            offset = info.next_offset();
        }
    }
}

/// The data disk fills: produces are refused with StorageError and their
/// batches are never seen, the broker stays up and answers metadata, a
/// topic can still be created and deleted (the quorum log keeps a
/// reserve), and once space is freed writes resume by themselves; every
/// acknowledged record is kept at its offset, across a restart too.
#[test]
fn a_full_disk_refuses_writes_keeps_the_broker_up_and_recovers_when_space_is_freed() {
    let disk = match SmallDisk::new(96) {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED a_full_disk_...: cannot loop-mount a small ext4 here ({why})");
            return;
        }
    };
    let dir = disk.mnt.join("data");
    let mut b = Broker::start_in(&dir, 1, &[]);
    let cli = |b: &Broker, args: &[&str]| {
        let o = common::cli(b, args, None);
        (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)))
    };
    let mut c = b.client();
    assert_eq!(c.create_topic("keep", 1), ErrorCode::None);
    let (ok, out) = cli(&b, &["topics", "create", "--topic", "filler", "--config", "segment.bytes=4194304"]);
    assert!(ok, "{out}");
    let mut kept: Vec<(i64, Vec<u8>)> = Vec::new();
    for i in 0..10 {
        let v = format!("k{i}").into_bytes();
        let (err, offset) = c.produce("keep", 0, &batch_of(&[&v]), Acks::Leader);
        assert_eq!(err, ErrorCode::None);
        kept.push((offset, v));
    }

    // Fill the disk through `filler` until a produce is refused.
    let big = vec![7u8; 256 << 10];
    let mut filled: Vec<(i64, Vec<u8>)> = Vec::new();
    let mut refused = 0;
    for i in 0..1000u32 {
        let mut v = big.clone();
        v[..4].copy_from_slice(&i.to_le_bytes());
        let (err, offset) = c.produce("filler", 0, &batch_of(&[&v]), Acks::Leader);
        match err {
            ErrorCode::None => filled.push((offset, v)),
            ErrorCode::StorageError => {
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            e => panic!("a produce on a full disk answered {e:?}\n{}", b.log_text()),
        }
    }
    assert!(refused > 0, "the disk never filled");
    eprintln!("full disk: {} batches of 256 KiB acknowledged, then {refused} refused", filled.len());
    // Refused batches are never visible: the partition holds exactly what
    // was acknowledged, at its offsets.
    let short = |v: &[(i64, Vec<u8>)]| v.iter().map(|(o, v)| (*o, v.len(), v[..4].to_vec())).collect::<Vec<_>>();
    assert_eq!(short(&offsets_and_values(&mut c, "filler")), short(&filled), "what a consumer sees of the filled partition");

    // The broker is up: metadata, and topic changes through the quorum.
    let (ok, out) = cli(&b, &["topics", "list"]);
    assert!(ok && out.contains("filler"), "{out}\n{}", b.log_text());
    let (ok, out) = cli(&b, &["topics", "create", "--topic", "while-full"]);
    assert!(ok, "creating a topic on a full disk: {out}\n{}", b.log_text());
    let (ok, out) = cli(&b, &["topics", "delete", "--topic", "filler"]);
    assert!(ok, "deleting a topic to free space: {out}\n{}", b.log_text());

    // Space is back: writes resume without a restart.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut c = b.client();
    for i in 10..20 {
        let v = format!("k{i}").into_bytes();
        loop {
            let (err, offset) = c.produce("keep", 0, &batch_of(&[&v]), Acks::Leader);
            if err == ErrorCode::None {
                kept.push((offset, v));
                break;
            }
            assert_eq!(err, ErrorCode::StorageError);
            assert!(Instant::now() < deadline, "writes did not resume after space was freed\n{}", b.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let offsets: Vec<i64> = kept.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..20).collect::<Vec<i64>>(), "acknowledged offsets are contiguous, none given twice");
    assert_eq!(offsets_and_values(&mut c, "keep"), kept);
    drop(c);
    assert!(b.terminate().success());
    let b = Broker::start_in(&dir, 1, &[]);
    assert_eq!(offsets_and_values(&mut b.client(), "keep"), kept, "after a restart");
}
