//! The quorum's own binary encoding of Raft messages, entries and its
//! durable state, for the wire between brokers and for the disk.
//!
//! raft-rs's types are protobuf-generated, and the protobuf 2 crate has an
//! advisory for parsing untrusted input (RUSTSEC-2024-0437). Nothing here
//! uses protobuf's parser: every field is written and read by hand, every
//! length is checked against what is left, and every count against a
//! limit, so bytes from a peer or a damaged file give an error, never a
//! panic or an allocation they did not pay for.

// raft-rs's protobuf types carry hidden fields: they are built by
// assigning to a default, not by a struct literal.
#![allow(clippy::field_reassign_with_default)]

use bytes::Bytes;
use protobuf::ProtobufEnum;
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot, SnapshotMetadata};

/// Most entries (or voters) one encoded list may hold.
pub const MAX_LIST: u32 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed quorum data: {0}")]
pub struct DecodeError(pub &'static str);

type R<T> = Result<T, DecodeError>;

/// Appends fields to a byte vector.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    pub fn u64s(&mut self, v: &[u64]) {
        self.u32(v.len() as u32);
        for x in v {
            self.u64(*x);
        }
    }
}

/// Reads fields from a byte slice, refusing anything that runs past it.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if self.0.len() < n {
            return Err(DecodeError("truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> R<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| DecodeError("u32"))?))
    }
    pub fn u64(&mut self) -> R<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| DecodeError("u64"))?))
    }
    pub fn i64(&mut self) -> R<i64> {
        Ok(self.u64()? as i64)
    }
    pub fn bool(&mut self) -> R<bool> {
        Ok(self.u8()? != 0)
    }
    pub fn bytes(&mut self) -> R<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items each at least `min_item` bytes long.
    pub fn count(&mut self, min_item: usize) -> R<usize> {
        let n = self.u32()?;
        if n > MAX_LIST || (n as usize).saturating_mul(min_item) > self.0.len() {
            return Err(DecodeError("list longer than its bytes"));
        }
        Ok(n as usize)
    }
    pub fn u64s(&mut self) -> R<Vec<u64>> {
        let n = self.count(8)?;
        (0..n).map(|_| self.u64()).collect()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn end(&self) -> R<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

pub fn put_entry(w: &mut Writer, e: &Entry) {
    w.u8(e.entry_type.value() as u8);
    w.u64(e.term);
    w.u64(e.index);
    w.bytes(&e.data);
    w.bytes(&e.context);
}

pub fn get_entry(r: &mut Reader<'_>) -> R<Entry> {
    let mut e = Entry::default();
    e.entry_type = EntryType::from_i32(i32::from(r.u8()?)).ok_or(DecodeError("entry type"))?;
    e.term = r.u64()?;
    e.index = r.u64()?;
    e.data = Bytes::copy_from_slice(r.bytes()?);
    e.context = Bytes::copy_from_slice(r.bytes()?);
    Ok(e)
}

/// Smallest encoded entry: type, term, index and two empty lengths.
const MIN_ENTRY: usize = 1 + 8 + 8 + 4 + 4;

pub fn put_entries(w: &mut Writer, es: &[Entry]) {
    w.u32(es.len() as u32);
    for e in es {
        put_entry(w, e);
    }
}

pub fn get_entries(r: &mut Reader<'_>) -> R<Vec<Entry>> {
    let n = r.count(MIN_ENTRY)?;
    (0..n).map(|_| get_entry(r)).collect()
}

pub fn put_conf_state(w: &mut Writer, c: &ConfState) {
    w.u64s(&c.voters);
    w.u64s(&c.learners);
}

pub fn get_conf_state(r: &mut Reader<'_>) -> R<ConfState> {
    let mut c = ConfState::default();
    c.voters = r.u64s()?;
    c.learners = r.u64s()?;
    Ok(c)
}

pub fn put_hard_state(w: &mut Writer, h: &HardState) {
    w.u64(h.term);
    w.u64(h.vote);
    w.u64(h.commit);
}

pub fn get_hard_state(r: &mut Reader<'_>) -> R<HardState> {
    let mut h = HardState::default();
    h.term = r.u64()?;
    h.vote = r.u64()?;
    h.commit = r.u64()?;
    Ok(h)
}

pub fn put_snapshot(w: &mut Writer, s: &Snapshot) {
    let m = s.get_metadata();
    w.u64(m.index);
    w.u64(m.term);
    put_conf_state(w, m.get_conf_state());
    w.bytes(&s.data);
}

pub fn get_snapshot(r: &mut Reader<'_>) -> R<Snapshot> {
    let mut m = SnapshotMetadata::default();
    m.index = r.u64()?;
    m.term = r.u64()?;
    m.set_conf_state(get_conf_state(r)?);
    let mut s = Snapshot::default();
    s.set_metadata(m);
    s.data = Bytes::copy_from_slice(r.bytes()?);
    Ok(s)
}

pub fn put_message(w: &mut Writer, m: &Message) {
    w.u8(m.msg_type.value() as u8);
    w.u64(m.to);
    w.u64(m.from);
    w.u64(m.term);
    w.u64(m.log_term);
    w.u64(m.index);
    put_entries(w, &m.entries);
    w.u64(m.commit);
    w.u64(m.commit_term);
    match m.snapshot.as_ref() {
        Some(s) => {
            w.u8(1);
            put_snapshot(w, s);
        }
        None => w.u8(0),
    }
    w.u64(m.request_snapshot);
    w.u8(u8::from(m.reject));
    w.u64(m.reject_hint);
    w.bytes(&m.context);
    w.i64(m.priority);
}

pub fn get_message(r: &mut Reader<'_>) -> R<Message> {
    let mut m = Message::default();
    m.msg_type = MessageType::from_i32(i32::from(r.u8()?)).ok_or(DecodeError("message type"))?;
    m.to = r.u64()?;
    m.from = r.u64()?;
    m.term = r.u64()?;
    m.log_term = r.u64()?;
    m.index = r.u64()?;
    m.entries = get_entries(r)?.into();
    m.commit = r.u64()?;
    m.commit_term = r.u64()?;
    if r.bool()? {
        m.set_snapshot(get_snapshot(r)?);
    }
    m.request_snapshot = r.u64()?;
    m.reject = r.bool()?;
    m.reject_hint = r.u64()?;
    m.context = Bytes::copy_from_slice(r.bytes()?);
    m.priority = r.i64()?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(t: i32, n: u64, data: Vec<u8>) -> Message {
        let mut m = Message::default();
        m.msg_type = MessageType::from_i32(t.rem_euclid(20)).unwrap_or(MessageType::MsgAppend);
        (m.to, m.from, m.term, m.index, m.commit) = (n, n + 1, n + 2, n + 3, n + 4);
        let mut e = Entry::default();
        (e.term, e.index, e.data) = (n, n + 1, Bytes::from(data.clone()));
        m.entries = vec![e.clone(), e].into();
        let mut s = Snapshot::default();
        s.mut_metadata().index = n;
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        s.data = Bytes::from(data);
        m.set_snapshot(s);
        m.reject = n % 2 == 0;
        m.priority = -(n as i64);
        m
    }

    proptest! {
        #[test]
        fn messages_round_trip(t in 0i32..20, n in any::<u64>(), data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let m = message(t, n, data);
            let mut w = Writer::default();
            put_message(&mut w, &m);
            let mut r = Reader(&w.0);
            prop_assert_eq!(get_message(&mut r).unwrap(), m);
            prop_assert!(r.end().is_ok());
        }

        #[test]
        fn damaged_messages_are_errors_not_panics(t in 0i32..20, n in any::<u64>(), cut in any::<usize>(), flip in any::<(usize, u8)>()) {
            let mut w = Writer::default();
            put_message(&mut w, &message(t, n, vec![7; 9]));
            let mut b = w.0;
            let at = flip.0 % b.len();
            b[at] ^= flip.1;
            b.truncate(cut % (b.len() + 1));
            let _ = get_message(&mut Reader(&b));
        }
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut w = Writer::default();
        w.u32(u32::MAX);
        assert!(get_entries(&mut Reader(&w.0)).is_err());
    }
}
