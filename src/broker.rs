//! The broker process: checks the host, starts one pinned executor per
//! shard, and stops them cleanly on SIGTERM or SIGINT.
//!
//! Startup order: shard 0 binds the listen address first (so a port of 0
//! resolves to one real port), then every other shard binds that same
//! address with SO_REUSEPORT; only then is the address logged.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::channel::oneshot;

use crate::cluster::log_store::LogStore;
use crate::cluster::metadata::{BrokerMeta, Metadata};
use crate::cluster::service::{self, Service, ServiceConfig};
use crate::config::BrokerConfig;
use crate::net::Listener;
use crate::rt;
use crate::server::connection;
use crate::shard::{self, mesh, Shard, ShardMsg};
use crate::tls::server as tls;

/// Memory each executor registers with io_uring for direct I/O (glommio
/// falls back to unregistered buffers when it is used up).
pub const IO_MEMORY_BYTES_PER_SHARD: usize = 1 << 20;
/// glommio registers that memory in each of its three rings (main,
/// latency, poll), and the kernel counts every registration against
/// RLIMIT_MEMLOCK on its own.
pub const IO_URING_RINGS_PER_SHARD: u64 = 3;
/// CAP_IPC_LOCK: a process that has it is not held to RLIMIT_MEMLOCK.
const CAP_IPC_LOCK: u32 = 14;

/// Why the broker could not start, said so an operator can act on it.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("io_uring is not available: {0}")]
    IoUring(String),
    #[error("locked memory limit too low: {0}")]
    MemLock(String),
    #[error("data directory {dir}: {reason}")]
    DataDir { dir: String, reason: String },
    #[error("could not listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("shard {shard} failed to start: {reason}")]
    Shard { shard: u16, reason: String },
}

/// Refuses more shards than online cores unless `allow` says otherwise:
/// every shard is an executor pinned to a core, and two on one core take
/// turns, each stalling the other's polling and I/O (Seastar refuses the
/// same).
pub fn check_shards_fit_cores(shards: u16, cores: usize, allow: bool) -> Result<(), StartError> {
    if usize::from(shards) > cores && !allow {
        return Err(StartError::Config(format!(
            "--shards {shards} is more than this host's {cores} online core(s); each shard is an executor pinned to a core of its own. \
             Use --shards {cores} or fewer (0 means one per core), or add --allow-more-shards-than-cores to share cores anyway"
        )));
    }
    Ok(())
}

/// Checks that this process may use io_uring, since glommio reports a
/// refusal (a seccomp filter, `kernel.io_uring_disabled`) as "kernel too old".
pub fn check_io_uring() -> Result<(), StartError> {
    // io_uring_params is 120 bytes; zeroed asks for defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes `params`, which outlives the call.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: `fd` is a descriptor this function just opened.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    Err(StartError::IoUring(match err.raw_os_error() {
        Some(libc::EPERM) => "the kernel refused io_uring_setup (EPERM): a seccomp profile or the sysctl kernel.io_uring_disabled blocks it. \
             In Docker, run with the profile this project ships: --security-opt seccomp=docker/seccomp.json"
            .into(),
        Some(libc::ENOSYS) => "this kernel has no io_uring (Linux 5.8 or newer is needed)".into(),
        _ => format!("io_uring_setup failed: {err}"),
    }))
}

/// The locked memory `shards` executors register with io_uring.
pub fn memlock_needed(shards: u16) -> u64 {
    // Page-rounded buffers, plus a page per ring for what older kernels
    // also count (the rings themselves).
    (IO_URING_RINGS_PER_SHARD * (IO_MEMORY_BYTES_PER_SHARD as u64 + 4096)) * u64::from(shards)
}

/// Whether this process has CAP_IPC_LOCK in its effective set (root
/// outside a container): the kernel then counts nothing against the limit.
fn can_lock_any_memory() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_IPC_LOCK) != 0)
}

/// Raises the soft RLIMIT_MEMLOCK to the hard one and checks it covers what
/// glommio registers with io_uring for every shard, so a broker that
/// starts gets its registered buffers (glommio only warns when the kernel
/// refuses them).
pub fn check_memlock(shards: u16) -> Result<(), StartError> {
    if can_lock_any_memory() {
        return Ok(());
    }
    let need = memlock_needed(shards);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write `lim`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) != 0 {
            return Ok(());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim);
            libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim);
        }
    }
    if lim.rlim_cur != libc::RLIM_INFINITY && lim.rlim_cur < need {
        return Err(StartError::MemLock(format!(
            "{} KiB may be locked, {shards} shard(s) need {} KiB (each shard registers {} KiB of I/O buffers in each of its {} io_uring rings). \
             Raise the limit (ulimit -l; `ulimits: memlock:` in compose, where the engine allows it) or use fewer shards (--shards). \
             The kernel counts the locked memory of every process of one user together: brokers on one host should run as different users",
            lim.rlim_cur / 1024,
            need / 1024,
            IO_MEMORY_BYTES_PER_SHARD / 1024,
            IO_URING_RINGS_PER_SHARD
        )));
    }
    Ok(())
}

/// Filesystems whose contents a reboot erases (`statfs` magic numbers).
const TMPFS_MAGIC: i64 = 0x0102_1994;
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The name of a filesystem that does not survive a reboot, if `dir` is on one.
fn volatile_filesystem(dir: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statfs fills `st`, which outlives the call; `path` is a valid C string.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    match st.f_type as i64 {
        TMPFS_MAGIC => Some("tmpfs"),
        RAMFS_MAGIC => Some("ramfs"),
        _ => None,
    }
}

/// Creates the data directory (saying so when it did not exist), refuses
/// one that a reboot would erase unless `allow_nondurable` says otherwise,
/// takes its lock, checks O_DIRECT works on it and loads the metadata
/// quorum's log (a new one for `voters` on first start). The returned file
/// holds the lock.
pub fn prepare_data_dir(dir: &Path, allow_nondurable: bool, voters: &[u64]) -> Result<(std::fs::File, LogStore), StartError> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;
    let bad = |reason: String| StartError::DataDir { dir: dir.display().to_string(), reason };
    let existed = dir.exists();
    std::fs::create_dir_all(dir.join("meta")).map_err(|e| bad(format!("cannot create it: {e}")))?;
    std::fs::create_dir_all(dir.join("topics")).map_err(|e| bad(format!("cannot create it: {e}")))?;
    if !existed {
        tracing::info!(data_dir = %dir.display(), "created the data directory (it did not exist)");
    }
    if let Some(fs) = volatile_filesystem(dir) {
        if !allow_nondurable {
            return Err(bad(format!(
                "it is on {fs}, which a reboot erases: acks=all would promise durability the host cannot keep. \
                 Use a disk-backed filesystem (ext4, XFS), or pass --allow-nondurable-data-dir to accept losing the data"
            )));
        }
        tracing::warn!(data_dir = %dir.display(), filesystem = fs, "the data directory is on {fs}: data is not durable and a reboot erases it (--allow-nondurable-data-dir)");
    }
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join(".lock")).map_err(|e| bad(e.to_string()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(bad("another broker is using it (its .lock is held)".into()));
    }
    check_data_format(dir)?;
    let probe = dir.join(".direct-io-probe");
    let r = std::fs::OpenOptions::new().create(true).truncate(true).write(true).custom_flags(libc::O_DIRECT).open(&probe);
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = r {
        return Err(bad(format!("its filesystem does not support O_DIRECT ({e}); use a disk-backed filesystem such as ext4 or XFS")));
    }
    let path = service::store_path(dir);
    let store = match std::fs::read(&path) {
        Ok(b) => LogStore::decode(&b).map_err(|e| bad(format!("{} is damaged: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => LogStore::new(voters.to_vec()),
        Err(e) => return Err(bad(format!("cannot read {}: {e}", path.display()))),
    };
    Ok((lock, store))
}

/// The format of what a data directory holds (record batches, logs,
/// indexes, the quorum's log), recorded in its `format` file. A release
/// that changes any of them raises it; a broker refuses a directory in
/// another format rather than misread it.
///
/// 1: shardlog's own record batch (little-endian, CRC-32). 2: Kafka's
/// record batch v2 (big-endian, CRC-32C).
pub const DATA_FORMAT: u32 = 2;

/// The `format` file's first line, before the number.
const FORMAT_HEADER: &str = "shardlog-data-format";

/// Checks the data directory's `format` file against [`DATA_FORMAT`], or
/// writes it on a new directory. A directory that holds data but no
/// `format` file is from before the file existed, so its data is format 1.
pub fn check_data_format(dir: &Path) -> Result<(), StartError> {
    let bad = |reason: String| StartError::DataDir { dir: dir.display().to_string(), reason };
    let path = dir.join("format");
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => text.lines().next().and_then(|l| l.strip_prefix(FORMAT_HEADER)).and_then(|n| n.trim().parse::<u32>().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && holds_data(dir) => Some(1),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = dir.join("format.tmp");
            let written = std::fs::write(&tmp, format!("{FORMAT_HEADER} {DATA_FORMAT}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path))
                .and_then(|()| std::fs::File::open(dir)?.sync_all());
            return written.map_err(|e| bad(format!("cannot write {}: {e}", path.display())));
        }
        Err(e) => return Err(bad(format!("cannot read {}: {e}", path.display()))),
    };
    match found {
        Some(v) if v == DATA_FORMAT => Ok(()),
        Some(v) => Err(bad(format!(
            "its data is in format {v} and this shardlog reads format {DATA_FORMAT}. Start this broker on an empty data \
                     directory (in a cluster its replicas are copied again from the other brokers), or run the shardlog release \
             that wrote it"
        ))),
        None => Err(bad(format!("{} is damaged: it should read '{FORMAT_HEADER} N'", path.display()))),
    }
}

/// Whether a data directory holds anything a broker wrote: a partition or
/// the quorum's state.
fn holds_data(dir: &Path) -> bool {
    ["topics", "meta"].iter().any(|sub| std::fs::read_dir(dir.join(sub)).is_ok_and(|mut d| d.next().is_some()))
}

/// How long start-up waits for a listening socket that no live process
/// holds to go away. A broker killed with SIGKILL leaves its listener in
/// the kernel's table for some tens of milliseconds after it was reaped
/// (io_uring closes its files asynchronously); a supervisor restarting it
/// at once must not be refused for that.
pub const ORPHAN_LISTENER_WAIT_MS: u64 = 3_000;

/// Refuses a listen address another socket already listens on. Every
/// shard binds with SO_REUSEPORT, which the kernel would otherwise let a
/// second broker of the same user join, splitting clients between two
/// brokers. The kernel's own table of listening sockets (this network
/// namespace's `/proc/net/tcp` and `tcp6`) says whether one is there; a
/// bind probe cannot, since the connections a broker just closed on this
/// port (FIN_WAIT after a restart) make a plain bind fail while a
/// SO_REUSEPORT one would join the other broker. Port 0 asks for a fresh
/// port and needs no check.
///
/// A listener a live process holds (its socket is one of the process's
/// open files) refuses at once, naming the process. One that no process
/// holds belongs to a process going away: start-up waits for it to leave
/// the table, up to [`ORPHAN_LISTENER_WAIT_MS`], and refuses only if it
/// stays (a process whose files this user cannot see looks the same, and
/// is refused after the wait). Two brokers started in the same instant
/// can both pass; the data directory's lock still keeps them off one
/// directory.
pub fn check_listen_address_free(addr: SocketAddr) -> Result<(), StartError> {
    if addr.port() == 0 {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_millis(ORPHAN_LISTENER_WAIT_MS);
    loop {
        let holders: Vec<Listening> = listening_sockets()
            .into_iter()
            .filter(|l| l.addr.port() == addr.port() && (l.addr.ip() == addr.ip() || l.addr.ip().is_unspecified() || addr.ip().is_unspecified()))
            .collect();
        if holders.is_empty() {
            return Ok(());
        }
        if let Some(pid) = holders.iter().find_map(|l| socket_owner(l.inode)) {
            return Err(StartError::Listen {
                addr,
                reason: format!(
                    "the address is already in use by process {pid}: another broker or program listens there. Stop it, or give this broker another --listen"
                ),
            });
        }
        if Instant::now() >= deadline {
            return Err(StartError::Listen {
                addr,
                reason: format!(
                    "the address is still listened on after {ORPHAN_LISTENER_WAIT_MS} ms by a socket no process this user can see holds \
                     (a process of another user, or one that does not go away). Stop it, or give this broker another --listen"
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The address this broker's quorum listener binds, if it has one (a
/// one-voter quorum talks to no one and opens no port).
fn quorum_listen_address(config: &BrokerConfig) -> Result<Option<SocketAddr>, StartError> {
    let voters = config.voters();
    let Some(v) = voters.iter().find(|v| v.id == config.node_id && v.port != 0) else { return Ok(None) };
    if voters.len() < 2 {
        return Ok(None);
    }
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(v.host.as_str(), v.port)).ok().and_then(|mut a| a.next());
    addr.map(Some).ok_or_else(|| StartError::Config(format!("quorum listener {v}: the host has no address")))
}

/// A listening TCP socket of this network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    pub addr: SocketAddr,
    /// The socket's inode; 0 once no file refers to it any more.
    pub inode: u64,
}

/// Every listening TCP socket in this network namespace, read from
/// `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn listening_sockets() -> Vec<Listening> {
    const LISTEN: &str = "0A";
    let mut out = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else { continue };
        for line in text.lines().skip(1) {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else { continue };
            if *state != LISTEN {
                continue;
            }
            if let Some(addr) = parse_proc_net_addr(local) {
                out.push(Listening { addr, inode: inode.parse().unwrap_or(0) });
            }
        }
    }
    out
}

/// The live process that has socket `inode` open, if this user can see
/// one: its `/proc/PID/fd/*` links read `socket:[INODE]`.
fn socket_owner(inode: u64) -> Option<u32> {
    if inode == 0 {
        return None;
    }
    let target = format!("socket:[{inode}]");
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// Parses `ADDR:PORT` as `/proc/net/tcp*` writes it: the address as 32-bit
/// words in host byte order, the port in big-endian hex.
fn parse_proc_net_addr(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..ip.len() / 8).map(|i| u32::from_str_radix(&ip[i * 8..i * 8 + 8], 16)).collect::<Result<_, _>>().ok()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match bytes.len() {
        4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
        16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// What ends a broker's run.
pub(crate) enum Event {
    Signal(i32),
    ShardExited(u16, Result<(), String>),
}

/// Runs a broker until SIGTERM or SIGINT; returns once every shard has
/// flushed and closed its logs.
pub fn run(config: BrokerConfig) -> Result<(), StartError> {
    // Signals go to one thread that waits for them; every other thread,
    // shards included, inherits the blocked mask.
    let (events, events_rx) = mpsc::channel::<Event>();
    block_signals();
    {
        let events = events.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let sig = wait_signal();
                if events.send(Event::Signal(sig)).is_err() {
                    return;
                }
            })
            .expect("spawn the signal thread");
    }
    let mut broker = start_with(config, events, events_rx)?;
    let result = loop {
        break match broker.events.recv() {
            Ok(Event::Signal(libc::SIGHUP)) => {
                match broker.reload_tls() {
                    Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificates and keys; new connections use them"),
                    Err(e) => tracing::error!("SIGHUP: the TLS files were not reloaded, the old ones stay in use: {e}"),
                }
                continue;
            }
            Ok(Event::Signal(sig)) => {
                tracing::info!(signal = sig, "stopping: finishing in-flight requests, flushing logs");
                Ok(())
            }
            Ok(Event::ShardExited(id, r)) => {
                let reason = r.err().unwrap_or_else(|| "exited".into());
                tracing::error!(shard = id, %reason, "a shard stopped; stopping the broker");
                Err(StartError::Shard { shard: id, reason })
            }
            Err(_) => Ok(()),
        };
    };
    broker.stop();
    result
}

/// A broker running in this process, e.g. for tests and examples. It does
/// not handle signals; [`RunningBroker::stop`] (or dropping it) stops it.
///
/// ```
/// # let dir = tempfile::tempdir_in("target").unwrap();
/// use shardlog::config::BrokerConfig;
///
/// let config = BrokerConfig { data_dir: dir.path().into(), listen: "127.0.0.1:0".parse().unwrap(), metrics_listen: "127.0.0.1:0".into(), shards: 1, ..Default::default() };
/// let broker = shardlog::broker::start(config).unwrap();
/// println!("serving on {}", broker.addr());
/// broker.stop();
/// ```
pub struct RunningBroker {
    addr: SocketAddr,
    /// Asks shard 0 for a controlled shutdown; it answers on `handed`.
    handover: Option<oneshot::Sender<()>>,
    handed: mpsc::Receiver<()>,
    handover_wait: Duration,
    stops: Vec<oneshot::Sender<()>>,
    handles: Vec<glommio::ExecutorJoinHandle<()>>,
    events: mpsc::Receiver<Event>,
    /// Each shard's inbox for new TLS settings.
    reloads: Vec<futures::channel::mpsc::Sender<tls::Settings>>,
    config: Arc<BrokerConfig>,
    _lock: std::fs::File,
}

/// Starts a broker on threads of this process and returns once it serves.
pub fn start(config: BrokerConfig) -> Result<RunningBroker, StartError> {
    let (events, events_rx) = mpsc::channel::<Event>();
    start_with(config, events, events_rx)
}

impl RunningBroker {
    /// The address clients connect to (the real port when 0 was asked).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Reads the TLS files the config names again and hands the new
    /// settings to every shard: new connections use them, open ones keep
    /// theirs. On an error nothing changes. (SIGHUP calls it.)
    pub fn reload_tls(&mut self) -> Result<(), String> {
        let s = tls::Settings::load(&self.config.tls_files())?;
        for r in &mut self.reloads {
            r.try_send(s.clone()).map_err(|e| format!("a shard did not take the new settings: {e}"))?;
        }
        Ok(())
    }

    /// Stops accepting, finishes in-flight requests, flushes and closes
    /// every log, and joins the shard threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        let started = Instant::now();
        // Leadership moves to other brokers while every shard still serves,
        // so clients follow it at once instead of after a session timeout.
        if let Some(h) = self.handover.take() {
            if h.send(()).is_ok() {
                let _ = self.handed.recv_timeout(self.handover_wait + Duration::from_secs(1));
            }
        }
        stop_all(std::mem::take(&mut self.stops), std::mem::take(&mut self.handles));
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "stopped");
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn start_with(config: BrokerConfig, events: mpsc::Sender<Event>, events_rx: mpsc::Receiver<Event>) -> Result<RunningBroker, StartError> {
    config.validate().map_err(StartError::Config)?;
    let online: Vec<usize> = glommio::CpuSet::online().map(|s| s.into_iter().map(|l| l.cpu).collect()).unwrap_or_default();
    let online = if online.is_empty() { (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect() } else { online };
    let shards = if config.shards == 0 { online.len() as u16 } else { config.shards };
    check_shards_fit_cores(shards, online.len(), config.allow_more_shards_than_cores)?;
    check_io_uring()?;
    check_memlock(shards)?;
    // The data directory's lock first: once it is ours, no live broker
    // runs on this directory, and a listener left on our port by one that
    // is going away (a restart right after SIGKILL) is waited out.
    let voters: Vec<u64> = config.voters().iter().map(|v| service::raft_id(v.id)).collect();
    let (lock, store) = prepare_data_dir(&config.data_dir, config.allow_nondurable_data_dir, &voters)?;
    check_listen_address_free(config.listen)?;
    if let Some(addr) = config.metrics_addr().filter(|a| a.port() != 0) {
        check_listen_address_free(addr).map_err(|e| StartError::Listen { addr, reason: format!("metrics listener (--metrics-listen, or off): {e}") })?;
    }
    if let Some(addr) = quorum_listen_address(&config)? {
        check_listen_address_free(addr).map_err(|e| StartError::Listen { addr, reason: format!("quorum listener: {e}") })?;
    }
    let metadata = crate::cluster::quorum::snapshot_state(&store)
        .map_err(|e| StartError::DataDir { dir: config.data_dir.display().to_string(), reason: format!("the quorum log's snapshot does not decode: {e}") })?;
    let incarnation = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64);
    let mut store = Some(store);
    let mut config = config;
    config.data_dir =
        std::fs::canonicalize(&config.data_dir).map_err(|e| StartError::DataDir { dir: config.data_dir.display().to_string(), reason: e.to_string() })?;

    let tls_settings = tls::Settings::load(&config.tls_files()).map_err(StartError::Config)?;
    warn_if_open(&config);
    let config = Arc::new(config);
    let mut reloads = Vec::new();
    let mut ends = mesh::build::<ShardMsg>(shards, shard::MESH_CAPACITY).into_iter();
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    let mut readies = Vec::new();
    let mut addr = config.listen;
    let (handover_tx, handover_rx) = oneshot::channel::<()>();
    let (handed_tx, handed_rx) = mpsc::channel::<()>();
    let mut handover = Some((handover_rx, handed_tx));
    for id in 0..shards {
        let (bound_tx, bound_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (cfg, md, end, events) = (config.clone(), metadata.clone(), ends.next().expect("one end per shard"), events.clone());
        let (reload_tx, reload_rx) = futures::channel::mpsc::channel::<tls::Settings>(4);
        reloads.push(reload_tx);
        let settings = tls_settings.clone();
        let store = if id == shard::QUORUM_SHARD { store.take() } else { None };
        let handover = if id == shard::QUORUM_SHARD { handover.take() } else { None };
        let cpu = online[usize::from(id) % online.len()];
        let h = glommio::LocalExecutorBuilder::new(glommio::Placement::Fixed(cpu))
            .name(&format!("shard{id}"))
            .io_memory(IO_MEMORY_BYTES_PER_SHARD)
            .spawn(move || async move {
                tls::install(settings);
                rt::spawn(async move {
                    use futures::StreamExt;
                    let mut reload_rx = reload_rx;
                    while let Some(s) = reload_rx.next().await {
                        tls::install(s);
                    }
                });
                let started = Started { incarnation, quorum_store: store, handover };
                let r = shard_main(cfg, end, md, started, addr, bound_tx, stop_rx).await;
                let _ = events.send(Event::ShardExited(id, r));
            })
            .map_err(|e| StartError::Shard { shard: id, reason: e.to_string() })?;
        handles.push(h);
        stops.push(stop_tx);
        match bound_rx.recv() {
            Ok(Ok(a)) => addr = a,
            Ok(Err(reason)) => {
                stop_all(stops, handles);
                return Err(StartError::Listen { addr, reason });
            }
            Err(_) => {
                stop_all(stops, handles);
                return Err(StartError::Shard { shard: id, reason: "exited while starting".into() });
            }
        }
        readies.push(bound_rx);
    }
    // Connections queue in the listen backlog until every shard has
    // recovered its partitions; only then is the broker announced.
    for (id, ready) in readies.into_iter().enumerate() {
        let failed = match ready.recv() {
            Ok(Ok(_)) => None,
            Ok(Err(reason)) => Some(reason),
            Err(_) => Some("exited while starting".into()),
        };
        if let Some(reason) = failed {
            stop_all(stops, handles);
            return Err(StartError::Shard { shard: id as u16, reason });
        }
    }
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        shards,
        data_dir = %config.data_dir.display(),
        node_id = config.node_id,
        "shardlog broker listening on {addr}"
    );
    if let (Some(l), Some((h, p))) = (config.external_listen, config.external_advertised()) {
        tracing::info!("external listener on {l}, advertised to its clients as {h}:{p}");
    }
    let handover_wait = Duration::from_millis(config.controlled_shutdown_timeout_ms);
    Ok(RunningBroker { addr, handover: Some(handover_tx), handed: handed_rx, handover_wait, stops, handles, events: events_rx, reloads, config, _lock: lock })
}

/// Says so at start when a listener on a non-loopback address takes
/// plaintext, or brokers trust their peers' network.
fn warn_if_open(config: &BrokerConfig) {
    let open = |a: SocketAddr| !a.ip().is_loopback();
    for a in [Some(config.listen), config.external_listen].into_iter().flatten().filter(|a| open(*a)) {
        if !config.client_tls() {
            tracing::warn!(
                "the client listener {a} is not on loopback and takes plaintext: anyone on the network can read the traffic (set --tls-cert and --tls-key)"
            );
        }
        if config.sasl().unwrap_or_default().is_empty() && config.tls_client_ca.is_none() {
            tracing::warn!("the client listener {a} is not on loopback and authenticates no one (set --sasl-mechanisms or --tls-client-ca)");
        }
    }
    if config.voters().len() > 1 && config.peer_tls_ca.is_none() {
        tracing::warn!("the quorum and replication connections are plaintext and unauthenticated: only brokers must reach them (set --peer-tls-cert, --peer-tls-key, --peer-tls-ca)");
    }
}

fn stop_all(stops: Vec<oneshot::Sender<()>>, handles: Vec<glommio::ExecutorJoinHandle<()>>) {
    for s in stops {
        let _ = s.send(());
    }
    for h in handles {
        let _ = h.join();
    }
}

fn block_signals() {
    // SAFETY: plain libc signal-mask calls on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn wait_signal() -> i32 {
    // SAFETY: sigwait on a local set of signals this process blocked.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let mut sig = 0;
        libc::sigwait(&set, &mut sig);
        sig
    }
}

/// What a shard is handed at start beyond its configuration.
struct Started {
    /// This process's incarnation, which the controller registers: a shard
    /// leads nothing until its broker is registered in it.
    incarnation: u64,
    /// The quorum's log (shard 0 only).
    quorum_store: Option<LogStore>,
    /// A controlled shutdown's request and answer (shard 0 only).
    handover: Option<(oneshot::Receiver<()>, mpsc::Sender<()>)>,
}

/// Binds a listener beside the client one, if `addr` names one; a failure
/// is said on `bound` (start-up stops) and returned.
fn bind_extra(
    addr: Option<SocketAddr>,
    bound: &mpsc::Sender<Result<SocketAddr, String>>,
    why: impl Fn(SocketAddr, std::io::Error) -> String,
) -> Result<Option<Listener>, String> {
    match addr.map(|a| (a, Listener::bind(a))) {
        None => Ok(None),
        Some((_, Ok(l))) => Ok(Some(l)),
        Some((a, Err(e))) => {
            let e = why(a, e);
            let _ = bound.send(Err(e.clone()));
            Err(e)
        }
    }
}

async fn shard_main(
    cfg: Arc<BrokerConfig>,
    end: mesh::MeshEnds<ShardMsg>,
    metadata: Metadata,
    started: Started,
    addr: SocketAddr,
    bound: mpsc::Sender<Result<SocketAddr, String>>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), String> {
    let id = end.id;
    let bg = glommio::executor().create_task_queue(glommio::Shares::Static(250), glommio::Latency::NotImportant, "background");
    rt::set_background_queue(bg);
    let listener = match Listener::bind(addr).and_then(|l| l.local_addr().map(|a| (l, a))) {
        Ok((l, a)) => {
            let _ = bound.send(Ok(a));
            l
        }
        Err(e) => {
            let _ = bound.send(Err(e.to_string()));
            return Err(e.to_string());
        }
    };
    let external = bind_extra(cfg.external_listen, &bound, |a, e| format!("cannot listen on the external address {a}: {e}"))?;
    // The metrics port, on the first shard alone: a scrape gathers every
    // shard's figures by message.
    let metrics = bind_extra(cfg.metrics_addr().filter(|_| id == 0), &bound, |a, e| {
        format!("cannot serve metrics on {a}: {e} (set --metrics-listen to another address, or off)")
    })?;
    if let Some(a) = metrics.as_ref().and_then(|l| l.local_addr().ok()) {
        tracing::info!("serving metrics at http://{a}/metrics (and /health, /ready)");
    }
    let mut config = (*cfg).clone();
    config.listen = listener.local_addr().map_err(|e| e.to_string())?;
    let config = std::rc::Rc::new(config);
    // Every shard must connect its mesh ends; a broker stopped while one
    // failed to start must not wait for it forever.
    let (mesh, receivers) = match futures::future::select(std::pin::pin!(end.connect()), &mut stop).await {
        futures::future::Either::Left((m, _)) => m,
        futures::future::Either::Right(_) => return Ok(()),
    };
    let nr = mesh.nr_shards().max(1);
    let Started { incarnation, quorum_store, handover } = started;
    let quorum = match quorum_store {
        None => None,
        Some(store) => {
            let (host, port) = config.advertised();
            let me = BrokerMeta { id: config.node_id, host, port, shards: nr, incarnation, fenced: false, external: config.external_advertised() };
            let sc = ServiceConfig {
                me,
                voters: config.voters(),
                data_dir: config.data_dir.clone(),
                session_timeout: Duration::from_millis(config.broker_session_timeout_ms),
            };
            match Service::open(sc, store) {
                Ok(q) => Some(q),
                Err(reason) => {
                    let _ = bound.send(Err(reason.clone()));
                    return Err(reason);
                }
            }
        }
    };
    let shard = match Shard::start(config.clone(), mesh, metadata, incarnation).await {
        Ok(s) => s,
        Err(e) => {
            let reason = format!("opening partitions: {e}");
            let _ = bound.send(Err(reason.clone()));
            return Err(reason);
        }
    };
    for (_, rx) in receivers {
        let shard = shard.clone();
        rt::spawn(async move {
            while let Some(msg) = rx.recv().await {
                rt::spawn(shard.clone().serve(msg));
            }
        });
    }
    rt::spawn_background(shard.clone().retention_loop());
    rt::spawn_background(shard.clone().group_expiry_loop());
    rt::spawn(shard.clone().replication_loop());
    // Every shard serves its mesh by now, so committed changes can reach them.
    let (quorum_done, mut quorum_failed) = oneshot::channel::<Result<(), String>>();
    let quorum = quorum.map(|(svc, deliveries)| {
        shard.set_quorum(svc.clone());
        rt::spawn(shard.clone().deliver_loop(deliveries));
        svc
    });
    if let Some(svc) = &quorum {
        let started = svc.start().map(|()| svc.clone());
        let svc = match started {
            Ok(s) => s,
            Err(reason) => {
                let _ = bound.send(Err(reason.clone()));
                return Err(reason);
            }
        };
        let runner = svc.clone();
        rt::spawn(async move {
            let r = runner.run().await;
            let _ = quorum_done.send(r);
        });
        if let Some((asked, handed)) = handover {
            let (svc, within) = (svc.clone(), Duration::from_millis(config.controlled_shutdown_timeout_ms));
            rt::spawn(async move {
                if asked.await.is_err() {
                    return;
                }
                let began = Instant::now();
                match svc.controlled_shutdown(within).await {
                    Ok(true) => tracing::info!(elapsed_ms = began.elapsed().as_millis() as u64, "controlled shutdown: this broker leads nothing now"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(elapsed_ms = began.elapsed().as_millis() as u64, "controlled shutdown: {e}; stopping anyway"),
                }
                let _ = handed.send(());
            });
        }
        // A one-voter quorum commits alone: the broker is announced once
        // its registration (and the import of an old data directory) is
        // applied, so a client's first request finds it a usable cluster.
        if svc.voters().len() == 1 {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !svc.registered(&shard.metadata()) {
                if Instant::now() > deadline {
                    let reason = "the one-voter quorum did not register this broker within 10 s".to_string();
                    let _ = bound.send(Err(reason.clone()));
                    return Err(reason);
                }
                rt::sleep(Duration::from_millis(5)).await;
            }
        }
    }
    if id == 0 && !config.sasl_bootstrap_user.is_empty() {
        match quorum.as_ref().map(|q| q.voters().len()) {
            // One voter commits alone: the user exists once the broker
            // is announced, so its first client can authenticate.
            Some(1) => crate::server::security::bootstrap_user(shard.clone()).await,
            _ => rt::spawn(crate::server::security::bootstrap_user(shard.clone())),
        }
    }
    let _ = bound.send(Ok(config.listen));
    if let Some(l) = metrics {
        rt::spawn(crate::server::http::serve(shard.clone(), l));
    }

    let max_conns = config.max_connections.div_ceil(usize::from(nr));
    let conns = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let budget = crate::server::budget::ShardBudget::new(config.max_buffered_request_bytes_per_shard);
    let accept_on = |listener: Listener, external: bool| {
        let (shard, conns, budget) = (shard.clone(), conns.clone(), budget.clone());
        async move {
            loop {
                match listener.accept().await {
                    Ok(s) if conns.get() >= max_conns => {
                        tracing::warn!(shard = id, max_conns, "connection limit reached; refusing a connection");
                        drop(s);
                    }
                    Ok(s) => {
                        conns.set(conns.get() + 1);
                        crate::metrics::count(|c| {
                            c.connections += 1;
                            c.connections_accepted += 1;
                        });
                        let (shard, conns, budget) = (shard.clone(), conns.clone(), budget.clone());
                        rt::spawn(async move {
                            let within = Duration::from_millis(shard.config.tls_handshake_timeout_ms);
                            match crate::tls::server::accept(s, within).await {
                                Ok((s, principal)) => connection::serve(shard, s, principal, budget, external).await,
                                Err(e) => {
                                    tracing::debug!(error = %e, "closing a connection at its TLS handshake");
                                    crate::metrics::count(|c| c.tls_handshake_failures += 1);
                                }
                            }
                            conns.set(conns.get() - 1);
                            crate::metrics::count(|c| c.connections -= 1);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(shard = id, error = %e, "accept failed");
                        rt::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    };
    let accept = {
        let main = accept_on(listener, false);
        let ext = external.map(|l| accept_on(l, true));
        async move {
            match ext {
                Some(ext) => {
                    futures::future::join(main, ext).await;
                }
                None => main.await,
            }
        }
    };
    let quorum_failure = async {
        match (&mut quorum_failed).await {
            Ok(Err(e)) => e,
            _ => std::future::pending().await,
        }
    };
    let failure = match futures::future::select(std::pin::pin!(accept), futures::future::select(stop, std::pin::pin!(quorum_failure))).await {
        futures::future::Either::Right((futures::future::Either::Right((e, _)), _)) => Some(e),
        _ => None,
    };
    if let Some(q) = &quorum {
        q.stop();
    }
    shard.begin_shutdown();
    let grace = Duration::from_millis(config.shutdown_grace_ms);
    let start = Instant::now();
    while conns.get() > 0 && start.elapsed() < grace {
        rt::sleep(Duration::from_millis(5)).await;
    }
    shard.close().await;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_shards_fit_a_containers_default_locked_memory() {
        // Docker's default RLIMIT_MEMLOCK is 8 MiB and this engine may not
        // raise it: the compose brokers run 2 shards each.
        assert!(memlock_needed(2) <= 8 << 20, "{} bytes", memlock_needed(2));
        assert!(memlock_needed(3) > 8 << 20);
    }

    #[test]
    fn a_listening_socket_is_seen_and_a_closed_one_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let seen = |a: SocketAddr| listening_sockets().into_iter().find(|l| l.addr == a);
        let me = seen(addr).expect("the listener is in the table");
        assert_eq!(socket_owner(me.inode), Some(std::process::id()), "a live listener is owned by its process");
        let e = check_listen_address_free(addr).unwrap_err().to_string();
        assert!(e.contains(&format!("process {}", std::process::id())), "{e}");
        assert!(check_listen_address_free(SocketAddr::new("0.0.0.0".parse().unwrap(), addr.port())).is_err());
        drop(l);
        assert!(seen(addr).is_none());
        assert!(check_listen_address_free(addr).is_ok());
    }

    #[test]
    fn more_shards_than_cores_needs_the_override() {
        assert!(check_shards_fit_cores(2, 2, false).is_ok());
        let e = check_shards_fit_cores(3, 2, false).unwrap_err().to_string();
        assert!(e.contains("--allow-more-shards-than-cores"), "{e}");
        assert!(check_shards_fit_cores(64, 2, true).is_ok());
    }

    #[test]
    fn proc_net_addresses_parse() {
        assert_eq!(parse_proc_net_addr("0100007F:1F90"), Some("127.0.0.1:8080".parse().unwrap()));
        assert_eq!(parse_proc_net_addr("00000000000000000000000001000000:2384"), Some("[::1]:9092".parse().unwrap()));
        assert_eq!(parse_proc_net_addr("zz:1"), None);
    }
}
