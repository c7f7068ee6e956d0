//! The broker's one typed configuration: defaults, then a TOML file, then
//! `SHARDLOG_*` environment variables, then flags (each overriding the
//! one before). Checked once at start; a bad value stops the broker with a
//! sentence saying which setting and why.

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::cluster::{parse_host_port, parse_voters, Voter};
use crate::storage::LogConfig;

/// Everything a broker needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub node_id: i32,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The address clients are told to connect to; defaults to `listen`.
    pub advertised_address: Option<String>,
    /// Executors, one per core; 0 means one per online core.
    pub shards: u16,
    pub max_frame_bytes: usize,
    /// Largest record batch a producer may send.
    pub max_batch_bytes: usize,
    pub max_connections: usize,
    /// Request bytes a connection may have in flight before the broker stops
    /// reading from its socket.
    pub max_inflight_bytes_per_connection: usize,
    /// Requests a connection may have in flight.
    pub max_inflight_requests_per_connection: usize,
    /// Request bytes all of one shard's connections may hold buffered
    /// together (Kafka's `queued.max.request.bytes`, per shard); past it,
    /// connections wait unread until requests finish.
    pub max_buffered_request_bytes_per_shard: usize,
    /// Once a frame's first bytes arrive, the rest must arrive within this
    /// or the connection is closed and the frame's budget given back.
    pub request_read_timeout_ms: u64,
    /// Upper bound on a fetch's long-poll wait.
    pub fetch_wait_max_ms: u64,
    /// A connection that sends nothing for this long is closed.
    pub connection_idle_timeout_ms: u64,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_grace_ms: u64,
    /// How long a stopping broker of a cluster waits for the quorum to move
    /// its partitions' leadership to in-sync followers (and, if it is the
    /// controller, for another voter to take over) before it stops serving
    /// them. Past it, it stops anyway and the session timeout moves them.
    pub controlled_shutdown_timeout_ms: u64,
    /// Interval of retention checks.
    pub retention_check_interval_ms: u64,
    /// Accept a data directory on a filesystem that does not survive a
    /// reboot (tmpfs, ramfs): acknowledged data is then lost with the host.
    pub allow_nondurable_data_dir: bool,
    /// Create a topic a Kafka client's Metadata request names and that
    /// does not exist (Kafka's `auto.create.topics.enable`), with one
    /// partition and one replica. Off: a typo in a topic name is an
    /// error, not a new topic.
    pub auto_create_topics: bool,
    /// An idempotent producer whose last batch in a partition is older
    /// than this is forgotten there (Kafka's `producer.id.expiration.ms`):
    /// its next batch is then accepted whatever its sequence.
    pub producer_id_expiration_ms: u64,
    /// The most idempotent producers a partition remembers; past it the
    /// one idle longest is forgotten. Bounds the memory of the windows.
    pub max_producers_per_partition: usize,
    /// Accept `shards` above the host's online cores. A thread-per-core
    /// engine pins one executor per core; two on one core take turns and
    /// each stalls the other's I/O, so more shards than cores is refused
    /// unless asked for.
    pub allow_more_shards_than_cores: bool,
    /// The tail cache of all of a shard's partitions together, split
    /// evenly between them (each also keeps `log.cache_max_bytes`).
    pub cache_max_bytes_per_shard: usize,
    /// The metadata quorum: `1@HOST:PORT,2@HOST:PORT,...`, each voter's
    /// quorum listener (a port apart from clients'). Unset: this broker
    /// is a one-voter quorum of itself and opens no quorum port.
    pub quorum_voters: Option<String>,
    /// A second client listener for clients outside the brokers' network
    /// (a container's published port): metadata answered through it names
    /// every broker by its external advertised address.
    pub external_listen: Option<SocketAddr>,
    /// The address clients of the external listener are told to connect
    /// to (`host:port`); defaults to `external_listen`.
    pub external_advertised_address: Option<String>,
    /// A broker the controller has not heard from for this long is fenced
    /// and its partitions' leadership moves.
    pub broker_session_timeout_ms: u64,
    /// A follower not caught up with its leader for this long leaves the
    /// partition's in-sync replicas (so acks=all stops waiting for it).
    pub replica_lag_max_ms: u64,
    /// The HTTP port serving `/metrics` (Prometheus), `/health` and
    /// `/ready`; `off` (or empty) serves none.
    pub metrics_listen: String,
    /// The most partitions reported one series each in `/metrics` (past
    /// it, the largest logs are kept), so a broker of 10,000 partitions
    /// does not make every scrape heavy.
    pub metrics_max_partitions: usize,
    /// TLS on the client listeners: this certificate chain (PEM)...
    pub tls_cert: Option<PathBuf>,
    /// ...and its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Clients must show a certificate these authorities (PEM) signed;
    /// its common name is the client's principal.
    pub tls_client_ca: Option<PathBuf>,
    /// Mutual TLS between brokers (quorum and replication): this broker's
    /// certificate chain...
    pub peer_tls_cert: Option<PathBuf>,
    /// ...its key...
    pub peer_tls_key: Option<PathBuf>,
    /// ...and the authority that signs every broker's certificate.
    pub peer_tls_ca: Option<PathBuf>,
    /// A TLS handshake must finish within this long of the connection.
    pub tls_handshake_timeout_ms: u64,
    /// SASL mechanisms clients must authenticate with on the client
    /// listeners, comma-separated (SCRAM-SHA-256, SCRAM-SHA-512); empty:
    /// no SASL.
    pub sasl_mechanisms: String,
    /// A user created at start when the cluster does not have it yet, with
    /// `sasl_bootstrap_password` (Kafka's `kafka-storage format
    /// --add-scram`): the first administrator of a cluster that requires
    /// SASL.
    pub sasl_bootstrap_user: String,
    pub sasl_bootstrap_password: String,
    /// `acl`: requests are checked against the ACLs in the quorum;
    /// empty: everything is allowed.
    pub authorizer: String,
    /// Principals every check allows (`User:admin`), comma-separated.
    pub super_users: String,
    /// Storage defaults for every topic, overridable per topic.
    pub log: LogConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:9092".parse().expect("valid"),
            advertised_address: None,
            shards: 0,
            max_frame_bytes: 16 << 20,
            max_batch_bytes: 1 << 20,
            max_connections: 10_000,
            max_inflight_bytes_per_connection: 64 << 20,
            max_inflight_requests_per_connection: 1024,
            max_buffered_request_bytes_per_shard: 128 << 20,
            request_read_timeout_ms: 30_000,
            fetch_wait_max_ms: 30_000,
            connection_idle_timeout_ms: 10 * 60 * 1000,
            shutdown_grace_ms: 5_000,
            controlled_shutdown_timeout_ms: 5_000,
            retention_check_interval_ms: 60_000,
            allow_nondurable_data_dir: false,
            auto_create_topics: false,
            producer_id_expiration_ms: 24 * 60 * 60 * 1000,
            max_producers_per_partition: 10_000,
            allow_more_shards_than_cores: false,
            cache_max_bytes_per_shard: 256 << 20,
            quorum_voters: None,
            external_listen: None,
            external_advertised_address: None,
            broker_session_timeout_ms: 2_500,
            replica_lag_max_ms: 3_000,
            metrics_listen: DEFAULT_METRICS_LISTEN.into(),
            metrics_max_partitions: 2_000,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            peer_tls_cert: None,
            peer_tls_key: None,
            peer_tls_ca: None,
            tls_handshake_timeout_ms: 10_000,
            sasl_mechanisms: String::new(),
            sasl_bootstrap_user: String::new(),
            sasl_bootstrap_password: String::new(),
            authorizer: String::new(),
            super_users: String::new(),
            log: LogConfig::default(),
        }
    }
}

/// Where `/metrics` is served unless configured otherwise.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9644";

impl BrokerConfig {
    /// The metrics port's address; `None` when it is off. An address that
    /// does not parse is refused by [`Self::validate`].
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        match self.metrics_listen.trim() {
            "" | "off" => None,
            a => a.parse().ok(),
        }
    }

    /// The SASL mechanisms clients must use; empty: none.
    pub fn sasl(&self) -> Result<Vec<crate::auth::Mechanism>, String> {
        self.sasl_mechanisms
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(|m| crate::auth::Mechanism::parse(m).ok_or_else(|| format!("sasl_mechanisms: '{m}' is not one of SCRAM-SHA-256, SCRAM-SHA-512")))
            .collect()
    }

    /// Whether requests are checked against ACLs.
    pub fn acl_authorizer(&self) -> bool {
        self.authorizer.trim() == "acl"
    }

    /// The super users' principals.
    pub fn super_user_list(&self) -> Vec<String> {
        self.super_users.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
    }

    /// The TLS files, as the TLS settings read them.
    pub fn tls_files(&self) -> crate::tls::server::Files {
        crate::tls::server::Files {
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            peer_tls_cert: self.peer_tls_cert.clone(),
            peer_tls_key: self.peer_tls_key.clone(),
            peer_tls_ca: self.peer_tls_ca.clone(),
        }
    }

    /// Whether clients connect in TLS.
    pub fn client_tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Checks every setting; the error names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("tls_cert and tls_key go together".into());
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return Err("tls_client_ca needs tls_cert and tls_key".into());
        }
        let peer = [&self.peer_tls_cert, &self.peer_tls_key, &self.peer_tls_ca].iter().filter(|p| p.is_some()).count();
        if peer != 0 && peer != 3 {
            return Err("peer_tls_cert, peer_tls_key and peer_tls_ca go together".into());
        }
        self.sasl()?;
        if !matches!(self.authorizer.trim(), "" | "acl") {
            return Err(format!("authorizer '{}' is not 'acl' (or empty)", self.authorizer));
        }
        if let Some(u) = self.super_user_list().iter().find(|u| !u.starts_with("User:")) {
            return Err(format!("super_users: '{u}' is not User:NAME"));
        }
        if self.tls_cert.is_some() && peer == 0 && self.quorum_voters.as_deref().is_some_and(|v| v.contains(',')) {
            return Err(
                "with tls_cert, brokers fetch replicas from each other's TLS client listener: set peer_tls_cert, peer_tls_key and peer_tls_ca too".into()
            );
        }
        if self.sasl_bootstrap_user.is_empty() != self.sasl_bootstrap_password.is_empty() {
            return Err("sasl_bootstrap_user and sasl_bootstrap_password (SHARDLOG_SASL_BOOTSTRAP_PASSWORD) go together".into());
        }
        if self.tls_handshake_timeout_ms == 0 {
            return Err("tls_handshake_timeout_ms must be positive".into());
        }
        if !matches!(self.metrics_listen.trim(), "" | "off") && self.metrics_listen.trim().parse::<SocketAddr>().is_err() {
            return Err(format!("metrics_listen '{}' is neither an address (IP:PORT) nor 'off'", self.metrics_listen));
        }
        if self.node_id < 0 {
            return Err(format!("node_id must be 0 or more, not {}", self.node_id));
        }
        if self.max_frame_bytes < 1024 || self.max_frame_bytes > (1 << 30) {
            return Err("max_frame_bytes must be between 1 KiB and 1 GiB".into());
        }
        if self.max_inflight_bytes_per_connection < self.max_frame_bytes {
            return Err("max_inflight_bytes_per_connection must be at least max_frame_bytes, or a full frame could never be read".into());
        }
        if self.max_buffered_request_bytes_per_shard < self.max_frame_bytes {
            return Err("max_buffered_request_bytes_per_shard must be at least max_frame_bytes, or a full frame could never be read".into());
        }
        if self.max_producers_per_partition == 0 {
            return Err("max_producers_per_partition must be positive".into());
        }
        if self.request_read_timeout_ms == 0 {
            return Err("request_read_timeout_ms must be positive".into());
        }
        if self.max_connections == 0 || self.max_inflight_requests_per_connection == 0 {
            return Err("max_connections and max_inflight_requests_per_connection must be positive".into());
        }
        if self.shards > 1024 {
            return Err(format!("shards must be at most 1024, not {}", self.shards));
        }
        if self.max_batch_bytes < crate::record::HEADER_BYTES + 7 || self.max_batch_bytes > self.max_frame_bytes.min(crate::record::MAX_BATCH_BYTES) {
            return Err("max_batch_bytes must fit in a frame (max_frame_bytes) and be at most 64 MiB".into());
        }
        self.log.validate(self.max_batch_bytes).map_err(|e| format!("log: {e}"))?;
        if let Some(a) = &self.advertised_address {
            parse_host_port(a).map_err(|e| format!("advertised_address: {e}"))?;
        }
        if let Some(a) = &self.external_advertised_address {
            parse_host_port(a).map_err(|e| format!("external_advertised_address: {e}"))?;
            if self.external_listen.is_none() {
                return Err("external_advertised_address needs external_listen".into());
            }
        }
        if let Some(v) = &self.quorum_voters {
            let voters = parse_voters(v).map_err(|e| format!("quorum_voters: {e}"))?;
            if !voters.iter().any(|v| v.id == self.node_id) {
                return Err(format!("quorum_voters: this broker's node_id {} is not among the voters ({v}); every broker is a voter", self.node_id));
            }
        }
        if !(500..=600_000).contains(&self.broker_session_timeout_ms) {
            return Err("broker_session_timeout_ms must be between 500 and 600000".into());
        }
        if self.controlled_shutdown_timeout_ms > 600_000 {
            return Err("controlled_shutdown_timeout_ms must be at most 600000".into());
        }
        if !(100..=600_000).contains(&self.replica_lag_max_ms) {
            return Err("replica_lag_max_ms must be between 100 and 600000".into());
        }
        Ok(())
    }

    /// The voters of the metadata quorum; without `quorum_voters`, this
    /// broker alone (port 0: a one-voter quorum opens no listener).
    pub fn voters(&self) -> Vec<Voter> {
        match &self.quorum_voters {
            Some(v) => parse_voters(v).expect("validated"),
            None => vec![Voter { id: self.node_id, host: self.listen.ip().to_string(), port: 0 }],
        }
    }

    /// The address and port clients should use.
    /// The external listener's advertised address, if there is one.
    pub fn external_advertised(&self) -> Option<(String, u16)> {
        let l = self.external_listen?;
        Some(match &self.external_advertised_address {
            Some(a) => parse_host_port(a).expect("validated"),
            None => (l.ip().to_string(), l.port()),
        })
    }

    pub fn advertised(&self) -> (String, u16) {
        match &self.advertised_address {
            Some(a) => parse_host_port(a).expect("validated"),
            None => (self.listen.ip().to_string(), self.listen.port()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_loopback() {
        let c = BrokerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.advertised(), ("127.0.0.1".to_string(), 9092));
    }

    #[test]
    fn toml_overrides_and_rejects_unknown_keys() {
        let c: BrokerConfig = toml::from_str("node_id = 3\n[log]\nsegment_max_bytes = 1048576\n").unwrap();
        assert_eq!((c.node_id, c.log.segment_max_bytes), (3, 1 << 20));
        assert!(toml::from_str::<BrokerConfig>("nodeid = 3").is_err());
    }

    #[test]
    fn bad_values_name_the_setting() {
        let c = BrokerConfig { max_inflight_bytes_per_connection: 10, ..Default::default() };
        assert!(c.validate().unwrap_err().contains("max_inflight_bytes_per_connection"));
        let c = BrokerConfig { advertised_address: Some("nope".into()), ..Default::default() };
        assert!(c.validate().unwrap_err().contains("advertised_address"));
    }
}
