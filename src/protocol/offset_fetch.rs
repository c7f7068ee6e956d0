//! OffsetFetch: a consumer group's committed offsets.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::envelope::api;
use super::fb;
use super::offset_commit::{results_in, results_out};
pub use super::offset_commit::{PartitionResult, TopicResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub group: String,
    pub topics: Vec<Topic>,
}

pub type Topic = super::Topic<u32>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub topics: Vec<TopicResult>,
}

impl Request {
    pub fn decode(r: fb::OffsetFetchRequest<'_>) -> Self {
        Request {
            group: r.group().to_string(),
            topics: r
                .topics()
                .iter()
                .flatten()
                .map(|t| Topic { name: t.name().to_string(), partitions: t.partitions().map(|p| p.iter().collect()).unwrap_or_default() })
                .collect(),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::OffsetFetchRequest<'a>> {
        let group = fbb.create_string(&self.group);
        let ts: Vec<_> = self
            .topics
            .iter()
            .map(|t| {
                let name = fbb.create_string(&t.name);
                let ps = fbb.create_vector(&t.partitions);
                fb::OffsetFetchTopic::create(fbb, &fb::OffsetFetchTopicArgs { name: Some(name), partitions: Some(ps) })
            })
            .collect();
        let ts = fbb.create_vector(&ts);
        fb::OffsetFetchRequest::create(fbb, &fb::OffsetFetchRequestArgs { group: Some(group), topics: Some(ts) })
    }
}

impl Response {
    pub fn decode(r: fb::OffsetFetchResponse<'_>) -> Self {
        Response { topics: results_in(r.topics()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::OffsetFetchResponse<'a>> {
        let topics = results_out(fbb, &self.topics);
        fb::OffsetFetchResponse::create(fbb, &fb::OffsetFetchResponseArgs { topics: Some(topics) })
    }

    /// Every partition's result, in request order.
    pub fn partitions(&self) -> impl Iterator<Item = &PartitionResult> {
        self.topics.iter().flat_map(|t| t.partitions.iter())
    }
}

api!(request Request, OffsetFetchRequest);
api!(response Response, OffsetFetchResponse, body_as_offset_fetch_response);
