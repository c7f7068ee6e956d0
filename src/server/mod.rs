//! The network front: listener, connections, and one handler per API.
//!
//! A handler turns a verified request into a response; it reaches
//! partitions only through [`Shard`], which routes to the owning shard.
//! Handlers never panic on client input: every bad field is an error code.

pub mod api_versions;
pub mod budget;
pub mod connection;
pub mod fetch;
pub mod groups;
pub mod list_offsets;
pub mod listener;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod replica_fetch;
pub mod response;
pub mod topics;

use std::rc::Rc;

use bytes::BytesMut;

use crate::protocol::{self, fb, ErrorCode, APIS};
use crate::shard::Shard;
use response::{error, Outgoing};

/// Decodes one frame body and runs its API's handler; `external`: it came
/// through the external listener (addresses in answers are external ones).
pub async fn dispatch(shard: &Rc<Shard>, body: BytesMut, external: bool) -> Option<Outgoing> {
    let (message, payload) = match protocol::split_frame(body) {
        Ok(x) => x,
        Err(e) => return Some(error(0, e.code(), &e.to_string())),
    };
    let req = match protocol::parse_request(&message) {
        Ok(r) => r,
        Err(e) => return Some(error(0, e.code(), &e.to_string())),
    };
    let corr = req.correlation_id();
    let kind = req.body_type();
    let Some(&(_, min, max)) = APIS.iter().find(|(k, _, _)| *k == kind) else {
        return Some(error(corr, ErrorCode::UnsupportedApi, &format!("API key {} is not served by this broker", kind.0)));
    };
    if req.api_version() < min || req.api_version() > max {
        return Some(error(
            corr,
            ErrorCode::UnsupportedVersion,
            &format!("{} version {} is not served (versions {min}..={max} are)", protocol::api_name(kind), req.api_version()),
        ));
    }
    if shard.is_shutting_down() {
        return Some(connection::stopping(corr));
    }
    if !payload.is_empty() && kind != fb::RequestBody::ProduceRequest {
        return Some(error(corr, ErrorCode::InvalidRequest, "only Produce requests carry a payload"));
    }
    macro_rules! body {
        ($get:ident) => {
            match req.$get() {
                Some(b) => b,
                None => return Some(error(corr, ErrorCode::InvalidRequest, "the request body is missing")),
            }
        };
    }
    let out = match kind {
        fb::RequestBody::ApiVersionsRequest => api_versions::handle(shard, corr),
        fb::RequestBody::MetadataRequest => metadata::handle(shard, corr, body!(body_as_metadata_request), external).await,
        fb::RequestBody::ListTopicsRequest => metadata::list_topics(shard, corr).await,
        fb::RequestBody::DescribeTopicRequest => metadata::describe_topic(shard, corr, body!(body_as_describe_topic_request)).await,
        fb::RequestBody::CreateTopicsRequest => topics::create(shard, corr, body!(body_as_create_topics_request)).await,
        fb::RequestBody::DeleteTopicsRequest => topics::delete(shard, corr, body!(body_as_delete_topics_request)).await,
        fb::RequestBody::ProduceRequest => return produce::handle(shard, corr, body!(body_as_produce_request), payload).await,
        fb::RequestBody::FetchRequest => fetch::handle(shard, corr, body!(body_as_fetch_request)).await,
        fb::RequestBody::ListOffsetsRequest => list_offsets::handle(shard, corr, body!(body_as_list_offsets_request)).await,
        fb::RequestBody::OffsetCommitRequest => offsets::commit(shard, corr, body!(body_as_offset_commit_request)).await,
        fb::RequestBody::OffsetFetchRequest => offsets::fetch(shard, corr, body!(body_as_offset_fetch_request)).await,
        fb::RequestBody::GroupHeartbeatRequest => groups::heartbeat(shard, corr, body!(body_as_group_heartbeat_request)).await,
        fb::RequestBody::FindCoordinatorRequest => groups::find_coordinator(shard, corr, body!(body_as_find_coordinator_request), external).await,
        fb::RequestBody::ReplicaFetchRequest => replica_fetch::handle(shard, corr, body!(body_as_replica_fetch_request)).await,
        _ => error(corr, ErrorCode::UnsupportedApi, "unknown API"),
    };
    Some(out)
}
