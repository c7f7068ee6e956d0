//! ReplicaFetch: a follower broker pulls the batches of the partitions it
//! follows from this broker, their leader. The batches go out as stored;
//! the decisions (divergence, the high watermark) are `shard::replica`'s.

use std::rc::Rc;
use std::time::Duration;

use super::response::{error, respond_records, Outgoing};
use crate::protocol::replica_fetch::{PartitionResponse, Request, Response};
use crate::protocol::ErrorCode;
use crate::protocol::Topic;
use crate::shard::replica::{self, ReplicaFetchPart};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, corr: u32, req: Request) -> Outgoing {
    let asked: Vec<ReplicaFetchPart> = req.partitions().map(|(t, p)| ReplicaFetchPart::new(t, p)).collect();
    if asked.len() > super::fetch::MAX_PARTITIONS_PER_FETCH {
        return error(corr, ErrorCode::PolicyViolation, &format!("at most {} partitions per fetch", super::fetch::MAX_PARTITIONS_PER_FETCH));
    }
    if let Some(q) = asked.iter().find(|q| q.fetch_offset < 0 || q.synced_offset < 0 || q.synced_offset > q.fetch_offset) {
        return error(corr, ErrorCode::InvalidRequest, &format!("{}/{}: offsets must satisfy 0 <= synced <= fetch", q.topic, q.partition));
    }
    let max_bytes = (req.max_bytes as usize).min(shard.config.max_frame_bytes);
    let wait = Duration::from_millis(u64::from(req.max_wait_ms).min(shard.config.fetch_wait_max_ms));
    let results = replica::answer(shard, req.replica_id, asked, max_bytes, wait).await;

    let topics = Topic::answer_all(&req.topics, results, |p, r| PartitionResponse {
        partition: p.partition,
        error: r.fetch.error,
        high_watermark: r.fetch.high_watermark,
        log_end: r.log_end,
        diverging: r.diverging,
        records: r.fetch.chunks,
    });
    respond_records(corr, Response { topics }, |r| {
        r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()).flat_map(|p| std::mem::take(&mut p.records)).collect()
    })
}
