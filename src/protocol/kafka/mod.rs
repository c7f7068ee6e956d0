//! Kafka's wire protocol, the request side: telling a Kafka connection
//! from a native one, Kafka's framing, the APIs and versions served, and
//! reading each request into the API types the native protocol shares.
//! Sans-IO; the broker's Kafka listener (`server::kafka`) runs what this
//! reads and encodes the answers.
//!
//! Requests are read by hand, bounded (`read`), rather than with
//! `kafka-protocol`'s decoders: those reserve a vector of the count the
//! client sent before reading any element, which lets a 20-byte request
//! ask for gigabytes (see ARCHITECTURE.md).

mod read;
mod requests;

pub use read::{ReadError, Reader};
pub use requests::{CommitPartition, ConfigResource, CreateTopics, EpochQuery, JoinGroup, OffsetCommit, OffsetFetch, Produce, SyncGroup};

use super::{delete_topics, fetch, find_coordinator, list_offsets, metadata, ErrorCode, Topic};

/// API keys, as Kafka numbers them.
pub mod key {
    pub const PRODUCE: i16 = 0;
    pub const FETCH: i16 = 1;
    pub const LIST_OFFSETS: i16 = 2;
    pub const METADATA: i16 = 3;
    pub const OFFSET_COMMIT: i16 = 8;
    pub const OFFSET_FETCH: i16 = 9;
    pub const FIND_COORDINATOR: i16 = 10;
    pub const JOIN_GROUP: i16 = 11;
    pub const HEARTBEAT: i16 = 12;
    pub const LEAVE_GROUP: i16 = 13;
    pub const SYNC_GROUP: i16 = 14;
    pub const DESCRIBE_GROUPS: i16 = 15;
    pub const LIST_GROUPS: i16 = 16;
    pub const API_VERSIONS: i16 = 18;
    pub const CREATE_TOPICS: i16 = 19;
    pub const DELETE_TOPICS: i16 = 20;
    pub const INIT_PRODUCER_ID: i16 = 22;
    pub const OFFSET_FOR_LEADER_EPOCH: i16 = 23;
    pub const DESCRIBE_CONFIGS: i16 = 32;
    pub const SASL_HANDSHAKE: i16 = 17;
    pub const SASL_AUTHENTICATE: i16 = 36;
}

/// Every Kafka API served, with its versions: the highest ones that are
/// not flexible, except ApiVersions v3 (flexible), which every modern
/// client sends first.
pub const APIS: &[(i16, i16, i16)] = &[
    (key::PRODUCE, 3, 8),
    (key::FETCH, 4, 11),
    (key::LIST_OFFSETS, 1, 5),
    (key::METADATA, 0, 8),
    (key::OFFSET_COMMIT, 2, 7),
    (key::OFFSET_FETCH, 1, 5),
    (key::FIND_COORDINATOR, 0, 2),
    (key::JOIN_GROUP, 1, 5),
    (key::HEARTBEAT, 0, 3),
    (key::LEAVE_GROUP, 0, 3),
    (key::SYNC_GROUP, 0, 3),
    (key::DESCRIBE_GROUPS, 0, 4),
    (key::LIST_GROUPS, 0, 2),
    (key::API_VERSIONS, 0, 3),
    (key::CREATE_TOPICS, 2, 4),
    (key::DELETE_TOPICS, 1, 3),
    (key::INIT_PRODUCER_ID, 0, 1),
    (key::OFFSET_FOR_LEADER_EPOCH, 2, 3),
    (key::DESCRIBE_CONFIGS, 1, 3),
    // Clients take v0 being listed as SASL being served (librdkafka's
    // feature table) and then send v1, whose tokens travel in
    // SaslAuthenticate. After a v0 handshake a client would send raw
    // tokens, which are not served: such a connection is closed at its
    // first token.
    (key::SASL_HANDSHAKE, 0, 1),
    (key::SASL_AUTHENTICATE, 0, 1),
];

/// The lowest version ApiVersions advertises for an API: the lowest
/// served, except Produce, advertised from v0 as Kafka 4 does
/// (KAFKA-18659). librdkafka before 2.10 compresses with gzip, snappy or
/// lz4 only if the broker lists Produce v0; every client then sends the
/// highest version both sides know (v3 and up), and a Produce below v3 is
/// refused as any version not served is.
pub fn advertised_min(key: i16, min: i16) -> i16 {
    if key == key::PRODUCE {
        0
    } else {
        min
    }
}

/// Whether a connection whose first 8 bytes are `first` speaks Kafka.
///
/// A Kafka request starts with its size, big-endian, then its API key and
/// version, both below 256: bytes 0 (a size under 16 MiB), 4 and 6 are
/// zero. A native frame starts with two little-endian lengths, the
/// frame's and its message's; without records the frame's is the
/// message's plus 4, so one of bytes 0 and 4 is never zero. Native
/// clients open with such a frame (ApiVersions).
pub fn is_kafka(first: [u8; 8]) -> bool {
    first[0] == 0 && first[4] == 0 && first[6] == 0
}

/// The size of a Kafka frame from its 4-byte prefix, within the broker's
/// frame limit.
pub fn frame_len(prefix: [u8; 4], max_frame_bytes: usize) -> Result<usize, String> {
    let len = i32::from_be_bytes(prefix);
    match usize::try_from(len) {
        Ok(n) if n > max_frame_bytes => Err(format!("a Kafka request of {n} bytes is over the limit of {max_frame_bytes}")),
        Ok(n) if n >= 8 => Ok(n),
        _ => Err(format!("a Kafka request size of {len} bytes is invalid")),
    }
}

/// The Kafka error code for one of ours.
pub fn error_code(e: ErrorCode) -> i16 {
    match e {
        ErrorCode::None => 0,
        ErrorCode::CorruptBatch => 2,
        ErrorCode::UnknownTopicOrPartition => 3,
        ErrorCode::NotLeader | ErrorCode::BrokerShuttingDown => 6,
        ErrorCode::MessageTooLarge => 10,
        ErrorCode::InvalidRequest => 42,
        ErrorCode::UnsupportedVersion | ErrorCode::UnsupportedApi => 35,
        ErrorCode::TopicAlreadyExists => 36,
        ErrorCode::PolicyViolation => 44,
        ErrorCode::InvalidReplicationFactor => 38,
        ErrorCode::InvalidPartitions => 37,
        ErrorCode::OffsetOutOfRange => 1,
        ErrorCode::RequestTimedOut => 7,
        ErrorCode::StorageError => 56,
        ErrorCode::InvalidTopicName => 17,
        ErrorCode::InvalidConfig => 40,
        ErrorCode::InvalidRequiredAcks => 21,
        ErrorCode::ThrottledTooManyRequests => 89,
        ErrorCode::CoordinatorNotAvailable => 15,
        ErrorCode::InvalidGroupId => 24,
        ErrorCode::UnknownMemberId => 25,
        ErrorCode::IllegalGeneration => 22,
        ErrorCode::NotCoordinator => 16,
        ErrorCode::NotEnoughReplicas => 19,
        ErrorCode::FencedLeaderEpoch => 74,
        ErrorCode::UnknownLeaderEpoch => 75,
        ErrorCode::UnsupportedCompression => 76,
        ErrorCode::InvalidTimestamp => 32,
        ErrorCode::InvalidRecord => 87,
        ErrorCode::OutOfOrderSequence => 45,
        ErrorCode::InvalidProducerEpoch => 47,
        ErrorCode::OffsetMetadataTooLarge => 12,
        ErrorCode::RebalanceInProgress => 27,
        ErrorCode::InconsistentGroupProtocol => 23,
        ErrorCode::TopicAuthorizationFailed => 29,
        ErrorCode::GroupAuthorizationFailed => 30,
        ErrorCode::ClusterAuthorizationFailed => 31,
        ErrorCode::UnsupportedSaslMechanism => 33,
        ErrorCode::IllegalSaslState => 34,
        ErrorCode::SaslAuthenticationFailed => 58,
        _ => -1,
    }
}

/// One of ours for a Kafka error code, for clients reading Kafka answers:
/// the codes [`error_code`] gives map back; the rest are
/// `UnknownServerError`.
pub fn from_error_code(code: i16) -> ErrorCode {
    ErrorCode::ENUM_VALUES.iter().copied().find(|&e| e != ErrorCode::UnknownServerError && error_code(e) == code).unwrap_or(ErrorCode::UnknownServerError)
}

/// One Kafka request, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// At any version: one not served is answered at v0 (KIP-511).
    ApiVersions,
    /// With whether the client allows creating the unknown topics it names.
    Metadata(metadata::Request, bool),
    Produce(Produce),
    Fetch(fetch::Request),
    ListOffsets(list_offsets::Request),
    CreateTopics(CreateTopics),
    DeleteTopics(delete_topics::Request),
    DescribeConfigs(Vec<ConfigResource>),
    OffsetForLeaderEpoch(Vec<Topic<EpochQuery>>),
    /// A group's coordinator; `false`: a transaction's, which is not kept.
    FindCoordinator(find_coordinator::Request, bool),
    /// A producer id for an idempotent producer; `true`: for a
    /// transactional one, which is not served.
    InitProducerId(bool),
    OffsetCommit(OffsetCommit),
    OffsetFetch(OffsetFetch),
    JoinGroup(JoinGroup),
    SyncGroup(SyncGroup),
    /// A group, member id and generation.
    Heartbeat(String, String, i32),
    /// A group and the members that leave it.
    LeaveGroup(String, Vec<String>),
    ListGroups,
    DescribeGroups(Vec<String>),
    /// The mechanism a client will authenticate with.
    SaslHandshake(String),
    /// One SASL message.
    SaslAuthenticate(Vec<u8>),
}

impl Request {
    /// The API's name, as Kafka names it (for metrics).
    pub fn name(&self) -> &'static str {
        match self {
            Request::ApiVersions => "ApiVersions",
            Request::Metadata(..) => "Metadata",
            Request::Produce(_) => "Produce",
            Request::Fetch(_) => "Fetch",
            Request::ListOffsets(_) => "ListOffsets",
            Request::CreateTopics(_) => "CreateTopics",
            Request::DeleteTopics(_) => "DeleteTopics",
            Request::DescribeConfigs(_) => "DescribeConfigs",
            Request::OffsetForLeaderEpoch(_) => "OffsetForLeaderEpoch",
            Request::FindCoordinator(..) => "FindCoordinator",
            Request::InitProducerId(_) => "InitProducerId",
            Request::OffsetCommit(_) => "OffsetCommit",
            Request::OffsetFetch(_) => "OffsetFetch",
            Request::JoinGroup(_) => "JoinGroup",
            Request::SyncGroup(_) => "SyncGroup",
            Request::Heartbeat(..) => "Heartbeat",
            Request::LeaveGroup(..) => "LeaveGroup",
            Request::ListGroups => "ListGroups",
            Request::DescribeGroups(_) => "DescribeGroups",
            Request::SaslHandshake(_) => "SaslHandshake",
            Request::SaslAuthenticate(_) => "SaslAuthenticate",
        }
    }
}

/// A request with what its header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    /// The header's client id (empty if none).
    pub client_id: String,
    pub request: Request,
}

/// Why a Kafka frame gets no answer in its API's format: Kafka's brokers
/// close the connection then, and so does this one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("a Kafka request header: {0}")]
    Header(ReadError),
    #[error("Kafka API {0} is not served")]
    UnknownApi(i16),
    #[error("Kafka API {key} version {version} is not served (versions {min}..={max} are)")]
    Version { key: i16, version: i16, min: i16, max: i16 },
    #[error("a Kafka request (API {key} version {version}): {error}")]
    Body { key: i16, version: i16, error: ReadError },
}

/// Reads one Kafka frame (everything after its size).
pub fn decode(body: &[u8]) -> Result<Decoded, Refused> {
    let mut r = Reader::new(body);
    let (key, version) = match body.first_chunk::<4>() {
        Some(b) => (i16::from_be_bytes([b[0], b[1]]), i16::from_be_bytes([b[2], b[3]])),
        None => return Err(Refused::Header(ReadError::Short("header"))),
    };
    // Only ApiVersions v3+ is served flexible, with header v2.
    let flexible = key == key::API_VERSIONS && version >= 3;
    let header = requests::header(&mut r, flexible).map_err(Refused::Header)?;
    let correlation_id = header.correlation_id;
    let client_id = header.client_id.unwrap_or_default().to_string();
    let decoded = |request| Ok(Decoded { api_key: key, api_version: version, correlation_id, client_id, request });
    if key == key::API_VERSIONS {
        // Its body (the client's name and version) is not needed.
        return decoded(Request::ApiVersions);
    }
    match APIS.iter().find(|(k, _, _)| *k == key) {
        Some(&(_, min, max)) if (min..=max).contains(&version) => {}
        Some(&(_, min, max)) => return Err(Refused::Version { key, version, min, max }),
        None => return Err(Refused::UnknownApi(key)),
    }
    let body = |error| Refused::Body { key, version, error };
    let request = match key {
        key::METADATA => {
            let (m, allow_auto_create) = requests::metadata(&mut r, version).map_err(body)?;
            Request::Metadata(m, allow_auto_create)
        }
        key::PRODUCE => Request::Produce(requests::produce(&mut r).map_err(body)?),
        key::FETCH => Request::Fetch(requests::fetch(&mut r, version).map_err(body)?),
        key::LIST_OFFSETS => Request::ListOffsets(requests::list_offsets(&mut r, version).map_err(body)?),
        key::CREATE_TOPICS => Request::CreateTopics(requests::create_topics(&mut r).map_err(body)?),
        key::DELETE_TOPICS => Request::DeleteTopics(requests::delete_topics(&mut r).map_err(body)?),
        key::DESCRIBE_CONFIGS => Request::DescribeConfigs(requests::describe_configs(&mut r, version).map_err(body)?),
        key::FIND_COORDINATOR => {
            let (req, group) = requests::find_coordinator(&mut r, version).map_err(body)?;
            Request::FindCoordinator(req, group)
        }
        key::JOIN_GROUP => Request::JoinGroup(requests::join_group(&mut r, version).map_err(body)?),
        key::SYNC_GROUP => Request::SyncGroup(requests::sync_group(&mut r, version).map_err(body)?),
        key::HEARTBEAT => {
            let (g, m, gen) = requests::heartbeat(&mut r, version).map_err(body)?;
            Request::Heartbeat(g, m, gen)
        }
        key::LEAVE_GROUP => {
            let (g, members) = requests::leave_group(&mut r, version).map_err(body)?;
            Request::LeaveGroup(g, members)
        }
        key::LIST_GROUPS => Request::ListGroups,
        key::DESCRIBE_GROUPS => Request::DescribeGroups(requests::describe_groups(&mut r, version).map_err(body)?),
        key::OFFSET_COMMIT => Request::OffsetCommit(requests::offset_commit(&mut r, version).map_err(body)?),
        key::OFFSET_FETCH => Request::OffsetFetch(requests::offset_fetch(&mut r, version).map_err(body)?),
        key::INIT_PRODUCER_ID => Request::InitProducerId(requests::init_producer_id(&mut r).map_err(body)?),
        key::OFFSET_FOR_LEADER_EPOCH => Request::OffsetForLeaderEpoch(requests::offset_for_leader_epoch(&mut r, version).map_err(body)?),
        key::SASL_HANDSHAKE => Request::SaslHandshake(r.string("mechanism").map_err(body)?.to_string()),
        key::SASL_AUTHENTICATE => Request::SaslAuthenticate(r.bytes("auth bytes").map_err(body)?.to_vec()),
        _ => return Err(Refused::UnknownApi(key)),
    };
    decoded(request)
}

#[cfg(test)]
mod tests;
