//! `loadgen`: the bundled load generator for shardlog.
//!
//! It speaks the wire protocol through `shardlog::client::raw` rather than a
//! high-level producer, so that what it measures is the broker: batching,
//! pipelining and pacing are explicit and the same in every run.
//!
//! Latency is measured from the *intended* send time of each batch: with
//! `--rate`, batches are due on a fixed schedule (open loop), and a stall
//! shows up as latency of every batch that was due during it, instead of
//! silently lowering the send rate (coordinated omission).

mod kafka;
mod report;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use shardlog::client::raw::{ClientError, Connection};
use shardlog::protocol::{fetch, produce, Acks, ErrorCode};
use shardlog::record::{self, BatchBuilder, RecordIter};

/// Which client library the workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Client {
    /// `client::raw`: batches built by hand, requests pipelined: what the
    /// broker takes.
    Raw,
    /// The SDK (`client::producer`, `client::consumer`) used as an
    /// application would: what an application gets.
    Sdk,
}

/// Which wire protocol the raw client's producers and consumers speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// shardlog's own (flatbuffers).
    Native,
    /// Kafka's (Produce v7, Fetch v11), on the same port.
    Kafka,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Producers only.
    Produce,
    /// Consumers only, reading what is already stored.
    Consume,
    /// Producers and consumers together; end-to-end latency and an
    /// exactly-once, in-order check.
    E2e,
}

/// Load generator for shardlog: produce, consume, or both end to end.
#[derive(Debug, Clone, Parser)]
#[command(name = "loadgen", version)]
pub struct Args {
    #[arg(value_enum)]
    pub mode: Mode,
    /// The client library the producers and consumers use (sdk: produce
    /// and consume modes).
    #[arg(long, value_enum, default_value = "raw")]
    pub client: Client,
    /// The wire protocol of the raw client's produce and fetch requests
    /// (topic set-up and leader lookups stay native).
    #[arg(long, value_enum, default_value = "native")]
    pub protocol: Protocol,
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap_server: String,
    /// Connect in TLS, trusting the authorities in this PEM file (native
    /// protocol: the raw and SDK clients).
    #[arg(long)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Created with --partitions if missing.
    #[arg(long, default_value = "loadgen")]
    pub topic: String,
    #[arg(long, default_value_t = 2)]
    pub partitions: u32,
    /// Copies of each partition when the topic is created (up to the brokers).
    #[arg(long, default_value_t = 1)]
    pub replication_factor: u16,
    #[arg(long, default_value_t = 1)]
    pub producers: u32,
    #[arg(long, default_value_t = 1)]
    pub consumers: u32,
    /// Bytes of each message value.
    #[arg(long, default_value_t = 100)]
    pub message_size: usize,
    /// Messages per batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// With --rate: send a partly filled batch once its first message has
    /// waited this long (0: only full batches).
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    #[arg(long, default_value = "1", value_parser = PossibleValuesParser::new(Acks::NAMES).map(|s| s.parse::<Acks>().expect("a listed value")))]
    pub acks: Acks,
    /// Messages per second over all producers (open loop); 0: as fast as
    /// the broker takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Seconds to run (after the warm-up).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Messages to send (produce, e2e) or read (consume) after the warm-up.
    #[arg(long)]
    pub messages: Option<u64>,
    /// Seconds of load before measuring.
    #[arg(long, default_value_t = 0.0)]
    pub warmup: f64,
    /// Bytes a consumer asks for per partition in each fetch.
    #[arg(long, default_value_t = 4 << 20)]
    pub fetch_max_bytes: u32,
    /// Produce requests in flight per producer connection.
    #[arg(long, default_value_t = 8)]
    pub inflight: usize,
    /// The SDK producer (--client sdk) without idempotence (it is on by
    /// default), to measure what idempotence costs.
    #[arg(long)]
    pub no_idempotence: bool,
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    #[arg(long)]
    pub hgrm: Option<std::path::PathBuf>,
    #[arg(long)]
    pub plot: Option<std::path::PathBuf>,
    /// Exit non-zero if the measured rate is below this (messages/s).
    #[arg(long)]
    pub expect_rate: Option<f64>,
}

/// Counters shared by all workers; histograms are merged at the end and
/// once a second for the progress line.
pub struct Stats {
    pub produced: AtomicU64,
    pub produced_bytes: AtomicU64,
    pub consumed: AtomicU64,
    pub consumed_bytes: AtomicU64,
    /// Every message consumed, warm-up included (for the e2e catch-up).
    pub consumed_total: AtomicU64,
    pub errors: AtomicU64,
    /// Produce request latency from the intended send time, µs.
    pub produce_lat: Mutex<Histogram<u64>>,
    /// Fetch request latency, µs.
    pub fetch_lat: Mutex<Histogram<u64>>,
    /// Send-to-receive latency of each message, µs.
    pub e2e: Mutex<Histogram<u64>>,
    pub first_error: Mutex<Option<String>>,
}

impl Stats {
    fn new() -> Self {
        let h = || Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"));
        let z = || AtomicU64::new(0);
        Stats {
            produced: z(),
            produced_bytes: z(),
            consumed: z(),
            consumed_bytes: z(),
            consumed_total: z(),
            errors: z(),
            produce_lat: h(),
            fetch_lat: h(),
            e2e: h(),
            first_error: Mutex::new(None),
        }
    }

    fn reset(&self) {
        for c in [&self.produced, &self.produced_bytes, &self.consumed, &self.consumed_bytes] {
            c.store(0, Ordering::Relaxed);
        }
        for h in [&self.produce_lat, &self.fetch_lat, &self.e2e] {
            h.lock().unwrap().reset();
        }
    }

    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap().get_or_insert(e);
    }
}

/// What producers sent and consumers saw, per partition, for the e2e check.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub checksum: u64,
}

fn mix(producer: u32, seq: u64) -> u64 {
    let mut x = (u64::from(producer) << 40) ^ seq ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}

fn now_ns(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// The first 20 bytes of every value: intended send time (ns since the run's epoch),
/// producer id, sequence number within (producer, partition).
const STAMP_BYTES: usize = 20;

struct Control {
    stop_producers: AtomicBool,
    stop_consumers: AtomicBool,
    measuring: AtomicBool,
    epoch: Instant,
}

/// The partitions one broker leads: a producer or consumer talks to one.
#[derive(Clone)]
struct Leader {
    addr: String,
    partitions: Vec<u32>,
}

/// The first of `--bootstrap-server`'s brokers (HOST:PORT[,HOST:PORT...]) that answers.
/// TLS as `--tls-ca` asks, read once.
fn security(args: &Args) -> Result<shardlog::tls::ClientSecurity> {
    static TLS: std::sync::OnceLock<Option<std::sync::Arc<rustls::ClientConfig>>> = std::sync::OnceLock::new();
    let tls = match TLS.get() {
        Some(t) => t.clone(),
        None => {
            let t = match &args.tls_ca {
                Some(ca) => Some(shardlog::tls::client_config(ca, None, None).map_err(|e| anyhow::anyhow!(e))?),
                None => None,
            };
            TLS.get_or_init(|| t).clone()
        }
    };
    Ok(shardlog::tls::ClientSecurity { tls, sasl: None })
}

fn connect_bootstrap(args: &Args) -> Result<Connection> {
    let addrs: Vec<&str> = args.bootstrap_server.split(',').map(str::trim).filter(|a| !a.is_empty()).collect();
    Connection::connect_any_with(&addrs, &security(args)?).with_context(|| format!("connecting to {}", args.bootstrap_server))
}

/// Each of `partitions`' leader now, looked up again until it answers or
/// the run stops: a leader's broker died and another took over.
fn follow_leaders(args: &Args, partitions: &[u32], stop: &AtomicBool) -> HashMap<u32, String> {
    loop {
        if let Ok(ls) = leaders(args) {
            let route: HashMap<u32, String> = ls.iter().flat_map(|l| l.partitions.iter().map(move |&p| (p, l.addr.clone()))).collect();
            if partitions.iter().all(|p| route.contains_key(p)) {
                return route;
            }
        }
        if stop.load(Ordering::Relaxed) {
            return HashMap::new();
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Errors after which a partition's requests go to its leader as the
/// metadata names it again.
/// (A topic just created may be unknown for a moment to a broker whose
/// copy of the metadata has not applied it yet.)
fn leader_moved(code: ErrorCode) -> bool {
    code.is_retriable() || code == ErrorCode::UnknownTopicOrPartition
}

/// The topic's partitions grouped by the broker that leads them.
fn leaders(args: &Args) -> Result<Vec<Leader>> {
    let mut c = connect_bootstrap(args)?;
    let by_partition = c.leaders(&args.topic)?.with_context(|| format!("topic {} does not exist", args.topic))?;
    let mut out: Vec<Leader> = Vec::new();
    for (p, addr) in by_partition.into_iter().enumerate() {
        match out.iter_mut().find(|l| l.addr == addr) {
            Some(l) => l.partitions.push(p as u32),
            None => out.push(Leader { addr, partitions: vec![p as u32] }),
        }
    }
    Ok(out)
}

/// One producer's connection to one leader, with the thread that reads
/// its answers (requests stay pipelined, up to `--inflight`).
struct Link {
    conn: Conn,
    tx: mpsc::SyncSender<(u32, Instant, u64, u64)>,
    reader: Option<thread::JoinHandle<()>>,
    /// Set by the reader when the connection broke or a partition's
    /// leader moved: the producer looks its leaders up again.
    moved: Arc<AtomicBool>,
}

/// A raw connection in either protocol.
enum Conn {
    Native(Box<Connection>),
    Kafka(kafka::KafkaConn),
}

impl Conn {
    fn connect(addr: &str, protocol: Protocol, security: &shardlog::tls::ClientSecurity) -> Result<Conn> {
        Ok(match protocol {
            Protocol::Native => Conn::Native(Box::new(Connection::connect_with(addr, security).with_context(|| format!("connecting to {addr}"))?)),
            Protocol::Kafka => Conn::Kafka(kafka::KafkaConn::connect(addr)?),
        })
    }

    fn try_clone(&self) -> Result<Conn> {
        Ok(match self {
            Conn::Native(c) => Conn::Native(Box::new(c.try_clone()?)),
            Conn::Kafka(c) => Conn::Kafka(c.try_clone()?),
        })
    }

    fn set_read_timeout(&self, d: Option<Duration>) -> Result<()> {
        match self {
            Conn::Native(c) => Ok(c.set_read_timeout(d)?),
            Conn::Kafka(c) => c.set_read_timeout(d),
        }
    }

    fn send_produce(&mut self, topic: &str, partition: u32, batch: &[u8], acks: Acks) -> Result<u32> {
        match self {
            Conn::Native(c) => Ok(c.send_produce(topic, &[(partition, batch)], acks)?),
            Conn::Kafka(c) => c.send_produce(topic, partition, batch, acks),
        }
    }

    /// The next produce answer: its correlation id and its partition's error.
    fn recv_produce(&mut self) -> Result<(u32, ErrorCode)> {
        match self {
            Conn::Native(c) => {
                let reply = c.recv()?;
                let corr = reply.response().correlation_id();
                let code = match reply.body::<produce::Response>() {
                    Ok(r) => r.partitions().next().map_or(ErrorCode::None, |p| p.error),
                    Err(ClientError::Broker { code, .. }) => code,
                    Err(_) => ErrorCode::UnknownServerError,
                };
                Ok((corr, code))
            }
            Conn::Kafka(c) => c.recv_produce(),
        }
    }

    fn fetch(&mut self, topic: &str, asked: &[(u32, i64)], max_bytes: u32) -> Result<fetch::Response<Bytes>> {
        match self {
            Conn::Native(c) => {
                let corr = c.send_fetch(topic, asked, max_bytes, 100, 1)?;
                let reply = c.recv()?;
                if reply.correlation_id()? != corr {
                    bail!("fetch: response to another request while waiting for {corr}");
                }
                Ok(reply.body::<fetch::Response<Bytes>>()?)
            }
            Conn::Kafka(c) => c.fetch(topic, asked, max_bytes, 100, 1),
        }
    }
}

impl Link {
    fn open(addr: &str, acks: Acks, args: &Args, stats: &Arc<Stats>, ctl: &Arc<Control>) -> Result<Link> {
        let conn = Conn::connect(addr, args.protocol, &security(args)?)?;
        let (tx, rx) = mpsc::sync_channel::<(u32, Instant, u64, u64)>(args.inflight.max(1));
        let moved = Arc::new(AtomicBool::new(false));
        let reader = if acks != Acks::None {
            let mut rconn = conn.try_clone()?;
            // A stopped broker must not hold the reader forever.
            rconn.set_read_timeout(Some(Duration::from_secs(30)))?;
            let (stats, ctl, moved) = (stats.clone(), ctl.clone(), moved.clone());
            Some(thread::spawn(move || {
                let mut waiting: HashMap<u32, (Instant, u64, u64)> = HashMap::new();
                loop {
                    // Read the socket only while a response is owed, so the
                    // reader ends once the writer is done and all are answered.
                    if waiting.is_empty() {
                        match rx.recv() {
                            Ok((c, t, n, b)) => {
                                waiting.insert(c, (t, n, b));
                            }
                            Err(_) => return,
                        }
                    }
                    let (corr, code) = match rconn.recv_produce() {
                        Ok(r) => r,
                        Err(e) => {
                            stats.error(format!("produce: {e}"));
                            moved.store(true, Ordering::Relaxed);
                            return;
                        }
                    };
                    while !waiting.contains_key(&corr) {
                        match rx.recv() {
                            Ok((c, t, n, b)) => {
                                waiting.insert(c, (t, n, b));
                            }
                            Err(_) => return,
                        }
                    }
                    let (due, n, bytes) = waiting.remove(&corr).expect("present");
                    if code != ErrorCode::None {
                        stats.error(format!("produce: {code:?}"));
                        if leader_moved(code) {
                            moved.store(true, Ordering::Relaxed);
                        }
                        continue;
                    }
                    if ctl.measuring.load(Ordering::Relaxed) {
                        let us = due.elapsed().as_micros() as u64;
                        let _ = stats.produce_lat.lock().unwrap().record(us.max(1));
                        stats.produced.fetch_add(n, Ordering::Relaxed);
                        stats.produced_bytes.fetch_add(bytes, Ordering::Relaxed);
                    }
                }
            }))
        } else {
            None
        };
        Ok(Link { conn, tx, reader, moved })
    }

    /// Waits for every answer owed on this connection.
    fn finish(self) {
        drop(self.tx);
        if let Some(r) = self.reader {
            let _ = r.join();
        }
    }
}

/// Sends batches to `mine.partitions` in turn, each to its leader: the one
/// in `mine` at first, and after a failure (the connection broke, or the
/// leader moved) the one the metadata names then. A batch that failed is
/// counted as an error and not sent again.
fn producer(id: u32, mine: Leader, args: Args, stats: Arc<Stats>, ctl: Arc<Control>, quota: Option<u64>) -> Result<HashMap<u32, Tally>> {
    let acks = args.acks;
    let partitions = mine.partitions;
    let mut route: HashMap<u32, String> = partitions.iter().map(|&p| (p, mine.addr.clone())).collect();
    let mut links: HashMap<String, Link> = HashMap::new();
    let failover = |links: &mut HashMap<String, Link>, route: &mut HashMap<u32, String>| {
        // The readers of the old connections end on their own.
        links.clear();
        thread::sleep(Duration::from_millis(100));
        *route = follow_leaders(&args, &partitions, &ctl.stop_producers);
    };
    let per_producer_rate = if args.rate > 0 { Some(args.rate as f64 / f64::from(args.producers)) } else { None };
    let mut seqs: HashMap<u32, u64> = HashMap::new();
    let mut tallies: HashMap<u32, Tally> = HashMap::new();
    let filler = vec![0x61u8; args.message_size.max(STAMP_BYTES)];
    let mut value = filler.clone();
    let mut builder = BatchBuilder::new(args.batch_size * (args.message_size + 16) + 64);
    let mut batch = Vec::new();
    let start = Instant::now();
    let mut sent: u64 = 0;
    let mut turn = id as usize;
    while !ctl.stop_producers.load(Ordering::Relaxed) && quota.is_none_or(|q| sent < q) {
        // A batch closes when it is full or when its first message has
        // lingered --linger-ms, whichever comes first (paced runs only).
        let batch_cap = match per_producer_rate {
            Some(r) if args.linger_ms > 0 => ((r * args.linger_ms as f64 / 1000.0).ceil() as u64).clamp(1, args.batch_size as u64),
            _ => args.batch_size as u64,
        };
        let n = quota.map_or(batch_cap, |q| (q - sent).min(batch_cap));
        let partition = partitions[turn % partitions.len()];
        turn += 1;
        // Open loop: this batch is due when its messages are due.
        let due = match per_producer_rate {
            Some(r) => {
                let due = start + Duration::from_secs_f64((sent + n) as f64 / r);
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                due
            }
            None => Instant::now(),
        };
        let seq = seqs.entry(partition).or_insert(0);
        let tally = tallies.entry(partition).or_default();
        let ts = shardlog::time::now_ms();
        // Stamped with the time the batch was due, not the time it was
        // built, so a late producer shows up in end-to-end latency too.
        let stamp = due.saturating_duration_since(ctl.epoch).as_nanos() as u64;
        for _ in 0..n {
            value[..8].copy_from_slice(&stamp.to_le_bytes());
            value[8..12].copy_from_slice(&id.to_le_bytes());
            value[12..20].copy_from_slice(&seq.to_le_bytes());
            tally.count += 1;
            tally.checksum = tally.checksum.wrapping_add(mix(id, *seq));
            *seq += 1;
            builder.push(ts, None, Some(&value[..args.message_size.max(STAMP_BYTES)]), &[]);
        }
        batch.clear();
        builder.finish_into(&mut batch);
        sent += n;
        let Some(addr) = route.get(&partition).cloned() else { break };
        if links.get(&addr).is_some_and(|l| l.moved.load(Ordering::Relaxed)) {
            stats.error(format!("produce: partition {partition}'s leader moved or is unreachable; a batch of {n} is not sent"));
            failover(&mut links, &mut route);
            continue;
        }
        if !links.contains_key(&addr) {
            match Link::open(&addr, acks, &args, &stats, &ctl) {
                Ok(l) => {
                    links.insert(addr.clone(), l);
                }
                Err(e) => {
                    stats.error(format!("produce: {e:#}"));
                    failover(&mut links, &mut route);
                    continue;
                }
            }
        }
        let link = links.get_mut(&addr).expect("inserted above");
        let corr = match link.conn.send_produce(&args.topic, partition, &batch, acks) {
            Ok(c) => c,
            Err(e) => {
                stats.error(format!("produce: {e}"));
                failover(&mut links, &mut route);
                continue;
            }
        };
        if acks == Acks::None {
            if ctl.measuring.load(Ordering::Relaxed) {
                stats.produced.fetch_add(n, Ordering::Relaxed);
                stats.produced_bytes.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        } else if link.tx.send((corr, due, n, batch.len() as u64)).is_err() {
            failover(&mut links, &mut route);
        }
    }
    for (_, l) in links.drain() {
        l.finish();
    }
    Ok(tallies)
}

/// Deliveries an SDK producer leaves outstanding before it waits for the
/// oldest: enough for several full batches per partition.
const SDK_OUTSTANDING: usize = 128 * 1024;
/// One record in this many has its send-to-delivery time recorded.
const SDK_LATENCY_SAMPLE: u64 = 1024;

fn bootstrap_list(args: &Args) -> Vec<String> {
    args.bootstrap_server.split(',').map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect()
}

/// Sends `mine.partitions` records through the SDK producer, one `send`
/// per record as an application does, waiting for the oldest delivery
/// once `SDK_OUTSTANDING` are out. Values are `--message-size` bytes.
fn sdk_producer(mine: Leader, args: Args, stats: Arc<Stats>, ctl: Arc<Control>, quota: Option<u64>) -> Result<HashMap<u32, Tally>> {
    use shardlog::client::producer::{Producer, ProducerConfig, RecordRef};
    let config = ProducerConfig {
        bootstrap: bootstrap_list(&args),
        security: security(&args)?,
        acks: args.acks,
        linger: Duration::from_millis(args.linger_ms),
        // A batch of --batch-size records of --message-size bytes.
        batch_max_bytes: args.batch_size * (args.message_size + 8),
        idempotent: !args.no_idempotence,
        ..ProducerConfig::default()
    };
    let producer = Producer::connect(config).context("connecting the SDK producer")?;
    let value = vec![0x61u8; args.message_size];
    let mut outstanding = std::collections::VecDeque::with_capacity(SDK_OUTSTANDING);
    let mut sent = 0u64;
    // Settled records are counted in runs of a raw batch's size, as the
    // raw producer counts its batches (not one shared counter per record).
    let mut settled = 0u64;
    let count = |n: u64| {
        if ctl.measuring.load(Ordering::Relaxed) {
            stats.produced.fetch_add(n, Ordering::Relaxed);
            stats.produced_bytes.fetch_add(n * value.len() as u64, Ordering::Relaxed);
        }
    };
    // Send times of sampled records, by their place in the deliveries'
    // queue (kept apart, so that queue holds one small entry per record).
    let mut sampled: std::collections::VecDeque<(u64, Instant)> = std::collections::VecDeque::new();
    let (mut pushed, mut done) = (0u64, 0u64);
    let mut settle = |d: shardlog::client::producer::Delivery, sampled: &mut std::collections::VecDeque<(u64, Instant)>| {
        match d.wait() {
            Ok(_) => {
                settled += 1;
                if settled == args.batch_size as u64 {
                    count(settled);
                    settled = 0;
                }
            }
            Err(e) => stats.error(format!("produce: {e}")),
        }
        if sampled.front().is_some_and(|s| s.0 == done) {
            let (_, at) = sampled.pop_front().expect("front exists");
            if ctl.measuring.load(Ordering::Relaxed) {
                let _ = stats.produce_lat.lock().unwrap().record((at.elapsed().as_micros() as u64).max(1));
            }
        }
        done += 1;
    };
    let mut turn = 0;
    while !ctl.stop_producers.load(Ordering::Relaxed) && quota.is_none_or(|q| sent < q) {
        let partition = mine.partitions[turn];
        turn = if turn + 1 == mine.partitions.len() { 0 } else { turn + 1 };
        let record = RecordRef { topic: &args.topic, partition: Some(partition), value: Some(&value), ..Default::default() };
        let at = (sent % SDK_LATENCY_SAMPLE == 0).then(Instant::now);
        match producer.send(record) {
            Ok(d) => {
                if let Some(at) = at {
                    sampled.push_back((pushed, at));
                }
                outstanding.push_back(d);
                pushed += 1;
            }
            Err(e) => stats.error(format!("produce: {e}")),
        }
        sent += 1;
        while outstanding.len() >= SDK_OUTSTANDING {
            settle(outstanding.pop_front().expect("not empty"), &mut sampled);
        }
    }
    let _ = producer.flush();
    for d in outstanding {
        settle(d, &mut sampled);
    }
    count(settled);
    Ok(HashMap::new())
}

/// Reads `mine.partitions` through the SDK consumer (`assign`, from the
/// earliest offsets), one `poll_records` after another as an application
/// does (records borrowed from the fetched bytes). Its bytes are the records' keys and values (the raw consumer counts
/// whole batches).
fn sdk_consumer(mine: Leader, args: Args, stats: Arc<Stats>, ctl: Arc<Control>, quota: Option<u64>) -> Result<(HashMap<u32, Tally>, Vec<String>)> {
    use shardlog::client::consumer::{Consumer, ConsumerConfig, OffsetReset, StartFrom};
    let config = ConsumerConfig {
        bootstrap: bootstrap_list(&args),
        security: security(&args)?,
        start: StartFrom::Earliest,
        offset_reset: OffsetReset::Earliest,
        auto_commit: false,
        fetch_max_bytes: args.fetch_max_bytes,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::assign(config, &args.topic, &mine.partitions).context("assigning the SDK consumer")?;
    while !ctl.stop_consumers.load(Ordering::Relaxed) && quota.is_none_or(|q| stats.consumed.load(Ordering::Relaxed) < q) {
        let t0 = Instant::now();
        let records = match consumer.poll_records(Duration::from_millis(100)) {
            Ok(r) => r,
            Err(e) => {
                stats.error(format!("poll: {e}"));
                continue;
            }
        };
        let n = records.len() as u64;
        let bytes: u64 = records.iter().map(|r| r.value.map_or(0, <[u8]>::len) as u64 + r.key.map_or(0, <[u8]>::len) as u64).sum();
        stats.consumed_total.fetch_add(n, Ordering::Relaxed);
        if ctl.measuring.load(Ordering::Relaxed) && n > 0 {
            let _ = stats.fetch_lat.lock().unwrap().record((t0.elapsed().as_micros() as u64).max(1));
            stats.consumed.fetch_add(n, Ordering::Relaxed);
            stats.consumed_bytes.fetch_add(bytes, Ordering::Relaxed);
        }
    }
    Ok((HashMap::new(), Vec::new()))
}

/// Per (producer, partition): the next sequence number expected.
type Expect = HashMap<(u32, u32), u64>;

/// Reads `mine.partitions` from their leader `mine.addr`.
fn consumer(
    mine: Leader,
    args: Args,
    stats: Arc<Stats>,
    ctl: Arc<Control>,
    start: HashMap<u32, i64>,
    quota: Option<u64>,
    check: bool,
) -> Result<(HashMap<u32, Tally>, Vec<String>)> {
    let mut offsets: Vec<(u32, i64)> = mine.partitions.iter().map(|p| (*p, start.get(p).copied().unwrap_or(0))).collect();
    // Each partition's leader: `mine`'s at first, looked up again when a
    // fetch fails or a partition answers that its leader moved.
    let mut route: HashMap<u32, String> = mine.partitions.iter().map(|&p| (p, mine.addr.clone())).collect();
    let mut conns: HashMap<String, Conn> = HashMap::new();
    let mut tallies: HashMap<u32, Tally> = HashMap::new();
    let mut expect: Expect = HashMap::new();
    let mut violations = Vec::new();
    while !ctl.stop_consumers.load(Ordering::Relaxed) && quota.is_none_or(|q| stats.consumed.load(Ordering::Relaxed) < q) {
        let mut by_leader: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
        for &(p, o) in &offsets {
            by_leader.entry(route.get(&p).cloned().unwrap_or_default()).or_default().push((p, o));
        }
        let mut moved = false;
        for (addr, asked) in by_leader {
            let t0 = Instant::now();
            let fetched = (|| -> Result<fetch::Response<Bytes>> {
                if !conns.contains_key(&addr) {
                    let c = Conn::connect(addr.as_str(), args.protocol, &security(&args)?)?;
                    c.set_read_timeout(Some(Duration::from_secs(30)))?;
                    conns.insert(addr.clone(), c);
                }
                conns.get_mut(&addr).expect("inserted above").fetch(&args.topic, &asked, args.fetch_max_bytes)
            })();
            let f = match fetched {
                Ok(r) => r,
                Err(e) => {
                    stats.error(format!("fetch: {e:#}"));
                    conns.remove(&addr);
                    moved = true;
                    continue;
                }
            };
            let mut n_msgs = 0;
            let mut n_bytes = 0;
            for p in f.partitions() {
                if p.error != ErrorCode::None {
                    stats.error(format!("fetch partition {}: {:?}", p.partition, p.error));
                    moved |= leader_moved(p.error);
                    continue;
                }
                let Some(i) = offsets.iter().position(|&(q, _)| q == p.partition) else { continue };
                let mine = &p.records[..];
                for b in record::batches(mine) {
                    let (pos, info) = b.map_err(|e| anyhow::anyhow!("fetched a bad batch: {e}"))?;
                    if info.next_offset() <= offsets[i].1 {
                        continue;
                    }
                    n_bytes += u64::from(info.batch_len);
                    if check {
                        let now = now_ns(ctl.epoch);
                        let mut e2e = stats.e2e.lock().unwrap();
                        // Batches a Kafka client compressed are read inflated.
                        let inflated = if info.codec() == 0 { None } else { Some(record::inflate(&mine[pos..], &info)?) };
                        for r in RecordIter::new(inflated.as_deref().unwrap_or(&mine[pos..]))? {
                            let r = r?;
                            if r.offset < offsets[i].1 {
                                continue;
                            }
                            let v = r.value.context("a message without a value")?;
                            if v.len() < STAMP_BYTES {
                                bail!("a message too short to carry the loadgen stamp");
                            }
                            let sent = u64::from_le_bytes(v[..8].try_into()?);
                            let producer = u32::from_le_bytes(v[8..12].try_into()?);
                            let seq = u64::from_le_bytes(v[12..20].try_into()?);
                            let next = expect.entry((producer, p.partition)).or_insert(0);
                            if seq != *next && violations.len() < 10 {
                                violations.push(format!("partition {}: producer {producer} sequence {seq} where {} was expected", p.partition, *next));
                            }
                            *next = seq + 1;
                            let t = tallies.entry(p.partition).or_default();
                            t.count += 1;
                            t.checksum = t.checksum.wrapping_add(mix(producer, seq));
                            if ctl.measuring.load(Ordering::Relaxed) {
                                let _ = e2e.record((now.saturating_sub(sent) / 1000).max(1));
                            }
                            n_msgs += 1;
                        }
                    } else {
                        n_msgs += u64::from(info.record_count);
                    }
                    offsets[i].1 = info.next_offset();
                }
            }
            stats.consumed_total.fetch_add(n_msgs, Ordering::Relaxed);
            if ctl.measuring.load(Ordering::Relaxed) && n_msgs > 0 {
                let _ = stats.fetch_lat.lock().unwrap().record((t0.elapsed().as_micros() as u64).max(1));
                stats.consumed.fetch_add(n_msgs, Ordering::Relaxed);
                stats.consumed_bytes.fetch_add(n_bytes, Ordering::Relaxed);
            }
        }
        if moved {
            thread::sleep(Duration::from_millis(100));
            let parts: Vec<u32> = offsets.iter().map(|&(p, _)| p).collect();
            route = follow_leaders(&args, &parts, &ctl.stop_consumers);
        }
    }
    Ok((tallies, violations))
}

fn ensure_topic(args: &Args) -> Result<()> {
    let mut c = connect_bootstrap(args)?;
    match c.partitions(&args.topic)? {
        Some(n) if n != args.partitions => bail!("topic {} has {n} partitions, not the {} asked for", args.topic, args.partitions),
        Some(_) => Ok(()),
        None => {
            c.create_topic_with(&args.topic, args.partitions, args.replication_factor, &[])?;
            // Every replica opens its copy, and the leaders take their
            // followers' first fetches, before the clock starts.
            std::thread::sleep(Duration::from_millis(if args.replication_factor > 1 { 1000 } else { 0 }));
            Ok(())
        }
    }
}

fn end_offsets(args: &Args, leaders: &[Leader], which: i64) -> Result<HashMap<u32, i64>> {
    let mut out = HashMap::new();
    for l in leaders {
        let mut c = Connection::connect_with(l.addr.as_str(), &security(args)?)?;
        let parts: Vec<(u32, i64)> = l.partitions.iter().map(|&p| (p, which)).collect();
        for (p, code, off) in c.list_offsets(&args.topic, &parts)? {
            if code != ErrorCode::None {
                bail!("list offsets of partition {p}: {code:?}");
            }
            out.insert(p, off);
        }
    }
    Ok(out)
}

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: Args) -> Result<i32> {
    if args.duration.is_none() && args.messages.is_none() {
        bail!("say how long to run: --duration SECONDS or --messages N");
    }
    if args.batch_size == 0 || args.partitions == 0 {
        bail!("--batch-size and --partitions must be positive");
    }
    if args.client == Client::Sdk && args.protocol == Protocol::Kafka {
        bail!("--protocol kafka runs on the raw client: the SDK speaks the native protocol");
    }
    if args.client == Client::Sdk && args.mode == Mode::E2e {
        bail!("--client sdk measures the produce and consume modes; e2e runs on the raw client");
    }
    if args.mode == Mode::E2e && args.message_size < STAMP_BYTES {
        bail!("e2e messages carry a {STAMP_BYTES}-byte stamp: --message-size must be at least {STAMP_BYTES}");
    }
    ensure_topic(&args)?;
    // Each producer and consumer talks to the leader of its partitions;
    // every broker that leads some gets at least one of each.
    let leaders = leaders(&args)?;
    let n_leaders = leaders.len() as u32;
    let mut args = args;
    if args.mode != Mode::Consume && args.producers < n_leaders {
        eprintln!("loadgen: the topic's partitions are led by {n_leaders} brokers: using {n_leaders} producers, one or more per broker");
        args.producers = n_leaders;
    }
    if args.mode != Mode::Produce && args.consumers < n_leaders {
        eprintln!("loadgen: the topic's partitions are led by {n_leaders} brokers: using {n_leaders} consumers, one or more per broker");
        args.consumers = n_leaders;
    }
    let stats = Arc::new(Stats::new());
    let ctl = Arc::new(Control {
        stop_producers: AtomicBool::new(false),
        stop_consumers: AtomicBool::new(false),
        measuring: AtomicBool::new(args.warmup <= 0.0),
        epoch: Instant::now(),
    });

    let producers = if args.mode == Mode::Consume { 0 } else { args.producers };
    let consumers = if args.mode == Mode::Produce { 0 } else { args.consumers.min(args.partitions) };
    let starts = match args.mode {
        Mode::Consume => end_offsets(&args, &leaders, -2)?,
        Mode::E2e => end_offsets(&args, &leaders, -1)?,
        Mode::Produce => HashMap::new(),
    };
    let check = args.mode == Mode::E2e;

    let mut prod_handles = Vec::new();
    for id in 0..producers {
        let quota = args.messages.map(|m| m / u64::from(producers) + u64::from(id < (m % u64::from(producers)) as u32));
        let (a, s, c) = (args.clone(), stats.clone(), ctl.clone());
        let leader = leaders[(id % n_leaders) as usize].clone();
        prod_handles.push(thread::spawn(move || match a.client {
            Client::Raw => producer(id, leader, a, s, c, quota),
            Client::Sdk => sdk_producer(leader, a, s, c, quota),
        }));
    }
    let mut cons_handles = Vec::new();
    for id in 0..consumers {
        // Consumer `id` reads from leader `id % n`, sharing its partitions
        // with the other consumers of that leader.
        let leader = &leaders[(id % n_leaders) as usize];
        let (rank, peers) = (id / n_leaders, (consumers - id % n_leaders).div_ceil(n_leaders));
        let parts: Vec<u32> = leader.partitions.iter().copied().enumerate().filter(|(i, _)| *i as u32 % peers == rank).map(|(_, p)| p).collect();
        if parts.is_empty() {
            continue;
        }
        let mine = Leader { addr: leader.addr.clone(), partitions: parts };
        // All consumers together: partitions need not hold the same
        // number of messages (each consumer's share, rounded up, left one
        // waiting for messages its partitions did not have).
        let quota = if args.mode == Mode::Consume { args.messages } else { None };
        let (a, s, c, st) = (args.clone(), stats.clone(), ctl.clone(), starts.clone());
        cons_handles.push(thread::spawn(move || match a.client {
            Client::Raw => consumer(mine, a, s, c, st, quota, check),
            Client::Sdk => sdk_consumer(mine, a, s, c, quota),
        }));
    }

    if args.warmup > 0.0 {
        thread::sleep(Duration::from_secs_f64(args.warmup));
        stats.reset();
        ctl.measuring.store(true, Ordering::Relaxed);
    }
    let measure_start = Instant::now();
    let deadline = args.duration.map(|d| measure_start + Duration::from_secs_f64(d));
    let (counter, bytes_counter, lat) = match args.mode {
        Mode::Consume => (&stats.consumed, &stats.consumed_bytes, &stats.fetch_lat),
        Mode::Produce => (&stats.produced, &stats.produced_bytes, &stats.produce_lat),
        Mode::E2e => (&stats.produced, &stats.produced_bytes, &stats.e2e),
    };
    let mut last = (Instant::now(), 0u64, 0u64);
    loop {
        thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let msgs = counter.load(Ordering::Relaxed);
        if now - last.0 >= Duration::from_secs(1) {
            let dt = (now - last.0).as_secs_f64();
            let bytes = bytes_counter.load(Ordering::Relaxed);
            let h = lat.lock().unwrap().clone();
            eprintln!(
                "{:>5.1}s {:>12.0} msg/s {:>9.1} MB/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {}",
                measure_start.elapsed().as_secs_f64(),
                (msgs - last.1) as f64 / dt,
                (bytes - last.2) as f64 / dt / 1e6,
                h.value_at_quantile(0.5) as f64 / 1000.0,
                h.value_at_quantile(0.99) as f64 / 1000.0,
                stats.errors.load(Ordering::Relaxed)
            );
            last = (now, msgs, bytes);
        }
        let producers_done = prod_handles.iter().all(|h| h.is_finished());
        let consumers_done = cons_handles.iter().all(|h| h.is_finished());
        let time_up = deadline.is_some_and(|d| now >= d);
        let stop = match args.mode {
            Mode::Produce => time_up || producers_done,
            Mode::Consume => time_up || consumers_done,
            Mode::E2e => time_up || producers_done || consumers_done,
        };
        if stop {
            break;
        }
    }
    let elapsed = measure_start.elapsed().as_secs_f64();
    let measured_msgs = counter.load(Ordering::Relaxed);
    let measured_bytes = bytes_counter.load(Ordering::Relaxed);
    ctl.stop_producers.store(true, Ordering::Relaxed);
    let mut sent: HashMap<u32, Tally> = HashMap::new();
    for h in prod_handles {
        for (p, t) in h.join().map_err(|_| anyhow::anyhow!("a producer panicked"))?? {
            let s = sent.entry(p).or_default();
            s.count += t.count;
            s.checksum = s.checksum.wrapping_add(t.checksum);
        }
    }
    if check {
        // Let the consumers catch up with everything produced, then compare.
        let total: u64 = sent.values().map(|t| t.count).sum();
        let catch_up = Instant::now() + Duration::from_secs(15);
        while Instant::now() < catch_up && stats.consumed_total.load(Ordering::Relaxed) < total && cons_handles.iter().any(|h| !h.is_finished()) {
            thread::sleep(Duration::from_millis(20));
        }
    }
    ctl.stop_consumers.store(true, Ordering::Relaxed);

    let mut violations = Vec::new();
    let mut seen: HashMap<u32, Tally> = HashMap::new();
    for h in cons_handles {
        let (t, v) = h.join().map_err(|_| anyhow::anyhow!("a consumer panicked"))??;
        violations.extend(v);
        for (p, t) in t {
            let s = seen.entry(p).or_default();
            s.count += t.count;
            s.checksum = s.checksum.wrapping_add(t.checksum);
        }
    }
    if check {
        for p in 0..args.partitions {
            let (a, b) = (sent.get(&p).cloned().unwrap_or_default(), seen.get(&p).cloned().unwrap_or_default());
            if a != b {
                violations.push(format!(
                    "partition {p}: produced {} messages (checksum {:#x}), consumed {} (checksum {:#x})",
                    a.count, a.checksum, b.count, b.checksum
                ));
            }
        }
    }

    let r = report::Report::new(&args, &stats, measured_msgs, measured_bytes, elapsed, violations.clone());
    r.print();
    if let Some(p) = &args.json {
        std::fs::write(p, serde_json::to_string_pretty(&r.json())?).with_context(|| format!("writing {}", p.display()))?;
    }
    let hist = lat.lock().unwrap().clone();
    if let Some(p) = &args.hgrm {
        std::fs::write(p, report::hgrm(&hist)).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.plot {
        let title = format!("shardlog loadgen {:?}: latency by percentile", args.mode);
        std::fs::write(p, report::svg(&hist, &title)).with_context(|| format!("writing {}", p.display()))?;
    }
    let mut code = 0;
    if let Some(e) = stats.first_error.lock().unwrap().as_ref() {
        eprintln!("loadgen: {} error(s); the first: {e}", stats.errors.load(Ordering::Relaxed));
        code = 1;
    }
    for v in &violations {
        eprintln!("loadgen: correctness violation: {v}");
        code = 1;
    }
    if let Some(want) = args.expect_rate {
        if r.msgs_per_sec < want {
            eprintln!("loadgen: measured {:.0} msg/s, below the expected {want:.0}", r.msgs_per_sec);
            code = 1;
        }
    }
    Ok(code)
}
