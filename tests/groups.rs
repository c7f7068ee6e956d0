//! Consumer groups against a real broker, through the client library.

mod common;

use common::Broker;
use shardlog::client::raw::Connection;
use shardlog::protocol::ErrorCode;

fn parts(v: &shardlog::client::raw::GroupView) -> Vec<u32> {
    let mut p: Vec<u32> = v.assignment.iter().map(|(_, p)| *p).collect();
    p.sort_unstable();
    p
}

#[test]
fn two_members_split_a_topic_and_rebalance_when_one_leaves() {
    let b = Broker::start(2);
    let mut c = Connection::connect(b.addr).unwrap();
    c.create_topic("split", 4).unwrap();
    let x = c.group_heartbeat("g", None, &["split"], 10_000, false).unwrap();
    assert_eq!((x.error, parts(&x)), (ErrorCode::None, vec![0, 1, 2, 3]));
    // A second member on another connection (likely another shard).
    let mut c2 = Connection::connect(b.addr).unwrap();
    let y = c2.group_heartbeat("g", None, &["split"], 10_000, false).unwrap();
    let x = c.group_heartbeat("g", Some(&x.member_id), &["split"], 10_000, false).unwrap();
    assert_eq!(x.generation, y.generation);
    let (px, py) = (parts(&x), parts(&y));
    assert_eq!((px.len(), py.len()), (2, 2));
    assert!(px.iter().all(|p| !py.contains(p)), "no partition is owned twice: {px:?} {py:?}");

    // Each commits what it owns under the current generation.
    let r = c.commit_offsets("g", Some((&x.member_id, x.generation)), "split", &[(px[0], 7)]).unwrap();
    assert_eq!(r[0].1, ErrorCode::None);
    // Without membership, or with a stale generation, a commit is refused.
    assert_eq!(c.commit_offsets("g", None, "split", &[(px[0], 8)]).unwrap()[0].1, ErrorCode::IllegalGeneration);
    assert_eq!(c.commit_offsets("g", Some((&x.member_id, x.generation - 1)), "split", &[(px[0], 8)]).unwrap()[0].1, ErrorCode::IllegalGeneration);

    // y leaves: x owns everything in the next generation.
    let left = c2.group_heartbeat("g", Some(&y.member_id), &["split"], 10_000, true).unwrap();
    assert_eq!(left.error, ErrorCode::None);
    let x2 = c.group_heartbeat("g", Some(&x.member_id), &["split"], 10_000, false).unwrap();
    assert_eq!((parts(&x2), x2.generation), (vec![0, 1, 2, 3], x.generation + 1));
    assert_eq!(c.fetch_offsets("g", "split", &[px[0]]).unwrap()[0].2, 7);
    // y is gone for good.
    assert_eq!(c2.group_heartbeat("g", Some(&y.member_id), &["split"], 10_000, false).unwrap().error, ErrorCode::UnknownMemberId);
}

#[test]
fn a_member_that_stops_heartbeating_is_dropped() {
    let b = Broker::start(2);
    let mut c = Connection::connect(b.addr).unwrap();
    c.create_topic("quiet", 2).unwrap();
    let x = c.group_heartbeat("q", None, &["quiet"], 1_000, false).unwrap();
    let y = c.group_heartbeat("q", None, &["quiet"], 10_000, false).unwrap();
    assert_eq!(parts(&y).len(), 1);
    // x stays silent past its 1 s session; y then owns both partitions.
    std::thread::sleep(std::time::Duration::from_millis(2_500));
    let y = c.group_heartbeat("q", Some(&y.member_id), &["quiet"], 10_000, false).unwrap();
    assert_eq!(parts(&y), vec![0, 1]);
    assert_eq!(c.group_heartbeat("q", Some(&x.member_id), &["quiet"], 1_000, false).unwrap().error, ErrorCode::UnknownMemberId);
}
