//! ApiVersions: the handshake, listing every API and version served.

use flatbuffers::FlatBufferBuilder;

use super::response::{respond, Outgoing};
use crate::protocol::{fb, APIS};
use crate::shard::Shard;

pub fn handle(shard: &Shard, corr: u32) -> Outgoing {
    let mut fbb = FlatBufferBuilder::with_capacity(512);
    let apis: Vec<_> = APIS
        .iter()
        .map(|(k, min, max)| fb::ApiVersionRange::create(&mut fbb, &fb::ApiVersionRangeArgs { api_key: k.0, min_version: *min, max_version: *max }))
        .collect();
    let apis = fbb.create_vector(&apis);
    let v = fbb.create_string(env!("CARGO_PKG_VERSION"));
    let body = fb::ApiVersionsResponse::create(
        &mut fbb,
        &fb::ApiVersionsResponseArgs {
            apis: Some(apis),
            broker_version: Some(v),
            node_id: shard.config.node_id,
            max_frame_bytes: shard.config.max_frame_bytes as u32,
        },
    );
    respond(corr, fbb, (fb::ResponseBody::ApiVersionsResponse, body.as_union_value()), Vec::new())
}
