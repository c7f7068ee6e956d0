//! Stock Kafka clients against the broker's Kafka listener (the client
//! port; a connection is told Kafka's by its first bytes): kcat, on
//! librdkafka, lists brokers, produces the seed's lines with keys and
//! headers, and reads them back from the beginning; what kcat produced,
//! the native SDK reads byte for byte, and the reverse.
//!
//! Then the Python clients (`tests/clients/kafka_clients.py`):
//! confluent-kafka's AdminClient, producers and consumer, and
//! kafka-python's producer and CRC-checking consumer.
//!
//! kcat, confluent-kafka and kafka-python must be installed
//! (`scripts/test.sh` and CI install them).

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::cluster::Cluster;
use common::{batch_of, Broker};
use shardlog::client::producer::Acks;
use shardlog::protocol::ErrorCode;

const SEED: [&str; 4] = ["123", "测试数据", "test data", "阿牛"];

fn kcat(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("kcat could not be run ({e}): install it (apt-get install kcat), as scripts/test.sh does"));
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "kcat {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn kcat_lists_produces_and_consumes_the_seeds_lines_with_keys_and_headers() {
    let b = Broker::start(2);
    let addr = b.addr.to_string();
    let mut c = b.client();
    assert_eq!(c.create_topic("test", 1), ErrorCode::None);

    let listing = text(&kcat(&["-b", &addr, "-L"], None));
    assert!(listing.contains(&format!("broker 0 at {addr}")), "{listing}");
    assert!(listing.contains("topic \"test\" with 1 partitions"), "{listing}");

    // The seed's console producer: one line, one message.
    let lines: String = SEED.iter().map(|l| format!("{l}\n")).collect();
    kcat(&["-b", &addr, "-P", "-t", "test", "-p", "0"], Some(lines.as_bytes()));
    // A keyed message with headers, the key and value binary.
    kcat(&["-b", &addr, "-P", "-t", "test", "-p", "0", "-K", "\t", "-H", "trace=42", "-H", "who=阿牛"], Some(b"k\x01\xff\tv\x00\x02\n"));

    let out = text(&kcat(&["-b", &addr, "-C", "-t", "test", "-o", "beginning", "-e", "-f", "%o %k|%s|%h\n"], None));
    assert_eq!(out, "0 |123|\n1 |测试数据|\n2 |test data|\n3 |阿牛|\n4 k\u{1}\u{fffd}|v\u{0}\u{2}|trace=42,who=阿牛\n");

    // The native side reads what kcat wrote, byte for byte.
    let values = c.fetch_all_values("test", 0, 0);
    let mut expected: Vec<Vec<u8>> = SEED.iter().map(|l| l.as_bytes().to_vec()).collect();
    expected.push(b"v\x00\x02".to_vec());
    assert_eq!(values, expected);
    let (err, _, bytes) = c.fetch("test", 0, 4, 0);
    assert_eq!(err, ErrorCode::None);
    let (start, _) = shardlog::record::batches(&bytes).last().unwrap().unwrap();
    let r = shardlog::record::RecordIter::new(&bytes[start..]).unwrap().next().unwrap().unwrap();
    assert_eq!(r.key, Some(&b"k\x01\xff"[..]));
    assert_eq!(r.headers, vec![("trace", Some(&b"42"[..])), ("who", Some("阿牛".as_bytes()))]);

    // The console consumer reads kcat's lines, and kcat the console
    // producer's.
    let out = common::cli(&b, &["consume", "--topic", "test", "--from-beginning", "--max-messages", "4"], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout), lines);
    assert_eq!(c.create_topic("from-cli", 1), ErrorCode::None);
    let out = common::cli(&b, &["produce", "--topic", "from-cli"], Some(lines.as_bytes()));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = text(&kcat(&["-b", &addr, "-C", "-t", "from-cli", "-o", "beginning", "-e"], None));
    assert_eq!(out, lines);
}

#[test]
fn what_the_native_side_produced_kcat_reads_and_the_bytes_are_the_same() {
    let b = Broker::start(1);
    let addr = b.addr.to_string();
    let mut c = b.client();
    assert_eq!(c.create_topic("native", 1), ErrorCode::None);
    let batch = batch_of(&[b"from", b"the sdk"]);
    assert_eq!(c.produce("native", 0, &batch, Acks::All), (ErrorCode::None, 0));
    let out = text(&kcat(&["-b", &addr, "-C", "-t", "native", "-o", "beginning", "-e", "-f", "%o:%s\n"], None));
    assert_eq!(out, "0:from\n1:the sdk\n");

    // The batch a consumer gets is the producer's, but for the two fields
    // the broker writes (the base offset and the leader epoch).
    let (_, _, stored) = c.fetch("native", 0, 0, 0);
    assert_eq!(stored.len(), batch.len());
    assert_eq!(stored[16..], batch[16..], "all but the base offset and the leader epoch");
}

/// kcat's producer with each of Kafka's codecs: the batch is stored as it
/// was sent (compressed, its codec in the attributes), and kcat, the SDK
/// and the console consumer read the lines that were produced.
#[test]
fn compressed_batches_of_every_codec_are_stored_as_sent_and_read_by_every_consumer() {
    let b = Broker::start(1);
    let addr = b.addr.to_string();
    let mut c = b.client();
    // librdkafka sends a batch uncompressed when compressing would not
    // make it smaller: lines long enough to compress.
    let long: Vec<String> = SEED.iter().map(|l| l.repeat(30)).collect();
    let lines: String = long.iter().map(|l| format!("{l}\n")).collect();
    for (codec, name) in [(1, "gzip"), (2, "snappy"), (3, "lz4"), (4, "zstd")] {
        assert_eq!(c.create_topic(name, 1), ErrorCode::None);
        // One batch: kcat waits for all four lines before it sends.
        kcat(&["-b", &addr, "-P", "-t", name, "-p", "0", "-z", name, "-X", "linger.ms=100"], Some(lines.as_bytes()));
        let out = text(&kcat(&["-b", &addr, "-C", "-t", name, "-o", "beginning", "-e"], None));
        assert_eq!(out, lines, "{name}");

        let (err, _, stored) = c.fetch(name, 0, 0, 0);
        assert_eq!(err, ErrorCode::None);
        let infos: Vec<_> = shardlog::record::batches(&stored).map(|b| b.unwrap().1).collect();
        assert!(infos.iter().all(|i| i.codec() == codec), "{name}: {infos:?}");
        assert_eq!(infos.iter().map(|i| i.record_count).sum::<u32>(), 4, "{name}");

        let values = c.fetch_all_values(name, 0, 0);
        assert_eq!(values, long.iter().map(|l| l.as_bytes().to_vec()).collect::<Vec<_>>(), "{name}");
        let out = common::cli(&b, &["consume", "--topic", name, "--from-beginning", "--max-messages", "4"], None);
        assert_eq!(String::from_utf8_lossy(&out.stdout), lines, "{name}");
    }
}

/// A Produce v7 request for one partition carrying `batch`.
fn produce_frame(topic: &str, batch: &[u8]) -> Vec<u8> {
    let mut body = (-1i16).to_be_bytes().to_vec(); // no transactional id
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&5000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    body.extend_from_slice(topic.as_bytes());
    body.extend_from_slice(&1i32.to_be_bytes());
    body.extend_from_slice(&0i32.to_be_bytes()); // partition 0
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(batch);
    kafka_frame(0, 7, &body)
}

/// The error code of the one partition a Produce v7 answer holds.
fn produce_error(addr: std::net::SocketAddr, frame: &[u8]) -> i16 {
    produce_answer(addr, frame).0
}

/// The error code and base offset of the one partition a Produce v7
/// answer holds.
fn produce_answer(addr: std::net::SocketAddr, frame: &[u8]) -> (i16, i64) {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(frame).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut resp).unwrap();
    // correlation id, one topic (count, name), one partition (count, index), then its error.
    let at = 4 + 4 + 2 + i16::from_be_bytes([resp[8], resp[9]]) as usize + 4 + 4;
    let base_offset = i64::from_be_bytes(resp[at + 2..at + 10].try_into().unwrap());
    (i16::from_be_bytes([resp[at], resp[at + 1]]), base_offset)
}

/// Batches the broker does not store are answered with Kafka's own error
/// for each, and nothing is stored.
#[test]
fn refused_batches_get_kafkas_error_codes() {
    let b = Broker::start(1);
    let mut c = b.client();
    assert_eq!(c.create_topic("t", 1), ErrorCode::None);
    let batch = batch_of(&[b"x"]);
    let with = |attributes: u16| {
        let mut bad = batch.clone();
        bad[21..23].copy_from_slice(&attributes.to_be_bytes());
        shardlog::record::seal(&mut bad);
        bad
    };
    const CORRUPT_MESSAGE: i16 = 2;
    const INVALID_TIMESTAMP: i16 = 32;
    const UNSUPPORTED_COMPRESSION_TYPE: i16 = 76;
    const INVALID_RECORD: i16 = 87;
    assert_eq!(produce_error(b.addr, &produce_frame("t", &with(5))), UNSUPPORTED_COMPRESSION_TYPE);
    assert_eq!(produce_error(b.addr, &produce_frame("t", &with(1 << 3))), INVALID_TIMESTAMP);
    assert_eq!(produce_error(b.addr, &produce_frame("t", &with(1 << 4))), INVALID_RECORD);
    assert_eq!(produce_error(b.addr, &produce_frame("t", &with(1 << 5))), INVALID_RECORD);
    // gzip said, the records not gzip's.
    assert_eq!(produce_error(b.addr, &produce_frame("t", &with(1))), CORRUPT_MESSAGE);
    let mut flipped = batch.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert_eq!(produce_error(b.addr, &produce_frame("t", &flipped)), CORRUPT_MESSAGE);
    assert_eq!(produce_error(b.addr, &produce_frame("t", &batch)), 0);
    assert_eq!(c.fetch_all_values("t", 0, 0), vec![b"x".to_vec()]);
}

/// The seed's walkthrough on three brokers: every broker lists all
/// three; lines produced through one are read through each of the others.
#[test]
fn kcat_on_a_three_broker_cluster_through_every_broker() {
    let cluster = Cluster::start(None, false);
    cluster.create("test", 3);
    let addrs: Vec<String> = cluster.nodes.iter().map(|n| n.listen.clone()).collect();
    for a in &addrs {
        let listing = text(&kcat(&["-b", a, "-L"], None));
        assert!(listing.contains(" 3 brokers:"), "{listing}");
        for (i, other) in addrs.iter().enumerate() {
            assert!(listing.contains(&format!("broker {} at {other}", i + 1)), "{listing}");
        }
    }
    let lines: String = SEED.iter().map(|l| format!("{l}\n")).collect();
    kcat(&["-b", &addrs[0], "-P", "-t", "test", "-X", "acks=all"], Some(lines.as_bytes()));
    for a in &addrs[1..] {
        let out = text(&kcat(&["-b", a, "-C", "-t", "test", "-o", "beginning", "-e", "-f", "%s\n"], None));
        let mut got: Vec<&str> = out.lines().collect();
        got.sort();
        let mut want = SEED.to_vec();
        want.sort();
        assert_eq!(got, want, "through {a}");
    }
}

fn python_clients(scenario: &str) {
    let b = Broker::start(2);
    let out = Command::new("python3")
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/kafka_clients.py"), &b.addr.to_string(), scenario])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{scenario}: {}{}\n(install the clients with scripts/test.sh)\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        b.log_text()
    );
    eprintln!("{}", String::from_utf8_lossy(&out.stdout));
}

/// Kafka's group protocol with confluent-kafka and kafka-python group
/// consumers (see the scenario's text).
#[test]
fn kafka_group_consumers_commit_resume_split_and_take_over() {
    python_clients("groups");
}

/// kcat as a group consumer (`-G`): two runs of one group read each
/// message once between them, and a native group cannot take the
/// group's name while Kafka members hold it.
#[test]
fn kcat_consumes_as_a_group_and_a_group_is_either_native_or_kafkas() {
    let b = Broker::start(2);
    let addr = b.addr.to_string();
    let mut c = b.client();
    assert_eq!(c.create_topic("kg", 2), ErrorCode::None);
    let lines: String = SEED.iter().map(|l| format!("{l}\n")).collect();
    kcat(&["-b", &addr, "-P", "-t", "kg"], Some(lines.as_bytes()));
    // (`-o` would set every assigned partition's offset, committed or not.)
    let out = text(&kcat(&["-b", &addr, "-G", "kcat-group", "kg", "-X", "auto.offset.reset=earliest", "-e", "-q"], None));
    let mut got: Vec<&str> = out.lines().collect();
    got.sort();
    let mut want = SEED.to_vec();
    want.sort();
    assert_eq!(got, want);
    // The group committed what it read: a second run reads nothing more.
    let again = text(&kcat(&["-b", &addr, "-G", "kcat-group", "kg", "-X", "auto.offset.reset=earliest", "-e", "-q"], None));
    assert_eq!(again, "", "a second run of the group reads past its commits");

    // A Kafka member holds "mixed"; a native member is refused.
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::{ApiKey, GroupId, JoinGroupRequest, JoinGroupResponse};
    let mut j = JoinGroupRequest::default();
    j.group_id = GroupId(kafka_protocol::protocol::StrBytes::from_static_str("mixed"));
    j.session_timeout_ms = 30_000;
    j.rebalance_timeout_ms = 30_000;
    j.protocol_type = kafka_protocol::protocol::StrBytes::from_static_str("consumer");
    let mut p = JoinGroupRequestProtocol::default();
    p.name = kafka_protocol::protocol::StrBytes::from_static_str("range");
    j.protocols = vec![p];
    let joined: JoinGroupResponse = kafka_call(&addr, ApiKey::JoinGroup, 3, &j);
    assert_eq!((joined.error_code, joined.generation_id), (0, 1));
    let mut native = shardlog::client::raw::Connection::connect(&addr).unwrap();
    let view = native.group_heartbeat("mixed", None, &["kg"], 10_000, false).unwrap();
    assert_eq!(view.error, ErrorCode::InconsistentGroupProtocol, "{}", view.message);
}

/// Committed offsets through Kafka's OffsetCommit and OffsetFetch, for
/// consumers of assigned partitions: stored with their metadata, read
/// back by either library, resumed from.
#[test]
fn kafka_clients_commit_and_resume_from_committed_offsets() {
    python_clients("commits");
}

/// Stock idempotent producers: confluent-kafka's with
/// enable.idempotence, kafka-python's with its defaults.
#[test]
fn stock_idempotent_producers_store_every_message_once() {
    python_clients("idempotent");
}

#[test]
fn confluent_kafka_admin_producers_and_consumer() {
    python_clients("confluent");
}

#[test]
fn kafka_python_producer_and_crc_checking_consumer() {
    python_clients("kafka-python");
}

/// Sends `bytes` on a new connection and says whether the broker closed
/// it within 10 s (after answering what came before, if anything).
fn closed_after(addr: std::net::SocketAddr, bytes: &[u8]) -> bool {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A Kafka request with the given API, version and body after a header
/// (correlation id 1, no client id).
fn kafka_frame(key: i16, version: i16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&1i32.to_be_bytes());
    f.extend_from_slice(&(-1i16).to_be_bytes());
    f.extend_from_slice(body);
    let mut out = (f.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&f);
    out
}

#[test]
fn garbage_on_the_kafka_port_closes_the_connection_and_nothing_else() {
    let b = Broker::start(1);
    let rss = b.rss_bytes();
    // Metadata v1 announcing i32::MAX topics in a 20-byte request: a decoder
    // that reserved room for them first would ask for gigabytes.
    assert!(closed_after(b.addr, &kafka_frame(3, 1, &i32::MAX.to_be_bytes())));
    // A produce naming 2^31-1 partitions of a topic.
    let mut body = (-1i16).to_be_bytes().to_vec(); // no transactional id
    body.extend_from_slice(&1i16.to_be_bytes()); // acks
    body.extend_from_slice(&1000i32.to_be_bytes());
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    body.extend_from_slice(&1i16.to_be_bytes());
    body.push(b't');
    body.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(closed_after(b.addr, &kafka_frame(0, 7, &body)));
    // An API not served (DeleteRecords), a version not served, a size
    // too small for a header; after an answered ApiVersions, a size past
    // the frame limit.
    assert!(closed_after(b.addr, &kafka_frame(21, 0, &[0, 0, 0, 0])));
    assert!(closed_after(b.addr, &kafka_frame(0, 99, &[])));
    assert!(closed_after(b.addr, &[0, 0, 0, 2, 0, 3, 0, 1]));
    let mut over = kafka_frame(18, 0, &[]);
    over.extend_from_slice(&i32::MAX.to_be_bytes());
    assert!(closed_after(b.addr, &over));
    // The broker still serves both protocols, and kept its memory.
    let listing = text(&kcat(&["-b", &b.addr.to_string(), "-L"], None));
    assert!(listing.contains("1 brokers"), "{listing}");
    let mut c = b.client();
    assert_eq!(c.create_topic("after", 1), ErrorCode::None);
    assert!(b.rss_bytes() < rss + (256 << 20), "rss {} -> {}", rss, b.rss_bytes());
}

/// A confluent-kafka producer with acks=all while its partition's leader
/// is killed with SIGKILL: it moves to the new leader by itself, and every
/// message it had acknowledged is stored at its offset.
#[test]
fn a_confluent_kafka_producer_rides_out_a_killed_leader_and_loses_nothing() {
    let mut cluster = Cluster::start(None, false);
    cluster.create("fo", 1);
    let dir = common::temp_dir();
    let killed_file = dir.path().join("killed");
    let bootstrap = cluster.bootstrap().join(",");
    let script = Command::new("python3")
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/kafka_clients.py"), &bootstrap, "failover", "fo", "8", killed_file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let info = shardlog::client::raw::Connection::connect_any(&cluster.bootstrap()).unwrap().cluster_info(Some(&["fo"])).unwrap();
    let leader = info.topics[0].partitions[0].leader as usize - 1;
    cluster.nodes[leader].broker.as_mut().unwrap().kill9();
    std::fs::write(&killed_file, b"").unwrap();
    let out = script.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}\n(install the clients with scripts/test.sh)\n{}", cluster.logs());
    eprintln!("{said}");
}

/// Topic auto-creation on Metadata: off by default (an unknown topic stays
/// unknown), on with `--auto-create-topics` (kcat produces to a topic that
/// did not exist, which then has one partition).
#[test]
fn topics_are_created_on_metadata_only_when_the_broker_is_told_to() {
    let off = Broker::start(1);
    let listing = text(&kcat(&["-b", &off.addr.to_string(), "-L", "-t", "nope"], None));
    assert!(listing.contains("Unknown topic"), "{listing}");
    assert!(!text(&kcat(&["-b", &off.addr.to_string(), "-L"], None)).contains("\"nope\""));

    let dir = common::temp_dir();
    let on = Broker::start_in(dir.path(), 1, &["--auto-create-topics"]);
    let addr = on.addr.to_string();
    kcat(&["-b", &addr, "-P", "-t", "fresh"], Some(b"one\ntwo\n"));
    let out = text(&kcat(&["-b", &addr, "-C", "-t", "fresh", "-o", "beginning", "-e", "-f", "%p:%s\n"], None));
    assert_eq!(out, "0:one\n0:two\n");
    assert!(text(&kcat(&["-b", &addr, "-L", "-t", "fresh"], None)).contains("topic \"fresh\" with 1 partitions"));
}

/// One Kafka request encoded by Kafka's own encoders (`kafka-protocol`),
/// sent on a new connection, and its answer decoded the same way.
fn kafka_call<Q, A>(addr: &str, api: kafka_protocol::messages::ApiKey, version: i16, req: &Q) -> A
where
    Q: kafka_protocol::protocol::Encodable,
    A: kafka_protocol::protocol::Decodable,
{
    use bytes::Buf;
    use kafka_protocol::messages::{RequestHeader, ResponseHeader};
    use kafka_protocol::protocol::{Decodable, Encodable};
    use std::io::Read;
    let mut body = bytes::BytesMut::new();
    let mut header = RequestHeader::default();
    header.request_api_key = api as i16;
    header.request_api_version = version;
    header.correlation_id = 9;
    header.encode(&mut body, api.request_header_version(version)).unwrap();
    req.encode(&mut body, version).unwrap();
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(&(body.len() as i32).to_be_bytes()).unwrap();
    s.write_all(&body).unwrap();
    let mut size = [0u8; 4];
    s.read_exact(&mut size).unwrap();
    let mut resp = vec![0u8; i32::from_be_bytes(size) as usize];
    s.read_exact(&mut resp).unwrap();
    let mut buf = bytes::Bytes::from(resp);
    let h = ResponseHeader::decode(&mut buf, api.response_header_version(version)).unwrap();
    assert_eq!(h.correlation_id, 9);
    let a = A::decode(&mut buf, version).unwrap();
    assert!(!buf.has_remaining(), "the whole answer is read");
    a
}

/// OffsetForLeaderEpoch `(error, epoch, end offset)` for one partition.
fn epoch_end(addr: &str, topic: &str, current: i32, epoch: i32) -> (i16, i32, i64) {
    use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
    use kafka_protocol::messages::{ApiKey, BrokerId, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, TopicName};
    let mut p = OffsetForLeaderPartition::default();
    p.current_leader_epoch = current;
    p.leader_epoch = epoch;
    let mut t = OffsetForLeaderTopic::default();
    t.topic = TopicName(kafka_protocol::protocol::StrBytes::from_string(topic.to_string()));
    t.partitions = vec![p];
    let mut req = OffsetForLeaderEpochRequest::default();
    req.replica_id = BrokerId(-1);
    req.topics = vec![t];
    let resp: OffsetForLeaderEpochResponse = kafka_call(addr, ApiKey::OffsetForLeaderEpoch, 3, &req);
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.leader_epoch, p.end_offset)
}

/// OffsetForLeaderEpoch, as a Kafka consumer asks it after a leader
/// change to find whether its position was cut (KIP-320): on a
/// three-broker cluster, the epoch of the killed leader ends where the new
/// leader's first batch begins, the new epoch at the log's end; a client
/// behind the leader's epoch is fenced, one ahead of it told to retry.
#[test]
fn offset_for_leader_epoch_says_where_each_epoch_ended() {
    const FENCED_LEADER_EPOCH: i16 = 74;
    const UNKNOWN_LEADER_EPOCH: i16 = 75;
    let mut cluster = Cluster::start(None, false);
    cluster.create("ep", 1);
    let leader_of = |cluster: &Cluster| {
        let info = shardlog::client::raw::Connection::connect_any(&cluster.bootstrap()).unwrap().cluster_info(Some(&["ep"])).unwrap();
        let p = &info.topics[0].partitions[0];
        (p.leader, p.leader_epoch as i32)
    };
    let bootstrap = cluster.bootstrap().join(",");
    kcat(&["-b", &bootstrap, "-P", "-t", "ep", "-p", "0", "-X", "acks=all"], Some(b"a\nb\nc\n"));
    let (first, e1) = leader_of(&cluster);
    let first_addr = cluster.nodes[first as usize - 1].listen.clone();
    assert_eq!(epoch_end(&first_addr, "ep", e1, e1), (0, e1, 3));

    cluster.nodes[first as usize - 1].broker.as_mut().unwrap().kill9();
    let started = std::time::Instant::now();
    let (second, e2) = loop {
        if let Ok((l, e)) = std::panic::catch_unwind(|| leader_of(&cluster)) {
            if l > 0 && l != first {
                break (l, e);
            }
        }
        assert!(started.elapsed().as_secs() < 30, "no new leader\n{}", cluster.logs());
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(e2 > e1);
    let live: Vec<String> = cluster.nodes.iter().filter(|n| n.listen != first_addr).map(|n| n.listen.clone()).collect();
    kcat(&["-b", &live.join(","), "-P", "-t", "ep", "-p", "0", "-X", "acks=all"], Some(b"d\ne\n"));

    let addr = &cluster.nodes[second as usize - 1].listen;
    assert_eq!(epoch_end(addr, "ep", -1, e1), (0, e1, 3), "the killed leader's epoch ends where the new one's first batch is");
    assert_eq!(epoch_end(addr, "ep", e2, e2), (0, e2, 5), "the leader's own epoch runs to the log's end");
    assert_eq!(epoch_end(addr, "ep", -1, e2 + 1), (0, -1, -1), "an epoch after the leader's is no epoch of this log");
    assert_eq!(epoch_end(addr, "ep", e1, e1).0, FENCED_LEADER_EPOCH);
    assert_eq!(epoch_end(addr, "ep", e2 + 1, e2).0, UNKNOWN_LEADER_EPOCH);
    // A broker that is not the leader says so.
    let other = live.iter().find(|a| *a != addr).unwrap();
    assert_eq!(epoch_end(other, "ep", -1, e2).0, 6, "NOT_LEADER_OR_FOLLOWER");
}

/// A producer id from InitProducerId v1 (`transactional`: with a
/// transactional id): `(error, producer id, epoch)`.
fn init_producer_id(addr: &str, transactional: bool) -> (i16, i64, i16) {
    use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, TransactionalId};
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = transactional.then(|| TransactionalId(kafka_protocol::protocol::StrBytes::from_static_str("tx")));
    req.transaction_timeout_ms = 60_000;
    let resp: InitProducerIdResponse = kafka_call(addr, ApiKey::InitProducerId, 1, &req);
    (resp.error_code, resp.producer_id.0, resp.producer_epoch)
}

/// `batch` as an idempotent producer's: its id, epoch and first sequence
/// written into the header, the CRC computed again.
fn idempotent(batch: &[u8], producer_id: i64, epoch: i16, sequence: i32) -> Vec<u8> {
    let mut b = batch.to_vec();
    b[43..51].copy_from_slice(&producer_id.to_be_bytes());
    b[51..53].copy_from_slice(&epoch.to_be_bytes());
    b[53..57].copy_from_slice(&sequence.to_be_bytes());
    shardlog::record::seal(&mut b);
    b
}

/// The idempotent producer (KIP-98) on the broker: ids unique and
/// handed out by InitProducerId, a batch sent again answered with its
/// first offset and stored once, a gap and a fenced epoch refused with
/// Kafka's codes; the windows survive a clean restart (from the
/// snapshot) and a SIGKILL (rebuilt from the log).
#[test]
fn an_idempotent_producers_resent_batch_is_stored_once_across_restarts() {
    const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    const INVALID_PRODUCER_EPOCH: i16 = 47;
    const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
    let dir = common::temp_dir();
    let mut b = Broker::start_in(dir.path(), 2, &[]);
    let mut c = b.client();
    assert_eq!(c.create_topic("idem", 1), ErrorCode::None);
    let addr = b.addr.to_string();
    let (e1, p1, epoch) = init_producer_id(&addr, false);
    let (e2, p2, _) = init_producer_id(&addr, false);
    assert_eq!((e1, e2, epoch), (0, 0, 0));
    assert_ne!(p1, p2, "every producer gets an id of its own");
    assert_eq!(init_producer_id(&addr, true).0, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);

    let two = batch_of(&[b"a", b"b"]);
    let first = idempotent(&two, p1, 0, 0);
    assert_eq!(produce_answer(b.addr, &produce_frame("idem", &first)), (0, 0));
    assert_eq!(produce_answer(b.addr, &produce_frame("idem", &first)), (0, 0), "the resend is answered with its offset");
    let second = idempotent(&batch_of(&[b"c"]), p1, 0, 2);
    assert_eq!(produce_answer(b.addr, &produce_frame("idem", &second)), (0, 2));
    assert_eq!(produce_error(b.addr, &produce_frame("idem", &idempotent(&two, p1, 0, 9))), OUT_OF_ORDER_SEQUENCE_NUMBER);
    // Another producer's sequence is its own.
    assert_eq!(produce_answer(b.addr, &produce_frame("idem", &idempotent(&two, p2, 0, 0))), (0, 3));
    assert_eq!(c.fetch_all_values("idem", 0, 0), [&b"a"[..], b"b", b"c", b"a", b"b"].map(|v| v.to_vec()));

    // A clean restart: the snapshot written at shutdown.
    b.terminate();
    let b = Broker::start_in(dir.path(), 2, &[]);
    assert_eq!(produce_answer(b.addr, &produce_frame("idem", &second)), (0, 2), "after a restart");
    assert_eq!(produce_answer(b.addr, &produce_frame("idem", &idempotent(&batch_of(&[b"d"]), p1, 0, 3))), (0, 5));
    // SIGKILL: no snapshot of the last batch; rebuilt from the log.
    let mut b = b;
    b.kill9();
    let b = Broker::start_in(dir.path(), 2, &[]);
    assert_eq!(produce_answer(b.addr, &produce_frame("idem", &idempotent(&batch_of(&[b"d"]), p1, 0, 3))), (0, 5), "after SIGKILL");
    // A new epoch starts at sequence 0 and fences the old one.
    assert_eq!(produce_answer(b.addr, &produce_frame("idem", &idempotent(&batch_of(&[b"e"]), p1, 1, 0))), (0, 6));
    assert_eq!(produce_error(b.addr, &produce_frame("idem", &idempotent(&batch_of(&[b"f"]), p1, 0, 4))), INVALID_PRODUCER_EPOCH);
    let mut c = b.client();
    assert_eq!(c.fetch_all_values("idem", 0, 0).len(), 7);
    // Ids handed out after a restart are new ones.
    let (_, p3, _) = init_producer_id(&b.addr.to_string(), false);
    assert!(p3 != p1 && p3 != p2);
}
