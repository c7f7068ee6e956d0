//! Bytes from the network or the disk as record batches: validation, the
//! batch walk used by recovery, and full record decoding. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlog::record;

fuzz_target!(|data: &[u8]| {
    for b in record::batches(data) {
        let Ok((start, _)) = b else { break };
        if let Ok(it) = record::RecordIter::new(&data[start..]) {
            for r in it {
                let _ = r;
            }
        }
    }
    if let Ok(it) = record::RecordIter::new(data) {
        for r in it {
            let _ = r;
        }
    }
});
