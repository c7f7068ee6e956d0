//! The cluster: brokers keep their shared metadata in a Raft quorum among
//! themselves, with no external coordination service.
//!
//! - [`metadata`]: the state machine (brokers, topics, placement), sans-IO;
//! - [`quorum`]: the seam over raft-rs, one voter, sans-IO;
//! - [`log_store`], [`codec`]: the voter's log and our own encoding of it
//!   and of Raft messages, for disk and wire;
//! - [`controller`]: the leader's decisions (registration, fencing);
//! - [`service`]: the I/O around a voter on the broker's quorum shard:
//!   peer connections, the clock, the disk, and passing committed changes
//!   to every shard;
//! - `sim` (tests): a seeded simulation that drives [`quorum`] and
//!   [`metadata`] through lost, late, repeated and reordered messages,
//!   partitions and crashes.

pub mod codec;
pub mod controller;
pub mod log_store;
pub mod metadata;
pub mod quorum;
pub mod replication;
#[cfg(test)]
mod replication_sim;
#[cfg(test)]
mod seeded;
pub mod service;
#[cfg(test)]
mod sim;

use std::fmt;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use metadata::{Command, Metadata, MetadataError, NodeId, Outcome};
use quorum::Applied;

/// What a shard asks of this broker's voter of the metadata quorum (the
/// quorum shard holds it; `service::Service` is the one there is). The
/// shard knows the quorum only through this.
pub trait QuorumHandle {
    /// Commits a command; its outcome once every shard applied it.
    fn propose(&self, command: Command) -> LocalBoxFuture<'_, Result<Outcome, MetadataError>>;
    /// The commit index a linearizable read waits for; `None` without a
    /// leader within `wait`.
    fn read_index(&self, wait: Duration) -> LocalBoxFuture<'_, Option<u64>>;
    /// Every shard applied these committed entries: answer their
    /// proposers.
    fn applied(&self, applied: &[Applied]);
    /// The Raft term, the leader (if one is known) and the commit index,
    /// as this voter knows them (for metrics).
    fn figures(&self) -> (u64, Option<NodeId>, u64);
}

/// What the quorum shard passes to the shards, in order.
pub enum Delivery {
    Applied(Vec<Applied>),
    /// A snapshot from the leader replaced the whole state.
    Installed(Metadata),
    Controller(Option<NodeId>),
}

/// One voter of the quorum: its node id and its quorum listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: NodeId,
    pub host: String,
    pub port: u16,
}

impl fmt::Display for Voter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}:{}", self.id, self.host, self.port)
    }
}

/// Parses `--quorum-voters 1@HOST:PORT,2@HOST:PORT,...`.
pub fn parse_voters(s: &str) -> Result<Vec<Voter>, String> {
    let mut out: Vec<Voter> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part.split_once('@').ok_or_else(|| format!("'{part}': a voter is ID@HOST:PORT, e.g. 1@127.0.0.1:9192"))?;
        let id: NodeId = id.parse().ok().filter(|&i| i >= 0).ok_or_else(|| format!("'{part}': the node id must be a whole number, 0 or more"))?;
        let (host, port) = parse_host_port(addr).map_err(|e| format!("'{part}': {e}"))?;
        if out.iter().any(|v| v.id == id) {
            return Err(format!("node id {id} is listed twice"));
        }
        out.push(Voter { id, host, port });
    }
    if out.is_empty() {
        return Err("no voters given".into());
    }
    Ok(out)
}

/// Splits `host:port`, checking the port.
pub fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("'{s}' is not HOST:PORT"))?;
    let port: u16 = port.parse().map_err(|_| format!("'{port}' in '{s}' is not a port number"))?;
    if host.is_empty() {
        return Err(format!("'{s}' has no host"));
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_and_bad_ones_say_why() {
        let v = parse_voters("1@127.0.0.1:9192, 2@broker2:9192").unwrap();
        assert_eq!(v[1], Voter { id: 2, host: "broker2".into(), port: 9192 });
        assert_eq!(v[0].to_string(), "1@127.0.0.1:9192");
        for bad in ["", "1", "x@h:1", "-1@h:1", "1@h", "1@h:1,1@h:2"] {
            assert!(parse_voters(bad).is_err(), "{bad}");
        }
    }
}
