//! DeleteTopics: topics and their data, by name.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{strings_in, strings_out};
pub use super::create_topics::TopicResult;
use super::envelope::api;
use super::fb;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub names: Vec<String>,
    pub timeout_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub results: Vec<TopicResult>,
}

impl Request {
    pub fn decode(r: fb::DeleteTopicsRequest<'_>) -> Self {
        Request { names: strings_in(r.names()), timeout_ms: r.timeout_ms() }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::DeleteTopicsRequest<'a>> {
        let names = strings_out(fbb, &self.names);
        fb::DeleteTopicsRequest::create(fbb, &fb::DeleteTopicsRequestArgs { names: Some(names), timeout_ms: self.timeout_ms })
    }
}

impl Response {
    pub fn decode(r: fb::DeleteTopicsResponse<'_>) -> Self {
        Response { results: TopicResult::decode_all(r.results()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::DeleteTopicsResponse<'a>> {
        let results = TopicResult::encode_all(fbb, &self.results);
        fb::DeleteTopicsResponse::create(fbb, &fb::DeleteTopicsResponseArgs { results: Some(results) })
    }
}

api!(request Request, DeleteTopicsRequest);
api!(response Response, DeleteTopicsResponse, body_as_delete_topics_response);
