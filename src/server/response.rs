//! Building response frames from the protocol's typed responses.

use bytes::Bytes;
use flatbuffers::FlatBufferBuilder;

use crate::protocol::{self, frame_head, ErrorCode, ResponseBody};
use crate::storage::Chunk;

/// A response ready for the socket: the frame head (prefix and
/// flatbuffer), then stored batch bytes sent as they are.
pub struct Outgoing {
    pub head: Bytes,
    pub payload: Vec<Chunk>,
}

/// The frame of a response whose records (`payload`, possibly none)
/// follow its message.
pub fn respond<B: ResponseBody>(corr: u32, body: &B, payload: Vec<Chunk>) -> Outgoing {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let message = protocol::encode_response(&mut fbb, corr, body);
    let payload_len = payload.iter().map(|c| c.len()).sum();
    Outgoing { head: frame_head(message, payload_len), payload }
}

/// A response that fails the whole request.
pub fn error(corr: u32, code: ErrorCode, message: &str) -> Outgoing {
    let mut fbb = FlatBufferBuilder::with_capacity(128 + message.len());
    Outgoing { head: frame_head(protocol::encode_error(&mut fbb, corr, code, message), 0), payload: Vec::new() }
}

/// The frame of a response whose records live in its body (Fetch,
/// ReplicaFetch): the message is encoded with their lengths, then `take`
/// moves the stored chunks out, in message order, to be sent as they are.
pub fn respond_records<B: ResponseBody>(corr: u32, mut body: B, take: impl FnOnce(&mut B) -> Vec<Chunk>) -> Outgoing {
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let message = protocol::encode_response(&mut fbb, corr, &body);
    let payload = take(&mut body);
    let payload_len = payload.iter().map(|c| c.len()).sum();
    Outgoing { head: frame_head(message, payload_len), payload }
}
