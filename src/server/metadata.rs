//! Metadata, ListTopics and DescribeTopic: the brokers, the quorum's
//! voters and controller, and each partition's replicas and leader, from
//! this shard's copy of the metadata. A describe, a listing, or a lookup
//! of a topic this copy does not know first waits for the copy to hold
//! what the quorum committed (`Shard::read_barrier`), so a topic created
//! through one broker is seen through every other once the create returns.

use super::session::Session;
use crate::auth::acl::{Operation, ResourceType};
use crate::cluster::metadata::{Metadata, TopicMeta};
use crate::group::is_internal;
use crate::protocol::metadata::{self, Broker, Partition, PartitionFigures, Topic, Voter};
use crate::protocol::{describe_topic, list_topics, ErrorCode};
use crate::shard::Shard;

/// Each partition's replicas' lags and its offsets and size (by
/// partition), where this broker leads.
type Lags = [(u32, Vec<(i32, i64)>, PartitionFigures)];

fn topic_info(name: &str, t: Option<&TopicMeta>, lags: &Lags) -> Topic {
    let Some(t) = t else { return Topic::unknown(name) };
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let replicas: Vec<i32> = p.replicas.iter().map(|r| r.broker).collect();
            let isr = if p.isr.is_empty() { replicas.clone() } else { p.isr.clone() };
            let here = lags.iter().find(|(q, _, _)| *q == i as u32);
            let figures = here.map(|h| h.2);
            let lags = here
                .filter(|(_, l, _)| !l.is_empty())
                .map(|(_, l, _)| replicas.iter().map(|b| l.iter().find(|(r, _)| r == b).map_or(-1, |&(_, lag)| lag)).collect())
                .unwrap_or_default();
            Partition {
                partition: i as u32,
                error: ErrorCode::None,
                leader: p.leader,
                shard: p.replicas.iter().find(|r| r.broker == p.leader).map_or(0, |r| r.shard),
                replicas,
                leader_epoch: p.leader_epoch,
                isr,
                lags,
                figures,
            }
        })
        .collect();
    Topic {
        name: name.to_string(),
        error: ErrorCode::None,
        replication_factor: t.replication_factor,
        partitions,
        configs: t.configs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

fn brokers(md: &Metadata, external: bool) -> Vec<Broker> {
    md.brokers
        .values()
        .map(|b| {
            let (host, port) = b.address_for(external);
            Broker { node_id: b.id, host: host.to_string(), port, shards: b.shards, fenced: b.fenced }
        })
        .collect()
}

/// Metadata. A topic the principal may not describe is left out of a
/// listing of all, and answered TopicAuthorizationFailed, with nothing
/// else, when named: whether or not it exists.
pub async fn handle(shard: &Shard, session: &Session, req: metadata::Request, external: bool) -> metadata::Response {
    let unknown = req.topics.as_ref().is_some_and(|ts| ts.iter().any(|t| !shard.metadata().topics.contains_key(t)));
    if req.topics.is_none() || unknown {
        shard.read_barrier().await;
    }
    let md = shard.metadata();
    let named = req.topics.is_some();
    let may = |n: &str| session.allows(shard, Operation::Describe, ResourceType::Topic, n);
    let names: Vec<String> = req.topics.unwrap_or_else(|| md.topics.keys().filter(|n| !is_internal(n) && may(n)).cloned().collect());
    let topics = names
        .iter()
        .map(|n| if named && !may(n) { Topic::refused(n, ErrorCode::TopicAuthorizationFailed) } else { topic_info(n, md.topics.get(n), &[]) })
        .collect();
    let brokers = brokers(&md, external);
    drop(md);
    metadata::Response {
        cluster_id: "shardlog".to_string(),
        controller: shard.controller().unwrap_or(-1),
        voters: shard.config.voters().iter().map(|v| Voter { node_id: v.id, host: v.host.clone(), port: v.port }).collect(),
        brokers,
        topics,
    }
}

pub async fn list_topics(shard: &Shard, session: &Session) -> list_topics::Response {
    shard.read_barrier().await;
    let names = shard.metadata().topics.keys().filter(|n| !is_internal(n)).cloned().collect::<Vec<_>>();
    list_topics::Response { names: names.into_iter().filter(|n| session.allows(shard, Operation::Describe, ResourceType::Topic, n)).collect() }
}

pub async fn describe_topic(shard: &Shard, req: describe_topic::Request) -> describe_topic::Response {
    shard.read_barrier().await;
    let lags = shard.lags(&req.name).await;
    let md = shard.metadata();
    describe_topic::Response { topic: Some(topic_info(&req.name, md.topics.get(&req.name), &lags)) }
}
