//! Metadata: the quorum's voters and controller, the brokers, and each
//! partition's replicas and leader. Its topic and partition types are also
//! DescribeTopic's.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{configs_in, configs_out, string, strings_in, strings_out};
use super::envelope::api;
use super::{fb, ErrorCode};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// `None`: every topic.
    pub topics: Option<Vec<String>>,
}

/// A partition as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// The partition index.
    pub partition: u32,
    /// `None`, or why the partition could not be described.
    pub error: ErrorCode,
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
    /// order (-1: unknown); only from a describe through the leader,
    /// empty otherwise.
    pub lags: Vec<i64>,
    /// The leader's log start, high watermark, log end and bytes on disk;
    /// only from a describe through the leader, `None` otherwise.
    pub figures: Option<PartitionFigures>,
}

/// A partition's offsets and size as its leader holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionFigures {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    pub log_end_offset: i64,
    pub size_bytes: i64,
}

/// A topic as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// The topic name.
    pub name: String,
    /// `None`, or why the topic could not be described.
    pub error: ErrorCode,
    /// Copies of each partition.
    pub replication_factor: u16,
    /// Its partitions.
    pub partitions: Vec<Partition>,
    /// Its settings, as given at creation.
    pub configs: Vec<(String, String)>,
}

/// A broker as the metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
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
pub struct Voter {
    /// The voter's (broker's) node id.
    pub node_id: i32,
    /// Its quorum listener's host.
    pub host: String,
    /// Its quorum listener's port.
    pub port: u16,
}

/// The whole cluster as one broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The cluster's name.
    pub cluster_id: String,
    /// The quorum's leader; -1 while there is none.
    pub controller: i32,
    /// The metadata quorum.
    pub voters: Vec<Voter>,
    /// Every registered broker.
    pub brokers: Vec<Broker>,
    /// The topics asked for.
    pub topics: Vec<Topic>,
}

impl Topic {
    /// A topic that is not there.
    pub fn unknown(name: &str) -> Self {
        Self::refused(name, ErrorCode::UnknownTopicOrPartition)
    }

    /// A topic answered with an error and nothing else.
    pub fn refused(name: &str, error: ErrorCode) -> Self {
        Topic { name: name.to_string(), error, replication_factor: 0, partitions: Vec::new(), configs: Vec::new() }
    }

    pub fn decode(t: fb::TopicInfo<'_>) -> Self {
        Topic {
            name: string(t.name()),
            error: t.error(),
            replication_factor: t.replication_factor(),
            partitions: t
                .partitions()
                .iter()
                .flatten()
                .map(|p| Partition {
                    partition: p.partition(),
                    error: p.error(),
                    leader: p.leader(),
                    shard: p.shard(),
                    replicas: p.replicas().map(|r| r.iter().collect()).unwrap_or_default(),
                    leader_epoch: p.leader_epoch(),
                    isr: p.isr().map(|r| r.iter().collect()).unwrap_or_default(),
                    lags: p.lags().map(|r| r.iter().collect()).unwrap_or_default(),
                    figures: (p.log_end_offset() >= 0).then(|| PartitionFigures {
                        log_start_offset: p.log_start_offset(),
                        high_watermark: p.high_watermark(),
                        log_end_offset: p.log_end_offset(),
                        size_bytes: p.size_bytes(),
                    }),
                })
                .collect(),
            configs: configs_in(t.configs()),
        }
    }

    /// A topic that is not there is written as its name and error alone.
    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::TopicInfo<'a>> {
        let name = fbb.create_string(&self.name);
        if self.error != ErrorCode::None {
            return fb::TopicInfo::create(fbb, &fb::TopicInfoArgs { name: Some(name), error: self.error, ..Default::default() });
        }
        let parts: Vec<_> = self
            .partitions
            .iter()
            .map(|p| {
                let replicas = fbb.create_vector(&p.replicas);
                let isr = fbb.create_vector(&p.isr);
                let lags = (!p.lags.is_empty()).then(|| fbb.create_vector(&p.lags));
                fb::PartitionInfo::create(
                    fbb,
                    &fb::PartitionInfoArgs {
                        partition: p.partition,
                        error: p.error,
                        leader: p.leader,
                        shard: p.shard,
                        replicas: Some(replicas),
                        leader_epoch: p.leader_epoch,
                        isr: Some(isr),
                        lags,
                        log_start_offset: p.figures.map_or(-1, |f| f.log_start_offset),
                        high_watermark: p.figures.map_or(-1, |f| f.high_watermark),
                        log_end_offset: p.figures.map_or(-1, |f| f.log_end_offset),
                        size_bytes: p.figures.map_or(-1, |f| f.size_bytes),
                    },
                )
            })
            .collect();
        let parts = fbb.create_vector(&parts);
        let configs = configs_out(fbb, &self.configs);
        fb::TopicInfo::create(
            fbb,
            &fb::TopicInfoArgs {
                name: Some(name),
                error: self.error,
                replication_factor: self.replication_factor,
                partitions: Some(parts),
                configs: Some(configs),
            },
        )
    }
}

impl Request {
    pub fn decode(r: fb::MetadataRequest<'_>) -> Self {
        Request { topics: r.topics().map(|t| strings_in(Some(t))) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::MetadataRequest<'a>> {
        let topics = self.topics.as_ref().map(|t| strings_out(fbb, t));
        fb::MetadataRequest::create(fbb, &fb::MetadataRequestArgs { topics })
    }
}

impl Response {
    pub fn decode(r: fb::MetadataResponse<'_>) -> Self {
        Response {
            cluster_id: string(r.cluster_id()),
            controller: r.controller_id(),
            brokers: r
                .brokers()
                .iter()
                .flatten()
                .map(|b| Broker { node_id: b.node_id(), host: string(b.host()), port: b.port(), shards: b.shards(), fenced: b.fenced() })
                .collect(),
            topics: r.topics().iter().flatten().map(Topic::decode).collect(),
            voters: r.voters().iter().flatten().map(|v| Voter { node_id: v.node_id(), host: string(v.host()), port: v.port() }).collect(),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::MetadataResponse<'a>> {
        let topics: Vec<_> = self.topics.iter().map(|t| t.encode(fbb)).collect();
        let topics = fbb.create_vector(&topics);
        let brokers: Vec<_> = self
            .brokers
            .iter()
            .map(|b| {
                let host = fbb.create_string(&b.host);
                fb::BrokerInfo::create(fbb, &fb::BrokerInfoArgs { node_id: b.node_id, host: Some(host), port: b.port, shards: b.shards, fenced: b.fenced })
            })
            .collect();
        let brokers = fbb.create_vector(&brokers);
        let voters: Vec<_> = self
            .voters
            .iter()
            .map(|v| {
                let host = fbb.create_string(&v.host);
                fb::VoterInfo::create(fbb, &fb::VoterInfoArgs { node_id: v.node_id, host: Some(host), port: v.port })
            })
            .collect();
        let voters = fbb.create_vector(&voters);
        let cluster = fbb.create_string(&self.cluster_id);
        fb::MetadataResponse::create(
            fbb,
            &fb::MetadataResponseArgs {
                cluster_id: Some(cluster),
                controller_id: self.controller,
                brokers: Some(brokers),
                topics: Some(topics),
                voters: Some(voters),
            },
        )
    }
}

api!(request Request, MetadataRequest);
api!(response Response, MetadataResponse, body_as_metadata_response);
