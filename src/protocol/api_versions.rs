//! ApiVersions: the handshake, listing every API and version served.

use flatbuffers::{FlatBufferBuilder, WIPOffset};

use super::codec::{opt_str, string};
use super::envelope::api;
use super::fb;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub client_software: Option<String>,
}

/// One API and the versions of it a broker serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRange {
    pub api_key: u8,
    pub min_version: u16,
    pub max_version: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub apis: Vec<ApiRange>,
    pub broker_version: String,
    pub node_id: i32,
    pub max_frame_bytes: u32,
}

impl Request {
    pub fn decode(r: fb::ApiVersionsRequest<'_>) -> Self {
        Request { client_software: r.client_software().map(str::to_string) }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ApiVersionsRequest<'a>> {
        let client_software = opt_str(fbb, self.client_software.as_deref());
        fb::ApiVersionsRequest::create(fbb, &fb::ApiVersionsRequestArgs { client_software })
    }
}

impl Response {
    pub fn decode(r: fb::ApiVersionsResponse<'_>) -> Self {
        Response {
            apis: r.apis().iter().flatten().map(|a| ApiRange { api_key: a.api_key(), min_version: a.min_version(), max_version: a.max_version() }).collect(),
            broker_version: string(r.broker_version()),
            node_id: r.node_id(),
            max_frame_bytes: r.max_frame_bytes(),
        }
    }

    pub fn encode<'a>(&self, fbb: &mut FlatBufferBuilder<'a>) -> WIPOffset<fb::ApiVersionsResponse<'a>> {
        let apis: Vec<_> = self
            .apis
            .iter()
            .map(|a| fb::ApiVersionRange::create(fbb, &fb::ApiVersionRangeArgs { api_key: a.api_key, min_version: a.min_version, max_version: a.max_version }))
            .collect();
        let apis = fbb.create_vector(&apis);
        let v = fbb.create_string(&self.broker_version);
        fb::ApiVersionsResponse::create(
            fbb,
            &fb::ApiVersionsResponseArgs { apis: Some(apis), broker_version: Some(v), node_id: self.node_id, max_frame_bytes: self.max_frame_bytes },
        )
    }
}

api!(request Request, ApiVersionsRequest);
api!(response Response, ApiVersionsResponse, body_as_api_versions_response);
