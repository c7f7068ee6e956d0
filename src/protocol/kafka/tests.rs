//! The Kafka request reader against Kafka's own encoders (`kafka-protocol`,
//! generated from Kafka's message schemas), at every version served, and
//! against bytes that are not Kafka requests.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::offset_for_leader_epoch_request::{OffsetForLeaderPartition, OffsetForLeaderTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, FetchRequest, FindCoordinatorRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;

use super::*;
use crate::protocol::{create_topics, Topic};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A frame body as a Kafka client sends it: header, then the request.
fn frame<M: Encodable>(api: ApiKey, version: i16, corr: i32, body: &M) -> BytesMut {
    let mut out = BytesMut::new();
    let mut h = RequestHeader::default();
    h.request_api_key = api as i16;
    h.request_api_version = version;
    h.correlation_id = corr;
    h.client_id = Some(StrBytes::from_static_str("test-client"));
    h.encode(&mut out, api.request_header_version(version)).unwrap();
    body.encode(&mut out, version).unwrap();
    out
}

fn versions(key: i16) -> std::ops::RangeInclusive<i16> {
    let &(_, min, max) = APIS.iter().find(|(k, _, _)| *k == key).unwrap();
    min..=max
}

#[test]
fn a_kafka_request_is_told_from_a_native_frame() {
    let f = frame(ApiKey::ApiVersions, 3, 1, &ApiVersionsRequest::default());
    let mut first = [0u8; 8];
    first[..4].copy_from_slice(&(f.len() as i32).to_be_bytes());
    first[4..].copy_from_slice(&f[..4]);
    assert!(is_kafka(first));
    assert!(is_kafka([0, 0, 1, 0, 0, 3, 0, 8]), "a 256-byte Metadata v8");
    // Native frames without records: frame length = message length + 4.
    for m in 4u32..70_000 {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&(m + 4).to_le_bytes());
        b[4..].copy_from_slice(&m.to_le_bytes());
        assert!(!is_kafka(b), "{m}");
    }
}

#[test]
fn kafka_frame_sizes_are_bounded() {
    assert_eq!(frame_len([0, 0, 0, 43], 1 << 20), Ok(43));
    assert!(frame_len([0xff, 0xff, 0xff, 0xff], 1 << 20).is_err());
    assert!(frame_len([0, 0, 0, 3], 1 << 20).is_err());
    assert!(frame_len([0, 0x20, 0, 0], 1 << 20).is_err());
}

#[test]
fn api_versions_at_any_version_reads_as_api_versions() {
    for v in 0..=4 {
        let d = decode(&frame(ApiKey::ApiVersions, v, 7, &ApiVersionsRequest::default())).unwrap();
        assert_eq!((d.api_key, d.api_version, d.correlation_id, d.request), (18, v, 7, Request::ApiVersions));
    }
}

#[test]
fn metadata_at_every_version() {
    for v in versions(key::METADATA) {
        let mut m = MetadataRequest::default();
        let mut t = MetadataRequestTopic::default();
        t.name = Some(name("orders"));
        m.topics = Some(vec![t]);
        m.allow_auto_topic_creation = v < 4; // the field exists from v4
        let d = decode(&frame(ApiKey::Metadata, v, 3, &m)).unwrap();
        // Before v4 a client always allowed auto-creation.
        let allow = v < 4;
        assert_eq!(d.request, Request::Metadata(metadata::Request { topics: Some(vec!["orders".into()]) }, allow), "v{v}");
        m.topics = if v == 0 { Some(vec![]) } else { None };
        m.allow_auto_topic_creation = true;
        let d = decode(&frame(ApiKey::Metadata, v, 3, &m)).unwrap();
        assert_eq!(d.request, Request::Metadata(metadata::Request { topics: None }, true), "all topics, v{v}");
    }
}

#[test]
fn produce_at_every_version_keeps_the_records_where_they_are() {
    for v in versions(key::PRODUCE) {
        let mut p = PartitionProduceData::default();
        p.index = 2;
        p.records = Some(Bytes::from_static(b"the batch bytes"));
        let mut t = TopicProduceData::default();
        t.name = name("orders");
        t.partition_data = vec![p];
        let mut r = ProduceRequest::default();
        r.acks = -1;
        r.timeout_ms = 1500;
        r.topic_data = vec![t];
        let body = frame(ApiKey::Produce, v, 9, &r);
        let d = decode(&body).unwrap();
        let Request::Produce(p) = d.request else { panic!("v{v}: {:?}", d.request) };
        assert_eq!((p.transactional, p.acks, p.timeout_ms), (false, -1, 1500));
        let (partition, range) = p.topics[0].partitions[0].clone();
        assert_eq!((p.topics[0].name.as_str(), partition), ("orders", 2));
        assert_eq!(&body[range.unwrap()], b"the batch bytes", "v{v}");
    }
}

#[test]
fn fetch_at_every_version() {
    for v in versions(key::FETCH) {
        let mut p = FetchPartition::default();
        p.partition = 1;
        p.fetch_offset = 42;
        p.partition_max_bytes = 1 << 20;
        let mut t = FetchTopic::default();
        t.topic = name("orders");
        t.partitions = vec![p];
        let mut f = FetchRequest::default();
        f.replica_id = BrokerId(-1);
        f.max_wait_ms = 500;
        f.min_bytes = 1;
        f.max_bytes = 50 << 20;
        f.topics = vec![t];
        let d = decode(&frame(ApiKey::Fetch, v, 4, &f)).unwrap();
        let want = fetch::Request {
            max_wait_ms: 500,
            min_bytes: 1,
            max_bytes: 50 << 20,
            topics: vec![Topic::new("orders", vec![fetch::Partition { partition: 1, offset: 42, max_bytes: 1 << 20 }])],
        };
        assert_eq!(d.request, Request::Fetch(want), "v{v}");
    }
}

#[test]
fn list_offsets_at_every_version() {
    for v in versions(key::LIST_OFFSETS) {
        let mut p = ListOffsetsPartition::default();
        p.partition_index = 0;
        p.timestamp = -2;
        let mut t = ListOffsetsTopic::default();
        t.name = name("orders");
        t.partitions = vec![p];
        let mut l = ListOffsetsRequest::default();
        l.replica_id = BrokerId(-1);
        l.topics = vec![t];
        let d = decode(&frame(ApiKey::ListOffsets, v, 5, &l)).unwrap();
        let want = list_offsets::Request { topics: vec![Topic::new("orders", vec![list_offsets::Partition { partition: 0, timestamp: -2 }])] };
        assert_eq!(d.request, Request::ListOffsets(want), "v{v}");
    }
}

#[test]
fn find_coordinator_at_every_version() {
    for v in versions(key::FIND_COORDINATOR) {
        for key_type in [0, 1] {
            let mut f = FindCoordinatorRequest::default();
            f.key = StrBytes::from_static_str("billing");
            f.key_type = if v >= 1 { key_type } else { 0 };
            let d = decode(&frame(ApiKey::FindCoordinator, v, 5, &f)).unwrap();
            let want = Request::FindCoordinator(find_coordinator::Request { group: "billing".into() }, f.key_type == 0);
            assert_eq!(d.request, want, "v{v}");
        }
    }
}

#[test]
fn offset_commit_and_fetch_at_every_version() {
    for v in versions(key::OFFSET_COMMIT) {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = 1;
        p.committed_offset = 42;
        p.committed_leader_epoch = 3;
        p.committed_metadata = Some(StrBytes::from_static_str("meta"));
        let mut t = OffsetCommitRequestTopic::default();
        t.name = name("orders");
        t.partitions = vec![p];
        let mut c = OffsetCommitRequest::default();
        c.group_id = kafka_protocol::messages::GroupId(StrBytes::from_static_str("billing"));
        c.generation_id_or_member_epoch = -1;
        c.topics = vec![t];
        let d = decode(&frame(ApiKey::OffsetCommit, v, 5, &c)).unwrap();
        // The leader epoch is sent from v6 on.
        let leader_epoch = if v >= 6 { 3 } else { -1 };
        let want = OffsetCommit {
            group: "billing".into(),
            generation: -1,
            member_id: String::new(),
            topics: vec![Topic::new("orders", vec![CommitPartition { partition: 1, offset: 42, leader_epoch, metadata: Some("meta".into()) }])],
        };
        assert_eq!(d.request, Request::OffsetCommit(want), "v{v}");
    }
    for v in versions(key::OFFSET_FETCH) {
        let mut t = OffsetFetchRequestTopic::default();
        t.name = name("orders");
        t.partition_indexes = vec![0, 2];
        let mut f = OffsetFetchRequest::default();
        f.group_id = kafka_protocol::messages::GroupId(StrBytes::from_static_str("billing"));
        f.topics = Some(vec![t]);
        let d = decode(&frame(ApiKey::OffsetFetch, v, 5, &f)).unwrap();
        let want = OffsetFetch { group: "billing".into(), topics: Some(vec![Topic::new("orders", vec![0, 2])]) };
        assert_eq!(d.request, Request::OffsetFetch(want), "v{v}");
        if v >= 2 {
            f.topics = None;
            let d = decode(&frame(ApiKey::OffsetFetch, v, 5, &f)).unwrap();
            assert_eq!(d.request, Request::OffsetFetch(OffsetFetch { group: "billing".into(), topics: None }), "v{v} (all)");
        }
    }
}

#[test]
fn offset_for_leader_epoch_at_every_version() {
    for v in versions(key::OFFSET_FOR_LEADER_EPOCH) {
        let mut p = OffsetForLeaderPartition::default();
        p.partition = 2;
        p.current_leader_epoch = 7;
        p.leader_epoch = 5;
        let mut t = OffsetForLeaderTopic::default();
        t.topic = name("orders");
        t.partitions = vec![p];
        let mut o = OffsetForLeaderEpochRequest::default();
        o.replica_id = BrokerId(-1);
        o.topics = vec![t];
        let d = decode(&frame(ApiKey::OffsetForLeaderEpoch, v, 5, &o)).unwrap();
        let want = vec![Topic::new("orders", vec![EpochQuery { partition: 2, current_leader_epoch: 7, leader_epoch: 5 }])];
        assert_eq!(d.request, Request::OffsetForLeaderEpoch(want), "v{v}");
    }
}

#[test]
fn create_and_delete_topics_at_every_version() {
    for v in versions(key::CREATE_TOPICS) {
        let mut c = CreatableTopicConfig::default();
        c.name = StrBytes::from_static_str("retention.ms");
        c.value = Some(StrBytes::from_static_str("1000"));
        let mut t = CreatableTopic::default();
        t.name = name("orders");
        t.num_partitions = -1;
        t.replication_factor = 3;
        t.configs = vec![c];
        let mut r = CreateTopicsRequest::default();
        r.topics = vec![t.clone()];
        r.timeout_ms = 1000;
        let d = decode(&frame(ApiKey::CreateTopics, v, 6, &r)).unwrap();
        let want =
            create_topics::NewTopic { name: "orders".into(), partitions: 1, replication_factor: 3, configs: vec![("retention.ms".into(), "1000".into())] };
        let Request::CreateTopics(got) = d.request else { panic!() };
        assert_eq!((got.request.topics, got.validate_only, got.assigned), (vec![want], false, false), "v{v}");
        let mut a = CreatableReplicaAssignment::default();
        a.broker_ids = vec![BrokerId(1)];
        t.assignments = vec![a];
        r.topics = vec![t];
        r.validate_only = true;
        let Request::CreateTopics(got) = decode(&frame(ApiKey::CreateTopics, v, 6, &r)).unwrap().request else { panic!() };
        assert!(got.validate_only && got.assigned, "v{v}");
    }
    for v in versions(key::DELETE_TOPICS) {
        let mut r = DeleteTopicsRequest::default();
        r.topic_names = vec![name("a"), name("b")];
        r.timeout_ms = 100;
        let d = decode(&frame(ApiKey::DeleteTopics, v, 8, &r)).unwrap();
        assert_eq!(d.request, Request::DeleteTopics(delete_topics::Request { names: vec!["a".into(), "b".into()], timeout_ms: 100 }), "v{v}");
    }
}

#[test]
fn describe_configs_at_every_version() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;
    for v in versions(key::DESCRIBE_CONFIGS) {
        let mut res = DescribeConfigsResource::default();
        res.resource_type = 2;
        res.resource_name = StrBytes::from_static_str("orders");
        res.configuration_keys = Some(vec![StrBytes::from_static_str("retention.ms")]);
        let mut all = res.clone();
        all.resource_name = StrBytes::from_static_str("1");
        all.resource_type = 4;
        all.configuration_keys = None;
        let mut r = DescribeConfigsRequest::default();
        r.resources = vec![res, all];
        let d = decode(&frame(ApiKey::DescribeConfigs, v, 2, &r)).unwrap();
        let want = vec![
            ConfigResource { kind: 2, name: "orders".into(), keys: Some(vec!["retention.ms".into()]) },
            ConfigResource { kind: 4, name: "1".into(), keys: None },
        ];
        assert_eq!(d.request, Request::DescribeConfigs(want), "v{v}");
    }
}

/// SaslHandshake and SaslAuthenticate, as Kafka's own encoders write them.
#[test]
fn sasl_requests_read_as_kafkas_encoders_write_them() {
    let mut h = kafka_protocol::messages::SaslHandshakeRequest::default();
    h.mechanism = StrBytes::from_static_str("SCRAM-SHA-512");
    let d = decode(&frame(ApiKey::SaslHandshake, 1, 7, &h)).unwrap();
    assert_eq!(d.request, Request::SaslHandshake("SCRAM-SHA-512".into()));
    for v in 0..=1 {
        let mut a = kafka_protocol::messages::SaslAuthenticateRequest::default();
        a.auth_bytes = Bytes::from_static(b"n,,n=user,r=abc");
        let d = decode(&frame(ApiKey::SaslAuthenticate, v, 8, &a)).unwrap();
        assert_eq!(d.request, Request::SaslAuthenticate(b"n,,n=user,r=abc".to_vec()), "v{v}");
    }
}

#[test]
fn what_is_not_served_is_refused_by_name() {
    let d = decode(&frame(ApiKey::Produce, 9, 1, &ProduceRequest::default()));
    assert_eq!(d, Err(Refused::Version { key: 0, version: 9, min: 3, max: 8 }));
    let mut body = frame(ApiKey::Metadata, 1, 1, &MetadataRequest::default());
    body[0..2].copy_from_slice(&21i16.to_be_bytes()); // DeleteRecords
    assert_eq!(decode(&body), Err(Refused::UnknownApi(21)));
    assert!(matches!(decode(&[0, 3]), Err(Refused::Header(_))));
}

proptest! {
    /// Bytes that are not a request: an error, never a panic, and no
    /// allocation beyond what the bytes could hold (checked by the reader's
    /// bounds; the fuzz target `kafka_request` runs this at scale).
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode(&bytes);
    }

    /// A served request cut short anywhere is refused, never misread.
    #[test]
    fn truncated_requests_are_refused(cut in any::<prop::sample::Index>(), v in 3i16..=8) {
        let mut p = PartitionProduceData::default();
        p.records = Some(Bytes::from_static(b"records"));
        let mut t = TopicProduceData::default();
        t.name = name("t");
        t.partition_data = vec![p];
        let mut r = ProduceRequest::default();
        r.topic_data = vec![t];
        let body = frame(ApiKey::Produce, v, 1, &r);
        let cut = cut.index(body.len());
        prop_assert!(decode(&body[..cut]).is_err());
    }
}

#[test]
fn every_native_error_has_a_kafka_code_and_maps_back() {
    for &e in ErrorCode::ENUM_VALUES {
        if e == ErrorCode::UnknownServerError {
            assert_eq!(error_code(e), -1);
            continue;
        }
        assert!(error_code(e) != -1, "{e:?}");
        let back = from_error_code(error_code(e));
        assert_eq!(error_code(back), error_code(e), "{e:?}");
    }
    assert_eq!((error_code(ErrorCode::None), error_code(ErrorCode::NotLeader)), (0, 6));
    assert_eq!(from_error_code(6), ErrorCode::NotLeader);
    assert_eq!(from_error_code(999), ErrorCode::UnknownServerError);
}
