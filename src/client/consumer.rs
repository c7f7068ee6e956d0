//! A consumer: assigned partitions, or a share of a topic through a group;
//! records from a start position; explicit or automatic commits.
//!
//! Like the producer it runs on blocking sockets and needs no async
//! runtime; call it from a thread (or `spawn_blocking` under tokio).
//!
//! The hot path: [`Consumer::poll_records`] checks each fetched batch once
//! (header, CRC and record framing) and hands out records that borrow from
//! the fetched bytes, so a record costs no allocation;
//! [`Consumer::poll`] copies them into owned [`ConsumerRecord`]s. While
//! the application handles what a poll returned, the fetches for what
//! follows are already in flight: each poll that returned records sends the
//! next fetch to every leader before it returns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::raw::{ClientError, Connection};
use crate::protocol::{fetch, ErrorCode};
use crate::record::{self, BatchInfo, RecordIter};
use crate::tls::ClientSecurity;

/// Where to start in partitions the group has no commit for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record still stored.
    Earliest,
    /// Only records produced from now on.
    Latest,
    /// This offset in every partition.
    Offset(i64),
    /// The first record at or after this time (ms since the epoch).
    Timestamp(i64),
}

/// Where to go when a position is outside the offsets a partition still
/// stores, for example after retention deleted the segment holding a
/// group's committed offset (Kafka's `auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// Restart from the oldest record still stored.
    Earliest,
    /// Skip to the end: only records produced from now on.
    Latest,
    /// Fail `poll` with [`ConsumerError::Broker`] and `OffsetOutOfRange`.
    None,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `host:port` of one or more brokers.
    pub bootstrap: Vec<String>,
    /// TLS and SASL, when the brokers require them.
    pub security: ClientSecurity,
    /// Join this group (with `subscribe`), or commit under it (with `assign`).
    pub group: Option<String>,
    /// Where to start without a commit.
    pub start: StartFrom,
    /// Where to go when a position (committed, or given as an offset) is
    /// no longer stored; logged as a warning when it happens.
    pub offset_reset: OffsetReset,
    /// Commit what `poll` returned, before each following poll and on close.
    pub auto_commit: bool,
    /// How long the group waits for a silent member before reassigning its partitions.
    pub session_timeout_ms: u32,
    /// Bytes asked for per partition in each fetch.
    pub fetch_max_bytes: u32,
    /// How long a call rides through a failover before it gives up: a
    /// partition's leader or the group's coordinator that died or moved is
    /// looked up again and retried for this long (the cluster fences a
    /// dead broker within its session timeout and elects another).
    pub failover_wait_ms: u32,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            bootstrap: vec!["127.0.0.1:9092".into()],
            security: ClientSecurity::default(),
            group: None,
            start: StartFrom::Latest,
            offset_reset: OffsetReset::Latest,
            auto_commit: true,
            session_timeout_ms: 10_000,
            fetch_max_bytes: 1 << 20,
            failover_wait_ms: DEFAULT_FAILOVER_WAIT_MS,
        }
    }
}

/// One record, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp, in ms since the epoch.
    pub timestamp_ms: i64,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its value, if any.
    pub value: Option<Vec<u8>>,
    /// Its headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// The records of one poll. They share the fetched bytes: iterating
/// allocates nothing per record, and [`PolledRecord::value_bytes`] keeps a
/// value beyond the poll without copying it.
#[derive(Debug, Default)]
pub struct Records {
    topic: String,
    parts: Vec<Fetched>,
    count: usize,
}

/// One partition's checked batches from one fetch.
#[derive(Debug)]
struct Fetched {
    partition: u32,
    /// Records below this offset were returned before (the first batch may
    /// start earlier than the position).
    from: i64,
    bytes: Bytes,
    /// Where each batch starts in `bytes`, and its header.
    batches: Vec<(usize, BatchInfo)>,
}

impl Records {
    /// How many records there are.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the poll returned nothing.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The records, partition by partition, each in offset order.
    pub fn iter(&self) -> impl Iterator<Item = PolledRecord<'_>> + '_ {
        self.parts.iter().flat_map(move |f| {
            f.batches.iter().flat_map(move |&(start, info)| {
                RecordIter::validated(&f.bytes[start..], info)
                    // Checked when fetched: an error cannot come here, and
                    // would only end this batch early.
                    .map_while(Result::ok)
                    .filter(move |r| r.offset >= f.from)
                    .map(move |r| PolledRecord {
                        topic: &self.topic,
                        partition: f.partition,
                        offset: r.offset,
                        timestamp_ms: r.timestamp_ms,
                        key: r.key,
                        value: r.value,
                        headers: r.headers,
                        source: &f.bytes,
                    })
            })
        })
    }
}

/// One record of a poll, borrowing from the fetched bytes.
#[derive(Debug, Clone)]
pub struct PolledRecord<'a> {
    /// The topic it was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: i64,
    /// Its timestamp, in ms since the epoch.
    pub timestamp_ms: i64,
    /// Its key, if any.
    pub key: Option<&'a [u8]>,
    /// Its value, if any.
    pub value: Option<&'a [u8]>,
    /// Its headers, in order.
    pub headers: Vec<(&'a str, Option<&'a [u8]>)>,
    source: &'a Bytes,
}

impl PolledRecord<'_> {
    /// The key as shared bytes that outlive the poll (no copy).
    pub fn key_bytes(&self) -> Option<Bytes> {
        self.key.map(|k| self.source.slice_ref(k))
    }

    /// The value as shared bytes that outlive the poll (no copy).
    pub fn value_bytes(&self) -> Option<Bytes> {
        self.value.map(|v| self.source.slice_ref(v))
    }

    /// An owned copy.
    pub fn to_owned(&self) -> ConsumerRecord {
        ConsumerRecord {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.map(<[u8]>::to_vec),
            headers: self.headers.iter().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect(),
        }
    }
}

/// What went wrong while consuming.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    /// Talking to the broker failed.
    Client(#[from] ClientError),
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
    #[error("subscribing needs a group")]
    /// `subscribe` was called without `ConsumerConfig::group`.
    NoGroup,
    #[error("the broker answered {0:?}: {1}")]
    /// The broker refused, with its error code and what was being done.
    Broker(ErrorCode, String),
    #[error("a fetched batch is damaged: {0}")]
    /// A fetched batch failed its checks (never expected from a healthy broker).
    Corrupt(String),
}

struct Member {
    id: String,
    generation: i32,
    interval: Duration,
    last: Instant,
}

/// A consumer of one topic.
///
/// ```
/// # // Runs against an in-process broker when the broker is built; with
/// # // the client feature alone it is compiled, not run.
/// # fn example(addr: &str) {
/// # shardlog::client::admin::Admin::connect(&[addr]).unwrap().create_topic("events", 2, 1, &[]).unwrap();
/// # use shardlog::client::producer::*;
/// # let p = Producer::connect(ProducerConfig { bootstrap: vec![addr.to_string()], ..Default::default() }).unwrap();
/// # p.send(ProducerRecord { topic: "events".into(), value: Some(b"hello".to_vec()), ..Default::default() }).unwrap().wait().unwrap();
/// use shardlog::client::consumer::{Consumer, ConsumerConfig, OffsetReset, StartFrom};
/// use std::time::Duration;
///
/// let config = ConsumerConfig {
///     bootstrap: vec![addr.to_string()],
///     group: Some("billing".into()),
///     start: StartFrom::Earliest,
///     offset_reset: OffsetReset::Earliest,
///     ..Default::default()
/// };
/// let mut consumer = Consumer::subscribe(config, "events").unwrap();
/// let mut seen = Vec::new();
/// while seen.is_empty() {
///     for r in consumer.poll(Duration::from_millis(500)).unwrap() {
///         println!("{}:{} {:?}", r.partition, r.offset, r.value);
///         seen.push(r.value);
///     }
/// }
/// assert_eq!(seen, vec![Some(b"hello".to_vec())]);
/// consumer.close().unwrap(); // commits what poll returned, leaves the group
/// # }
/// # #[cfg(feature = "broker")] {
/// # let dir = tempfile::tempdir_in("target").unwrap();
/// # let config = shardlog::config::BrokerConfig { data_dir: dir.path().into(), listen: "127.0.0.1:0".parse().unwrap(), metrics_listen: "127.0.0.1:0".into(), shards: 1, ..Default::default() };
/// # let broker = shardlog::broker::start(config).unwrap();
/// # example(&broker.addr().to_string());
/// # }
/// ```
pub struct Consumer {
    conn: Connection,
    config: ConsumerConfig,
    topic: String,
    member: Option<Member>,
    /// Next offset to fetch, per assigned partition.
    positions: Vec<(u32, i64)>,
    /// The leader's address of each partition, from metadata.
    leaders: BTreeMap<u32, String>,
    /// Fetch connections, one per leader address.
    fetchers: BTreeMap<String, Connection>,
    /// The fetch in flight on each of them: the positions it asked for,
    /// and whether it is a long poll (a prefetch does not wait).
    in_flight: BTreeMap<String, (Vec<(u32, i64)>, bool)>,
    /// A connection to the group's coordinator, found through the cluster.
    coordinator: Option<Connection>,
    /// Offset after the last record returned, per partition.
    returned: BTreeMap<u32, i64>,
    committed: BTreeMap<u32, i64>,
}

impl Consumer {
    /// Reads the given partitions (all of them when empty).
    pub fn assign(config: ConsumerConfig, topic: &str, partitions: &[u32]) -> Result<Self, ConsumerError> {
        let mut c = Consumer::new(config, topic)?;
        let n = c.partition_count()?;
        let parts: Vec<u32> = if partitions.is_empty() { (0..n).collect() } else { partitions.to_vec() };
        if let Some(&p) = parts.iter().find(|&&p| p >= n) {
            return Err(ConsumerError::UnknownPartition { topic: topic.into(), partition: p });
        }
        c.positions = c.start_positions(&parts)?;
        Ok(c)
    }

    /// Joins the configured group and reads the partitions it assigns.
    pub fn subscribe(config: ConsumerConfig, topic: &str) -> Result<Self, ConsumerError> {
        if config.group.is_none() {
            return Err(ConsumerError::NoGroup);
        }
        let mut c = Consumer::new(config, topic)?;
        c.partition_count()?;
        let parts = c.heartbeat()?;
        c.positions = c.start_positions(&parts)?;
        Ok(c)
    }

    fn new(config: ConsumerConfig, topic: &str) -> Result<Self, ConsumerError> {
        Ok(Consumer {
            conn: Connection::connect_any_with(&config.bootstrap, &config.security)?,
            config,
            topic: topic.to_string(),
            member: None,
            positions: Vec::new(),
            leaders: BTreeMap::new(),
            fetchers: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            coordinator: None,
            returned: BTreeMap::new(),
            committed: BTreeMap::new(),
        })
    }

    fn partition_count(&mut self) -> Result<u32, ConsumerError> {
        self.conn.partitions(&self.topic)?.ok_or_else(|| ConsumerError::UnknownTopic(self.topic.clone()))
    }

    /// The partitions this consumer reads now.
    pub fn assignment(&self) -> Vec<u32> {
        self.positions.iter().map(|p| p.0).collect()
    }

    fn start_positions(&mut self, parts: &[u32]) -> Result<Vec<(u32, i64)>, ConsumerError> {
        let ts = match self.config.start {
            StartFrom::Earliest => -2,
            StartFrom::Latest => -1,
            StartFrom::Timestamp(t) => t,
            StartFrom::Offset(_) => -1,
        };
        let mut pos: Vec<(u32, i64)> = match self.config.start {
            StartFrom::Offset(o) => parts.iter().map(|&p| (p, o)).collect(),
            // Each partition's leader answers for it, followed while it moves.
            _ => self.following_leaders(|c| c.leader_offsets(parts, ts))?,
        };
        if let Some(g) = self.config.group.clone() {
            let topic = self.topic.clone();
            for (p, code, o) in self.with_coordinator(|c| c.fetch_offsets(&g, &topic, parts), |r| r.iter().map(|x| x.1).collect())? {
                if code != ErrorCode::None {
                    return Err(ConsumerError::Broker(code, format!("reading the offsets of group '{g}'")));
                }
                if let Some(slot) = pos.iter_mut().find(|(q, _)| *q == p) {
                    if o >= 0 {
                        slot.1 = o;
                    }
                }
            }
        }
        Ok(pos)
    }

    /// Each partition's offset for `ts` (-2 earliest, -1 latest, or a
    /// time), asked of its leader.
    fn leader_offsets(&mut self, parts: &[u32], ts: i64) -> Result<Vec<(u32, i64)>, ConsumerError> {
        let mut by_leader: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
        for &p in parts {
            by_leader.entry(self.leader(p)?).or_default().push((p, ts));
        }
        let mut out = Vec::new();
        for (addr, ps) in by_leader {
            if self.in_flight.contains_key(&addr) {
                // A prefetch's answer would come first: start afresh.
                self.forget(&addr);
            }
            let topic = self.topic.clone();
            match self.fetch_conn(&addr).and_then(|c| c.list_offsets(&topic, &ps)) {
                Ok(v) => {
                    for (p, code, o) in v {
                        if code != ErrorCode::None {
                            self.forget(&addr);
                            return Err(ConsumerError::Broker(code, format!("looking up the start of partition {p}")));
                        }
                        out.push((p, o));
                    }
                }
                Err(e) => {
                    self.forget(&addr);
                    return Err(e.into());
                }
            }
        }
        Ok(out)
    }

    /// Joins or renews group membership; returns the assigned partitions.
    fn heartbeat(&mut self) -> Result<Vec<u32>, ConsumerError> {
        let g = self.config.group.clone().ok_or(ConsumerError::NoGroup)?;
        let topic = self.topic.clone();
        let topics = [topic.as_str()];
        let t = self.config.session_timeout_ms;
        let member = self.member.as_ref().map(|m| m.id.clone());
        let mut view = self.with_coordinator(|c| c.group_heartbeat(&g, member.as_deref(), &topics, t, false), |v| vec![v.error])?;
        if view.error == ErrorCode::UnknownMemberId {
            view = self.with_coordinator(|c| c.group_heartbeat(&g, None, &topics, t, false), |v| vec![v.error])?;
        }
        if view.error != ErrorCode::None {
            return Err(ConsumerError::Broker(view.error, view.message));
        }
        let mut parts: Vec<u32> = view.assignment.iter().filter(|(t, _)| *t == self.topic).map(|(_, p)| *p).collect();
        parts.sort_unstable();
        self.member = Some(Member {
            id: view.member_id,
            generation: view.generation,
            interval: Duration::from_millis(u64::from(view.heartbeat_interval_ms.max(100))),
            last: Instant::now(),
        });
        Ok(parts)
    }

    /// Keeps the group membership alive and follows rebalances.
    fn maintain(&mut self) -> Result<(), ConsumerError> {
        let due = self.member.as_ref().is_some_and(|m| m.last.elapsed() >= m.interval);
        if !due {
            return Ok(());
        }
        if self.config.auto_commit {
            self.commit()?;
        }
        let before = self.member.as_ref().map(|m| m.generation);
        let parts = self.heartbeat()?;
        if self.member.as_ref().map(|m| m.generation) != before {
            self.returned.retain(|p, _| parts.contains(p));
            self.committed.retain(|p, _| parts.contains(p));
            self.positions = self.start_positions(&parts)?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for records and returns those that came, as
    /// owned records (see [`poll_records`](Self::poll_records), which does
    /// not copy them).
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>, ConsumerError> {
        Ok(self.poll_records(timeout)?.iter().map(|r| r.to_owned()).collect())
    }

    /// Waits up to `timeout` for records and returns those that came,
    /// sharing the fetched bytes. A lost connection is reopened (metadata,
    /// group and leaders looked up again) and the poll retried. A
    /// partition whose leader died is followed to its new leader: the poll
    /// keeps trying for `failover_wait_ms`.
    pub fn poll_records(&mut self, timeout: Duration) -> Result<Records, ConsumerError> {
        self.following_leaders(|c| c.poll_once(timeout))
    }

    /// Runs `f` again while it fails for a reason that passes (a lost
    /// connection, a leader that moved), for up to `failover_wait_ms`, with
    /// the connections and leaders looked up afresh before each attempt.
    fn following_leaders<T>(&mut self, mut f: impl FnMut(&mut Self) -> Result<T, ConsumerError>) -> Result<T, ConsumerError> {
        let started = std::time::Instant::now();
        let budget = self.failover_wait();
        let mut attempt = 0u32;
        loop {
            match f(self) {
                Err(e) if started.elapsed() < budget && passes(&e) => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis((50u64 << attempt.min(5)).min(500)));
                    self.fetchers.clear();
                    self.in_flight.clear();
                    self.leaders.clear();
                    if let Ok(c) = Connection::connect_any_with(&self.config.bootstrap, &self.config.security) {
                        self.conn = c;
                    }
                }
                r => return r,
            }
        }
    }

    fn poll_once(&mut self, timeout: Duration) -> Result<Records, ConsumerError> {
        if self.config.auto_commit {
            self.commit()?;
        }
        self.maintain()?;
        let mut out = Records { topic: self.topic.clone(), parts: Vec::new(), count: 0 };
        if self.positions.is_empty() {
            // More members than partitions: wait for a rebalance.
            std::thread::sleep(timeout.min(Duration::from_millis(200)));
            return Ok(out);
        }
        let wait_ms = timeout.as_millis().min(u128::from(u32::MAX)) as u32;
        let mut by_leader: BTreeMap<String, Vec<(u32, i64)>> = BTreeMap::new();
        for (p, o) in self.positions.clone() {
            let addr = self.leader(p)?;
            by_leader.entry(addr).or_default().push((p, o));
        }
        // A fetch left in flight to a broker that leads none of these now
        // would answer out of turn: its connection goes.
        let stale: Vec<String> = self.in_flight.keys().filter(|a| !by_leader.contains_key(*a)).cloned().collect();
        for addr in stale {
            self.forget(&addr);
        }
        loop {
            // One fetch per leader, all sent before any answer is read, so
            // their long polls run side by side; a prefetch already in
            // flight counts as this poll's fetch.
            for (addr, parts) in &by_leader {
                if !self.in_flight.contains_key(addr) {
                    self.send_fetch(addr, parts, wait_ms)?;
                }
            }
            let mut long = true;
            for addr in by_leader.keys() {
                long &= self.in_flight.get(addr).is_some_and(|f| f.1);
                if let Err(e) = self.take_fetch(addr, &mut out) {
                    // Positions already moved past the records collected
                    // from other leaders: they are returned now, and the
                    // failed leader (forgotten) is looked up next poll.
                    if out.is_empty() {
                        return Err(e);
                    }
                    tracing::debug!(leader = %addr, error = %e, "a fetch failed; returning what the others brought");
                    break;
                }
            }
            // Prefetches that found nothing: wait for data as asked (once:
            // the fetches sent now are long polls; with no time to wait,
            // not at all).
            if !out.is_empty() || long || wait_ms == 0 {
                break;
            }
        }
        // What comes next is fetched while the application handles this.
        if !out.is_empty() {
            for (p, o) in &self.positions {
                if let Some(parts) = self.leaders.get(p).and_then(|a| by_leader.get_mut(a)) {
                    if let Some(slot) = parts.iter_mut().find(|x| x.0 == *p) {
                        slot.1 = *o;
                    }
                }
            }
            for (addr, parts) in &by_leader {
                // A prefetch that cannot be sent forgets its leader; the
                // records in hand are returned whatever happens to it.
                if !self.leaders.values().any(|a| a == addr) {
                    continue;
                }
                let _ = self.send_fetch(addr, parts, 0);
            }
        }
        for f in &out.parts {
            if let Some(&(_, last)) = f.batches.last() {
                self.returned.insert(f.partition, last.next_offset());
            }
        }
        Ok(out)
    }

    fn send_fetch(&mut self, addr: &str, parts: &[(u32, i64)], wait_ms: u32) -> Result<(), ConsumerError> {
        let (topic, max) = (self.topic.clone(), self.config.fetch_max_bytes);
        match self.fetch_conn(addr).and_then(|c| c.send_fetch(&topic, parts, max, wait_ms, 1)) {
            Ok(_) => {
                self.in_flight.insert(addr.to_string(), (parts.to_vec(), wait_ms > 0));
                Ok(())
            }
            Err(e) => {
                self.forget(addr);
                Err(e.into())
            }
        }
    }

    /// Reads the answer to the fetch in flight to `addr` and adds the
    /// records it brought to `out`: each batch checked once (header, CRC
    /// and record framing), nothing copied. A partition whose position
    /// moved since the fetch was sent (a reset or a rebalance) is skipped.
    fn take_fetch(&mut self, addr: &str, out: &mut Records) -> Result<(), ConsumerError> {
        let Some((asked, _)) = self.in_flight.remove(addr) else { return Ok(()) };
        let reply = match self.fetch_conn(addr).and_then(|c| c.recv()) {
            Ok(r) => r,
            Err(e) => {
                self.forget(addr);
                return Err(e.into());
            }
        };
        let resp: fetch::Response<Bytes> = reply.body()?;
        for p in resp.into_partitions() {
            // Compressed batches are read from an inflated copy; the rest
            // stay the fetched bytes.
            let mine = match record::inflate_all(&p.records) {
                Ok(Some(inflated)) => Bytes::from(inflated),
                Ok(None) => p.records,
                Err(e) => return Err(ConsumerError::Corrupt(format!("partition {}: {e}", p.partition))),
            };
            if p.error == ErrorCode::NotLeader {
                self.forget(addr);
                continue;
            }
            if p.error == ErrorCode::OffsetOutOfRange && self.config.offset_reset != OffsetReset::None {
                self.reset_position(p.partition, p.log_start_offset, p.high_watermark)?;
                continue;
            }
            if p.error != ErrorCode::None {
                return Err(ConsumerError::Broker(p.error, format!("fetching partition {}", p.partition)));
            }
            let Some(i) = self.positions.iter().position(|(q, _)| *q == p.partition) else { continue };
            let from = self.positions[i].1;
            if asked.iter().find(|x| x.0 == p.partition).is_none_or(|x| x.1 != from) {
                continue;
            }
            let mut batches = Vec::new();
            let mut count = 0usize;
            for b in record::batches(&mine) {
                let (start, info) = b.map_err(|e| ConsumerError::Corrupt(e.to_string()))?;
                record::validate_records(&mine[start..], &info).map_err(|e| ConsumerError::Corrupt(e.to_string()))?;
                let next = info.next_offset();
                if next <= from {
                    continue;
                }
                count += (next - from.max(info.base_offset)) as usize;
                batches.push((start, info));
            }
            if let Some(&(_, last)) = batches.last() {
                self.positions[i].1 = last.next_offset();
                out.count += count;
                out.parts.push(Fetched { partition: p.partition, from, bytes: mine, batches });
            }
        }
        Ok(())
    }

    /// Moves a partition's position that is no longer stored to where
    /// `offset_reset` says, and says so.
    fn reset_position(&mut self, partition: u32, log_start: i64, high_watermark: i64) -> Result<(), ConsumerError> {
        let Some(i) = self.positions.iter().position(|(q, _)| *q == partition) else { return Ok(()) };
        let (to, name) = match self.config.offset_reset {
            OffsetReset::Earliest => (log_start, "earliest"),
            OffsetReset::Latest => (high_watermark, "latest"),
            OffsetReset::None => return Ok(()),
        };
        let was = self.positions[i].1;
        tracing::warn!(
            "partition {partition} of '{}': offset {was} is out of range (the partition holds {log_start}..{high_watermark}); resetting to the {name} offset, {to}",
            self.topic
        );
        self.positions[i].1 = to;
        Ok(())
    }

    /// The address of the broker leading `partition`, from metadata.
    fn leader(&mut self, partition: u32) -> Result<String, ConsumerError> {
        if let Some(a) = self.leaders.get(&partition) {
            return Ok(a.clone());
        }
        let (brokers, topics) = self.conn.metadata(Some(&[self.topic.as_str()]))?;
        for t in topics.iter().filter(|t| t.name == self.topic) {
            for p in &t.partitions {
                if let Some(b) = brokers.iter().find(|b| b.node_id == p.leader && !b.fenced) {
                    self.leaders.insert(p.partition, format!("{}:{}", b.host, b.port));
                }
            }
        }
        self.leaders.get(&partition).cloned().ok_or_else(|| ConsumerError::Broker(ErrorCode::NotLeader, format!("no leader known for partition {partition}")))
    }

    /// Runs a group request on the group's coordinator, found through the
    /// cluster (FindCoordinator) and looked up again while the answer says
    /// it moved or is not available yet, or its broker cannot be reached:
    /// for up to `failover_wait_ms`, as a poll rides through a leader's
    /// failover. Past that, the error names the group and the last cause.
    fn with_coordinator<T>(&mut self, f: impl Fn(&mut Connection) -> Result<T, ClientError>, codes: impl Fn(&T) -> Vec<ErrorCode>) -> Result<T, ConsumerError> {
        let g = self.config.group.clone().ok_or(ConsumerError::NoGroup)?;
        let started = Instant::now();
        let budget = self.failover_wait();
        let mut attempt = 0u32;
        let last = loop {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis((50u64 << attempt.min(4)).min(500)));
            }
            attempt += 1;
            let cause = match self.try_coordinator(&g, &f) {
                Ok(v) if codes(&v).iter().any(|c| matches!(*c, ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable)) => {
                    self.coordinator = None;
                    "the coordinator moved or is not available yet".to_string()
                }
                Ok(v) => return Ok(v),
                Err(CoordinatorError::Final(e)) => return Err(e),
                Err(CoordinatorError::Passing(cause)) => {
                    self.coordinator = None;
                    cause
                }
            };
            if started.elapsed() >= budget {
                break cause;
            }
        };
        Err(ConsumerError::Broker(
            ErrorCode::CoordinatorNotAvailable,
            format!("the coordinator of group '{g}' was not available for {} ms (last: {last})", started.elapsed().as_millis()),
        ))
    }

    /// One attempt of a group request: finds the coordinator if none is
    /// known (through any bootstrap broker that answers) and runs `f` on it.
    fn try_coordinator<T>(&mut self, g: &str, f: &impl Fn(&mut Connection) -> Result<T, ClientError>) -> Result<T, CoordinatorError> {
        if self.coordinator.is_none() {
            let found = match self.conn.find_coordinator(g) {
                Ok(found) => found,
                // Refused for what it asks, not for where: no other broker
                // answers otherwise.
                Err(ClientError::Broker { code, message }) if !code.is_retriable() => {
                    return Err(CoordinatorError::Final(ConsumerError::Broker(code, message)));
                }
                Err(e) => {
                    // The broker this consumer bootstrapped through is gone:
                    // ask another.
                    if let Ok(c) = Connection::connect_any_with(&self.config.bootstrap, &self.config.security) {
                        self.conn = c;
                    }
                    return Err(CoordinatorError::Passing(format!("asking a broker for the coordinator: {e}")));
                }
            };
            match found {
                Ok(addr) => match Connection::connect_with(addr.as_str(), &self.config.security) {
                    Ok(c) => self.coordinator = Some(c),
                    Err(e) => return Err(CoordinatorError::Passing(format!("connecting to the coordinator at {addr}: {e}"))),
                },
                Err((code, m)) if code.is_retriable() => return Err(CoordinatorError::Passing(format!("{code:?}: {m}"))),
                Err((code, m)) => return Err(CoordinatorError::Final(ConsumerError::Broker(code, m))),
            }
        }
        let c = self.coordinator.as_mut().expect("set above");
        f(c).map_err(|e| match e {
            ClientError::Broker { code, message } if !code.is_retriable() => CoordinatorError::Final(ConsumerError::Broker(code, message)),
            e => CoordinatorError::Passing(format!("the coordinator's connection: {e}")),
        })
    }

    fn failover_wait(&self) -> Duration {
        Duration::from_millis(u64::from(self.config.failover_wait_ms))
    }

    /// A connection to `addr`, opened on first use.
    fn fetch_conn(&mut self, addr: &str) -> Result<&mut Connection, ClientError> {
        if !self.fetchers.contains_key(addr) {
            let c = Connection::connect_with(addr, &self.config.security)?;
            self.fetchers.insert(addr.to_string(), c);
        }
        Ok(self.fetchers.get_mut(addr).expect("inserted above"))
    }

    /// Drops a connection and the leaders it served, so the next poll
    /// looks them up again (after a failure or a "not leader" answer).
    fn forget(&mut self, addr: &str) {
        self.fetchers.remove(addr);
        self.in_flight.remove(addr);
        self.leaders.retain(|_, a| a != addr);
    }

    /// Commits everything `poll` returned.
    pub fn commit(&mut self) -> Result<(), ConsumerError> {
        let upto = self.returned.clone();
        self.commit_offsets(&upto)
    }

    /// Commits chosen next offsets, e.g. only the records an application
    /// finished with.
    pub fn commit_offsets(&mut self, next: &BTreeMap<u32, i64>) -> Result<(), ConsumerError> {
        let Some(g) = self.config.group.clone() else { return Ok(()) };
        let todo: Vec<(u32, i64)> = next.iter().filter(|(p, o)| self.committed.get(p) != Some(o)).map(|(p, o)| (*p, *o)).collect();
        if todo.is_empty() {
            return Ok(());
        }
        let who = self.member.as_ref().map(|m| (m.id.clone(), m.generation));
        let topic = self.topic.clone();
        let answers =
            self.with_coordinator(|c| c.commit_offsets(&g, who.as_ref().map(|(m, g)| (m.as_str(), *g)), &topic, &todo), |r| r.iter().map(|x| x.1).collect())?;
        for (p, code, o) in answers {
            match code {
                ErrorCode::None => {
                    self.committed.insert(p, o);
                }
                // The partition moved in a rebalance; its new owner goes on
                // from the last commit that was accepted.
                ErrorCode::IllegalGeneration | ErrorCode::UnknownMemberId if self.member.is_some() => {}
                c => return Err(ConsumerError::Broker(c, format!("committing partition {p} for group '{g}'"))),
            }
        }
        Ok(())
    }

    /// Commits (with auto commit) and leaves the group.
    pub fn close(mut self) -> Result<(), ConsumerError> {
        if self.config.auto_commit {
            self.commit()?;
        }
        self.leave();
        Ok(())
    }

    /// Leaves the group, so its partitions go to the other members now
    /// rather than when the session expires. Best effort: a broker that
    /// does not answer soon lets the session expire instead.
    fn leave(&mut self) {
        if let (Some(m), Some(g), Some(c)) = (self.member.take(), &self.config.group, self.coordinator.as_mut()) {
            let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = c.group_heartbeat(g, Some(&m.id), &[self.topic.as_str()], self.config.session_timeout_ms, true);
        }
    }
}

/// A consumer dropped without [`Consumer::close`] (an application that
/// stops on an error) still leaves its group; it commits nothing.
impl Drop for Consumer {
    fn drop(&mut self) {
        self.leave();
    }
}

/// How long a consumer keeps looking for a partition's leader or its
/// group's coordinator by default (the cluster fences a dead broker within
/// its session timeout, 2.5 s by default, and elects another).
pub const DEFAULT_FAILOVER_WAIT_MS: u32 = 20_000;

/// Why one attempt at the coordinator failed.
enum CoordinatorError {
    /// Passes by itself (a coordinator moving, a broker restarting): try again.
    Passing(String),
    /// Retrying will not help.
    Final(ConsumerError),
}

/// Whether an error passes by itself: a lost connection, a leader that
/// moved or is being elected, a broker that is stopping.
fn passes(e: &ConsumerError) -> bool {
    let code = match e {
        ConsumerError::Client(ClientError::Broker { code, .. }) | ConsumerError::Broker(code, _) => *code,
        ConsumerError::Client(_) => return true,
        _ => return false,
    };
    code.is_retriable()
}
