//! A blocking, pipelining connection to one broker over raw frames.
//!
//! [`Connection::send_*`] writes a request and returns its correlation id;
//! [`Connection::recv`] reads the next response, whichever it is. Many
//! requests may be in flight; responses may come back in any order.
//!
//! ```no_run
//! use shardlog::client::raw::Connection;
//! use shardlog::protocol::Acks;
//! use shardlog::record::BatchBuilder;
//!
//! let mut c = Connection::connect("127.0.0.1:9092").unwrap();
//! c.create_topic("events", 2).unwrap();
//! let mut b = BatchBuilder::new(128);
//! b.push(0, None, Some(b"hello"), &[]);
//! let batch = b.finish();
//! let corr = c.send_produce("events", &[(0, &batch[..])], Acks::All).unwrap();
//! let reply = c.recv().unwrap();
//! assert_eq!(reply.correlation_id().unwrap(), corr);
//! ```

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::ToSocketAddrs;

use super::transport::Transport;
use crate::tls::ClientSecurity;
use std::time::Duration;

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

use crate::protocol::{
    self, api_versions, create_topics, delete_topics, describe_topic, fb, fetch, find_coordinator, group_heartbeat, init_producer_id, list_offsets,
    list_topics, metadata, offset_commit, offset_fetch, produce, sasl_authenticate, Acks, DecodeResponse, ErrorCode, ProtocolError, RequestBody,
};

pub use crate::protocol::metadata::{Broker as BrokerMeta, Partition as PartitionMeta, Response as ClusterInfo, Topic as TopicMeta, Voter as VoterMeta};

/// What went wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("network: {0}")]
    /// The socket failed.
    Io(#[from] io::Error),
    #[error("bad response from the broker: {0}")]
    /// The broker sent bytes that are not a valid response.
    Protocol(#[from] ProtocolError),
    #[error("the broker answered {code:?}: {message}")]
    /// The broker answered with an error code.
    Broker {
        /// The stable error code.
        code: ErrorCode,
        /// The broker's explanation.
        message: String,
    },
    #[error("the broker closed the connection")]
    /// The connection was closed.
    Closed,
}

/// One response frame: the verified message and the payload after it.
#[derive(Debug)]
pub struct Reply {
    message: Bytes,
    /// Record batches that followed the message, as sent: a view of the
    /// frame as read (records handed out share it; nothing is copied).
    pub payload: Bytes,
}

impl Reply {
    /// The response envelope (verified when the reply was read).
    pub fn response(&self) -> fb::Response<'_> {
        // SAFETY: `recv` verified `message`, and a `Reply` never changes it
        // (`Bytes` is immutable and the field is private).
        unsafe { protocol::verified_response(&self.message) }
    }

    /// The correlation id of the request this answers.
    pub fn correlation_id(&self) -> Result<u32, ClientError> {
        Ok(self.response().correlation_id())
    }

    /// The response, or the request-level error it carries.
    pub fn ok(&self) -> Result<fb::Response<'_>, ClientError> {
        let r = self.response();
        if r.error() != ErrorCode::None {
            return Err(ClientError::Broker { code: r.error(), message: r.error_message().unwrap_or_default().to_string() });
        }
        Ok(r)
    }

    /// The response's body as `B`, or the request-level error it carries.
    /// Records in it are views of this reply's payload.
    pub fn body<B: DecodeResponse>(&self) -> Result<B, ClientError> {
        Ok(B::decode_response(self.ok()?, self.payload.clone())?)
    }
}

/// `host:port` (a bracketed IPv6 address too) split.
pub fn split_host_port(addr: &str) -> Result<(&str, u16), ClientError> {
    let bad = || ClientError::Io(io::Error::new(io::ErrorKind::InvalidInput, format!("'{addr}' is not HOST:PORT")));
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    Ok((host, port.parse().map_err(|_| bad())?))
}

/// A connection to one broker.
pub struct Connection {
    stream: Transport,
    next: u32,
    fbb: FlatBufferBuilder<'static>,
    client_id: String,
    max_frame_bytes: usize,
    /// How it connected: connections it opens to other brokers do the same.
    security: ClientSecurity,
}

impl Connection {
    /// Connects to one broker.
    ///
    /// Opens with ApiVersions, as every native client should: the broker
    /// tells a native connection from a Kafka one by its first frame, and
    /// a frame without records, like this one, is never read as Kafka's
    /// (see `schemas/PROTOCOL.md`).
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, ClientError> {
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the address resolves to nothing"))?;
        Self::open(Transport::connect(&addr.ip().to_string(), addr.port(), None)?, &ClientSecurity::default())
    }

    /// Connects to `addr` (`host:port`) with `security`: TLS when it has a
    /// setting (the broker's certificate must name the host), then SASL
    /// when it has credentials.
    pub fn connect_with(addr: &str, security: &ClientSecurity) -> Result<Self, ClientError> {
        let (host, port) = split_host_port(addr)?;
        Self::open(Transport::connect(host, port, security.tls.as_ref())?, security)
    }

    fn open(stream: Transport, security: &ClientSecurity) -> Result<Self, ClientError> {
        let mut c = Connection {
            stream,
            next: 1,
            fbb: FlatBufferBuilder::with_capacity(1024),
            client_id: "shardlog".into(),
            max_frame_bytes: 256 << 20,
            security: security.clone(),
        };
        let _: api_versions::Response = c.call(&api_versions::Request { client_software: Some(format!("shardlog {}", env!("CARGO_PKG_VERSION"))) })?;
        if let Some(creds) = &security.sasl {
            c.authenticate(creds)?;
        }
        Ok(c)
    }

    /// SASL SCRAM with `creds` (two round trips).
    fn authenticate(&mut self, creds: &crate::auth::Credentials) -> Result<(), ClientError> {
        use crate::auth::scram::ClientExchange;
        let mut ex = ClientExchange::new(creds.mechanism, &creds.user, &creds.password);
        let sasl_error = |e: crate::auth::scram::ScramError| ClientError::Broker { code: ErrorCode::SaslAuthenticationFailed, message: e.to_string() };
        let first = sasl_authenticate::Request { mechanism: Some(creds.mechanism.name().to_string()), auth_bytes: ex.first() };
        let r: sasl_authenticate::Response = self.call(&first)?;
        if r.error != ErrorCode::None {
            return Err(ClientError::Broker { code: r.error, message: r.error_message.unwrap_or_default() });
        }
        let proof = ex.respond(&r.auth_bytes).map_err(sasl_error)?;
        let r: sasl_authenticate::Response = self.call(&sasl_authenticate::Request { mechanism: None, auth_bytes: proof })?;
        if r.error != ErrorCode::None {
            return Err(ClientError::Broker { code: r.error, message: r.error_message.unwrap_or_default() });
        }
        ex.finish(&r.auth_bytes).map_err(sasl_error)
    }

    /// Connects to the first of `bootstrap` (`host:port` strings) that answers.
    pub fn connect_any<S: AsRef<str>>(bootstrap: &[S]) -> Result<Self, ClientError> {
        Self::connect_any_with(bootstrap, &ClientSecurity::default())
    }

    /// [`Connection::connect_any`] with `security`. An authentication
    /// refused is not tried on the next broker: it would be refused there
    /// too.
    pub fn connect_any_with<S: AsRef<str>>(bootstrap: &[S], security: &ClientSecurity) -> Result<Self, ClientError> {
        let mut last = None;
        for addr in bootstrap {
            match Connection::connect_with(addr.as_ref(), security) {
                Err(e @ ClientError::Broker { code: ErrorCode::SaslAuthenticationFailed | ErrorCode::UnsupportedSaslMechanism, .. }) => return Err(e),
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::Closed))
    }

    /// Bounds how long `recv` waits.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> Result<(), ClientError> {
        Ok(self.stream.set_read_timeout(d)?)
    }

    /// Closes both directions of the socket, for every handle on it (a
    /// thread blocked reading it returns).
    pub fn shutdown(&self) {
        let _ = self.stream.shutdown();
    }

    /// A second handle on the same socket, e.g. to read responses on one
    /// thread while another writes requests.
    pub fn try_clone(&self) -> Result<Self, ClientError> {
        Ok(Connection {
            stream: self.stream.try_clone()?,
            next: self.next,
            fbb: FlatBufferBuilder::with_capacity(1024),
            client_id: self.client_id.clone(),
            max_frame_bytes: self.max_frame_bytes,
            security: self.security.clone(),
        })
    }

    /// Writes a request and the records that follow its message;
    /// returns its correlation id.
    pub fn send<B: RequestBody>(&mut self, body: &B, payload: &[&[u8]]) -> Result<u32, ClientError> {
        self.send_versioned(protocol::API_VERSION, body, payload)
    }

    /// [`Connection::send`] at a given version of the API.
    pub fn send_versioned<B: RequestBody>(&mut self, version: u16, body: &B, payload: &[&[u8]]) -> Result<u32, ClientError> {
        let corr = self.next;
        self.next = self.next.wrapping_add(1);
        let message = protocol::encode_request(&mut self.fbb, version, corr, Some(&self.client_id), body);
        let payload_len: usize = payload.iter().map(|p| p.len()).sum();
        let head = protocol::frame_head(message, payload_len);
        self.stream.write_all(&head)?;
        for p in payload {
            self.stream.write_all(p)?;
        }
        Ok(corr)
    }

    /// Reads the next response frame.
    pub fn recv(&mut self) -> Result<Reply, ClientError> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(ClientError::Closed),
            Err(e) => return Err(e.into()),
        }
        let len = protocol::frame_len(len, self.max_frame_bytes)?;
        // Read into spare capacity: a fetch's megabytes are not zeroed first.
        let mut body = Vec::with_capacity(len);
        (&mut self.stream).take(len as u64).read_to_end(&mut body)?;
        if body.len() < len {
            return Err(ClientError::Closed);
        }
        let mlen = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
        if mlen > len - 4 {
            return Err(ProtocolError::BadMessageLength { message: mlen, frame: len }.into());
        }
        let body = Bytes::from(body);
        let message = body.slice(4..4 + mlen);
        protocol::parse_response(&message)?;
        Ok(Reply { message, payload: body.slice(4 + mlen..) })
    }

    /// Sends a request and waits for its response's body (no other
    /// request may be in flight on this connection).
    pub fn call<B: RequestBody, R: DecodeResponse>(&mut self, body: &B) -> Result<R, ClientError> {
        let corr = self.send(body, &[])?;
        let r = self.recv()?;
        if r.correlation_id()? != corr {
            return Err(ProtocolError::Invalid(format!("expected the response to {corr}")).into());
        }
        r.body()
    }

    /// Creates a topic with one replica and default settings; `Ok(false)`
    /// if it already existed.
    pub fn create_topic(&mut self, name: &str, partitions: u32) -> Result<bool, ClientError> {
        self.create_topic_with(name, partitions, 1, &[])
    }

    /// A topic as this broker describes it; `None` if it does not exist.
    pub fn describe(&mut self, topic: &str) -> Result<Option<TopicMeta>, ClientError> {
        let r: describe_topic::Response = self.call(&describe_topic::Request { name: topic.to_string() })?;
        let t = r.topic.ok_or(ProtocolError::MissingBody)?;
        Ok((t.error == ErrorCode::None).then_some(t))
    }

    /// What each partition's leader says of it: its replicas' lags behind
    /// it (messages, in replica order, -1 unknown; empty for one replica)
    /// and its offsets and size, asked of each leading broker.
    pub fn leader_views(&mut self, topic: &str) -> Result<BTreeMap<u32, LeaderView>, ClientError> {
        let (brokers, topics) = self.metadata(Some(&[topic]))?;
        let mut out = BTreeMap::new();
        let Some(t) = topics.into_iter().find(|t| t.name == topic && t.error == ErrorCode::None) else { return Ok(out) };
        let mut leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader).collect();
        leaders.sort_unstable();
        leaders.dedup();
        for b in brokers.iter().filter(|b| leaders.contains(&b.node_id) && !b.fenced) {
            let Ok(mut c) = Connection::connect_with(&format!("{}:{}", b.host, b.port), &self.security) else { continue };
            let Ok(Some(d)) = c.describe(topic) else { continue };
            for p in d.partitions.into_iter().filter(|p| p.leader == b.node_id && (!p.lags.is_empty() || p.figures.is_some())) {
                out.insert(p.partition, LeaderView { lags: p.lags, figures: p.figures });
            }
        }
        Ok(out)
    }

    /// The number of partitions of a topic, if it exists.
    pub fn partitions(&mut self, topic: &str) -> Result<Option<u32>, ClientError> {
        Ok(self.describe(topic)?.map(|t| t.partitions.len() as u32))
    }

    /// Sends batches to partitions of one topic; `parts` are
    /// `(partition, whole batches)`. With acks 0 no response comes back.
    pub fn send_produce(&mut self, topic: &str, parts: &[(u32, &[u8])], acks: Acks) -> Result<u32, ClientError> {
        let partitions = parts.iter().map(|&(partition, records)| produce::Partition { partition, records }).collect();
        let req = produce::Request::one_topic(topic, acks, produce::DEFAULT_TIMEOUT_MS, partitions);
        let payload: Vec<&[u8]> = parts.iter().map(|p| p.1).collect();
        self.send(&req, &payload)
    }

    /// Sends consecutive batches to one partition in one request, without
    /// joining them first (they follow each other in the frame).
    pub fn send_produce_batches(&mut self, topic: &str, partition: u32, batches: &[&[u8]], acks: Acks) -> Result<u32, ClientError> {
        let req = produce::Request::one_topic(topic, acks, produce::DEFAULT_TIMEOUT_MS, vec![produce::Partition { partition, records: batches.to_vec() }]);
        self.send(&req, batches)
    }

    /// Asks for whole batches from `(partition, offset)` of one topic.
    pub fn send_fetch(
        &mut self,
        topic: &str,
        parts: &[(u32, i64)],
        max_bytes_per_partition: u32,
        max_wait_ms: u32,
        min_bytes: u32,
    ) -> Result<u32, ClientError> {
        let partitions = parts.iter().map(|&(partition, offset)| fetch::Partition { partition, offset, max_bytes: max_bytes_per_partition }).collect();
        self.send(&fetch::Request::one_topic(topic, partitions, max_wait_ms, min_bytes, 64 << 20), &[])
    }
}

impl Connection {
    /// Asks for offsets of `(partition, timestamp)` pairs: -2 earliest,
    /// -1 latest, else the first offset at or after a time in ms.
    pub fn list_offsets(&mut self, topic: &str, parts: &[(u32, i64)]) -> Result<Vec<(u32, ErrorCode, i64)>, ClientError> {
        let partitions = parts.iter().map(|&(partition, timestamp)| list_offsets::Partition { partition, timestamp }).collect();
        let r: list_offsets::Response = self.call(&list_offsets::Request { topics: vec![list_offsets::Topic { name: topic.to_string(), partitions }] })?;
        let t = r.topics.into_iter().next().ok_or(ProtocolError::MissingBody)?;
        Ok(t.partitions.into_iter().map(|p| (p.partition, p.error, p.offset)).collect())
    }
}

impl Connection {
    /// Brokers and topics (all topics when `topics` is `None`).
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> Result<(Vec<BrokerMeta>, Vec<TopicMeta>), ClientError> {
        let c = self.cluster_info(topics)?;
        Ok((c.brokers, c.topics))
    }

    /// An idempotent producer's id and epoch.
    pub fn init_producer_id(&mut self) -> Result<(i64, i16), ClientError> {
        let r: init_producer_id::Response = self.call(&init_producer_id::Request)?;
        if r.error != ErrorCode::None {
            return Err(ClientError::Broker { code: r.error, message: r.error_message.unwrap_or_default() });
        }
        Ok((r.producer_id, r.producer_epoch))
    }

    /// The address (`host:port`) of the broker that coordinates `group`,
    /// or the broker's reason there is none yet.
    pub fn find_coordinator(&mut self, group: &str) -> Result<Result<String, (ErrorCode, String)>, ClientError> {
        let f: find_coordinator::Response = self.call(&find_coordinator::Request { group: group.to_string() })?;
        if f.error != ErrorCode::None {
            return Ok(Err((f.error, f.error_message.unwrap_or_default())));
        }
        Ok(Ok(format!("{}:{}", f.host, f.port)))
    }

    /// The address of each partition's leader, by partition; `None` if the
    /// topic does not exist, an error if a partition has no live leader.
    pub fn leaders(&mut self, topic: &str) -> Result<Option<Vec<String>>, ClientError> {
        let (brokers, topics) = self.metadata(Some(&[topic]))?;
        if let Some(t) = topics.iter().find(|t| t.name == topic && t.error == ErrorCode::TopicAuthorizationFailed) {
            return Err(ClientError::Broker { code: t.error, message: format!("not authorized to describe topic '{}'", t.name) });
        }
        let Some(t) = topics.into_iter().find(|t| t.name == topic && t.error == ErrorCode::None) else { return Ok(None) };
        t.partitions
            .iter()
            .map(|p| {
                brokers.iter().find(|b| b.node_id == p.leader && !b.fenced).map(|b| format!("{}:{}", b.host, b.port)).ok_or_else(|| ClientError::Broker {
                    code: ErrorCode::NotLeader,
                    message: format!("partition {} of '{topic}' has no live leader", p.partition),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// The quorum, the brokers and the topics (all when `topics` is `None`).
    pub fn cluster_info(&mut self, topics: Option<&[&str]>) -> Result<ClusterInfo, ClientError> {
        self.call(&metadata::Request { topics: topics.map(|ts| ts.iter().map(|t| t.to_string()).collect()) })
    }

    /// Creates a topic with settings; `Ok(false)` if it already existed.
    pub fn create_topic_with(&mut self, name: &str, partitions: u32, replication_factor: u16, configs: &[(String, String)]) -> Result<bool, ClientError> {
        let topic = create_topics::NewTopic { name: name.to_string(), partitions, replication_factor, configs: configs.to_vec() };
        let r: create_topics::Response = self.call(&create_topics::Request { topics: vec![topic], timeout_ms: 30_000 })?;
        match r.results.into_iter().next() {
            Some(t) if t.error == ErrorCode::None => Ok(true),
            Some(t) if t.error == ErrorCode::TopicAlreadyExists => Ok(false),
            Some(t) => Err(ClientError::Broker { code: t.error, message: t.error_message.unwrap_or_default() }),
            None => Err(ProtocolError::MissingBody.into()),
        }
    }

    /// Deletes a topic.
    pub fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        let r: delete_topics::Response = self.call(&delete_topics::Request { names: vec![name.to_string()], timeout_ms: 30_000 })?;
        let t = r.results.into_iter().next().ok_or(ProtocolError::MissingBody)?;
        if t.error != ErrorCode::None {
            return Err(ClientError::Broker { code: t.error, message: t.error_message.unwrap_or_default() });
        }
        Ok(())
    }

    /// The names of every topic.
    pub fn list_topics(&mut self) -> Result<Vec<String>, ClientError> {
        let r: list_topics::Response = self.call(&list_topics::Request)?;
        Ok(r.names)
    }
}

/// A partition as its leader sees it ([`Connection::leader_views`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderView {
    /// Each replica's lag behind the leader (replica order, -1 unknown).
    pub lags: Vec<i64>,
    /// Its log start, high watermark, log end and bytes on disk.
    pub figures: Option<crate::protocol::metadata::PartitionFigures>,
}

impl Connection {
    /// Commits `group`'s next offsets for partitions of one topic.
    /// `member` is `(member id, generation)` for a member of the group.
    pub fn commit_offsets(
        &mut self,
        group: &str,
        member: Option<(&str, i32)>,
        topic: &str,
        offsets: &[(u32, i64)],
    ) -> Result<Vec<(u32, ErrorCode, i64)>, ClientError> {
        let req = offset_commit::Request {
            group: group.to_string(),
            topics: vec![offset_commit::Topic { name: topic.to_string(), partitions: offsets.to_vec() }],
            member: member.map(|(m, g)| (m.to_string(), g)),
        };
        let r: offset_commit::Response = self.call(&req)?;
        Ok(r.partitions().map(|p| (p.partition, p.error, p.offset)).collect())
    }

    /// `group`'s committed offsets for partitions of one topic (-1: none).
    pub fn fetch_offsets(&mut self, group: &str, topic: &str, partitions: &[u32]) -> Result<Vec<(u32, ErrorCode, i64)>, ClientError> {
        let req =
            offset_fetch::Request { group: group.to_string(), topics: vec![offset_fetch::Topic { name: topic.to_string(), partitions: partitions.to_vec() }] };
        let r: offset_fetch::Response = self.call(&req)?;
        Ok(r.partitions().map(|p| (p.partition, p.error, p.offset)).collect())
    }
}

/// A member's view of its group after a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// `None`, or why the heartbeat was refused.
    pub error: ErrorCode,
    /// A sentence about the error.
    pub message: String,
    /// This member's id in the group.
    pub member_id: String,
    /// The generation the assignment belongs to.
    pub generation: i32,
    /// How often to heartbeat.
    pub heartbeat_interval_ms: u32,
    /// The `(topic, partition)` pairs this member owns.
    pub assignment: Vec<(String, u32)>,
}

impl Connection {
    /// Joins (`member_id` `None`), renews, or (`leave`) leaves a group.
    pub fn group_heartbeat(
        &mut self,
        group: &str,
        member_id: Option<&str>,
        topics: &[&str],
        session_timeout_ms: u32,
        leave: bool,
    ) -> Result<GroupView, ClientError> {
        let req = group_heartbeat::Request {
            group: group.to_string(),
            member_id: member_id.map(str::to_string),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            assignor: group_heartbeat::Assignor::Range,
            session_timeout_ms,
            leave_group: leave,
        };
        let h: group_heartbeat::Response = self.call(&req)?;
        Ok(GroupView {
            error: h.error,
            message: h.error_message.unwrap_or_default(),
            member_id: h.member_id,
            generation: h.generation,
            heartbeat_interval_ms: h.heartbeat_interval_ms,
            assignment: h.assignment.into_iter().flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p))).collect(),
        })
    }
}
