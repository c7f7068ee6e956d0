//! ListOffsets: the earliest or latest offset of a partition, or the first
//! offset at or after a timestamp.

use std::rc::Rc;

use crate::protocol::list_offsets::{PartitionResponse, Request, Response, TopicResponse};
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, req: Request) -> Response {
    let asked = req.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| shard.list_offset(&t.name, p.partition, p.timestamp)));
    let mut results = futures::future::join_all(asked).await.into_iter();
    let topics = req
        .topics
        .iter()
        .map(|t| TopicResponse {
            name: t.name.clone(),
            partitions: t
                .partitions
                .iter()
                .zip(results.by_ref())
                .map(|(p, r)| PartitionResponse { partition: p.partition, error: r.error, offset: r.offset, timestamp: r.timestamp })
                .collect(),
        })
        .collect();
    Response { topics }
}
