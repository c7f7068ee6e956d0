//! ListOffsets: the earliest or latest offset of a partition, or the first
//! offset at or after a timestamp.

use std::rc::Rc;

use flatbuffers::FlatBufferBuilder;

use super::response::{respond, Outgoing};
use crate::protocol::fb;
use crate::shard::Shard;

pub async fn handle(shard: &Rc<Shard>, corr: u32, req: fb::ListOffsetsRequest<'_>) -> Outgoing {
    let wanted: Vec<(usize, &str, u32, i64)> = req
        .topics()
        .iter()
        .flatten()
        .enumerate()
        .flat_map(|(ti, t)| t.partitions().into_iter().flatten().map(move |p| (ti, t.name(), p.partition(), p.timestamp())))
        .collect();
    let results = futures::future::join_all(wanted.iter().map(|&(_, t, p, ts)| shard.list_offset(t, p, ts))).await;
    let mut fbb = FlatBufferBuilder::with_capacity(256);
    let mut topics = Vec::new();
    let mut i = 0;
    for (ti, t) in req.topics().iter().flatten().enumerate() {
        let mut parts = Vec::new();
        while i < wanted.len() && wanted[i].0 == ti {
            let r = &results[i];
            parts.push(fb::ListOffsetsPartitionResponse::create(
                &mut fbb,
                &fb::ListOffsetsPartitionResponseArgs { partition: wanted[i].2, error: r.error, offset: r.offset, timestamp: r.timestamp },
            ));
            i += 1;
        }
        let parts = fbb.create_vector(&parts);
        let name = fbb.create_string(t.name());
        topics.push(fb::ListOffsetsTopicResponse::create(&mut fbb, &fb::ListOffsetsTopicResponseArgs { name: Some(name), partitions: Some(parts) }));
    }
    let topics = fbb.create_vector(&topics);
    let body = fb::ListOffsetsResponse::create(&mut fbb, &fb::ListOffsetsResponseArgs { topics: Some(topics) });
    respond(corr, fbb, (fb::ResponseBody::ListOffsetsResponse, body.as_union_value()), Vec::new())
}
