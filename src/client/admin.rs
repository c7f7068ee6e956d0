//! Topic administration and cluster information.

use super::raw::{BrokerMeta, ClientError, ClusterInfo, Connection, TopicMeta};

/// Creates, deletes, lists and describes topics.
///
/// ```
/// # // Runs against an in-process broker when the broker is built; with
/// # // the client feature alone it is compiled, not run.
/// # fn example(addr: &str) {
/// use shardlog::client::admin::Admin;
///
/// let mut admin = Admin::connect(&[addr]).unwrap();
/// admin.create_topic("events", 4, 1, &[("retention.ms", "86400000")]).unwrap();
/// assert!(admin.list_topics().unwrap().contains(&"events".to_string()));
/// let t = admin.describe_topic("events").unwrap().unwrap();
/// assert_eq!(t.partitions.len(), 4);
/// # }
/// # #[cfg(feature = "broker")] {
/// # let dir = tempfile::tempdir_in("target").unwrap();
/// # let config = shardlog::config::BrokerConfig { data_dir: dir.path().into(), listen: "127.0.0.1:0".parse().unwrap(), metrics_listen: "127.0.0.1:0".into(), shards: 1, ..Default::default() };
/// # let broker = shardlog::broker::start(config).unwrap();
/// # example(&broker.addr().to_string());
/// # }
/// ```
pub struct Admin {
    conn: Connection,
}

impl Admin {
    /// Connects to the first of `bootstrap` that answers.
    pub fn connect(bootstrap: &[&str]) -> Result<Self, ClientError> {
        Ok(Admin { conn: Connection::connect_any(bootstrap)? })
    }

    /// [`Admin::connect`] with TLS and SASL.
    pub fn connect_with(bootstrap: &[&str], security: &crate::tls::ClientSecurity) -> Result<Self, ClientError> {
        Ok(Admin { conn: Connection::connect_any_with(bootstrap, security)? })
    }

    /// Creates a topic; `Ok(false)` if it already existed.
    pub fn create_topic(&mut self, name: &str, partitions: u32, replication_factor: u16, configs: &[(&str, &str)]) -> Result<bool, ClientError> {
        let configs: Vec<(String, String)> = configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.conn.create_topic_with(name, partitions, replication_factor, &configs)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&mut self, name: &str) -> Result<(), ClientError> {
        self.conn.delete_topic(name)
    }

    /// The names of every topic (internal ones are not listed).
    pub fn list_topics(&mut self) -> Result<Vec<String>, ClientError> {
        self.conn.list_topics()
    }

    /// A topic's partitions, placement and settings; `None` if it does not exist.
    pub fn describe_topic(&mut self, name: &str) -> Result<Option<TopicMeta>, ClientError> {
        let (_, topics) = self.conn.metadata(Some(&[name]))?;
        Ok(topics.into_iter().find(|t| t.error == crate::protocol::ErrorCode::None))
    }

    /// Brokers (with their shards) and every topic.
    pub fn cluster(&mut self) -> Result<(Vec<BrokerMeta>, Vec<TopicMeta>), ClientError> {
        self.conn.metadata(None)
    }

    /// The metadata quorum (voters, controller), brokers and placement.
    pub fn cluster_info(&mut self) -> Result<ClusterInfo, ClientError> {
        self.conn.cluster_info(None)
    }
}
