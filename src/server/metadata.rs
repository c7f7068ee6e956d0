//! Metadata, ListTopics and DescribeTopic: what the cluster holds and who
//! leads each partition, from this shard's copy of the metadata.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::response::{respond, Outgoing};
use crate::group::is_internal;
use crate::metadata::TopicMeta;
use crate::protocol::{fb, ErrorCode};
use crate::shard::Shard;

fn topic_info<'a>(fbb: &mut FlatBufferBuilder<'a>, shard: &Shard, name: &str, t: Option<&TopicMeta>) -> WIPOffset<fb::TopicInfo<'a>> {
    let node = shard.config.node_id;
    let n = fbb.create_string(name);
    let Some(t) = t else {
        return fb::TopicInfo::create(fbb, &fb::TopicInfoArgs { name: Some(n), error: ErrorCode::UnknownTopicOrPartition, ..Default::default() });
    };
    let parts: Vec<_> = (0..t.partitions())
        .map(|p| {
            let replicas = fbb.create_vector(&[node]);
            let shard_id = t.shard_of(p, shard.nr_shards()).unwrap_or(0);
            fb::PartitionInfo::create(
                fbb,
                &fb::PartitionInfoArgs { partition: p, error: ErrorCode::None, leader: node, shard: shard_id, replicas: Some(replicas) },
            )
        })
        .collect();
    let parts = fbb.create_vector(&parts);
    let configs: Vec<_> = t
        .configs
        .iter()
        .map(|(k, v)| {
            let (k, v) = (fbb.create_string(k), fbb.create_string(v));
            fb::ConfigEntry::create(fbb, &fb::ConfigEntryArgs { key: Some(k), value: Some(v) })
        })
        .collect();
    let configs = fbb.create_vector(&configs);
    fb::TopicInfo::create(
        fbb,
        &fb::TopicInfoArgs { name: Some(n), error: ErrorCode::None, replication_factor: t.replication_factor, partitions: Some(parts), configs: Some(configs) },
    )
}

pub fn handle(shard: &Shard, corr: u32, req: fb::MetadataRequest<'_>) -> Outgoing {
    let mut fbb = FlatBufferBuilder::with_capacity(1024);
    let md = shard.metadata();
    let names: Vec<String> = match req.topics() {
        Some(ts) => ts.iter().map(str::to_string).collect(),
        None => md.topics.keys().filter(|n| !is_internal(n)).cloned().collect(),
    };
    let topics: Vec<_> = names.iter().map(|n| topic_info(&mut fbb, shard, n, md.topics.get(n))).collect();
    drop(md);
    let topics = fbb.create_vector(&topics);
    let (host, port) = shard.config.advertised();
    let host = fbb.create_string(&host);
    let broker = fb::BrokerInfo::create(&mut fbb, &fb::BrokerInfoArgs { node_id: shard.config.node_id, host: Some(host), port, shards: shard.nr_shards() });
    let brokers = fbb.create_vector(&[broker]);
    let cluster = fbb.create_string("shardlog");
    let body = fb::MetadataResponse::create(
        &mut fbb,
        &fb::MetadataResponseArgs { cluster_id: Some(cluster), controller_id: shard.config.node_id, brokers: Some(brokers), topics: Some(topics) },
    );
    respond(corr, fbb, (fb::ResponseBody::MetadataResponse, body.as_union_value()), Vec::new())
}

pub fn list_topics(shard: &Shard, corr: u32) -> Outgoing {
    let mut fbb = FlatBufferBuilder::with_capacity(512);
    let names: Vec<_> = shard.metadata().topics.keys().filter(|n| !is_internal(n)).cloned().collect();
    let names: Vec<_> = names.iter().map(|n| fbb.create_string(n)).collect();
    let names = fbb.create_vector(&names);
    let body = fb::ListTopicsResponse::create(&mut fbb, &fb::ListTopicsResponseArgs { names: Some(names) });
    respond(corr, fbb, (fb::ResponseBody::ListTopicsResponse, body.as_union_value()), Vec::new())
}

pub fn describe_topic(shard: &Shard, corr: u32, req: fb::DescribeTopicRequest<'_>) -> Outgoing {
    let mut fbb = FlatBufferBuilder::with_capacity(512);
    let md = shard.metadata();
    let t = topic_info(&mut fbb, shard, req.name(), md.topics.get(req.name()));
    drop(md);
    let body = fb::DescribeTopicResponse::create(&mut fbb, &fb::DescribeTopicResponseArgs { topic: Some(t) });
    respond(corr, fbb, (fb::ResponseBody::DescribeTopicResponse, body.as_union_value()), Vec::new())
}
