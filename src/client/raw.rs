//! A blocking, pipelining connection to one broker over raw frames.
//!
//! [`Connection::send_*`] writes a request and returns its correlation id;
//! [`Connection::recv`] reads the next response, whichever it is. Many
//! requests may be in flight; responses may come back in any order.
//!
//! ```no_run
//! use shardlog::client::raw::Connection;
//! use shardlog::record::BatchBuilder;
//!
//! let mut c = Connection::connect("127.0.0.1:9092").unwrap();
//! c.create_topic("events", 2).unwrap();
//! let mut b = BatchBuilder::new(128);
//! b.push(0, None, Some(b"hello"), &[]);
//! let batch = b.finish();
//! let corr = c.send_produce("events", &[(0, &batch[..])], -1).unwrap();
//! let reply = c.recv().unwrap();
//! assert_eq!(reply.correlation_id().unwrap(), corr);
//! ```

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

use crate::protocol::{self, fb, ErrorCode, ProtocolError};

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
        protocol::parse_response(&self.message).expect("verified in recv")
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
}

/// A connection to one broker.
pub struct Connection {
    stream: TcpStream,
    next: u32,
    fbb: FlatBufferBuilder<'static>,
    client_id: String,
    max_frame_bytes: usize,
}

impl Connection {
    /// Connects to one broker.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<Self, ClientError> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, next: 1, fbb: FlatBufferBuilder::with_capacity(1024), client_id: "shardlog".into(), max_frame_bytes: 256 << 20 })
    }

    /// Connects to the first of `bootstrap` (`host:port` strings) that answers.
    pub fn connect_any<S: AsRef<str>>(bootstrap: &[S]) -> Result<Self, ClientError> {
        let mut last = None;
        for addr in bootstrap {
            match Connection::connect(addr.as_ref()) {
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
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
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
        })
    }

    fn send(
        &mut self,
        payload: &[&[u8]],
        build: impl FnOnce(&mut FlatBufferBuilder<'static>) -> (fb::RequestBody, flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>),
    ) -> Result<u32, ClientError> {
        let corr = self.next;
        self.next = self.next.wrapping_add(1);
        self.fbb.reset();
        let (kind, body) = build(&mut self.fbb);
        let cid = self.fbb.create_string(&self.client_id);
        let r = fb::Request::create(
            &mut self.fbb,
            &fb::RequestArgs { api_version: protocol::API_VERSION, correlation_id: corr, client_id: Some(cid), body_type: kind, body: Some(body) },
        );
        self.fbb.finish(r, None);
        let payload_len: usize = payload.iter().map(|p| p.len()).sum();
        let head = protocol::frame_head(self.fbb.finished_data(), payload_len);
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

    /// Sends a request and waits for its response (no other request may be
    /// in flight on this connection).
    fn call(
        &mut self,
        payload: &[&[u8]],
        build: impl FnOnce(&mut FlatBufferBuilder<'static>) -> (fb::RequestBody, flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset>),
    ) -> Result<Reply, ClientError> {
        let corr = self.send(payload, build)?;
        let r = self.recv()?;
        if r.correlation_id()? != corr {
            return Err(ProtocolError::Invalid(format!("expected the response to {corr}")).into());
        }
        r.ok()?;
        Ok(r)
    }

    /// Creates a topic with one replica and default settings; `Ok(false)`
    /// if it already existed.
    pub fn create_topic(&mut self, name: &str, partitions: u32) -> Result<bool, ClientError> {
        self.create_topic_with(name, partitions, 1, &[])
    }

    /// A topic as this broker describes it; `None` if it does not exist.
    pub fn describe(&mut self, topic: &str) -> Result<Option<TopicMeta>, ClientError> {
        let r = self.call(&[], |b| {
            let n = b.create_string(topic);
            let body = fb::DescribeTopicRequest::create(b, &fb::DescribeTopicRequestArgs { name: Some(n) });
            (fb::RequestBody::DescribeTopicRequest, body.as_union_value())
        })?;
        let t = r.response().body_as_describe_topic_response().and_then(|d| d.topic()).ok_or(ProtocolError::MissingBody)?;
        Ok((t.error() == ErrorCode::None).then(|| topic_meta(t)))
    }

    /// Each partition's replicas' lags behind its leader (messages, in
    /// replica order, -1 unknown), asked of each leading broker.
    pub fn replica_lags(&mut self, topic: &str) -> Result<BTreeMap<u32, Vec<i64>>, ClientError> {
        let (brokers, topics) = self.metadata(Some(&[topic]))?;
        let mut out = BTreeMap::new();
        let Some(t) = topics.into_iter().find(|t| t.name == topic && t.error == ErrorCode::None) else { return Ok(out) };
        let mut leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader).collect();
        leaders.sort_unstable();
        leaders.dedup();
        for b in brokers.iter().filter(|b| leaders.contains(&b.node_id) && !b.fenced) {
            let Ok(mut c) = Connection::connect(format!("{}:{}", b.host, b.port).as_str()) else { continue };
            let Ok(Some(d)) = c.describe(topic) else { continue };
            for p in d.partitions.into_iter().filter(|p| p.leader == b.node_id && !p.lags.is_empty()) {
                out.insert(p.partition, p.lags);
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
    pub fn send_produce(&mut self, topic: &str, parts: &[(u32, &[u8])], acks: i8) -> Result<u32, ClientError> {
        let payload: Vec<&[u8]> = parts.iter().map(|p| p.1).collect();
        let sizes: Vec<(u32, u32)> = parts.iter().map(|&(p, d)| (p, d.len() as u32)).collect();
        self.send_produce_payload(topic, &sizes, &payload, acks)
    }

    /// Sends consecutive batches to one partition in one request, without
    /// joining them first (they follow each other in the frame).
    pub fn send_produce_batches(&mut self, topic: &str, partition: u32, batches: &[&[u8]], acks: i8) -> Result<u32, ClientError> {
        let len: usize = batches.iter().map(|b| b.len()).sum();
        self.send_produce_payload(topic, &[(partition, len as u32)], batches, acks)
    }

    /// `sizes` are `(partition, bytes of its batches)`, in payload order.
    fn send_produce_payload(&mut self, topic: &str, sizes: &[(u32, u32)], payload: &[&[u8]], acks: i8) -> Result<u32, ClientError> {
        self.send(payload, |b| {
            let n = b.create_string(topic);
            let ps: Vec<_> = sizes
                .iter()
                .map(|&(partition, records_bytes)| fb::ProducePartition::create(b, &fb::ProducePartitionArgs { partition, records_bytes }))
                .collect();
            let ps = b.create_vector(&ps);
            let t = fb::ProduceTopic::create(b, &fb::ProduceTopicArgs { name: Some(n), partitions: Some(ps) });
            let ts = b.create_vector(&[t]);
            let body = fb::ProduceRequest::create(b, &fb::ProduceRequestArgs { acks, timeout_ms: 30_000, topics: Some(ts) });
            (fb::RequestBody::ProduceRequest, body.as_union_value())
        })
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
        self.send(&[], |b| {
            let n = b.create_string(topic);
            let ps: Vec<_> = parts
                .iter()
                .map(|&(partition, offset)| fb::FetchPartition::create(b, &fb::FetchPartitionArgs { partition, offset, max_bytes: max_bytes_per_partition }))
                .collect();
            let ps = b.create_vector(&ps);
            let t = fb::FetchTopic::create(b, &fb::FetchTopicArgs { name: Some(n), partitions: Some(ps) });
            let ts = b.create_vector(&[t]);
            let body = fb::FetchRequest::create(b, &fb::FetchRequestArgs { max_wait_ms, min_bytes, max_bytes: 64 << 20, topics: Some(ts) });
            (fb::RequestBody::FetchRequest, body.as_union_value())
        })
    }
}

impl Connection {
    /// Asks for offsets of `(partition, timestamp)` pairs: -2 earliest,
    /// -1 latest, else the first offset at or after a time in ms.
    pub fn list_offsets(&mut self, topic: &str, parts: &[(u32, i64)]) -> Result<Vec<(u32, ErrorCode, i64)>, ClientError> {
        let r = self.call(&[], |b| {
            let n = b.create_string(topic);
            let ps: Vec<_> = parts
                .iter()
                .map(|&(partition, timestamp)| fb::ListOffsetsPartition::create(b, &fb::ListOffsetsPartitionArgs { partition, timestamp }))
                .collect();
            let ps = b.create_vector(&ps);
            let t = fb::ListOffsetsTopic::create(b, &fb::ListOffsetsTopicArgs { name: Some(n), partitions: Some(ps) });
            let ts = b.create_vector(&[t]);
            let body = fb::ListOffsetsRequest::create(b, &fb::ListOffsetsRequestArgs { topics: Some(ts) });
            (fb::RequestBody::ListOffsetsRequest, body.as_union_value())
        })?;
        let resp = r.response();
        let t = resp.body_as_list_offsets_response().and_then(|l| l.topics()).map(|t| t.get(0)).ok_or(ProtocolError::MissingBody)?;
        Ok(t.partitions().iter().flatten().map(|p| (p.partition(), p.error(), p.offset())).collect())
    }
}

/// A partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    /// The partition index.
    pub partition: u32,
    /// The node id of its leader.
    pub leader: i32,
    /// The shard of the leader that owns it.
    pub shard: u16,
    /// The brokers holding a copy, the preferred leader first.
    pub replicas: Vec<i32>,
    /// Bumped whenever the leader changes.
    pub leader_epoch: u32,
    /// The replicas in sync with the leader; fewer than `replicas` means
    /// under-replicated.
    pub isr: Vec<i32>,
    /// Each replica's lag behind the leader in messages, in `replicas`'
    /// order (-1: unknown); only from a describe through the leader
    /// ([`Connection::replica_lags`]), empty otherwise.
    pub lags: Vec<i64>,
}

/// A topic as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMeta {
    /// The topic name.
    pub name: String,
    /// `None`, or why the topic could not be described.
    pub error: ErrorCode,
    /// Copies of each partition.
    pub replication_factor: u16,
    /// Its partitions.
    pub partitions: Vec<PartitionMeta>,
    /// Its settings, as given at creation.
    pub configs: Vec<(String, String)>,
}

/// A broker as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerMeta {
    /// The broker's node id.
    pub node_id: i32,
    /// Where clients reach it.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// Its shards (executors).
    pub shards: u16,
    /// It missed heartbeats and leads nothing until it registers again.
    pub fenced: bool,
}

/// A voter of the metadata quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterMeta {
    /// The voter's (broker's) node id.
    pub node_id: i32,
    /// Its quorum listener's host.
    pub host: String,
    /// Its quorum listener's port.
    pub port: u16,
}

/// The whole cluster as one broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The quorum's leader; -1 while there is none.
    pub controller: i32,
    /// The metadata quorum.
    pub voters: Vec<VoterMeta>,
    /// Every registered broker.
    pub brokers: Vec<BrokerMeta>,
    /// The topics asked for.
    pub topics: Vec<TopicMeta>,
}

fn topic_meta(t: fb::TopicInfo<'_>) -> TopicMeta {
    TopicMeta {
        name: t.name().unwrap_or_default().to_string(),
        error: t.error(),
        replication_factor: t.replication_factor(),
        partitions: t
            .partitions()
            .iter()
            .flatten()
            .map(|p| PartitionMeta {
                partition: p.partition(),
                leader: p.leader(),
                shard: p.shard(),
                replicas: p.replicas().map(|r| r.iter().collect()).unwrap_or_default(),
                leader_epoch: p.leader_epoch(),
                isr: p.isr().map(|r| r.iter().collect()).unwrap_or_default(),
                lags: p.lags().map(|r| r.iter().collect()).unwrap_or_default(),
            })
            .collect(),
        configs: t.configs().iter().flatten().map(|c| (c.key().to_string(), c.value().to_string())).collect(),
    }
}

impl Connection {
    /// Brokers and topics (all topics when `topics` is `None`).
    pub fn metadata(&mut self, topics: Option<&[&str]>) -> Result<(Vec<BrokerMeta>, Vec<TopicMeta>), ClientError> {
        let c = self.cluster_info(topics)?;
        Ok((c.brokers, c.topics))
    }

    /// The address (`host:port`) of the broker that coordinates `group`,
    /// or the broker's reason there is none yet.
    pub fn find_coordinator(&mut self, group: &str) -> Result<Result<String, (ErrorCode, String)>, ClientError> {
        let r = self.call(&[], |b| {
            let g = b.create_string(group);
            let body = fb::FindCoordinatorRequest::create(b, &fb::FindCoordinatorRequestArgs { group: Some(g) });
            (fb::RequestBody::FindCoordinatorRequest, body.as_union_value())
        })?;
        let resp = r.response();
        let f = resp.body_as_find_coordinator_response().ok_or(ProtocolError::MissingBody)?;
        if f.error() != ErrorCode::None {
            return Ok(Err((f.error(), f.error_message().unwrap_or_default().to_string())));
        }
        Ok(Ok(format!("{}:{}", f.host().unwrap_or_default(), f.port())))
    }

    /// The address of each partition's leader, by partition; `None` if the
    /// topic does not exist, an error if a partition has no live leader.
    pub fn leaders(&mut self, topic: &str) -> Result<Option<Vec<String>>, ClientError> {
        let (brokers, topics) = self.metadata(Some(&[topic]))?;
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
        let r = self.call(&[], |b| {
            let names = topics.map(|ts| {
                let v: Vec<_> = ts.iter().map(|t| b.create_string(t)).collect();
                b.create_vector(&v)
            });
            let body = fb::MetadataRequest::create(b, &fb::MetadataRequestArgs { topics: names });
            (fb::RequestBody::MetadataRequest, body.as_union_value())
        })?;
        let resp = r.response();
        let md = resp.body_as_metadata_response().ok_or(ProtocolError::MissingBody)?;
        let brokers = md
            .brokers()
            .iter()
            .flatten()
            .map(|b| BrokerMeta {
                node_id: b.node_id(),
                host: b.host().unwrap_or_default().to_string(),
                port: b.port(),
                shards: b.shards(),
                fenced: b.fenced(),
            })
            .collect();
        let voters =
            md.voters().iter().flatten().map(|v| VoterMeta { node_id: v.node_id(), host: v.host().unwrap_or_default().to_string(), port: v.port() }).collect();
        Ok(ClusterInfo { controller: md.controller_id(), voters, brokers, topics: md.topics().iter().flatten().map(topic_meta).collect() })
    }

    /// Creates a topic with settings; `Ok(false)` if it already existed.
    pub fn create_topic_with(&mut self, name: &str, partitions: u32, replication_factor: u16, configs: &[(String, String)]) -> Result<bool, ClientError> {
        let r = self.call(&[], |b| {
            let n = b.create_string(name);
            let cs: Vec<_> = configs
                .iter()
                .map(|(k, v)| {
                    let (k, v) = (b.create_string(k), b.create_string(v));
                    fb::ConfigEntry::create(b, &fb::ConfigEntryArgs { key: Some(k), value: Some(v) })
                })
                .collect();
            let cs = b.create_vector(&cs);
            let t = fb::CreatableTopic::create(b, &fb::CreatableTopicArgs { name: Some(n), partitions, replication_factor, configs: Some(cs) });
            let ts = b.create_vector(&[t]);
            let body = fb::CreateTopicsRequest::create(b, &fb::CreateTopicsRequestArgs { topics: Some(ts), timeout_ms: 30_000 });
            (fb::RequestBody::CreateTopicsRequest, body.as_union_value())
        })?;
        let res = r.response().body_as_create_topics_response().and_then(|c| c.results()).map(|rs| rs.get(0));
        match res {
            Some(t) if t.error() == ErrorCode::None => Ok(true),
            Some(t) if t.error() == ErrorCode::TopicAlreadyExists => Ok(false),
            Some(t) => Err(ClientError::Broker { code: t.error(), message: t.error_message().unwrap_or_default().to_string() }),
            None => Err(ProtocolError::MissingBody.into()),
        }
    }

    /// Deletes a topic.
    pub fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        let r = self.call(&[], |b| {
            let n = b.create_string(name);
            let names = b.create_vector(&[n]);
            let body = fb::DeleteTopicsRequest::create(b, &fb::DeleteTopicsRequestArgs { names: Some(names), timeout_ms: 30_000 });
            (fb::RequestBody::DeleteTopicsRequest, body.as_union_value())
        })?;
        let t = r.response().body_as_delete_topics_response().and_then(|d| d.results()).map(|rs| rs.get(0)).ok_or(ProtocolError::MissingBody)?;
        if t.error() != ErrorCode::None {
            return Err(ClientError::Broker { code: t.error(), message: t.error_message().unwrap_or_default().to_string() });
        }
        Ok(())
    }

    /// The names of every topic.
    pub fn list_topics(&mut self) -> Result<Vec<String>, ClientError> {
        let r = self.call(&[], |b| {
            let body = fb::ListTopicsRequest::create(b, &fb::ListTopicsRequestArgs {});
            (fb::RequestBody::ListTopicsRequest, body.as_union_value())
        })?;
        let l = r.response().body_as_list_topics_response().ok_or(ProtocolError::MissingBody)?;
        Ok(l.names().iter().flatten().map(str::to_string).collect())
    }
}

fn offset_results(topics: Option<flatbuffers::Vector<'_, flatbuffers::ForwardsUOffset<fb::OffsetTopicResult<'_>>>>) -> Vec<(u32, ErrorCode, i64)> {
    topics.iter().flatten().flat_map(|t| t.partitions().into_iter().flatten().map(|p| (p.partition(), p.error(), p.offset()))).collect()
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
        let r = self.call(&[], |b| {
            let g = b.create_string(group);
            let member_id = member.map(|(m, _)| b.create_string(m));
            let generation = member.map_or(-1, |(_, g)| g);
            let n = b.create_string(topic);
            let ps: Vec<_> =
                offsets.iter().map(|&(partition, offset)| fb::OffsetCommitPartition::create(b, &fb::OffsetCommitPartitionArgs { partition, offset })).collect();
            let ps = b.create_vector(&ps);
            let t = fb::OffsetCommitTopic::create(b, &fb::OffsetCommitTopicArgs { name: Some(n), partitions: Some(ps) });
            let ts = b.create_vector(&[t]);
            let body = fb::OffsetCommitRequest::create(b, &fb::OffsetCommitRequestArgs { group: Some(g), topics: Some(ts), member_id, generation });
            (fb::RequestBody::OffsetCommitRequest, body.as_union_value())
        })?;
        let resp = r.response();
        Ok(offset_results(resp.body_as_offset_commit_response().ok_or(ProtocolError::MissingBody)?.topics()))
    }

    /// `group`'s committed offsets for partitions of one topic (-1: none).
    pub fn fetch_offsets(&mut self, group: &str, topic: &str, partitions: &[u32]) -> Result<Vec<(u32, ErrorCode, i64)>, ClientError> {
        let r = self.call(&[], |b| {
            let g = b.create_string(group);
            let n = b.create_string(topic);
            let ps = b.create_vector(partitions);
            let t = fb::OffsetFetchTopic::create(b, &fb::OffsetFetchTopicArgs { name: Some(n), partitions: Some(ps) });
            let ts = b.create_vector(&[t]);
            let body = fb::OffsetFetchRequest::create(b, &fb::OffsetFetchRequestArgs { group: Some(g), topics: Some(ts) });
            (fb::RequestBody::OffsetFetchRequest, body.as_union_value())
        })?;
        let resp = r.response();
        Ok(offset_results(resp.body_as_offset_fetch_response().ok_or(ProtocolError::MissingBody)?.topics()))
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
        let r = self.call(&[], |b| {
            let g = b.create_string(group);
            let m = member_id.map(|m| b.create_string(m));
            let ts: Vec<_> = topics.iter().map(|t| b.create_string(t)).collect();
            let ts = b.create_vector(&ts);
            let body = fb::GroupHeartbeatRequest::create(
                b,
                &fb::GroupHeartbeatRequestArgs {
                    group: Some(g),
                    member_id: m,
                    topics: Some(ts),
                    assignor: fb::Assignor::Range,
                    session_timeout_ms,
                    leave_group: leave,
                },
            );
            (fb::RequestBody::GroupHeartbeatRequest, body.as_union_value())
        })?;
        let resp = r.response();
        let h = resp.body_as_group_heartbeat_response().ok_or(ProtocolError::MissingBody)?;
        Ok(GroupView {
            error: h.error(),
            message: h.error_message().unwrap_or_default().to_string(),
            member_id: h.member_id().unwrap_or_default().to_string(),
            generation: h.generation(),
            heartbeat_interval_ms: h.heartbeat_interval_ms(),
            assignment: h
                .assignment()
                .iter()
                .flatten()
                .flat_map(|t| t.partitions().into_iter().flatten().map(move |p| (t.name().unwrap_or_default().to_string(), p)))
                .collect(),
        })
    }
}
