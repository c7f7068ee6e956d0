//! OffsetCommit and OffsetFetch: a consumer group's committed positions,
//! kept by the group's coordinator shard.

use std::rc::Rc;

use flatbuffers::FlatBufferBuilder;

use super::response::{error, respond, Outgoing};
use crate::group::valid_group;
use crate::protocol::{fb, ErrorCode};
use crate::shard::Shard;

/// Most partitions one request may commit or fetch.
pub const MAX_OFFSETS_PER_REQUEST: usize = 10_000;

fn results(corr: u32, names: &[(usize, &str, u32)], topics: &[&str], codes: &[(ErrorCode, i64)], commit: bool) -> Outgoing {
    let mut fbb = FlatBufferBuilder::with_capacity(256 + 24 * codes.len());
    let mut out = Vec::new();
    for (ti, name) in topics.iter().enumerate() {
        let parts: Vec<_> = names
            .iter()
            .zip(codes)
            .filter(|((i, _, _), _)| *i == ti)
            .map(|((_, _, p), (e, o))| fb::OffsetPartitionResult::create(&mut fbb, &fb::OffsetPartitionResultArgs { partition: *p, error: *e, offset: *o }))
            .collect();
        let parts = fbb.create_vector(&parts);
        let n = fbb.create_string(name);
        out.push(fb::OffsetTopicResult::create(&mut fbb, &fb::OffsetTopicResultArgs { name: Some(n), partitions: Some(parts) }));
    }
    let topics = fbb.create_vector(&out);
    if commit {
        let body = fb::OffsetCommitResponse::create(&mut fbb, &fb::OffsetCommitResponseArgs { topics: Some(topics) });
        respond(corr, fbb, (fb::ResponseBody::OffsetCommitResponse, body.as_union_value()), Vec::new())
    } else {
        let body = fb::OffsetFetchResponse::create(&mut fbb, &fb::OffsetFetchResponseArgs { topics: Some(topics) });
        respond(corr, fbb, (fb::ResponseBody::OffsetFetchResponse, body.as_union_value()), Vec::new())
    }
}

pub async fn commit(shard: &Rc<Shard>, corr: u32, req: fb::OffsetCommitRequest<'_>) -> Outgoing {
    if !valid_group(req.group()) {
        return error(corr, ErrorCode::InvalidGroupId, "a group name is 1 to 255 bytes without NUL");
    }
    let topics: Vec<&str> = req.topics().iter().flatten().map(|t| t.name()).collect();
    let wanted: Vec<(usize, &str, u32, i64)> = req
        .topics()
        .iter()
        .flatten()
        .enumerate()
        .flat_map(|(i, t)| t.partitions().into_iter().flatten().map(move |p| (i, t.name(), p.partition(), p.offset())))
        .collect();
    if wanted.len() > MAX_OFFSETS_PER_REQUEST {
        return error(corr, ErrorCode::PolicyViolation, &format!("at most {MAX_OFFSETS_PER_REQUEST} offsets per request"));
    }
    let member = req.member_id().map(|m| (m.to_string(), req.generation()));
    let codes = shard.commit_offsets(req.group().to_string(), member, wanted.iter().map(|&(_, t, p, o)| (t.to_string(), p, o)).collect()).await;
    let names: Vec<(usize, &str, u32)> = wanted.iter().map(|&(i, t, p, _)| (i, t, p)).collect();
    let codes: Vec<(ErrorCode, i64)> = codes.into_iter().zip(&wanted).map(|(c, w)| (c, w.3)).collect();
    results(corr, &names, &topics, &codes, true)
}

pub async fn fetch(shard: &Rc<Shard>, corr: u32, req: fb::OffsetFetchRequest<'_>) -> Outgoing {
    if !valid_group(req.group()) {
        return error(corr, ErrorCode::InvalidGroupId, "a group name is 1 to 255 bytes without NUL");
    }
    let topics: Vec<&str> = req.topics().iter().flatten().map(|t| t.name()).collect();
    let names: Vec<(usize, &str, u32)> =
        req.topics().iter().flatten().enumerate().flat_map(|(i, t)| t.partitions().into_iter().flatten().map(move |p| (i, t.name(), p))).collect();
    if names.len() > MAX_OFFSETS_PER_REQUEST {
        return error(corr, ErrorCode::PolicyViolation, &format!("at most {MAX_OFFSETS_PER_REQUEST} offsets per request"));
    }
    let codes = shard.fetch_offsets(req.group().to_string(), names.iter().map(|&(_, t, p)| (t.to_string(), p)).collect()).await;
    results(corr, &names, &topics, &codes, false)
}
