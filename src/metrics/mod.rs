//! The broker's metrics. Each shard counts into its own cells: plain
//! values in a thread-local (a shard is one thread), so produce and fetch
//! pay no lock, no atomic and no cross-core traffic. A scrape asks every
//! shard for a [`ShardFigures`] by message (`shard::metrics`), merges them
//! and encodes Prometheus' text format with `prometheus-client` (the
//! Prometheus project's Rust client), in [`render`].
//!
//! Names follow Prometheus' conventions: a `shardlog_` prefix, base units
//! (seconds, bytes), counters ending in `_total` (added by the encoder).
//! Per-partition series are bounded by `metrics_max_partitions`: past it
//! the partitions with the largest logs are kept and the rest counted in
//! `shardlog_partition_series_omitted`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Upper bounds of the latency histograms' buckets, in seconds (and +Inf).
pub const LATENCY_BUCKETS: [f64; 16] = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram: counts per bucket (not cumulative; the last is
/// +Inf), their sum in seconds and their number.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: [u64; LATENCY_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|&b| s <= b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += s;
        self.count += 1;
    }

    fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.sum += o.sum;
        self.count += o.count;
    }

    /// Cumulative (upper bound, count) pairs, as the exposition wants them.
    fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, n) in self.buckets.iter().enumerate() {
            total += n;
            out.push((LATENCY_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY), total));
        }
        out
    }
}

/// One topic's traffic through one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicIo {
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

/// What a shard counts as it runs. Keys are static names (APIs, error
/// codes, operations) except topics.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Requests by (protocol, API).
    pub requests: HashMap<(&'static str, &'static str), u64>,
    /// Error codes answered, by (API, error): whole requests and
    /// partitions alike.
    pub errors: HashMap<(&'static str, &'static str), u64>,
    /// Request latency by operation (`produce_acks_1`, `produce_acks_all`,
    /// `produce_acks_0`, `fetch`).
    pub latency: HashMap<&'static str, Histogram>,
    pub topics: HashMap<String, TopicIo>,
    pub disk_write: Histogram,
    pub disk_sync: Histogram,
    pub connections: i64,
    pub connections_accepted: u64,
    /// Connections closed at their TLS handshake (refused, failed, slow).
    pub tls_handshake_failures: u64,
    /// SASL exchanges that failed (a wrong user or password, or malformed).
    pub authentication_failures: u64,
    /// Requests (or parts of them) an ACL did not allow.
    pub authorization_denials: u64,
    pub isr_shrinks: u64,
    pub isr_expands: u64,
    pub leader_elections: u64,
}

impl Counters {
    fn merge(&mut self, o: &Counters) {
        for (k, v) in &o.requests {
            *self.requests.entry(*k).or_default() += v;
        }
        for (k, v) in &o.errors {
            *self.errors.entry(*k).or_default() += v;
        }
        for (k, v) in &o.latency {
            self.latency.entry(*k).or_default().merge(v);
        }
        for (k, v) in &o.topics {
            let t = self.topics.entry(k.clone()).or_default();
            t.bytes_in += v.bytes_in;
            t.records_in += v.records_in;
            t.bytes_out += v.bytes_out;
            t.records_out += v.records_out;
        }
        self.disk_write.merge(&o.disk_write);
        self.disk_sync.merge(&o.disk_sync);
        self.connections += o.connections;
        self.connections_accepted += o.connections_accepted;
        self.tls_handshake_failures += o.tls_handshake_failures;
        self.authentication_failures += o.authentication_failures;
        self.authorization_denials += o.authorization_denials;
        self.isr_shrinks += o.isr_shrinks;
        self.isr_expands += o.isr_expands;
        self.leader_elections += o.leader_elections;
    }
}

thread_local! {
    static SHARD: RefCell<Counters> = RefCell::new(Counters::default());
    /// Request bytes this shard holds and its budget, as its budget last
    /// said (`server::budget`).
    static REQUEST_MEMORY: std::cell::Cell<(usize, usize)> = const { std::cell::Cell::new((0, 0)) };
}

/// What this shard's requests hold now, and its budget.
pub fn request_memory(held: usize, total: usize) {
    REQUEST_MEMORY.with(|m| m.set((held, total)));
}

/// The last [`request_memory`] of this shard.
pub fn request_memory_now() -> (usize, usize) {
    REQUEST_MEMORY.with(|m| m.get())
}

/// Counts into this shard's cells.
pub fn count(f: impl FnOnce(&mut Counters)) {
    SHARD.with(|c| f(&mut c.borrow_mut()));
}

/// A copy of this shard's counters (for a scrape).
pub fn counters() -> Counters {
    SHARD.with(|c| c.borrow().clone())
}

/// One request served.
pub fn request(protocol: &'static str, api: &'static str) {
    count(|c| *c.requests.entry((protocol, api)).or_default() += 1);
}

/// One error code answered (`None` is no error: nothing counted).
pub fn error(api: &'static str, error: Option<&'static str>) {
    if let Some(e) = error {
        count(|c| *c.errors.entry((api, e)).or_default() += 1);
    }
}

/// A request's time from decoded to answered.
pub fn latency(op: &'static str, d: Duration) {
    count(|c| c.latency.entry(op).or_default().observe(d));
}

/// Counts into a topic's cell, made on its first use (one lookup, and
/// the name copied only then).
fn count_topic(topic: &str, f: impl FnOnce(&mut TopicIo)) {
    count(|c| match c.topics.get_mut(topic) {
        Some(t) => f(t),
        None => f(c.topics.entry(topic.to_string()).or_default()),
    });
}

/// Records a produce's bytes and records into `topic`.
pub fn produced(topic: &str, bytes: u64, records: u64) {
    count_topic(topic, |t| {
        t.bytes_in += bytes;
        t.records_in += records;
    });
}

/// Records a fetch's bytes and records out of `topic`.
pub fn fetched(topic: &str, bytes: u64, records: u64) {
    if bytes == 0 {
        return;
    }
    count_topic(topic, |t| {
        t.bytes_out += bytes;
        t.records_out += records;
    });
}

/// One partition's figures, from the shard that owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionFigures {
    pub topic: String,
    pub partition: u32,
    pub log_start: i64,
    pub high_watermark: i64,
    pub log_end: i64,
    pub bytes: u64,
    pub segments: u64,
    /// This broker leads it (or it has one replica).
    pub leader: bool,
    /// Led here with fewer in-sync replicas than replicas.
    pub under_replicated: bool,
    /// Led here with fewer in-sync replicas than a majority.
    pub under_min_isr: bool,
}

/// What one shard answers a scrape with.
#[derive(Debug, Clone, Default)]
pub struct ShardFigures {
    pub counters: Counters,
    pub partitions: Vec<PartitionFigures>,
    /// Committed offsets of the groups it coordinates: (group, topic,
    /// partition, offset).
    pub committed: Vec<(String, String, u32, i64)>,
    pub memory: ShardMemory,
}

/// What the broker as a whole reports beside its shards' figures.
#[derive(Debug, Clone, Default)]
pub struct BrokerFigures {
    pub node_id: i64,
    pub shards: u16,
    pub version: &'static str,
    /// The metadata quorum, where this broker is a voter.
    pub quorum: Option<QuorumFigures>,
    /// The controller as this broker last heard (-1: none).
    pub controller: i64,
    /// Partitions with no leader, counted by the controller only (0
    /// elsewhere), as Kafka's OfflinePartitionsCount.
    pub offline_partitions: u64,
    /// Registered with the quorum, unfenced, and serving.
    pub ready: bool,
    /// The most per-partition series to report.
    pub max_partitions: usize,
}

#[derive(Debug, Clone, Default)]
pub struct QuorumFigures {
    pub term: u64,
    pub leader: i64,
    pub commit_index: u64,
}

/// Everything one scrape reports.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub broker: BrokerFigures,
    pub counters: Counters,
    pub partitions: Vec<PartitionFigures>,
    pub committed: Vec<(String, String, u32, i64)>,
    /// Each shard's memory against its budgets, by shard.
    pub memory: Vec<ShardMemory>,
}

/// One shard's request memory and tail cache against their budgets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardMemory {
    pub shard: u16,
    pub buffered_request_bytes: u64,
    pub buffered_request_budget_bytes: u64,
    pub cache_bytes: u64,
    pub cache_budget_bytes: u64,
}

impl Figures {
    pub fn new(broker: BrokerFigures, shards: Vec<ShardFigures>) -> Figures {
        let mut f = Figures { broker, ..Figures::default() };
        for s in shards {
            f.counters.merge(&s.counters);
            f.partitions.extend(s.partitions);
            f.committed.extend(s.committed);
            f.memory.push(s.memory);
        }
        f.memory.sort_by_key(|m| m.shard);
        f.partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        f.committed.sort();
        f
    }

    /// Each group's lag per partition: the high watermark this broker
    /// holds less the committed offset, where this broker holds a replica.
    pub fn lags(&self) -> Vec<(&str, &str, u32, i64)> {
        let ends: HashMap<(&str, u32), i64> = self.partitions.iter().map(|p| ((p.topic.as_str(), p.partition), p.high_watermark)).collect();
        self.committed.iter().filter_map(|(g, t, p, o)| ends.get(&(t.as_str(), *p)).map(|hw| (g.as_str(), t.as_str(), *p, (hw - o).max(0)))).collect()
    }
}

/// The exposition's content type (OpenMetrics text, which Prometheus
/// asks for first).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes a scrape's figures in the text format.
pub fn render(f: Figures) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape(f)));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[derive(Debug)]
struct Scrape(Figures);

fn counter(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge<V: prometheus_client::encoding::EncodeGaugeValue>(e: &mut DescriptorEncoder<'_>, name: &str, help: &str, v: V) -> Result<(), std::fmt::Error> {
    ConstGauge::new(v).encode(e.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// A counter family labelled by two names, its series in label order.
fn pair_counters(
    e: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    (first, second): (&str, &str),
    rows: &HashMap<(&'static str, &'static str), u64>,
) -> Result<(), std::fmt::Error> {
    let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
    let mut rows: Vec<_> = rows.iter().collect();
    rows.sort();
    for ((a, b), n) in rows {
        let labels = [(first, *a), (second, *b)];
        ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn histogram(m: &mut prometheus_client::encoding::MetricEncoder<'_>, h: &Histogram) -> Result<(), std::fmt::Error> {
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(h.sum, h.count, &h.cumulative(), None)
}

impl Collector for Scrape {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let f = &self.0;
        let b = &f.broker;
        {
            let mut m = e.encode_descriptor("shardlog_broker", "The broker: its version, node id and shards.", None, MetricType::Info)?;
            let labels = [("version", b.version.to_string()), ("node_id", b.node_id.to_string()), ("shards", b.shards.to_string())];
            m.encode_info(&labels)?;
        }
        gauge(&mut e, "shardlog_ready", "1 once this broker is registered with the quorum, unfenced and serving.", i64::from(b.ready))?;
        gauge(&mut e, "shardlog_controller_id", "The node id of the controller (the quorum's leader) as this broker last heard; -1 if none.", b.controller)?;
        gauge(&mut e, "shardlog_is_controller", "1 on the broker that is the controller.", i64::from(b.controller == b.node_id))?;
        if let Some(q) = &b.quorum {
            gauge(&mut e, "shardlog_quorum_term", "The metadata quorum's Raft term as this voter knows it.", q.term)?;
            gauge(&mut e, "shardlog_quorum_leader_id", "The metadata quorum's leader as this voter knows it; -1 if none.", q.leader)?;
            gauge(&mut e, "shardlog_quorum_commit_index", "The metadata quorum's commit index on this voter.", q.commit_index)?;
        }

        let c = &f.counters;
        pair_counters(&mut e, "shardlog_requests", "Requests served, by protocol and API.", ("protocol", "api"), &c.requests)?;
        pair_counters(
            &mut e,
            "shardlog_request_errors",
            "Error codes answered, by API and error (for a whole request or one partition of it).",
            ("api", "error"),
            &c.errors,
        )?;
        {
            let mut m = e.encode_descriptor(
                "shardlog_request_duration_seconds",
                "Time from a request decoded to its answer ready, by operation.",
                None,
                MetricType::Histogram,
            )?;
            let mut rows: Vec<_> = c.latency.iter().collect();
            rows.sort_by_key(|r| *r.0);
            for (op, h) in rows {
                let labels = [("operation", *op)];
                histogram(&mut m.encode_family(&labels)?, h)?;
            }
        }
        let mut topics: Vec<_> = c.topics.iter().collect();
        topics.sort_by(|a, b| a.0.cmp(b.0));
        for (name, help, pick) in [
            ("shardlog_topic_bytes_in", "Record batch bytes produced, by topic (as stored).", (|t: &TopicIo| t.bytes_in) as fn(&TopicIo) -> u64),
            ("shardlog_topic_records_in", "Records produced, by topic.", |t| t.records_in),
            ("shardlog_topic_bytes_out", "Record batch bytes fetched by consumers, by topic.", |t| t.bytes_out),
            ("shardlog_topic_records_out", "Records fetched by consumers, by topic.", |t| t.records_out),
        ] {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (t, io) in &topics {
                let labels = [("topic", t.as_str())];
                ConstCounter::new(pick(io)).encode(m.encode_family(&labels)?)?;
            }
        }

        // Per partition, the largest logs first past the bound.
        let mut shown: Vec<&PartitionFigures> = f.partitions.iter().collect();
        let omitted = shown.len().saturating_sub(b.max_partitions);
        if omitted > 0 {
            shown.sort_by_key(|p| std::cmp::Reverse(p.bytes));
            shown.truncate(b.max_partitions);
            shown.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        }
        gauge(
            &mut e,
            "shardlog_partition_series_omitted",
            "Partitions held here but left out of the per-partition series (metrics_max_partitions).",
            omitted as u64,
        )?;
        gauge(&mut e, "shardlog_partitions", "Partitions with a replica on this broker.", f.partitions.len() as u64)?;
        gauge(&mut e, "shardlog_partitions_leader", "Partitions this broker leads.", f.partitions.iter().filter(|p| p.leader).count() as u64)?;
        for (name, help, pick) in [
            ("shardlog_partition_log_start_offset", "A partition's first offset held.", (|p: &PartitionFigures| p.log_start) as fn(&PartitionFigures) -> i64),
            ("shardlog_partition_high_watermark", "A partition's high watermark (what consumers may read up to) as this replica knows it.", |p| {
                p.high_watermark
            }),
            ("shardlog_partition_log_end_offset", "The offset after a partition's last batch on this replica.", |p| p.log_end),
            ("shardlog_partition_size_bytes", "Bytes of a partition's segments on disk.", |p| p.bytes as i64),
            ("shardlog_partition_segments", "Segments of a partition's log.", |p| p.segments as i64),
        ] {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for p in &shown {
                let part = p.partition.to_string();
                let labels = [("topic", p.topic.as_str()), ("partition", part.as_str())];
                ConstGauge::new(pick(p)).encode(m.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut e,
            "shardlog_under_replicated_partitions",
            "Partitions this broker leads with fewer in-sync replicas than replicas.",
            f.partitions.iter().filter(|p| p.under_replicated).count() as u64,
        )?;
        gauge(
            &mut e,
            "shardlog_under_min_isr_partitions",
            "Partitions this broker leads with fewer in-sync replicas than a majority: acks=all is refused.",
            f.partitions.iter().filter(|p| p.under_min_isr).count() as u64,
        )?;
        gauge(&mut e, "shardlog_offline_partitions", "Partitions with no leader (reported by the controller; 0 on other brokers).", b.offline_partitions)?;
        counter(&mut e, "shardlog_isr_shrinks", "In-sync replica sets this broker shrank as leader.", c.isr_shrinks)?;
        counter(&mut e, "shardlog_isr_expands", "In-sync replica sets this broker grew as leader.", c.isr_expands)?;
        counter(&mut e, "shardlog_leader_elections", "Times a partition replica on this broker became leader.", c.leader_elections)?;
        {
            let lags = f.lags();
            let mut m = e.encode_descriptor(
                "shardlog_consumer_group_lag",
                "Records between a group's committed offset and the high watermark, per partition (groups this broker coordinates, partitions it holds).",
                None,
                MetricType::Gauge,
            )?;
            let mut by_group: BTreeMap<(&str, &str, u32), i64> = BTreeMap::new();
            for (g, t, p, lag) in lags {
                by_group.insert((g, t, p), lag);
            }
            for ((g, t, p), lag) in by_group.into_iter().take(b.max_partitions) {
                let part = p.to_string();
                let labels = [("group", g), ("topic", t), ("partition", part.as_str())];
                ConstGauge::new(lag).encode(m.encode_family(&labels)?)?;
            }
        }

        gauge(&mut e, "shardlog_connections", "Client connections open.", c.connections)?;
        counter(&mut e, "shardlog_connections_accepted", "Client connections accepted.", c.connections_accepted)?;
        counter(&mut e, "shardlog_tls_handshake_failures", "Connections closed at their TLS handshake.", c.tls_handshake_failures)?;
        counter(&mut e, "shardlog_authentication_failures", "SASL authentications that failed.", c.authentication_failures)?;
        counter(&mut e, "shardlog_authorization_denials", "Requests or parts of requests no ACL allowed.", c.authorization_denials)?;
        for (name, help, pick) in [
            (
                "shardlog_buffered_request_bytes",
                "Bytes of requests a shard read and has not answered yet.",
                (|m: &ShardMemory| m.buffered_request_bytes) as fn(&ShardMemory) -> u64,
            ),
            ("shardlog_buffered_request_budget_bytes", "A shard's request-memory budget (max_buffered_request_bytes_per_shard).", |m| {
                m.buffered_request_budget_bytes
            }),
            ("shardlog_cache_bytes", "Bytes of recent batches a shard keeps in memory for consumers.", |m| m.cache_bytes),
            ("shardlog_cache_budget_bytes", "A shard's tail-cache budget (cache_max_bytes_per_shard).", |m| m.cache_budget_bytes),
        ] {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for shard in &f.memory {
                let id = shard.shard.to_string();
                let labels = [("shard", id.as_str())];
                ConstGauge::new(pick(shard)).encode(m.encode_family(&labels)?)?;
            }
        }
        for (name, help, h) in [
            ("shardlog_disk_write_duration_seconds", "Time of one direct write to a segment.", &c.disk_write),
            ("shardlog_disk_sync_duration_seconds", "Time of one fdatasync of a segment.", &c.disk_sync),
        ] {
            histogram(&mut e.encode_descriptor(name, help, None, MetricType::Histogram)?, h)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
