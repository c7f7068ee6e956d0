use super::*;
use proptest::prelude::*;

type OwnedRecord = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<(String, Option<Vec<u8>>)>);

fn build(records: &[OwnedRecord]) -> Vec<u8> {
    let mut b = BatchBuilder::new(256);
    for (ts, k, v, hs) in records {
        let hs: Vec<Header<'_>> = hs.iter().map(|(k, v)| Header { key: k, value: v.as_deref() }).collect();
        let before = b.encoded_len();
        let expect = b.record_len(*ts, k.as_deref(), v.as_deref(), &hs);
        b.push(*ts, k.as_deref(), v.as_deref(), &hs);
        assert_eq!(b.encoded_len() - before, expect);
    }
    b.finish()
}

fn record_strategy() -> impl Strategy<Value = OwnedRecord> {
    (
        0i64..4_000_000_000_000,
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        proptest::collection::vec(("[a-z]{0,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8))), 0..3),
    )
}

proptest! {
    #[test]
    fn round_trip(records in proptest::collection::vec(record_strategy(), 1..20), base in 0i64..1 << 50) {
        let mut batch = build(&records);
        set_base_offset(&mut batch, base);
        set_leader_epoch(&mut batch, 7);
        let info = validate(&batch).unwrap();
        prop_assert_eq!(info.base_offset, base);
        prop_assert_eq!(info.leader_epoch, 7);
        prop_assert_eq!(info.record_count as usize, records.len());
        prop_assert_eq!(info.batch_len as usize, batch.len());
        prop_assert_eq!(info.first_timestamp, records[0].0);
        prop_assert_eq!(info.max_timestamp, records.iter().map(|r| r.0).max().unwrap());
        let decoded: Vec<_> = RecordIter::new(&batch).unwrap().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(decoded.len(), records.len());
        for (i, (r, want)) in decoded.iter().zip(&records).enumerate() {
            prop_assert_eq!(r.offset, base + i as i64);
            prop_assert_eq!(r.timestamp_ms, want.0);
            prop_assert_eq!(r.key, want.1.as_deref());
            prop_assert_eq!(r.value, want.2.as_deref());
            let hs: Vec<_> = want.3.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
            prop_assert_eq!(&r.headers, &hs);
        }
    }

    #[test]
    fn truncation_is_an_error(records in proptest::collection::vec(record_strategy(), 1..5), cut in any::<prop::sample::Index>()) {
        let batch = build(&records);
        let cut = cut.index(batch.len());
        prop_assert!(validate(&batch[..cut]).is_err());
        prop_assert!(RecordIter::new(&batch[..cut]).is_err());
    }

    /// The produce-time walk accepts exactly the batches a consumer can
    /// decode: damage a record byte (or cut the batch one byte short),
    /// recompute the CRC as a hostile producer would, and both agree.
    #[test]
    fn record_walk_agrees_with_the_decoder(
        records in proptest::collection::vec(record_strategy(), 1..8),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        shorten in any::<bool>(),
    ) {
        let mut batch = build(&records);
        if shorten {
            batch.pop();
        } else {
            let i = HEADER_BYTES + at.index(batch.len() - HEADER_BYTES);
            batch[i] = byte;
        }
        seal(&mut batch);
        if let Ok(info) = validate(&batch) {
            let walk = validate_records(&batch, &info);
            let decode: Result<Vec<_>, _> = RecordIter::new(&batch).unwrap().collect();
            prop_assert_eq!(walk.is_ok(), decode.is_ok(), "walk {:?} vs decode {:?}", walk, decode.err());
            if shorten {
                prop_assert!(walk.is_err());
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = validate(&bytes);
        if let Ok(it) = RecordIter::new(&bytes) {
            for r in it { let _ = r; }
        }
        for b in batches(&bytes) { let _ = b; }
    }
}

/// Every single-bit flip in the CRC-covered bytes or in the length and CRC
/// fields themselves must be caught by `validate`.
#[test]
fn every_single_bit_flip_is_detected() {
    let records: Vec<OwnedRecord> =
        (0..5).map(|i| (1_700_000_000_000 + i, Some(vec![i as u8; 3]), Some(b"hello world".to_vec()), vec![("h".into(), Some(vec![1]))])).collect();
    let batch = build(&records);
    assert!(validate(&batch).is_ok());
    for byte in field::BATCH_LEN..batch.len() {
        if (field::LEADER_EPOCH..field::LEADER_EPOCH + 4).contains(&byte) {
            continue; // rewritten by the broker, deliberately outside the CRC
        }
        for bit in 0..8 {
            let mut bad = batch.clone();
            bad[byte] ^= 1 << bit;
            assert!(validate(&bad).is_err(), "flip of bit {bit} in byte {byte} went unnoticed");
        }
    }
}

#[test]
fn base_offset_and_epoch_are_outside_the_crc() {
    let mut batch = build(&[(1, None, Some(b"v".to_vec()), vec![])]);
    let crc = validate(&batch).unwrap().crc;
    set_base_offset(&mut batch, 123_456);
    set_leader_epoch(&mut batch, 9);
    let info = validate(&batch).unwrap();
    assert_eq!((info.crc, info.base_offset, info.last_offset(), info.next_offset()), (crc, 123_456, 123_456, 123_457));
}

#[test]
fn walk_stops_at_first_bad_batch() {
    let a = build(&[(1, None, Some(b"a".to_vec()), vec![])]);
    let b = build(&[(2, None, Some(b"b".to_vec()), vec![]), (3, None, None, vec![])]);
    let mut buf = [a.clone(), b.clone()].concat();
    let good = buf.len();
    buf.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    buf.extend_from_slice(&a);
    let mut walk = batches(&buf);
    assert!(walk.next().unwrap().is_ok());
    assert!(walk.next().unwrap().is_ok());
    assert_eq!(walk.position(), good);
    assert!(walk.next().unwrap().is_err());
    assert!(walk.next().is_none());
    assert_eq!(walk.position(), good);
}

#[test]
fn builder_reuse_gives_identical_batches() {
    let mut b = BatchBuilder::new(64);
    let mut out = Vec::new();
    for _ in 0..2 {
        b.push(5, Some(b"k"), Some(b"v"), &[]);
        b.finish_into(&mut out);
    }
    let (x, y) = out.split_at(out.len() / 2);
    assert_eq!(x, y);
    assert!(validate(x).is_ok());
}

fn with_attributes(batch: &[u8], attributes: u16) -> Vec<u8> {
    let mut bad = batch.to_vec();
    bad[field::ATTRIBUTES..field::ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    seal(&mut bad);
    bad
}

#[test]
fn refuses_what_it_cannot_validate_or_serve() {
    let batch = build(&[(1, None, Some(b"a".to_vec()), vec![])]);
    for codec in 5..=7 {
        assert_eq!(validate(&with_attributes(&batch, codec)), Err(RecordError::UnsupportedCompression(codec)));
    }
    assert_eq!(validate(&with_attributes(&batch, ATTR_LOG_APPEND_TIME)), Err(RecordError::LogAppendTime));
    assert_eq!(validate(&with_attributes(&batch, ATTR_TRANSACTIONAL)), Err(RecordError::Transactional));
    assert_eq!(validate(&with_attributes(&batch, ATTR_CONTROL | ATTR_TRANSACTIONAL)), Err(RecordError::Transactional));
    assert_eq!(validate(&with_attributes(&batch, 1 << 6)), Err(RecordError::ReservedBits(1 << 6)));
    let mut bad = batch.clone();
    bad[field::RECORD_COUNT..field::RECORD_COUNT + 4].copy_from_slice(&0u32.to_be_bytes());
    seal(&mut bad);
    assert_eq!(validate(&bad), Err(RecordError::Empty));
    let mut bad = batch.clone();
    bad[field::LAST_OFFSET_DELTA..field::LAST_OFFSET_DELTA + 4].copy_from_slice(&3u32.to_be_bytes());
    seal(&mut bad);
    assert_eq!(validate(&bad), Err(RecordError::BadOffsetDelta { last_offset_delta: 3, record_count: 1 }));
    let mut bad = batch;
    bad[field::MAGIC] = 1;
    assert_eq!(validate(&bad), Err(RecordError::BadMagic(1)));
}

/// A batch written the way Kafka's own producers write it (the Java
/// client's MemoryRecordsBuilder, librdkafka), byte by byte from the
/// protocol's documentation rather than from this module's builder: the
/// builder produces exactly these bytes, and `validate` and the decoder
/// read them.
#[test]
fn the_builder_writes_kafkas_v2_batch_byte_for_byte() {
    // One record: timestamp 1000, key "k", value "v", header "h" = "x".
    let record: &[u8] = &[
        0x00, // attributes
        0x00, // timestamp delta 0 (zigzag)
        0x00, // offset delta 0
        0x02, b'k', // key length 1 (zigzag), key
        0x02, b'v', // value length 1, value
        0x02, // one header (zigzag 1)
        0x02, b'h', 0x02, b'x', // header key "h", value "x"
    ];
    let mut want = Vec::new();
    want.extend_from_slice(&0i64.to_be_bytes()); // baseOffset
    let batch_length = (49 + 1 + record.len()) as i32; // bytes after batchLength
    want.extend_from_slice(&batch_length.to_be_bytes());
    want.extend_from_slice(&(-1i32).to_be_bytes()); // partitionLeaderEpoch
    want.push(2); // magic
    let crc_at = want.len();
    want.extend_from_slice(&[0; 4]); // crc, below
    want.extend_from_slice(&0i16.to_be_bytes()); // attributes
    want.extend_from_slice(&0i32.to_be_bytes()); // lastOffsetDelta
    want.extend_from_slice(&1000i64.to_be_bytes()); // baseTimestamp
    want.extend_from_slice(&1000i64.to_be_bytes()); // maxTimestamp
    want.extend_from_slice(&(-1i64).to_be_bytes()); // producerId
    want.extend_from_slice(&(-1i16).to_be_bytes()); // producerEpoch
    want.extend_from_slice(&(-1i32).to_be_bytes()); // baseSequence
    want.extend_from_slice(&1i32.to_be_bytes()); // records count
    assert_eq!(want.len(), HEADER_BYTES);
    want.push((record.len() as u8) << 1); // record length (zigzag)
    want.extend_from_slice(record);
    // CRC-32C over attributes..end; the check value of CRC-32C is
    // crc32c("123456789") = 0xE3069283.
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    let crc = crc32c(&want[crc_at + 4..]);
    want[crc_at..crc_at + 4].copy_from_slice(&crc.to_be_bytes());

    let got = build(&[(1000, Some(b"k".to_vec()), Some(b"v".to_vec()), vec![("h".into(), Some(b"x".to_vec()))])]);
    assert_eq!(got, want);
    let info = validate(&want).unwrap();
    assert_eq!((info.record_count, info.first_timestamp, info.producer_id, info.base_sequence), (1, 1000, -1, -1));
    let r = RecordIter::new(&want).unwrap().next().unwrap().unwrap();
    assert_eq!((r.key, r.value, r.headers), (Some(&b"k"[..]), Some(&b"v"[..]), vec![("h", Some(&b"x"[..]))]));
}

#[test]
fn finishing_in_place_matches_finish_and_holds_on_a_second_call() {
    let fill = |b: &mut BatchBuilder| {
        b.push(5, Some(b"k"), Some(b"v"), &[]);
        b.push(9, None, Some(b"w"), &[Header { key: "h", value: None }]);
    };
    let mut whole = BatchBuilder::new(64);
    fill(&mut whole);
    let expected = whole.finish();
    let mut b = BatchBuilder::reuse(vec![1, 2, 3]);
    fill(&mut b);
    assert_eq!(b.finish_in_place(), &expected[..]);
    assert_eq!(b.finish_in_place(), &expected[..], "a retry sends the same bytes");
    assert!(validate(&expected).is_ok());
    assert_eq!(b.into_buf(), expected);
}

/// The records of an uncompressed `batch` compressed as Kafka's clients
/// do it with `codec` (snappy: raw as librdkafka sends it, or framed as
/// Java's snappy-java does with `xerial`), under the same header.
fn compressed(batch: &[u8], codec: u16, xerial: bool) -> Vec<u8> {
    use std::io::Write;
    let records = &batch[HEADER_BYTES..];
    let body = match codec {
        compression::GZIP => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(records).unwrap();
            e.finish().unwrap()
        }
        compression::SNAPPY if xerial => {
            let mut out = vec![0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0, 0, 0, 0, 1, 0, 0, 0, 1];
            // Small blocks, so a batch spans several.
            for chunk in records.chunks(64) {
                let block = snap::raw::Encoder::new().compress_vec(chunk).unwrap();
                out.extend_from_slice(&(block.len() as u32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
        compression::SNAPPY => snap::raw::Encoder::new().compress_vec(records).unwrap(),
        compression::LZ4 => {
            let mut e = lz4_flex::frame::FrameEncoder::new(Vec::new());
            e.write_all(records).unwrap();
            e.finish().unwrap()
        }
        compression::ZSTD => zstd::encode_all(records, 3).unwrap(),
        _ => unreachable!(),
    };
    let mut out = batch[..HEADER_BYTES].to_vec();
    out.extend_from_slice(&body);
    out[field::ATTRIBUTES..field::ATTRIBUTES + 2].copy_from_slice(&codec.to_be_bytes());
    seal(&mut out);
    out
}

const CODECS: [(u16, bool); 5] =
    [(compression::GZIP, false), (compression::SNAPPY, false), (compression::SNAPPY, true), (compression::LZ4, false), (compression::ZSTD, false)];

proptest! {
    /// A compressed batch passes the broker's checks as it is, and
    /// inflated it is the uncompressed batch again, byte for byte, so a
    /// consumer reads the records that were sent.
    #[test]
    fn compressed_batches_validate_and_inflate_to_the_records_sent(records in proptest::collection::vec(record_strategy(), 1..30), which in 0..CODECS.len()) {
        let (codec, xerial) = CODECS[which];
        let mut plain = build(&records);
        set_base_offset(&mut plain, 42);
        let batch = compressed(&plain, codec, xerial);
        let info = validate(&batch).unwrap();
        prop_assert_eq!(info.codec(), codec);
        prop_assert_eq!(info.record_count as usize, records.len());
        validate_records(&batch, &info).unwrap();
        prop_assert_eq!(RecordIter::new(&batch).err(), Some(RecordError::Compressed(codec)));
        prop_assert_eq!(RecordIter::validated(&batch, info).next(), Some(Err(RecordError::Compressed(codec))));
        let inflated = inflate(&batch, &info).unwrap();
        prop_assert_eq!(&inflated, &plain);
        // Among other batches, only the compressed one changes.
        let mut both = plain.clone();
        both.extend_from_slice(&batch);
        let mut want = plain.clone();
        want.extend_from_slice(&plain);
        prop_assert_eq!(inflate_all(&both).unwrap(), Some(want));
        prop_assert_eq!(inflate_all(&plain).unwrap(), None);
    }
}

#[test]
fn compressed_batches_whose_records_are_wrong_are_refused() {
    let records: Vec<OwnedRecord> = (0..3).map(|i| (i, None, Some(vec![b'x'; 10]), vec![])).collect();
    let plain = build(&records);
    for (codec, xerial) in CODECS {
        // Three records inside, the header counting two.
        let mut two = plain.clone();
        two[field::RECORD_COUNT..field::RECORD_COUNT + 4].copy_from_slice(&2u32.to_be_bytes());
        two[field::LAST_OFFSET_DELTA..field::LAST_OFFSET_DELTA + 4].copy_from_slice(&1u32.to_be_bytes());
        let batch = compressed(&two, codec, xerial);
        let info = validate(&batch).unwrap();
        assert!(matches!(validate_records(&batch, &info), Err(RecordError::BadRecord { .. })), "{codec}");
        // Bytes that are not the codec's, under a good CRC.
        let mut junk = plain[..HEADER_BYTES].to_vec();
        junk.extend_from_slice(b"these bytes are no compressed stream at all");
        junk[field::ATTRIBUTES + 1] = codec as u8;
        seal(&mut junk);
        let info = validate(&junk).unwrap();
        assert!(matches!(validate_records(&junk, &info), Err(RecordError::Decompress { .. })), "{codec}");
        assert!(matches!(inflate(&junk, &info), Err(RecordError::Decompress { .. })), "{codec}");
    }
}

/// A small batch that claims, or really inflates to, more than a batch
/// may hold is refused without the memory being given.
#[test]
fn decompression_bombs_are_refused() {
    let plain = build(&[(1, None, Some(b"a".to_vec()), vec![])]);
    // A raw snappy block that claims 256 MiB and holds nothing.
    let mut claim = plain[..HEADER_BYTES].to_vec();
    claim.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x01]);
    claim[field::ATTRIBUTES + 1] = compression::SNAPPY as u8;
    seal(&mut claim);
    let info = validate(&claim).unwrap();
    assert!(matches!(validate_records(&claim, &info), Err(RecordError::Decompress { .. })));
    // 70 MiB of zeros, which zstd makes a few KiB of.
    let zeros = zstd::encode_all(&vec![0u8; 70 << 20][..], 1).unwrap();
    assert!(zeros.len() < 64 << 10);
    let mut bomb = plain[..HEADER_BYTES].to_vec();
    bomb.extend_from_slice(&zeros);
    bomb[field::ATTRIBUTES + 1] = compression::ZSTD as u8;
    seal(&mut bomb);
    let info = validate(&bomb).unwrap();
    match validate_records(&bomb, &info) {
        Err(RecordError::Decompress { reason, .. }) => assert!(reason.contains("inflate past"), "{reason}"),
        other => panic!("{other:?}"),
    }
}
