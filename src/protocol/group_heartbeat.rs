//! GroupHeartbeat: join, renew or leave a consumer group on its
//! coordinator; the answer carries the member's assignment.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{opt_str, string, strings_in, strings_out};
use super::envelope::api;
use super::{fb, ErrorCode};

pub use super::fb::Assignor;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub group: String,
    /// `None` to join.
    pub member_id: Option<String>,
    pub topics: Vec<String>,
    pub assignor: Assignor,
    pub session_timeout_ms: u32,
    pub leave_group: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub error: ErrorCode,
    pub error_message: Option<String>,
    pub member_id: String,
    pub generation: i32,
    pub heartbeat_interval_ms: u32,
    /// `(topic, its partitions)` this member owns, topics in name order.
    pub assignment: Vec<(String, Vec<u32>)>,
}

impl Request {
    pub fn decode(r: fb::GroupHeartbeatRequest<'_>) -> Self {
        Request {
            group: r.group().to_string(),
            member_id: r.member_id().map(str::to_string),
            topics: strings_in(r.topics()),
            assignor: r.assignor(),
            session_timeout_ms: r.session_timeout_ms(),
            leave_group: r.leave_group(),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::GroupHeartbeatRequest<'a>> {
        let group = fbb.create_string(&self.group);
        let member_id = opt_str(fbb, self.member_id.as_deref());
        let topics = strings_out(fbb, &self.topics);
        fb::GroupHeartbeatRequest::create(
            fbb,
            &fb::GroupHeartbeatRequestArgs {
                group: Some(group),
                member_id,
                topics: Some(topics),
                assignor: self.assignor,
                session_timeout_ms: self.session_timeout_ms,
                leave_group: self.leave_group,
            },
        )
    }
}

impl Response {
    /// The heartbeat was refused.
    pub fn error(error: ErrorCode, message: String) -> Self {
        Response { error, error_message: Some(message), member_id: String::new(), generation: -1, heartbeat_interval_ms: 0, assignment: Vec::new() }
    }

    pub fn decode(r: fb::GroupHeartbeatResponse<'_>) -> Self {
        Response {
            error: r.error(),
            error_message: r.error_message().map(str::to_string),
            member_id: string(r.member_id()),
            generation: r.generation(),
            heartbeat_interval_ms: r.heartbeat_interval_ms(),
            assignment: r.assignment().iter().flatten().map(|t| (string(t.name()), t.partitions().map(|p| p.iter().collect()).unwrap_or_default())).collect(),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::GroupHeartbeatResponse<'a>> {
        if self.error != ErrorCode::None {
            let error_message = opt_str(fbb, self.error_message.as_deref());
            return fb::GroupHeartbeatResponse::create(fbb, &fb::GroupHeartbeatResponseArgs { error: self.error, error_message, ..Default::default() });
        }
        let assigned: Vec<_> = self
            .assignment
            .iter()
            .map(|(t, ps)| {
                let name = fbb.create_string(t);
                let ps = fbb.create_vector(ps);
                fb::AssignedTopic::create(fbb, &fb::AssignedTopicArgs { name: Some(name), partitions: Some(ps) })
            })
            .collect();
        let assigned = fbb.create_vector(&assigned);
        let member = fbb.create_string(&self.member_id);
        let error_message = opt_str(fbb, self.error_message.as_deref());
        fb::GroupHeartbeatResponse::create(
            fbb,
            &fb::GroupHeartbeatResponseArgs {
                error: self.error,
                error_message,
                member_id: Some(member),
                generation: self.generation,
                heartbeat_interval_ms: self.heartbeat_interval_ms,
                assignment: Some(assigned),
            },
        )
    }
}

api!(request Request, GroupHeartbeatRequest);
api!(response Response, GroupHeartbeatResponse, body_as_group_heartbeat_response);
