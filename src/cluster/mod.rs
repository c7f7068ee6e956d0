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

use metadata::NodeId;

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
        let (host, port) = crate::config::parse_host_port(addr).map_err(|e| format!("'{part}': {e}"))?;
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
