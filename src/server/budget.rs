//! The request bytes one shard buffers for all its connections together
//! (`max_buffered_request_bytes_per_shard`, Kafka's `queued.max.request.bytes`).
//!
//! Memory follows the bytes: a frame is charged for its buffer as the
//! buffer grows with what arrived, never for the length it announced, so a
//! client that announces 16 MiB and sends nothing costs nothing.
//!
//! Charging as bytes arrive could deadlock: half-read frames could hold
//! the whole budget, each waiting for more. So grants keep a safe order
//! (the banker's rule, with frames in arrival order): the oldest frame
//! could take the rest of its length from what is free plus what answered
//! requests give back; the second oldest could, once the oldest is done
//! too; and so on. A grant that would break this for an older frame waits.
//! So the oldest frame can always finish if its client sends, its request
//! runs and gives its bytes back, and the next one inherits the
//! guarantee. A client that stalls as the oldest is closed by
//! `request_read_timeout_ms`.
//!
//! Architecture invariant: `free + held == total`, and for every frame
//! being read, in arrival order, `free + pending + held by older frames >=
//! its remaining need` (`pending`: bytes of whole frames whose requests
//! have not yet been answered). [`Ledger`] is the sans-IO rule;
//! [`ShardBudget`] puts waiting around it.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use crate::rt;

/// The accounting, without waiting.
#[derive(Debug)]
pub struct Ledger {
    total: usize,
    free: usize,
    /// Held by whole frames whose requests are not answered yet: bytes that
    /// will come back without waiting for any client.
    pending: usize,
    /// Frames being read, oldest first: ticket -> (bytes still to be
    /// granted, bytes held).
    reading: BTreeMap<u64, (usize, usize)>,
    next_ticket: u64,
}

impl Ledger {
    pub fn new(total: usize) -> Self {
        Ledger { total, free: total, pending: 0, reading: BTreeMap::new(), next_ticket: 0 }
    }

    /// Registers a frame of `len` bytes that started to arrive.
    pub fn begin(&mut self, len: usize) -> u64 {
        debug_assert!(len <= self.total, "a frame larger than the budget could never be read");
        let t = self.next_ticket;
        self.next_ticket += 1;
        self.reading.insert(t, (len, 0));
        t
    }

    /// Grants `bytes` to frame `t` if that keeps every older frame able to
    /// finish.
    pub fn try_grant(&mut self, t: u64, bytes: usize) -> bool {
        if bytes > self.free {
            return false;
        }
        let mut could_have = self.free + self.pending;
        for (&k, &(need, held)) in &self.reading {
            if k == t {
                break;
            }
            if could_have < need + bytes {
                return false;
            }
            could_have += held;
        }
        let Some(f) = self.reading.get_mut(&t) else { return false };
        debug_assert!(bytes <= f.0, "a frame is granted at most its length");
        f.0 -= bytes;
        f.1 += bytes;
        self.free -= bytes;
        true
    }

    /// The frame arrived whole: it needs nothing more, and what it holds
    /// comes back with [`Ledger::answered`].
    pub fn whole(&mut self, t: u64) {
        if let Some((_, held)) = self.reading.remove(&t) {
            self.pending += held;
        }
    }

    /// The request of a whole frame holding `held` bytes was answered.
    pub fn answered(&mut self, held: usize) {
        debug_assert!(held <= self.pending);
        self.pending -= held;
        self.free += held;
    }

    /// A frame stopped arriving (its connection closed): all it holds comes back.
    pub fn abandoned(&mut self, t: u64) {
        if let Some((_, held)) = self.reading.remove(&t) {
            self.free += held;
        }
    }

    pub fn free(&self) -> usize {
        self.free
    }

    pub fn total(&self) -> usize {
        self.total
    }

    /// Checks the invariant; for tests and debug assertions.
    pub fn check(&self) -> Result<(), String> {
        let held: usize = self.reading.values().map(|f| f.1).sum();
        if self.free + self.pending + held != self.total {
            return Err(format!("free {} + pending {} + held {held} != total {}", self.free, self.pending, self.total));
        }
        let mut could_have = self.free + self.pending;
        for (t, &(need, held)) in &self.reading {
            if could_have < need {
                return Err(format!("frame {t} could never finish: {could_have} < {need}"));
            }
            could_have += held;
        }
        Ok(())
    }
}

/// A shard's budget, shared by its connections.
pub struct ShardBudget {
    ledger: RefCell<Ledger>,
    /// Notified whenever bytes are given back or a frame stops reading.
    changed: rt::Event,
}

impl ShardBudget {
    pub fn new(total_bytes: usize) -> Rc<Self> {
        let b = Rc::new(ShardBudget { ledger: RefCell::new(Ledger::new(total_bytes)), changed: rt::Event::default() });
        b.report();
        b
    }

    /// Tells the shard's metrics what requests hold now, after a change.
    fn report(&self) {
        let l = self.ledger.borrow();
        crate::metrics::request_memory(l.total() - l.free(), l.total());
    }

    /// Starts accounting for a frame of `len` bytes.
    pub fn begin(self: &Rc<Self>, len: usize) -> FrameBudget {
        let ticket = self.ledger.borrow_mut().begin(len);
        FrameBudget { budget: self.clone(), ticket, held: 0, reading: true }
    }
}

/// What one frame holds of its shard's budget; gives it all back on drop.
pub struct FrameBudget {
    budget: Rc<ShardBudget>,
    ticket: u64,
    held: usize,
    reading: bool,
}

impl FrameBudget {
    /// Waits until `bytes` more may be buffered for this frame.
    pub async fn grow(&mut self, bytes: usize) {
        loop {
            let listen = self.budget.changed.listen();
            if self.budget.ledger.borrow_mut().try_grant(self.ticket, bytes) {
                self.held += bytes;
                self.budget.report();
                return;
            }
            listen.await;
        }
    }

    /// The whole frame arrived: it needs no more, and keeps what it holds
    /// until dropped (when its request is answered).
    pub fn complete(&mut self) {
        if self.reading {
            self.reading = false;
            self.budget.ledger.borrow_mut().whole(self.ticket);
            self.budget.changed.notify();
        }
    }
}

impl Drop for FrameBudget {
    fn drop(&mut self) {
        {
            let mut l = self.budget.ledger.borrow_mut();
            if self.reading {
                l.abandoned(self.ticket);
            } else {
                l.answered(self.held);
            }
            debug_assert_eq!(l.check(), Ok(()));
        }
        self.budget.report();
        self.budget.changed.notify();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_charged_only_what_it_was_granted() {
        let mut l = Ledger::new(100);
        let t = l.begin(80);
        assert!(l.try_grant(t, 10));
        assert_eq!(l.free(), 90);
        l.abandoned(t);
        assert_eq!(l.free(), 100);
    }

    #[test]
    fn younger_frames_may_not_take_what_an_older_one_needs() {
        let mut l = Ledger::new(100);
        let a = l.begin(10);
        let b = l.begin(90);
        let c = l.begin(90);
        assert!(!l.try_grant(c, 81), "a and b could then never finish");
        assert!(l.try_grant(c, 0));
        assert!(l.try_grant(b, 40)); // free 60: a needs 10
        assert!(!l.try_grant(c, 51));
        assert!(l.try_grant(a, 10), "the oldest can always finish");
        l.whole(a);
        // b needs 50: free 50 plus a's 10 once a is answered.
        assert!(!l.try_grant(c, 11), "b could then never finish");
        assert!(l.try_grant(c, 10));
        assert!(!l.try_grant(b, 50), "only 40 are free until a is answered");
        l.answered(10);
        assert!(l.try_grant(b, 50));
        l.whole(b);
        assert!(!l.try_grant(c, 1), "nothing is free until b is answered");
        l.answered(90);
        assert!(l.try_grant(c, 80));
        l.check().unwrap();
    }

    /// Whatever order frames arrive, are granted and are answered in, the
    /// invariant holds, so the oldest frame can always finish once the
    /// requests already read are answered: the budget never deadlocks with
    /// every frame half-read.
    #[test]
    fn no_interleaving_leaves_every_frame_waiting() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..300 {
            let total = 64 + rnd(512);
            let mut l = Ledger::new(total);
            let mut reading: Vec<(u64, usize, usize)> = Vec::new(); // (ticket, need, held)
            let mut answered_later: Vec<usize> = Vec::new();
            let mut finished = 0;
            for _ in 0..2000 {
                match rnd(5) {
                    0 if reading.len() < 8 => {
                        let len = 1 + rnd(total);
                        reading.push((l.begin(len), len, 0));
                    }
                    1 if !answered_later.is_empty() => {
                        let i = rnd(answered_later.len());
                        l.answered(answered_later.swap_remove(i));
                    }
                    2 if !reading.is_empty() && rnd(20) == 0 => {
                        let i = rnd(reading.len());
                        l.abandoned(reading.remove(i).0);
                    }
                    _ if !reading.is_empty() => {
                        let i = rnd(reading.len());
                        let (t, need, _) = reading[i];
                        let want = 1 + rnd(need);
                        if l.try_grant(t, want) {
                            reading[i].1 -= want;
                            reading[i].2 += want;
                            if reading[i].1 == 0 {
                                let (t, _, held) = reading.remove(i);
                                l.whole(t);
                                answered_later.push(held);
                                finished += 1;
                            }
                        }
                    }
                    _ => {}
                }
                l.check().unwrap();
                // Liveness: with every answer given back, the oldest frame
                // is granted the rest of its length at once.
                if let Some(&(oldest, need, _)) = reading.iter().min_by_key(|f| f.0) {
                    let mut probe = Ledger { reading: l.reading.clone(), ..Ledger::new(total) };
                    probe.free = l.free + l.pending;
                    probe.total = total;
                    assert!(probe.try_grant(oldest, need), "frame {oldest} could not finish");
                }
            }
            assert!(finished > 0);
        }
    }
}
