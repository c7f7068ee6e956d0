//! `shardlog broker`: flags and `SHARDLOG_*` variables over a TOML file
//! over the defaults.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::config::BrokerConfig;

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Directory for segments and metadata [default: ./data]
    #[arg(long, env = "SHARDLOG_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to accept clients on [default: 127.0.0.1:9092]
    #[arg(long, env = "SHARDLOG_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address of the HTTP port serving /metrics (Prometheus), /health and
    /// /ready, or 'off' [default: 127.0.0.1:9644]
    #[arg(long, env = "SHARDLOG_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// HOST:PORT clients are told to use [default: the listen address]
    #[arg(long, env = "SHARDLOG_ADVERTISED_ADDRESS")]
    pub advertised_address: Option<String>,
    /// A second address to accept clients from outside the brokers' network
    /// on (a container's published port); they are told every broker's
    /// external advertised address
    #[arg(long, env = "SHARDLOG_EXTERNAL_LISTEN")]
    pub external_listen: Option<SocketAddr>,
    /// HOST:PORT clients of the external listener are told to use
    /// [default: the external listen address]
    #[arg(long, env = "SHARDLOG_EXTERNAL_ADVERTISED_ADDRESS")]
    pub external_advertised_address: Option<String>,
    /// Executors, each pinned to a core; 0 means one per online core [default: 0]
    #[arg(long, env = "SHARDLOG_SHARDS")]
    pub shards: Option<u16>,
    /// This broker's id in the cluster [default: 0]
    #[arg(long, env = "SHARDLOG_NODE_ID")]
    pub node_id: Option<i32>,
    /// The metadata quorum, every broker of the cluster: ID@HOST:PORT,...
    /// with each voter's quorum listener (a port apart from clients').
    /// Unset: a one-voter quorum of this broker alone
    #[arg(long, env = "SHARDLOG_QUORUM_VOTERS")]
    pub quorum_voters: Option<String>,
    /// Fence a broker not heard from for this long, in milliseconds;
    /// its partitions get new leaders [default: 2500]
    #[arg(long, env = "SHARDLOG_BROKER_SESSION_TIMEOUT_MS")]
    pub broker_session_timeout_ms: Option<u64>,
    /// A follower that has not caught up with its leader for this long
    /// leaves the in-sync replicas, in milliseconds [default: 3000]
    #[arg(long, env = "SHARDLOG_REPLICA_LAG_MAX_MS")]
    pub replica_lag_max_ms: Option<u64>,
    /// A TOML file with any setting of the broker (see README.md)
    #[arg(long, env = "SHARDLOG_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest request frame accepted, in bytes
    #[arg(long, env = "SHARDLOG_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Most client connections
    #[arg(long, env = "SHARDLOG_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Upper bound on a fetch's long-poll wait, in milliseconds
    #[arg(long, env = "SHARDLOG_FETCH_WAIT_MAX_MS")]
    pub fetch_wait_max_ms: Option<u64>,
    /// Request bytes one shard buffers for all its connections together
    #[arg(long, env = "SHARDLOG_MAX_BUFFERED_REQUEST_BYTES_PER_SHARD")]
    pub max_buffered_request_bytes_per_shard: Option<usize>,
    /// Accept a data directory on tmpfs or ramfs, giving up durability:
    /// a reboot erases acknowledged data
    #[arg(long, env = "SHARDLOG_ALLOW_NONDURABLE_DATA_DIR")]
    pub allow_nondurable_data_dir: bool,
    /// Create the unknown topics a Kafka client's Metadata request names
    /// (one partition, one replica), as Kafka's auto.create.topics.enable
    #[arg(long, env = "SHARDLOG_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: bool,
    /// Forget an idempotent producer in a partition once its last batch
    /// there is this old, as Kafka's producer.id.expiration.ms
    #[arg(long, env = "SHARDLOG_PRODUCER_ID_EXPIRATION_MS")]
    pub producer_id_expiration_ms: Option<u64>,
    /// TLS on the client listeners: the certificate chain (PEM); Kafka's
    /// ssl.keystore
    #[arg(long, env = "SHARDLOG_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, env = "SHARDLOG_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by these authorities (PEM);
    /// Kafka's ssl.client.auth=required with ssl.truststore
    #[arg(long, env = "SHARDLOG_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Mutual TLS between brokers (quorum, replication): this broker's certificate (PEM)
    #[arg(long, env = "SHARDLOG_PEER_TLS_CERT")]
    pub peer_tls_cert: Option<PathBuf>,
    /// The private key of --peer-tls-cert (PEM)
    #[arg(long, env = "SHARDLOG_PEER_TLS_KEY")]
    pub peer_tls_key: Option<PathBuf>,
    /// The authority that signed every broker's peer certificate (PEM)
    #[arg(long, env = "SHARDLOG_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
    /// A TLS handshake must finish within this long of the connection, in
    /// milliseconds [default: 10000]
    #[arg(long, env = "SHARDLOG_TLS_HANDSHAKE_TIMEOUT_MS")]
    pub tls_handshake_timeout_ms: Option<u64>,
    /// SASL mechanisms clients must authenticate with: SCRAM-SHA-256,SCRAM-SHA-512;
    /// Kafka's sasl.enabled.mechanisms
    #[arg(long, env = "SHARDLOG_SASL_MECHANISMS")]
    pub sasl_mechanisms: Option<String>,
    /// Create this user at start if the cluster does not have it, with the
    /// password in SHARDLOG_SASL_BOOTSTRAP_PASSWORD (the first administrator);
    /// Kafka's kafka-storage format --add-scram
    #[arg(long, env = "SHARDLOG_SASL_BOOTSTRAP_USER")]
    pub sasl_bootstrap_user: Option<String>,
    #[arg(long, env = "SHARDLOG_SASL_BOOTSTRAP_PASSWORD", hide = true, hide_env_values = true)]
    pub sasl_bootstrap_password: Option<String>,
    /// 'acl' to check every request against the ACLs; Kafka's authorizer.class.name
    #[arg(long, env = "SHARDLOG_AUTHORIZER")]
    pub authorizer: Option<String>,
    /// Principals allowed everything, comma-separated (User:admin); Kafka's super.users
    #[arg(long, env = "SHARDLOG_SUPER_USERS")]
    pub super_users: Option<String>,
    /// Start more shards than this host has online cores (each shard is an
    /// executor pinned to a core, so extra shards share cores and slow
    /// each other down)
    #[arg(long, env = "SHARDLOG_ALLOW_MORE_SHARDS_THAN_CORES")]
    pub allow_more_shards_than_cores: bool,
}

impl BrokerArgs {
    /// The configuration these arguments describe.
    pub fn config(&self) -> Result<BrokerConfig, String> {
        let mut c = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
                toml::from_str(&text).map_err(|e| format!("config file {}: {e}", path.display()))?
            }
            None => BrokerConfig::default(),
        };
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.external_listen {
            c.external_listen = Some(v);
        }
        if let Some(v) = &self.metrics_listen {
            c.metrics_listen = v.clone();
        }
        if let Some(v) = &self.external_advertised_address {
            c.external_advertised_address = Some(v.clone());
        }
        if let Some(v) = &self.advertised_address {
            c.advertised_address = Some(v.clone());
        }
        if let Some(v) = self.shards {
            c.shards = v;
        }
        if let Some(v) = self.node_id {
            c.node_id = v;
        }
        if let Some(v) = &self.quorum_voters {
            c.quorum_voters = Some(v.clone());
        }
        if let Some(v) = self.broker_session_timeout_ms {
            c.broker_session_timeout_ms = v;
        }
        if let Some(v) = self.replica_lag_max_ms {
            c.replica_lag_max_ms = v;
        }
        if let Some(v) = self.max_frame_bytes {
            c.max_frame_bytes = v;
        }
        if let Some(v) = self.max_connections {
            c.max_connections = v;
        }
        if let Some(v) = self.fetch_wait_max_ms {
            c.fetch_wait_max_ms = v;
        }
        if let Some(v) = self.max_buffered_request_bytes_per_shard {
            c.max_buffered_request_bytes_per_shard = v;
        }
        if self.allow_nondurable_data_dir {
            c.allow_nondurable_data_dir = true;
        }
        if self.allow_more_shards_than_cores {
            c.allow_more_shards_than_cores = true;
        }
        if self.auto_create_topics {
            c.auto_create_topics = true;
        }
        if let Some(v) = self.producer_id_expiration_ms {
            c.producer_id_expiration_ms = v;
        }
        for (v, to) in [
            (&self.tls_cert, &mut c.tls_cert),
            (&self.tls_key, &mut c.tls_key),
            (&self.tls_client_ca, &mut c.tls_client_ca),
            (&self.peer_tls_cert, &mut c.peer_tls_cert),
            (&self.peer_tls_key, &mut c.peer_tls_key),
            (&self.peer_tls_ca, &mut c.peer_tls_ca),
        ] {
            if let Some(v) = v {
                *to = Some(v.clone());
            }
        }
        for (v, to) in [
            (&self.sasl_bootstrap_user, &mut c.sasl_bootstrap_user),
            (&self.sasl_bootstrap_password, &mut c.sasl_bootstrap_password),
            (&self.sasl_mechanisms, &mut c.sasl_mechanisms),
            (&self.authorizer, &mut c.authorizer),
            (&self.super_users, &mut c.super_users),
        ] {
            if let Some(v) = v {
                *to = v.clone();
            }
        }
        if let Some(v) = self.tls_handshake_timeout_ms {
            c.tls_handshake_timeout_ms = v;
        }
        c.validate()?;
        Ok(c)
    }
}

pub fn run(args: BrokerArgs) -> i32 {
    let config = match args.config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardlog broker: {e}");
            return 2;
        }
    };
    match crate::broker::run(config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shardlog broker: {e}");
            1
        }
    }
}
