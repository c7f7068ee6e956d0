//! GroupHeartbeat: join, renew or leave a consumer group on its
//! coordinator; the response carries the member's assignment.

use std::collections::BTreeMap;
use std::rc::Rc;

use flatbuffers::FlatBufferBuilder;

use super::response::{error, opt_str, respond, Outgoing};
use crate::group::membership::{Assignor, Subscription};
use crate::group::valid_group;
use crate::protocol::{fb, ErrorCode};
use crate::shard::{group_code, Shard};

/// Most topics one member may subscribe to.
pub const MAX_TOPICS_PER_MEMBER: usize = 1000;

pub async fn heartbeat(shard: &Rc<Shard>, corr: u32, req: fb::GroupHeartbeatRequest<'_>) -> Outgoing {
    if !valid_group(req.group()) {
        return error(corr, ErrorCode::InvalidGroupId, "a group name is 1 to 255 bytes without NUL");
    }
    let topics: Vec<String> = req.topics().iter().flatten().map(str::to_string).collect();
    if topics.len() > MAX_TOPICS_PER_MEMBER {
        return error(corr, ErrorCode::PolicyViolation, &format!("at most {MAX_TOPICS_PER_MEMBER} topics per member"));
    }
    let assignor = if req.assignor() == fb::Assignor::RoundRobin { Assignor::RoundRobin } else { Assignor::Range };
    let session_timeout_ms = u64::from(req.session_timeout_ms());
    let sub = Subscription { topics, assignor, session_timeout_ms };
    let r = shard.group_heartbeat(req.group().to_string(), req.member_id().map(str::to_string), sub, req.leave_group()).await;
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let body = match r {
        Ok(hb) => {
            let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
            for (t, p) in &hb.assignment {
                by_topic.entry(t.as_str()).or_default().push(*p);
            }
            let assigned: Vec<_> = by_topic
                .iter()
                .map(|(t, ps)| {
                    let name = fbb.create_string(t);
                    let ps = fbb.create_vector(ps);
                    fb::AssignedTopic::create(&mut fbb, &fb::AssignedTopicArgs { name: Some(name), partitions: Some(ps) })
                })
                .collect();
            let assigned = fbb.create_vector(&assigned);
            let member = fbb.create_string(&hb.member_id);
            fb::GroupHeartbeatResponse::create(
                &mut fbb,
                &fb::GroupHeartbeatResponseArgs {
                    error: ErrorCode::None,
                    error_message: None,
                    member_id: Some(member),
                    generation: hb.generation,
                    heartbeat_interval_ms: (session_timeout_ms / 3) as u32,
                    assignment: Some(assigned),
                },
            )
        }
        Err(e) => {
            let msg = opt_str(&mut fbb, Some(&e.to_string()));
            fb::GroupHeartbeatResponse::create(&mut fbb, &fb::GroupHeartbeatResponseArgs { error: group_code(&e), error_message: msg, ..Default::default() })
        }
    };
    respond(corr, fbb, (fb::ResponseBody::GroupHeartbeatResponse, body.as_union_value()), Vec::new())
}

pub async fn find_coordinator(shard: &Rc<Shard>, corr: u32, req: fb::FindCoordinatorRequest<'_>, external: bool) -> Outgoing {
    if !valid_group(req.group()) {
        return error(corr, ErrorCode::InvalidGroupId, "a group name is 1 to 255 bytes without NUL");
    }
    let r = shard.find_coordinator(req.group(), external).await;
    let mut fbb = FlatBufferBuilder::with_capacity(128);
    let body = match r {
        Ok((node_id, host, port)) => {
            let host = fbb.create_string(&host);
            fb::FindCoordinatorResponse::create(
                &mut fbb,
                &fb::FindCoordinatorResponseArgs { error: ErrorCode::None, error_message: None, node_id, host: Some(host), port },
            )
        }
        Err((code, m)) => {
            let msg = opt_str(&mut fbb, Some(&m));
            fb::FindCoordinatorResponse::create(
                &mut fbb,
                &fb::FindCoordinatorResponseArgs { error: code, error_message: msg, node_id: -1, ..Default::default() },
            )
        }
    };
    respond(corr, fbb, (fb::ResponseBody::FindCoordinatorResponse, body.as_union_value()), Vec::new())
}
