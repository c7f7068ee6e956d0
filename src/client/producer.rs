//! A batching producer that any application can use: from blocking code
//! (`send(..)?.wait()`) or from an async runtime such as tokio (the
//! returned [`Delivery`] is a plain `Future`).
//!
//! Runtime choice: the producer owns one background thread that batches and
//! talks to the broker over blocking sockets, and hands results back
//! through `futures` oneshot channels, which every executor can await. An
//! application therefore needs neither glommio nor a particular async
//! runtime, and the producer works the same under all of them.
//!
//! Routing: each batch goes to the broker that leads its partition, from
//! metadata fetched through a bootstrap broker; a failure or a "not
//! leader" answer drops the cached leader, so the next attempt looks again.
//!
//! Ordering: one request per producer is in flight at a time, and a failed
//! request is retried before anything after it is sent, so retries never
//! reorder records within a partition.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use super::raw::{ClientError, Connection};
use crate::protocol::ErrorCode;
use crate::record::{BatchBuilder, Header};

/// How many replicas must have a record before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Not waited for (no delivery report beyond "sent").
    None,
    /// Appended on the leader.
    Leader,
    /// Synced to disk (and, in a cluster, on every in-sync replica).
    All,
}

/// Producer settings; every size and time carries its unit.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `host:port` of one or more brokers.
    pub bootstrap: Vec<String>,
    /// How many replicas must have a record before it is acknowledged.
    pub acks: Acks,
    /// How long a batch may wait for more records.
    pub linger: Duration,
    /// A batch is sent once it holds this many bytes.
    pub batch_max_bytes: usize,
    /// Bytes of records waiting to be sent; `send` blocks past this.
    pub buffer_max_bytes: usize,
    /// How long `send` may block on a full buffer.
    pub send_timeout: Duration,
    /// Attempts for one batch before its records fail; the pause between
    /// attempts grows to 500 ms, so the default of 40 rides out a leader's
    /// failover (about 18 s in all).
    pub retries: u32,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            bootstrap: vec!["127.0.0.1:9092".into()],
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_max_bytes: 512 * 1024,
            buffer_max_bytes: 32 << 20,
            send_timeout: Duration::from_secs(30),
            retries: 40,
        }
    }
}

/// One record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// The topic to send to.
    pub topic: String,
    /// A fixed partition; otherwise by key hash, or round robin without a key.
    pub partition: Option<u32>,
    /// The key: records with equal keys go to the same partition.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Milliseconds since the epoch; now when absent.
    pub timestamp_ms: Option<i64>,
}

/// Where a record was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMetadata {
    /// The partition it was stored in.
    pub partition: u32,
    /// The record's offset; -1 with [`Acks::None`].
    pub offset: i64,
}

/// Why a record was not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerError {
    #[error("the send buffer stayed full for {0:?}")]
    /// `send` waited this long for buffer space.
    BufferFull(Duration),
    #[error("topic '{0}' does not exist")]
    /// The topic does not exist.
    UnknownTopic(String),
    #[error("partition {partition} is outside topic '{topic}'")]
    /// The partition is outside the topic.
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: u32,
    },
    #[error("the broker refused the batch: {0}")]
    /// The broker refused the batch, or every retry failed.
    Broker(String),
    #[error("the producer is closed")]
    /// The producer was closed.
    Closed,
}

/// The delivery report of one record: a `Future`, or [`Delivery::wait`]
/// from blocking code.
pub struct Delivery(oneshot::Receiver<Result<RecordMetadata, ProducerError>>);

impl Delivery {
    /// Blocks until the record is acknowledged or has failed.
    pub fn wait(self) -> Result<RecordMetadata, ProducerError> {
        futures::executor::block_on(self)
    }
}

impl Future for Delivery {
    type Output = Result<RecordMetadata, ProducerError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or(Err(ProducerError::Closed)))
    }
}

enum Command {
    Send(ProducerRecord, usize, oneshot::Sender<Result<RecordMetadata, ProducerError>>),
    Flush(mpsc::Sender<()>),
}

/// Buffered bytes, shared by `send` (which waits) and the sender thread.
type Budget = Arc<(Mutex<usize>, Condvar)>;

/// A batching, retrying producer. Cheap to share behind an `Arc`.
///
/// ```
/// # // Runs against an in-process broker when the broker is built; with
/// # // the client feature alone it is compiled, not run.
/// # fn example(addr: &str) {
/// # shardlog::client::admin::Admin::connect(&[addr]).unwrap().create_topic("events", 2, 1, &[]).unwrap();
/// use shardlog::client::producer::{Producer, ProducerConfig, ProducerRecord};
///
/// let producer = Producer::connect(ProducerConfig { bootstrap: vec![addr.to_string()], ..Default::default() }).unwrap();
/// let delivery = producer
///     .send(ProducerRecord { topic: "events".into(), value: Some(b"hello".to_vec()), ..Default::default() })
///     .unwrap();
/// let stored = delivery.wait().unwrap(); // or `.await` on any async runtime
/// println!("partition {} offset {}", stored.partition, stored.offset);
/// producer.flush().unwrap();
/// # }
/// # #[cfg(feature = "broker")] {
/// # let dir = tempfile::tempdir_in("target").unwrap();
/// # let config = shardlog::config::BrokerConfig { data_dir: dir.path().into(), listen: "127.0.0.1:0".parse().unwrap(), shards: 1, ..Default::default() };
/// # let broker = shardlog::broker::start(config).unwrap();
/// # example(&broker.addr().to_string());
/// # }
/// ```
pub struct Producer {
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    budget: Budget,
    config: ProducerConfig,
    thread: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Producer {
    /// Connects to the first bootstrap broker that answers.
    pub fn connect(config: ProducerConfig) -> Result<Self, ClientError> {
        let conn = Connection::connect_any(&config.bootstrap)?;
        let (tx, rx) = mpsc::channel();
        let budget: Budget = Arc::new((Mutex::new(0), Condvar::new()));
        let worker = Worker {
            bootstrap: Some(conn),
            leaders: BTreeMap::new(),
            conns: BTreeMap::new(),
            config: config.clone(),
            budget: budget.clone(),
            partitions: BTreeMap::new(),
            batches: BTreeMap::new(),
            round_robin: 0,
        };
        let thread = thread::Builder::new().name("shardlog-producer".into()).spawn(move || worker.run(rx)).map_err(ClientError::Io)?;
        Ok(Producer { tx: Mutex::new(Some(tx)), budget, config, thread: Mutex::new(Some(thread)) })
    }

    /// Queues a record; blocks while the buffer is full (backpressure).
    pub fn send(&self, record: ProducerRecord) -> Result<Delivery, ProducerError> {
        let size = 64 + record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len);
        {
            let (lock, cv) = &*self.budget;
            let mut used = lock.lock().expect("budget lock");
            let deadline = Instant::now() + self.config.send_timeout;
            while *used > 0 && *used + size > self.config.buffer_max_bytes {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(ProducerError::BufferFull(self.config.send_timeout));
                }
                used = cv.wait_timeout(used, left).expect("budget lock").0;
            }
            *used += size;
        }
        let (tx, rx) = oneshot::channel();
        let sent = self.tx.lock().expect("sender lock").as_ref().map(|s| s.send(Command::Send(record, size, tx)).is_ok()).unwrap_or(false);
        if !sent {
            return Err(ProducerError::Closed);
        }
        Ok(Delivery(rx))
    }

    /// Sends everything queued and waits until it is acknowledged.
    pub fn flush(&self) -> Result<(), ProducerError> {
        let (tx, rx) = mpsc::channel();
        let sent = self.tx.lock().expect("sender lock").as_ref().map(|s| s.send(Command::Flush(tx)).is_ok()).unwrap_or(false);
        if !sent {
            return Err(ProducerError::Closed);
        }
        rx.recv().map_err(|_| ProducerError::Closed)
    }

    /// Flushes, then stops the background thread.
    pub fn close(&self) {
        let _ = self.flush();
        self.tx.lock().expect("sender lock").take();
        if let Some(t) = self.thread.lock().expect("thread lock").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close();
    }
}

type Waiter = (usize, oneshot::Sender<Result<RecordMetadata, ProducerError>>);

struct Pending {
    builder: BatchBuilder,
    waiters: Vec<Waiter>,
    opened: Instant,
}

struct Worker {
    /// A connection to any bootstrap broker, for metadata.
    bootstrap: Option<Connection>,
    /// The leader's address of each partition, from the metadata.
    leaders: BTreeMap<(String, u32), String>,
    /// One connection per broker address.
    conns: BTreeMap<String, Connection>,
    config: ProducerConfig,
    budget: Budget,
    partitions: BTreeMap<String, u32>,
    batches: BTreeMap<(String, u32), Pending>,
    round_robin: u32,
}

fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Command>) {
        loop {
            let wait = self.batches.values().map(|p| self.config.linger.saturating_sub(p.opened.elapsed())).min().unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(wait) {
                Ok(Command::Send(record, size, tx)) => self.add(record, size, tx),
                Ok(Command::Flush(done)) => {
                    self.send_ready(true);
                    let _ = done.send(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.send_ready(true);
                    return;
                }
            }
            self.send_ready(false);
        }
    }

    fn partitions(&mut self, topic: &str) -> Result<u32, ProducerError> {
        if let Some(n) = self.partitions.get(topic) {
            return Ok(*n);
        }
        let mut last = String::new();
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                thread::sleep(Duration::from_millis(50 << attempt.min(5)));
            }
            match self.with_bootstrap(|c| c.partitions(topic)) {
                Ok(Some(n)) => {
                    self.partitions.insert(topic.to_string(), n);
                    return Ok(n);
                }
                Ok(None) => return Err(ProducerError::UnknownTopic(topic.to_string())),
                Err(e) => last = e.to_string(),
            }
        }
        Err(ProducerError::Broker(format!("looking up '{topic}' failed {} times: {last}", self.config.retries + 1)))
    }

    fn with_bootstrap<T>(&mut self, f: impl Fn(&mut Connection) -> Result<T, ClientError>) -> Result<T, ClientError> {
        if self.bootstrap.is_none() {
            self.bootstrap = Some(Connection::connect_any(&self.config.bootstrap)?);
        }
        let r = f(self.bootstrap.as_mut().expect("connected above"));
        if r.is_err() {
            self.bootstrap = None; // reconnect on the next attempt
        }
        r
    }

    /// The address of the broker leading a partition, from (cached) metadata.
    fn leader(&mut self, topic: &str, partition: u32) -> Result<String, ClientError> {
        if let Some(a) = self.leaders.get(&(topic.to_string(), partition)) {
            return Ok(a.clone());
        }
        let (brokers, topics) = self.with_bootstrap(|c| c.metadata(Some(&[topic])))?;
        for t in topics {
            for p in t.partitions {
                if let Some(b) = brokers.iter().find(|b| b.node_id == p.leader && !b.fenced) {
                    self.leaders.insert((t.name.clone(), p.partition), format!("{}:{}", b.host, b.port));
                }
            }
        }
        self.leaders
            .get(&(topic.to_string(), partition))
            .cloned()
            .ok_or(ClientError::Broker { code: ErrorCode::NotLeader, message: format!("no leader known for {topic}/{partition}") })
    }

    /// Runs `f` on a connection to the partition's leader; any failure drops
    /// that connection and the cached leader, so a retry looks again.
    fn with_leader<T>(&mut self, topic: &str, partition: u32, f: impl Fn(&mut Connection) -> Result<T, ClientError>) -> Result<T, ClientError> {
        let addr = self.leader(topic, partition)?;
        if !self.conns.contains_key(&addr) {
            let c = Connection::connect(addr.as_str()).inspect_err(|_| {
                self.leaders.remove(&(topic.to_string(), partition));
            })?;
            self.conns.insert(addr.clone(), c);
        }
        let r = f(self.conns.get_mut(&addr).expect("inserted above"));
        if r.is_err() {
            self.conns.remove(&addr);
            self.leaders.remove(&(topic.to_string(), partition));
        }
        r
    }

    fn add(&mut self, r: ProducerRecord, size: usize, tx: oneshot::Sender<Result<RecordMetadata, ProducerError>>) {
        let n = match self.partitions(&r.topic) {
            Ok(n) => n,
            Err(e) => {
                self.release(size);
                let _ = tx.send(Err(e));
                return;
            }
        };
        let partition = match (r.partition, &r.key) {
            (Some(p), _) if p < n => p,
            (Some(p), _) => {
                self.release(size);
                let _ = tx.send(Err(ProducerError::UnknownPartition { topic: r.topic, partition: p }));
                return;
            }
            (None, Some(k)) => (fnv1a(k) % u64::from(n)) as u32,
            (None, None) => {
                self.round_robin = self.round_robin.wrapping_add(1);
                self.round_robin % n
            }
        };
        let key = (r.topic, partition);
        let p = self.batches.entry(key).or_insert_with(|| Pending { builder: BatchBuilder::new(4096), waiters: Vec::new(), opened: Instant::now() });
        let headers: Vec<Header<'_>> = r.headers.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
        p.builder.push(r.timestamp_ms.unwrap_or_else(crate::time::now_ms), r.key.as_deref(), r.value.as_deref(), &headers);
        p.waiters.push((size, tx));
    }

    fn release(&self, size: usize) {
        let (lock, cv) = &*self.budget;
        *lock.lock().expect("budget lock") -= size;
        cv.notify_all();
    }

    /// Sends every batch that is full or has lingered long enough (all of
    /// them with `all`), one request at a time, retrying each in place.
    fn send_ready(&mut self, all: bool) {
        let ready: Vec<(String, u32)> = self
            .batches
            .iter()
            .filter(|(_, p)| all || p.builder.encoded_len() >= self.config.batch_max_bytes || p.opened.elapsed() >= self.config.linger)
            .map(|(k, _)| k.clone())
            .collect();
        for key in ready {
            let Some(p) = self.batches.remove(&key) else { continue };
            let batch = p.builder.finish();
            let result = self.send_batch(&key.0, key.1, &batch);
            for (i, (size, tx)) in p.waiters.into_iter().enumerate() {
                self.release(size);
                let r = result.clone().map(|base| RecordMetadata { partition: key.1, offset: if base < 0 { -1 } else { base + i as i64 } });
                let _ = tx.send(r);
            }
        }
    }

    fn send_batch(&mut self, topic: &str, partition: u32, batch: &[u8]) -> Result<i64, ProducerError> {
        let acks = match self.config.acks {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        };
        let mut last = String::new();
        for attempt in 0..=self.config.retries {
            if attempt > 0 {
                thread::sleep(Duration::from_millis((50u64 << attempt.min(5)).min(500)));
            }
            let r = self.with_leader(topic, partition, |c| {
                c.send_produce(topic, &[(partition, batch)], acks)?;
                if acks == 0 {
                    return Ok((ErrorCode::None, String::new(), -1));
                }
                let reply = c.recv()?;
                let resp = reply.ok()?;
                let p = resp.body_as_produce_response().and_then(|p| p.topics()).map(|t| t.get(0)).and_then(|t| t.partitions()).map(|p| p.get(0));
                Ok(p.map_or((ErrorCode::UnknownServerError, "no partition in the response".into(), -1), |p| {
                    (p.error(), p.error_message().unwrap_or_default().to_string(), p.base_offset())
                }))
            });
            match r {
                Ok((ErrorCode::None, _, base)) => return Ok(base),
                // Retriable: the leader moved, the broker is stopping, a
                // sync timed out, or too few replicas are in sync yet.
                Ok((code @ (ErrorCode::NotLeader | ErrorCode::BrokerShuttingDown | ErrorCode::RequestTimedOut | ErrorCode::NotEnoughReplicas), msg, _)) => {
                    last = format!("{code:?}: {msg}");
                    // Look up the leader again before the next attempt.
                    self.leaders.remove(&(topic.to_string(), partition));
                    self.partitions.remove(topic);
                }
                Ok((code, msg, _)) => return Err(ProducerError::Broker(format!("{code:?}: {msg}"))),
                Err(e) => last = e.to_string(),
            }
        }
        Err(ProducerError::Broker(format!("gave up after {} attempts: {last}", self.config.retries + 1)))
    }
}
