#![warn(missing_docs)]
//! Client side of the protocol. Today: [`raw`], a blocking connection that
//! speaks frames and builds the requests the load generator and tools
//! need. The full SDK (producer, consumer, admin, groups) builds on it.

pub mod admin;
pub mod consumer;
pub mod producer;
pub mod raw;
pub mod transport;
