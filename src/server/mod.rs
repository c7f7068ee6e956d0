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
pub mod security;
pub mod session;
pub mod topics;

use std::rc::Rc;

use bytes::BytesMut;

use crate::auth::acl::{Operation, ResourceType};
use crate::protocol::{self, ErrorCode, Request, APIS};
use crate::shard::Shard;
use response::{error, respond, Outgoing};
use session::{denied, Session};

/// An error code's name for metrics; `None` for no error.
pub fn error_name(e: ErrorCode) -> Option<&'static str> {
    (e != ErrorCode::None).then(|| e.variant_name().unwrap_or("Unknown"))
}

/// The first topic of `names` the session may not do `op` on, as the
/// error to answer the whole request with.
fn deny_topics<'a>(shard: &Shard, session: &Session, op: Operation, names: impl Iterator<Item = &'a str>) -> Option<(ErrorCode, String)> {
    session.denied_topic(shard, op, names).map(|t| (ErrorCode::TopicAuthorizationFailed, denied(op, ResourceType::Topic, t)))
}

fn deny_group(shard: &Shard, session: &Session, op: Operation, group: &str) -> Option<(ErrorCode, String)> {
    (!session.allows(shard, op, ResourceType::Group, group)).then(|| (ErrorCode::GroupAuthorizationFailed, denied(op, ResourceType::Group, group)))
}

fn deny_cluster(shard: &Shard, session: &Session, op: Operation) -> Option<(ErrorCode, String)> {
    (!session.allows_cluster(shard, op)).then(|| (ErrorCode::ClusterAuthorizationFailed, denied(op, ResourceType::Cluster, crate::auth::acl::CLUSTER)))
}

/// The check each request must pass before its handler runs, beyond the
/// per-topic filtering of listings (see `metadata`).
fn authorize(shard: &Shard, session: &Session, request: &Request<BytesMut>) -> Option<(ErrorCode, String)> {
    use Operation::*;
    match request {
        Request::ApiVersions(_) | Request::Metadata(_) | Request::ListTopics(_) | Request::SaslAuthenticate(_) => None,
        Request::DescribeTopic(r) => deny_topics(shard, session, Describe, std::iter::once(r.name.as_str())),
        Request::CreateTopics(_) | Request::DeleteTopics(_) => None,
        Request::Produce(r) => deny_topics(shard, session, Write, r.topics.iter().map(|t| t.name.as_str())),
        Request::Fetch(r) => deny_topics(shard, session, Read, r.topics.iter().map(|t| t.name.as_str())),
        Request::ListOffsets(r) => deny_topics(shard, session, Describe, r.topics.iter().map(|t| t.name.as_str())),
        Request::OffsetCommit(r) => {
            deny_group(shard, session, Read, &r.group).or_else(|| deny_topics(shard, session, Read, r.topics.iter().map(|t| t.name.as_str())))
        }
        Request::OffsetFetch(r) => {
            deny_group(shard, session, Describe, &r.group).or_else(|| deny_topics(shard, session, Describe, r.topics.iter().map(|t| t.name.as_str())))
        }
        Request::GroupHeartbeat(r) => {
            deny_group(shard, session, Read, &r.group).or_else(|| deny_topics(shard, session, Describe, r.topics.iter().map(String::as_str)))
        }
        Request::FindCoordinator(r) => deny_group(shard, session, Describe, &r.group),
        Request::ReplicaFetch(_) => (!session.may_replicate(shard))
            .then(|| (ErrorCode::ClusterAuthorizationFailed, "replica fetches come only from brokers with the cluster's peer certificate".into())),
        Request::InitProducerId(_) => (!session.allows_any(shard, Write, ResourceType::Topic))
            .then(|| (ErrorCode::ClusterAuthorizationFailed, "an idempotent producer needs write on some topic".into())),
        Request::AlterUsers(_) | Request::AlterAcls(_) => deny_cluster(shard, session, Alter),
        Request::ListUsers(_) | Request::ListAcls(_) => deny_cluster(shard, session, Describe),
    }
}

/// Decodes one frame body and runs its API's handler; `external`: it came
/// through the external listener (addresses in answers are external ones).
/// A request that fails authentication marks the session closing.
pub async fn dispatch(shard: &Rc<Shard>, session: &Session, body: BytesMut, external: bool) -> Option<Outgoing> {
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
    if !session.ready() && kind != protocol::fb::RequestBody::ApiVersionsRequest && kind != protocol::fb::RequestBody::SaslAuthenticateRequest {
        session.close();
        return Some(error(corr, ErrorCode::IllegalSaslState, "this broker requires SASL authentication (SaslAuthenticate) before any other request"));
    }
    let request = match Request::decode(req, payload) {
        Ok(r) => r,
        Err(e) => return Some(error(corr, e.code(), &e.to_string())),
    };
    if let Some((code, message)) = authorize(shard, session, &request) {
        return Some(error(corr, code, &message));
    }
    let out = match request {
        Request::ApiVersions(_) => respond(corr, &api_versions::handle(shard), Vec::new()),
        Request::Metadata(r) => respond(corr, &metadata::handle(shard, session, r, external).await, Vec::new()),
        Request::ListTopics(_) => respond(corr, &metadata::list_topics(shard, session).await, Vec::new()),
        Request::DescribeTopic(r) => respond(corr, &metadata::describe_topic(shard, r).await, Vec::new()),
        Request::CreateTopics(r) => topics::create(shard, session, corr, r).await,
        Request::DeleteTopics(r) => topics::delete(shard, session, corr, r).await,
        Request::Produce(r) => return produce::handle(shard, corr, r).await,
        Request::Fetch(r) => fetch::handle(shard, corr, r).await,
        Request::ListOffsets(r) => respond(corr, &list_offsets::handle(shard, r).await, Vec::new()),
        Request::OffsetCommit(r) => offsets::commit(shard, corr, r).await,
        Request::OffsetFetch(r) => offsets::fetch(shard, corr, r).await,
        Request::GroupHeartbeat(r) => groups::heartbeat(shard, corr, r).await,
        Request::FindCoordinator(r) => groups::find_coordinator(shard, corr, r, external).await,
        Request::ReplicaFetch(r) => replica_fetch::handle(shard, corr, r).await,
        Request::InitProducerId(_) => respond(corr, &produce::init_producer_id(shard).await, Vec::new()),
        Request::SaslAuthenticate(r) => respond(corr, &security::sasl_authenticate(shard, session, r), Vec::new()),
        Request::AlterUsers(r) => respond(corr, &security::alter_users(shard, r).await, Vec::new()),
        Request::ListUsers(_) => respond(corr, &security::list_users(shard).await, Vec::new()),
        Request::AlterAcls(r) => respond(corr, &security::alter_acls(shard, r).await, Vec::new()),
        Request::ListAcls(_) => respond(corr, &security::list_acls(shard).await, Vec::new()),
    };
    Some(out)
}
