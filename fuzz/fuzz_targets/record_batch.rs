//! Bytes from the network or the disk as record batches: validation, the
//! batch walk used by recovery, and full record decoding. Nothing may panic.
//!
//! Random bytes almost never pass the CRC, so half the inputs get a valid
//! length and CRC written in first; that lets the fuzzer reach the record
//! decoder behind the CRC check.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlog::record;

fuzz_target!(|input: &[u8]| {
    let Some((&mode, data)) = input.split_first() else { return };
    let mut data = data.to_vec();
    if mode & 1 == 1 && data.len() >= record::HEADER_BYTES {
        data[16] = record::MAGIC;
        record::seal(&mut data);
    }
    for b in record::batches(&data) {
        let Ok((start, info)) = b else { break };
        // The produce-time walk must accept exactly what the decoder reads.
        let walk = record::validate_records(&data[start..], &info);
        if let Ok(it) = record::RecordIter::new(&data[start..]) {
            let decoded: Result<Vec<_>, _> = it.collect();
            assert_eq!(walk.is_ok(), decoded.is_ok());
        }
    }
});
