//! DescribeTopic: one topic as the metadata has it and, through its
//! leading broker, each replica's lag.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::envelope::api;
use super::fb;
pub use super::metadata::Topic;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `None` only from a broker that sent no topic at all.
    pub topic: Option<Topic>,
}

impl Request {
    pub fn decode(r: fb::DescribeTopicRequest<'_>) -> Self {
        Request { name: r.name().to_string() }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::DescribeTopicRequest<'a>> {
        let name = fbb.create_string(&self.name);
        fb::DescribeTopicRequest::create(fbb, &fb::DescribeTopicRequestArgs { name: Some(name) })
    }
}

impl Response {
    pub fn decode(r: fb::DescribeTopicResponse<'_>) -> Self {
        Response { topic: r.topic().map(Topic::decode) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::DescribeTopicResponse<'a>> {
        let topic = self.topic.as_ref().map(|t| t.encode(fbb));
        fb::DescribeTopicResponse::create(fbb, &fb::DescribeTopicResponseArgs { topic })
    }
}

api!(request Request, DescribeTopicRequest);
api!(response Response, DescribeTopicResponse, body_as_describe_topic_response);
