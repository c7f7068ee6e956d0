use super::*;

const T: i64 = 10_000;

fn join(id: &str, protocols: &[&str]) -> Join {
    Join {
        member_id: id.to_string(),
        client_id: "c".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: T,
        rebalance_timeout_ms: T,
        protocol_type: "consumer".into(),
        protocols: protocols.iter().map(|p| (p.to_string(), p.as_bytes().to_vec())).collect(),
        require_known_member_id: true,
    }
}

/// A member joins through the member-id-required round.
fn new_member(g: &mut ClassicGroups, group: &str, protocols: &[&str], now: i64) -> (String, Step<Joined>) {
    let id = match g.join(group, join("", protocols), now) {
        Step::Done(Err(Refusal::MemberIdRequired(id))) => id,
        other => panic!("{other:?}"),
    };
    let step = g.join(group, join(&id, protocols), now);
    (id, step)
}

fn joined(step: Step<Joined>) -> Joined {
    match step {
        Step::Done(Ok(j)) => j,
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_member_joins_syncs_and_heartbeats() {
    let mut g = ClassicGroups::default();
    let (a, step) = new_member(&mut g, "g", &["range"], 0);
    let j = joined(step);
    assert_eq!((j.generation, j.leader.as_str(), j.protocol.as_str()), (1, a.as_str(), "range"));
    assert_eq!(j.members, vec![(a.clone(), b"range".to_vec())]);
    assert_eq!(g.sync("g", &a, 1, vec![(a.clone(), b"all".to_vec())], 1), Step::Done(Ok(b"all".to_vec())));
    assert_eq!(g.heartbeat("g", &a, 1, 2), Ok(()));
    assert_eq!(g.heartbeat("g", &a, 0, 2), Err(Refusal::IllegalGeneration));
    assert_eq!(g.heartbeat("g", "nobody", 1, 2), Err(Refusal::UnknownMemberId));
    assert_eq!(g.describe("g").unwrap().state, State::Stable);
    assert_eq!(g.check_commit("g", &a, 1), Ok(()));
    assert_eq!(g.check_commit("g", "", -1), Err(Refusal::UnknownMemberId));
}

#[test]
fn a_second_member_makes_everyone_join_again_and_the_leader_assigns() {
    let mut g = ClassicGroups::default();
    let (a, step) = new_member(&mut g, "g", &["range", "roundrobin"], 0);
    joined(step);
    assert_eq!(g.sync("g", &a, 1, vec![(a.clone(), b"0,1".to_vec())], 0), Step::Done(Ok(b"0,1".to_vec())));
    // b joins: the barrier waits for a.
    let (b, step) = new_member(&mut g, "g", &["roundrobin", "range"], 10);
    assert!(matches!(step, Step::Wait(_)));
    assert_eq!(g.heartbeat("g", &a, 1, 20), Err(Refusal::RebalanceInProgress));
    let ja = joined(g.join("g", join(&a, &["range", "roundrobin"]), 30));
    let jb = g.take_join("g", &b).unwrap().unwrap();
    assert_eq!((ja.generation, jb.generation), (2, 2));
    assert_eq!(ja.leader, a);
    assert_eq!(ja.members.len(), 2);
    assert!(jb.members.is_empty(), "only the leader sees the members");
    // One vote each; the tie goes to the name first in order.
    assert_eq!(ja.protocol, "range");
    // b syncs first and waits for the leader's assignment.
    assert_eq!(g.sync("g", &b, 2, vec![], 40), Step::Wait(b.clone()));
    assert_eq!(g.sync("g", &a, 2, vec![(a.clone(), b"0".to_vec()), (b.clone(), b"1".to_vec())], 50), Step::Done(Ok(b"0".to_vec())));
    assert_eq!(g.take_sync("g", &b), Some(Ok(b"1".to_vec())));
    assert_eq!(g.describe("g").unwrap().members.len(), 2);
}

#[test]
fn a_member_that_does_not_join_again_is_dropped_when_the_rebalance_times_out() {
    let mut g = ClassicGroups::default();
    let (a, step) = new_member(&mut g, "g", &["range"], 0);
    joined(step);
    g.sync("g", &a, 1, vec![], 0);
    let (b, step) = new_member(&mut g, "g", &["range"], 100);
    assert!(matches!(step, Step::Wait(_)));
    // a keeps heartbeating (told to join again) but never joins.
    for t in [3000, 6000, 9000, 100 + T - 1] {
        assert_eq!(g.heartbeat("g", &a, 1, t), Err(Refusal::RebalanceInProgress));
        g.tick(t);
        assert_eq!(g.take_join("g", &b), None, "the barrier waits at {t}");
    }
    assert!(g.tick(100 + T));
    let jb = g.take_join("g", &b).unwrap().unwrap();
    assert_eq!((jb.generation, jb.leader.as_str()), (2, b.as_str()));
    assert_eq!(g.heartbeat("g", &a, 1, 100 + T), Err(Refusal::UnknownMemberId));
}

#[test]
fn a_silent_member_expires_with_its_session_and_the_rest_rebalance() {
    let mut g = ClassicGroups::default();
    let (a, s1) = new_member(&mut g, "g", &["range"], 0);
    joined(s1);
    let (b, s2) = new_member(&mut g, "g", &["range"], 0);
    assert!(matches!(s2, Step::Wait(_)));
    joined(g.join("g", join(&a, &["range"]), 0));
    g.take_join("g", &b).unwrap().unwrap();
    g.sync("g", &a, 2, vec![], 1);
    // b goes silent; a heartbeats.
    for t in (1000..T + 2000).step_by(1000) {
        g.heartbeat("g", &a, 2, t).ok();
        g.tick(t);
    }
    let d = g.describe("g").unwrap();
    assert_eq!(d.members.iter().map(|m| m.member_id.clone()).collect::<Vec<_>>(), vec![a.clone()]);
    assert_eq!(d.state, State::PreparingRebalance);
    assert_eq!(g.heartbeat("g", &a, 2, T + 2000), Err(Refusal::RebalanceInProgress));
    let j = joined(g.join("g", join(&a, &["range"]), T + 2001));
    assert_eq!(j.generation, 3);
}

#[test]
fn leaving_rebalances_the_rest_and_an_empty_group_takes_commits_from_outside() {
    let mut g = ClassicGroups::default();
    let (a, s) = new_member(&mut g, "g", &["range"], 0);
    joined(s);
    assert_eq!(g.check_commit("g", "", -1), Err(Refusal::UnknownMemberId));
    assert_eq!(g.leave("g", &[a.clone(), "ghost".into()], 5), vec![Ok(()), Err(Refusal::UnknownMemberId)]);
    assert_eq!(g.check_commit("g", "", -1), Ok(()));
    assert_eq!(g.check_commit("other", "", -1), Ok(()));
    assert_eq!(g.check_commit("other", "x", 3), Err(Refusal::IllegalGeneration));
    g.tick(10);
    assert!(g.describe("g").is_none(), "an empty group is forgotten");
}

#[test]
fn refusals_for_protocols_ids_and_sizes() {
    let mut g = ClassicGroups::default();
    let (_, s) = new_member(&mut g, "g", &["range"], 0);
    joined(s);
    let mut other = join("", &["cooperative-sticky"]);
    other.require_known_member_id = false;
    assert_eq!(g.join("g", other, 1), Step::Done(Err(Refusal::InconsistentGroupProtocol)));
    let mut wrong_type = join("", &["range"]);
    wrong_type.protocol_type = "connect".into();
    assert_eq!(g.join("g", wrong_type, 1), Step::Done(Err(Refusal::InconsistentGroupProtocol)));
    assert_eq!(g.join("g", join("made-up", &["range"]), 1), Step::Done(Err(Refusal::UnknownMemberId)));
    let mut short = join("", &["range"]);
    short.session_timeout_ms = 10;
    assert_eq!(g.join("g", short, 1), Step::Done(Err(Refusal::InvalidSessionTimeout)));
    // Ids handed out and never used expire.
    let mut h = ClassicGroups::default();
    for _ in 0..MAX_MEMBERS {
        assert!(matches!(h.join("big", join("", &["range"]), 0), Step::Done(Err(Refusal::MemberIdRequired(_)))));
    }
    assert_eq!(h.join("big", join("", &["range"]), 0), Step::Done(Err(Refusal::GroupMaxSizeReached)));
    h.tick(T + 1);
    assert!(matches!(h.join("big", join("", &["range"]), T + 1), Step::Done(Err(Refusal::MemberIdRequired(_)))));
}

#[test]
fn a_follower_joining_again_unchanged_keeps_the_generation_and_the_leader_rebalances() {
    let mut g = ClassicGroups::default();
    let (a, s) = new_member(&mut g, "g", &["range"], 0);
    joined(s);
    let (b, s) = new_member(&mut g, "g", &["range"], 0);
    assert!(matches!(s, Step::Wait(_)));
    joined(g.join("g", join(&a, &["range"]), 0));
    g.take_join("g", &b).unwrap().unwrap();
    g.sync("g", &a, 2, vec![(a.clone(), b"x".to_vec()), (b.clone(), b"y".to_vec())], 1);
    let j = joined(g.join("g", join(&b, &["range"]), 2));
    assert_eq!(j.generation, 2);
    assert_eq!(g.sync("g", &b, 2, vec![], 3), Step::Done(Ok(b"y".to_vec())));
    // The leader joining again (its topics changed) rebalances everyone.
    assert!(matches!(g.join("g", join(&a, &["range"]), 4), Step::Wait(_)));
    assert_eq!(g.heartbeat("g", &b, 2, 5), Err(Refusal::RebalanceInProgress));
    joined(g.join("g", join(&b, &["range"]), 6));
    assert_eq!(g.take_join("g", &a).unwrap().unwrap().generation, 3);
}
