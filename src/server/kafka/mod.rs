//! Kafka's wire protocol on the client port, beside the native one.
//!
//! A connection is Kafka's when its first 8 bytes are those of a Kafka
//! request ([`is_kafka`]); its frames are then a big-endian size and a
//! Kafka request, read here into the API types the native protocol shares
//! (`requests`), run by the same handlers, and answered in Kafka's
//! encoding: `kafka-protocol` for most responses, and for Fetch a head
//! written here followed by the stored batches as they are (Kafka's
//! record batch v2 is this broker's own format, so nothing is re-encoded).
//!
//! Kafka clients need responses in request order on a connection;
//! `server::connection` keeps that order for Kafka connections.

mod read;
mod requests;
mod responses;

use std::rc::Rc;

use bytes::{Buf, BytesMut};

use super::response::Outgoing;
use crate::protocol::create_topics::TopicResult;
use crate::protocol::{produce, Acks, ErrorCode, Topic};
use crate::shard::Shard;
use read::Reader;

pub use read::ReadError;

/// API keys, as Kafka numbers them.
pub mod key {
    pub const PRODUCE: i16 = 0;
    pub const FETCH: i16 = 1;
    pub const LIST_OFFSETS: i16 = 2;
    pub const METADATA: i16 = 3;
    pub const API_VERSIONS: i16 = 18;
    pub const CREATE_TOPICS: i16 = 19;
    pub const DELETE_TOPICS: i16 = 20;
}

/// Every Kafka API served, with its versions: the highest ones that are
/// not flexible, except ApiVersions v3 (flexible), which every modern
/// client sends first.
pub const APIS: &[(i16, i16, i16)] = &[
    (key::PRODUCE, 3, 8),
    (key::FETCH, 4, 11),
    (key::LIST_OFFSETS, 1, 5),
    (key::METADATA, 0, 8),
    (key::API_VERSIONS, 0, 3),
    (key::CREATE_TOPICS, 2, 4),
    (key::DELETE_TOPICS, 1, 3),
];

/// Whether a connection whose first 8 bytes are `first` speaks Kafka.
///
/// A Kafka request starts with its size, big-endian, then its API key and
/// version, both below 256: bytes 0 (a size under 16 MiB), 4 and 6 are
/// zero. A native frame starts with two little-endian lengths, the frame's
/// and its message's: byte 4 is the low byte of the message's length. A
/// native client opens with ApiVersions, whose message is shorter than
/// 256 bytes and longer than 0, so that byte is never zero there.
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
        _ => -1,
    }
}

/// What became of one Kafka frame.
pub enum Answer {
    /// A response to send, in the request's turn.
    Send(Outgoing),
    /// No response: a produce with acks=0.
    Nothing,
    /// The request cannot be answered in its API's format (an API or
    /// version this broker does not serve, or bytes that are not a
    /// request): Kafka's brokers close the connection, and so does this one.
    Close(String),
}

/// Reads one Kafka frame (`body`: everything after the size) and runs its
/// API's handler.
pub async fn dispatch(shard: &Rc<Shard>, body: BytesMut, external: bool) -> Answer {
    let (key, version) = match (body.first_chunk::<4>()).map(|b| (i16::from_be_bytes([b[0], b[1]]), i16::from_be_bytes([b[2], b[3]]))) {
        Some(kv) => kv,
        None => return Answer::Close("a Kafka request shorter than its header".into()),
    };
    let served = APIS.iter().find(|(k, _, _)| *k == key);
    // ApiVersions is answered at any version (KIP-511): a version this
    // broker does not serve gets v0 with the versions it does.
    let flexible = key == key::API_VERSIONS && version >= 3;
    let mut r = Reader::new(&body);
    let header = match requests::header(&mut r, flexible) {
        Ok(h) => h,
        Err(e) => return Answer::Close(format!("a Kafka request header: {e}")),
    };
    let corr = header.correlation_id;
    if key == key::API_VERSIONS {
        return Answer::Send(responses::api_versions(corr, version));
    }
    match served {
        Some(&(_, min, max)) if (min..=max).contains(&version) => {}
        Some(&(_, min, max)) => return Answer::Close(format!("Kafka API {key} version {version} is not served (versions {min}..={max} are)")),
        None => return Answer::Close(format!("Kafka API {key} is not served")),
    }
    let bad = |e: ReadError| Answer::Close(format!("a Kafka request (API {key} version {version}): {e}"));
    match key {
        key::METADATA => match requests::metadata(&mut r, version) {
            Ok(req) => Answer::Send(responses::metadata(corr, version, super::metadata::handle(shard, req, external).await)),
            Err(e) => bad(e),
        },
        key::LIST_OFFSETS => match requests::list_offsets(&mut r, version) {
            Ok(req) => Answer::Send(responses::list_offsets(corr, version, super::list_offsets::handle(shard, req).await)),
            Err(e) => bad(e),
        },
        key::FETCH => match requests::fetch(&mut r, version) {
            Ok(req) => match super::fetch::answer(shard, req).await {
                Ok(resp) => Answer::Send(responses::fetch(corr, version, resp)),
                Err((code, _)) => Answer::Send(responses::fetch_error(corr, version, error_code(code))),
            },
            Err(e) => bad(e),
        },
        key::CREATE_TOPICS => match requests::create_topics(&mut r) {
            Ok((req, validate_only, assigned)) => {
                let refuse = |why: &str| -> Vec<TopicResult> {
                    req.topics
                        .iter()
                        .map(|t| TopicResult { name: t.name.clone(), error: ErrorCode::InvalidRequest, error_message: Some(why.to_string()) })
                        .collect()
                };
                let results = if validate_only {
                    refuse("validate_only is not supported: create the topic")
                } else if assigned {
                    refuse("manual replica assignments are not supported: the broker places replicas")
                } else {
                    let names: Vec<String> = req.topics.iter().map(|t| t.name.clone()).collect();
                    match super::topics::create_answer(shard, req).await {
                        Ok(resp) => resp.results,
                        Err((code, m)) => names.into_iter().map(|name| TopicResult { name, error: code, error_message: Some(m.clone()) }).collect(),
                    }
                };
                Answer::Send(responses::create_topics(corr, version, &results))
            }
            Err(e) => bad(e),
        },
        key::DELETE_TOPICS => match requests::delete_topics(&mut r) {
            Ok(req) => {
                let names = req.names.clone();
                let results = match super::topics::delete_answer(shard, req).await {
                    Ok(resp) => resp.results,
                    Err((code, m)) => names.into_iter().map(|name| TopicResult { name, error: code, error_message: Some(m.clone()) }).collect(),
                };
                Answer::Send(responses::delete_topics(corr, version, &results))
            }
            Err(e) => bad(e),
        },
        key::PRODUCE => {
            let req = match requests::produce(&mut r) {
                Ok(req) => req,
                Err(e) => return bad(e),
            };
            produce(shard, corr, version, req, body).await
        }
        _ => Answer::Close(format!("Kafka API {key} is not served")),
    }
}

/// Produce: each partition's records leave the frame as their own buffer,
/// without a copy, and are appended as they came.
async fn produce(shard: &Rc<Shard>, corr: i32, version: i16, req: requests::Produce, mut body: BytesMut) -> Answer {
    let acks = match req.acks {
        0 => Acks::None,
        1 => Acks::Leader,
        -1 => Acks::All,
        _ => return Answer::Send(responses::produce_all(corr, version, &req.topics, error_code(ErrorCode::InvalidRequiredAcks))),
    };
    if req.transactional {
        // Transactions come with InitProducerId, which is not served yet.
        const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
        return Answer::Send(responses::produce_all(corr, version, &req.topics, TRANSACTIONAL_ID_AUTHORIZATION_FAILED));
    }
    let mut taken = 0usize;
    let mut topics = Vec::with_capacity(req.topics.len());
    for t in req.topics {
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for (partition, range) in t.partitions {
            let records = match range {
                Some(range) => {
                    body.advance(range.start - taken);
                    taken = range.end;
                    body.split_to(range.len())
                }
                None => BytesMut::new(),
            };
            partitions.push(produce::Partition { partition, records });
        }
        topics.push(Topic { name: t.name, partitions });
    }
    let request = produce::Request { acks, timeout_ms: u32::try_from(req.timeout_ms).unwrap_or(0), topics };
    match super::produce::answer(shard, request).await {
        Some(resp) => Answer::Send(responses::produce(corr, version, resp)),
        None => Answer::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kafka_request_is_told_from_a_native_frame() {
        // ApiVersions v3, correlation id 1, 43 bytes.
        assert!(is_kafka([0, 0, 0, 43, 0, 18, 0, 3]));
        assert!(is_kafka([0, 0, 1, 0, 0, 3, 0, 8]), "a 256-byte Metadata v8");
        // A native ApiVersions: frame length 60, message length 56.
        assert!(!is_kafka([60, 0, 0, 0, 56, 0, 0, 0]));
        // Any native frame whose message is 1..=255 bytes long.
        for m in 1u32..256 {
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&(m + 4).to_le_bytes());
            b[4..].copy_from_slice(&m.to_le_bytes());
            assert!(!is_kafka(b), "{m}");
        }
    }

    #[test]
    fn kafka_frame_sizes_are_bounded() {
        assert_eq!(frame_len([0, 0, 0, 43], 1 << 20), Ok(43));
        assert!(frame_len([0xff, 0xff, 0xff, 0xff], 1 << 20).is_err());
        assert!(frame_len([0, 0, 0, 3], 1 << 20).is_err());
        assert!(frame_len([0, 0x20, 0, 0], 1 << 20).is_err());
    }

    #[test]
    fn every_native_error_has_a_kafka_code() {
        for code in 0..=27i16 {
            let e = ErrorCode(code);
            assert!(error_code(e) != -1 || e == ErrorCode::UnknownServerError, "{e:?}");
        }
        assert_eq!(error_code(ErrorCode::None), 0);
    }
}
