//! ListTopics: the names of every topic (internal ones left out).

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{strings_in, strings_out};
use super::envelope::api;
use super::fb;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub names: Vec<String>,
}

impl Request {
    pub fn decode(_: fb::ListTopicsRequest<'_>) -> Self {
        Request
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListTopicsRequest<'a>> {
        fb::ListTopicsRequest::create(fbb, &fb::ListTopicsRequestArgs {})
    }
}

impl Response {
    pub fn decode(r: fb::ListTopicsResponse<'_>) -> Self {
        Response { names: strings_in(r.names()) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ListTopicsResponse<'a>> {
        let names = strings_out(fbb, &self.names);
        fb::ListTopicsResponse::create(fbb, &fb::ListTopicsResponseArgs { names: Some(names) })
    }
}

api!(request Request, ListTopicsRequest);
api!(response Response, ListTopicsResponse, body_as_list_topics_response);
