//! shardlog: a message broker with Kafka's model (topics, partitions,
//! offsets) on a thread-per-core, io_uring engine.
//!
//! The code map is in `ARCHITECTURE.md`.

#[cfg(feature = "client")]
pub mod auth;
#[cfg(feature = "broker")]
pub mod broker;
#[cfg(feature = "broker")]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "broker")]
pub mod cluster;
#[cfg(feature = "broker")]
pub mod config;
#[cfg(feature = "broker")]
pub mod group;
pub mod hash;
#[cfg(feature = "broker")]
pub mod metrics;
#[cfg(feature = "broker")]
pub mod net;
#[cfg(feature = "broker")]
pub mod producers;
pub mod protocol;
pub mod record;
#[cfg(feature = "broker")]
pub mod rt;
#[cfg(feature = "broker")]
pub mod server;
#[cfg(feature = "broker")]
pub mod shard;
#[cfg(feature = "broker")]
pub mod storage;
pub mod time;
#[cfg(feature = "client")]
pub mod tls;
