//! The envelopes: `Request` and `Response` tables around one API's body,
//! and the two enums that name every API once, so that decoding (the
//! server's, a client's, the fuzz target's) cannot miss one.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};

use super::*;

/// One API's request body.
pub trait RequestBody {
    /// Its union tag, which is its API key.
    const KEY: fb::RequestBody;
    /// Writes the body into `fbb`.
    fn encode_body<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<UnionWIPOffset>;
}

/// One API's response body.
pub trait ResponseBody {
    /// Its union tag.
    const KEY: fb::ResponseBody;
    /// Writes the body into `fbb`.
    fn encode_body<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<UnionWIPOffset>;
}

/// One API's response body as a client reads it.
pub trait DecodeResponse: Sized {
    /// Reads the body out of a verified response; `payload` is the
    /// frame's record bytes (empty for every API without records).
    fn decode_response(r: fb::Response<'_>, payload: Bytes) -> Result<Self, ProtocolError>;
}

/// Finishes a request frame's message in `fbb` and returns it.
pub fn encode_request<'b, B: RequestBody>(
    fbb: &'b mut FlatBufferBuilder<'_>,
    api_version: u16,
    correlation_id: u32,
    client_id: Option<&str>,
    body: &B,
) -> &'b [u8] {
    fbb.reset();
    let b = body.encode_body(fbb);
    let client_id = client_id.map(|c| fbb.create_string(c));
    let r = fb::Request::create(fbb, &fb::RequestArgs { api_version, correlation_id, client_id, body_type: B::KEY, body: Some(b) });
    fbb.finish(r, None);
    fbb.finished_data()
}

/// Finishes a response frame's message in `fbb` and returns it.
pub fn encode_response<'b, B: ResponseBody>(fbb: &'b mut FlatBufferBuilder<'_>, correlation_id: u32, body: &B) -> &'b [u8] {
    fbb.reset();
    let b = body.encode_body(fbb);
    let r = fb::Response::create(fbb, &fb::ResponseArgs { correlation_id, error: ErrorCode::None, error_message: None, body_type: B::KEY, body: Some(b) });
    fbb.finish(r, None);
    fbb.finished_data()
}

/// Finishes a response that fails a whole request.
pub fn encode_error<'b>(fbb: &'b mut FlatBufferBuilder<'_>, correlation_id: u32, code: ErrorCode, message: &str) -> &'b [u8] {
    fbb.reset();
    let m = fbb.create_string(message);
    let r = fb::Response::create(fbb, &fb::ResponseArgs { correlation_id, error: code, error_message: Some(m), body_type: fb::ResponseBody::NONE, body: None });
    fbb.finish(r, None);
    fbb.finished_data()
}

fn body<T>(b: Option<T>) -> Result<T, ProtocolError> {
    b.ok_or(ProtocolError::MissingBody)
}

/// Every API's request; `P` is the frame's payload as read.
#[derive(Debug)]
pub enum Request<P> {
    ApiVersions(api_versions::Request),
    Metadata(metadata::Request),
    CreateTopics(create_topics::Request),
    DeleteTopics(delete_topics::Request),
    ListTopics(list_topics::Request),
    DescribeTopic(describe_topic::Request),
    Produce(produce::Request<P>),
    Fetch(fetch::Request),
    ListOffsets(list_offsets::Request),
    OffsetCommit(offset_commit::Request),
    OffsetFetch(offset_fetch::Request),
    GroupHeartbeat(group_heartbeat::Request),
    FindCoordinator(find_coordinator::Request),
    ReplicaFetch(replica_fetch::Request),
    InitProducerId(init_producer_id::Request),
    SaslAuthenticate(sasl_authenticate::Request),
    AlterUsers(security::AlterUsers),
    ListUsers(security::ListUsers),
    AlterAcls(security::AlterAcls),
    ListAcls(security::ListAcls),
}

impl<P: Payload> Request<P> {
    /// Reads the body of a verified request; only Produce carries a payload.
    pub fn decode(r: fb::Request<'_>, payload: P) -> Result<Self, ProtocolError> {
        use fb::RequestBody as K;
        let kind = r.body_type();
        if kind != K::ProduceRequest && payload.records_len() > 0 {
            return Err(ProtocolError::UnexpectedPayload);
        }
        Ok(match kind {
            K::ApiVersionsRequest => Request::ApiVersions(api_versions::Request::decode(body(r.body_as_api_versions_request())?)),
            K::MetadataRequest => Request::Metadata(metadata::Request::decode(body(r.body_as_metadata_request())?)),
            K::CreateTopicsRequest => Request::CreateTopics(create_topics::Request::decode(body(r.body_as_create_topics_request())?)),
            K::DeleteTopicsRequest => Request::DeleteTopics(delete_topics::Request::decode(body(r.body_as_delete_topics_request())?)),
            K::ListTopicsRequest => Request::ListTopics(list_topics::Request::decode(body(r.body_as_list_topics_request())?)),
            K::DescribeTopicRequest => Request::DescribeTopic(describe_topic::Request::decode(body(r.body_as_describe_topic_request())?)),
            K::ProduceRequest => Request::Produce(produce::Request::decode(body(r.body_as_produce_request())?, payload)?),
            K::FetchRequest => Request::Fetch(fetch::Request::decode(body(r.body_as_fetch_request())?)),
            K::ListOffsetsRequest => Request::ListOffsets(list_offsets::Request::decode(body(r.body_as_list_offsets_request())?)),
            K::OffsetCommitRequest => Request::OffsetCommit(offset_commit::Request::decode(body(r.body_as_offset_commit_request())?)),
            K::OffsetFetchRequest => Request::OffsetFetch(offset_fetch::Request::decode(body(r.body_as_offset_fetch_request())?)),
            K::GroupHeartbeatRequest => Request::GroupHeartbeat(group_heartbeat::Request::decode(body(r.body_as_group_heartbeat_request())?)),
            K::FindCoordinatorRequest => Request::FindCoordinator(find_coordinator::Request::decode(body(r.body_as_find_coordinator_request())?)),
            K::ReplicaFetchRequest => Request::ReplicaFetch(replica_fetch::Request::decode(body(r.body_as_replica_fetch_request())?)),
            K::InitProducerIdRequest => Request::InitProducerId(init_producer_id::Request::decode(body(r.body_as_init_producer_id_request())?)),
            K::SaslAuthenticateRequest => Request::SaslAuthenticate(sasl_authenticate::Request::decode(body(r.body_as_sasl_authenticate_request())?)),
            K::AlterUsersRequest => Request::AlterUsers(security::AlterUsers::decode(body(r.body_as_alter_users_request())?)),
            K::ListUsersRequest => Request::ListUsers(security::ListUsers::decode(body(r.body_as_list_users_request())?)),
            K::AlterAclsRequest => Request::AlterAcls(security::AlterAcls::decode(body(r.body_as_alter_acls_request())?)),
            K::ListAclsRequest => Request::ListAcls(security::ListAcls::decode(body(r.body_as_list_acls_request())?)),
            k => return Err(ProtocolError::UnknownApi(k.0)),
        })
    }
}

/// Every API's response; record payloads are `Bytes` of the frame read.
#[derive(Debug)]
pub enum Response {
    ApiVersions(api_versions::Response),
    Metadata(metadata::Response),
    CreateTopics(create_topics::Response),
    DeleteTopics(delete_topics::Response),
    ListTopics(list_topics::Response),
    DescribeTopic(describe_topic::Response),
    Produce(produce::Response),
    Fetch(fetch::Response<Bytes>),
    ListOffsets(list_offsets::Response),
    OffsetCommit(offset_commit::Response),
    OffsetFetch(offset_fetch::Response),
    GroupHeartbeat(group_heartbeat::Response),
    FindCoordinator(find_coordinator::Response),
    ReplicaFetch(replica_fetch::Response<Bytes>),
    InitProducerId(init_producer_id::Response),
    SaslAuthenticate(sasl_authenticate::Response),
    AlterUsers(security::AlterUsersResponse),
    ListUsers(security::ListUsersResponse),
    AlterAcls(security::AlterAclsResponse),
    ListAcls(security::ListAclsResponse),
    /// The request as a whole failed.
    Error(ErrorCode, String),
}

impl Response {
    /// Reads a verified response, whichever API it answers.
    pub fn decode(r: fb::Response<'_>, payload: Bytes) -> Result<Self, ProtocolError> {
        use fb::ResponseBody as K;
        if r.error() != ErrorCode::None {
            return Ok(Response::Error(r.error(), codec::string(r.error_message())));
        }
        let kind = r.body_type();
        let fetch_like = kind == K::FetchResponse || kind == K::ReplicaFetchResponse;
        if !fetch_like && !payload.is_empty() {
            return Err(ProtocolError::UnexpectedPayload);
        }
        Ok(match kind {
            K::ApiVersionsResponse => Response::ApiVersions(DecodeResponse::decode_response(r, payload)?),
            K::MetadataResponse => Response::Metadata(DecodeResponse::decode_response(r, payload)?),
            K::CreateTopicsResponse => Response::CreateTopics(DecodeResponse::decode_response(r, payload)?),
            K::DeleteTopicsResponse => Response::DeleteTopics(DecodeResponse::decode_response(r, payload)?),
            K::ListTopicsResponse => Response::ListTopics(DecodeResponse::decode_response(r, payload)?),
            K::DescribeTopicResponse => Response::DescribeTopic(DecodeResponse::decode_response(r, payload)?),
            K::ProduceResponse => Response::Produce(DecodeResponse::decode_response(r, payload)?),
            K::FetchResponse => Response::Fetch(DecodeResponse::decode_response(r, payload)?),
            K::ListOffsetsResponse => Response::ListOffsets(DecodeResponse::decode_response(r, payload)?),
            K::OffsetCommitResponse => Response::OffsetCommit(DecodeResponse::decode_response(r, payload)?),
            K::OffsetFetchResponse => Response::OffsetFetch(DecodeResponse::decode_response(r, payload)?),
            K::GroupHeartbeatResponse => Response::GroupHeartbeat(DecodeResponse::decode_response(r, payload)?),
            K::FindCoordinatorResponse => Response::FindCoordinator(DecodeResponse::decode_response(r, payload)?),
            K::ReplicaFetchResponse => Response::ReplicaFetch(DecodeResponse::decode_response(r, payload)?),
            K::InitProducerIdResponse => Response::InitProducerId(DecodeResponse::decode_response(r, payload)?),
            K::SaslAuthenticateResponse => Response::SaslAuthenticate(DecodeResponse::decode_response(r, payload)?),
            K::AlterUsersResponse => Response::AlterUsers(DecodeResponse::decode_response(r, payload)?),
            K::ListUsersResponse => Response::ListUsers(DecodeResponse::decode_response(r, payload)?),
            K::AlterAclsResponse => Response::AlterAcls(DecodeResponse::decode_response(r, payload)?),
            K::ListAclsResponse => Response::ListAcls(DecodeResponse::decode_response(r, payload)?),
            _ => return Err(ProtocolError::MissingBody),
        })
    }
}

/// Implements the envelope traits of one API from its types' inherent
/// `encode` and `decode`.
macro_rules! api {
    (request $req:ty, $key:ident) => {
        impl $crate::protocol::RequestBody for $req {
            const KEY: $crate::protocol::fb::RequestBody = $crate::protocol::fb::RequestBody::$key;
            fn encode_body<'a>(&self, fbb: &mut flatbuffers::FlatBufferBuilder<'a>) -> flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset> {
                self.encode(fbb).as_union_value()
            }
        }
    };
    // A response whose records follow the message: encoded from any
    // `Records`, decoded with the frame's payload as `Bytes`.
    (records $resp:ident, $key:ident, $as:ident) => {
        impl<R: $crate::protocol::Records> $crate::protocol::ResponseBody for $resp<R> {
            const KEY: $crate::protocol::fb::ResponseBody = $crate::protocol::fb::ResponseBody::$key;
            fn encode_body<'a>(&self, fbb: &mut flatbuffers::FlatBufferBuilder<'a>) -> flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset> {
                self.encode(fbb).as_union_value()
            }
        }
        impl $crate::protocol::DecodeResponse for $resp<bytes::Bytes> {
            fn decode_response(r: $crate::protocol::fb::Response<'_>, payload: bytes::Bytes) -> Result<Self, $crate::protocol::ProtocolError> {
                Self::decode(r.$as().ok_or($crate::protocol::ProtocolError::MissingBody)?, payload)
            }
        }
    };
    (response $resp:ty, $key:ident, $as:ident) => {
        impl $crate::protocol::ResponseBody for $resp {
            const KEY: $crate::protocol::fb::ResponseBody = $crate::protocol::fb::ResponseBody::$key;
            fn encode_body<'a>(&self, fbb: &mut flatbuffers::FlatBufferBuilder<'a>) -> flatbuffers::WIPOffset<flatbuffers::UnionWIPOffset> {
                self.encode(fbb).as_union_value()
            }
        }
        impl $crate::protocol::DecodeResponse for $resp {
            fn decode_response(r: $crate::protocol::fb::Response<'_>, _payload: bytes::Bytes) -> Result<Self, $crate::protocol::ProtocolError> {
                Ok(Self::decode(r.$as().ok_or($crate::protocol::ProtocolError::MissingBody)?))
            }
        }
    };
}
pub(crate) use api;
