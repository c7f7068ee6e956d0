//! Metadata, ListTopics and DescribeTopic: the brokers, the quorum's
//! voters and controller, and each partition's replicas and leader, from
//! this shard's copy of the metadata. A describe, a listing, or a lookup
//! of a topic this copy does not know first waits for the copy to hold
//! what the quorum committed (`Shard::read_barrier`), so a topic created
//! through one broker is seen through every other once the create returns.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::response::{respond, Outgoing};
use crate::cluster::metadata::{Metadata, TopicMeta};
use crate::group::is_internal;
use crate::protocol::{fb, ErrorCode};
use crate::shard::Shard;

/// Each partition's replicas' lags (by partition), where this broker leads.
type Lags = [(u32, Vec<(i32, i64)>)];

fn topic_info<'a>(fbb: &mut FlatBufferBuilder<'a>, name: &str, t: Option<&TopicMeta>, lags: &Lags) -> WIPOffset<fb::TopicInfo<'a>> {
    let n = fbb.create_string(name);
    let Some(t) = t else {
        return fb::TopicInfo::create(fbb, &fb::TopicInfoArgs { name: Some(n), error: ErrorCode::UnknownTopicOrPartition, ..Default::default() });
    };
    let parts: Vec<_> = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let ids: Vec<i32> = p.replicas.iter().map(|r| r.broker).collect();
            let replicas = fbb.create_vector(&ids);
            let isr = fbb.create_vector(if p.isr.is_empty() { &ids } else { &p.isr });
            let shard = p.replicas.iter().find(|r| r.broker == p.leader).map_or(0, |r| r.shard);
            let lags = lags.iter().find(|(q, _)| *q == i as u32).map(|(_, l)| {
                let by_replica: Vec<i64> = ids.iter().map(|b| l.iter().find(|(r, _)| r == b).map_or(-1, |&(_, lag)| lag)).collect();
                fbb.create_vector(&by_replica)
            });
            fb::PartitionInfo::create(
                fbb,
                &fb::PartitionInfoArgs {
                    partition: i as u32,
                    error: ErrorCode::None,
                    leader: p.leader,
                    shard,
                    replicas: Some(replicas),
                    leader_epoch: p.leader_epoch,
                    isr: Some(isr),
                    lags,
                },
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

fn brokers<'a>(
    fbb: &mut FlatBufferBuilder<'a>,
    md: &Metadata,
    external: bool,
) -> WIPOffset<flatbuffers::Vector<'a, flatbuffers::ForwardsUOffset<fb::BrokerInfo<'a>>>> {
    let bs: Vec<_> = md
        .brokers
        .values()
        .map(|b| {
            let (host, port) = b.address_for(external);
            let host = fbb.create_string(host);
            fb::BrokerInfo::create(fbb, &fb::BrokerInfoArgs { node_id: b.id, host: Some(host), port, shards: b.shards, fenced: b.fenced })
        })
        .collect();
    fbb.create_vector(&bs)
}

pub async fn handle(shard: &Shard, corr: u32, req: fb::MetadataRequest<'_>, external: bool) -> Outgoing {
    let asked: Option<Vec<String>> = req.topics().map(|ts| ts.iter().map(str::to_string).collect());
    let unknown = asked.as_ref().is_some_and(|ts| ts.iter().any(|t| !shard.metadata().topics.contains_key(t)));
    if asked.is_none() || unknown {
        shard.read_barrier().await;
    }
    let mut fbb = FlatBufferBuilder::with_capacity(1024);
    let md = shard.metadata();
    let names: Vec<String> = asked.unwrap_or_else(|| md.topics.keys().filter(|n| !is_internal(n)).cloned().collect());
    let topics: Vec<_> = names.iter().map(|n| topic_info(&mut fbb, n, md.topics.get(n), &[])).collect();
    let topics = fbb.create_vector(&topics);
    let brokers = brokers(&mut fbb, &md, external);
    drop(md);
    let voters: Vec<_> = shard
        .config
        .voters()
        .iter()
        .map(|v| {
            let host = fbb.create_string(&v.host);
            fb::VoterInfo::create(&mut fbb, &fb::VoterInfoArgs { node_id: v.id, host: Some(host), port: v.port })
        })
        .collect();
    let voters = fbb.create_vector(&voters);
    let cluster = fbb.create_string("shardlog");
    let body = fb::MetadataResponse::create(
        &mut fbb,
        &fb::MetadataResponseArgs {
            cluster_id: Some(cluster),
            controller_id: shard.controller().unwrap_or(-1),
            brokers: Some(brokers),
            topics: Some(topics),
            voters: Some(voters),
        },
    );
    respond(corr, fbb, (fb::ResponseBody::MetadataResponse, body.as_union_value()), Vec::new())
}

pub async fn list_topics(shard: &Shard, corr: u32) -> Outgoing {
    shard.read_barrier().await;
    let mut fbb = FlatBufferBuilder::with_capacity(512);
    let names: Vec<_> = shard.metadata().topics.keys().filter(|n| !is_internal(n)).cloned().collect();
    let names: Vec<_> = names.iter().map(|n| fbb.create_string(n)).collect();
    let names = fbb.create_vector(&names);
    let body = fb::ListTopicsResponse::create(&mut fbb, &fb::ListTopicsResponseArgs { names: Some(names) });
    respond(corr, fbb, (fb::ResponseBody::ListTopicsResponse, body.as_union_value()), Vec::new())
}

pub async fn describe_topic(shard: &Shard, corr: u32, req: fb::DescribeTopicRequest<'_>) -> Outgoing {
    shard.read_barrier().await;
    let lags = shard.lags(req.name()).await;
    let mut fbb = FlatBufferBuilder::with_capacity(512);
    let md = shard.metadata();
    let t = topic_info(&mut fbb, req.name(), md.topics.get(req.name()), &lags);
    drop(md);
    let body = fb::DescribeTopicResponse::create(&mut fbb, &fb::DescribeTopicResponseArgs { topic: Some(t) });
    respond(corr, fbb, (fb::ResponseBody::DescribeTopicResponse, body.as_union_value()), Vec::new())
}
