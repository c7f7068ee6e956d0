//! Black-box tests of one broker over raw frames on 127.0.0.1.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{batch_of, produce_request, raw_produce_body, Broker, Client};
use shardlog::protocol::{api_versions, delete_topics, fb, list_offsets, list_topics, metadata, produce, Acks, ErrorCode};
use shardlog::record;

#[test]
fn produce_and_fetch_round_trip_byte_for_byte() {
    let b = Broker::start(2);
    let mut c = b.client();
    assert_eq!(c.create_topic("t", 1), ErrorCode::None);
    let sent = batch_of(&[b"123", "测试数据".as_bytes(), b"test data", "阿牛".as_bytes()]);
    assert_eq!(c.produce("t", 0, &sent, Acks::All), (ErrorCode::None, 0));
    let second = batch_of(&[b"more"]);
    assert_eq!(c.produce("t", 0, &second, Acks::Leader), (ErrorCode::None, 4));
    let (err, hw, got) = c.fetch("t", 0, 0, 0);
    assert_eq!((err, hw), (ErrorCode::None, 5));
    // The stored bytes are the sent bytes; only the base offset (outside
    // the CRC) was written by the broker.
    let mut want = sent.clone();
    let mut second_patched = second.clone();
    record::set_base_offset(&mut second_patched, 4);
    want.extend_from_slice(&second_patched);
    assert_eq!(got, want);
    assert_eq!(c.fetch_all_values("t", 0, 2), vec![b"test data".to_vec(), "阿牛".as_bytes().to_vec(), b"more".to_vec()]);
}

#[test]
fn partitions_spread_over_both_shards_and_route() {
    let b = Broker::start(2);
    let mut c = b.client();
    assert_eq!(c.create_topic("spread", 8), ErrorCode::None);
    let md: metadata::Response = c.request(&metadata::Request { topics: None });
    let broker = &md.brokers[0];
    assert_eq!((broker.shards, broker.port), (2, b.addr.port()));
    let shards: Vec<u16> = md.topics[0].partitions.iter().map(|p| p.shard).collect();
    assert_eq!(shards.iter().filter(|&&s| s == 0).count(), 4, "{shards:?}");
    assert_eq!(shards.iter().filter(|&&s| s == 1).count(), 4, "{shards:?}");
    // Whichever shard this connection landed on, every partition works.
    for p in 0..8 {
        let v = format!("p{p}");
        assert_eq!(c.produce("spread", p, &batch_of(&[v.as_bytes()]), Acks::All), (ErrorCode::None, 0));
    }
    for p in 0..8 {
        assert_eq!(c.fetch_all_values("spread", p, 0), vec![format!("p{p}").into_bytes()]);
    }
    // Several connections land on both shards (SO_REUSEPORT); all agree.
    for _ in 0..6 {
        let mut c = b.client();
        assert_eq!(c.fetch_all_values("spread", 5, 0), vec![b"p5".to_vec()]);
    }
}

#[test]
fn pipelined_requests_all_answered_with_their_correlation_ids() {
    let b = Broker::start(2);
    let mut c = b.client();
    assert_eq!(c.create_topic("pipe", 2), ErrorCode::None);
    let mut frames = Vec::new();
    let mut corrs = Vec::new();
    for i in 0..200u32 {
        let batch = batch_of(&[format!("m{i}").as_bytes()]);
        let (bytes, corr) = c.encode(&produce_request("pipe", &[(i % 2, batch.len())], Acks::Leader), &batch);
        frames.extend_from_slice(&bytes);
        corrs.push(corr);
    }
    c.stream.write_all(&frames).unwrap();
    let mut seen = Vec::new();
    let mut offsets = [Vec::new(), Vec::new()];
    for _ in 0..200 {
        let r = c.recv().unwrap();
        seen.push(r.response().correlation_id());
        let resp: produce::Response = r.body();
        let p = &resp.topics[0].partitions[0];
        assert_eq!(p.error, ErrorCode::None);
        offsets[p.partition as usize].push(p.base_offset);
    }
    seen.sort_unstable();
    assert_eq!(seen, corrs);
    for o in &mut offsets {
        o.sort_unstable();
        assert_eq!(*o, (0..100).collect::<Vec<i64>>());
    }
    // Within a partition, offsets follow the order the requests were sent.
    let values = c.fetch_all_values("pipe", 0, 0);
    let want: Vec<Vec<u8>> = (0..200).step_by(2).map(|i| format!("m{i}").into_bytes()).collect();
    assert_eq!(values, want);
}

#[test]
fn long_poll_fetch_is_woken_by_a_produce() {
    let b = Broker::start(2);
    let mut c = b.client();
    assert_eq!(c.create_topic("lp", 2), ErrorCode::None);
    let addr = b.addr;
    let waiter = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        // Waits up to 20 s; a produce must end the wait with the data.
        c.fetch("lp", 1, 0, 20_000)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(c.produce("lp", 1, &batch_of(&[b"wake"]), Acks::Leader), (ErrorCode::None, 0));
    let (err, hw, bytes) = waiter.join().unwrap();
    assert_eq!((err, hw), (ErrorCode::None, 1));
    assert!(!bytes.is_empty(), "the long poll returned without the produced batch");
}

#[test]
fn sigterm_exits_zero_and_restart_keeps_data() {
    let tmp = common::temp_dir();
    let mut b = Broker::start_in(tmp.path(), 2, &[]);
    let mut c = b.client();
    assert_eq!(c.create_topic("keep", 3), ErrorCode::None);
    for i in 0..30u32 {
        c.produce("keep", i % 3, &batch_of(&[format!("v{i}").as_bytes()]), Acks::Leader);
    }
    drop(c);
    let status = b.terminate();
    assert_eq!(status.code(), Some(0), "{}", b.log_text());
    let b = Broker::start_in(tmp.path(), 2, &[]);
    let mut c = b.client();
    for p in 0..3 {
        let want: Vec<Vec<u8>> = (0..30).filter(|i| i % 3 == p).map(|i| format!("v{i}").into_bytes()).collect();
        assert_eq!(c.fetch_all_values("keep", p, 0), want);
    }
    assert_eq!(c.create_topic("keep", 1), ErrorCode::TopicAlreadyExists);
}

/// Produces with `acks` from a pipelining client (16 requests in flight,
/// 40 messages a batch, so writes of whole blocks and of partial tails both
/// happen), kills the broker with SIGKILL mid-work, restarts it, and checks
/// that every acknowledged message is there, at its place, in order.
fn acknowledged_data_survives_sigkill(acks: Acks) {
    let tmp = common::temp_dir();
    let mut b = Broker::start_in(tmp.path(), 2, &[]);
    let mut c = b.client();
    assert_eq!(c.create_topic("crash", 2), ErrorCode::None);
    let addr = b.addr;
    let producer = std::thread::spawn(move || {
        let mut c = Client::connect(addr);
        let mut inflight = std::collections::HashMap::new();
        let mut acked: Vec<(u32, i64, Vec<Vec<u8>>)> = Vec::new();
        let mut i = 0u32;
        'run: loop {
            while inflight.len() < 16 {
                let values: Vec<Vec<u8>> = (0..40).map(|k| format!("m{i}-{k}-{}", "x".repeat(80)).into_bytes()).collect();
                let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
                let Some(corr) = c.try_send_produce("crash", i % 2, &batch_of(&refs), acks) else { break 'run };
                inflight.insert(corr, (i % 2, values));
                i += 1;
            }
            let Some(r) = c.recv() else { break 'run };
            let Some((p, values)) = inflight.remove(&r.response().correlation_id()) else { panic!("an unknown correlation id") };
            let resp: produce::Response = r.body();
            let part = &resp.topics[0].partitions[0];
            if part.error != ErrorCode::None {
                break;
            }
            acked.push((p, part.base_offset, values));
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(1500));
    b.kill9();
    let acked = producer.join().unwrap();
    assert!(acked.len() > 10, "the producer made progress before the kill");
    let b = Broker::start_in(tmp.path(), 2, &[]);
    let mut c = b.client();
    for p in 0..2 {
        let stored = c.fetch_all_values("crash", p, 0);
        let mut checked = 0;
        for (_, base, values) in acked.iter().filter(|(q, _, _)| *q == p) {
            let at = *base as usize;
            assert!(stored.len() >= at + values.len(), "partition {p}: {} stored, acknowledged up to {}", stored.len(), at + values.len());
            assert_eq!(&stored[at..at + values.len()], &values[..], "partition {p} at offset {base}");
            checked += values.len();
        }
        assert!(checked > 0);
    }
}

#[test]
fn acks_all_survives_sigkill() {
    acknowledged_data_survives_sigkill(Acks::All);
}

#[test]
fn acks_1_survives_sigkill() {
    acknowledged_data_survives_sigkill(Acks::Leader);
}

#[test]
fn garbage_in_the_active_segment_is_dropped_on_restart() {
    let tmp = common::temp_dir();
    let seg = common::produce_then_kill9(tmp.path(), "g", 5);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0xAB; 3000]).unwrap();
    drop(f);
    let b = Broker::start_in(tmp.path(), 1, &[]);
    assert!(b.log_text().contains("truncating segment"), "{}", b.log_text());
    let mut c = b.client();
    assert_eq!(c.produce("g", 0, &batch_of(&[b"after"]), Acks::All), (ErrorCode::None, 5));
    let values = c.fetch_all_values("g", 0, 0);
    assert_eq!(values.len(), 6);
    assert_eq!(values[5], b"after");
}

#[test]
fn segment_files_are_open_with_o_direct() {
    let b = Broker::start(2);
    let mut c = b.client();
    assert_eq!(c.create_topic("direct", 2), ErrorCode::None);
    c.produce("direct", 0, &batch_of(&[b"x"]), Acks::All);
    let mut seen = 0;
    for fd in std::fs::read_dir(format!("/proc/{}/fd", b.pid())).unwrap() {
        let fd = fd.unwrap();
        let Ok(target) = std::fs::read_link(fd.path()) else { continue };
        if target.extension().is_some_and(|e| e == "log") && target.to_string_lossy().contains("direct-") {
            let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/{}", b.pid(), fd.file_name().to_string_lossy())).unwrap();
            let flags = info.lines().find_map(|l| l.strip_prefix("flags:")).unwrap().trim();
            let flags = u32::from_str_radix(flags, 8).unwrap();
            assert_ne!(flags & libc::O_DIRECT as u32, 0, "{} is open without O_DIRECT", target.display());
            seen += 1;
        }
    }
    assert_eq!(seen, 2, "one open segment per partition");
}

#[test]
fn bad_input_never_stops_the_broker() {
    let b = Broker::start(2);
    let mut ok = b.client();
    assert_eq!(ok.create_topic("safe", 1), ErrorCode::None);
    let healthy = |b: &Broker| {
        let mut c = b.client();
        assert_eq!(c.produce("safe", 0, &batch_of(&[b"still here"]), Acks::Leader).0, ErrorCode::None);
    };

    // Absurd frame length: an error response, then the connection closes.
    let mut c = b.client();
    c.stream.write_all(&u32::MAX.to_le_bytes()).unwrap();
    let r = c.recv().expect("an error before the close");
    assert_eq!(r.response().error(), ErrorCode::MessageTooLarge);
    assert!(c.recv().is_none());
    healthy(&b);

    // Garbage that frames correctly but is not a flatbuffer.
    let mut c = b.client();
    let mut junk = 40u32.to_le_bytes().to_vec();
    junk.extend_from_slice(&36u32.to_le_bytes());
    junk.extend((0..36).map(|i| (i * 37 + 11) as u8));
    c.stream.write_all(&junk).unwrap();
    assert_eq!(c.recv().unwrap().response().error(), ErrorCode::InvalidRequest);
    // ... and the same connection keeps working.
    assert_eq!(c.produce("safe", 0, &batch_of(&[b"same conn"]), Acks::Leader).0, ErrorCode::None);

    // Message length pointing past the frame.
    let mut bad = 8u32.to_le_bytes().to_vec();
    bad.extend_from_slice(&1000u32.to_le_bytes());
    bad.extend_from_slice(&[0; 4]);
    c.stream.write_all(&bad).unwrap();
    assert_eq!(c.recv().unwrap().response().error(), ErrorCode::InvalidRequest);

    // Unsupported version.
    let (frame, _) = c.encode_versioned(9, &api_versions::Request::default(), &[]);
    c.stream.write_all(&frame).unwrap();
    assert_eq!(c.recv().unwrap().response().error(), ErrorCode::UnsupportedVersion);

    // Unknown API key.
    let (frame, _) = c.encode_raw(&[], |b| {
        let body = fb::ApiVersionsRequest::create(b, &fb::ApiVersionsRequestArgs { client_software: None });
        (fb::RequestBody(200), body.as_union_value())
    });
    c.stream.write_all(&frame).unwrap();
    let r = c.recv().unwrap();
    assert!(matches!(r.response().error(), ErrorCode::UnsupportedApi | ErrorCode::InvalidRequest), "{:?}", r.response().error());

    // A batch with a wrong CRC: refused, and nothing is stored.
    let before = c.fetch_all_values("safe", 0, 0).len();
    let mut corrupt = batch_of(&[b"evil"]);
    let n = corrupt.len();
    corrupt[n - 2] ^= 1;
    assert_eq!(c.produce("safe", 0, &corrupt, Acks::All).0, ErrorCode::CorruptBatch);
    // Payload length that disagrees with the message.
    let r = c.call(&produce_request("safe", &[(0, corrupt.len() + 5)], Acks::All), &corrupt);
    assert_eq!(r.response().error(), ErrorCode::InvalidRequest);
    assert_eq!(c.fetch_all_values("safe", 0, 0).len(), before);

    // Produce to a topic or partition that does not exist; bad acks.
    assert_eq!(c.produce("nope", 0, &batch_of(&[b"x"]), Acks::Leader).0, ErrorCode::UnknownTopicOrPartition);
    assert_eq!(c.produce("safe", 7, &batch_of(&[b"x"]), Acks::Leader).0, ErrorCode::UnknownTopicOrPartition);
    let batch = batch_of(&[b"x"]);
    let len = batch.len() as u32;
    let r = c.call_raw(&batch, move |b| raw_produce_body(b, "safe", &[(0, len)], 5));
    assert_eq!(r.response().error(), ErrorCode::InvalidRequiredAcks);

    // A truncated frame, then the client hangs up.
    let mut t = b.client();
    let (frame, _) = t.encode(&produce_request("safe", &[(0, batch.len())], Acks::Leader), &batch);
    t.stream.write_all(&frame[..frame.len() / 2]).unwrap();
    drop(t);

    // Random bytes from several clients at once.
    let mut handles = Vec::new();
    for seed in 0..4u32 {
        let addr = b.addr;
        handles.push(std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
            let junk: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = s.write_all(&junk);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    healthy(&b);
    assert_eq!(ok.create_topic("safe2", 1), ErrorCode::None);
}

#[test]
fn admin_errors_are_clear() {
    let b = Broker::start(1);
    let mut c = b.client();
    assert_eq!(c.create_topic_rf("rf", 1, 3), ErrorCode::InvalidReplicationFactor);
    assert_eq!(c.create_topic("bad/name", 1), ErrorCode::InvalidTopicName);
    assert_eq!(c.create_topic("zero", 0), ErrorCode::InvalidPartitions);
    assert_eq!(c.create_topic("ok", 2), ErrorCode::None);
    let r: list_topics::Response = c.request(&list_topics::Request);
    assert_eq!(r.names, vec!["ok".to_string()]);
    let r: delete_topics::Response = c.request(&delete_topics::Request { names: vec!["ok".into()], timeout_ms: 1000 });
    assert_eq!(r.results[0].error, ErrorCode::None);
    assert_eq!(c.produce("ok", 0, &batch_of(&[b"x"]), Acks::Leader).0, ErrorCode::UnknownTopicOrPartition);
    assert!(!b.dir.join("topics/ok-0").exists(), "a deleted topic's data is removed");
}

#[test]
fn list_offsets_earliest_latest_and_by_time() {
    let b = Broker::start(2);
    let mut c = b.client();
    assert_eq!(c.create_topic("lo", 1), ErrorCode::None);
    let mut bb = record::BatchBuilder::new(64);
    for ts in [1000, 2000, 3000] {
        bb.push(ts, None, Some(b"v"), &[]);
    }
    c.produce("lo", 0, &bb.finish(), Acks::All);
    let ask = |c: &mut Client, ts: i64| {
        let req = list_offsets::Request {
            topics: vec![list_offsets::Topic { name: "lo".into(), partitions: vec![list_offsets::Partition { partition: 0, timestamp: ts }] }],
        };
        let r: list_offsets::Response = c.request(&req);
        let p = r.topics[0].partitions[0];
        (p.error, p.offset, p.timestamp)
    };
    assert_eq!(ask(&mut c, -2), (ErrorCode::None, 0, -1));
    assert_eq!(ask(&mut c, -1), (ErrorCode::None, 3, -1));
    assert_eq!(ask(&mut c, 1500), (ErrorCode::None, 1, 2000));
    assert_eq!(ask(&mut c, 9999), (ErrorCode::None, 3, -1));
}

#[test]
fn idle_connections_are_closed() {
    let tmp = common::temp_dir();
    let cfg = tmp.path().join("broker.toml");
    std::fs::write(&cfg, "connection_idle_timeout_ms = 300\n").unwrap();
    let data = tmp.path().join("data");
    let b = Broker::start_in(&data, 1, &["--config", cfg.to_str().unwrap()]);
    let mut c = b.client();
    let mut buf = [0u8; 1];
    // The broker hangs up on a client that sends nothing.
    assert_eq!(c.stream.read(&mut buf).unwrap_or(0), 0);
}

#[test]
fn many_concurrent_clients() {
    let b = Broker::start(2);
    let mut c = b.client();
    assert_eq!(c.create_topic("many", 4), ErrorCode::None);
    let handles: Vec<_> = (0..8u32)
        .map(|id| {
            let addr = b.addr;
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..50 {
                    let (e, _) = c.produce("many", id % 4, &batch_of(&[format!("{id}-{i}").as_bytes()]), Acks::All);
                    assert_eq!(e, ErrorCode::None);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let total: usize = (0..4).map(|p| c.fetch_all_values("many", p, 0).len()).sum();
    assert_eq!(total, 400);
    for id in 0..8u32 {
        let values = c.fetch_all_values("many", id % 4, 0);
        let mine: Vec<_> = values.iter().filter(|v| v.starts_with(format!("{id}-").as_bytes())).cloned().collect();
        let want: Vec<Vec<u8>> = (0..50).map(|i| format!("{id}-{i}").into_bytes()).collect();
        assert_eq!(mine, want, "client {id}'s messages, in its order");
    }
}

#[test]
fn each_shard_thread_is_pinned_and_has_its_own_ring() {
    let b = Broker::start(2);
    // Executor threads are named "shard<N>-<id>"; glommio's helper thread
    // for blocking calls inherits the name and the same placement.
    let mut by_shard: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for task in std::fs::read_dir(format!("/proc/{}/task", b.pid())).unwrap() {
        let task = task.unwrap().path();
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default().trim().to_string();
        let Some(rest) = comm.strip_prefix("shard") else { continue };
        let Some((n, _)) = rest.split_once('-') else { continue };
        if n.parse::<u16>().is_err() {
            continue;
        }
        let status = std::fs::read_to_string(task.join("status")).unwrap();
        let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
        assert!(allowed.parse::<usize>().is_ok(), "shard thread {comm} may run on {allowed}, not one core");
        by_shard.entry(n.to_string()).or_default().push(allowed);
    }
    assert_eq!(by_shard.len(), 2, "one executor per shard: {by_shard:?}");
    let mut cpus: Vec<String> = by_shard.values().map(|v| v[0].clone()).collect();
    for v in by_shard.values() {
        assert!(v.iter().all(|c| *c == v[0]), "a shard's threads share its core: {v:?}");
    }
    let cores = std::thread::available_parallelism().unwrap().get();
    cpus.dedup();
    assert_eq!(cpus.len(), cores.min(2), "shards are spread over the cores");
    let rings = std::fs::read_dir(format!("/proc/{}/fd", b.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .filter(|t| t.to_string_lossy().contains("io_uring"))
        .count();
    assert!(rings >= 2, "each shard sets up its own io_uring ({rings} found)");
}

#[test]
fn a_relative_data_dir_works() {
    let tmp = common::temp_dir();
    let b = Broker::start_with(Some(tmp.path()), std::path::Path::new("data"), 2, &[]);
    let mut c = b.client();
    assert_eq!(c.create_topic("rel", 2), ErrorCode::None);
    for p in 0..2 {
        assert_eq!(c.produce("rel", p, &batch_of(&[b"x"]), Acks::All), (ErrorCode::None, 0));
    }
    assert!(tmp.path().join("data/topics/rel-1/00000000000000000000.log").exists());
}

#[test]
fn a_topic_whose_partitions_cannot_be_opened_is_reported() {
    let b = Broker::start(2);
    // A file where partition 1's directory must go.
    std::fs::write(b.dir.join("topics/blocked-1"), b"not a directory").unwrap();
    let mut c = b.client();
    assert_eq!(c.create_topic("blocked", 2), ErrorCode::StorageError);
    assert_eq!(c.create_topic("fine", 2), ErrorCode::None, "the broker goes on serving");
}

/// A broker with an external listener (a container's published port)
/// names itself by its external address to clients that came in through
/// it, and by its main advertised address to the others; both serve.
#[test]
fn an_external_listener_answers_with_external_addresses() {
    let dir = common::temp_dir();
    let ext = common::reserved_port();
    let listen = format!("127.0.0.1:{ext}");
    let advertised = format!("localhost:{ext}");
    let b = Broker::start_in(dir.path(), 1, &["--external-listen", &listen, "--external-advertised-address", &advertised]);
    let mut inside = shardlog::client::raw::Connection::connect(b.addr).unwrap();
    let (brokers, _) = inside.metadata(None).unwrap();
    assert_eq!((brokers[0].host.as_str(), brokers[0].port), ("127.0.0.1", b.addr.port()));
    let mut outside = shardlog::client::raw::Connection::connect(listen.as_str()).unwrap();
    let (brokers, _) = outside.metadata(None).unwrap();
    assert_eq!((brokers[0].host.as_str(), brokers[0].port), ("localhost", ext));
    assert!(outside.create_topic("through-the-outside", 1).unwrap());
    let found = outside.find_coordinator("g").unwrap().expect("a coordinator");
    assert_eq!(found, format!("localhost:{ext}"), "FindCoordinator names the external address too");
}
