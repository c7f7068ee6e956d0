//! ApiVersions: the handshake, listing every API and version served.

use crate::protocol::api_versions::{ApiRange, Response};
use crate::protocol::APIS;
use crate::shard::Shard;

pub fn handle(shard: &Shard) -> Response {
    Response {
        apis: APIS.iter().map(|(k, min, max)| ApiRange { api_key: k.0, min_version: *min, max_version: *max }).collect(),
        broker_version: env!("CARGO_PKG_VERSION").to_string(),
        node_id: shard.config.node_id,
        max_frame_bytes: shard.config.max_frame_bytes as u32,
    }
}
