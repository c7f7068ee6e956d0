//! Helpers for black-box tests: start a real broker binary on 127.0.0.1
//! with an ephemeral port and a temp dir, and talk to it with raw frames.
#![allow(dead_code)]

pub mod cluster;
pub mod disk;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flatbuffers::{FlatBufferBuilder, UnionWIPOffset, WIPOffset};
use shardlog::protocol::{self, create_topics, fb, fetch, produce, Acks, DecodeResponse, ErrorCode, RequestBody};
use shardlog::record::BatchBuilder;

pub struct Broker {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The metrics port (`/metrics`, `/health`, `/ready`), if it serves one.
    pub metrics: Option<SocketAddr>,
    pub dir: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
    _tmp: Option<tempfile::TempDir>,
}

/// A port to give a broker before it starts (a quorum voter's address,
/// a listener a restart must find again). Taken below the kernel's
/// ephemeral range, so no listener on port 0 (every other broker of the
/// tests) can be handed it between this check and the broker's bind;
/// a process-wide counter keeps parallel tests apart.
pub fn reserved_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u32>().ok()))
        .unwrap_or(32768);
    let (first, span) = (10_000u32, low.saturating_sub(10_000).max(1000));
    let base = std::process::id() * 97;
    loop {
        let port = first + (base + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
            return port as u16;
        }
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

impl Broker {
    pub fn start(shards: u16) -> Broker {
        let tmp = temp_dir();
        let dir = tmp.path().to_path_buf();
        let mut b = Broker::start_in(&dir, shards, &[]);
        b._tmp = Some(tmp);
        b
    }

    /// Starts a broker on `dir` (kept by the caller across restarts).
    pub fn start_in(dir: &Path, shards: u16, extra: &[&str]) -> Broker {
        Broker::start_with(None, dir, shards, extra)
    }

    /// Like `start_in`, run from `cwd` (so `dir` may be relative to it).
    pub fn start_with(cwd: Option<&Path>, dir: &Path, shards: u16, extra: &[&str]) -> Broker {
        Broker::start_listening(cwd, dir, shards, "127.0.0.1:0", extra)
    }

    /// The broker command line every test starts from.
    fn command(cwd: Option<&Path>, dir: &Path, shards: u16, listen: &str, extra: &[&str]) -> Command {
        Broker::command_in(None, cwd, dir, shards, listen, extra)
    }

    /// The broker command line, run in network namespace `netns` if given.
    fn command_in(netns: Option<&str>, cwd: Option<&Path>, dir: &Path, shards: u16, listen: &str, extra: &[&str]) -> Command {
        let mut cmd = shardlog_in(netns);
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        cmd.args(["broker", "--listen", listen, "--shards", &shards.to_string(), "--data-dir"]).arg(dir);
        // An ephemeral metrics port unless the test names one: brokers of
        // parallel tests must not share the default.
        if !extra.contains(&"--metrics-listen") {
            cmd.args(["--metrics-listen", "127.0.0.1:0"]);
        }
        cmd.args(extra).env("RUST_LOG", "info").stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        cmd
    }

    /// Starts a broker on a chosen address (to restart one on the same port).
    pub fn start_listening(cwd: Option<&Path>, dir: &Path, shards: u16, listen: &str, extra: &[&str]) -> Broker {
        Broker::spawn(Broker::command(cwd, dir, shards, listen, extra), dir)
    }

    /// Starts a broker inside network namespace `netns` (`ip netns exec`
    /// becomes the broker: its pid is the broker's).
    pub fn start_in_netns(netns: &str, dir: &Path, listen: &str, extra: &[&str]) -> Broker {
        Broker::spawn(Broker::command_in(Some(netns), None, dir, 1, listen, extra), dir)
    }

    fn spawn(mut cmd: Command, dir: &Path) -> Broker {
        let mut child = cmd.spawn().expect("start the broker binary");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Some(i) = line.find("listening on ") {
                        let _ = tx.send(line[i + 13..].split_whitespace().next().unwrap_or("").to_string());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        // From here on the child is killed by `Drop`, whatever fails.
        let mut b = Broker { child: Some(child), addr: "127.0.0.1:0".parse().unwrap(), metrics: None, dir: dir.to_path_buf(), log, _tmp: None };
        match rx.recv_timeout(Duration::from_secs(30)).ok().and_then(|a| a.parse().ok()) {
            Some(a) => b.addr = a,
            None => panic!("broker did not start: {}", b.log_text()),
        }
        // Logged before the client listener's line.
        b.metrics = b.log.lock().unwrap().iter().find_map(|l| {
            let i = l.find("serving metrics at http://")?;
            l[i + 26..].split('/').next()?.parse().ok()
        });
        b
    }

    /// Runs a broker that is expected to refuse to start; returns its exit
    /// status and what it printed. Panics if it starts serving instead.
    pub fn refused(dir: &Path, listen: &str, extra: &[&str]) -> (ExitStatus, String) {
        Broker::refused_command(Broker::command(None, dir, 1, listen, extra))
    }

    /// Like [`Broker::refused`], with the whole command line after
    /// `broker --data-dir DIR` given (for flags `refused` sets itself).
    pub fn refused_with(dir: &Path, args: &[&str]) -> (ExitStatus, String) {
        let mut cmd = shardlog_in(None);
        cmd.args(["broker", "--data-dir"]).arg(dir).args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        Broker::refused_command(cmd)
    }

    fn refused_command(mut cmd: Command) -> (ExitStatus, String) {
        let mut child = cmd.spawn().expect("start the broker binary");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                assert!(!err.contains("listening on"), "the broker started: {err}");
                return (status, err);
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let mut err = String::new();
                child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
                panic!("the broker did not exit: {err}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's resident memory, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap();
        kb * 1024
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().unwrap();
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        c.wait().unwrap()
    }

    pub fn kill9(&mut self) {
        let mut c = self.child.take().unwrap();
        c.kill().unwrap();
        c.wait().unwrap();
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts a one-shard broker on `dir`, creates `topic` (1 partition),
/// produces `n` single-message batches with acks=all, and kills the broker
/// with SIGKILL. Returns the path of the partition's first segment file.
pub fn produce_then_kill9(dir: &Path, topic: &str, n: usize) -> PathBuf {
    let mut b = Broker::start_in(dir, 1, &[]);
    let mut c = b.client();
    assert_eq!(c.create_topic(topic, 1), ErrorCode::None);
    for i in 0..n {
        c.produce(topic, 0, &batch_of(&[format!("m{i}").as_bytes()]), Acks::All);
    }
    drop(c);
    b.kill9();
    dir.join(format!("topics/{topic}-0/00000000000000000000.log"))
}

/// The `shardlog` binary, run inside network namespace `netns` if given
/// (`ip netns exec` becomes the program: its pid is shardlog's).
fn shardlog_in(netns: Option<&str>) -> Command {
    match netns {
        None => Command::new(env!("CARGO_BIN_EXE_shardlog")),
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_shardlog")]);
            c
        }
    }
}

/// Runs the `shardlog` command against `b` with `args`, feeding `stdin`.
pub fn cli(b: &Broker, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    cli_in(None, b, args, stdin)
}

/// Like [`cli`], run inside network namespace `netns` if given.
pub fn cli_in(netns: Option<&str>, b: &Broker, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
    let mut cmd = shardlog_in(netns);
    let mut child = cmd
        .args(args)
        .args(["--bootstrap-server", &b.addr.to_string()])
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A response: the verified message bytes and the payload after it.
pub struct Reply {
    pub message: Vec<u8>,
    pub payload: Vec<u8>,
}

impl Reply {
    pub fn response(&self) -> fb::Response<'_> {
        protocol::parse_response(&self.message).expect("the broker sends valid responses")
    }

    /// The body, which must not be a request-level error.
    pub fn body<R: DecodeResponse>(&self) -> R {
        let r = self.response();
        assert_eq!(r.error(), ErrorCode::None, "{:?}", r.error_message());
        R::decode_response(r, bytes::Bytes::copy_from_slice(&self.payload)).expect("a well-formed response")
    }
}

pub struct Client {
    pub stream: TcpStream,
    pub next: u32,
}

/// A request body built by hand, for the requests the protocol's types
/// cannot express (an unknown API, acks outside the protocol's).
pub type Body<'a> = (fb::RequestBody, WIPOffset<UnionWIPOffset>);

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Client { stream, next: 1 }
    }

    /// Encodes a request frame; returns its bytes and correlation id.
    pub fn encode<B: RequestBody>(&mut self, body: &B, payload: &[u8]) -> (Vec<u8>, u32) {
        self.encode_versioned(protocol::API_VERSION, body, payload)
    }

    /// [`Client::encode`] at a given version of the API.
    pub fn encode_versioned<B: RequestBody>(&mut self, version: u16, body: &B, payload: &[u8]) -> (Vec<u8>, u32) {
        let corr = self.next;
        self.next += 1;
        let mut fbb = FlatBufferBuilder::new();
        let mut out = protocol::frame_head(protocol::encode_request(&mut fbb, version, corr, Some("test"), body), payload.len()).to_vec();
        out.extend_from_slice(payload);
        (out, corr)
    }

    /// Encodes a request whose body is built by hand (see [`Body`]).
    pub fn encode_raw(&mut self, payload: &[u8], build: impl FnOnce(&mut FlatBufferBuilder<'static>) -> Body<'static>) -> (Vec<u8>, u32) {
        let corr = self.next;
        self.next += 1;
        let mut fbb = FlatBufferBuilder::new();
        let (kind, body) = build(&mut fbb);
        let cid = fbb.create_string("test");
        let r = fb::Request::create(
            &mut fbb,
            &fb::RequestArgs { api_version: protocol::API_VERSION, correlation_id: corr, client_id: Some(cid), body_type: kind, body: Some(body) },
        );
        fbb.finish(r, None);
        let mut out = protocol::frame_head(fbb.finished_data(), payload.len()).to_vec();
        out.extend_from_slice(payload);
        (out, corr)
    }

    pub fn send<B: RequestBody>(&mut self, body: &B, payload: &[u8]) -> u32 {
        let (bytes, corr) = self.encode(body, payload);
        self.stream.write_all(&bytes).unwrap();
        corr
    }

    /// Reads one response frame; `None` when the broker closed the connection.
    pub fn recv(&mut self) -> Option<Reply> {
        let mut len = [0u8; 4];
        if self.stream.read_exact(&mut len).is_err() {
            return None;
        }
        let len = u32::from_le_bytes(len) as usize;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).ok()?;
        let mlen = u32::from_le_bytes(body[..4].try_into().unwrap()) as usize;
        let message = body[4..4 + mlen].to_vec();
        let payload = body[4 + mlen..].to_vec();
        protocol::parse_response(&message).expect("valid response");
        Some(Reply { message, payload })
    }

    /// Sends a request and reads its answer, whatever it is.
    pub fn call<B: RequestBody>(&mut self, body: &B, payload: &[u8]) -> Reply {
        let corr = self.send(body, payload);
        self.answer(corr)
    }

    /// Sends a hand-built request (see [`Body`]) and reads its answer.
    pub fn call_raw(&mut self, payload: &[u8], build: impl FnOnce(&mut FlatBufferBuilder<'static>) -> Body<'static>) -> Reply {
        let (bytes, corr) = self.encode_raw(payload, build);
        self.stream.write_all(&bytes).unwrap();
        self.answer(corr)
    }

    fn answer(&mut self, corr: u32) -> Reply {
        let r = self.recv().expect("a response");
        assert_eq!(r.response().correlation_id(), corr);
        r
    }

    /// Sends a request and reads its answer's body.
    pub fn request<B: RequestBody, R: DecodeResponse>(&mut self, body: &B) -> R {
        self.call(body, &[]).body()
    }

    pub fn create_topic(&mut self, name: &str, partitions: u32) -> ErrorCode {
        self.create_topic_rf(name, partitions, 1)
    }

    pub fn create_topic_rf(&mut self, name: &str, partitions: u32, rf: u16) -> ErrorCode {
        let topic = create_topics::NewTopic { name: name.to_string(), partitions, replication_factor: rf, configs: Vec::new() };
        let r: create_topics::Response = self.request(&create_topics::Request { topics: vec![topic], timeout_ms: 10_000 });
        r.results[0].error
    }

    pub fn send_produce(&mut self, topic: &str, partition: u32, batch: &[u8], acks: Acks) -> u32 {
        self.send(&produce_request(topic, &[(partition, batch.len())], acks), batch)
    }

    /// [`Client::send_produce`], but `None` if the connection is gone
    /// (a test that kills the broker under a producer).
    pub fn try_send_produce(&mut self, topic: &str, partition: u32, batch: &[u8], acks: Acks) -> Option<u32> {
        let (bytes, corr) = self.encode(&produce_request(topic, &[(partition, batch.len())], acks), batch);
        self.stream.write_all(&bytes).ok().map(|()| corr)
    }

    /// Produces one payload to one partition; returns (error, base offset).
    pub fn produce(&mut self, topic: &str, partition: u32, batch: &[u8], acks: Acks) -> (ErrorCode, i64) {
        let corr = self.send_produce(topic, partition, batch, acks);
        let r: produce::Response = self.answer(corr).body();
        let p = &r.topics[0].partitions[0];
        (p.error, p.base_offset)
    }

    /// Fetches from one partition; returns (error, high watermark, records).
    pub fn fetch(&mut self, topic: &str, partition: u32, offset: i64, max_wait_ms: u32) -> (ErrorCode, i64, Vec<u8>) {
        let req = fetch::Request::one_topic(topic, vec![fetch::Partition { partition, offset, max_bytes: 1 << 20 }], max_wait_ms, 1, 4 << 20);
        let r: fetch::Response<bytes::Bytes> = self.request(&req);
        let p = &r.topics[0].partitions[0];
        (p.error, p.high_watermark, p.records.to_vec())
    }

    /// Every record value from `offset` to the end of the partition.
    pub fn fetch_all_values(&mut self, topic: &str, partition: u32, mut offset: i64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        loop {
            let (err, hw, bytes) = self.fetch(topic, partition, offset, 0);
            assert_eq!(err, ErrorCode::None);
            if bytes.is_empty() {
                assert_eq!(offset, hw);
                return out;
            }
            // A consumer reads compressed batches inflated.
            let bytes = shardlog::record::inflate_all(&bytes).unwrap().unwrap_or(bytes);
            for b in shardlog::record::batches(&bytes) {
                let (start, info) = b.unwrap();
                for r in shardlog::record::RecordIter::new(&bytes[start..]).unwrap() {
                    let r = r.unwrap();
                    if r.offset >= offset {
                        out.push(r.value.unwrap().to_vec());
                    }
                }
                offset = info.next_offset();
            }
        }
    }
}

/// A produce request for one topic whose partitions' records take the
/// given sizes (the records themselves follow the message).
pub fn produce_request(topic: &str, parts: &[(u32, usize)], acks: Acks) -> produce::Request<Len> {
    let partitions = parts.iter().map(|&(partition, records)| produce::Partition { partition, records: Len(records) }).collect();
    produce::Request::one_topic(topic, acks, 10_000, partitions)
}

/// Records known only by their length, for a request whose payload is
/// written separately (or deliberately disagrees with it).
#[derive(Debug, Clone, Copy)]
pub struct Len(pub usize);

impl protocol::Records for Len {
    fn records_len(&self) -> usize {
        self.0
    }
}

/// A produce body built by hand, for acks the protocol's types refuse.
pub fn raw_produce_body(b: &mut FlatBufferBuilder<'static>, topic: &str, parts: &[(u32, u32)], acks: i8) -> Body<'static> {
    let n = b.create_string(topic);
    let ps: Vec<_> =
        parts.iter().map(|&(partition, records_bytes)| fb::ProducePartition::create(b, &fb::ProducePartitionArgs { partition, records_bytes })).collect();
    let ps = b.create_vector(&ps);
    let t = fb::ProduceTopic::create(b, &fb::ProduceTopicArgs { name: Some(n), partitions: Some(ps) });
    let ts = b.create_vector(&[t]);
    let body = fb::ProduceRequest::create(b, &fb::ProduceRequestArgs { acks, timeout_ms: 10_000, topics: Some(ts) });
    (fb::RequestBody::ProduceRequest, body.as_union_value())
}

/// A batch whose record values are `values`.
pub fn batch_of(values: &[&[u8]]) -> Vec<u8> {
    let mut b = BatchBuilder::new(256);
    for v in values {
        b.push(shardlog::time::now_ms(), None, Some(v), &[]);
    }
    b.finish()
}

/// A host of its own: a network namespace joined to this one by a veth
/// pair, whose link the test can cut and heal. Needs root (CI runs as root).
pub struct Island {
    pub ns: String,
    outer: String,
    /// This namespace's end of the link, and the island's.
    pub outer_ip: String,
    pub inner_ip: String,
}

pub fn ip(args: &[&str]) {
    let o = std::process::Command::new("ip").args(args).output().expect("the ip command (iproute2)");
    assert!(o.status.success(), "ip {}: {} (network namespaces need root)", args.join(" "), String::from_utf8_lossy(&o.stderr));
}

impl Island {
    pub fn new() -> Island {
        let pid = std::process::id();
        let (ns, outer, inner) = (format!("slg-{pid}"), format!("slg{pid}o"), format!("slg{pid}i"));
        let net = format!("10.{}.{}", 100 + pid % 100, (pid / 100) % 250);
        let (outer_ip, inner_ip) = (format!("{net}.1"), format!("{net}.2"));
        let _ = std::process::Command::new("ip").args(["netns", "del", &ns]).output();
        ip(&["netns", "add", &ns]);
        let island = Island { ns: ns.clone(), outer: outer.clone(), outer_ip: outer_ip.clone(), inner_ip: inner_ip.clone() };
        ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
        ip(&["link", "set", &inner, "netns", &ns]);
        ip(&["addr", "add", &format!("{outer_ip}/24"), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        ip(&["netns", "exec", &ns, "ip", "addr", "add", &format!("{inner_ip}/24"), "dev", &inner]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        island
    }

    pub fn cut(&self) {
        ip(&["link", "set", &self.outer, "down"]);
    }

    pub fn heal(&self) {
        ip(&["link", "set", &self.outer, "up"]);
    }
}

impl Drop for Island {
    fn drop(&mut self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = std::process::Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A GET of `path` on an HTTP port: the status and the body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_request(addr, format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
}

/// Sends `request` as is and reads the answer to the end: its status
/// (0 if none came, or nothing listens) and body.
pub fn http_request(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else { return (0, String::new()) };
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    if s.write_all(request).is_err() {
        return (0, String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// One sample's value from Prometheus text: the line that starts with
/// `series` (a name and its labels, as rendered) and a space.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}
