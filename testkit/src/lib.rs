//! Real servers for tests and benchmarks, each on a free port of 127.0.0.1 with its own
//! temporary folder, stopped by its pid when dropped (even when the test fails).
//!
//! Only `redis-server` so far (Debian's package; `scripts/setup.sh --test` installs it).

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A `redis-server` of the caller's own, with an append-only file fsynced on every write
/// (`appendfsync always`), so that a reply means the write is on disk and survives a kill.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    fsync: &'static str,
    /// The primary's port, for a replica.
    replica_of: Option<u16>,
    /// Whether it keeps (and starts from) its append-only file.
    appendonly: &'static str,
}

impl RedisServer {
    /// Starts one and waits until it answers.
    pub fn start() -> Self {
        Self::start_with_fsync("always")
    }

    /// As [`start`](Self::start), with this `appendfsync` policy (`always`, `everysec`, `no`).
    pub fn start_with_fsync(fsync: &'static str) -> Self {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary folder"),
            fsync,
            replica_of: None,
            appendonly: "yes",
        };
        server.restart();
        server
    }

    /// A replica of `primary` (`replicaof`), started and connected to it.
    pub fn start_replica_of(primary: &RedisServer) -> Self {
        let mut server = RedisServer {
            child: None,
            port: free_port(),
            dir: tempfile::tempdir().expect("a temporary folder"),
            fsync: primary.fsync,
            replica_of: Some(primary.port),
            appendonly: "yes",
        };
        server.restart();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.info("replication").contains("master_link_status:up") {
            assert!(Instant::now() < deadline, "the replica never synced");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Runs one command on it, such as `FLUSHALL` (a Redis that lost everything).
    pub fn command<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let client = redis::Client::open(self.url()).expect("a Redis address");
        let mut con = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .expect("Redis answers");
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command.query(&mut con).expect("the command succeeds")
    }

    fn info(&self, section: &str) -> String {
        self.command(&["INFO", section])
    }

    /// A figure of `INFO`, such as `total_net_output_bytes` (section `stats`): what Redis
    /// itself counted, for tests that bound what a client costs it.
    pub fn info_number(&self, section: &str, name: &str) -> u64 {
        let info = self.info(section);
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("INFO {section} has no number {name}"))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it at once (SIGKILL): what survives is what its append-only file holds.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it (SIGKILL) and starts it again from its last snapshot (`SAVE`) instead of its
    /// append-only file: Redis goes back to an older state, as when a backup is restored. It
    /// keeps no append-only file from then on.
    pub fn restart_from_snapshot(&mut self) {
        self.kill();
        self.appendonly = "no";
        self.restart();
    }

    /// Stops it (SIGSTOP) without closing anything: connections stay open and new ones are
    /// accepted by the kernel, but nothing answers — a hung server, which only timeouts notice.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let status = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill {signal} {pid}");
        }
    }

    /// Starts it again on the same port and folder (it reloads its append-only file), and
    /// waits until it answers. Does nothing if it runs.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            return;
        }
        let mut command = Command::new("redis-server");
        if let Some(primary) = self.replica_of {
            command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
        }
        let child = command
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--save", "", "--appendonly", self.appendonly])
            // `DEBUG RELOAD`, from this host only: how a test rolls Redis back to a snapshot.
            .args(["--enable-debug-command", "local"])
            .args(["--appendfsync", self.fsync])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (scripts/setup.sh --test installs it)");
        self.child = Some(child);
        self.wait_until_ready();
    }

    /// Until it answers PING with its data loaded.
    fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.ping() {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("redis-server on port {} exited: {status}", self.port);
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} never answered PING",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ping(&self) -> bool {
        let Ok(client) = redis::Client::open(self.url()) else {
            return false;
        };
        let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(1)) else {
            return false;
        };
        redis::cmd("PING").query::<String>(&mut con).is_ok()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free now, and very likely still free when a server binds it a moment later.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
