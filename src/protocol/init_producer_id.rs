//! InitProducerId: an id for an idempotent producer, unique in the
//! cluster.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::opt_str;
use super::envelope::api;
use super::{fb, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub error: ErrorCode,
    pub error_message: Option<String>,
    /// -1 with an error.
    pub producer_id: i64,
    pub producer_epoch: i16,
}

impl Request {
    pub fn decode(_: fb::InitProducerIdRequest<'_>) -> Self {
        Request
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::InitProducerIdRequest<'a>> {
        fb::InitProducerIdRequest::create(fbb, &fb::InitProducerIdRequestArgs {})
    }
}

impl Response {
    pub fn error(error: ErrorCode, message: String) -> Self {
        Response { error, error_message: Some(message), producer_id: -1, producer_epoch: -1 }
    }

    pub fn decode(r: fb::InitProducerIdResponse<'_>) -> Self {
        Response { error: r.error(), error_message: r.error_message().map(str::to_string), producer_id: r.producer_id(), producer_epoch: r.producer_epoch() }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::InitProducerIdResponse<'a>> {
        let error_message = opt_str(fbb, self.error_message.as_deref());
        fb::InitProducerIdResponse::create(
            fbb,
            &fb::InitProducerIdResponseArgs { error: self.error, error_message, producer_id: self.producer_id, producer_epoch: self.producer_epoch },
        )
    }
}

api!(request Request, InitProducerIdRequest);
api!(response Response, InitProducerIdResponse, body_as_init_producer_id_response);
