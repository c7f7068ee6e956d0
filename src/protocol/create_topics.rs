//! CreateTopics: new topics with their partitions, replication and
//! settings. Its per-topic result is also DeleteTopics'.

use flatbuffers::{FlatBufferBuilder, ForwardsUOffset, Vector, WIPOffset};

use super::codec::{configs_in, configs_out, opt_str, string};
use super::envelope::api;
use super::{fb, ErrorCode};

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    pub partitions: u32,
    pub replication_factor: u16,
    /// `retention.ms`, `retention.bytes`, `segment.bytes`, `segment.ms`.
    pub configs: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub topics: Vec<NewTopic>,
    pub timeout_ms: u32,
}

/// What became of one topic of a create or a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicResult {
    pub name: String,
    pub error: ErrorCode,
    pub error_message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub results: Vec<TopicResult>,
}

impl Request {
    pub fn decode(r: fb::CreateTopicsRequest<'_>) -> Self {
        Request {
            topics: r
                .topics()
                .iter()
                .flatten()
                .map(|t| NewTopic {
                    name: t.name().to_string(),
                    partitions: t.partitions(),
                    replication_factor: t.replication_factor(),
                    configs: configs_in(t.configs()),
                })
                .collect(),
            timeout_ms: r.timeout_ms(),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::CreateTopicsRequest<'a>> {
        let ts: Vec<_> = self
            .topics
            .iter()
            .map(|t| {
                let name = fbb.create_string(&t.name);
                let configs = (!t.configs.is_empty()).then(|| configs_out(fbb, &t.configs));
                fb::CreatableTopic::create(
                    fbb,
                    &fb::CreatableTopicArgs { name: Some(name), partitions: t.partitions, replication_factor: t.replication_factor, configs },
                )
            })
            .collect();
        let ts = fbb.create_vector(&ts);
        fb::CreateTopicsRequest::create(fbb, &fb::CreateTopicsRequestArgs { topics: Some(ts), timeout_ms: self.timeout_ms })
    }
}

type Results<'a> = Vector<'a, ForwardsUOffset<fb::TopicResult<'a>>>;

impl TopicResult {
    pub(crate) fn decode_all(v: Option<Results<'_>>) -> Vec<Self> {
        v.iter().flatten().map(|t| TopicResult { name: string(t.name()), error: t.error(), error_message: t.error_message().map(str::to_string) }).collect()
    }

    pub(crate) fn encode_all<'a>(fbb: &mut FlatBufferBuilder<'a>, v: &[Self]) -> WIPOffset<Results<'a>> {
        let rs: Vec<_> = v
            .iter()
            .map(|t| {
                let name = fbb.create_string(&t.name);
                let error_message = opt_str(fbb, t.error_message.as_deref());
                fb::TopicResult::create(fbb, &fb::TopicResultArgs { name: Some(name), error: t.error, error_message })
            })
            .collect();
        fbb.create_vector(&rs)
    }
}

impl Response {
    pub fn decode(r: fb::CreateTopicsResponse<'_>) -> Self {
        Response { results: TopicResult::decode_all(r.results()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::CreateTopicsResponse<'a>> {
        let results = TopicResult::encode_all(fbb, &self.results);
        fb::CreateTopicsResponse::create(fbb, &fb::CreateTopicsResponseArgs { results: Some(results) })
    }
}

api!(request Request, CreateTopicsRequest);
api!(response Response, CreateTopicsResponse, body_as_create_topics_response);
