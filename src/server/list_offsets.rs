//! ListOffsets: the earliest or latest offset of a partition, or the first
//! offset at or after a timestamp.

use std::rc::Rc;

use crate::protocol::list_offsets::{PartitionResponse, Request, Response};
use crate::protocol::Topic;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, req: Request) -> Response {
    let asked = req.topics.iter().flat_map(|t| t.partitions.iter().map(move |p| shard.list_offset(&t.name, p.partition, p.timestamp)));
    let results = futures::future::join_all(asked).await;
    let topics =
        Topic::answer_all(&req.topics, results, |p, r| PartitionResponse { partition: p.partition, error: r.error, offset: r.offset, timestamp: r.timestamp });
    Response { topics }
}
