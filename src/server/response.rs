//! Building response frames.

use bytes::Bytes;
use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};

use crate::protocol::{fb, frame_head, ErrorCode};
use crate::storage::Chunk;

/// A response ready for the socket: the frame head (prefix and
/// flatbuffer), then stored batch bytes sent as they are.
pub struct Outgoing {
    pub head: Bytes,
    pub payload: Vec<Chunk>,
}

/// Finishes a response whose body `build` writes into the builder.
pub fn respond<'a>(corr: u32, mut fbb: FlatBufferBuilder<'a>, body: (fb::ResponseBody, WIPOffset<UnionWIPOffset>), payload: Vec<Chunk>) -> Outgoing {
    let r = fb::Response::create(
        &mut fbb,
        &fb::ResponseArgs { correlation_id: corr, error: ErrorCode::None, error_message: None, body_type: body.0, body: Some(body.1) },
    );
    fbb.finish(r, None);
    let payload_len = payload.iter().map(|c| c.len()).sum();
    Outgoing { head: frame_head(fbb.finished_data(), payload_len), payload }
}

/// A response that fails the whole request.
pub fn error(corr: u32, code: ErrorCode, message: &str) -> Outgoing {
    let mut fbb = FlatBufferBuilder::with_capacity(128 + message.len());
    let m = fbb.create_string(message);
    let r = fb::Response::create(
        &mut fbb,
        &fb::ResponseArgs { correlation_id: corr, error: code, error_message: Some(m), body_type: fb::ResponseBody::NONE, body: None },
    );
    fbb.finish(r, None);
    Outgoing { head: frame_head(fbb.finished_data(), 0), payload: Vec::new() }
}

/// Creates an optional string only when there is one.
pub fn opt_str<'a>(fbb: &mut FlatBufferBuilder<'a>, s: Option<&str>) -> Option<WIPOffset<&'a str>> {
    s.map(|s| fbb.create_string(s))
}
