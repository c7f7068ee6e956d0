//! ListOffsets: the earliest or latest offset of a partition, or the first
//! offset at or after a timestamp.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{topics_in, topics_out};
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

pub type Topic = super::Topic<Partition>;

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

pub type TopicResponse = super::Topic<PartitionResponse>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionResponse {
    pub partition: u32,
    pub error: ErrorCode,
    pub offset: i64,
    pub timestamp: i64,
}

impl Request {
    pub fn decode(r: fb::ListOffsetsRequest<'_>) -> Self {
        Request { topics: topics_in(r.topics(), |t| (Some(t.name()), t.partitions()), |p| Partition { partition: p.partition(), timestamp: p.timestamp() }) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListOffsetsRequest<'a>> {
        let topics = topics_out(
            fbb,
            &self.topics,
            |fbb, p| fb::ListOffsetsPartition::create(fbb, &fb::ListOffsetsPartitionArgs { partition: p.partition, timestamp: p.timestamp }),
            |fbb, name, ps| fb::ListOffsetsTopic::create(fbb, &fb::ListOffsetsTopicArgs { name: Some(name), partitions: Some(ps) }),
        );
        fb::ListOffsetsRequest::create(fbb, &fb::ListOffsetsRequestArgs { topics: Some(topics) })
    }
}

impl Response {
    pub fn decode(r: fb::ListOffsetsResponse<'_>) -> Self {
        Response {
            topics: topics_in(
                r.topics(),
                |t| (t.name(), t.partitions()),
                |p| PartitionResponse { partition: p.partition(), error: p.error(), offset: p.offset(), timestamp: p.timestamp() },
            ),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListOffsetsResponse<'a>> {
        let topics = topics_out(
            fbb,
            &self.topics,
            |fbb, p| {
                fb::ListOffsetsPartitionResponse::create(
                    fbb,
                    &fb::ListOffsetsPartitionResponseArgs { partition: p.partition, error: p.error, offset: p.offset, timestamp: p.timestamp },
                )
            },
            |fbb, name, ps| fb::ListOffsetsTopicResponse::create(fbb, &fb::ListOffsetsTopicResponseArgs { name: Some(name), partitions: Some(ps) }),
        );
        fb::ListOffsetsResponse::create(fbb, &fb::ListOffsetsResponseArgs { topics: Some(topics) })
    }
}

api!(request Request, ListOffsetsRequest);
api!(response Response, ListOffsetsResponse, body_as_list_offsets_response);
