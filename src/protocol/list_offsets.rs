//! ListOffsets: the earliest or latest offset of a partition, or the first
//! offset at or after a timestamp.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::string;
use super::envelope::api;
use super::{fb, ErrorCode};

/// The timestamp that asks for a partition's first offset.
pub const EARLIEST: i64 = -2;
/// The timestamp that asks for a partition's next offset.
pub const LATEST: i64 = -1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub topics: Vec<Topic>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub name: String,
    pub partitions: Vec<Partition>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub partition: u32,
    /// [`EARLIEST`], [`LATEST`], else a time in ms.
    pub timestamp: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub topics: Vec<TopicResponse>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResponse {
    pub name: String,
    pub partitions: Vec<PartitionResponse>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
    pub offset: i64,
    pub timestamp: i64,
}

impl Request {
    pub fn decode(r: fb::ListOffsetsRequest<'_>) -> Self {
        Request {
            topics: r
                .topics()
                .iter()
                .flatten()
                .map(|t| Topic {
                    name: t.name().to_string(),
                    partitions: t.partitions().iter().flatten().map(|p| Partition { partition: p.partition(), timestamp: p.timestamp() }).collect(),
                })
                .collect(),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListOffsetsRequest<'a>> {
        let ts: Vec<_> = self
            .topics
            .iter()
            .map(|t| {
                let name = fbb.create_string(&t.name);
                let ps: Vec<_> = t
                    .partitions
                    .iter()
                    .map(|p| fb::ListOffsetsPartition::create(fbb, &fb::ListOffsetsPartitionArgs { partition: p.partition, timestamp: p.timestamp }))
                    .collect();
                let ps = fbb.create_vector(&ps);
                fb::ListOffsetsTopic::create(fbb, &fb::ListOffsetsTopicArgs { name: Some(name), partitions: Some(ps) })
            })
            .collect();
        let ts = fbb.create_vector(&ts);
        fb::ListOffsetsRequest::create(fbb, &fb::ListOffsetsRequestArgs { topics: Some(ts) })
    }
}

impl Response {
    pub fn decode(r: fb::ListOffsetsResponse<'_>) -> Self {
        Response {
            topics: r
                .topics()
                .iter()
                .flatten()
                .map(|t| TopicResponse {
                    name: string(t.name()),
                    partitions: t
                        .partitions()
                        .iter()
                        .flatten()
                        .map(|p| PartitionResponse { partition: p.partition(), error: p.error(), offset: p.offset(), timestamp: p.timestamp() })
                        .collect(),
                })
                .collect(),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListOffsetsResponse<'a>> {
        let ts: Vec<_> = self
            .topics
            .iter()
            .map(|t| {
                let ps: Vec<_> = t
                    .partitions
                    .iter()
                    .map(|p| {
                        fb::ListOffsetsPartitionResponse::create(
                            fbb,
                            &fb::ListOffsetsPartitionResponseArgs { partition: p.partition, error: p.error, offset: p.offset, timestamp: p.timestamp },
                        )
                    })
                    .collect();
                let ps = fbb.create_vector(&ps);
                let name = fbb.create_string(&t.name);
                fb::ListOffsetsTopicResponse::create(fbb, &fb::ListOffsetsTopicResponseArgs { name: Some(name), partitions: Some(ps) })
            })
            .collect();
        let ts = fbb.create_vector(&ts);
        fb::ListOffsetsResponse::create(fbb, &fb::ListOffsetsResponseArgs { topics: Some(ts) })
    }
}

api!(request Request, ListOffsetsRequest);
api!(response Response, ListOffsetsResponse, body_as_list_offsets_response);
