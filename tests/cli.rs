//! The seed walkthrough through the real `shardlog` binary: list topics,
//! create `test`, produce four lines from stdin, consume them from the
//! beginning, byte for byte.

mod common;

use std::process::{Command, Output};

use common::Broker;

fn shardlog(b: &Broker, args: &[&str], stdin: Option<&[u8]>) -> Output {
    common::cli(b, args, stdin)
}

#[test]
fn the_seed_walkthrough() {
    let b = Broker::start(2);
    let out = shardlog(&b, &["topics", "list"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "test"));

    let out = shardlog(&b, &["topics", "create", "--topic", "test", "--partitions", "1", "--replication-factor", "1"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = shardlog(&b, &["topics", "list"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "test\n");

    let lines = "123\n测试数据\ntest data\n阿牛\n";
    let out = shardlog(&b, &["produce", "--topic", "test"], Some(lines.as_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Consumed twice, as the walkthrough does from two brokers.
    for _ in 0..2 {
        let out = shardlog(&b, &["consume", "--topic", "test", "--from-beginning", "--max-messages", "4"], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.stdout, lines.as_bytes());
    }
    // Without --max-messages, --timeout-ms ends it once nothing new comes.
    let out = shardlog(&b, &["consume", "--topic", "test", "--from-beginning", "--timeout-ms", "500", "--format", "json"], None);
    assert!(out.status.success());
    let json: Vec<serde_json::Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(json.len(), 4);
    assert_eq!(json[1]["value"], "测试数据");
    assert_eq!(json[3]["offset"], 3);
}

#[test]
fn errors_read_like_sentences() {
    let b = Broker::start(1);
    let out = shardlog(&b, &["produce", "--topic", "missing"], Some(b"x\n"));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("topic 'missing' does not exist") && err.contains("shardlog topics create"), "{err}");

    let out = shardlog(&b, &["topics", "create", "--topic", "t", "--replication-factor", "3"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("replication factor 3 is larger than the 1 broker(s)"));

    let out = Command::new(env!("CARGO_BIN_EXE_shardlog")).args(["topics", "list", "--bootstrap-server", "127.0.0.1:1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Is a broker running?"));
}

#[test]
fn keys_partition_and_describe() {
    let b = Broker::start(2);
    assert!(shardlog(&b, &["topics", "create", "--topic", "k", "--partitions", "3", "--config", "retention.ms=60000"], None).status.success());
    let out = shardlog(&b, &["topics", "describe", "--topic", "k"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Partitions: 3") && text.contains("retention.ms=60000"), "{text}");
    let input = "a:1\nb:2\na:3\nb:4\n";
    assert!(shardlog(&b, &["produce", "--topic", "k", "--key-separator", ":"], Some(input.as_bytes())).status.success());
    // Each key lands in one partition, in order.
    let mut by_partition = Vec::new();
    for p in 0..3 {
        let out = shardlog(&b, &["consume", "--topic", "k", "--partition", &p.to_string(), "--from-beginning", "--timeout-ms", "300"], None);
        by_partition.push(String::from_utf8(out.stdout).unwrap());
    }
    let all: String = by_partition.concat();
    assert_eq!(all.len(), "1\n2\n3\n4\n".len());
    for part in &by_partition {
        let v: Vec<&str> = part.lines().collect();
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(v, sorted, "order within a partition");
    }
    let out = shardlog(&b, &["cluster", "info"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shards: 2") && text.contains("k\tpartitions: 3"), "{text}");
}

#[test]
fn a_group_continues_where_it_committed_even_after_a_restart() {
    let tmp = common::temp_dir();
    let mut b = Broker::start_in(tmp.path(), 2, &[]);
    assert!(shardlog(&b, &["topics", "create", "--topic", "g", "--partitions", "2"], None).status.success());
    assert!(shardlog(&b, &["produce", "--topic", "g", "--partition", "0"], Some(b"m1\nm2\nm3\nm4\nm5\n")).status.success());
    let consume =
        |b: &Broker| shardlog(b, &["consume", "--topic", "g", "--group", "grp", "--from-beginning", "--max-messages", "2", "--timeout-ms", "2000"], None);
    let out = consume(&b);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"m1\nm2\n");
    let out = consume(&b);
    assert_eq!(out.stdout, b"m3\nm4\n", "the second run continues after the first");
    // The internal offsets topic is not listed.
    assert_eq!(shardlog(&b, &["topics", "list"], None).stdout, b"g\n");
    // Committed offsets survive a restart.
    assert_eq!(b.terminate().code(), Some(0));
    let b = Broker::start_in(tmp.path(), 2, &[]);
    assert!(b.log_text().contains("recovered committed offsets"), "{}", b.log_text());
    let out = consume(&b);
    assert_eq!(out.stdout, b"m5\n");
    // Another group starts on its own.
    let out = shardlog(&b, &["consume", "--topic", "g", "--group", "other", "--from-beginning", "--max-messages", "1"], None);
    assert_eq!(out.stdout, b"m1\n");
}
