//! Group membership, sans-IO: who is in a group, its generation, and which
//! partitions each member consumes.
//!
//! The broker assigns partitions (as in Kafka's KIP-848 protocol): a member
//! heartbeats with its subscription and gets back its member id, the
//! group's generation and its assignment. Any change of members or
//! subscriptions bumps the generation and recomputes the assignment; a
//! member that misses its session timeout is removed. Commits carry the
//! generation, and a commit from an older generation is refused, so a
//! member that lost partitions cannot overwrite the new owner's offsets.
//!
//! Invariant: within a generation every subscribed partition is assigned
//! to exactly one member, and members are compared in sorted order, so an
//! assignment depends only on the members and subscriptions.

use std::collections::BTreeMap;

/// Most members one group may have.
pub const MAX_MEMBERS_PER_GROUP: usize = 1000;
/// Session timeouts a member may ask for.
pub const SESSION_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 1_000..=300_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Per topic, contiguous ranges of partitions to members in order.
    Range,
    /// All partitions dealt to members in turn.
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("member '{0}' is not in the group (it left or its session expired); join again")]
    UnknownMember(String),
    #[error("generation {given} is stale; the group is at {current}")]
    StaleGeneration { given: i32, current: i32 },
    #[error("the group has {MAX_MEMBERS_PER_GROUP} members already")]
    Full,
    #[error("session timeout {0} ms is outside 1000..=300000")]
    BadSessionTimeout(u64),
    #[error("the group's coordinator is not available")]
    Unavailable,
    #[error("this broker does not coordinate the group; find its coordinator")]
    NotCoordinator,
    #[error("the group's members are Kafka clients (JoinGroup): a group is either native or Kafka's")]
    InconsistentProtocol,
}

#[derive(Debug, Clone)]
struct Member {
    topics: Vec<String>,
    session_timeout_ms: u64,
    last_seen_ms: i64,
}

#[derive(Debug, Clone)]
struct Group {
    generation: i32,
    assignor: Assignor,
    members: BTreeMap<String, Member>,
    assignment: BTreeMap<String, Vec<(String, u32)>>,
}

/// What a member asks for in a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topics: Vec<String>,
    pub assignor: Assignor,
    pub session_timeout_ms: u64,
}

/// What a heartbeat gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub member_id: String,
    pub generation: i32,
    pub assignment: Vec<(String, u32)>,
}

/// The groups one coordinator owns.
#[derive(Debug, Default)]
pub struct Membership {
    groups: BTreeMap<String, Group>,
    next_member: u64,
}

impl Membership {
    /// Whether `group` has members.
    pub fn has_members(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|g| !g.members.is_empty())
    }

    /// Joins (no `member_id`) or renews a member, and returns its view.
    /// `partitions` gives a topic's partition count (`None`: no such topic).
    pub fn heartbeat(
        &mut self,
        group: &str,
        member_id: Option<&str>,
        sub: &Subscription,
        now_ms: i64,
        partitions: &dyn Fn(&str) -> Option<u32>,
    ) -> Result<Heartbeat, GroupError> {
        let Subscription { topics, assignor, session_timeout_ms } = sub;
        let (assignor, session_timeout_ms) = (*assignor, *session_timeout_ms);
        if !SESSION_TIMEOUT_MS.contains(&session_timeout_ms) {
            return Err(GroupError::BadSessionTimeout(session_timeout_ms));
        }
        self.expire(now_ms, partitions);
        let g =
            self.groups.entry(group.to_string()).or_insert_with(|| Group { generation: 0, assignor, members: BTreeMap::new(), assignment: BTreeMap::new() });
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        let id = match member_id {
            Some(id) => {
                let m = g.members.get_mut(id).ok_or_else(|| GroupError::UnknownMember(id.to_string()))?;
                m.last_seen_ms = now_ms;
                m.session_timeout_ms = session_timeout_ms;
                if m.topics != topics {
                    m.topics = topics;
                    rebalance(g, partitions);
                }
                id.to_string()
            }
            None => {
                if g.members.len() >= MAX_MEMBERS_PER_GROUP {
                    return Err(GroupError::Full);
                }
                self.next_member += 1;
                let id = format!("{group}-{}", self.next_member);
                g.members.insert(id.clone(), Member { topics, session_timeout_ms, last_seen_ms: now_ms });
                g.assignor = assignor;
                rebalance(g, partitions);
                id
            }
        };
        Ok(Heartbeat { generation: g.generation, assignment: g.assignment.get(&id).cloned().unwrap_or_default(), member_id: id })
    }

    /// Removes a member at once; the others rebalance.
    pub fn leave(&mut self, group: &str, member_id: &str, partitions: &dyn Fn(&str) -> Option<u32>) -> Result<(), GroupError> {
        let g = self.groups.get_mut(group).ok_or_else(|| GroupError::UnknownMember(member_id.to_string()))?;
        if g.members.remove(member_id).is_none() {
            return Err(GroupError::UnknownMember(member_id.to_string()));
        }
        rebalance(g, partitions);
        if g.members.is_empty() {
            self.groups.remove(group);
        }
        Ok(())
    }

    /// Removes members whose session ran out; their groups rebalance.
    pub fn expire(&mut self, now_ms: i64, partitions: &dyn Fn(&str) -> Option<u32>) {
        for g in self.groups.values_mut() {
            let before = g.members.len();
            g.members.retain(|_, m| now_ms - m.last_seen_ms <= m.session_timeout_ms as i64);
            if g.members.len() != before {
                rebalance(g, partitions);
            }
        }
        self.groups.retain(|_, g| !g.members.is_empty());
    }

    /// Whether `member_id` may commit at `generation`. A commit without a
    /// member (a standalone consumer) is allowed while the group is empty.
    pub fn check_commit(&self, group: &str, member_id: Option<&str>, generation: i32) -> Result<(), GroupError> {
        let Some(g) = self.groups.get(group) else {
            return match member_id {
                None => Ok(()),
                Some(m) => Err(GroupError::UnknownMember(m.to_string())),
            };
        };
        let Some(m) = member_id else {
            return Err(GroupError::StaleGeneration { given: generation, current: g.generation });
        };
        if !g.members.contains_key(m) {
            return Err(GroupError::UnknownMember(m.to_string()));
        }
        if generation != g.generation {
            return Err(GroupError::StaleGeneration { given: generation, current: g.generation });
        }
        Ok(())
    }

    pub fn generation(&self, group: &str) -> Option<i32> {
        self.groups.get(group).map(|g| g.generation)
    }
}

fn rebalance(g: &mut Group, partitions: &dyn Fn(&str) -> Option<u32>) {
    g.generation += 1;
    g.assignment = assign(g.assignor, &g.members, partitions);
}

fn assign(assignor: Assignor, members: &BTreeMap<String, Member>, partitions: &dyn Fn(&str) -> Option<u32>) -> BTreeMap<String, Vec<(String, u32)>> {
    let mut out: BTreeMap<String, Vec<(String, u32)>> = members.keys().map(|m| (m.clone(), Vec::new())).collect();
    let mut topics: Vec<&String> = members.values().flat_map(|m| m.topics.iter()).collect();
    topics.sort();
    topics.dedup();
    match assignor {
        Assignor::Range => {
            for t in topics {
                let Some(n) = partitions(t) else { continue };
                let subs: Vec<&String> = members.iter().filter(|(_, m)| m.topics.contains(t)).map(|(id, _)| id).collect();
                let (per, extra) = (n / subs.len() as u32, n % subs.len() as u32);
                let mut next = 0;
                for (i, id) in subs.iter().enumerate() {
                    let take = per + u32::from((i as u32) < extra);
                    let v = out.get_mut(*id).expect("every member has an entry");
                    v.extend((next..next + take).map(|p| (t.clone(), p)));
                    next += take;
                }
            }
        }
        Assignor::RoundRobin => {
            let ids: Vec<&String> = members.keys().collect();
            let mut turn = 0usize;
            for t in topics {
                let Some(n) = partitions(t) else { continue };
                for p in 0..n {
                    // The next member, in turn, that subscribes to `t`.
                    for _ in 0..ids.len() {
                        let id = ids[turn % ids.len()];
                        turn += 1;
                        if members[id].topics.contains(t) {
                            out.get_mut(id).expect("every member has an entry").push((t.clone(), p));
                            break;
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(topics: &[&str], assignor: Assignor, session_timeout_ms: u64) -> Subscription {
        Subscription { topics: topics.iter().map(|t| t.to_string()).collect(), assignor, session_timeout_ms }
    }

    fn four(t: &str) -> Option<u32> {
        (t == "t").then_some(4)
    }

    fn hb(m: &mut Membership, id: Option<&str>, a: Assignor, now: i64) -> Heartbeat {
        m.heartbeat("g", id, &sub(&["t"], a, 10_000), now, &four).unwrap()
    }

    #[test]
    fn two_members_split_and_rebalance_when_one_leaves() {
        for (a, first, second) in [(Assignor::Range, vec![0, 1], vec![2, 3]), (Assignor::RoundRobin, vec![0, 2], vec![1, 3])] {
            let mut m = Membership::default();
            let x = hb(&mut m, None, a, 0);
            assert_eq!((x.generation, x.assignment.len()), (1, 4));
            let y = hb(&mut m, None, a, 1);
            let x = hb(&mut m, Some(&x.member_id), a, 2);
            assert_eq!(x.generation, 2);
            assert_eq!(y.generation, 2);
            let parts = |h: &Heartbeat| h.assignment.iter().map(|(_, p)| *p).collect::<Vec<u32>>();
            assert_eq!((parts(&x), parts(&y)), (first.clone(), second.clone()), "{a:?}");
            m.leave("g", &y.member_id, &four).unwrap();
            let x = hb(&mut m, Some(&x.member_id), a, 3);
            assert_eq!((x.generation, parts(&x)), (3, vec![0, 1, 2, 3]));
        }
    }

    #[test]
    fn a_silent_member_expires_and_is_fenced() {
        let mut m = Membership::default();
        let x = hb(&mut m, None, Assignor::Range, 0);
        let y = hb(&mut m, None, Assignor::Range, 0);
        assert!(m.check_commit("g", Some(&y.member_id), y.generation).is_ok());
        // x keeps heartbeating, y goes silent past its 10 s session.
        let x = hb(&mut m, Some(&x.member_id), Assignor::Range, 9_000);
        let x = hb(&mut m, Some(&x.member_id), Assignor::Range, 12_000);
        assert_eq!(x.assignment.len(), 4);
        assert_eq!(m.check_commit("g", Some(&y.member_id), y.generation), Err(GroupError::UnknownMember(y.member_id.clone())));
        assert!(matches!(m.check_commit("g", Some(&x.member_id), x.generation - 1), Err(GroupError::StaleGeneration { .. })));
        assert!(matches!(m.heartbeat("g", Some(&y.member_id), &sub(&[], Assignor::Range, 10_000), 12_000, &four), Err(GroupError::UnknownMember(_))));
    }

    #[test]
    fn every_partition_has_exactly_one_owner() {
        let parts = |t: &str| Some(t.len() as u32 + 2);
        for a in [Assignor::Range, Assignor::RoundRobin] {
            let mut m = Membership::default();
            let subs = [vec!["a"], vec!["a", "bb"], vec!["bb", "ccc"], vec!["ccc"], vec!["a", "ccc"]];
            let mut ids = Vec::new();
            for s in &subs {
                let topics: Vec<String> = s.iter().map(|x| x.to_string()).collect();
                ids.push((m.heartbeat("g", None, &sub(s, a, 10_000), 0, &parts).unwrap().member_id, topics));
            }
            let mut owners: BTreeMap<(String, u32), usize> = BTreeMap::new();
            for (id, topics) in &ids {
                let t: Vec<&str> = topics.iter().map(String::as_str).collect();
                let h = m.heartbeat("g", Some(id), &sub(&t, a, 10_000), 1, &parts).unwrap();
                for tp in h.assignment {
                    assert!(topics.contains(&tp.0), "{a:?}: assigned an unsubscribed topic");
                    *owners.entry(tp).or_default() += 1;
                }
            }
            let total: u32 = ["a", "bb", "ccc"].iter().map(|t| parts(t).unwrap()).sum();
            assert_eq!(owners.len() as u32, total, "{a:?}: every partition assigned");
            assert!(owners.values().all(|&n| n == 1), "{a:?}: no partition twice");
        }
    }

    #[test]
    fn limits() {
        let mut m = Membership::default();
        assert_eq!(m.heartbeat("g", None, &sub(&[], Assignor::Range, 10), 0, &four), Err(GroupError::BadSessionTimeout(10)));
        assert!(m.check_commit("nobody", None, -1).is_ok(), "a standalone consumer may commit to an empty group");
    }
}
