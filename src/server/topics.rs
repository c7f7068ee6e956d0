//! CreateTopics and DeleteTopics: validated and committed by the controller
//! shard, applied on every shard before the response goes out.

use std::collections::BTreeMap;
use std::rc::Rc;

use flatbuffers::FlatBufferBuilder;

use super::response::{opt_str, respond, Outgoing};
use crate::cluster::metadata::{MetadataError, NewTopic};
use crate::protocol::{fb, ErrorCode};
use crate::shard::{metadata_code, Shard};

/// Most topics one request may create or delete.
pub const MAX_TOPICS_PER_REQUEST: usize = 1000;

fn results(corr: u32, mut fbb: FlatBufferBuilder<'_>, names: &[String], res: Vec<Result<(), MetadataError>>, create: bool) -> Outgoing {
    let rs: Vec<_> = names
        .iter()
        .zip(res)
        .map(|(n, r)| {
            let name = fbb.create_string(n);
            let (error, msg) = match &r {
                Ok(()) => (ErrorCode::None, None),
                Err(e) => (metadata_code(e), Some(e.to_string())),
            };
            let msg = opt_str(&mut fbb, msg.as_deref());
            fb::TopicResult::create(&mut fbb, &fb::TopicResultArgs { name: Some(name), error, error_message: msg })
        })
        .collect();
    let rs = fbb.create_vector(&rs);
    if create {
        let body = fb::CreateTopicsResponse::create(&mut fbb, &fb::CreateTopicsResponseArgs { results: Some(rs) });
        respond(corr, fbb, (fb::ResponseBody::CreateTopicsResponse, body.as_union_value()), Vec::new())
    } else {
        let body = fb::DeleteTopicsResponse::create(&mut fbb, &fb::DeleteTopicsResponseArgs { results: Some(rs) });
        respond(corr, fbb, (fb::ResponseBody::DeleteTopicsResponse, body.as_union_value()), Vec::new())
    }
}

pub async fn create(shard: &Rc<Shard>, corr: u32, req: fb::CreateTopicsRequest<'_>) -> Outgoing {
    let topics: Vec<NewTopic> = req
        .topics()
        .iter()
        .flatten()
        .map(|t| NewTopic {
            name: t.name().to_string(),
            partitions: t.partitions(),
            replication_factor: t.replication_factor(),
            configs: t.configs().iter().flatten().map(|c| (c.key().to_string(), c.value().to_string())).collect::<BTreeMap<_, _>>(),
        })
        .collect();
    if topics.len() > MAX_TOPICS_PER_REQUEST {
        return super::response::error(corr, ErrorCode::PolicyViolation, &format!("at most {MAX_TOPICS_PER_REQUEST} topics per request"));
    }
    let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
    let res = shard.create_topics(topics).await;
    results(corr, FlatBufferBuilder::with_capacity(256), &names, res, true)
}

pub async fn delete(shard: &Rc<Shard>, corr: u32, req: fb::DeleteTopicsRequest<'_>) -> Outgoing {
    let names: Vec<String> = req.names().iter().flatten().map(str::to_string).collect();
    if names.len() > MAX_TOPICS_PER_REQUEST {
        return super::response::error(corr, ErrorCode::PolicyViolation, &format!("at most {MAX_TOPICS_PER_REQUEST} topics per request"));
    }
    let res = shard.delete_topics(names.clone()).await;
    results(corr, FlatBufferBuilder::with_capacity(256), &names, res, false)
}
