//! The metrics port, black box: a broker's `/metrics` checked against
//! what the test did (records produced and fetched per topic, partition
//! offsets, a group's lag, requests and their latencies), `/health` and
//! `/ready`, hostile HTTP, and a cluster's under-replicated partitions,
//! ISR changes and controller change after a broker is killed.

mod common;

use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::{batch_of, http_get, http_request, sample, Broker};
use shardlog::client::raw::Connection;
use shardlog::protocol::{Acks, ErrorCode};

fn scrape(b: &Broker) -> String {
    let (status, body) = http_get(b.metrics.expect("the broker serves metrics"), "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn a_scrape_counts_what_was_produced_fetched_and_committed() {
    let b = Broker::start(2);
    let mut c = Connection::connect(b.addr).unwrap();
    assert!(c.create_topic("mt", 2).unwrap());
    // 2 partitions x 10 requests x 100 records.
    let values: Vec<Vec<u8>> = (0..100).map(|i| format!("value-{i:04}").into_bytes()).collect();
    let refs: Vec<&[u8]> = values.iter().map(|v| v.as_slice()).collect();
    let batch = batch_of(&refs);
    let mut produced_bytes = 0u64;
    for _ in 0..10 {
        for p in 0..2 {
            c.send_produce("mt", &[(p, &batch)], Acks::Leader).unwrap();
            let r: shardlog::protocol::produce::Response = c.recv().unwrap().body().unwrap();
            assert_eq!(r.topics[0].partitions[0].error, ErrorCode::None);
            produced_bytes += batch.len() as u64;
        }
    }
    // Partition 0 read to its end once, from offset 0.
    let mut client = b.client();
    assert_eq!(client.fetch_all_values("mt", 0, 0).len(), 1000);
    // A group commits 300 on partition 0 and 1000 on partition 1.
    let committed = c.commit_offsets("mg", None, "mt", &[(0, 300), (1, 1000)]).unwrap();
    assert!(committed.iter().all(|(_, e, _)| *e == ErrorCode::None), "{committed:?}");

    let text = scrape(&b);
    let v = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(v("shardlog_topic_records_in_total{topic=\"mt\"}"), 2000.0);
    assert_eq!(v("shardlog_topic_bytes_in_total{topic=\"mt\"}"), produced_bytes as f64);
    assert_eq!(v("shardlog_topic_records_out_total{topic=\"mt\"}"), 1000.0);
    assert_eq!(v("shardlog_requests_total{protocol=\"native\",api=\"Produce\"}"), 20.0);
    assert_eq!(v("shardlog_request_duration_seconds_count{operation=\"produce_acks_1\"}"), 20.0);
    assert!(v("shardlog_request_duration_seconds_count{operation=\"fetch\"}") >= 2.0);
    for p in 0..2 {
        assert_eq!(v(&format!("shardlog_partition_high_watermark{{topic=\"mt\",partition=\"{p}\"}}")), 1000.0);
        assert_eq!(v(&format!("shardlog_partition_log_end_offset{{topic=\"mt\",partition=\"{p}\"}}")), 1000.0);
        assert_eq!(v(&format!("shardlog_partition_log_start_offset{{topic=\"mt\",partition=\"{p}\"}}")), 0.0);
        assert_eq!(v(&format!("shardlog_partition_segments{{topic=\"mt\",partition=\"{p}\"}}")), 1.0);
        assert!(v(&format!("shardlog_partition_size_bytes{{topic=\"mt\",partition=\"{p}\"}}")) >= (produced_bytes / 2) as f64);
    }
    assert_eq!(v("shardlog_consumer_group_lag{group=\"mg\",topic=\"mt\",partition=\"0\"}"), 700.0);
    assert_eq!(v("shardlog_consumer_group_lag{group=\"mg\",topic=\"mt\",partition=\"1\"}"), 0.0);
    assert!(v("shardlog_disk_write_duration_seconds_count") > 0.0);
    assert!(v("shardlog_connections") >= 2.0, "this test's two connections are open");
    assert_eq!(v("shardlog_under_replicated_partitions"), 0.0);
    assert_eq!(v("shardlog_is_controller"), 1.0);
    assert_eq!(v("shardlog_ready"), 1.0);
    for shard in 0..2 {
        assert_eq!(v(&format!("shardlog_buffered_request_budget_bytes{{shard=\"{shard}\"}}")), 134_217_728.0, "the default budget, per shard");
        assert_eq!(v(&format!("shardlog_cache_budget_bytes{{shard=\"{shard}\"}}")), 268_435_456.0);
    }
    assert!(
        v("shardlog_cache_bytes{shard=\"0\"}") + v("shardlog_cache_bytes{shard=\"1\"}") >= produced_bytes as f64,
        "what was produced is still in the tail cache"
    );
    assert!(text.lines().any(|l| l.starts_with("shardlog_broker_info{") && l.contains("shards=\"2\"")), "{text}");
    // The group's consumer has stopped; what is produced after its commit
    // is its lag.
    c.send_produce("mt", &[(0, &batch)], Acks::Leader).unwrap();
    let _ = c.recv().unwrap();
    let later = scrape(&b);
    assert_eq!(sample(&later, "shardlog_consumer_group_lag{group=\"mg\",topic=\"mt\",partition=\"0\"}"), Some(800.0), "{later}");
    assert_eq!(sample(&later, "shardlog_topic_records_in_total{topic=\"mt\"}"), Some(2100.0));

    // The console's describe shows the same figures, and a group's lag.
    let o = common::cli(&b, &["topics", "describe", "--topic", "mt", "--group", "mg"], None);
    let described = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{described}");
    let line = |p: u32| described.lines().find(|l| l.contains(&format!("Partition: {p}\t"))).unwrap_or_else(|| panic!("no partition {p} in\n{described}"));
    for p in 0..2 {
        let end = if p == 0 { 1100 } else { 1000 };
        assert!(line(p).contains(&format!("LogStart: 0\tHighWatermark: {end}\tLogEnd: {end}\tSize: ")), "{}", line(p));
    }
    assert!(line(0).ends_with("Committed: 300\tGroupLag: 800"), "{}", line(0));
    assert!(line(1).ends_with("Committed: 1000\tGroupLag: 0"), "{}", line(1));
    let o = common::cli(&b, &["cluster", "info"], None);
    let info = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(info.contains("0@node0/shard") && info.contains(" hw 1100 size ") && info.contains(" hw 1000 size "), "{info}");

    // A refused produce is counted by its error.
    c.send_produce("mt", &[(7, &batch)], Acks::Leader).unwrap();
    let _ = c.recv().unwrap();
    let text = scrape(&b);
    assert_eq!(sample(&text, "shardlog_request_errors_total{api=\"Produce\",error=\"UnknownTopicOrPartition\"}"), Some(1.0), "{text}");
}

#[test]
fn health_and_ready_answer_and_hostile_http_gets_an_error_not_a_panic() {
    let b = Broker::start(1);
    let m = b.metrics.unwrap();
    assert_eq!(http_get(m, "/health"), (200, "ok\n".to_string()));
    assert_eq!(http_get(m, "/ready"), (200, "ready\n".to_string()));
    assert_eq!(http_get(m, "/nothing").0, 404);
    assert_eq!(http_request(m, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").0, 405);
    assert_eq!(http_request(m, b"\x16\x03\x01\x02\x00garbage\r\n\r\n").0, 400);
    // A head longer than 8 KiB.
    let long = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    assert_eq!(http_request(m, long.as_bytes()).0, 400);
    // Connections that send nothing are closed (within the read timeout);
    // meanwhile the port still answers.
    let idle: Vec<_> = (0..8).map(|_| std::net::TcpStream::connect(m).unwrap()).collect();
    assert_eq!(http_get(m, "/health").0, 200);
    drop(idle);
    assert!(b.client().fetch("missing", 0, 0, 0).0 != ErrorCode::None, "the broker still serves");
    assert_eq!(http_get(m, "/metrics").0, 200);
    // The container healthcheck: `shardlog probe`, 0 when ready, 1 when
    // nothing answers.
    let probe =
        |what: &str, at: String| std::process::Command::new(env!("CARGO_BIN_EXE_shardlog")).args(["probe", what, "--metrics-address", &at]).output().unwrap();
    assert!(probe("ready", m.to_string()).status.success());
    assert!(probe("health", m.to_string()).status.success());
    let dead = probe("ready", "127.0.0.1:1".into());
    assert_eq!(dead.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dead.stderr).contains("127.0.0.1:1"), "{}", String::from_utf8_lossy(&dead.stderr));
}

/// Waits until `f` holds for a scrape of some live broker of the cluster.
fn wait_for(c: &Cluster, what: &str, within: Duration, f: impl Fn(&[(usize, String)]) -> bool) -> Vec<(usize, String)> {
    let deadline = Instant::now() + within;
    loop {
        let scrapes: Vec<(usize, String)> = c
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.broker.as_ref().map(|b| (i, b)))
            .filter_map(|(i, b)| {
                let (status, body) = http_get(b.metrics?, "/metrics");
                (status == 200).then_some((i, body))
            })
            .collect();
        if f(&scrapes) {
            return scrapes;
        }
        assert!(Instant::now() < deadline, "{what}: not seen within {within:?}\n{}\n{}", scrapes.iter().map(|s| s.1.as_str()).collect::<String>(), c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn total(scrapes: &[(usize, String)], series: &str) -> f64 {
    scrapes.iter().filter_map(|(_, t)| sample(t, series)).sum()
}

#[test]
fn a_killed_broker_shows_as_under_replicated_partitions_and_a_killed_controller_is_replaced() {
    let mut c = Cluster::start(None, true);
    c.create("ur", 6);
    let scrapes = wait_for(&c, "one controller all agree on", Duration::from_secs(15), |s| {
        s.len() == 3
            && total(s, "shardlog_is_controller") == 1.0
            && s.iter().all(|(_, t)| sample(t, "shardlog_controller_id") == sample(&s[0].1, "shardlog_controller_id"))
    });
    assert_eq!(total(&scrapes, "shardlog_under_replicated_partitions"), 0.0);
    assert_eq!(total(&scrapes, "shardlog_partitions_leader"), 6.0, "each partition led once");
    let controller = scrapes.iter().find(|(_, t)| sample(t, "shardlog_is_controller") == Some(1.0)).unwrap().0;
    let old_id = sample(&scrapes[0].1, "shardlog_controller_id").unwrap();
    let survivors: Vec<(usize, String)> = scrapes.iter().filter(|(i, _)| *i != controller).cloned().collect();
    let elections_before = total(&survivors, "shardlog_leader_elections_total");
    let dead_led = sample(&scrapes.iter().find(|(i, _)| *i == controller).unwrap().1, "shardlog_partitions_leader").unwrap();

    // The controller dies: another broker takes over, and the partitions
    // it held are under-replicated on their leaders once their ISR drops it.
    c.nodes[controller].broker.as_mut().unwrap().kill9();
    c.nodes[controller].broker = None;
    let after = wait_for(&c, "a new controller and under-replicated partitions", Duration::from_secs(30), |s| {
        s.len() == 2
            && total(s, "shardlog_is_controller") == 1.0
            && s.iter().all(|(_, t)| sample(t, "shardlog_controller_id").is_some_and(|id| id != old_id && id >= 1.0))
            && total(s, "shardlog_under_replicated_partitions") == 6.0
    });
    assert_eq!(total(&after, "shardlog_partitions_leader"), 6.0, "every partition is led by a survivor");
    assert!(total(&after, "shardlog_leader_elections_total") >= elections_before + dead_led, "survivors took over the dead broker's partitions");
    // The partitions the survivors led all along saw their ISR shrink.
    assert!(total(&after, "shardlog_isr_shrinks_total") >= 6.0 - dead_led, "{}", after.iter().map(|s| s.1.as_str()).collect::<String>());

    // It comes back: caught up, back in every ISR.
    c.start_node(controller);
    let healed = wait_for(&c, "no under-replicated partitions after the restart", Duration::from_secs(30), |s| {
        s.len() == 3 && total(s, "shardlog_under_replicated_partitions") == 0.0 && total(s, "shardlog_isr_expands_total") >= 6.0
    });
    assert_eq!(total(&healed, "shardlog_offline_partitions"), 0.0);
}

/// Percent-encodes a PromQL query for a URL.
fn url_encode(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

/// One instant query's value from Prometheus' HTTP API (the first series).
fn promql(addr: std::net::SocketAddr, query: &str) -> Option<f64> {
    let (status, body) = http_get(addr, &format!("/api/v1/query?query={}", url_encode(query)));
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn wait_promql(addr: std::net::SocketAddr, query: &str, within: Duration, ok: impl Fn(f64) -> bool, logs: impl Fn() -> String) -> f64 {
    let deadline = Instant::now() + within;
    loop {
        let v = promql(addr, query);
        if let Some(v) = v.filter(|v| ok(*v)) {
            return v;
        }
        assert!(Instant::now() < deadline, "Prometheus: {query} was {v:?} after {within:?}\n{}", logs());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Debian's Prometheus server (which `scripts/test.sh` installs) scrapes
/// the three brokers every second; its query API gives the rate of
/// records produced while a producer runs, and the under-replicated
/// partitions once a broker is killed.
#[test]
fn a_prometheus_server_scrapes_the_cluster_and_sees_the_rate_and_a_dead_broker() {
    use shardlog::client::producer::{Producer, ProducerConfig, RecordRef};
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let began = Instant::now();
    let mut c = Cluster::start(None, true);
    c.create("pm", 3);
    let dir = common::temp_dir();
    let targets: Vec<String> = c.nodes.iter().map(|n| format!("'{}'", n.broker.as_ref().unwrap().metrics.unwrap())).collect();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: shardlog\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let web: std::net::SocketAddr = format!("127.0.0.1:{}", common::reserved_port()).parse().unwrap();
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address={web}"))
        .args(["--log.level=warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let prometheus = match prometheus {
        Ok(p) => p,
        Err(e) => panic!("cannot run prometheus ({e}): scripts/test.sh installs Debian's package"),
    };
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _prometheus = Kill(prometheus);

    // Every target is up.
    wait_promql(web, "sum(up{job=\"shardlog\"})", Duration::from_secs(30), |v| v == 3.0, || c.logs());

    // A producer runs; Prometheus computes a rate of records produced.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (stop, bootstrap) = (stop.clone(), c.bootstrap());
        std::thread::spawn(move || {
            // About 20,000 records a second, each delivery checked.
            let p = Producer::connect(ProducerConfig { bootstrap, acks: Acks::All, ..Default::default() }).unwrap();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let deliveries: Vec<_> = (0..200).map(|_| p.send(RecordRef { topic: "pm", value: Some(b"metrics"), ..Default::default() }).unwrap()).collect();
                for d in deliveries {
                    d.wait().expect("every record is delivered");
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            sent
        })
    };
    eprintln!("prometheus: every target up at {:?}", began.elapsed());
    let rate = wait_promql(web, "sum(rate(shardlog_topic_records_in_total{topic=\"pm\"}[5s]))", Duration::from_secs(30), |v| v > 0.0, || c.logs());
    eprintln!("prometheus: rate {rate:.0} records/s at {:?}", began.elapsed());
    stop.store(true, Ordering::Relaxed);
    let sent = producer.join().unwrap();
    eprintln!("prometheus: {sent} records sent");
    assert!(sent > 0 && rate > 0.0);
    // Once the producer stopped: the partitions' high watermarks add up to
    // what it sent (acks=all and idempotent: each record stored once,
    // whatever leadership did meanwhile), and the records-in counters to at
    // least that (a batch cut from a deposed leader and sent again counts
    // where it was appended each time).
    let logs = || {
        format!(
            "{sent} sent; up {:?}\n{}",
            promql(web, "sum(up)"),
            c.logs().lines().filter(|l| l.contains("leading") || l.contains("fenc") || l.contains("WARN") || l.contains("---")).collect::<Vec<_>>().join("\n")
        )
    };
    wait_promql(web, "sum(max by (partition) (shardlog_partition_high_watermark{topic=\"pm\"}))", Duration::from_secs(15), |v| v == sent as f64, logs);
    wait_promql(web, "sum(shardlog_topic_records_in_total{topic=\"pm\"})", Duration::from_secs(15), |v| v >= sent as f64, logs);
    assert_eq!(promql(web, "sum(shardlog_under_replicated_partitions)"), Some(0.0));

    // A broker dies: its scrape fails, and the survivors' leaders report
    // every partition under-replicated once their ISRs drop it.
    c.nodes[2].broker.as_mut().unwrap().kill9();
    wait_promql(web, "sum(up{job=\"shardlog\"})", Duration::from_secs(15), |v| v == 2.0, || c.logs());
    wait_promql(web, "sum(shardlog_under_replicated_partitions)", Duration::from_secs(30), |v| v == 3.0, || c.logs());
}

/// The Grafana dashboard and the alerting rules in docker/ name only
/// series a broker serves, and promtool accepts the rules.
#[test]
fn the_dashboard_and_the_alerts_name_only_series_a_broker_serves() {
    let b = Broker::start(1);
    let mut c = Connection::connect(b.addr).unwrap();
    assert!(c.create_topic("dash", 1).unwrap());
    c.send_produce("dash", &[(0, &batch_of(&[b"x"]))], Acks::Leader).unwrap();
    let _ = c.recv().unwrap();
    c.commit_offsets("dash-group", None, "dash", &[(0, 0)]).unwrap();
    let text = scrape(&b);
    // Every family the scrape describes, by the names its samples take
    // (a family with no sample yet, such as errors, is still described).
    let mut served = std::collections::BTreeSet::new();
    for l in text.lines() {
        let mut w = l.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) = (w.next(), w.next(), w.next(), w.next()) {
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                "info" => &["_info"],
                _ => &[""],
            };
            served.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        }
    }
    let root = env!("CARGO_MANIFEST_DIR");
    for file in ["docker/grafana-dashboard.json", "docker/alerts.yml"] {
        let body = std::fs::read_to_string(format!("{root}/{file}")).unwrap();
        let mut named = 0;
        for (i, _) in body.match_indices("shardlog_") {
            let name: String = body[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            assert!(served.contains(&name), "{file} names {name}, which no scrape serves:\n{text}");
            named += 1;
        }
        assert!(named >= 9, "{file} names only {named} series");
    }
    let checked = std::process::Command::new("promtool")
        .args(["check", "rules", &format!("{root}/docker/alerts.yml")])
        .output()
        .expect("promtool, from Debian's prometheus package (scripts/test.sh installs it)");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));
}
