//! GroupHeartbeat: join, renew or leave a consumer group on its
//! coordinator; the response carries the member's assignment.
//! FindCoordinator: which broker that is.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::response::{error, respond, Outgoing};
use crate::group::membership::{Assignor, Subscription};
use crate::group::valid_group;
use crate::protocol::{find_coordinator, group_heartbeat, ErrorCode};
use crate::shard::{group_code, Shard};

/// Most topics one member may subscribe to.
pub const MAX_TOPICS_PER_MEMBER: usize = 1000;

const INVALID_GROUP: &str = "a group name is 1 to 255 bytes without NUL";

fn invalid_group(corr: u32) -> Outgoing {
    error(corr, ErrorCode::InvalidGroupId, INVALID_GROUP)
}

pub async fn heartbeat(shard: &Rc<Shard>, corr: u32, req: group_heartbeat::Request) -> Outgoing {
    if !valid_group(&req.group) {
        return invalid_group(corr);
    }
    if req.topics.len() > MAX_TOPICS_PER_MEMBER {
        return error(corr, ErrorCode::PolicyViolation, &format!("at most {MAX_TOPICS_PER_MEMBER} topics per member"));
    }
    let assignor = if req.assignor == group_heartbeat::Assignor::RoundRobin { Assignor::RoundRobin } else { Assignor::Range };
    let session_timeout_ms = u64::from(req.session_timeout_ms);
    let sub = Subscription { topics: req.topics, assignor, session_timeout_ms };
    let resp = match shard.group_heartbeat(req.group, req.member_id, sub, req.leave_group).await {
        Ok(hb) => {
            let mut by_topic: BTreeMap<String, Vec<u32>> = BTreeMap::new();
            for (t, p) in hb.assignment {
                by_topic.entry(t).or_default().push(p);
            }
            group_heartbeat::Response {
                error: ErrorCode::None,
                error_message: None,
                member_id: hb.member_id,
                generation: hb.generation,
                heartbeat_interval_ms: (session_timeout_ms / 3) as u32,
                assignment: by_topic.into_iter().collect(),
            }
        }
        Err(e) => group_heartbeat::Response::error(group_code(&e), e.to_string()),
    };
    respond(corr, &resp, Vec::new())
}

pub async fn find_coordinator(shard: &Rc<Shard>, corr: u32, req: find_coordinator::Request, external: bool) -> Outgoing {
    respond(corr, &coordinator(shard, &req.group, external).await, Vec::new())
}

/// The broker that coordinates `group`, at the address of the listener
/// asked (`external`). Shared by the native and the Kafka listener.
pub async fn coordinator(shard: &Rc<Shard>, group: &str, external: bool) -> find_coordinator::Response {
    if !valid_group(group) {
        return find_coordinator::Response::error(ErrorCode::InvalidGroupId, INVALID_GROUP.to_string());
    }
    match shard.find_coordinator(group, external).await {
        Ok((node_id, host, port)) => find_coordinator::Response { error: ErrorCode::None, error_message: None, node_id, host, port },
        Err((code, m)) => find_coordinator::Response::error(code, m),
    }
}
