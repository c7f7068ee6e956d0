//! Three real brokers, each a voter of the metadata quorum, on
//! 127.0.0.1 (or broker 1 in a network namespace of its own), restarted
//! on their own data directories and ports: what the chaos and fault
//! tests share.

use std::time::{Duration, Instant};

use shardlog::client::raw::Connection;

use super::disk::SmallDisk;
use super::{reserved_port, temp_dir, Broker, Island};

/// Fields drop in order: the broker before the disk it writes on.
pub struct Node {
    pub broker: Option<Broker>,
    pub ns: Option<String>,
    pub listen: String,
    pub dir: tempfile::TempDir,
    /// The data directory: in `dir`, or on `disk`.
    pub data: std::path::PathBuf,
    /// A filesystem of the node's own, which a test can fill.
    pub disk: Option<SmallDisk>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub voters: String,
    pub fast: bool,
}

impl Cluster {
    /// Three brokers; broker 1 on `island` if given. `fast` shortens the
    /// session and lag timeouts (1.5 s) so chaos rounds are short.
    pub fn start(island: Option<&Island>, fast: bool) -> Cluster {
        Cluster::start_with(island, fast, None)
    }

    /// Like [`Cluster::start`], with each broker's data on a small ext4 of
    /// its own of `disk_mib` if given and if loop devices can be used here
    /// (otherwise in a temporary directory, and this says so).
    pub fn start_with(island: Option<&Island>, fast: bool, disk_mib: Option<u64>) -> Cluster {
        let hosts = match island {
            Some(island) => [(Some(island.ns.clone()), island.inner_ip.clone()), (None, island.outer_ip.clone()), (None, island.outer_ip.clone())],
            None => [(None, "127.0.0.1".to_string()), (None, "127.0.0.1".to_string()), (None, "127.0.0.1".to_string())],
        };
        let voters = hosts.iter().enumerate().map(|(i, (_, ip))| format!("{}@{ip}:{}", i + 1, reserved_port())).collect::<Vec<_>>().join(",");
        let nodes = hosts
            .into_iter()
            .map(|(ns, ip)| {
                let dir = temp_dir();
                let disk = disk_mib.and_then(|mib| SmallDisk::new(mib).map_err(|why| eprintln!("no disk of its own for a broker: {why}")).ok());
                let data = disk.as_ref().map_or_else(|| dir.path().join("data"), |d| d.mnt.join("data"));
                Node { broker: None, ns, listen: format!("{ip}:{}", reserved_port()), dir, data, disk }
            })
            .collect();
        let mut c = Cluster { nodes, voters, fast };
        for i in 0..3 {
            c.start_node(i);
        }
        c
    }

    pub fn start_node(&mut self, i: usize) {
        let id = (i + 1).to_string();
        let mut extra = vec!["--node-id", id.as_str(), "--quorum-voters", self.voters.as_str()];
        if self.fast {
            extra.extend(["--broker-session-timeout-ms", "1500", "--replica-lag-max-ms", "1500"]);
        }
        let n = &self.nodes[i];
        let b = match &n.ns {
            Some(ns) => Broker::start_in_netns(ns, &n.data, &n.listen, &extra),
            None => Broker::start_listening(None, &n.data, 1, &n.listen, &extra),
        };
        self.nodes[i].broker = Some(b);
    }

    pub fn bootstrap(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.listen.clone()).collect()
    }

    pub fn signal(&self, i: usize, sig: i32) {
        let pid = self.nodes[i].broker.as_ref().unwrap().pid();
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    }

    /// Waits until every broker is registered and live, and every
    /// partition has a leader; false after `within`.
    pub fn settle(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(info) = Connection::connect_any(&self.bootstrap()).and_then(|mut c| c.cluster_info(None)) {
                let live = info.brokers.iter().filter(|b| !b.fenced).count() == 3;
                let led = info.topics.iter().all(|t| t.partitions.iter().all(|p| p.leader > 0 && p.isr.len() == 3));
                if live && led {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Creates a topic of three replicas and waits for every partition's
    /// leader and full ISR.
    pub fn create(&self, topic: &str, partitions: u32) {
        let mut admin = Connection::connect_any(&self.bootstrap()).unwrap();
        let created = Instant::now();
        loop {
            match admin.create_topic_with(topic, partitions, 3, &[]) {
                Ok(_) => break,
                Err(e) => assert!(created.elapsed() < Duration::from_secs(30), "could not create the topic: {e}\n{}", self.logs()),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        assert!(self.settle(Duration::from_secs(30)), "the cluster did not settle at start\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        self.nodes.iter().enumerate().map(|(i, n)| format!("--- broker {} ---\n{}", i + 1, n.broker.as_ref().map_or(String::new(), |b| b.log_text()))).collect()
    }
}
