//! Produce: slice the payload per partition, check every batch once, hand
//! the bytes to the owning shard, answer with offsets.
//!
//! The batches are never decoded or copied here: `record::validate` reads
//! the header and runs the CRC, and `record::validate_records` walks the
//! record lengths, so a batch that is stored is a batch every consumer can
//! read. The log patches the base offset in place.

use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use flatbuffers::FlatBufferBuilder;

use super::response::{error, opt_str, respond, Outgoing};
use crate::protocol::{fb, ErrorCode};
use crate::record::{self, BatchInfo};
use crate::shard::{ProduceResult, Shard};

/// Longest an acks=all produce waits for its sync, whatever it asks.
pub const MAX_PRODUCE_TIMEOUT_MS: u64 = 120_000;

/// Checks every batch in one partition's slice of the payload.
fn validate_all(data: &[u8], max_batch_bytes: usize) -> Result<Vec<BatchInfo>, (ErrorCode, String)> {
    if data.is_empty() {
        return Err((ErrorCode::CorruptBatch, "no record batch for this partition".into()));
    }
    let mut infos = Vec::new();
    for item in record::batches(data) {
        match item {
            Ok((_, info)) if info.batch_len as usize > max_batch_bytes => {
                return Err((ErrorCode::MessageTooLarge, format!("batch of {} bytes is over the limit of {max_batch_bytes}", info.batch_len)));
            }
            Ok((start, info)) => {
                record::validate_records(&data[start..], &info).map_err(|e| (ErrorCode::CorruptBatch, e.to_string()))?;
                infos.push(info)
            }
            Err(e) => return Err((ErrorCode::CorruptBatch, e.to_string())),
        }
    }
    Ok(infos)
}

pub async fn handle(shard: &Rc<Shard>, corr: u32, req: fb::ProduceRequest<'_>, mut payload: BytesMut) -> Option<Outgoing> {
    let acks = req.acks();
    if !matches!(acks, -1..=1) {
        return Some(error(corr, ErrorCode::InvalidRequiredAcks, &format!("acks must be 0, 1 or -1 (all), not {acks}")));
    }
    let described: u64 = req.topics().iter().flatten().flat_map(|t| t.partitions().into_iter().flatten()).map(|p| u64::from(p.records_bytes())).sum();
    if described != payload.len() as u64 {
        return Some(error(corr, ErrorCode::InvalidRequest, &format!("the request describes {described} payload bytes, the frame has {}", payload.len())));
    }
    let timeout = Duration::from_millis(u64::from(req.timeout_ms()).min(MAX_PRODUCE_TIMEOUT_MS));
    let max_batch_bytes = shard.config.max_batch_bytes;

    // Every partition's append runs concurrently; results keep request order.
    let mut names = Vec::new();
    let mut jobs = Vec::new();
    for t in req.topics().iter().flatten() {
        names.push(t.name().to_string());
        for p in t.partitions().iter().flatten() {
            let data = payload.split_to(p.records_bytes() as usize);
            let (topic, partition) = (t.name(), p.partition());
            jobs.push(async move {
                let r = match validate_all(&data, max_batch_bytes) {
                    Ok(infos) => shard.produce(topic, partition, data, infos, acks, timeout).await,
                    Err((code, msg)) => ProduceResult::err(code, msg),
                };
                (partition, r)
            });
        }
    }
    let results = futures::future::join_all(jobs).await;
    if acks == 0 {
        return None;
    }

    let mut fbb = FlatBufferBuilder::with_capacity(256 + 64 * results.len());
    let mut results = results.into_iter();
    let mut topics = Vec::with_capacity(names.len());
    for (t, name) in req.topics().iter().flatten().zip(&names) {
        let n = t.partitions().map_or(0, |p| p.len());
        let parts: Vec<_> = results
            .by_ref()
            .take(n)
            .map(|(partition, r)| {
                let msg = opt_str(&mut fbb, r.message.as_deref());
                fb::ProducePartitionResponse::create(
                    &mut fbb,
                    &fb::ProducePartitionResponseArgs {
                        partition,
                        error: r.error,
                        base_offset: r.base_offset,
                        log_start_offset: r.log_start_offset,
                        error_message: msg,
                    },
                )
            })
            .collect();
        let parts = fbb.create_vector(&parts);
        let name = fbb.create_string(name);
        topics.push(fb::ProduceTopicResponse::create(&mut fbb, &fb::ProduceTopicResponseArgs { name: Some(name), partitions: Some(parts) }));
    }
    let topics = fbb.create_vector(&topics);
    let body = fb::ProduceResponse::create(&mut fbb, &fb::ProduceResponseArgs { topics: Some(topics) });
    Some(respond(corr, fbb, (fb::ResponseBody::ProduceResponse, body.as_union_value()), Vec::new()))
}
