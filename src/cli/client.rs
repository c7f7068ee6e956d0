//! The client subcommands, mirroring Kafka's console tools: `topics`,
//! `produce`, `consume` and `cluster info`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};

use crate::client::consumer::{Consumer, ConsumerConfig, ConsumerError, OffsetReset, StartFrom};
use crate::client::raw::{ClientError, Connection};
use crate::protocol::ErrorCode;
use crate::record::BatchBuilder;

/// Exit codes of the client commands.
pub mod exit {
    /// Done.
    pub const OK: i32 = 0;
    /// The broker refused, or could not be reached.
    pub const FAILED: i32 = 1;
    /// The command line was wrong (clap uses 2 as well).
    pub const USAGE: i32 = 2;
}

#[derive(Debug, Clone, Args)]
pub struct Bootstrap {
    /// Brokers to start from: HOST:PORT[,HOST:PORT...]
    #[arg(long, default_value = "127.0.0.1:9092", env = "SHARDLOG_BOOTSTRAP_SERVER")]
    pub bootstrap_server: String,
}

impl Bootstrap {
    /// Connects to the first bootstrap server that answers.
    pub fn connect(&self) -> Result<Connection, String> {
        let addrs: Vec<&str> = self.bootstrap_server.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        Connection::connect_any(&addrs).map_err(|e| {
            format!("could not reach any bootstrap server ({}: {e}). Is a broker running? Start one with `shardlog broker`.", self.bootstrap_server)
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// List every topic.
    List(Bootstrap),
    /// Create a topic.
    Create(CreateArgs),
    /// Show a topic's partitions, placement and settings.
    Describe(TopicArg),
    /// Delete a topic and its data.
    Delete(TopicArg),
}

#[derive(Debug, Args)]
pub struct TopicArg {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    #[arg(long)]
    pub topic: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    #[arg(long)]
    pub topic: String,
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    #[arg(long, default_value_t = 1)]
    pub replication_factor: u16,
    /// A topic setting, KEY=VALUE (retention.ms, retention.bytes, segment.bytes, segment.ms); repeatable.
    #[arg(long = "config", value_parser = parse_kv)]
    pub configs: Vec<(String, String)>,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).ok_or_else(|| format!("'{s}' is not KEY=VALUE"))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AcksArg {
    All,
    #[value(name = "1")]
    One,
    #[value(name = "0")]
    Zero,
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    #[arg(long)]
    pub topic: String,
    /// Split each line into KEY SEP VALUE at the first SEP.
    #[arg(long)]
    pub key_separator: Option<String>,
    /// Send every message to this partition (default: by key hash, or
    /// round robin without keys).
    #[arg(long)]
    pub partition: Option<u32>,
    #[arg(long, value_enum, default_value = "all")]
    pub acks: AcksArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    #[arg(long)]
    pub topic: String,
    /// Start at the earliest stored message (default: only new messages).
    #[arg(long, conflicts_with = "offset")]
    pub from_beginning: bool,
    /// Start at this offset (with --partition, or in every partition).
    #[arg(long)]
    pub offset: Option<i64>,
    /// Read only this partition (default: all).
    #[arg(long)]
    pub partition: Option<u32>,
    /// Consume as this group: start after what it committed, and commit
    /// what is printed. With no commit yet, or a commit that retention has
    /// since deleted, start at the end (or at the beginning with
    /// --from-beginning).
    #[arg(long, conflicts_with = "offset")]
    pub group: Option<String>,
    /// Exit after printing this many messages.
    #[arg(long)]
    pub max_messages: Option<u64>,
    /// Exit after this many milliseconds without a new message.
    #[arg(long)]
    pub timeout_ms: Option<u64>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("shardlog: {e}");
    exit::FAILED
}

fn broker_err(e: ClientError, what: &str) -> i32 {
    match e {
        ClientError::Broker { code, message } => fail(format!("{what}: the broker refused with {code:?}: {message}")),
        e => fail(format!("{what}: {e}")),
    }
}

pub fn topics(cmd: TopicsCommand) -> i32 {
    match cmd {
        TopicsCommand::List(b) => {
            let mut c = match b.connect() {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match c.list_topics() {
                Ok(names) => {
                    for n in names {
                        println!("{n}");
                    }
                    exit::OK
                }
                Err(e) => broker_err(e, "listing topics"),
            }
        }
        TopicsCommand::Create(a) => {
            let mut c = match a.bootstrap.connect() {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match c.create_topic_with(&a.topic, a.partitions, a.replication_factor, &a.configs) {
                Ok(true) => {
                    println!("Created topic {}.", a.topic);
                    exit::OK
                }
                Ok(false) => fail(format!("topic '{}' already exists", a.topic)),
                Err(e) => broker_err(e, &format!("creating topic '{}'", a.topic)),
            }
        }
        TopicsCommand::Describe(a) => {
            let mut c = match a.bootstrap.connect() {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match c.metadata(Some(&[a.topic.as_str()])) {
                Ok((_, topics)) => match topics.first() {
                    Some(t) if t.error == ErrorCode::None => {
                        let lags = if t.replication_factor > 1 { c.replica_lags(&t.name).unwrap_or_default() } else { Default::default() };
                        let configs: Vec<String> = t.configs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        println!(
                            "Topic: {}\tPartitions: {}\tReplicationFactor: {}\tConfigs: {}",
                            t.name,
                            t.partitions.len(),
                            t.replication_factor,
                            configs.join(",")
                        );
                        for p in &t.partitions {
                            let list = |v: &[i32]| v.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(",");
                            println!(
                                "\tTopic: {}\tPartition: {}\tLeader: {}\tShard: {}\tReplicas: {}\tIsr: {}{}",
                                t.name,
                                p.partition,
                                p.leader,
                                p.shard,
                                list(&p.replicas),
                                list(&p.isr),
                                lag_text(lags.get(&p.partition), "\tLag: ")
                            );
                        }
                        exit::OK
                    }
                    _ => fail(format!("topic '{}' does not exist", a.topic)),
                },
                Err(e) => broker_err(e, "describing the topic"),
            }
        }
        TopicsCommand::Delete(a) => {
            let mut c = match a.bootstrap.connect() {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            match c.delete_topic(&a.topic) {
                Ok(()) => {
                    println!("Deleted topic {}.", a.topic);
                    exit::OK
                }
                Err(e) => broker_err(e, &format!("deleting topic '{}'", a.topic)),
            }
        }
    }
}

/// Lines per batch when stdin is not a terminal.
const PRODUCE_BATCH_RECORDS: usize = 1000;
/// Bytes per batch when stdin is not a terminal.
const PRODUCE_BATCH_BYTES: usize = 512 * 1024;
/// Produce requests in flight before waiting for answers.
const PRODUCE_INFLIGHT: usize = 32;

/// How many times one batch is sent before the producer gives up, and
/// the pause before each new attempt (grows to 500 ms): about 30 s, which
/// rides out a leader's failover.
const PRODUCE_ATTEMPTS: u32 = 64;

/// Whether a partition's error goes away by itself: the batch is sent
/// again. A topic just created may be unknown for a moment to a broker
/// whose copy of the metadata has not applied it yet.
fn retriable(code: ErrorCode) -> bool {
    code.is_retriable() || code == ErrorCode::UnknownTopicOrPartition
}

/// A batch on its way: its partition, bytes and attempts so far.
type Outgoing = (u32, Vec<u8>, u32);

/// Sends each partition's batches to its leader, pipelined on one
/// connection per leader. A batch refused for a reason that passes, or
/// lost with its connection, is sent again to the partition's leader as
/// the metadata then names it (at least once: a batch whose answer was
/// lost may be stored twice).
struct Producer {
    bootstrap: Vec<String>,
    /// Connections by leader address, each with its requests in flight by
    /// correlation id.
    conns: BTreeMap<String, (Connection, BTreeMap<u32, Outgoing>)>,
    /// Each partition's leader address, from the metadata.
    leaders: Vec<String>,
    /// Batches to send again.
    retry: std::collections::VecDeque<Outgoing>,
    topic: String,
    acks: i8,
    /// Records sent so far.
    records: u64,
    failed: Option<String>,
}

impl Producer {
    fn send(&mut self, partition: u32, batch: Vec<u8>) -> Result<(), ClientError> {
        self.send_one((partition, batch, 0))?;
        self.resend()
    }

    /// One attempt; a failed connection queues its batches for another.
    fn send_one(&mut self, (partition, batch, attempts): Outgoing) -> Result<(), ClientError> {
        let addr = self.leaders[partition as usize].clone();
        if !self.conns.contains_key(&addr) {
            match Connection::connect(addr.as_str()) {
                Ok(c) => {
                    self.conns.insert(addr.clone(), (c, BTreeMap::new()));
                }
                Err(e) => {
                    self.again((partition, batch, attempts), &e.to_string());
                    return Ok(());
                }
            }
        }
        let (conn, _) = self.conns.get_mut(&addr).expect("inserted above");
        match conn.send_produce(&self.topic, &[(partition, &batch)], self.acks) {
            Ok(corr) if self.acks != 0 => {
                let (_, inflight) = self.conns.get_mut(&addr).expect("inserted above");
                inflight.insert(corr, (partition, batch, attempts));
                while self.conns.get(&addr).is_some_and(|(_, f)| f.len() >= PRODUCE_INFLIGHT) {
                    self.answer(&addr)?;
                }
            }
            Ok(_) => {}
            Err(e) => {
                self.lost(&addr, &e.to_string());
                self.again((partition, batch, attempts), &e.to_string());
            }
        }
        Ok(())
    }

    /// Queues a batch for another attempt, or records the failure.
    fn again(&mut self, (partition, batch, attempts): Outgoing, why: &str) {
        if attempts + 1 >= PRODUCE_ATTEMPTS {
            if self.failed.is_none() {
                self.failed = Some(format!("partition {partition} of '{}': gave up after {PRODUCE_ATTEMPTS} attempts: {why}", self.topic));
            }
        } else {
            self.retry.push_back((partition, batch, attempts + 1));
        }
    }

    /// Drops a broken connection; its requests in flight go again.
    fn lost(&mut self, addr: &str, why: &str) {
        if let Some((_, inflight)) = self.conns.remove(addr) {
            for (_, o) in inflight {
                self.again(o, why);
            }
        }
    }

    /// Sends the queued retries, after a pause and a fresh look at the
    /// leaders.
    fn resend(&mut self) -> Result<(), ClientError> {
        while let Some(o) = self.retry.pop_front() {
            std::thread::sleep(Duration::from_millis((25u64 << o.2.min(5)).min(500)));
            if let Ok(Ok(Some(l))) = Connection::connect_any(&self.bootstrap).map(|mut c| c.leaders(&self.topic)) {
                if l.len() == self.leaders.len() {
                    self.leaders = l;
                }
            }
            self.send_one(o)?;
        }
        Ok(())
    }

    fn answer(&mut self, addr: &str) -> Result<(), ClientError> {
        let (conn, _) = self.conns.get_mut(addr).expect("a connection with requests in flight");
        let r = match conn.recv() {
            Ok(r) => r,
            Err(e) => {
                self.lost(addr, &e.to_string());
                return Ok(());
            }
        };
        let corr = r.correlation_id()?;
        let Some(sent) = self.conns.get_mut(addr).and_then(|(_, f)| f.remove(&corr)) else { return Ok(()) };
        let resp = r.ok()?;
        let mut outcome = None;
        for t in resp.body_as_produce_response().and_then(|p| p.topics()).iter().flatten() {
            for p in t.partitions().iter().flatten() {
                if p.error() != ErrorCode::None {
                    outcome = Some((p.error(), p.error_message().unwrap_or_default().to_string()));
                }
            }
        }
        match outcome {
            None => {}
            Some((code, msg)) if retriable(code) => self.again(sent, &format!("{code:?}: {msg}")),
            Some((code, msg)) if self.failed.is_none() => {
                self.failed = Some(format!("partition {} of '{}': {code:?}: {msg}", sent.0, self.topic));
            }
            Some(_) => {}
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), ClientError> {
        loop {
            self.resend()?;
            let Some(addr) = self.conns.iter().find(|(_, (_, f))| !f.is_empty()).map(|(a, _)| a.clone()) else {
                if self.retry.is_empty() {
                    return Ok(());
                }
                continue;
            };
            self.answer(&addr)?;
        }
    }
}

pub fn produce(a: ProduceArgs) -> i32 {
    let mut conn = match a.bootstrap.connect() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let leaders = match conn.leaders(&a.topic) {
        Ok(Some(l)) => l,
        Ok(None) => return fail(format!("topic '{}' does not exist; create it with `shardlog topics create --topic {}`", a.topic, a.topic)),
        Err(e) => return broker_err(e, "looking up the topic"),
    };
    let partitions = leaders.len() as u32;
    if let Some(p) = a.partition {
        if p >= partitions {
            return fail(format!("topic '{}' has partitions 0..{}, not {p}", a.topic, partitions));
        }
    }
    let acks = match a.acks {
        AcksArg::All => -1,
        AcksArg::One => 1,
        AcksArg::Zero => 0,
    };
    let interactive = std::io::stdin().is_terminal();
    let bootstrap = a.bootstrap.bootstrap_server.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    let mut p = Producer { bootstrap, conns: BTreeMap::new(), leaders, retry: Default::default(), topic: a.topic.clone(), acks, records: 0, failed: None };
    let mut builders: BTreeMap<u32, BatchBuilder> = BTreeMap::new();
    let mut next_rr = 0u32;
    let mut batch = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut line = Vec::new();
    let mut lineno = 0u64;
    let mut bad_line = None;
    loop {
        if interactive {
            eprint!(">");
            let _ = std::io::stderr().flush();
        }
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => lineno += 1,
            Err(e) => return fail(format!("reading stdin: {e}")),
        }
        while line.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
            line.pop();
        }
        let (key, value): (Option<&[u8]>, &[u8]) = match &a.key_separator {
            Some(sep) => match find(&line, sep.as_bytes()) {
                Some(i) => (Some(&line[..i]), &line[i + sep.len()..]),
                None if interactive => {
                    eprintln!("shardlog: this line has no key separator '{sep}'; not sent");
                    continue;
                }
                None => {
                    // Send what came before it, then stop: a bad line is
                    // the input's fault, not the broker's.
                    bad_line = Some(format!("line {lineno} has no key separator '{sep}': {}", String::from_utf8_lossy(&line)));
                    break;
                }
            },
            None => (None, &line[..]),
        };
        let partition = match (a.partition, key) {
            (Some(p), _) => p,
            (None, Some(k)) => crate::hash::partition_for_key(k, partitions),
            (None, None) => {
                next_rr = (next_rr + 1) % partitions;
                next_rr
            }
        };
        let b = builders.entry(partition).or_insert_with(|| BatchBuilder::new(4096));
        b.push(crate::time::now_ms(), key, Some(value), &[]);
        let full = b.record_count() as usize >= PRODUCE_BATCH_RECORDS || b.encoded_len() >= PRODUCE_BATCH_BYTES;
        if interactive || full {
            batch.clear();
            p.records += u64::from(b.record_count());
            b.finish_into(&mut batch);
            if let Err(e) = p.send(partition, std::mem::take(&mut batch)) {
                return broker_err(e, "producing");
            }
            if interactive {
                if let Err(e) = p.drain() {
                    return broker_err(e, "producing");
                }
            }
        }
    }
    for (partition, b) in builders.iter_mut() {
        if !b.is_empty() {
            batch.clear();
            p.records += u64::from(b.record_count());
            b.finish_into(&mut batch);
            if let Err(e) = p.send(*partition, std::mem::take(&mut batch)) {
                return broker_err(e, "producing");
            }
        }
    }
    if let Err(e) = p.drain() {
        return broker_err(e, "waiting for acknowledgements");
    }
    if let Some(why) = bad_line {
        eprintln!("shardlog: {why}");
        return match &p.failed {
            Some(e) => fail(format!("and not every message before it was stored: {e}")),
            None => {
                eprintln!(
                    "shardlog: the {} message(s) before it were sent{}; nothing after it was",
                    p.records,
                    if acks == 0 { "" } else { " and acknowledged" }
                );
                exit::USAGE
            }
        };
    }
    match p.failed {
        Some(e) => fail(format!("not every message was stored: {e}")),
        None => exit::OK,
    }
}

/// Each replica's lag behind its leader (`?` where unknown), after
/// `prefix`; nothing when the leader did not say.
fn lag_text(lags: Option<&Vec<i64>>, prefix: &str) -> String {
    match lags {
        Some(l) if !l.is_empty() => format!("{prefix}{}", l.iter().map(|x| if *x < 0 { "?".to_string() } else { x.to_string() }).collect::<Vec<_>>().join(",")),
        _ => String::new(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn consume(a: ConsumeArgs) -> i32 {
    match consume_inner(&a) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn consume_inner(a: &ConsumeArgs) -> Result<i32, String> {
    let config = ConsumerConfig {
        bootstrap: a.bootstrap.bootstrap_server.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
        group: a.group.clone(),
        start: match (a.offset, a.from_beginning) {
            (Some(o), _) => StartFrom::Offset(o),
            (None, true) => StartFrom::Earliest,
            (None, false) => StartFrom::Latest,
        },
        // A position no longer stored (retention deleted it) goes to the
        // log start with --from-beginning, else to the end, as Kafka's
        // console consumer does.
        offset_reset: if a.from_beginning { OffsetReset::Earliest } else { OffsetReset::Latest },
        // What is committed is exactly what was printed, not what was fetched.
        auto_commit: false,
        ..ConsumerConfig::default()
    };
    let explain = |e: ConsumerError| match e {
        ConsumerError::Client(ClientError::Io(e)) => {
            format!(
                "could not reach a broker ({e}; bootstrap servers: {}). Is a broker running? Start one with `shardlog broker`.",
                a.bootstrap.bootstrap_server
            )
        }
        e => e.to_string(),
    };
    // With --group and no --partition, the group assigns the partitions.
    let mut consumer = match (a.partition, &a.group) {
        (Some(p), _) => Consumer::assign(config, &a.topic, &[p]),
        (None, Some(_)) => Consumer::subscribe(config, &a.topic),
        (None, None) => Consumer::assign(config, &a.topic, &[]),
    }
    .map_err(explain)?;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut printed_next: BTreeMap<u32, i64> = BTreeMap::new();
    let mut last_message = Instant::now();
    'outer: loop {
        if a.max_messages.is_some_and(|m| printed >= m) {
            break;
        }
        let wait = match a.timeout_ms {
            Some(t) => {
                let left = Duration::from_millis(t).saturating_sub(last_message.elapsed());
                if left.is_zero() {
                    break;
                }
                left.min(Duration::from_millis(500))
            }
            None => Duration::from_millis(500),
        };
        for r in consumer.poll(wait).map_err(explain)? {
            if a.max_messages.is_some_and(|m| printed >= m) {
                break;
            }
            let written = match a.format {
                Format::Text => out.write_all(r.value.as_deref().unwrap_or_default()).and_then(|_| out.write_all(b"\n")),
                Format::Json => {
                    let v = serde_json::json!({
                        "topic": r.topic,
                        "partition": r.partition,
                        "offset": r.offset,
                        "timestamp": r.timestamp_ms,
                        "key": r.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
                        "value": r.value.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()),
                        "headers": r.headers.iter().map(|(k, v)| (k.clone(), v.as_deref().map(|v| String::from_utf8_lossy(v).into_owned()))).collect::<BTreeMap<_, _>>(),
                    });
                    writeln!(out, "{v}")
                }
            };
            if written.is_err() {
                break 'outer; // the reader went away (a closed pipe)
            }
            printed += 1;
            printed_next.insert(r.partition, r.offset + 1);
            last_message = Instant::now();
        }
        if out.flush().is_err() {
            break;
        }
        consumer.commit_offsets(&printed_next).map_err(explain)?;
    }
    let _ = out.flush();
    consumer.commit_offsets(&printed_next).map_err(explain)?;
    consumer.close().map_err(explain)?;
    Ok(exit::OK)
}

pub fn cluster_info(b: Bootstrap) -> i32 {
    let mut c = match b.connect() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match c.cluster_info(None) {
        Ok(info) => {
            println!("Quorum voters:");
            for v in &info.voters {
                let role = if v.node_id == info.controller { "\tcontroller" } else { "" };
                if v.port == 0 {
                    // A one-voter quorum opens no quorum port.
                    println!("\tnode {}\t(this broker alone, no quorum port){role}", v.node_id);
                } else {
                    println!("\tnode {}\t{}:{}{role}", v.node_id, v.host, v.port);
                }
            }
            if info.controller < 0 {
                println!("\t(no controller: the quorum has no leader)");
            }
            println!("Brokers:");
            for b in &info.brokers {
                let state = if b.fenced { "fenced" } else { "live" };
                println!("\tnode {}\t{}:{}\tshards: {}\t{state}", b.node_id, b.host, b.port, b.shards);
            }
            println!("Topics:");
            for t in &info.topics {
                let lags = if t.replication_factor > 1 { c.replica_lags(&t.name).unwrap_or_default() } else { Default::default() };
                let placement: Vec<String> = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let replicas: Vec<String> = p.replicas.iter().map(|r| r.to_string()).collect();
                        let lagging = if p.isr.len() < p.replicas.len() { " under-replicated" } else { "" };
                        let lag = lag_text(lags.get(&p.partition), " lag ");
                        format!("{}@node{}/shard{}[replicas {}{lag}{lagging}]", p.partition, p.leader, p.shard, replicas.join(","))
                    })
                    .collect();
                println!("\t{}\tpartitions: {}\treplication: {}\t{}", t.name, t.partitions.len(), t.replication_factor, placement.join(" "));
            }
            exit::OK
        }
        Err(e) => broker_err(e, "reading the cluster metadata"),
    }
}
