//! Bytes from the network: a frame body through framing, flatbuffers
//! verification and a walk of every field a handler reads, then the
//! produce payload through batch validation. Nothing may panic.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use shardlog::protocol::{self, fb};
use shardlog::record;

fuzz_target!(|data: &[u8]| {
    let Ok(len) = protocol::frame_len(data.get(..4).and_then(|b| b.try_into().ok()).unwrap_or([0; 4]), 1 << 20) else { return };
    let body = BytesMut::from(&data[4.min(data.len())..]);
    let _ = len;
    let Ok((msg, payload)) = protocol::split_frame(body) else { return };
    let Ok(req) = protocol::parse_request(&msg) else { return };
    let _ = (req.api_version(), req.correlation_id(), req.client_id(), protocol::api_name(req.body_type()));
    if let Some(p) = req.body_as_produce_request() {
        let _ = (p.acks(), p.timeout_ms());
        let mut rest = &payload[..];
        for t in p.topics().iter().flatten() {
            let _ = t.name();
            for part in t.partitions().iter().flatten() {
                let n = (part.records_bytes() as usize).min(rest.len());
                let (mine, tail) = rest.split_at(n);
                rest = tail;
                // What the produce handler checks: header, CRC, record lengths.
                for (start, info) in record::batches(mine).map_while(Result::ok) {
                    let _ = record::validate_records(&mine[start..], &info);
                }
            }
        }
    }
    if let Some(f) = req.body_as_fetch_request() {
        let _ = (f.max_wait_ms(), f.min_bytes(), f.max_bytes());
        for t in f.topics().iter().flatten() {
            let _ = t.name();
            for p in t.partitions().iter().flatten() {
                let _ = (p.partition(), p.offset(), p.max_bytes());
            }
        }
    }
    if let Some(c) = req.body_as_create_topics_request() {
        for t in c.topics().iter().flatten() {
            let _ = (t.name(), t.partitions(), t.replication_factor());
            for kv in t.configs().iter().flatten() {
                let _ = (kv.key(), kv.value());
            }
        }
    }
    if let Some(d) = req.body_as_delete_topics_request() {
        for n in d.names().iter().flatten() {
            let _ = n;
        }
    }
    if let Some(m) = req.body_as_metadata_request() {
        for n in m.topics().iter().flatten() {
            let _ = n;
        }
    }
    if let Some(d) = req.body_as_describe_topic_request() {
        let _ = d.name();
    }
    if let Some(l) = req.body_as_list_offsets_request() {
        for t in l.topics().iter().flatten() {
            let _ = t.name();
            for p in t.partitions().iter().flatten() {
                let _ = (p.partition(), p.timestamp());
            }
        }
    }
    if let Some(c) = req.body_as_offset_commit_request() {
        let _ = (c.group(), c.member_id(), c.generation());
        for t in c.topics().iter().flatten() {
            let _ = t.name();
            for p in t.partitions().iter().flatten() {
                let _ = (p.partition(), p.offset());
            }
        }
    }
    if let Some(f) = req.body_as_offset_fetch_request() {
        let _ = f.group();
        for t in f.topics().iter().flatten() {
            let _ = (t.name(), t.partitions().map(|p| p.iter().count()));
        }
    }
    if let Some(h) = req.body_as_group_heartbeat_request() {
        let _ = (h.group(), h.member_id(), h.assignor(), h.session_timeout_ms(), h.leave_group());
        for t in h.topics().iter().flatten() {
            let _ = t;
        }
    }
    let _ = fb::RequestBody::ENUM_VALUES;
});
