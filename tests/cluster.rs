//! Three real brokers on 127.0.0.1 with the embedded metadata quorum: the
//! seed's walkthrough across them, one view of the cluster through each,
//! and the quorum surviving the death of its controller.

mod common;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{cli_in, temp_dir, Broker, Island};

struct Cluster {
    brokers: Vec<Option<Broker>>,
    dirs: Vec<tempfile::TempDir>,
    voters: String,
    /// Where each broker runs: a network namespace (or this one) and the
    /// address it listens on there.
    hosts: Vec<(Option<String>, String)>,
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

impl Cluster {
    fn start() -> Cluster {
        Cluster::start_on((0..3).map(|_| (None, "127.0.0.1".to_string())).collect())
    }

    fn start_on(hosts: Vec<(Option<String>, String)>) -> Cluster {
        let voters = hosts.iter().enumerate().map(|(i, (_, ip))| format!("{}@{ip}:{}", i + 1, common::reserved_port())).collect::<Vec<_>>().join(",");
        let dirs: Vec<_> = (0..3).map(|_| temp_dir()).collect();
        let mut c = Cluster { brokers: Vec::new(), dirs, voters, hosts };
        for i in 0..3 {
            let listen = format!("{}:{}", c.hosts[i].1, common::reserved_port());
            let b = c.start_broker(i, &listen);
            c.brokers.push(Some(b));
        }
        c.wait_for(0, "every broker registered", |info| info.matches("\tlive").count() == 3);
        c
    }

    fn start_broker(&self, i: usize, listen: &str) -> Broker {
        let id = (i + 1).to_string();
        let extra = ["--node-id", id.as_str(), "--quorum-voters", self.voters.as_str(), "--broker-session-timeout-ms", "2000"];
        match &self.hosts[i].0 {
            Some(ns) => Broker::start_in_netns(ns, self.dirs[i].path(), listen, &extra),
            None => Broker::start_listening(None, self.dirs[i].path(), 1, listen, &extra),
        }
    }

    fn broker(&self, i: usize) -> &Broker {
        self.brokers[i].as_ref().expect("a running broker")
    }

    /// Runs the CLI against broker `i`, from inside its network namespace.
    fn cli(&self, i: usize, args: &[&str], stdin: Option<&[u8]>) -> Output {
        cli_in(self.hosts[i].0.as_deref(), self.broker(i), args, stdin)
    }

    fn info(&self, i: usize) -> String {
        let o = self.cli(i, &["cluster", "info"], None);
        assert!(o.status.success(), "cluster info through broker {}: {}\nits log:\n{}", i + 1, text(&o), self.broker(i).log_text());
        String::from_utf8(o.stdout).unwrap()
    }

    /// Polls `cluster info` through broker `i` until `ok` holds.
    fn wait_for(&self, i: usize, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = self.info(i);
            if ok(&info) {
                return info;
            }
            assert!(Instant::now() < deadline, "waited 30 s for {what}; cluster info through broker {}:\n{info}", i + 1);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The node id of the controller, as broker `i` says.
    fn controller(&self, i: usize) -> usize {
        let info = self.wait_for(i, "a controller", |s| s.contains("\tcontroller"));
        let line = info.lines().find(|l| l.ends_with("\tcontroller")).unwrap();
        line.trim().strip_prefix("node ").unwrap().split('\t').next().unwrap().parse().unwrap()
    }
}

const SEED_LINES: &str = "123\n测试数据\ntest data\n阿牛\n";

#[test]
fn the_seed_walkthrough_runs_across_three_brokers() {
    let c = Cluster::start();
    let o = c.cli(0, &["topics", "create", "--topic", "test"], None);
    assert!(o.status.success(), "{}", text(&o));
    // Right after the create returns, every broker describes it the same.
    let describe = |i| {
        let o = c.cli(i, &["topics", "describe", "--topic", "test"], None);
        assert!(o.status.success(), "describe through broker {}: {}", i + 1, text(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    let first = describe(0);
    assert!(first.contains("Partition: 0"), "{first}");
    assert_eq!(describe(1), first);
    assert_eq!(describe(2), first);

    let o = c.cli(0, &["produce", "--topic", "test"], Some(SEED_LINES.as_bytes()));
    assert!(o.status.success(), "{}", text(&o));
    for i in [1, 2] {
        let o = c.cli(i, &["consume", "--topic", "test", "--from-beginning", "--max-messages", "4"], None);
        assert!(o.status.success(), "consume through broker {}: {}", i + 1, text(&o));
        assert_eq!(String::from_utf8(o.stdout).unwrap(), SEED_LINES, "through broker {}", i + 1);
    }

    // A group's coordinator is found through whichever broker a consumer
    // asks: a consumer through broker 3 commits, one through broker 2 goes on.
    let group = |i, want: &str| {
        let o = c.cli(i, &["consume", "--topic", "test", "--group", "seed", "--from-beginning", "--max-messages", "2"], None);
        assert!(o.status.success(), "group consume through broker {}: {}", i + 1, text(&o));
        assert_eq!(String::from_utf8(o.stdout).unwrap(), want, "through broker {}", i + 1);
    };
    group(2, "123\n测试数据\n");
    group(1, "test data\n阿牛\n");

    // A delete through another broker removes the topic everywhere,
    // partitions included, wherever they lived.
    let o = c.cli(2, &["topics", "create", "--topic", "gone", "--partitions", "3"], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = c.cli(1, &["topics", "delete", "--topic", "gone"], None);
    assert!(o.status.success(), "{}", text(&o));
    for i in 0..3 {
        let o = c.cli(i, &["topics", "describe", "--topic", "gone"], None);
        assert!(!o.status.success(), "deleted, yet described through broker {}", i + 1);
        let left: Vec<_> =
            std::fs::read_dir(c.dirs[i].path().join("topics")).unwrap().flatten().filter(|e| e.file_name().to_string_lossy().starts_with("gone-")).collect();
        assert!(left.is_empty(), "broker {} kept {left:?}", i + 1);
    }

    // A topic is usable through every leader as soon as its create
    // returned through any broker, though their copies apply it later.
    for i in 0..30 {
        let name = format!("fresh{i}");
        let o = c.cli(i % 3, &["topics", "create", "--topic", &name, "--partitions", "3"], None);
        assert!(o.status.success(), "{}", text(&o));
        let o = c.cli(i % 3, &["produce", "--topic", &name], Some(b"a\nb\nc\n"));
        assert!(o.status.success(), "produce right after the create through broker {}: {}", i % 3 + 1, text(&o));
    }

    // Every broker shows the same voters, brokers and placement.
    let info = c.info(0);
    assert!(info.contains("test\tpartitions: 1"), "{info}");
    for v in c.voters.split(',') {
        let (id, addr) = v.split_once('@').unwrap();
        assert!(info.contains(&format!("node {id}\t{addr}")), "voter {v} missing:\n{info}");
    }
    assert_eq!(c.info(1), info);
    assert_eq!(c.info(2), info);
}

#[test]
fn the_quorum_outlives_its_controller_and_a_restarted_broker_catches_up() {
    let mut c = Cluster::start();
    let o = c.cli(0, &["topics", "create", "--topic", "rf3", "--partitions", "3", "--replication-factor", "3"], None);
    assert!(o.status.success(), "{}", text(&o));
    let dead = c.controller(0) - 1;
    let survivor = (dead + 1) % 3;
    let addr = c.broker(dead).addr;
    c.brokers[dead].as_mut().unwrap().kill9();
    c.brokers[dead] = None;

    // A create through a survivor commits once the others elect a leader.
    let killed = Instant::now();
    let created = loop {
        let o = c.cli(survivor, &["topics", "create", "--topic", "after", "--partitions", "4"], None);
        if o.status.success() {
            break killed.elapsed();
        }
        assert!(killed.elapsed() < Duration::from_secs(5), "no create within 5 s of killing the controller: {}", text(&o));
        std::thread::sleep(Duration::from_millis(50));
    };
    eprintln!("a topic create succeeded {} ms after SIGKILL of the controller", created.as_millis());

    // The dead broker is fenced: it is marked so and leads nothing.
    let dead_id = dead + 1;
    let info = c.wait_for(survivor, "the dead broker fenced", |s| s.contains(&format!("node {dead_id}\t{addr}\tshards: 1\tfenced")));
    assert!(!info.contains(&format!("@node{dead_id}/")), "a fenced broker still leads a partition:\n{info}");
    // Its copies of the three-replica topic are out of sync: every
    // partition of it is under-replicated, led by an in-sync survivor.
    let rf3 = info.lines().find(|l| l.trim_start().starts_with("rf3\t")).expect("rf3 listed");
    assert_eq!(rf3.matches("under-replicated").count(), 3, "{rf3}");
    let o = c.cli(survivor, &["topics", "describe", "--topic", "rf3"], None);
    let described = String::from_utf8_lossy(&o.stdout).to_string();
    for line in described.lines().filter(|l| l.contains("Partition:")) {
        let isr = line.split("Isr: ").nth(1).unwrap().split('\t').next().unwrap();
        assert!(!isr.split(',').any(|b| b == dead_id.to_string()) && isr.split(',').count() == 2, "{line}");
        // The leader reports each replica's lag (the dead one's as of its
        // last fetch).
        let lag = line.split("Lag: ").nth(1).unwrap_or_else(|| panic!("no lag in {line}"));
        assert_eq!(lag.split(',').count(), 3, "{line}");
    }

    // Restarted on its data directory, it rejoins, catches up and serves.
    let restarted = c.start_broker(dead, &addr.to_string());
    c.brokers[dead] = Some(restarted);
    c.wait_for(dead, "the restarted broker to catch up", |s| s.contains("after\tpartitions: 4") && s.matches("\tlive").count() == 3);
    let o = c.cli(dead, &["topics", "describe", "--topic", "after"], None);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_broker_cut_off_from_the_others_cannot_commit_and_catches_up_when_healed() {
    let island = Island::new();
    let c = Cluster::start_on(vec![(Some(island.ns.clone()), island.inner_ip.clone()), (None, island.outer_ip.clone()), (None, island.outer_ip.clone())]);
    let o = c.cli(0, &["topics", "create", "--topic", "before"], None);
    assert!(o.status.success(), "a create through the island before the cut: {}", text(&o));

    island.cut();
    // The island alone is a minority: its create is never committed.
    let o = c.cli(0, &["topics", "create", "--topic", "during"], None);
    assert!(!o.status.success(), "a create through a broker cut off from the quorum succeeded");
    assert!(text(&o).contains("not committed"), "{}", text(&o));
    eprintln!("through the island while cut off: {}", text(&o).trim());
    // The other two are a majority: they elect a controller and commit.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let o = c.cli(1, &["topics", "create", "--topic", "majority"], None);
        if o.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the majority could not commit while the island was cut off: {}", text(&o));
        std::thread::sleep(Duration::from_millis(100));
    }
    let listed = c.cli(2, &["topics", "list"], None);
    assert_eq!(String::from_utf8_lossy(&listed.stdout), "before\nmajority\n", "only committed changes are seen");

    island.heal();
    c.wait_for(0, "the island to catch up", |s| s.contains("majority\tpartitions: 1"));
    let o = c.cli(0, &["topics", "describe", "--topic", "majority"], None);
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn a_group_keeps_its_committed_offsets_across_the_death_of_its_coordinators_broker() {
    let mut c = Cluster::start();
    let o = c.cli(0, &["topics", "create", "--topic", "orders"], None);
    assert!(o.status.success(), "{}", text(&o));
    let o = c.cli(0, &["produce", "--topic", "orders"], Some(SEED_LINES.as_bytes()));
    assert!(o.status.success(), "{}", text(&o));
    let consume = |c: &Cluster, i: usize| {
        c.cli(i, &["consume", "--topic", "orders", "--group", "g", "--from-beginning", "--max-messages", "2", "--timeout-ms", "20000"], None)
    };
    let o = consume(&c, 0);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "123\n测试数据\n", "{}", text(&o));

    // The coordinator's broker dies and comes back on its data directory.
    let mut conn = shardlog::client::raw::Connection::connect(c.broker(1).addr).unwrap();
    let coordinator = conn.find_coordinator("g").unwrap().expect("a coordinator");
    let dead = (0..3).find(|&i| c.broker(i).addr.to_string() == coordinator).expect("the coordinator is one of the brokers");
    let addr = c.broker(dead).addr;
    c.brokers[dead].as_mut().unwrap().kill9();
    c.brokers[dead] = None;
    let dead_id = dead + 1;
    c.wait_for((dead + 1) % 3, "the coordinator's broker fenced", |s| s.contains(&format!("node {dead_id}\t{addr}\tshards: 1\tfenced")));
    let restarted = c.start_broker(dead, &addr.to_string());
    c.brokers[dead] = Some(restarted);

    // The group goes on after what it committed, through another broker.
    let o = consume(&c, (dead + 2) % 3);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "test data\n阿牛\n", "{}", text(&o));
}
