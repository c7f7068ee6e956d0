//! Kafka responses: the broker's typed answers in Kafka's encoding, with
//! `kafka-protocol` (the data is the broker's own, so its encoders are
//! safe to use), except Fetch, whose head is written here so the stored
//! batches follow it as they are.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult};
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic};
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, CreateTopicsResponse, DeleteTopicsResponse, DescribeConfigsResponse, DescribeGroupsResponse,
    FindCoordinatorResponse, GroupId, HeartbeatResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse, ListGroupsResponse,
    ListOffsetsResponse, MetadataResponse, OffsetCommitResponse, OffsetFetchResponse, OffsetForLeaderEpochResponse, ProduceResponse, ProducerId,
    ResponseHeader, SaslAuthenticateResponse, SaslHandshakeResponse, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::error_code;
use crate::group::{classic, is_internal, Committed};
use crate::protocol::create_topics::TopicResult;
use crate::protocol::kafka::{self as wire, key, APIS};
use crate::protocol::{fetch, find_coordinator, list_offsets, metadata, produce, ErrorCode, Topic};
use crate::server::response::Outgoing;
use crate::shard::EpochEnd;
use crate::storage::Chunk;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A whole response frame: size, header, body.
fn frame<M: Encodable>(api: ApiKey, corr: i32, version: i16, body: &M) -> Outgoing {
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    let mut header = ResponseHeader::default();
    header.correlation_id = corr;
    // Encoding the broker's own values cannot fail but for a version
    // outside the message's, which the version table rules out.
    header.encode(&mut out, api.response_header_version(version)).expect("a valid response header");
    body.encode(&mut out, version).expect("a response at a served version");
    let len = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Outgoing { head: out.freeze(), payload: Vec::new() }
}

/// ApiVersions, at the version asked; one this broker does not serve is
/// answered at v0 with UNSUPPORTED_VERSION and the versions it does, as
/// KIP-511 has clients expect.
pub fn api_versions(corr: i32, version: i16) -> Outgoing {
    let mut r = ApiVersionsResponse::default();
    r.api_keys = APIS
        .iter()
        .map(|&(key, min, max)| {
            let mut v = ApiVersion::default();
            v.api_key = key;
            v.min_version = wire::advertised_min(key, min);
            v.max_version = max;
            v
        })
        .collect();
    let (_, _, max) = APIS.iter().find(|(k, _, _)| *k == key::API_VERSIONS).copied().expect("ApiVersions is served");
    if !(0..=max).contains(&version) {
        r.error_code = error_code(crate::protocol::ErrorCode::UnsupportedVersion);
        return frame(ApiKey::ApiVersions, corr, 0, &r);
    }
    frame(ApiKey::ApiVersions, corr, version, &r)
}

pub fn metadata(corr: i32, version: i16, m: metadata::Response) -> Outgoing {
    let mut r = MetadataResponse::default();
    r.brokers = m
        .brokers
        .iter()
        .filter(|b| !b.fenced)
        .map(|b| {
            let mut k = MetadataResponseBroker::default();
            k.node_id = BrokerId(b.node_id);
            k.host = StrBytes::from_string(b.host.clone());
            k.port = i32::from(b.port);
            k
        })
        .collect();
    r.cluster_id = Some(StrBytes::from_string(m.cluster_id.clone()));
    r.controller_id = BrokerId(m.controller);
    r.topics = m
        .topics
        .iter()
        .map(|t| {
            let mut k = MetadataResponseTopic::default();
            k.error_code = error_code(t.error);
            k.name = Some(name(&t.name));
            k.is_internal = is_internal(&t.name);
            k.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut q = MetadataResponsePartition::default();
                    q.error_code = error_code(p.error);
                    q.partition_index = p.partition as i32;
                    q.leader_id = BrokerId(p.leader);
                    q.leader_epoch = p.leader_epoch as i32;
                    q.replica_nodes = p.replicas.iter().map(|&b| BrokerId(b)).collect();
                    q.isr_nodes = p.isr.iter().map(|&b| BrokerId(b)).collect();
                    q
                })
                .collect();
            k
        })
        .collect();
    frame(ApiKey::Metadata, corr, version, &r)
}

pub fn list_offsets(corr: i32, version: i16, l: list_offsets::Response) -> Outgoing {
    let mut r = ListOffsetsResponse::default();
    r.topics = l
        .topics
        .iter()
        .map(|t| {
            let mut k = ListOffsetsTopicResponse::default();
            k.name = name(&t.name);
            k.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut q = ListOffsetsPartitionResponse::default();
                    q.partition_index = p.partition as i32;
                    q.error_code = error_code(p.error);
                    q.timestamp = p.timestamp;
                    q.offset = p.offset;
                    q
                })
                .collect();
            k
        })
        .collect();
    frame(ApiKey::ListOffsets, corr, version, &r)
}

/// JoinGroup: the answer, or a Kafka error code with the member id to
/// use (MEMBER_ID_REQUIRED gives one).
pub fn join_group(corr: i32, version: i16, answer: Result<classic::Joined, (i16, String)>) -> Outgoing {
    let mut r = JoinGroupResponse::default();
    match answer {
        Ok(j) => {
            r.generation_id = j.generation;
            r.protocol_name = Some(StrBytes::from_string(j.protocol));
            r.leader = StrBytes::from_string(j.leader);
            r.member_id = StrBytes::from_string(j.member_id);
            r.members = j
                .members
                .into_iter()
                .map(|(id, metadata)| {
                    let mut m = JoinGroupResponseMember::default();
                    m.member_id = StrBytes::from_string(id);
                    m.metadata = metadata.into();
                    m
                })
                .collect();
        }
        Err((code, member_id)) => {
            r.error_code = code;
            r.generation_id = -1;
            r.protocol_name = Some(StrBytes::from_static_str(""));
            r.member_id = StrBytes::from_string(member_id);
        }
    }
    frame(ApiKey::JoinGroup, corr, version, &r)
}

pub fn sync_group(corr: i32, version: i16, answer: Result<Vec<u8>, i16>) -> Outgoing {
    let mut r = SyncGroupResponse::default();
    match answer {
        Ok(a) => r.assignment = a.into(),
        Err(code) => r.error_code = code,
    }
    frame(ApiKey::SyncGroup, corr, version, &r)
}

pub fn heartbeat(corr: i32, version: i16, code: i16) -> Outgoing {
    let mut r = HeartbeatResponse::default();
    r.error_code = code;
    frame(ApiKey::Heartbeat, corr, version, &r)
}

/// LeaveGroup: the request's error, and each member's (v3+).
pub fn leave_group(corr: i32, version: i16, code: i16, members: Vec<(String, i16)>) -> Outgoing {
    let mut r = LeaveGroupResponse::default();
    r.error_code = code;
    if version >= 3 {
        r.members = members
            .into_iter()
            .map(|(id, e)| {
                let mut m = MemberResponse::default();
                m.member_id = StrBytes::from_string(id);
                m.error_code = e;
                m
            })
            .collect();
    }
    frame(ApiKey::LeaveGroup, corr, version, &r)
}

pub fn list_groups(corr: i32, version: i16, groups: Vec<(String, String, classic::State)>) -> Outgoing {
    let mut r = ListGroupsResponse::default();
    r.groups = groups
        .into_iter()
        .map(|(id, protocol_type, _)| {
            let mut g = ListedGroup::default();
            g.group_id = GroupId(StrBytes::from_string(id));
            g.protocol_type = StrBytes::from_string(protocol_type);
            g
        })
        .collect();
    frame(ApiKey::ListGroups, corr, version, &r)
}

/// DescribeGroups: each group's description, a Kafka error code, or
/// neither (a group that does not exist: Kafka's state `Dead`).
pub fn describe_groups(corr: i32, version: i16, groups: Vec<(String, Result<Option<classic::Description>, i16>)>) -> Outgoing {
    let mut r = DescribeGroupsResponse::default();
    r.groups = groups
        .into_iter()
        .map(|(id, d)| {
            let mut g = DescribedGroup::default();
            g.group_id = GroupId(StrBytes::from_string(id));
            match d {
                Err(code) => g.error_code = code,
                Ok(None) => g.group_state = StrBytes::from_static_str("Dead"),
                Ok(Some(d)) => {
                    g.group_state = StrBytes::from_static_str(d.state.name());
                    g.protocol_type = StrBytes::from_string(d.protocol_type);
                    g.protocol_data = StrBytes::from_string(d.protocol);
                    g.members = d
                        .members
                        .into_iter()
                        .map(|d| {
                            let mut m = DescribedGroupMember::default();
                            m.member_id = StrBytes::from_string(d.member_id);
                            m.client_id = StrBytes::from_string(d.client_id);
                            m.client_host = StrBytes::from_string(d.client_host);
                            m.member_metadata = d.metadata.into();
                            m.member_assignment = d.assignment.into();
                            m
                        })
                        .collect();
                }
            }
            g
        })
        .collect();
    frame(ApiKey::DescribeGroups, corr, version, &r)
}

pub fn offset_commit(corr: i32, version: i16, topics: &[Topic<(u32, ErrorCode)>]) -> Outgoing {
    let mut r = OffsetCommitResponse::default();
    r.topics = topics
        .iter()
        .map(|t| {
            let mut k = OffsetCommitResponseTopic::default();
            k.name = name(&t.name);
            k.partitions = t
                .partitions
                .iter()
                .map(|&(partition, e)| {
                    let mut q = OffsetCommitResponsePartition::default();
                    q.partition_index = partition as i32;
                    q.error_code = error_code(e);
                    q
                })
                .collect();
            k
        })
        .collect();
    frame(ApiKey::OffsetCommit, corr, version, &r)
}

/// What OffsetFetch answers: each partition's committed position
/// (`None`: none), or the group's error for all of them.
pub type FetchedOffsets = Result<Vec<Topic<(u32, ErrorCode, Option<Committed>)>>, ErrorCode>;

pub fn offset_fetch(corr: i32, version: i16, answer: FetchedOffsets) -> Outgoing {
    let mut r = OffsetFetchResponse::default();
    match answer {
        Err(e) => r.error_code = error_code(e),
        Ok(topics) => {
            r.topics = topics
                .iter()
                .map(|t| {
                    let mut k = OffsetFetchResponseTopic::default();
                    k.name = name(&t.name);
                    k.partitions = t
                        .partitions
                        .iter()
                        .map(|(partition, e, c)| {
                            let mut q = OffsetFetchResponsePartition::default();
                            q.partition_index = *partition as i32;
                            q.error_code = error_code(*e);
                            q.committed_offset = c.as_ref().map_or(-1, |c| c.offset);
                            q.committed_leader_epoch = c.as_ref().map_or(-1, |c| c.leader_epoch);
                            q.metadata = match c {
                                Some(c) => c.metadata.clone().map(StrBytes::from_string),
                                None => Some(StrBytes::from_static_str("")),
                            };
                            q
                        })
                        .collect();
                    k
                })
                .collect();
        }
    }
    frame(ApiKey::OffsetFetch, corr, version, &r)
}

pub fn init_producer_id(corr: i32, version: i16, answer: Result<(i64, i16), (i16, String)>) -> Outgoing {
    let mut r = InitProducerIdResponse::default();
    match answer {
        Ok((id, epoch)) => {
            r.producer_id = ProducerId(id);
            r.producer_epoch = epoch;
        }
        Err((code, _)) => {
            r.error_code = code;
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
        }
    }
    frame(ApiKey::InitProducerId, corr, version, &r)
}

/// A FindCoordinator refused with a Kafka code of its own.
pub fn find_coordinator_refused(corr: i32, version: i16, code: i16, message: String) -> Outgoing {
    let mut r = FindCoordinatorResponse::default();
    r.error_code = code;
    r.error_message = Some(StrBytes::from_string(message));
    r.node_id = BrokerId(-1);
    r.port = -1;
    frame(ApiKey::FindCoordinator, corr, version, &r)
}

pub fn find_coordinator(corr: i32, version: i16, c: find_coordinator::Response) -> Outgoing {
    let mut r = FindCoordinatorResponse::default();
    r.error_code = error_code(c.error);
    r.error_message = c.error_message.map(StrBytes::from_string);
    r.node_id = BrokerId(c.node_id);
    r.host = StrBytes::from_string(c.host);
    r.port = i32::from(c.port);
    frame(ApiKey::FindCoordinator, corr, version, &r)
}

pub fn offset_for_leader_epoch(corr: i32, version: i16, topics: &[Topic<(u32, EpochEnd)>]) -> Outgoing {
    let mut r = OffsetForLeaderEpochResponse::default();
    r.topics = topics
        .iter()
        .map(|t| {
            let mut k = OffsetForLeaderTopicResult::default();
            k.topic = name(&t.name);
            k.partitions = t
                .partitions
                .iter()
                .map(|&(partition, e)| {
                    let mut q = EpochEndOffset::default();
                    q.partition = partition as i32;
                    q.error_code = error_code(e.error);
                    q.leader_epoch = e.leader_epoch;
                    q.end_offset = e.end_offset;
                    q
                })
                .collect();
            k
        })
        .collect();
    frame(ApiKey::OffsetForLeaderEpoch, corr, version, &r)
}

fn produce_partition(partition: u32, error: i16, base_offset: i64, log_start_offset: i64, message: Option<String>) -> PartitionProduceResponse {
    let mut q = PartitionProduceResponse::default();
    q.index = partition as i32;
    q.error_code = error;
    q.base_offset = base_offset;
    q.log_start_offset = log_start_offset;
    q.error_message = message.map(StrBytes::from_string);
    q
}

fn produce_frame(corr: i32, version: i16, responses: Vec<TopicProduceResponse>) -> Outgoing {
    let mut r = ProduceResponse::default();
    r.responses = responses;
    frame(ApiKey::Produce, corr, version, &r)
}

pub fn produce(corr: i32, version: i16, p: produce::Response) -> Outgoing {
    let responses = p
        .topics
        .into_iter()
        .map(|t| {
            let mut k = TopicProduceResponse::default();
            k.name = name(&t.name);
            k.partition_responses = t
                .partitions
                .into_iter()
                .map(|p| produce_partition(p.partition, error_code(p.error), p.base_offset, p.log_start_offset, p.error_message))
                .collect();
            k
        })
        .collect();
    produce_frame(corr, version, responses)
}

/// The same error for every partition a produce names.
pub fn produce_all<P>(corr: i32, version: i16, topics: &[Topic<(u32, P)>], error: i16) -> Outgoing {
    let responses = topics
        .iter()
        .map(|t| {
            let mut k = TopicProduceResponse::default();
            k.name = name(&t.name);
            k.partition_responses = t.partitions.iter().map(|(p, _)| produce_partition(*p, error, -1, -1, None)).collect();
            k
        })
        .collect();
    produce_frame(corr, version, responses)
}

/// Fetch v4-11, written by hand: the head of each partition's answer goes
/// out as its own small buffer, then that partition's stored batches as
/// they are, never copied or re-encoded.
pub fn fetch(corr: i32, version: i16, f: fetch::Response<Vec<Chunk>>) -> Outgoing {
    let mut head = BytesMut::with_capacity(128);
    head.put_i32(0); // the size, below
    head.put_i32(corr);
    head.put_i32(0); // throttle_time_ms
    if version >= 7 {
        head.put_i16(0); // error_code
        head.put_i32(0); // session_id: no fetch sessions
    }
    head.put_i32(f.topics.len() as i32);
    // The first piece, holding the size; then, for each partition with
    // records, those records and the piece that follows them.
    let mut first: Option<BytesMut> = None;
    let mut payload: Vec<Chunk> = Vec::new();
    let mut cur = head;
    let mut flush = |cur: BytesMut, payload: &mut Vec<Chunk>| match first {
        None => first = Some(cur),
        Some(_) => payload.push(Chunk::Mem(cur.freeze())),
    };
    for t in f.topics {
        put_string(&mut cur, &t.name);
        cur.put_i32(t.partitions.len() as i32);
        for p in t.partitions {
            let bytes: usize = p.records.iter().map(|c| c.len()).sum();
            cur.put_i32(p.partition as i32);
            cur.put_i16(error_code(p.error));
            cur.put_i64(p.high_watermark);
            cur.put_i64(p.high_watermark); // last_stable_offset: no transactions
            if version >= 5 {
                cur.put_i64(p.log_start_offset);
            }
            cur.put_i32(-1); // aborted_transactions: null
            if version >= 11 {
                cur.put_i32(-1); // preferred_read_replica: none
            }
            cur.put_i32(bytes as i32);
            if !p.records.is_empty() {
                flush(std::mem::replace(&mut cur, BytesMut::with_capacity(64)), &mut payload);
                payload.extend(p.records);
            }
        }
    }
    if !cur.is_empty() {
        flush(cur, &mut payload);
    }
    let mut first = first.expect("the head was written");
    let total = first.len() - 4 + payload.iter().map(|c| c.len()).sum::<usize>();
    first[..4].copy_from_slice(&(total as i32).to_be_bytes());
    Outgoing { head: first.freeze(), payload }
}

/// A fetch that failed as a whole (too many partitions).
pub fn fetch_error(corr: i32, version: i16, error: i16) -> Outgoing {
    let mut b = BytesMut::with_capacity(32);
    b.put_i32(0);
    b.put_i32(corr);
    b.put_i32(0);
    if version >= 7 {
        b.put_i16(error);
        b.put_i32(0);
    }
    b.put_i32(0); // no topics
    let len = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&len.to_be_bytes());
    Outgoing { head: b.freeze(), payload: Vec::new() }
}

fn put_string(b: &mut BytesMut, s: &str) {
    b.put_i16(s.len() as i16);
    b.put_slice(s.as_bytes());
}

/// CreateTopics v2-4: each topic's result.
pub fn create_topics(corr: i32, version: i16, results: &[TopicResult]) -> Outgoing {
    let mut r = CreateTopicsResponse::default();
    r.topics = results
        .iter()
        .map(|t| {
            let mut k = CreatableTopicResult::default();
            k.name = name(&t.name);
            k.error_code = error_code(t.error);
            k.error_message = t.error_message.clone().map(StrBytes::from_string);
            k
        })
        .collect();
    frame(ApiKey::CreateTopics, corr, version, &r)
}

/// DeleteTopics v1-3: each topic's result.
pub fn delete_topics(corr: i32, version: i16, results: &[TopicResult]) -> Outgoing {
    let mut r = DeleteTopicsResponse::default();
    r.responses = results
        .iter()
        .map(|t| {
            let mut k = DeletableTopicResult::default();
            k.name = Some(name(&t.name));
            k.error_code = error_code(t.error);
            k
        })
        .collect();
    frame(ApiKey::DeleteTopics, corr, version, &r)
}

/// One resource's answer to DescribeConfigs: its settings as (name,
/// value, Kafka's config source).
pub struct ConfigAnswer {
    pub kind: i8,
    pub name: String,
    pub error: i16,
    pub message: Option<String>,
    pub configs: Vec<(String, String, i8)>,
}

/// DescribeConfigs v1-3.
pub fn describe_configs(corr: i32, version: i16, answers: &[ConfigAnswer]) -> Outgoing {
    let mut r = DescribeConfigsResponse::default();
    r.results = answers
        .iter()
        .map(|a| {
            let mut k = DescribeConfigsResult::default();
            k.error_code = a.error;
            k.error_message = a.message.clone().map(StrBytes::from_string);
            k.resource_type = a.kind;
            k.resource_name = StrBytes::from_string(a.name.clone());
            k.configs = a
                .configs
                .iter()
                .map(|(name, value, source)| {
                    let mut c = DescribeConfigsResourceResult::default();
                    c.name = StrBytes::from_string(name.clone());
                    c.value = Some(StrBytes::from_string(value.clone()));
                    c.config_source = *source;
                    c
                })
                .collect();
            k
        })
        .collect();
    frame(ApiKey::DescribeConfigs, corr, version, &r)
}

/// SaslHandshake v1: the mechanisms offered, with an error when the one
/// asked is not.
pub fn sasl_handshake(corr: i32, version: i16, code: i16, mechanisms: Vec<String>) -> Outgoing {
    let mut r = SaslHandshakeResponse::default();
    r.error_code = code;
    r.mechanisms = mechanisms.into_iter().map(StrBytes::from_string).collect();
    frame(ApiKey::SaslHandshake, corr, version, &r)
}

/// SaslAuthenticate v0-1: the server's next message, or the error.
pub fn sasl_authenticate(corr: i32, version: i16, code: i16, message: Option<String>, auth_bytes: Vec<u8>) -> Outgoing {
    let mut r = SaslAuthenticateResponse::default();
    r.error_code = code;
    r.error_message = message.map(StrBytes::from_string);
    r.auth_bytes = bytes::Bytes::from(auth_bytes);
    frame(ApiKey::SaslAuthenticate, corr, version, &r)
}
