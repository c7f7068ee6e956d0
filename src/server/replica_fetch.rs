//! ReplicaFetch: a follower broker pulls the batches of the partitions it
//! follows from this broker, their leader. The batches go out as stored;
//! the decisions (divergence, the high watermark) are `shard::replica`'s.

use std::rc::Rc;
use std::time::Duration;

use flatbuffers::FlatBufferBuilder;

use super::response::{error, respond, Outgoing};
use crate::protocol::{fb, ErrorCode};
use crate::shard::replica::{self, ReplicaFetchPart};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, corr: u32, req: fb::ReplicaFetchRequest<'_>) -> Outgoing {
    let asked: Vec<(usize, ReplicaFetchPart)> = req
        .topics()
        .iter()
        .flatten()
        .enumerate()
        .flat_map(|(ti, t)| {
            t.partitions().into_iter().flatten().map(move |p| {
                (
                    ti,
                    ReplicaFetchPart {
                        topic: t.name().to_string(),
                        partition: p.partition(),
                        leader_epoch: p.leader_epoch(),
                        fetch_offset: p.fetch_offset(),
                        synced_offset: p.synced_offset(),
                        last_epoch: p.last_epoch(),
                    },
                )
            })
        })
        .collect();
    if asked.len() > super::fetch::MAX_PARTITIONS_PER_FETCH {
        return error(corr, ErrorCode::PolicyViolation, &format!("at most {} partitions per fetch", super::fetch::MAX_PARTITIONS_PER_FETCH));
    }
    if let Some((_, q)) = asked.iter().find(|(_, q)| q.fetch_offset < 0 || q.synced_offset < 0 || q.synced_offset > q.fetch_offset) {
        return error(corr, ErrorCode::InvalidRequest, &format!("{}/{}: offsets must satisfy 0 <= synced <= fetch", q.topic, q.partition));
    }
    let max_bytes = (req.max_bytes() as usize).min(shard.config.max_frame_bytes);
    let wait = Duration::from_millis(u64::from(req.max_wait_ms()).min(shard.config.fetch_wait_max_ms));
    let tis: Vec<usize> = asked.iter().map(|(ti, _)| *ti).collect();
    let results = replica::answer(shard, req.replica_id(), asked.into_iter().map(|(_, q)| q).collect(), max_bytes, wait).await;

    let mut fbb = FlatBufferBuilder::with_capacity(256 + 64 * results.len());
    let mut topics = Vec::new();
    let mut payload = Vec::new();
    let mut results = results.into_iter().zip(tis).peekable();
    for (ti, t) in req.topics().iter().flatten().enumerate() {
        let mut parts = Vec::new();
        for (p, (mut r, _)) in t.partitions().iter().flatten().zip(std::iter::from_fn(|| results.next_if(|(_, i)| *i == ti))) {
            let (diverging_epoch, diverging_end) = r.diverging.unwrap_or((-1, -1));
            parts.push(fb::ReplicaFetchPartitionResponse::create(
                &mut fbb,
                &fb::ReplicaFetchPartitionResponseArgs {
                    partition: p.partition(),
                    error: r.fetch.error,
                    high_watermark: r.fetch.high_watermark,
                    log_end: r.log_end,
                    diverging_epoch,
                    diverging_end,
                    records_bytes: r.fetch.bytes as u32,
                },
            ));
            payload.append(&mut r.fetch.chunks);
        }
        let parts = fbb.create_vector(&parts);
        let name = fbb.create_string(t.name());
        topics.push(fb::ReplicaFetchTopicResponse::create(&mut fbb, &fb::ReplicaFetchTopicResponseArgs { name: Some(name), partitions: Some(parts) }));
    }
    let topics = fbb.create_vector(&topics);
    let body = fb::ReplicaFetchResponse::create(&mut fbb, &fb::ReplicaFetchResponseArgs { topics: Some(topics) });
    respond(corr, fbb, (fb::ResponseBody::ReplicaFetchResponse, body.as_union_value()), payload)
}
