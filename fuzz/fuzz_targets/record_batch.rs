//! Bytes from the network or the disk as record batches: validation, the
//! batch walk used by recovery, inflating compressed records, and full
//! record decoding. Nothing may panic.
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
        // The produce-time walk must accept exactly what the decoder reads,
        // from the batch or, compressed, from its inflated copy.
        let walk = record::validate_records(&data[start..], &info);
        let inflated = match info.codec() {
            0 => None,
            _ => match record::inflate(&data[start..], &info) {
                Ok(b) => Some(b),
                Err(_) => {
                    assert!(walk.is_err(), "a batch that does not inflate passed the walk");
                    continue;
                }
            },
        };
        if let Ok(it) = record::RecordIter::new(inflated.as_deref().unwrap_or(&data[start..])) {
            let decoded: Result<Vec<_>, _> = it.collect();
            assert_eq!(walk.is_ok(), decoded.is_ok());
        }
    }
});
