//! The one hash of the project: 64-bit FNV-1a. Its values are persisted
//! contracts, so it never changes: a topic's replica placement starts at
//! the hash of its name (`cluster::metadata`), a group's offsets live in
//! the offsets partition its name hashes to (`group`), and producers (the
//! SDK, the console producer) send a keyed record to the partition its
//! key hashes to, so a key's records stay in one partition across clients
//! and versions. The golden values below pin it.

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x100_0000_01b3;

/// 64-bit FNV-1a of `bytes`.
#[inline]
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(OFFSET_BASIS, |h, &b| (h ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The partition of `partitions` (at least 1) a record with `key` goes to.
#[inline]
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    (fnv1a(key) % u64::from(partitions.max(1))) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_keep_their_partitions() {
        // Persisted: records already stored under these keys are in these
        // partitions; a change would split a key's records.
        let got: Vec<u32> = ["user-1", "user-2", "order-42", "测试"].iter().map(|k| partition_for_key(k.as_bytes(), 12)).collect();
        assert_eq!(got, GOLDEN_KEY_PARTITIONS);
        assert_eq!(partition_for_key(b"any", 0), 0, "no partitions reads as one");
    }

    const GOLDEN_KEY_PARTITIONS: [u32; 4] = [8, 5, 8, 7];
}
