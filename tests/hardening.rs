//! What a hostile client, a careless operator and a client author in
//! another language found in the single broker; each test failed before
//! its fix.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::{batch_of, Broker, Client};
use shardlog::protocol::{fetch, produce, Acks, ErrorCode};
use shardlog::record;

fn shardlog(b: &Broker, args: &[&str], stdin: Option<&[u8]>) -> Output {
    common::cli(b, args, stdin)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A broker config file in `dir` with these TOML lines.
fn config_file(dir: &std::path::Path, toml: &str) -> String {
    let p = dir.join("broker.toml");
    std::fs::write(&p, toml).unwrap();
    p.display().to_string()
}

/// Opens `n` connections that each send a frame head announcing `announce`
/// bytes followed by `body` bytes of it, and then nothing more.
fn stalled_frames(b: &Broker, n: usize, announce: u32, body: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(b.addr).unwrap();
            let mut head = announce.to_le_bytes().to_vec();
            head.extend_from_slice(&64u32.to_le_bytes());
            s.write_all(&head).unwrap();
            s.write_all(&vec![0u8; body]).unwrap();
            s
        })
        .collect()
}

/// Sends `n` whole frames of `len` bytes that are not requests, each on its
/// own connection, and waits for each refusal.
fn full_frames(b: &Broker, n: usize, len: u32) {
    for _ in 0..n {
        let mut c = b.client();
        let mut frame = len.to_le_bytes().to_vec();
        frame.extend_from_slice(&8u32.to_le_bytes());
        frame.resize(len as usize + 4, 0xee);
        c.stream.write_all(&frame).unwrap();
        let r = c.recv().expect("an error response");
        assert_eq!(r.response().error(), ErrorCode::InvalidRequest);
    }
}

/// Settles the broker: a produce and a fetch on several connections, so
/// both shards have run their event loops since the last change.
fn round_trips(b: &Broker, topic: &str, n: usize) {
    for i in 0..n {
        let mut c = b.client();
        let v = format!("v{i}");
        assert_eq!(c.produce(topic, 0, &batch_of(&[v.as_bytes()]), Acks::Leader).0, ErrorCode::None);
        assert_eq!(c.fetch(topic, 0, 0, 0).0, ErrorCode::None);
    }
}

// ---- memory that a client can make the broker spend ----

#[test]
fn frame_heads_that_announce_the_largest_frame_cost_no_memory() {
    let b = Broker::start(2);
    let mut c = b.client();
    assert_eq!(c.create_topic("m", 1), ErrorCode::None);
    round_trips(&b, "m", 8);
    // A broker that has served large frames: glibc raises its mmap
    // threshold after freeing one, so later large allocations come from
    // the heap and a zeroed one is touched at once.
    full_frames(&b, 6, 16 << 20);
    std::thread::sleep(Duration::from_millis(300));
    let idle = b.rss_bytes();
    let conns = stalled_frames(&b, 100, 16 << 20, 0);
    std::thread::sleep(Duration::from_millis(500));
    // The broker keeps serving everyone else meanwhile.
    round_trips(&b, "m", 8);
    let loaded = b.rss_bytes();
    let grown = loaded.saturating_sub(idle);
    println!("RSS idle {} KiB, with 100 stalled 16 MiB frame heads {} KiB (+{} KiB)", idle / 1024, loaded / 1024, grown / 1024);
    assert!(grown < 4 << 20, "100 frame heads grew the broker by {} KiB", grown / 1024);
    drop(conns);
}

#[test]
fn partial_frames_are_bounded_by_the_shard_budget_and_time_out() {
    let tmp = common::temp_dir();
    let cfg = config_file(tmp.path(), "max_buffered_request_bytes_per_shard = 33554432\nrequest_read_timeout_ms = 2000\n");
    let b = Broker::start_in(&tmp.path().join("data"), 2, &["--config", &cfg]);
    let mut c = b.client();
    assert_eq!(c.create_topic("m", 1), ErrorCode::None);
    round_trips(&b, "m", 4);
    full_frames(&b, 6, 16 << 20);
    let idle = b.rss_bytes();
    // 40 clients each send 4 MiB of a 16 MiB frame and stall. Without a
    // budget each frame's 16 MiB buffer is taken at once (640 MiB); with
    // 32 MiB a shard at most 64 MiB are buffered and the other frames wait
    // unread in their sockets. Each client writes on its own thread, since
    // a client the broker does not read blocks in write.
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..40 {
        let (tx, addr) = (tx.clone(), b.addr);
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut frame = (16u32 << 20).to_le_bytes().to_vec();
            frame.extend_from_slice(&64u32.to_le_bytes());
            frame.resize(4 << 20, 0);
            let _ = s.write_all(&frame);
            let _ = tx.send(s);
        });
    }
    drop(tx);
    std::thread::sleep(Duration::from_millis(1000));
    let loaded = b.rss_bytes();
    let grown = loaded.saturating_sub(idle);
    println!("RSS idle {} KiB, with 40 stalled 4 MiB partial frames {} KiB (+{} KiB)", idle / 1024, loaded / 1024, grown / 1024);
    assert!(grown < 96 << 20, "partial frames grew the broker by {} KiB", grown / 1024);
    // Everyone else is served meanwhile.
    round_trips(&b, "m", 4);
    // A frame that does not arrive in time gives its budget back: every
    // stalled connection is closed in the end.
    let mut closed = 0;
    for mut s in rx {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buf = [0u8; 64];
        // An error response may come first, then the close.
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        closed += 1;
    }
    assert_eq!(closed, 40);
    assert!(b.log_text().contains("did not arrive"), "{}", b.log_text());
}

// ---- two brokers on one address ----

#[test]
fn a_second_broker_on_a_used_port_refuses_to_start() {
    let a = Broker::start(2);
    let other = common::temp_dir();
    let (status, err) = Broker::refused(other.path(), &a.addr.to_string(), &[]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("already in use"), "{err}");
    // The first broker still answers alone.
    let mut c = a.client();
    assert_eq!(c.create_topic("still-mine", 1), ErrorCode::None);
}

// ---- data directories that cannot keep data ----

#[test]
fn a_tmpfs_data_dir_is_refused_unless_the_operator_gives_up_durability() {
    let shm = tempfile::tempdir_in("/dev/shm").expect("a tmpfs at /dev/shm");
    let (status, err) = Broker::refused(&shm.path().join("data"), "127.0.0.1:0", &[]);
    assert!(!status.success(), "{err}");
    assert!(err.contains("tmpfs") && err.contains("--allow-nondurable-data-dir"), "{err}");
    let b = Broker::start_in(&shm.path().join("data"), 1, &["--allow-nondurable-data-dir"]);
    assert!(b.log_text().contains("not durable"), "{}", b.log_text());
}

#[test]
fn a_data_dir_whose_parents_are_missing_is_created_and_said_so() {
    let tmp = common::temp_dir();
    let dir = tmp.path().join("a/b/data");
    let b = Broker::start_in(&dir, 1, &[]);
    assert!(b.log_text().contains("created the data directory"), "{}", b.log_text());
    assert!(dir.join("topics").is_dir());
}

// ---- batches that are stored but cannot be read ----

fn produce_error(c: &mut Client, topic: &str, batch: &[u8]) -> (ErrorCode, String) {
    let corr = c.send_produce(topic, 0, batch, Acks::All);
    let r = c.recv().unwrap();
    assert_eq!(r.response().correlation_id(), corr);
    let resp: produce::Response = r.body();
    let p = &resp.topics[0].partitions[0];
    (p.error, p.error_message.clone().unwrap_or_default())
}

#[test]
fn an_undecodable_batch_is_refused_and_the_partition_stays_readable() {
    let b = Broker::start(1);
    let mut c = b.client();
    assert_eq!(c.create_topic("p", 1), ErrorCode::None);
    assert_eq!(c.produce("p", 0, &batch_of(&[b"before"]), Acks::All), (ErrorCode::None, 0));

    // Garbage records behind a valid header and CRC.
    let mut garbage = batch_of(&[b"xxxxxxxxxxxxxxxx", b"yyyyyyyyyyyyyyyy"]);
    for b in &mut garbage[record::HEADER_BYTES..] {
        *b = 0xff;
    }
    record::seal(&mut garbage);
    assert!(record::validate(&garbage).is_ok(), "the header and CRC pass");
    let (code, msg) = produce_error(&mut c, "p", &garbage);
    assert_eq!(code, ErrorCode::CorruptBatch, "{msg}");
    assert!(msg.contains("record"), "{msg}");

    // One byte short, CRC recomputed.
    let mut short = batch_of(&[b"one", b"two"]);
    short.pop();
    record::seal(&mut short);
    assert!(record::validate(&short).is_ok(), "the header and CRC pass");
    assert_eq!(produce_error(&mut c, "p", &short).0, ErrorCode::CorruptBatch);

    // Nothing of them was stored: every consumer reads on past them.
    assert_eq!(c.produce("p", 0, &batch_of(&[b"after"]), Acks::All), (ErrorCode::None, 1));
    assert_eq!(c.fetch_all_values("p", 0, 0), vec![b"before".to_vec(), b"after".to_vec()]);
}

// ---- settings that mean what the README says ----

fn log_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".log")).count()
}

#[test]
fn minus_one_means_no_limit_and_errors_name_the_setting_as_typed() {
    let b = Broker::start(1);
    let create = |topic: &str, config: &str| shardlog(&b, &["topics", "create", "--topic", topic, "--config", config], None);
    let out = create("nolimit", "segment.ms=-1");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut c = b.client();
    for i in 0..30 {
        c.produce("nolimit", 0, &batch_of(&[format!("m{i}").as_bytes()]), Acks::Leader);
    }
    assert_eq!(log_files(&b.dir.join("topics/nolimit-0")), 1, "segment.ms=-1 must not roll");

    let out = create("big", "segment.bytes=-1");
    assert!(out.status.success(), "{}", text(&out.stderr));

    for (setting, fragment) in
        [("segment.ms=0", "segment.ms"), ("segment.bytes=100", "segment.bytes"), ("retention.ms=0", "retention.ms"), ("retention.bytes=-7", "retention.bytes")]
    {
        let out = create("refused", setting);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{setting}: {err}");
        assert!(err.contains(fragment) && !err.contains("segment_max") && !err.contains("_ms") && !err.contains("_bytes"), "{setting}: {err}");
    }
}

#[test]
fn zero_shards_and_zero_replicas_are_explained() {
    let help = Command::new(env!("CARGO_BIN_EXE_shardlog")).args(["broker", "--help"]).output().unwrap();
    assert!(text(&help.stdout).contains("0 means one per online core"), "{}", text(&help.stdout));
    let b = Broker::start(1);
    let out = shardlog(&b, &["topics", "create", "--topic", "t", "--replication-factor", "0"], None);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("at least 1") && !err.contains("larger than"), "{err}");
}

#[test]
fn a_line_without_the_key_separator_is_a_usage_error_that_says_what_was_sent() {
    let b = Broker::start(1);
    assert!(shardlog(&b, &["topics", "create", "--topic", "k"], None).status.success());
    let out = shardlog(&b, &["produce", "--topic", "k", "--key-separator", ":"], Some(b"a:1\nb:2\nno separator\nc:3\n"));
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("line 3") && err.contains("2 message(s) before it were sent"), "{err}");
    let out = shardlog(&b, &["consume", "--topic", "k", "--from-beginning", "--timeout-ms", "1000"], None);
    assert_eq!(text(&out.stdout), "1\n2\n");
}

#[test]
fn verifier_errors_read_as_one_line() {
    let b = Broker::start(1);
    let mut s = TcpStream::connect(b.addr).unwrap();
    // A frame whose message is not a flatbuffer.
    let mut frame = 12u32.to_le_bytes().to_vec();
    frame.extend_from_slice(&8u32.to_le_bytes());
    frame.extend_from_slice(&[0xee; 8]);
    s.write_all(&frame).unwrap();
    let mut c = Client { stream: s, next: 1 };
    let r = c.recv().unwrap();
    let msg = r.response().error_message().unwrap_or_default().to_string();
    assert_eq!(r.response().error(), ErrorCode::InvalidRequest, "{msg}");
    assert!(!msg.is_empty() && !msg.ends_with('\n') && !msg.contains("\n\n"), "{msg:?}");
}

// ---- consumer groups below the log start ----

#[test]
fn a_group_whose_offset_was_deleted_by_retention_resets_and_goes_on() {
    let tmp = common::temp_dir();
    let cfg = config_file(tmp.path(), "retention_check_interval_ms = 100\n");
    let b = Broker::start_in(&tmp.path().join("data"), 1, &["--config", &cfg]);
    let out = shardlog(&b, &["topics", "create", "--topic", "r", "--config", "segment.bytes=4096", "--config", "retention.bytes=8192"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mut c = b.client();
    c.produce("r", 0, &batch_of(&[b"first", b"second"]), Acks::All);
    let out = shardlog(&b, &["consume", "--topic", "r", "--group", "g", "--from-beginning", "--max-messages", "1"], None);
    assert_eq!(text(&out.stdout), "first\n", "{}", text(&out.stderr));
    // Enough to roll many segments; retention then deletes the oldest.
    let value = vec![b'x'; 1000];
    for _ in 0..60 {
        c.produce("r", 0, &batch_of(&[&value]), Acks::All);
    }
    let mut conn = shardlog::client::raw::Connection::connect(b.addr.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while conn.list_offsets("r", &[(0, -2)]).unwrap()[0].2 <= 1 {
        assert!(Instant::now() < deadline, "retention never deleted the first segment");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = shardlog(&b, &["consume", "--topic", "r", "--group", "g", "--from-beginning", "--max-messages", "1", "--timeout-ms", "5000"], None);
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(text(&out.stdout).trim(), text(&value), "{err}");
    assert!(err.contains("out of range") && err.contains("earliest"), "{err}");
    // And the group goes on from there on the next run (retention may
    // have deleted its new position again meanwhile; then it resets too).
    c.produce("r", 0, &batch_of(&[b"last"]), Acks::All);
    let out = shardlog(&b, &["consume", "--topic", "r", "--group", "g", "--from-beginning", "--timeout-ms", "1500"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).ends_with("last\n"), "{}", text(&out.stdout));
}

#[test]
fn a_consumer_dropped_without_close_leaves_its_group() {
    use shardlog::client::consumer::{Consumer, ConsumerConfig, StartFrom};
    let b = Broker::start(1);
    let mut c = b.client();
    assert_eq!(c.create_topic("two", 2), ErrorCode::None);
    let config = ConsumerConfig {
        bootstrap: vec![b.addr.to_string()],
        group: Some("g".into()),
        start: StartFrom::Earliest,
        session_timeout_ms: 30_000,
        ..Default::default()
    };
    let first = Consumer::subscribe(config.clone(), "two").unwrap();
    assert_eq!(first.assignment(), vec![0, 1]);
    // What the console consumer does when it exits on an error.
    drop(first);
    let second = Consumer::subscribe(config, "two").unwrap();
    assert_eq!(second.assignment(), vec![0, 1], "the dropped member still holds partitions");
}

// ---- noise after a crash ----

#[test]
fn the_padding_of_the_last_block_after_sigkill_is_not_damage() {
    let tmp = common::temp_dir();
    let seg = common::produce_then_kill9(tmp.path(), "pad", 5);
    let size = std::fs::metadata(seg).unwrap().len();
    assert_eq!(size % 512, 0, "a direct-I/O segment ends on a block after a crash");
    let b = Broker::start_in(tmp.path(), 1, &[]);
    assert!(!b.log_text().contains("WARN"), "{}", b.log_text());
    let mut c = b.client();
    assert_eq!(c.fetch_all_values("pad", 0, 0).len(), 5);
    assert_eq!(c.produce("pad", 0, &batch_of(&[b"next"]), Acks::All), (ErrorCode::None, 5));
}

#[test]
fn fetch_behaves_as_protocol_md_says() {
    // schemas/PROTOCOL.md: a fetch always returns at least one whole batch,
    // and a fetch at an offset inside a batch returns it from its base.
    let b = Broker::start(1);
    let mut c = b.client();
    assert_eq!(c.create_topic("f", 1), ErrorCode::None);
    let big = vec![b'z'; 3000];
    c.produce("f", 0, &batch_of(&[&big, &big, &big]), Acks::All);
    let r = c.call(&fetch::Request::one_topic("f", vec![fetch::Partition { partition: 0, offset: 1, max_bytes: 100 }], 0, 1, 100), &[]);
    let info = record::validate(&r.payload).unwrap();
    assert_eq!((info.base_offset, info.record_count), (0, 3));
    // At the high watermark a fetch waits and comes back empty; past it,
    // OffsetOutOfRange with the bounds to reset to.
    assert_eq!(c.fetch("f", 0, 3, 50), (ErrorCode::None, 3, Vec::new()));
    let (err, hw, _) = c.fetch("f", 0, 4, 0);
    assert_eq!((err, hw), (ErrorCode::OffsetOutOfRange, 3));
}
