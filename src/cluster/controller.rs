//! The controller's decisions, sans-IO: which brokers to register and
//! which to fence. The controller is whichever voter leads the quorum; it
//! hears every broker's heartbeats and turns what it hears into commands.
//!
//! Invariant: the controller never fences a broker it has not had a whole
//! session timeout to hear from since it became controller, so a new
//! controller does not fence brokers that were heartbeating to its
//! predecessor.

use std::collections::BTreeMap;

use super::metadata::{BrokerMeta, Command, Metadata, NodeId};

#[derive(Debug, Default)]
pub struct Liveness {
    /// The last heartbeat of each broker: its incarnation and when (ms).
    heard: BTreeMap<NodeId, (u64, u64)>,
    /// When this voter became controller (ms).
    since_ms: u64,
    /// When a command about a broker was last proposed (ms), so a command
    /// waiting to commit is not proposed again on every check.
    proposed: BTreeMap<NodeId, u64>,
}

/// How long a proposed command about a broker is given to commit before
/// the controller proposes it again.
pub const REPROPOSE_AFTER_MS: u64 = 1000;

impl Liveness {
    /// Forgets everything: this voter just became controller.
    pub fn reset(&mut self, now_ms: u64) {
        *self = Liveness { since_ms: now_ms, ..Default::default() };
    }

    /// Takes a heartbeat; returns the command that registers the broker
    /// if the metadata does not hold it as sent (new, restarted, moved, or
    /// fenced).
    pub fn heartbeat(&mut self, md: &Metadata, b: &BrokerMeta, now_ms: u64) -> Option<Command> {
        let current = md.brokers.get(&b.id);
        if current.is_some_and(|c| c.incarnation > b.incarnation) {
            // A zombie: an older process of a broker that restarted.
            return None;
        }
        self.heard.insert(b.id, (b.incarnation, now_ms));
        let registered = current.is_some_and(|c| !c.fenced && c == &BrokerMeta { fenced: false, ..b.clone() });
        if registered || !self.may_propose(b.id, now_ms) {
            return None;
        }
        Some(Command::RegisterBroker(BrokerMeta { fenced: false, ..b.clone() }))
    }

    /// Fences of live brokers not heard from within `session_ms`.
    pub fn expired(&mut self, md: &Metadata, now_ms: u64, session_ms: u64) -> Vec<Command> {
        if now_ms < self.since_ms + session_ms {
            return Vec::new();
        }
        let mut out = Vec::new();
        for b in md.live_brokers() {
            let fresh = self.heard.get(&b.id).is_some_and(|&(inc, at)| inc == b.incarnation && now_ms < at + session_ms);
            if !fresh && self.may_propose(b.id, now_ms) {
                out.push(Command::FenceBroker { id: b.id, incarnation: b.incarnation });
            }
        }
        out
    }

    fn may_propose(&mut self, id: NodeId, now_ms: u64) -> bool {
        if self.proposed.get(&id).is_some_and(|&at| now_ms < at + REPROPOSE_AFTER_MS) {
            return false;
        }
        self.proposed.insert(id, now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::metadata::Proposal;

    fn b(id: NodeId, incarnation: u64) -> BrokerMeta {
        BrokerMeta { id, host: "h".into(), port: 1, shards: 1, incarnation, fenced: false, external: None }
    }

    #[test]
    fn registers_once_fences_the_silent_and_ignores_zombies() {
        let mut md = Metadata::default();
        let mut l = Liveness::default();
        l.reset(0);
        let c = l.heartbeat(&md, &b(1, 5), 10).expect("a new broker registers");
        assert!(l.heartbeat(&md, &b(1, 5), 20).is_none(), "not again while it commits");
        md.apply(1, &Proposal { origin: 1, request: 1, command: c });
        assert!(l.heartbeat(&md, &b(1, 5), 2000).is_none(), "registered as sent");
        assert!(l.heartbeat(&md, &b(1, 4), 2100).is_none(), "an older incarnation is a zombie");
        assert!(l.expired(&md, 2500, 3000).is_empty(), "the controller's first session is a grace period");
        assert!(l.expired(&md, 4000, 3000).is_empty(), "heard at 2000");
        let f = l.expired(&md, 5100, 3000);
        assert_eq!(f, vec![Command::FenceBroker { id: 1, incarnation: 5 }]);
        md.apply(2, &Proposal { origin: 1, request: 2, command: f[0].clone() });
        assert!(md.brokers[&1].fenced);
        assert!(l.heartbeat(&md, &b(1, 5), 7000).is_some(), "a fenced broker that speaks again registers again");
    }
}
