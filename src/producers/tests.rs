use super::*;
use proptest::prelude::*;

fn batch(producer_id: i64, producer_epoch: i16, base_sequence: i32, record_count: u32, ts: i64) -> BatchInfo {
    BatchInfo {
        base_offset: 0,
        batch_len: 0,
        leader_epoch: 0,
        crc: 0,
        attributes: 0,
        record_count,
        first_timestamp: ts,
        max_timestamp: ts,
        producer_id,
        producer_epoch,
        base_sequence,
    }
}

/// Appends what `check` allows, as the shard does; returns the verdict.
fn offer(s: &mut ProducerStates, b: &BatchInfo, next_offset: &mut i64) -> Verdict {
    let v = s.check(b);
    if v == Verdict::Append {
        s.record(b, *next_offset);
        *next_offset += i64::from(b.record_count);
    }
    v
}

#[test]
fn in_order_batches_append_and_resends_in_the_window_are_duplicates() {
    let mut s = ProducerStates::new(100);
    let mut end = 0;
    for i in 0..10 {
        assert_eq!(offer(&mut s, &batch(7, 0, i * 3, 3, 1), &mut end), Verdict::Append, "batch {i}");
        // Another producer's batch between each: no two of producer 7's
        // are stored back to back.
        offer(&mut s, &batch(-1, -1, -1, 1, 1), &mut end);
    }
    assert_eq!(end, 40);
    // The last five batches are remembered with their offsets.
    for i in 5..10 {
        assert_eq!(s.check(&batch(7, 0, i * 3, 3, 1)), Verdict::Duplicate { first_offset: i64::from(i) * 4, last_offset: i64::from(i) * 4 + 2 });
    }
    // Older than the window: not the next in sequence.
    assert_eq!(s.check(&batch(7, 0, 12, 3, 1)), Verdict::OutOfOrder { expected: 30, got: 12 });
    // A gap, and a batch that overlaps the last one.
    assert_eq!(s.check(&batch(7, 0, 33, 3, 1)), Verdict::OutOfOrder { expected: 30, got: 33 });
    assert_eq!(s.check(&batch(7, 0, 28, 3, 1)), Verdict::OutOfOrder { expected: 30, got: 28 });
    assert_eq!(s.check(&batch(7, 0, 30, 1, 1)), Verdict::Append);
}

#[test]
fn batches_stored_back_to_back_are_one_run_and_each_resend_finds_its_offsets() {
    let mut s = ProducerStates::new(100);
    let mut end = 0;
    // Twelve batches of producer 7 in a row (as one request's batches of
    // a partition are appended), then another producer's, then four more.
    for i in 0..12 {
        assert_eq!(offer(&mut s, &batch(7, 0, i * 3, 3, 1), &mut end), Verdict::Append);
    }
    offer(&mut s, &batch(8, 0, 0, 2, 1), &mut end);
    for i in 12..16 {
        assert_eq!(offer(&mut s, &batch(7, 0, i * 3, 3, 1), &mut end), Verdict::Append);
    }
    assert_eq!(end, 50);
    // Every one of the sixteen is remembered, more than five batches, at
    // the offsets it was stored at.
    for i in 0..16i32 {
        let at = i64::from(i) * 3 + if i >= 12 { 2 } else { 0 };
        assert_eq!(s.check(&batch(7, 0, i * 3, 3, 1)), Verdict::Duplicate { first_offset: at, last_offset: at + 2 }, "batch {i}");
    }
    // A resend cut differently from the original batches still lies
    // within the run; one that runs past the run's end does not.
    assert_eq!(s.check(&batch(7, 0, 4, 10, 1)), Verdict::Duplicate { first_offset: 4, last_offset: 13 });
    assert_eq!(s.check(&batch(7, 0, 45, 6, 1)), Verdict::OutOfOrder { expected: 48, got: 45 });
    assert_eq!(offer(&mut s, &batch(7, 0, 48, 1, 1), &mut end), Verdict::Append);
    // A snapshot keeps runs as they are.
    assert_eq!(ProducerStates::decode(&s.encode(), 100).unwrap(), s);
}

#[test]
fn runs_end_at_a_wrapping_sequence_and_at_their_size_limit() {
    let mut s = ProducerStates::new(100);
    let mut end = 0;
    offer(&mut s, &batch(1, 0, i32::MAX - 6, 3, 1), &mut end);
    offer(&mut s, &batch(1, 0, i32::MAX - 3, 3, 1), &mut end);
    // This one wraps (MAX, 0, 1): a run of its own, found only whole.
    offer(&mut s, &batch(1, 0, i32::MAX, 3, 1), &mut end);
    offer(&mut s, &batch(1, 0, 2, 3, 1), &mut end);
    assert_eq!(s.check(&batch(1, 0, i32::MAX - 6, 6, 1)), Verdict::Duplicate { first_offset: 0, last_offset: 5 });
    assert_eq!(s.check(&batch(1, 0, i32::MAX, 3, 1)), Verdict::Duplicate { first_offset: 6, last_offset: 8 });
    assert_eq!(s.check(&batch(1, 0, 2, 3, 1)), Verdict::Duplicate { first_offset: 9, last_offset: 11 });
    assert_eq!(s.check(&batch(1, 0, 0, 1, 1)), Verdict::OutOfOrder { expected: 5, got: 0 });

    // A run stops growing at MAX_RUN_RECORDS records; the window then
    // spans at most five of those, far less than the sequence space.
    let mut s = ProducerStates::new(100);
    let mut end = 0;
    let n = 1u32 << 20;
    let batches = (MAX_RUN_RECORDS / i64::from(n)) as i32 * 6;
    for i in 0..batches {
        assert_eq!(offer(&mut s, &batch(2, 0, i * n as i32, n, 1), &mut end), Verdict::Append);
    }
    let oldest_kept = batches - 5 * (MAX_RUN_RECORDS / i64::from(n)) as i32;
    assert!(matches!(s.check(&batch(2, 0, oldest_kept * n as i32, n, 1)), Verdict::Duplicate { .. }));
    assert!(matches!(s.check(&batch(2, 0, (oldest_kept - 1) * n as i32, n, 1)), Verdict::OutOfOrder { .. }));
    assert_eq!(ProducerStates::decode(&s.encode(), 100).unwrap(), s);
}

#[test]
fn epochs_fence_older_producers_and_restart_the_sequence() {
    let mut s = ProducerStates::new(100);
    let mut end = 0;
    offer(&mut s, &batch(7, 3, 0, 5, 1), &mut end);
    assert_eq!(s.check(&batch(7, 2, 5, 1, 1)), Verdict::StaleEpoch { current: 3, got: 2 });
    assert_eq!(s.check(&batch(7, 4, 5, 1, 1)), Verdict::OutOfOrder { expected: 0, got: 5 });
    assert_eq!(offer(&mut s, &batch(7, 4, 0, 1, 1), &mut end), Verdict::Append);
    // The old epoch's batches are forgotten: the new one's window only.
    assert_eq!(s.check(&batch(7, 4, 0, 1, 1)), Verdict::Duplicate { first_offset: 5, last_offset: 5 });
    assert_eq!(s.check(&batch(7, 3, 0, 5, 1)), Verdict::StaleEpoch { current: 4, got: 3 });
}

#[test]
fn unknown_and_plain_producers_are_never_refused() {
    let mut s = ProducerStates::new(100);
    let mut end = 0;
    // First seen mid-sequence (its earlier batches expired or predate
    // the log): accepted.
    assert_eq!(offer(&mut s, &batch(9, 0, 1234, 2, 1), &mut end), Verdict::Append);
    assert_eq!(s.check(&batch(9, 0, 1236, 1, 1)), Verdict::Append);
    // No producer id: no state, never a duplicate.
    for _ in 0..3 {
        assert_eq!(offer(&mut s, &batch(-1, -1, -1, 4, 1), &mut end), Verdict::Append);
    }
    assert_eq!(s.len(), 1);
}

#[test]
fn sequences_wrap_at_the_largest_int() {
    let mut s = ProducerStates::new(100);
    let mut end = 0;
    assert_eq!(next_sequence(i32::MAX, 1), 0);
    assert_eq!(next_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(offer(&mut s, &batch(1, 0, i32::MAX - 1, 3, 1), &mut end), Verdict::Append);
    assert_eq!(s.check(&batch(1, 0, i32::MAX - 1, 3, 1)), Verdict::Duplicate { first_offset: 0, last_offset: 2 });
    // Its records were MAX - 1, MAX and 0: the next is 1.
    assert_eq!(s.check(&batch(1, 0, 1, 1, 1)), Verdict::Append);
    assert_eq!(s.check(&batch(1, 0, 0, 1, 1)), Verdict::OutOfOrder { expected: 1, got: 0 });
}

#[test]
fn producers_are_bounded_and_expire_by_their_batches_timestamps() {
    let mut s = ProducerStates::new(3);
    let mut end = 0;
    for id in 0..3 {
        offer(&mut s, &batch(id, 0, 0, 1, 100 + id), &mut end);
    }
    // A fourth forgets the one idle longest (producer 0).
    offer(&mut s, &batch(3, 0, 0, 1, 200), &mut end);
    assert_eq!(s.len(), 3);
    assert_eq!(s.check(&batch(0, 0, 0, 1, 1)), Verdict::Append, "forgotten: its resend is stored again");
    assert!(matches!(s.check(&batch(1, 0, 0, 1, 1)), Verdict::Duplicate { .. }));
    assert_eq!(s.expire(150), 2);
    assert_eq!(s.len(), 1);
    assert!(matches!(s.check(&batch(3, 0, 0, 1, 1)), Verdict::Duplicate { .. }));
}

proptest! {
    /// A producer with up to five batches in flight whose answers get
    /// lost, so it sends some again, any number of times and in any
    /// order among those in flight, as long as each is first sent in
    /// order: every batch is stored exactly once, in sequence order, and
    /// every resend is answered with the offsets it was stored at, whether
    /// other producers' batches come between (five single-batch runs) or
    /// not (longer runs).
    #[test]
    fn retries_store_every_batch_exactly_once(steps in proptest::collection::vec((any::<bool>(), 0usize..5, any::<bool>()), 1..200), sizes in proptest::collection::vec(1u32..5, 200)) {
        let mut s = ProducerStates::new(10);
        let mut end = 0i64;
        let mut sent: Vec<(i32, u32)> = Vec::new();
        let mut stored: Vec<(i32, i64)> = Vec::new();
        let mut next_seq = 0i32;
        for (i, (new, back, other)) in steps.into_iter().enumerate() {
            if other {
                offer(&mut s, &batch(-1, -1, -1, 2, 1), &mut end);
            }
            let (seq, n) = if new || sent.is_empty() {
                let b = (next_seq, sizes[i % sizes.len()]);
                next_seq = next_sequence(next_seq, b.1 as i32);
                sent.push(b);
                b
            } else {
                // A resend of one of the last five sent.
                sent[sent.len() - 1 - back.min(sent.len() - 1).min(WINDOW - 1)]
            };
            let at = end;
            match offer(&mut s, &batch(42, 1, seq, n, 1), &mut end) {
                Verdict::Append => stored.push((seq, at)),
                Verdict::Duplicate { first_offset, last_offset } => {
                    let &(_, o) = stored.iter().find(|&&(q, _)| q == seq).expect("a duplicate of a stored batch");
                    prop_assert_eq!((first_offset, last_offset), (o, o + i64::from(n) - 1));
                }
                v => prop_assert!(false, "{:?} for {:?}", v, (seq, n)),
            }
        }
        let seqs: Vec<i32> = stored.iter().map(|&(q, _)| q).collect();
        let want: Vec<i32> = sent.iter().map(|&(q, _)| q).collect();
        prop_assert_eq!(seqs, want);
    }
}

proptest! {
    /// The SDK's contract: requests of several consecutive batches of a
    /// partition, at most five requests unanswered, other producers'
    /// batches between requests; any batch of the last five requests may
    /// be sent again, alone, after the request was lost. Every resend is
    /// a duplicate answered with its batch's offsets, though the last five
    /// requests can hold far more than five batches.
    #[test]
    fn resends_from_the_last_five_requests_of_many_batches_are_recognised(
        requests in proptest::collection::vec((1usize..8, any::<bool>()), 1..60),
        resends in proptest::collection::vec((0usize..5, 0usize..8), 1..60),
    ) {
        let mut s = ProducerStates::new(10);
        let mut end = 0i64;
        let mut next_seq = 0i32;
        // Per request: its batches' (sequence, records, offset).
        let mut sent: Vec<Vec<(i32, u32, i64)>> = Vec::new();
        for (i, &(n, other)) in requests.iter().enumerate() {
            if other {
                offer(&mut s, &batch(-1, -1, -1, 3, 1), &mut end);
            }
            let mut request = Vec::new();
            for j in 0..n {
                let records = 1 + ((i + j) % 4) as u32;
                let at = end;
                prop_assert_eq!(offer(&mut s, &batch(5, 0, next_seq, records, 1), &mut end), Verdict::Append);
                request.push((next_seq, records, at));
                next_seq = next_sequence(next_seq, records as i32);
            }
            sent.push(request);
            for &(back, k) in &resends {
                let r = &sent[sent.len() - 1 - back.min(sent.len() - 1)];
                let (seq, records, at) = r[k % r.len()];
                prop_assert_eq!(s.check(&batch(5, 0, seq, records, 1)), Verdict::Duplicate { first_offset: at, last_offset: at + i64::from(records) - 1 });
            }
        }
    }
}

#[test]
fn a_snapshot_round_trips_and_damage_is_an_error() {
    let mut s = ProducerStates::new(100);
    let mut end = 0;
    for id in 0..4 {
        for i in 0..(id as i32 + 3) {
            offer(&mut s, &batch(id, id as i16, i * 2, 2, 50 + id), &mut end);
        }
    }
    assert_eq!(s.end(), end);
    let bytes = s.encode();
    assert_eq!(ProducerStates::decode(&bytes, 100).unwrap(), s);
    assert_eq!(ProducerStates::new(100).encode().len(), 8 + 8 + 4 + 4);
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        assert!(ProducerStates::decode(&bad, 100).is_err(), "a flipped bit at {i}");
        assert!(ProducerStates::decode(&bytes[..i], 100).is_err(), "cut at {i}");
    }
}
