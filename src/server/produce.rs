//! Produce: slice the payload per partition, check every batch once, hand
//! the bytes to the owning shard, answer with offsets.
//!
//! The batches are never decoded or copied here: `record::validate` reads
//! the header and runs the CRC, and `record::validate_records` walks the
//! record lengths, so a batch that is stored is a batch every consumer can
//! read. The log patches the base offset in place. A compressed batch is
//! inflated into scratch memory only to be walked, and stored as sent.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::response::{respond, Outgoing};
use crate::protocol::init_producer_id;
use crate::protocol::produce::{self, PartitionResponse};
use crate::protocol::{Acks, ErrorCode, Topic};
use crate::record::{self, BatchInfo, RecordError};
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
                record::validate_records(&data[start..], &info).map_err(refusal)?;
                infos.push(info)
            }
            Err(e) => return Err(refusal(e)),
        }
    }
    Ok(infos)
}

/// The error a refused batch is answered with: Kafka's own for what it
/// refuses as well, else a corrupt batch; the message says what is wrong.
fn refusal(e: RecordError) -> (ErrorCode, String) {
    let code = match e {
        RecordError::UnsupportedCompression(_) => ErrorCode::UnsupportedCompression,
        RecordError::LogAppendTime => ErrorCode::InvalidTimestamp,
        RecordError::Transactional => ErrorCode::InvalidRecord,
        _ => ErrorCode::CorruptBatch,
    };
    (code, e.to_string())
}

/// InitProducerId: the next id of this shard's block (epoch 0). Shared by
/// the native and the Kafka listener.
pub async fn init_producer_id(shard: &Rc<Shard>) -> init_producer_id::Response {
    match shard.new_producer_id().await {
        Ok(id) => init_producer_id::Response { error: ErrorCode::None, error_message: None, producer_id: id, producer_epoch: 0 },
        // The quorum could not be reached: the client retries.
        Err(e) => init_producer_id::Response::error(ErrorCode::CoordinatorNotAvailable, e.to_string()),
    }
}

pub async fn handle(shard: &Rc<Shard>, corr: u32, req: produce::Request<BytesMut>) -> Option<Outgoing> {
    answer(shard, req).await.map(|r| respond(corr, &r, Vec::new()))
}

/// Appends every partition's batches; `None` for acks=0, which has no
/// answer. Shared by the native and the Kafka listener.
pub async fn answer(shard: &Rc<Shard>, mut req: produce::Request<BytesMut>) -> Option<produce::Response> {
    let acks = req.acks;
    let timeout = Duration::from_millis(u64::from(req.timeout_ms).min(MAX_PRODUCE_TIMEOUT_MS));
    let max_batch_bytes = shard.config.max_batch_bytes;

    // Every partition's append runs concurrently; results keep request
    // order. The records move to their appends; the request keeps the rest.
    let records: Vec<BytesMut> = req.topics.iter_mut().flat_map(|t| t.partitions.iter_mut().map(|p| std::mem::take(&mut p.records))).collect();
    let asked = req.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.as_str(), p.partition)));
    let started = Instant::now();
    let jobs = asked.zip(records).map(|((topic, partition), data)| async move {
        match validate_all(&data, max_batch_bytes) {
            Ok(infos) => shard.produce(topic, partition, data, infos, acks, timeout).await,
            Err((code, msg)) => ProduceResult::err(code, msg),
        }
    });
    let results = futures::future::join_all(jobs).await;
    for r in &results {
        crate::metrics::error("Produce", super::error_name(r.error));
    }
    let op = match acks {
        Acks::None => "produce_acks_0",
        Acks::Leader => "produce_acks_1",
        Acks::All => "produce_acks_all",
    };
    crate::metrics::latency(op, started.elapsed());
    if acks == Acks::None {
        return None;
    }
    let topics = Topic::answer_all(&req.topics, results, |p, r| PartitionResponse {
        partition: p.partition,
        error: r.error,
        base_offset: r.base_offset,
        log_start_offset: r.log_start_offset,
        error_message: r.message,
    });
    Some(produce::Response { topics })
}
