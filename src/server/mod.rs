//! The network front: listener, connections, and one handler per API.
//!
//! `dispatch` decodes a frame into the protocol's typed [`Request`]; a
//! handler turns it into a typed response, reaching partitions only
//! through [`Shard`], which routes to the owning shard, and `response`
//! encodes it. Handlers never see wire bytes but the records they store
//! or send, and never panic on client input: every bad field is an error
//! code.

pub mod api_versions;
pub mod budget;
pub mod connection;
pub mod fetch;
pub mod groups;
pub mod http;
pub mod kafka;
pub mod list_offsets;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod replica_fetch;
pub mod response;
pub mod topics;

use std::rc::Rc;

use bytes::BytesMut;

use crate::protocol::{self, ErrorCode, Request, APIS};
use crate::shard::Shard;
use response::{error, respond, Outgoing};

/// An error code's name for metrics; `None` for no error.
pub fn error_name(e: ErrorCode) -> Option<&'static str> {
    (e != ErrorCode::None).then(|| e.variant_name().unwrap_or("Unknown"))
}

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
    crate::metrics::request("native", protocol::api_name(kind).trim_end_matches("Request"));
    if shard.is_shutting_down() {
        return Some(connection::stopping(corr));
    }
    let request = match Request::decode(req, payload) {
        Ok(r) => r,
        Err(e) => return Some(error(corr, e.code(), &e.to_string())),
    };
    let out = match request {
        Request::ApiVersions(_) => respond(corr, &api_versions::handle(shard), Vec::new()),
        Request::Metadata(r) => respond(corr, &metadata::handle(shard, r, external).await, Vec::new()),
        Request::ListTopics(_) => respond(corr, &metadata::list_topics(shard).await, Vec::new()),
        Request::DescribeTopic(r) => respond(corr, &metadata::describe_topic(shard, r).await, Vec::new()),
        Request::CreateTopics(r) => topics::create(shard, corr, r).await,
        Request::DeleteTopics(r) => topics::delete(shard, corr, r).await,
        Request::Produce(r) => return produce::handle(shard, corr, r).await,
        Request::Fetch(r) => fetch::handle(shard, corr, r).await,
        Request::ListOffsets(r) => respond(corr, &list_offsets::handle(shard, r).await, Vec::new()),
        Request::OffsetCommit(r) => offsets::commit(shard, corr, r).await,
        Request::OffsetFetch(r) => offsets::fetch(shard, corr, r).await,
        Request::GroupHeartbeat(r) => groups::heartbeat(shard, corr, r).await,
        Request::FindCoordinator(r) => groups::find_coordinator(shard, corr, r, external).await,
        Request::ReplicaFetch(r) => replica_fetch::handle(shard, corr, r).await,
        Request::InitProducerId(_) => respond(corr, &produce::init_producer_id(shard).await, Vec::new()),
    };
    Some(out)
}
