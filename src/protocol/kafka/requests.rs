//! The Kafka requests this broker serves, read into the API types the
//! native protocol shares (`crate::protocol`), at the versions listed in
//! [`super::APIS`]. Record bytes stay where they are in the frame: a
//! produce request's records are ranges of it.

use std::ops::Range;

use super::read::{ReadError, Reader};
use crate::protocol::{create_topics, delete_topics, fetch, find_coordinator, list_offsets, metadata, Topic};

/// A request header (v1, or v2 for flexible versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header<'a> {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<&'a str>,
}

/// Reads the header; `flexible` says whether the request's version is a
/// flexible one (which adds tagged fields to the header).
pub fn header<'a>(r: &mut Reader<'a>, flexible: bool) -> Result<Header<'a>, ReadError> {
    let h = Header {
        api_key: r.i16("api key")?,
        api_version: r.i16("api version")?,
        correlation_id: r.i32("correlation id")?,
        client_id: r.nullable_string("client id")?,
    };
    if flexible {
        r.tagged_fields()?;
    }
    Ok(h)
}

/// A partition index from the wire; a negative one becomes an index no
/// topic has, answered as an unknown partition.
fn partition_index(p: i32) -> u32 {
    u32::try_from(p).unwrap_or(u32::MAX)
}

fn non_negative(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

/// An array of topics, each a name and an array of partitions read by
/// `partition`: the nesting every partition-naming request shares.
fn topics<'a, P>(r: &mut Reader<'a>, partition: impl FnMut(&mut Reader<'a>) -> Result<P, ReadError>) -> Result<Vec<Topic<P>>, ReadError> {
    let n = r.array("topics")?;
    topics_of(r, n, partition)
}

/// [`topics`] once the array's count `n` is read.
fn topics_of<'a, P>(r: &mut Reader<'a>, n: usize, mut partition: impl FnMut(&mut Reader<'a>) -> Result<P, ReadError>) -> Result<Vec<Topic<P>>, ReadError> {
    let mut topics = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let name = r.string("topic name")?.to_string();
        let m = r.array("partitions")?;
        let mut partitions = Vec::with_capacity(m.min(64));
        for _ in 0..m {
            partitions.push(partition(r)?);
        }
        topics.push(Topic { name, partitions });
    }
    Ok(topics)
}

/// Metadata v0-8: the topics asked for (`None`: all of them), and whether
/// the client allows unknown ones to be created (always, before v4).
pub fn metadata(r: &mut Reader<'_>, version: i16) -> Result<(metadata::Request, bool), ReadError> {
    let n = r.nullable_array("topics")?;
    let topics = match n {
        // v0 asks for every topic with an empty array, later versions with null.
        Some(0) if version == 0 => None,
        None => None,
        Some(n) => Some((0..n).map(|_| r.string("topic name").map(str::to_string)).collect::<Result<Vec<_>, _>>()?),
    };
    let allow_auto_create = if version >= 4 { r.bool("allow_auto_topic_creation")? } else { true };
    if version >= 8 {
        r.bool("include_cluster_authorized_operations")?;
        r.bool("include_topic_authorized_operations")?;
    }
    Ok((metadata::Request { topics }, allow_auto_create))
}

/// One produce request's fields, with each partition's records as a
/// range of the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Produce {
    /// A transactional id was given.
    pub transactional: bool,
    pub acks: i16,
    pub timeout_ms: i32,
    pub topics: Vec<Topic<(u32, Option<Range<usize>>)>>,
}

/// Produce v3-8.
pub fn produce(r: &mut Reader<'_>) -> Result<Produce, ReadError> {
    let transactional = r.nullable_string("transactional id")?.is_some();
    let acks = r.i16("acks")?;
    let timeout_ms = r.i32("timeout")?;
    let topics = topics(r, |r| Ok((partition_index(r.i32("partition")?), r.nullable_bytes("records")?)))?;
    Ok(Produce { transactional, acks, timeout_ms, topics })
}

/// Fetch v4-11. Fetch sessions are not kept: every fetch names its
/// partitions, as a fetch with session id 0 and epoch -1 does.
pub fn fetch(r: &mut Reader<'_>, version: i16) -> Result<fetch::Request, ReadError> {
    let _replica_id = r.i32("replica id")?;
    let max_wait_ms = non_negative(r.i32("max wait")?);
    let min_bytes = non_negative(r.i32("min bytes")?);
    let max_bytes = non_negative(r.i32("max bytes")?);
    let _isolation_level = r.i8("isolation level")?;
    if version >= 7 {
        r.i32("session id")?;
        r.i32("session epoch")?;
    }
    let topics = topics(r, |r| {
        let partition = partition_index(r.i32("partition")?);
        if version >= 9 {
            r.i32("current leader epoch")?;
        }
        let offset = r.i64("fetch offset")?;
        if version >= 5 {
            r.i64("log start offset")?;
        }
        let max_bytes = non_negative(r.i32("partition max bytes")?);
        Ok(fetch::Partition { partition, offset, max_bytes })
    })?;
    if version >= 7 {
        for _ in 0..r.array("forgotten topics")? {
            r.string("forgotten topic")?;
            for _ in 0..r.array("forgotten partitions")? {
                r.i32("forgotten partition")?;
            }
        }
    }
    if version >= 11 {
        r.string("rack id")?;
    }
    Ok(fetch::Request { max_wait_ms, min_bytes, max_bytes, topics })
}

/// ListOffsets v1-5.
pub fn list_offsets(r: &mut Reader<'_>, version: i16) -> Result<list_offsets::Request, ReadError> {
    let _replica_id = r.i32("replica id")?;
    if version >= 2 {
        r.i8("isolation level")?;
    }
    let topics = topics(r, |r| {
        let partition = partition_index(r.i32("partition")?);
        if version >= 4 {
            r.i32("current leader epoch")?;
        }
        let timestamp = r.i64("timestamp")?;
        Ok(list_offsets::Partition { partition, timestamp })
    })?;
    Ok(list_offsets::Request { topics })
}

/// Partitions and replicas of a topic created with Kafka's -1 ("the
/// broker's default"): Kafka's defaults, `num.partitions` and
/// `default.replication.factor`, are both 1.
const DEFAULT_PARTITIONS: u32 = 1;
const DEFAULT_REPLICATION_FACTOR: u16 = 1;

/// A CreateTopics request, with what the broker refuses: a validation
/// only, and replicas placed by the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateTopics {
    pub request: create_topics::Request,
    pub validate_only: bool,
    pub assigned: bool,
}

/// CreateTopics v2-4.
pub fn create_topics(r: &mut Reader<'_>) -> Result<CreateTopics, ReadError> {
    let n = r.array("topics")?;
    let mut topics = Vec::with_capacity(n.min(64));
    let mut assigned = false;
    for _ in 0..n {
        let name = r.string("topic name")?.to_string();
        let partitions = match r.i32("partition count")? {
            -1 => DEFAULT_PARTITIONS,
            p => u32::try_from(p).map_err(|_| ReadError::Invalid("partition count"))?,
        };
        let replication_factor = match r.i16("replication factor")? {
            -1 => DEFAULT_REPLICATION_FACTOR,
            f => u16::try_from(f).map_err(|_| ReadError::Invalid("replication factor"))?,
        };
        for _ in 0..r.array("assignments")? {
            assigned = true;
            r.i32("assigned partition")?;
            for _ in 0..r.array("assigned brokers")? {
                r.i32("assigned broker")?;
            }
        }
        let m = r.array("configs")?;
        let mut configs = Vec::with_capacity(m.min(64));
        for _ in 0..m {
            let k = r.string("config name")?.to_string();
            if let Some(v) = r.nullable_string("config value")? {
                configs.push((k, v.to_string()));
            }
        }
        topics.push(create_topics::NewTopic { name, partitions, replication_factor, configs });
    }
    let timeout_ms = non_negative(r.i32("timeout")?);
    let validate_only = r.bool("validate only")?;
    Ok(CreateTopics { request: create_topics::Request { topics, timeout_ms }, validate_only, assigned })
}

/// DeleteTopics v1-3.
pub fn delete_topics(r: &mut Reader<'_>) -> Result<delete_topics::Request, ReadError> {
    let n = r.array("topic names")?;
    let names = (0..n).map(|_| r.string("topic name").map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
    let timeout_ms = non_negative(r.i32("timeout")?);
    Ok(delete_topics::Request { names, timeout_ms })
}

/// One resource a DescribeConfigs request asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigResource {
    /// Kafka's resource type: 2 a topic, 4 a broker.
    pub kind: i8,
    pub name: String,
    /// The settings asked for; `None`: all of them.
    pub keys: Option<Vec<String>>,
}

/// DescribeConfigs v1-3.
pub fn describe_configs(r: &mut Reader<'_>, version: i16) -> Result<Vec<ConfigResource>, ReadError> {
    let n = r.array("resources")?;
    let mut out = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let kind = r.i8("resource type")?;
        let name = r.string("resource name")?.to_string();
        let keys = match r.nullable_array("configuration keys")? {
            None => None,
            Some(m) => Some((0..m).map(|_| r.string("configuration key").map(str::to_string)).collect::<Result<Vec<_>, _>>()?),
        };
        out.push(ConfigResource { kind, name, keys });
    }
    r.bool("include synonyms")?;
    if version >= 3 {
        r.bool("include documentation")?;
    }
    Ok(out)
}

/// One partition an OffsetForLeaderEpoch request asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochQuery {
    pub partition: u32,
    /// The leader epoch the client last saw; -1: not said.
    pub current_leader_epoch: i32,
    /// The epoch whose end is asked for.
    pub leader_epoch: i32,
}

/// OffsetForLeaderEpoch v2-3.
pub fn offset_for_leader_epoch(r: &mut Reader<'_>, version: i16) -> Result<Vec<Topic<EpochQuery>>, ReadError> {
    if version >= 3 {
        r.i32("replica id")?;
    }
    topics(r, |r| {
        let partition = partition_index(r.i32("partition")?);
        let current_leader_epoch = r.i32("current leader epoch")?;
        let leader_epoch = r.i32("leader epoch")?;
        Ok(EpochQuery { partition, current_leader_epoch, leader_epoch })
    })
}

/// FindCoordinator v0-2: the key, and whether it names a group (key type
/// 0; 1 is a transactional id).
pub fn find_coordinator(r: &mut Reader<'_>, version: i16) -> Result<(find_coordinator::Request, bool), ReadError> {
    let group = r.string("coordinator key")?.to_string();
    let key_type = if version >= 1 { r.i8("key type")? } else { 0 };
    Ok((find_coordinator::Request { group }, key_type == 0))
}

/// InitProducerId v0-1: whether a transactional id was given.
pub fn init_producer_id(r: &mut Reader<'_>) -> Result<bool, ReadError> {
    let transactional = r.nullable_string("transactional id")?.is_some();
    r.i32("transaction timeout")?;
    Ok(transactional)
}

/// One partition's commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPartition {
    pub partition: u32,
    pub offset: i64,
    /// -1 before v6, or when the client does not know it.
    pub leader_epoch: i32,
    pub metadata: Option<String>,
}

/// An OffsetCommit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub group: String,
    /// -1, with an empty member id, for a consumer outside membership.
    pub generation: i32,
    pub member_id: String,
    pub topics: Vec<Topic<CommitPartition>>,
}

/// OffsetCommit v2-7.
pub fn offset_commit(r: &mut Reader<'_>, version: i16) -> Result<OffsetCommit, ReadError> {
    let group = r.string("group id")?.to_string();
    let generation = r.i32("generation id")?;
    let member_id = r.string("member id")?.to_string();
    if version >= 7 {
        r.nullable_string("group instance id")?;
    }
    if version <= 4 {
        r.i64("retention time")?;
    }
    let topics = topics(r, |r| {
        let partition = partition_index(r.i32("partition")?);
        let offset = r.i64("committed offset")?;
        let leader_epoch = if version >= 6 { r.i32("committed leader epoch")? } else { -1 };
        let metadata = r.nullable_string("committed metadata")?.map(str::to_string);
        Ok(CommitPartition { partition, offset, leader_epoch, metadata })
    })?;
    Ok(OffsetCommit { group, generation, member_id, topics })
}

/// An OffsetFetch request: the partitions asked for, or (`None`) every
/// partition the group committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetch {
    pub group: String,
    pub topics: Option<Vec<Topic<u32>>>,
}

/// OffsetFetch v1-5.
pub fn offset_fetch(r: &mut Reader<'_>, version: i16) -> Result<OffsetFetch, ReadError> {
    let group = r.string("group id")?.to_string();
    let n = if version >= 2 { r.nullable_array("topics")? } else { Some(r.array("topics")?) };
    let topics = n.map(|n| topics_of(r, n, |r| Ok(partition_index(r.i32("partition")?)))).transpose()?;
    Ok(OffsetFetch { group, topics })
}

/// A JoinGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinGroup {
    pub group: String,
    /// Empty for a member without an id yet.
    pub member_id: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocol_type: String,
    /// Its protocols in its order of preference, each with its metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// JoinGroup v4+: a member without an id is given one and joins again.
    pub require_known_member_id: bool,
}

/// JoinGroup v1-5 (from v4 a member without an id is given one first).
pub fn join_group(r: &mut Reader<'_>, version: i16) -> Result<JoinGroup, ReadError> {
    let group = r.string("group id")?.to_string();
    let session_timeout_ms = i64::from(r.i32("session timeout")?);
    let rebalance_timeout_ms = i64::from(r.i32("rebalance timeout")?);
    let member_id = r.string("member id")?.to_string();
    if version >= 5 {
        r.nullable_string("group instance id")?;
    }
    let protocol_type = r.string("protocol type")?.to_string();
    let n = r.array("protocols")?;
    let mut protocols = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        let name = r.string("protocol name")?.to_string();
        let metadata = r.bytes("protocol metadata")?.to_vec();
        protocols.push((name, metadata));
    }
    Ok(JoinGroup { group, member_id, session_timeout_ms, rebalance_timeout_ms, protocol_type, protocols, require_known_member_id: version >= 4 })
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncGroup {
    pub group: String,
    pub generation: i32,
    pub member_id: String,
    /// The leader's: every member's assignment.
    pub assignments: Vec<(String, Vec<u8>)>,
}

/// SyncGroup v0-3.
pub fn sync_group(r: &mut Reader<'_>, version: i16) -> Result<SyncGroup, ReadError> {
    let group = r.string("group id")?.to_string();
    let generation = r.i32("generation id")?;
    let member_id = r.string("member id")?.to_string();
    if version >= 3 {
        r.nullable_string("group instance id")?;
    }
    let n = r.array("assignments")?;
    let mut assignments = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        let m = r.string("member id")?.to_string();
        let a = r.bytes("assignment")?.to_vec();
        assignments.push((m, a));
    }
    Ok(SyncGroup { group, generation, member_id, assignments })
}

/// Heartbeat v0-3: group, member id, generation.
pub fn heartbeat(r: &mut Reader<'_>, version: i16) -> Result<(String, String, i32), ReadError> {
    let group = r.string("group id")?.to_string();
    let generation = r.i32("generation id")?;
    let member_id = r.string("member id")?.to_string();
    if version >= 3 {
        r.nullable_string("group instance id")?;
    }
    Ok((group, member_id, generation))
}

/// LeaveGroup v0-3: the group and the members leaving (one before v3).
pub fn leave_group(r: &mut Reader<'_>, version: i16) -> Result<(String, Vec<String>), ReadError> {
    let group = r.string("group id")?.to_string();
    if version < 3 {
        return Ok((group, vec![r.string("member id")?.to_string()]));
    }
    let n = r.array("members")?;
    let mut members = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        members.push(r.string("member id")?.to_string());
        r.nullable_string("group instance id")?;
    }
    Ok((group, members))
}

/// DescribeGroups v0-4.
pub fn describe_groups(r: &mut Reader<'_>, version: i16) -> Result<Vec<String>, ReadError> {
    let n = r.array("groups")?;
    let groups = (0..n).map(|_| r.string("group id").map(str::to_string)).collect::<Result<Vec<_>, _>>()?;
    if version >= 3 {
        r.bool("include authorized operations")?;
    }
    Ok(groups)
}
