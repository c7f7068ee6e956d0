//! Kafka's classic consumer group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup), the coordinator's side, sans-IO: the caller
//! passes the time and collects the answers a step makes ready.
//!
//! A group's life: members join (a member without an id is given one and
//! asked to join again with it: Kafka's member-id-required round); the
//! join barrier waits until every known member has joined again or the
//! rebalance timeout passes (members that did not are removed); then the
//! generation moves on, the protocol every member supports is chosen by
//! the members' votes, a leader is named, and every waiting join is
//! answered (the leader with every member's metadata). The leader's
//! SyncGroup brings the assignments, which answer every member's
//! SyncGroup. Heartbeats keep a member (its session timeout) and tell it
//! when to join again. Assignments and metadata are opaque bytes: the
//! clients assign.
//!
//! Invariants: the generation only grows; a member is in at most one
//! group; a join or sync answer is made once per member and round; every
//! map is bounded by the members the group has (at most
//! [`MAX_MEMBERS`]), and ids handed out but not yet used expire with
//! their session timeout.

use std::collections::{BTreeMap, HashMap};

/// Most members one group takes; more are refused (Kafka's
/// `group.max.size` is unbounded by default, ours is not).
pub const MAX_MEMBERS: usize = 1000;

/// The group's state, as Kafka names it (DescribeGroups says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::PreparingRebalance => "PreparingRebalance",
            State::CompletingRebalance => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// Why a request is refused (Kafka's error of the same name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    UnknownMemberId,
    IllegalGeneration,
    RebalanceInProgress,
    InconsistentGroupProtocol,
    /// The member must join again with this id (JoinGroup v4+).
    MemberIdRequired(String),
    GroupMaxSizeReached,
    InvalidSessionTimeout,
}

/// A JoinGroup, as its member sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    /// Empty for a member that has none yet.
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i64,
    pub rebalance_timeout_ms: i64,
    pub protocol_type: String,
    /// The protocols it supports, in its order of preference, each with
    /// its metadata.
    pub protocols: Vec<(String, Vec<u8>)>,
    /// The client asks for a member id round first (JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// A join's answer, once the barrier completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub generation: i32,
    pub protocol_type: String,
    pub protocol: String,
    pub leader: String,
    pub member_id: String,
    /// For the leader only: every member and its metadata for the chosen
    /// protocol.
    pub members: Vec<(String, Vec<u8>)>,
}

/// What became of a JoinGroup or SyncGroup: answered now, or when a later
/// step makes its answer ready (the caller waits for it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<T> {
    Done(Result<T, Refusal>),
    /// The answer comes later, for this member id.
    Wait(String),
}

#[derive(Debug, Clone)]
struct Member {
    client_id: String,
    client_host: String,
    session_timeout_ms: i64,
    rebalance_timeout_ms: i64,
    protocols: Vec<(String, Vec<u8>)>,
    last_heard_ms: i64,
    /// It joined in the rebalance under way.
    joined: bool,
    /// Its join's answer, made when the barrier completed, not yet taken.
    join_answer: Option<Result<Joined, Refusal>>,
    /// It waits for its SyncGroup's answer.
    syncing: bool,
    /// Its sync's answer, not yet taken.
    sync_answer: Option<Result<Vec<u8>, Refusal>>,
    assignment: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Group {
    state: State,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Ids handed out in a member-id-required round, not yet used, with
    /// when they expire.
    pending: HashMap<String, i64>,
    /// When the join barrier gives up on members that did not join.
    rebalance_deadline_ms: i64,
    next_member: u64,
}

impl Group {
    fn new() -> Self {
        Group {
            state: State::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            rebalance_deadline_ms: 0,
            next_member: 0,
        }
    }

    /// Starts (or keeps) a rebalance: every member must join again.
    fn prepare_rebalance(&mut self, now_ms: i64) {
        if self.state != State::PreparingRebalance {
            for m in self.members.values_mut() {
                m.joined = false;
                // A sync waiting for an assignment that will not come.
                if m.syncing {
                    m.syncing = false;
                    m.sync_answer = Some(Err(Refusal::RebalanceInProgress));
                }
            }
            let timeout = self.members.values().map(|m| m.rebalance_timeout_ms).max().unwrap_or(0);
            self.rebalance_deadline_ms = now_ms.saturating_add(timeout);
            self.state = State::PreparingRebalance;
        }
    }

    /// Completes the join barrier if every member joined, or its time
    /// is up (then the members that did not join are removed).
    fn try_complete_join(&mut self, now_ms: i64) {
        if self.state != State::PreparingRebalance {
            return;
        }
        let all = self.members.values().all(|m| m.joined);
        if !all && now_ms < self.rebalance_deadline_ms {
            return;
        }
        self.members.retain(|_, m| m.joined);
        self.generation += 1;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        let protocol = self.choose_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        let leader = self.leader.clone().expect("a group with members has a leader");
        let everyone: Vec<(String, Vec<u8>)> = self.members.iter().map(|(id, m)| (id.clone(), metadata_for(&m.protocols, &protocol).to_vec())).collect();
        let protocol_type = self.protocol_type.clone().unwrap_or_default();
        for (id, m) in self.members.iter_mut() {
            m.assignment.clear();
            m.join_answer = Some(Ok(Joined {
                generation: self.generation,
                protocol_type: protocol_type.clone(),
                protocol: protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader { everyone.clone() } else { Vec::new() },
            }));
        }
        self.protocol = Some(protocol);
        self.state = State::CompletingRebalance;
    }

    /// The protocol every member supports that most members prefer (each
    /// votes for the first of its own it can; ties go to the name first
    /// in order).
    fn choose_protocol(&self) -> String {
        let common: Vec<&String> = self
            .members
            .values()
            .next()
            .map(|m| m.protocols.iter().map(|(p, _)| p).filter(|p| self.members.values().all(|o| o.protocols.iter().any(|(q, _)| q == *p))).collect())
            .unwrap_or_default();
        let mut votes: BTreeMap<&String, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some((p, _)) = m.protocols.iter().find(|(p, _)| common.contains(&p)) {
                *votes.entry(p).or_default() += 1;
            }
        }
        votes.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(p, _)| (*p).clone()).unwrap_or_default()
    }

    /// Whether a joining member's protocols fit the group's.
    fn consistent(&self, j: &Join) -> bool {
        if j.protocol_type.is_empty() || j.protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(j.protocol_type.as_str()) {
            return false;
        }
        // Some protocol every other member supports too.
        j.protocols.iter().any(|(p, _)| self.members.values().all(|m| m.protocols.iter().any(|(q, _)| q == p)))
    }

    fn remove(&mut self, id: &str, now_ms: i64) {
        if self.members.remove(id).is_some() {
            if self.leader.as_deref() == Some(id) {
                self.leader = None;
            }
            if self.state == State::PreparingRebalance {
                self.try_complete_join(now_ms);
            } else {
                self.prepare_rebalance(now_ms);
                self.try_complete_join(now_ms);
            }
        }
    }
}

fn metadata_for<'a>(protocols: &'a [(String, Vec<u8>)], name: &str) -> &'a [u8] {
    protocols.iter().find(|(p, _)| p == name).map_or(&[], |(_, m)| m.as_slice())
}

/// What DescribeGroups says of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    pub state: State,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<DescribedMember>,
}

/// One member, as DescribeGroups says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    /// Its metadata for the group's protocol.
    pub metadata: Vec<u8>,
    pub assignment: Vec<u8>,
}

/// Every classic group a coordinator owns.
#[derive(Debug, Default)]
pub struct ClassicGroups {
    groups: HashMap<String, Group>,
}

/// Session timeouts a member may ask for (Kafka's
/// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`).
pub const MIN_SESSION_TIMEOUT_MS: i64 = 1_000;
pub const MAX_SESSION_TIMEOUT_MS: i64 = 30 * 60 * 1000;

impl ClassicGroups {
    /// Whether `group` is a classic group with members (a native group of
    /// the same name must not mix with it).
    pub fn has_members(&self, group: &str) -> bool {
        self.groups.get(group).is_some_and(|g| !g.members.is_empty())
    }

    /// A JoinGroup. `Wait`: the answer comes with [`Self::take_join`]
    /// once a later step completes the barrier.
    pub fn join(&mut self, group: &str, j: Join, now_ms: i64) -> Step<Joined> {
        if !(MIN_SESSION_TIMEOUT_MS..=MAX_SESSION_TIMEOUT_MS).contains(&j.session_timeout_ms) {
            return Step::Done(Err(Refusal::InvalidSessionTimeout));
        }
        let g = self.groups.entry(group.to_string()).or_insert_with(Group::new);
        if !g.consistent(&j) {
            return Step::Done(Err(Refusal::InconsistentGroupProtocol));
        }
        let id = if j.member_id.is_empty() {
            if g.members.len() + g.pending.len() >= MAX_MEMBERS {
                return Step::Done(Err(Refusal::GroupMaxSizeReached));
            }
            g.next_member += 1;
            let id = format!("{}-{}-{}", if j.client_id.is_empty() { "member" } else { &j.client_id }, g.generation, g.next_member);
            if j.require_known_member_id {
                g.pending.insert(id.clone(), now_ms.saturating_add(j.session_timeout_ms));
                return Step::Done(Err(Refusal::MemberIdRequired(id)));
            }
            id
        } else if g.members.contains_key(&j.member_id) || g.pending.remove(&j.member_id).is_some() {
            j.member_id.clone()
        } else {
            return Step::Done(Err(Refusal::UnknownMemberId));
        };
        // A follower joining again unchanged while the group is stable gets
        // the current generation rather than a rebalance of everyone; the
        // leader joining again starts one (it saw the topics change), as
        // Kafka's coordinator does.
        if g.state == State::Stable && g.leader.as_deref() != Some(id.as_str()) {
            if let Some(m) = g.members.get(&id) {
                if m.protocols == j.protocols {
                    return Step::Done(Ok(Joined {
                        generation: g.generation,
                        protocol_type: g.protocol_type.clone().unwrap_or_default(),
                        protocol: g.protocol.clone().unwrap_or_default(),
                        leader: g.leader.clone().unwrap_or_default(),
                        member_id: id,
                        members: Vec::new(),
                    }));
                }
            }
        }
        if g.members.is_empty() {
            g.protocol_type = Some(j.protocol_type.clone());
        }
        let m = g.members.entry(id.clone()).or_insert_with(|| Member {
            client_id: j.client_id.clone(),
            client_host: j.client_host.clone(),
            session_timeout_ms: j.session_timeout_ms,
            rebalance_timeout_ms: j.rebalance_timeout_ms,
            protocols: Vec::new(),
            last_heard_ms: now_ms,
            joined: false,
            join_answer: None,
            syncing: false,
            sync_answer: None,
            assignment: Vec::new(),
        });
        m.protocols = j.protocols;
        m.session_timeout_ms = j.session_timeout_ms;
        m.rebalance_timeout_ms = j.rebalance_timeout_ms;
        m.last_heard_ms = now_ms;
        m.join_answer = None;
        g.prepare_rebalance(now_ms);
        if let Some(m) = g.members.get_mut(&id) {
            m.joined = true;
        }
        g.try_complete_join(now_ms);
        match g.members.get_mut(&id).and_then(|m| m.join_answer.take()) {
            Some(a) => Step::Done(a),
            None => Step::Wait(id),
        }
    }

    /// The answer to a member's join that waited, once ready; a member no
    /// longer in the group is told so.
    pub fn take_join(&mut self, group: &str, member_id: &str) -> Option<Result<Joined, Refusal>> {
        let Some(g) = self.groups.get_mut(group) else { return Some(Err(Refusal::UnknownMemberId)) };
        match g.members.get_mut(member_id) {
            None => Some(Err(Refusal::UnknownMemberId)),
            Some(m) => m.join_answer.take(),
        }
    }

    /// A SyncGroup; the leader's carries every member's assignment.
    pub fn sync(&mut self, group: &str, member_id: &str, generation: i32, assignments: Vec<(String, Vec<u8>)>, now_ms: i64) -> Step<Vec<u8>> {
        let Some(g) = self.groups.get_mut(group) else { return Step::Done(Err(Refusal::UnknownMemberId)) };
        let Some(m) = g.members.get_mut(member_id) else { return Step::Done(Err(Refusal::UnknownMemberId)) };
        m.last_heard_ms = now_ms;
        if generation != g.generation {
            return Step::Done(Err(Refusal::IllegalGeneration));
        }
        match g.state {
            State::Empty => Step::Done(Err(Refusal::UnknownMemberId)),
            State::PreparingRebalance => Step::Done(Err(Refusal::RebalanceInProgress)),
            State::Stable => Step::Done(Ok(m.assignment.clone())),
            State::CompletingRebalance => {
                m.syncing = true;
                m.sync_answer = None;
                if g.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Vec<u8>> = assignments.into_iter().collect();
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                        if m.syncing {
                            m.syncing = false;
                            m.sync_answer = Some(Ok(m.assignment.clone()));
                        }
                    }
                    g.state = State::Stable;
                }
                match g.members.get_mut(member_id).and_then(|m| m.sync_answer.take()) {
                    Some(a) => Step::Done(a),
                    None => Step::Wait(member_id.to_string()),
                }
            }
        }
    }

    /// The answer to a member's sync that waited, once ready.
    pub fn take_sync(&mut self, group: &str, member_id: &str) -> Option<Result<Vec<u8>, Refusal>> {
        let Some(g) = self.groups.get_mut(group) else { return Some(Err(Refusal::UnknownMemberId)) };
        match g.members.get_mut(member_id) {
            None => Some(Err(Refusal::UnknownMemberId)),
            Some(m) => m.sync_answer.take(),
        }
    }

    /// A Heartbeat: keeps the member, and says when to join again.
    pub fn heartbeat(&mut self, group: &str, member_id: &str, generation: i32, now_ms: i64) -> Result<(), Refusal> {
        let g = self.groups.get_mut(group).ok_or(Refusal::UnknownMemberId)?;
        let m = g.members.get_mut(member_id).ok_or(Refusal::UnknownMemberId)?;
        m.last_heard_ms = now_ms;
        match g.state {
            State::PreparingRebalance => Err(Refusal::RebalanceInProgress),
            _ if generation != g.generation => Err(Refusal::IllegalGeneration),
            _ => Ok(()),
        }
    }

    /// A LeaveGroup of some members: the others join again.
    pub fn leave(&mut self, group: &str, member_ids: &[String], now_ms: i64) -> Vec<Result<(), Refusal>> {
        let Some(g) = self.groups.get_mut(group) else { return vec![Err(Refusal::UnknownMemberId); member_ids.len()] };
        member_ids
            .iter()
            .map(|id| {
                if g.members.contains_key(id) {
                    g.remove(id, now_ms);
                    Ok(())
                } else {
                    Err(Refusal::UnknownMemberId)
                }
            })
            .collect()
    }

    /// Whether a commit by `member_id` in `generation` may go ahead:
    /// generation -1 (and no member) only while the group has no members.
    pub fn check_commit(&self, group: &str, member_id: &str, generation: i32) -> Result<(), Refusal> {
        let Some(g) = self.groups.get(group).filter(|g| !g.members.is_empty()) else {
            return if generation == -1 { Ok(()) } else { Err(Refusal::IllegalGeneration) };
        };
        if !g.members.contains_key(member_id) {
            return Err(Refusal::UnknownMemberId);
        }
        if g.state == State::PreparingRebalance {
            return Err(Refusal::RebalanceInProgress);
        }
        if generation != g.generation {
            return Err(Refusal::IllegalGeneration);
        }
        Ok(())
    }

    /// Time passing: members whose session ran out are removed, ids
    /// handed out and not used expire, and join barriers whose time is up
    /// complete. Returns whether anything changed (answers may be ready).
    pub fn tick(&mut self, now_ms: i64) -> bool {
        let mut changed = false;
        self.groups.retain(|_, g| {
            g.pending.retain(|_, until| *until > now_ms);
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| !m.joined || g.state != State::PreparingRebalance)
                .filter(|(_, m)| m.last_heard_ms.saturating_add(m.session_timeout_ms) < now_ms)
                .map(|(id, _)| id.clone())
                .collect();
            for id in expired {
                g.remove(&id, now_ms);
                changed = true;
            }
            if g.state == State::PreparingRebalance && now_ms >= g.rebalance_deadline_ms {
                g.try_complete_join(now_ms);
                changed = true;
            }
            // An empty group with nothing pending is forgotten.
            !(g.members.is_empty() && g.pending.is_empty() && g.state == State::Empty)
        });
        changed
    }

    /// The groups there are, with their protocol type.
    pub fn list(&self) -> Vec<(String, String, State)> {
        let mut out: Vec<_> = self.groups.iter().map(|(n, g)| (n.clone(), g.protocol_type.clone().unwrap_or_default(), g.state)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub fn describe(&self, group: &str) -> Option<Description> {
        let g = self.groups.get(group)?;
        let protocol = g.protocol.clone().unwrap_or_default();
        Some(Description {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| DescribedMember {
                    member_id: id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: metadata_for(&m.protocols, &protocol).to_vec(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests;
