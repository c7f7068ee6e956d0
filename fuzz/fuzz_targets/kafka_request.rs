//! Bytes on the Kafka port: the connection's first 8 bytes through the
//! protocol test, the size prefix through its bounds, and the frame body
//! through the Kafka request reader of every served API. Nothing may
//! panic, and nothing may allocate past what the bytes can hold (libFuzzer's
//! `-rss_limit_mb` and `-malloc_limit_mb` catch a reservation made from a
//! count the client sent).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlog::protocol::kafka;

fuzz_target!(|data: &[u8]| {
    if let Some(first) = data.first_chunk::<8>() {
        let _ = kafka::is_kafka(*first);
    }
    if let Some(prefix) = data.first_chunk::<4>() {
        let _ = kafka::frame_len(*prefix, 1 << 20);
    }
    if let Ok(d) = kafka::decode(data) {
        // A produce request's record ranges lie within the frame.
        if let kafka::Request::Produce(p) = &d.request {
            for t in &p.topics {
                for (_, range) in &t.partitions {
                    if let Some(r) = range {
                        assert!(r.start <= r.end && r.end <= data.len());
                    }
                }
            }
        }
    }
});
