//! The client subcommands, mirroring Kafka's console tools: `topics`,
//! `produce`, `consume` and `cluster info`.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::{BufRead, IsTerminal, Write};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand, ValueEnum};

use crate::client::consumer::{Consumer, ConsumerConfig, ConsumerError, OffsetReset, StartFrom};
use crate::client::producer::{Delivery, Producer, ProducerConfig, ProducerError, RecordMetadata, RecordRef};
use crate::client::raw::{ClientError, Connection};
use crate::protocol::{Acks, ErrorCode};

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
    /// Connect in TLS, trusting the authorities in this PEM file; Kafka's
    /// ssl.truststore.location
    #[arg(long, env = "SHARDLOG_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// A client certificate (PEM) to show when the broker asks for one;
    /// Kafka's ssl.keystore.location
    #[arg(long, env = "SHARDLOG_CLIENT_TLS_CERT", requires = "tls_key", requires = "tls_ca")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "SHARDLOG_CLIENT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Authenticate with SASL as this user; Kafka's sasl.username
    #[arg(long, env = "SHARDLOG_USER", requires = "password")]
    pub user: Option<String>,
    /// The user's password (better in SHARDLOG_PASSWORD than on a command line)
    #[arg(long, env = "SHARDLOG_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
    /// SCRAM-SHA-256 or SCRAM-SHA-512; Kafka's sasl.mechanism
    #[arg(long, env = "SHARDLOG_SASL_MECHANISM", default_value = "SCRAM-SHA-512", value_parser = ["SCRAM-SHA-256", "SCRAM-SHA-512"])]
    pub sasl_mechanism: String,
}

/// `--acks`: `all`, `1` or `0`, listed so in the help.
pub fn acks_parser() -> impl TypedValueParser<Value = Acks> {
    PossibleValuesParser::new(Acks::NAMES).map(|s| s.parse::<Acks>().expect("one of the possible values"))
}

impl Bootstrap {
    /// The bootstrap servers, one `host:port` each.
    pub fn servers(&self) -> Vec<String> {
        self.bootstrap_server.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
    }

    /// TLS and SASL as the flags ask.
    pub fn security(&self) -> Result<crate::tls::ClientSecurity, String> {
        let tls = match &self.tls_ca {
            Some(ca) => {
                let identity = self.tls_cert.as_deref().zip(self.tls_key.as_deref());
                Some(crate::tls::client_config(ca, identity, None)?)
            }
            None => None,
        };
        let sasl = match (&self.user, &self.password) {
            (Some(user), Some(password)) => Some(crate::auth::Credentials {
                user: user.clone(),
                password: password.clone(),
                mechanism: crate::auth::Mechanism::parse(&self.sasl_mechanism).ok_or("--sasl-mechanism is SCRAM-SHA-256 or SCRAM-SHA-512")?,
            }),
            _ => None,
        };
        Ok(crate::tls::ClientSecurity { tls, sasl })
    }

    /// Connects to the first bootstrap server that answers.
    pub fn connect(&self) -> Result<Connection, String> {
        let security = self.security()?;
        Connection::connect_any_with(&self.servers(), &security).map_err(|e| match e {
            ClientError::Broker { code, message } => format!("the broker refused the connection: {code:?}: {message}"),
            e => format!("could not reach any bootstrap server ({}: {e}). Is a broker running? Start one with `shardlog broker`.", self.bootstrap_server),
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
    Describe(DescribeArgs),
    /// Delete a topic and its data.
    Delete(TopicArg),
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    #[command(flatten)]
    pub bootstrap: Bootstrap,
    /// The topic
    #[arg(long)]
    pub topic: String,
    /// Also show this consumer group's committed offset and lag (records
    /// between it and the high watermark) per partition
    #[arg(long)]
    pub group: Option<String>,
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
    #[arg(long, default_value = "all", value_parser = acks_parser())]
    pub acks: Acks,
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

pub(crate) fn fail(e: impl std::fmt::Display) -> i32 {
    eprintln!("shardlog: {e}");
    exit::FAILED
}

pub(crate) fn broker_err(e: ClientError, what: &str) -> i32 {
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
                        let views = c.leader_views(&t.name).unwrap_or_default();
                        let parts: Vec<u32> = t.partitions.iter().map(|p| p.partition).collect();
                        let committed: BTreeMap<u32, i64> = match &a.group {
                            Some(g) => match c.fetch_offsets(g, &t.name, &parts) {
                                Ok(v) => v.into_iter().filter(|(_, e, _)| *e == ErrorCode::None).map(|(p, _, o)| (p, o)).collect(),
                                Err(e) => return broker_err(e, &format!("reading group '{g}''s offsets")),
                            },
                            None => BTreeMap::new(),
                        };
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
                            let view = views.get(&p.partition);
                            let figures = view.and_then(|v| v.figures).map_or(String::new(), |f| {
                                format!(
                                    "\tLogStart: {}\tHighWatermark: {}\tLogEnd: {}\tSize: {}",
                                    f.log_start_offset, f.high_watermark, f.log_end_offset, f.size_bytes
                                )
                            });
                            let group = match (&a.group, committed.get(&p.partition)) {
                                (None, _) => String::new(),
                                (Some(_), Some(&o)) if o >= 0 => {
                                    let hw = view.and_then(|v| v.figures).map(|f| f.high_watermark);
                                    format!("\tCommitted: {o}\tGroupLag: {}", hw.map_or("?".to_string(), |hw| (hw - o).max(0).to_string()))
                                }
                                (Some(_), _) => "\tCommitted: -\tGroupLag: -".to_string(),
                            };
                            println!(
                                "\tTopic: {}\tPartition: {}\tLeader: {}\tShard: {}\tReplicas: {}\tIsr: {}{}{figures}{group}",
                                t.name,
                                p.partition,
                                p.leader,
                                p.shard,
                                list(&p.replicas),
                                list(&p.isr),
                                lag_text(view.map(|v| &v.lags), "\tLag: ")
                            );
                        }
                        exit::OK
                    }
                    Some(t) if t.error == ErrorCode::TopicAuthorizationFailed => {
                        fail(format!("describing topic '{}': the broker refused with TopicAuthorizationFailed", a.topic))
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

/// How many times one batch is sent before the producer gives up; the
/// pause before each new attempt grows to 500 ms, so this is about 30 s,
/// which rides out a leader's failover.
const PRODUCE_ATTEMPTS: u32 = 64;

/// The SDK's deliveries not yet known to have succeeded, oldest first:
/// they are looked at as they complete, so a failure is reported without
/// holding every line's delivery (the producer's buffer bounds how many
/// are pending).
struct Pending {
    deliveries: VecDeque<Delivery>,
    failed: Option<String>,
}

impl Pending {
    fn note(&mut self, r: Result<RecordMetadata, ProducerError>) {
        if let Err(e) = r {
            self.failed.get_or_insert_with(|| e.to_string());
        }
    }

    /// Takes the completed deliveries off the front.
    fn reap(&mut self) {
        let mut cx = Context::from_waker(Waker::noop());
        while let Some(d) = self.deliveries.front_mut() {
            match Pin::new(d).poll(&mut cx) {
                Poll::Ready(r) => {
                    self.deliveries.pop_front();
                    self.note(r);
                }
                Poll::Pending => break,
            }
        }
    }

    /// Waits for every delivery.
    fn wait_all(&mut self) {
        while let Some(d) = self.deliveries.pop_front() {
            let r = d.wait();
            self.note(r);
        }
    }
}

pub fn produce(a: ProduceArgs) -> i32 {
    let mut conn = match a.bootstrap.connect() {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let partitions = match conn.leaders(&a.topic) {
        Ok(Some(l)) => l.len() as u32,
        Ok(None) => return fail(format!("topic '{}' does not exist; create it with `shardlog topics create --topic {}`", a.topic, a.topic)),
        Err(e) => return broker_err(e, "looking up the topic"),
    };
    if let Some(p) = a.partition {
        if p >= partitions {
            return fail(format!("topic '{}' has partitions 0..{}, not {p}", a.topic, partitions));
        }
    }
    let interactive = std::io::stdin().is_terminal();
    let security = match a.bootstrap.security() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let config = ProducerConfig {
        bootstrap: a.bootstrap.servers(),
        security,
        acks: a.acks,
        linger: if interactive { Duration::ZERO } else { ProducerConfig::default().linger },
        retries: PRODUCE_ATTEMPTS - 1,
        ..ProducerConfig::default()
    };
    let producer = match Producer::connect(config) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    let mut pending = Pending { deliveries: VecDeque::new(), failed: None };
    let mut next_rr = 0u32;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock();
    let mut line = Vec::new();
    let mut lineno = 0u64;
    let mut records = 0u64;
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
        // Keys go by the SDK's hash as well; lines without a key take
        // turns, starting at partition 1 as they always have.
        let partition = match (a.partition, key) {
            (Some(p), _) => p,
            (None, Some(k)) => crate::hash::partition_for_key(k, partitions),
            (None, None) => {
                next_rr = (next_rr + 1) % partitions;
                next_rr
            }
        };
        let record = RecordRef { topic: &a.topic, partition: Some(partition), key, value: Some(value), headers: &[], timestamp_ms: None };
        match producer.send(record) {
            Ok(d) => pending.deliveries.push_back(d),
            Err(e) => return fail(format!("producing: {e}")),
        }
        records += 1;
        if interactive {
            if let Err(e) = producer.flush() {
                return fail(format!("producing: {e}"));
            }
            pending.wait_all();
        } else {
            pending.reap();
        }
    }
    if let Err(e) = producer.flush() {
        return fail(format!("waiting for acknowledgements: {e}"));
    }
    pending.wait_all();
    producer.close();
    if let Some(why) = bad_line {
        eprintln!("shardlog: {why}");
        return match &pending.failed {
            Some(e) => fail(format!("and not every message before it was stored: {e}")),
            None => {
                eprintln!(
                    "shardlog: the {} message(s) before it were sent{}; nothing after it was",
                    records,
                    if a.acks == Acks::None { "" } else { " and acknowledged" }
                );
                exit::USAGE
            }
        };
    }
    match pending.failed {
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
    let security = a.bootstrap.security()?;
    let config = ConsumerConfig {
        bootstrap: a.bootstrap.servers(),
        security,
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
                let views = c.leader_views(&t.name).unwrap_or_default();
                let placement: Vec<String> = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let replicas: Vec<String> = p.replicas.iter().map(|r| r.to_string()).collect();
                        let lagging = if p.isr.len() < p.replicas.len() { " under-replicated" } else { "" };
                        let view = views.get(&p.partition);
                        let lag = lag_text(view.map(|v| &v.lags), " lag ");
                        let size = view.and_then(|v| v.figures).map_or(String::new(), |f| format!(" hw {} size {}", f.high_watermark, f.size_bytes));
                        format!("{}@node{}/shard{}[replicas {}{lag}{size}{lagging}]", p.partition, p.leader, p.shard, replicas.join(","))
                    })
                    .collect();
                println!("\t{}\tpartitions: {}\treplication: {}\t{}", t.name, t.partitions.len(), t.replication_factor, placement.join(" "));
            }
            exit::OK
        }
        Err(e) => broker_err(e, "reading the cluster metadata"),
    }
}
