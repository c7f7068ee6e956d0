//! OffsetCommit and OffsetFetch: a consumer group's committed positions,
//! kept by the group's coordinator shard.

use std::rc::Rc;

use super::response::{error, respond, Outgoing};
use crate::group::{valid_group, Committed};
use crate::protocol::offset_commit::PartitionResult;
use crate::protocol::{offset_commit, offset_fetch, ErrorCode, Topic};
use crate::shard::Shard;

/// Most partitions one request may commit or fetch.
pub const MAX_OFFSETS_PER_REQUEST: usize = 10_000;

/// Why a commit or fetch of `count` offsets is refused before its
/// group's coordinator sees it. Shared by the native and the Kafka
/// listener.
pub fn refusal(group: &str, count: usize) -> Option<(ErrorCode, String)> {
    if !valid_group(group) {
        return Some((ErrorCode::InvalidGroupId, "a group name is 1 to 255 bytes without NUL".into()));
    }
    if count > MAX_OFFSETS_PER_REQUEST {
        return Some((ErrorCode::PolicyViolation, format!("at most {MAX_OFFSETS_PER_REQUEST} offsets per request")));
    }
    None
}

fn refused(corr: u32, group: &str, count: usize) -> Option<Outgoing> {
    refusal(group, count).map(|(code, m)| error(corr, code, &m))
}

pub async fn commit(shard: &Rc<Shard>, corr: u32, req: offset_commit::Request) -> Outgoing {
    let wanted: Vec<(String, u32, Committed)> =
        req.topics.iter().flat_map(|t| t.partitions.iter().map(|&(p, o)| (t.name.clone(), p, Committed::offset(o)))).collect();
    if let Some(out) = refused(corr, &req.group, wanted.len()) {
        return out;
    }
    let codes = shard.commit_offsets(req.group, req.member, wanted).await;
    let topics = Topic::answer_all(&req.topics, codes, |&(partition, offset), error| PartitionResult { partition, error, offset });
    respond(corr, &offset_commit::Response { topics }, Vec::new())
}

pub async fn fetch(shard: &Rc<Shard>, corr: u32, req: offset_fetch::Request) -> Outgoing {
    let wanted: Vec<(String, u32)> = req.topics.iter().flat_map(|t| t.partitions.iter().map(|&p| (t.name.clone(), p))).collect();
    if let Some(out) = refused(corr, &req.group, wanted.len()) {
        return out;
    }
    let codes = shard.fetch_offsets(req.group, wanted).await;
    let topics = Topic::answer_all(&req.topics, codes, |&partition, (error, c)| PartitionResult { partition, error, offset: c.map_or(-1, |c| c.offset) });
    respond(corr, &offset_fetch::Response { topics }, Vec::new())
}
