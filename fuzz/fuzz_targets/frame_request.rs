//! Bytes from the network: a frame body through framing, flatbuffers
//! verification and the protocol's decoding of every API, then a
//! produce request's batches through the checks the broker runs. The same
//! bytes are also read as a response, which clients and a follower broker
//! decode. Nothing may panic.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use shardlog::protocol::{self, Request, Response};
use shardlog::record;

fuzz_target!(|data: &[u8]| {
    if protocol::frame_len(data.get(..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]), 1 << 20).is_err() {
        return;
    }
    let body = BytesMut::from(&data[4.min(data.len())..]);
    let Ok((msg, payload)) = protocol::split_frame(body) else { return };
    if let Ok(resp) = protocol::parse_response(&msg) {
        // `Response::decode` names every API: a new one cannot be missed.
        let _ = Response::decode(resp, Bytes::copy_from_slice(&payload));
    }
    let Ok(req) = protocol::parse_request(&msg) else { return };
    let _ = (req.api_version(), req.correlation_id(), req.client_id(), protocol::api_name(req.body_type()));
    // `Request::decode` names every API: a new one cannot be missed.
    if let Ok(Request::Produce(p)) = Request::decode(req, payload) {
        for records in p.records() {
            // What the produce handler checks: header, CRC, record lengths.
            for (start, info) in record::batches(records).map_while(Result::ok) {
                let _ = record::validate_records(&records[start..], &info);
            }
        }
    }
});
