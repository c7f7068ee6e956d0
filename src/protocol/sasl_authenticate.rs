//! SaslAuthenticate: SASL on the native protocol. The first request of
//! an exchange names the mechanism (Kafka's SaslHandshake); each carries
//! the client's next message, each answer the server's.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{opt_str, strings_in, strings_out};
use super::envelope::api;
use super::{fb, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Set on an exchange's first request.
    pub mechanism: Option<String>,
    pub auth_bytes: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub error: ErrorCode,
    pub error_message: Option<String>,
    pub auth_bytes: Vec<u8>,
    /// The mechanisms the broker offers.
    pub mechanisms: Vec<String>,
}

impl Request {
    pub fn decode(r: fb::SaslAuthenticateRequest<'_>) -> Self {
        Request { mechanism: r.mechanism().map(str::to_string), auth_bytes: r.auth_bytes().map(|b| b.bytes().to_vec()).unwrap_or_default() }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::SaslAuthenticateRequest<'a>> {
        let mechanism = opt_str(fbb, self.mechanism.as_deref());
        let auth_bytes = Some(fbb.create_vector(&self.auth_bytes));
        fb::SaslAuthenticateRequest::create(fbb, &fb::SaslAuthenticateRequestArgs { mechanism, auth_bytes })
    }
}

impl Response {
    pub fn decode(r: fb::SaslAuthenticateResponse<'_>) -> Self {
        Response {
            error: r.error(),
            error_message: r.error_message().map(str::to_string),
            auth_bytes: r.auth_bytes().map(|b| b.bytes().to_vec()).unwrap_or_default(),
            mechanisms: strings_in(r.mechanisms()),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::SaslAuthenticateResponse<'a>> {
        let error_message = opt_str(fbb, self.error_message.as_deref());
        let auth_bytes = Some(fbb.create_vector(&self.auth_bytes));
        let mechanisms = Some(strings_out(fbb, &self.mechanisms));
        fb::SaslAuthenticateResponse::create(fbb, &fb::SaslAuthenticateResponseArgs { error: self.error, error_message, auth_bytes, mechanisms })
    }
}

api!(request Request, SaslAuthenticateRequest);
api!(response Response, SaslAuthenticateResponse, body_as_sasl_authenticate_response);
