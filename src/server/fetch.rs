//! Fetch: read whole stored batches from each partition and send them as
//! they are; long-poll until `min_bytes` arrive or `max_wait_ms` passes.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::response::{error, respond_records, Outgoing};
use crate::protocol::fetch::{PartitionResponse, Request, Response};
use crate::protocol::ErrorCode;
use crate::protocol::Topic;
use crate::shard::{FetchResult, Shard};
use crate::storage::Chunk;

/// Most partitions one fetch may name.
pub const MAX_PARTITIONS_PER_FETCH: usize = 10_000;

pub async fn handle(shard: &Rc<Shard>, corr: u32, req: Request) -> Outgoing {
    match answer(shard, req).await {
        Ok(response) => respond_records(corr, response, |r| {
            r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()).flat_map(|p| std::mem::take(&mut p.records)).collect()
        }),
        Err((code, message)) => error(corr, code, &message),
    }
}

/// Reads what the request asks, long-polling for `min_bytes`; the stored
/// chunks go into the response as they are. Shared by the native and the
/// Kafka listener.
pub async fn answer(shard: &Rc<Shard>, req: Request) -> Result<Response<Vec<Chunk>>, (ErrorCode, String)> {
    let wanted: Vec<(&str, u32, i64, usize)> = req.partitions().map(|(t, p)| (t, p.partition, p.offset, p.max_bytes as usize)).collect();
    if wanted.len() > MAX_PARTITIONS_PER_FETCH {
        return Err((ErrorCode::PolicyViolation, format!("at most {MAX_PARTITIONS_PER_FETCH} partitions per fetch")));
    }
    let started = Instant::now();
    let budget = (req.max_bytes as usize).min(shard.config.max_frame_bytes);
    let min_bytes = req.min_bytes as usize;
    let wait = Duration::from_millis(u64::from(req.max_wait_ms).min(shard.config.fetch_wait_max_ms));
    let deadline = Instant::now() + wait;

    let first = wanted.iter().map(|&(t, p, o, m)| shard.fetch(t, p, o, m.min(budget), None));
    let mut results: Vec<FetchResult<Chunk>> = futures::future::join_all(first).await;
    let mut total: usize = results.iter().map(|r| r.bytes).sum();

    if total < min_bytes && !wait.is_zero() && !shard.is_shutting_down() {
        // Long poll the partitions that had nothing; answer as soon as enough
        // has come, dropping the waits still pending.
        let mut pending: futures::stream::FuturesUnordered<_> = wanted
            .iter()
            .enumerate()
            .filter(|(i, _)| results[*i].error == ErrorCode::None && results[*i].bytes == 0)
            .map(|(i, &(t, p, o, m))| async move { (i, shard.fetch(t, p, o, m.min(budget), Some(deadline)).await) })
            .collect();
        while let Some((i, r)) = pending.next().await {
            total += r.bytes;
            results[i] = r;
            if total >= min_bytes {
                break;
            }
        }
    }

    // The request's byte budget: whole batches, and always the first one.
    let mut used = 0usize;
    for r in results.iter_mut() {
        let mut keep = 0;
        for c in &r.chunks {
            if used > 0 && used + c.len() > budget {
                break;
            }
            used += c.len();
            keep += 1;
        }
        r.chunks.truncate(keep);
    }

    for ((topic, _, _, _), r) in wanted.iter().zip(&results) {
        crate::metrics::error("Fetch", super::error_name(r.error));
        let records: u64 = r.chunks.iter().map(|c| crate::record::stored_record_count(c)).sum();
        crate::metrics::fetched(topic, r.chunks.iter().map(|c| c.len() as u64).sum(), records);
    }
    crate::metrics::latency("fetch", started.elapsed());
    let topics = Topic::answer_all(&req.topics, results, |p, r| PartitionResponse {
        partition: p.partition,
        error: r.error,
        high_watermark: r.high_watermark,
        log_start_offset: r.log_start_offset,
        records: r.chunks,
    });
    Ok(Response { topics })
}
