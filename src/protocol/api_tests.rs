//! Every API's request and response survive encode then decode unchanged,
//! through the same envelope and enums the server and clients use.

use bytes::{Bytes, BytesMut};
use flatbuffers::FlatBufferBuilder;

use super::*;

fn through_request<B: RequestBody>(body: &B, payload: &[u8]) -> Request<BytesMut> {
    let mut fbb = FlatBufferBuilder::new();
    let msg = encode_request(&mut fbb, API_VERSION, 7, Some("t"), body).to_vec();
    let req = parse_request(&msg).unwrap();
    assert_eq!((req.correlation_id(), req.client_id(), req.body_type()), (7, Some("t"), B::KEY));
    Request::decode(req, BytesMut::from(payload)).unwrap()
}

fn through_response<B: ResponseBody + DecodeResponse + PartialEq + std::fmt::Debug>(body: &B, payload: &[u8]) {
    let mut fbb = FlatBufferBuilder::new();
    let msg = encode_response(&mut fbb, 9, body).to_vec();
    let resp = parse_response(&msg).unwrap();
    assert_eq!(resp.correlation_id(), 9);
    assert_eq!(&B::decode_response(resp, Bytes::copy_from_slice(payload)).unwrap(), body);
    // The enum reads it as well.
    assert!(!matches!(Response::decode(resp, Bytes::copy_from_slice(payload)).unwrap(), Response::Error(..)));
}

macro_rules! round_trip {
    ($variant:ident, $req:expr) => {{
        let req = $req;
        match through_request(&req, &[]) {
            Request::$variant(r) => assert_eq!(r, req),
            other => panic!("decoded as {other:?}"),
        }
    }};
}

fn topic() -> metadata::Topic {
    metadata::Topic {
        name: "t".into(),
        error: ErrorCode::None,
        replication_factor: 3,
        partitions: vec![metadata::Partition {
            partition: 0,
            error: ErrorCode::None,
            leader: 2,
            shard: 1,
            replicas: vec![2, 1, 3],
            leader_epoch: 4,
            isr: vec![2, 1],
            lags: vec![0, 5, -1],
            figures: Some(super::metadata::PartitionFigures { log_start_offset: 3, high_watermark: 10, log_end_offset: 12, size_bytes: 4096 }),
        }],
        configs: vec![("retention.ms".into(), "1000".into())],
    }
}

#[test]
fn every_request_round_trips() {
    round_trip!(ApiVersions, api_versions::Request { client_software: Some("x".into()) });
    round_trip!(Metadata, metadata::Request { topics: None });
    round_trip!(Metadata, metadata::Request { topics: Some(vec!["a".into(), "b".into()]) });
    round_trip!(
        CreateTopics,
        create_topics::Request {
            topics: vec![create_topics::NewTopic { name: "a".into(), partitions: 3, replication_factor: 2, configs: vec![("k".into(), "v".into())] }],
            timeout_ms: 5
        }
    );
    round_trip!(DeleteTopics, delete_topics::Request { names: vec!["a".into()], timeout_ms: 5 });
    round_trip!(ListTopics, list_topics::Request);
    round_trip!(DescribeTopic, describe_topic::Request { name: "a".into() });
    round_trip!(Fetch, fetch::Request::one_topic("a", vec![fetch::Partition { partition: 1, offset: 2, max_bytes: 3 }], 4, 5, 6));
    round_trip!(
        ListOffsets,
        list_offsets::Request {
            topics: vec![list_offsets::Topic { name: "a".into(), partitions: vec![list_offsets::Partition { partition: 1, timestamp: -2 }] }]
        }
    );
    round_trip!(
        OffsetCommit,
        offset_commit::Request {
            group: "g".into(),
            topics: vec![offset_commit::Topic { name: "a".into(), partitions: vec![(0, 10), (1, 11)] }],
            member: Some(("m".into(), 3))
        }
    );
    round_trip!(OffsetCommit, offset_commit::Request { group: "g".into(), topics: vec![], member: None });
    round_trip!(OffsetFetch, offset_fetch::Request { group: "g".into(), topics: vec![offset_fetch::Topic { name: "a".into(), partitions: vec![0, 2] }] });
    round_trip!(
        GroupHeartbeat,
        group_heartbeat::Request {
            group: "g".into(),
            member_id: None,
            topics: vec!["a".into()],
            assignor: group_heartbeat::Assignor::RoundRobin,
            session_timeout_ms: 3000,
            leave_group: true
        }
    );
    round_trip!(FindCoordinator, find_coordinator::Request { group: "g".into() });
    round_trip!(InitProducerId, init_producer_id::Request);
    round_trip!(
        ReplicaFetch,
        replica_fetch::Request {
            replica_id: 2,
            max_wait_ms: 1,
            max_bytes: 2,
            topics: vec![replica_fetch::Topic {
                name: "a".into(),
                partitions: vec![replica_fetch::Partition { partition: 0, leader_epoch: 3, fetch_offset: 10, synced_offset: 9, last_epoch: 2 }]
            }]
        }
    );
}

#[test]
fn a_produce_request_slices_its_payload_per_partition() {
    let parts = vec![produce::Partition { partition: 0, records: &b"abc"[..] }, produce::Partition { partition: 3, records: &b"de"[..] }];
    let req = produce::Request::one_topic("t", Acks::Leader, 100, parts);
    let Request::Produce(got) = through_request(&req, b"abcde") else { panic!("not a produce") };
    assert_eq!((got.acks, got.timeout_ms, got.topics[0].name.as_str()), (Acks::Leader, 100, "t"));
    let recs: Vec<(u32, &[u8])> = got.topics[0].partitions.iter().map(|p| (p.partition, &p.records[..])).collect();
    assert_eq!(recs, vec![(0, &b"abc"[..]), (3, &b"de"[..])]);
    // A payload the message does not describe, and acks outside 0, 1, -1.
    let mut fbb = FlatBufferBuilder::new();
    let msg = encode_request(&mut fbb, API_VERSION, 1, None, &req).to_vec();
    let e = Request::decode(parse_request(&msg).unwrap(), BytesMut::from(&b"abcdef"[..])).unwrap_err();
    assert_eq!((e.code(), e), (ErrorCode::InvalidRequest, ProtocolError::PayloadMismatch { want: 5, have: 6 }));
    // Another API with a payload.
    let msg = encode_request(&mut fbb, API_VERSION, 1, None, &list_topics::Request).to_vec();
    assert_eq!(Request::decode(parse_request(&msg).unwrap(), BytesMut::from(&b"x"[..])).unwrap_err(), ProtocolError::UnexpectedPayload);
    for (v, ok) in [(0, Some(Acks::None)), (1, Some(Acks::Leader)), (-1, Some(Acks::All)), (5, None), (-2, None)] {
        assert_eq!(Acks::from_wire(v).ok(), ok);
        if let Some(a) = ok {
            assert_eq!(a.wire(), v);
        }
    }
    assert_eq!(ProtocolError::InvalidAcks(5).code(), ErrorCode::InvalidRequiredAcks);
    for name in Acks::NAMES {
        let a: Acks = name.parse().unwrap();
        assert_eq!(a.wire().to_string().replace("-1", "all"), name);
    }
}

#[test]
fn every_response_round_trips() {
    through_response(
        &api_versions::Response {
            apis: vec![api_versions::ApiRange { api_key: 7, min_version: 0, max_version: 1 }],
            broker_version: "1".into(),
            node_id: 3,
            max_frame_bytes: 9,
        },
        &[],
    );
    through_response(
        &metadata::Response {
            cluster_id: "c".into(),
            controller: 1,
            voters: vec![metadata::Voter { node_id: 1, host: "h".into(), port: 2 }],
            brokers: vec![metadata::Broker { node_id: 1, host: "h".into(), port: 3, shards: 2, fenced: true }],
            topics: vec![topic(), metadata::Topic::unknown("u")],
        },
        &[],
    );
    let results = vec![create_topics::TopicResult { name: "a".into(), error: ErrorCode::TopicAlreadyExists, error_message: Some("m".into()) }];
    through_response(&create_topics::Response { results: results.clone() }, &[]);
    through_response(&delete_topics::Response { results }, &[]);
    through_response(&list_topics::Response { names: vec!["a".into()] }, &[]);
    through_response(&describe_topic::Response { topic: Some(topic()) }, &[]);
    through_response(
        &produce::Response {
            topics: vec![produce::TopicResponse {
                name: "a".into(),
                partitions: vec![produce::PartitionResponse { partition: 1, error: ErrorCode::None, base_offset: 5, log_start_offset: 0, error_message: None }],
            }],
        },
        &[],
    );
    through_response(
        &fetch::Response {
            topics: vec![fetch::TopicResponse {
                name: "a".into(),
                partitions: vec![
                    fetch::PartitionResponse {
                        partition: 0,
                        error: ErrorCode::None,
                        high_watermark: 3,
                        log_start_offset: 0,
                        records: Bytes::from_static(b"xy"),
                    },
                    fetch::PartitionResponse { partition: 1, error: ErrorCode::NotLeader, high_watermark: -1, log_start_offset: -1, records: Bytes::new() },
                    fetch::PartitionResponse {
                        partition: 2,
                        error: ErrorCode::None,
                        high_watermark: 9,
                        log_start_offset: 1,
                        records: Bytes::from_static(b"z"),
                    },
                ],
            }],
        },
        b"xyz",
    );
    through_response(
        &list_offsets::Response {
            topics: vec![list_offsets::TopicResponse {
                name: "a".into(),
                partitions: vec![list_offsets::PartitionResponse { partition: 0, error: ErrorCode::None, offset: 4, timestamp: 5 }],
            }],
        },
        &[],
    );
    let offsets = vec![offset_commit::TopicResult {
        name: "a".into(),
        partitions: vec![offset_commit::PartitionResult { partition: 0, error: ErrorCode::IllegalGeneration, offset: 3 }],
    }];
    through_response(&offset_commit::Response { topics: offsets.clone() }, &[]);
    through_response(&offset_fetch::Response { topics: offsets }, &[]);
    through_response(
        &group_heartbeat::Response {
            error: ErrorCode::None,
            error_message: None,
            member_id: "m".into(),
            generation: 2,
            heartbeat_interval_ms: 1000,
            assignment: vec![("a".into(), vec![0, 2]), ("b".into(), vec![1])],
        },
        &[],
    );
    through_response(&group_heartbeat::Response::error(ErrorCode::UnknownMemberId, "gone".into()), &[]);
    through_response(&find_coordinator::Response { error: ErrorCode::None, error_message: None, node_id: 2, host: "h".into(), port: 9 }, &[]);
    through_response(&find_coordinator::Response::error(ErrorCode::CoordinatorNotAvailable, "later".into()), &[]);
    through_response(
        &replica_fetch::Response {
            topics: vec![replica_fetch::TopicResponse {
                name: "a".into(),
                partitions: vec![
                    replica_fetch::PartitionResponse {
                        partition: 0,
                        error: ErrorCode::None,
                        high_watermark: 3,
                        log_end: 4,
                        diverging: Some((-1, 0)),
                        records: Bytes::new(),
                    },
                    replica_fetch::PartitionResponse {
                        partition: 1,
                        error: ErrorCode::None,
                        high_watermark: 3,
                        log_end: 4,
                        diverging: None,
                        records: Bytes::from_static(b"ab"),
                    },
                ],
            }],
        },
        b"ab",
    );
}

#[test]
fn a_response_that_describes_more_payload_than_it_has_is_refused() {
    let resp = fetch::Response {
        topics: vec![fetch::TopicResponse {
            name: "a".into(),
            partitions: vec![fetch::PartitionResponse {
                partition: 0,
                error: ErrorCode::None,
                high_watermark: 3,
                log_start_offset: 0,
                records: Bytes::from_static(b"xy"),
            }],
        }],
    };
    let mut fbb = FlatBufferBuilder::new();
    let msg = encode_response(&mut fbb, 1, &resp).to_vec();
    let r = parse_response(&msg).unwrap();
    assert_eq!(fetch::Response::<Bytes>::decode_response(r, Bytes::from_static(b"x")).unwrap_err(), ProtocolError::PayloadMismatch { want: 2, have: 1 });
    let msg = encode_error(&mut fbb, 3, ErrorCode::BrokerShuttingDown, "bye").to_vec();
    assert!(matches!(Response::decode(parse_response(&msg).unwrap(), Bytes::new()).unwrap(), Response::Error(ErrorCode::BrokerShuttingDown, m) if m == "bye"));
}
