//! CreateTopics and DeleteTopics: validated and committed by the controller
//! shard, applied on every shard before the response goes out.

use std::rc::Rc;

use super::response::{error, respond, Outgoing};
use super::session::{denied, Session};
use crate::auth::acl::{Operation, ResourceType};
use crate::cluster::metadata::{MetadataError, NewTopic};
use crate::protocol::create_topics::TopicResult;
use crate::protocol::{create_topics, delete_topics, ErrorCode};
use crate::shard::{metadata_code, Shard};

/// Most topics one request may create or delete.
pub const MAX_TOPICS_PER_REQUEST: usize = 1000;

fn results(names: Vec<String>, res: Vec<Result<(), MetadataError>>) -> Vec<TopicResult> {
    names
        .into_iter()
        .zip(res)
        .map(|(name, r)| match r {
            Ok(()) => TopicResult { name, error: ErrorCode::None, error_message: None },
            Err(e) => TopicResult { name, error: metadata_code(&e), error_message: Some(e.to_string()) },
        })
        .collect()
}

fn too_many() -> (ErrorCode, String) {
    (ErrorCode::PolicyViolation, format!("at most {MAX_TOPICS_PER_REQUEST} topics per request"))
}

pub async fn create(shard: &Rc<Shard>, session: &Session, corr: u32, req: create_topics::Request) -> Outgoing {
    match create_answer(shard, session, req).await {
        Ok(r) => respond(corr, &r, Vec::new()),
        Err((code, message)) => error(corr, code, &message),
    }
}

/// Creates the topics, each with its own result. Shared by the native and
/// the Kafka listener.
pub async fn create_answer(shard: &Rc<Shard>, session: &Session, mut req: create_topics::Request) -> Result<create_topics::Response, (ErrorCode, String)> {
    if req.topics.len() > MAX_TOPICS_PER_REQUEST {
        return Err(too_many());
    }
    // Create on the cluster allows any topic; on a topic, that topic.
    let on_cluster = session.allows_cluster(shard, Operation::Create);
    let (allowed, refused): (Vec<_>, Vec<_>) =
        req.topics.into_iter().partition(|t| on_cluster || session.allows(shard, Operation::Create, ResourceType::Topic, &t.name));
    req.topics = allowed;
    let mut out = refusals(refused.into_iter().map(|t| t.name), Operation::Create);
    let names: Vec<String> = req.topics.iter().map(|t| t.name.clone()).collect();
    let topics = req
        .topics
        .into_iter()
        .map(|t| NewTopic { name: t.name, partitions: t.partitions, replication_factor: t.replication_factor, configs: t.configs.into_iter().collect() })
        .collect();
    let res = if names.is_empty() { Vec::new() } else { shard.create_topics(topics).await };
    out.extend(results(names, res));
    Ok(create_topics::Response { results: out })
}

/// The results of topics the principal may not `op`.
fn refusals(names: impl Iterator<Item = String>, op: Operation) -> Vec<TopicResult> {
    names
        .map(|name| {
            let m = denied(op, ResourceType::Topic, &name);
            TopicResult { name, error: ErrorCode::TopicAuthorizationFailed, error_message: Some(m) }
        })
        .collect()
}

pub async fn delete(shard: &Rc<Shard>, session: &Session, corr: u32, req: delete_topics::Request) -> Outgoing {
    match delete_answer(shard, session, req).await {
        Ok(r) => respond(corr, &r, Vec::new()),
        Err((code, message)) => error(corr, code, &message),
    }
}

/// Deletes the topics, each with its own result. Shared by the native and
/// the Kafka listener.
pub async fn delete_answer(shard: &Rc<Shard>, session: &Session, req: delete_topics::Request) -> Result<delete_topics::Response, (ErrorCode, String)> {
    if req.names.len() > MAX_TOPICS_PER_REQUEST {
        return Err(too_many());
    }
    let (allowed, refused): (Vec<_>, Vec<_>) = req.names.into_iter().partition(|n| session.allows(shard, Operation::Delete, ResourceType::Topic, n));
    let mut out = refusals(refused.into_iter(), Operation::Delete);
    let res = if allowed.is_empty() { Vec::new() } else { shard.delete_topics(allowed.clone()).await };
    out.extend(results(allowed, res));
    Ok(delete_topics::Response { results: out })
}
