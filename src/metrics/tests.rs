use super::*;

fn partition(topic: &str, partition: u32, hw: i64, bytes: u64) -> PartitionFigures {
    PartitionFigures {
        topic: topic.into(),
        partition,
        log_start: 0,
        high_watermark: hw,
        log_end: hw,
        bytes,
        segments: 1,
        leader: true,
        under_replicated: partition == 1,
        under_min_isr: false,
    }
}

#[test]
fn histograms_bucket_by_upper_bound_and_merge() {
    let mut h = Histogram::default();
    h.observe(Duration::from_micros(50));
    h.observe(Duration::from_micros(100));
    h.observe(Duration::from_millis(3));
    h.observe(Duration::from_secs(60));
    assert_eq!(h.buckets[0], 2, "100 µs is in the 100 µs bucket (upper bounds are inclusive)");
    assert_eq!(h.buckets[5], 1);
    assert_eq!(h.buckets[LATENCY_BUCKETS.len()], 1, "past the last bound: +Inf");
    let mut m = h.clone();
    m.merge(&h);
    assert_eq!(m.count, 8);
    let c = m.cumulative();
    assert_eq!(c.last(), Some(&(f64::INFINITY, 8)));
    assert!(c.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative counts never fall");
}

#[test]
fn a_scrape_merges_shards_and_renders_prometheus_text() {
    let mut a = ShardFigures::default();
    a.counters.requests.insert(("native", "Produce"), 3);
    a.counters.errors.insert(("Produce", "NotLeader"), 1);
    a.counters.topics.insert("t".into(), TopicIo { bytes_in: 100, records_in: 10, bytes_out: 0, records_out: 0 });
    a.counters.latency.entry("produce_acks_1").or_default().observe(Duration::from_millis(1));
    a.partitions = vec![partition("t", 0, 10, 1000)];
    a.committed = vec![("g".into(), "t".into(), 0, 4), ("g".into(), "elsewhere".into(), 0, 4)];
    let mut b = ShardFigures::default();
    b.counters.requests.insert(("native", "Produce"), 2);
    b.counters.topics.insert("t".into(), TopicIo { bytes_in: 50, records_in: 5, bytes_out: 7, records_out: 1 });
    b.partitions = vec![partition("t", 1, 5, 10)];
    let broker = BrokerFigures { node_id: 2, shards: 2, version: "0.1.0", controller: 2, ready: true, max_partitions: 100, ..Default::default() };
    let f = Figures::new(broker, vec![a, b]);
    assert_eq!(f.lags(), vec![("g", "t", 0, 6)], "lag where this broker holds the partition only");
    let text = render(f);
    for line in [
        "shardlog_requests_total{protocol=\"native\",api=\"Produce\"} 5",
        "shardlog_request_errors_total{api=\"Produce\",error=\"NotLeader\"} 1",
        "shardlog_topic_records_in_total{topic=\"t\"} 15",
        "shardlog_topic_bytes_out_total{topic=\"t\"} 7",
        "shardlog_partition_high_watermark{topic=\"t\",partition=\"1\"} 5",
        "shardlog_under_replicated_partitions 1",
        "shardlog_consumer_group_lag{group=\"g\",topic=\"t\",partition=\"0\"} 6",
        "shardlog_is_controller 1",
        "shardlog_request_duration_seconds_count{operation=\"produce_acks_1\"} 1",
        "shardlog_broker_info{version=\"0.1.0\",node_id=\"2\",shards=\"2\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}

#[test]
fn per_partition_series_keep_the_largest_logs_past_the_bound() {
    let s = ShardFigures { partitions: (0..10).map(|i| partition("t", i, 1, u64::from(i) * 100)).collect(), ..Default::default() };
    let broker = BrokerFigures { max_partitions: 3, ..Default::default() };
    let text = render(Figures::new(broker, vec![s]));
    let shown: Vec<&str> = text.lines().filter(|l| l.starts_with("shardlog_partition_size_bytes{")).collect();
    assert_eq!(shown.len(), 3, "{text}");
    assert!(shown.iter().all(|l| l.contains("partition=\"7\"") || l.contains("partition=\"8\"") || l.contains("partition=\"9\"")), "{shown:?}");
    assert!(text.lines().any(|l| l == "shardlog_partition_series_omitted 7"));
    assert!(text.lines().any(|l| l == "shardlog_partitions 10"));
}
