//! The wire protocol: length-prefixed frames holding a flatbuffers message
//! followed by raw record-batch payload. The schema is `schemas/shardlog.fbs`;
//! the code in `generated/` comes from it through `scripts/gen-protocol.sh`
//! and is never edited by hand.
//!
//! Each API has one module here with its request and response in the
//! broker's own terms (`produce::Request`, `fetch::Response`, ...), each
//! with `decode` from the verified flatbuffer and `encode` into a builder.
//! The server, the clients, the follower's fetch, the tests, the benches
//! and the fuzz target build and read messages only through these types;
//! [`Request::decode`] and [`Response::decode`] name every API once.
//!
//! Architecture invariants:
//! - decoding a frame never copies its payload: record batches stay the
//!   frame's bytes ([`Payload`]), sliced per partition;
//! - every flatbuffer is checked by the verifier (with depth and table
//!   limits) before any field is read, so bad bytes are an error, never a
//!   panic.

#[allow(clippy::all, unused_imports, dead_code, non_snake_case, mismatched_lifetime_syntaxes, unsafe_op_in_unsafe_fn)]
#[rustfmt::skip]
#[path = "generated/shardlog_generated.rs"]
mod generated;

pub mod api_versions;
mod codec;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_topic;
mod envelope;
pub mod fetch;
pub mod find_coordinator;
pub mod group_heartbeat;
pub mod init_producer_id;
pub mod kafka;
pub mod list_offsets;
pub mod list_topics;
pub mod metadata;
pub mod offset_commit;
pub mod offset_fetch;
pub mod produce;
pub mod replica_fetch;
pub mod sasl_authenticate;
pub mod security;

pub use envelope::{encode_error, encode_request, encode_response, DecodeResponse, Request, RequestBody, Response, ResponseBody};
pub use fb::ErrorCode;
pub use generated::shardlog::protocol as fb;

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes before the message: the frame length and the message length.
pub const FRAME_PREFIX_BYTES: usize = 8;
/// The protocol version every API speaks in this release.
pub const API_VERSION: u16 = 0;

/// What is wrong with a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame is shorter than its own header")]
    FrameTooShort,
    #[error("message length {message} does not fit in a frame of {frame} bytes")]
    BadMessageLength { message: usize, frame: usize },
    #[error("message fails flatbuffers verification: {0}")]
    Invalid(String),
    #[error("the message body is missing")]
    MissingBody,
    #[error("the message describes {want} payload bytes, the frame has {have}")]
    PayloadMismatch { want: u64, have: usize },
    #[error("only Produce requests carry a payload")]
    UnexpectedPayload,
    #[error("acks must be 0, 1 or -1 (all), not {0}")]
    InvalidAcks(i8),
    #[error("API key {0} is not served by this broker")]
    UnknownApi(u8),
}

/// One topic's part of a request or a response: its name and, for each
/// of its partitions, what the API says of it. Every API that names
/// partitions nests them so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic<P> {
    pub name: String,
    pub partitions: Vec<P>,
}

impl<P> Topic<P> {
    pub fn new(name: &str, partitions: Vec<P>) -> Self {
        Topic { name: name.to_string(), partitions }
    }

    /// The answers to every partition of `topics` under the same topics:
    /// `answers` come in request order, `f` pairs each with what was asked.
    pub fn answer_all<A, Q>(topics: &[Topic<P>], answers: impl IntoIterator<Item = A>, mut f: impl FnMut(&P, A) -> Q) -> Vec<Topic<Q>> {
        let mut answers = answers.into_iter();
        topics.iter().map(|t| Topic { name: t.name.clone(), partitions: t.partitions.iter().zip(answers.by_ref()).map(|(p, a)| f(p, a)).collect() }).collect()
    }
}

/// How many replicas must hold a batch before its produce is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acks {
    /// No answer at all (0 on the wire).
    None,
    /// Appended on the leader (1).
    Leader,
    /// Synced, and in a cluster held by a majority of the in-sync
    /// replicas (-1).
    All,
}

impl Acks {
    /// The spellings of the console tools and loadgen, in the order their
    /// help lists them; each parses with `str::parse`.
    pub const NAMES: [&'static str; 3] = ["all", "1", "0"];

    /// The value on the wire.
    pub fn wire(self) -> i8 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }

    /// Reads the wire value; anything but 0, 1 and -1 is refused.
    pub fn from_wire(v: i8) -> Result<Self, ProtocolError> {
        match v {
            0 => Ok(Acks::None),
            1 => Ok(Acks::Leader),
            -1 => Ok(Acks::All),
            v => Err(ProtocolError::InvalidAcks(v)),
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;

    /// The spelling of the console tools and loadgen: `all` (or `-1`),
    /// `1`, `0`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" | "-1" => Ok(Acks::All),
            "1" => Ok(Acks::Leader),
            "0" => Ok(Acks::None),
            _ => Err(format!("acks is all, 1 or 0, not '{s}'")),
        }
    }
}

/// Record batches that travel after a message: the message says only how
/// many bytes each partition's batches take.
pub trait Records {
    /// Bytes of whole batches.
    fn records_len(&self) -> usize;
}

impl Records for Bytes {
    fn records_len(&self) -> usize {
        self.len()
    }
}

impl Records for BytesMut {
    fn records_len(&self) -> usize {
        self.len()
    }
}

impl Records for &[u8] {
    fn records_len(&self) -> usize {
        self.len()
    }
}

impl<T: std::ops::Deref<Target = [u8]>> Records for Vec<T> {
    fn records_len(&self) -> usize {
        self.iter().map(|c| c.len()).sum()
    }
}

/// A frame's payload as read, which a decoder slices per partition
/// without copying.
pub trait Payload: Records + Sized {
    /// The first `n` bytes, leaving the rest; `n <= records_len()`.
    fn split_to(&mut self, n: usize) -> Self;
}

impl Payload for Bytes {
    fn split_to(&mut self, n: usize) -> Self {
        Bytes::split_to(self, n)
    }
}

impl Payload for BytesMut {
    fn split_to(&mut self, n: usize) -> Self {
        BytesMut::split_to(self, n)
    }
}

impl ErrorCode {
    /// Whether the error passes by itself, so the request is worth sending
    /// again (after looking the leader or coordinator up afresh): a
    /// leader or coordinator that moved or is being elected, too few
    /// in-sync replicas yet, a stopping broker, a timeout. Every retry loop
    /// of the clients asks this; what a caller adds to it, it says why.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotLeader
                | ErrorCode::NotEnoughReplicas
                | ErrorCode::RequestTimedOut
                | ErrorCode::BrokerShuttingDown
                | ErrorCode::NotCoordinator
                | ErrorCode::CoordinatorNotAvailable
                | ErrorCode::UnknownLeaderEpoch
        )
    }
}

impl ProtocolError {
    pub fn code(&self) -> ErrorCode {
        match self {
            ProtocolError::FrameTooLarge { .. } => ErrorCode::MessageTooLarge,
            ProtocolError::InvalidAcks(_) => ErrorCode::InvalidRequiredAcks,
            ProtocolError::UnknownApi(_) => ErrorCode::UnsupportedApi,
            _ => ErrorCode::InvalidRequest,
        }
    }
}

/// Reads the frame length from the 4 bytes that start a frame and checks it
/// against `max_frame_bytes` before anything is allocated for it.
pub fn frame_len(prefix: [u8; 4], max_frame_bytes: usize) -> Result<usize, ProtocolError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len > max_frame_bytes {
        return Err(ProtocolError::FrameTooLarge { len, max: max_frame_bytes });
    }
    if len < 4 {
        return Err(ProtocolError::FrameTooShort);
    }
    Ok(len)
}

/// Splits a frame body (everything after the frame length) into the
/// message and the payload, without copying.
pub fn split_frame(mut body: BytesMut) -> Result<(BytesMut, BytesMut), ProtocolError> {
    if body.len() < 4 {
        return Err(ProtocolError::FrameTooShort);
    }
    let mlen = u32::from_le_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if mlen > body.len() - 4 {
        return Err(ProtocolError::BadMessageLength { message: mlen, frame: body.len() });
    }
    let _ = body.split_to(4);
    let message = body.split_to(mlen);
    Ok((message, body))
}

fn verifier_opts() -> flatbuffers::VerifierOptions {
    flatbuffers::VerifierOptions { max_depth: 16, max_tables: 100_000, max_apparent_size: 1 << 26, ignore_missing_null_terminator: false }
}

/// The verifier's report (several lines, a trailing newline) as one line,
/// for an error message a client shows.
fn invalid(e: flatbuffers::InvalidFlatbuffer) -> ProtocolError {
    ProtocolError::Invalid(e.to_string().split_whitespace().collect::<Vec<_>>().join(" "))
}

/// Verifies and opens a request message.
pub fn parse_request(message: &[u8]) -> Result<fb::Request<'_>, ProtocolError> {
    flatbuffers::root_with_opts::<fb::Request>(&verifier_opts(), message).map_err(invalid)
}

/// Verifies and opens a response message.
pub fn parse_response(message: &[u8]) -> Result<fb::Response<'_>, ProtocolError> {
    flatbuffers::root_with_opts::<fb::Response>(&verifier_opts(), message).map_err(invalid)
}

/// Opens a response message that [`parse_response`] already verified,
/// without verifying it again.
///
/// # Safety
/// `message` must be bytes `parse_response` accepted, unchanged since.
pub unsafe fn verified_response(message: &[u8]) -> fb::Response<'_> {
    // SAFETY: the caller passes bytes the verifier accepted; the verifier
    // checked every offset and length the accessors follow.
    unsafe { flatbuffers::root_unchecked::<fb::Response>(message) }
}

/// The frame prefix and message for a finished flatbuffer followed by
/// `payload_len` bytes of payload the caller sends right after.
pub fn frame_head(message: &[u8], payload_len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(FRAME_PREFIX_BYTES + message.len());
    out.put_u32_le((4 + message.len() + payload_len) as u32);
    out.put_u32_le(message.len() as u32);
    out.extend_from_slice(message);
    out.freeze()
}

/// The name of an API, from its union tag, for logs and errors.
pub fn api_name(body: fb::RequestBody) -> &'static str {
    body.variant_name().unwrap_or("Unknown")
}

/// Every API this broker serves, with its version range.
pub const APIS: &[(fb::RequestBody, u16, u16)] = &[
    (fb::RequestBody::ApiVersionsRequest, 0, 0),
    (fb::RequestBody::MetadataRequest, 0, 0),
    (fb::RequestBody::CreateTopicsRequest, 0, 0),
    (fb::RequestBody::DeleteTopicsRequest, 0, 0),
    (fb::RequestBody::ListTopicsRequest, 0, 0),
    (fb::RequestBody::DescribeTopicRequest, 0, 0),
    (fb::RequestBody::ProduceRequest, 0, 0),
    (fb::RequestBody::FetchRequest, 0, 0),
    (fb::RequestBody::ListOffsetsRequest, 0, 0),
    (fb::RequestBody::OffsetCommitRequest, 0, 0),
    (fb::RequestBody::OffsetFetchRequest, 0, 0),
    (fb::RequestBody::GroupHeartbeatRequest, 0, 0),
    (fb::RequestBody::FindCoordinatorRequest, 0, 0),
    (fb::RequestBody::ReplicaFetchRequest, 0, 0),
    (fb::RequestBody::InitProducerIdRequest, 0, 0),
    (fb::RequestBody::SaslAuthenticateRequest, 0, 0),
    (fb::RequestBody::AlterUsersRequest, 0, 0),
    (fb::RequestBody::ListUsersRequest, 0, 0),
    (fb::RequestBody::AlterAclsRequest, 0, 0),
    (fb::RequestBody::ListAclsRequest, 0, 0),
];

#[cfg(test)]
mod api_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use flatbuffers::FlatBufferBuilder;

    #[test]
    fn the_retriable_errors_are_the_passing_ones() {
        let retriable: Vec<ErrorCode> = ErrorCode::ENUM_VALUES.iter().copied().filter(|c| c.is_retriable()).collect();
        assert_eq!(
            retriable,
            [
                ErrorCode::NotLeader,
                ErrorCode::RequestTimedOut,
                ErrorCode::BrokerShuttingDown,
                ErrorCode::CoordinatorNotAvailable,
                ErrorCode::NotCoordinator,
                ErrorCode::NotEnoughReplicas,
                ErrorCode::UnknownLeaderEpoch
            ]
        );
    }

    fn sample_request() -> Vec<u8> {
        let mut b = FlatBufferBuilder::new();
        let name = b.create_string("t");
        let part = fb::FetchPartition::create(&mut b, &fb::FetchPartitionArgs { partition: 1, offset: 5, max_bytes: 10 });
        let parts = b.create_vector(&[part]);
        let topic = fb::FetchTopic::create(&mut b, &fb::FetchTopicArgs { name: Some(name), partitions: Some(parts) });
        let topics = b.create_vector(&[topic]);
        let body = fb::FetchRequest::create(&mut b, &fb::FetchRequestArgs { topics: Some(topics), ..Default::default() });
        let req = fb::Request::create(
            &mut b,
            &fb::RequestArgs {
                api_version: 0,
                correlation_id: 42,
                client_id: None,
                body_type: fb::RequestBody::FetchRequest,
                body: Some(body.as_union_value()),
            },
        );
        b.finish(req, None);
        b.finished_data().to_vec()
    }

    #[test]
    fn frame_round_trip() {
        let msg = sample_request();
        let head = frame_head(&msg, 3);
        let mut frame = BytesMut::from(&head[..]);
        frame.extend_from_slice(b"abc");
        let len = frame_len(frame[..4].try_into().unwrap(), 1 << 20).unwrap();
        assert_eq!(len, frame.len() - 4);
        let (m, p) = split_frame(frame.split_off(4)).unwrap();
        assert_eq!(&p[..], b"abc");
        let r = parse_request(&m).unwrap();
        assert_eq!(r.correlation_id(), 42);
        let f = r.body_as_fetch_request().unwrap();
        assert_eq!(f.topics().unwrap().get(0).partitions().unwrap().get(0).offset(), 5);
    }

    #[test]
    fn limits_and_garbage() {
        assert_eq!(frame_len(100u32.to_le_bytes(), 99), Err(ProtocolError::FrameTooLarge { len: 100, max: 99 }));
        assert_eq!(frame_len(2u32.to_le_bytes(), 99), Err(ProtocolError::FrameTooShort));
        assert!(split_frame(BytesMut::from(&[9u8, 0, 0, 0, 1][..])).is_err());
        let msg = sample_request();
        for cut in 0..msg.len() {
            let _ = parse_request(&msg[..cut]);
        }
        for i in 0..msg.len() {
            let mut bad = msg.clone();
            bad[i] ^= 0xff;
            if let Ok(r) = parse_request(&bad) {
                // Whatever verifies must be readable without a panic.
                let _ = (r.correlation_id(), r.client_id(), r.body_type());
                if let Some(f) = r.body_as_fetch_request() {
                    for t in f.topics().iter().flatten() {
                        let _ = (t.name(), t.partitions().map(|p| p.len()));
                    }
                }
            }
        }
    }
}
