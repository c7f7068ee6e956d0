//! FindCoordinator: which broker coordinates a group.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{opt_str, string};
use super::envelope::api;
use super::{fb, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub group: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub error: ErrorCode,
    pub error_message: Option<String>,
    /// -1 with an error.
    pub node_id: i32,
    pub host: String,
    pub port: u16,
}

impl Request {
    pub fn decode(r: fb::FindCoordinatorRequest<'_>) -> Self {
        Request { group: r.group().to_string() }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::FindCoordinatorRequest<'a>> {
        let group = fbb.create_string(&self.group);
        fb::FindCoordinatorRequest::create(fbb, &fb::FindCoordinatorRequestArgs { group: Some(group) })
    }
}

impl Response {
    /// The coordinator could not be found.
    pub fn error(error: ErrorCode, message: String) -> Self {
        Response { error, error_message: Some(message), node_id: -1, host: String::new(), port: 0 }
    }

    pub fn decode(r: fb::FindCoordinatorResponse<'_>) -> Self {
        Response { error: r.error(), error_message: r.error_message().map(str::to_string), node_id: r.node_id(), host: string(r.host()), port: r.port() }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::FindCoordinatorResponse<'a>> {
        let error_message = opt_str(fbb, self.error_message.as_deref());
        let host = (self.error == ErrorCode::None).then(|| fbb.create_string(&self.host));
        fb::FindCoordinatorResponse::create(
            fbb,
            &fb::FindCoordinatorResponseArgs { error: self.error, error_message, node_id: self.node_id, host, port: self.port },
        )
    }
}

api!(request Request, FindCoordinatorRequest);
api!(response Response, FindCoordinatorResponse, body_as_find_coordinator_response);
