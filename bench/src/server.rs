//! The real server binary as a child process, with its own allocator (jemalloc, purging in the
//! background): its resident memory (`VmRSS` in `/proc/<pid>/status`) before, during and after
//! rounds of 19,000 plain subscriptions, and with 30 subscriptions of 1000 distinct templates.
//!
//! Clients are the load generator's raw TCP sockets ([`crate::load::open`]) that send one
//! request and read the `HTTP/1.1 200` status line. Only loopback addresses are used. Every
//! wait is bounded in time and every loop in count; the child is killed when [`Child`] is
//! dropped (on an error or a panic too), and by the kernel if this process dies first
//! (`PR_SET_PDEATHSIG`).

use crate::{
    Table,
    load::{self, Opened, Stream},
};
use std::{
    io::{self, BufRead, BufReader, Read},
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

/// Subscriptions open at once in each churn round (fewer if the open-file limit is lower).
const CHURN_CONNECTIONS: usize = 19_000;
const ROUNDS: usize = 4;
/// How long the server has to notice closed connections.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Wait after the last subscriber has gone before reading "after" (jemalloc purges within
/// about a second).
const SETTLE: Duration = Duration::from_secs(3);
/// The template subscriptions: 30 × 1000 distinct templates `/t/{c}/{i}/{x}`.
const TEMPLATE_CLIENTS: usize = 30;
const TEMPLATES_EACH: usize = 1000;

const CHURN_REQUEST: &[u8] = b"GET /.well-known/mercure?topic=/churn HTTP/1.1\r\nHost: x\r\n\r\n";

/// `TIDINGS_BIN`, or the workspace's release build; an error if it is missing.
pub fn binary() -> io::Result<PathBuf> {
    let binary = std::env::var_os("TIDINGS_BIN").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/release/tidings"
            ))
        },
        PathBuf::from,
    );
    if !binary.exists() {
        return Err(io::Error::other(format!(
            "{} is missing; `make build` builds it (make bench does)",
            binary.display()
        )));
    }
    Ok(binary)
}

/// Log lines at WARN or ERROR kept per server, at most (the rest are only counted).
const PROBLEMS_KEPT: usize = 20;

/// The WARN and ERROR lines of a server's log: how many, and the first few.
#[derive(Default)]
pub struct Problems {
    pub count: usize,
    pub first: Vec<String>,
}

/// The running server; killed when dropped.
pub struct Child {
    process: std::process::Child,
    pub addr: SocketAddr,
    problems: Arc<Mutex<Problems>>,
}

impl Child {
    fn spawn(binary: &Path, data_dir: &Path) -> io::Result<Self> {
        Self::spawn_with(binary, data_dir, &random_key()?, &[], None)
    }

    /// A server with the publisher key `key` (HS256) and `extra` arguments after the usual ones
    /// (no market, no monitor, limits high enough for the benchmarks); with `one_core`, on that
    /// CPU alone and with one tokio worker thread.
    pub fn spawn_with(
        binary: &Path,
        data_dir: &Path,
        key: &str,
        extra: &[String],
        one_core: Option<usize>,
    ) -> io::Result<Self> {
        let mut command = Command::new(binary);
        command
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args([
                "--market-interval-ms",
                "0",
                "--monitor-interval-ms",
                "0",
                "--max-subscribers",
                "100000",
                "--max-subscribers-per-address",
                "100000",
                "--subscribe-rate",
                "100000",
                "--subscribe-burst",
                "100000",
                "--max-selectors",
                "1000",
                "--max-templates-per-subscription",
                "1000",
                "--max-templates",
                "100000",
                "--max-query-bytes",
                "100000",
            ])
            .args(extra)
            .env("TIDINGS_PUBLISHER_JWT_KEY", key)
            // High for the benchmarks' many connections from few addresses; a flag in `extra`
            // wins over it.
            .env("TIDINGS_MAX_CONNECTIONS_PER_ADDRESS", "100000")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if one_core.is_some() {
            command.env("TOKIO_WORKER_THREADS", "1");
        }
        tie(&mut command, one_core);
        let mut process = command.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {}: {e}", binary.display()))
        })?;
        let stdout = process.stdout.take().expect("stdout is piped");
        let (found, listening) = std::sync::mpsc::channel();
        let problems = Arc::new(Mutex::new(Problems::default()));
        let kept = problems.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = Vec::new();
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                let listening = ["listening on http://", "listening on https://"]
                    .iter()
                    .find_map(|l| Some(&line[line.find(l)? + l.len()..]));
                if let Some(addr) = listening {
                    let addr = addr.trim().to_owned();
                    let _ = found.send(Ok(addr));
                    // Keep draining, so the server never blocks on a full pipe.
                    for line in lines.map_while(Result::ok) {
                        if line.contains(" WARN ") || line.contains(" ERROR ") {
                            let mut problems = kept.lock().unwrap();
                            problems.count += 1;
                            if problems.first.len() < PROBLEMS_KEPT {
                                problems.first.push(line);
                            }
                        }
                    }
                    return;
                }
                seen.push(line);
            }
            let _ = found.send(Err(seen.join("\n")));
        });
        // Killed on every early return below.
        let mut child = Self {
            process,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            problems,
        };
        child.addr = match listening.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(addr)) => addr
                .parse()
                .map_err(|_| io::Error::other(format!("cannot parse the address {addr:?}")))?,
            Ok(Err(log)) => {
                return Err(io::Error::other(format!(
                    "the server stopped before listening; its log:\n{log}"
                )));
            }
            Err(_) => {
                return Err(io::Error::other(
                    "the server did not say where it listens within 30 s",
                ));
            }
        };
        Ok(child)
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// (VmRSS, VmHWM) in KiB.
    fn memory_kib(&self) -> io::Result<(u64, u64)> {
        memory_kib(self.pid())
    }

    fn rss_kib(&self) -> io::Result<u64> {
        Ok(self.memory_kib()?.0)
    }

    /// The WARN and ERROR lines its log has had so far, and empties that record.
    pub fn take_problems(&self) -> Problems {
        std::mem::take(&mut *self.problems.lock().unwrap())
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Makes `command`'s process die with this one (`PR_SET_PDEATHSIG`: killed with us if we die
/// without dropping its handle, on Ctrl-C or SIGKILL) and, with `cpu`, run on that CPU alone
/// (what `taskset -c <cpu>` does; its threads and children inherit it).
pub fn tie(command: &mut Command, cpu: Option<usize>) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; prctl and sched_setaffinity are plain
    // system calls and touch no memory of ours but a local.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            match cpu {
                Some(cpu) => pin(cpu),
                None => Ok(()),
            }
        });
    }
}

/// Runs the calling thread (a process, before it starts threads) on `cpu` alone.
pub fn pin(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain bits; CPU_SET checks `cpu` against its size; the call reads
    // the set it is given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Process `pid`'s (VmRSS, VmHWM) in KiB.
pub fn memory_kib(pid: u32) -> io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {name} in /proc/{pid}/status")))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Process `pid`'s CPU time so far, user and system, all its threads (`/proc/<pid>/stat`, in
/// clock ticks: 10 ms at the usual 100 Hz).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name, in parentheses, may hold spaces: count the fields after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    // Fields 14 and 15 of the line (utime, stime) are the 12th and 13th after the name.
    let (Some(user), Some(system)) = (ticks(11), ticks(12)) else {
        return Err(io::Error::other(format!("cannot read /proc/{pid}/stat")));
    };
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_nanos((user + system) * 1_000_000_000 / hz))
}

/// 32 random bytes, hex: the publisher key (the server would otherwise make one and log a
/// token).
pub fn random_key() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn delta_mib(kib: u64, baseline: u64) -> String {
    format!("{:+.1} MiB", (kib as f64 - baseline as f64) / 1024.0)
}

/// A `GET` on its own connection; the whole response, headers included.
pub async fn get(server: SocketAddr, path: &str) -> io::Result<String> {
    get_over(server, None, path).await
}

/// [`get`], over TLS with `tls` if given.
pub async fn get_over(
    server: SocketAddr,
    tls: Option<&TlsConnector>,
    path: &str,
) -> io::Result<String> {
    let exchange = async {
        let mut stream = Stream::over(TcpStream::connect(server).await?, tls).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        stream.flush().await?;
        let mut response = Vec::new();
        // A TLS server may close without close_notify once it has answered: what came counts.
        match stream.read_to_end(&mut response).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
            Err(e) => return Err(e),
        }
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("GET {path}: no answer")))?
}

/// A figure from `/metrics`.
pub async fn metric(server: SocketAddr, name: &str) -> io::Result<u64> {
    metric_over(server, None, name).await
}

/// [`metric`], over TLS with `tls` if given.
pub async fn metric_over(
    server: SocketAddr,
    tls: Option<&TlsConnector>,
    name: &str,
) -> io::Result<u64> {
    let text = get_over(server, tls, "/metrics").await?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or_else(|| io::Error::other(format!("no {name} in /metrics")))
}

/// Polls `/metrics` until `name` is `value`, for at most `limit`; returns how long it took.
async fn wait_for_metric(
    server: SocketAddr,
    name: &str,
    value: u64,
    limit: Duration,
) -> io::Result<Duration> {
    let started = Instant::now();
    let polls = limit.as_millis() / 100;
    for _ in 0..polls {
        if metric(server, name).await? == value {
            return Ok(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{name} was not {value} within {limit:?}"),
    ))
}

/// Closes the subscriptions, waits for the server to count none, then [`SETTLE`]; returns how
/// long the server took to notice.
async fn close(child: &Child, opened: Opened) -> io::Result<Duration> {
    drop(opened.streams);
    let noticed = wait_for_metric(child.addr, "tidings_subscribers", 0, CLOSE_TIMEOUT).await?;
    tokio::time::sleep(SETTLE).await;
    Ok(noticed)
}

/// Connections one address opens and holds in [`connection_cap`]: four times the cap.
const HOLDERS: usize = 1024;
/// The default cap per address, which that row runs with.
const CAP_PER_ADDRESS: &str = "256";

/// One address holding its connection cap (each connection asked `/healthz` once and stays
/// kept alive): what the server holds for them (RSS, descriptors), and how long a subscriber
/// from another address then waits for its answer.
pub async fn connection_cap(table: &mut Table) -> io::Result<()> {
    let binary = binary()?;
    let data = tempfile::tempdir()?;
    let extra = [
        "--max-connections-per-address",
        CAP_PER_ADDRESS,
        "--idle-timeout",
        "10m",
    ]
    .map(str::to_owned);
    let child = Child::spawn_with(&binary, data.path(), &random_key()?, &extra, None)?;
    let server = child.addr;
    wait_for_metric(server, "tidings_subscribers", 0, Duration::from_secs(10)).await?;
    tokio::time::sleep(SETTLE).await;
    let (rss_before, fds_before) = (child.rss_kib()?, descriptors(child.pid())?);
    let mut held = Vec::new();
    let (mut served, mut refused) = (0usize, 0usize);
    for _ in 0..HOLDERS {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 2), 0)))?;
        let mut stream = socket.connect(server).await?;
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let mut status = [0u8; 12];
        let answered =
            tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut status))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer at the cap"))?;
        match (answered, &status) {
            (Ok(_), b"HTTP/1.1 200") => served += 1,
            _ => refused += 1,
        }
        held.push(stream);
    }
    tokio::time::sleep(SETTLE).await;
    let (rss, fds) = (child.rss_kib()?, descriptors(child.pid())?);
    let started = Instant::now();
    let mut fresh = TcpStream::connect(server).await?;
    fresh
        .write_all(b"GET /.well-known/mercure?topic=/fresh HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut status = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), fresh.read_exact(&mut status))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the fresh client waited 10 s"))??;
    let waited = started.elapsed();
    table.row(
        format!(
            "one address opens {HOLDERS} connections (cap {CAP_PER_ADDRESS}): served / refused"
        ),
        format!("{served} / {refused}"),
    );
    table.row(
        "  held by the server for them: RSS, descriptors",
        format!(
            "{} ({:.1} KiB per connection held); {} descriptors (+{})",
            delta_mib(rss, rss_before),
            rss.saturating_sub(rss_before) as f64 / served.max(1) as f64,
            fds,
            fds.saturating_sub(fds_before)
        ),
    );
    table.row(
        "  a subscriber from another address meanwhile: answered in",
        format!(
            "{:.2} ms ({})",
            waited.as_secs_f64() * 1000.0,
            String::from_utf8_lossy(&status)
        ),
    );
    drop(held);
    Ok(())
}

/// The descriptors a process has open.
fn descriptors(pid: u32) -> io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// The server's memory under connection churn and with 30,000 templates; `open_files` is this
/// process's limit, which bounds the connections it can hold.
pub async fn memory(table: &mut Table, open_files: u64) -> io::Result<()> {
    let binary = binary()?;
    let connections = CHURN_CONNECTIONS.min(open_files.saturating_sub(500) as usize);
    // Declared first, dropped last: the directory outlives the server using it.
    let data = tempfile::tempdir()?;
    let child = Child::spawn(&binary, data.path())?;
    let server = child.addr;
    wait_for_metric(server, "tidings_subscribers", 0, Duration::from_secs(10)).await?;
    tokio::time::sleep(SETTLE).await;
    let baseline = child.rss_kib()?;
    table.row("RSS at start (baseline)", mib(baseline));

    let churn: Arc<[u8]> = Arc::from(CHURN_REQUEST);
    let mut during_peak = 0;
    for round in 1..=ROUNDS {
        let opened = load::open(server, vec![churn.clone(); connections]).await;
        let during = child.rss_kib()?;
        during_peak = during_peak.max(during);
        let summary = opened.summary();
        let noticed = close(&child, opened).await?;
        let after = child.rss_kib()?;
        table.row(
            format!(
                "round {round}: {summary}, all gone in {:.1} s",
                noticed.as_secs_f64()
            ),
            format!(
                "during {}; after {} ({} vs baseline)",
                mib(during),
                mib(after),
                delta_mib(after, baseline)
            ),
        );
    }
    table.row(
        format!("RSS peak during the {ROUNDS} rounds ({connections} connections each)"),
        format!(
            "{} ({} vs baseline, {:.1} KiB per connection)",
            mib(during_peak),
            delta_mib(during_peak, baseline),
            during_peak.saturating_sub(baseline) as f64 / connections.max(1) as f64
        ),
    );

    let before = child.rss_kib()?;
    let requests: Vec<Arc<[u8]>> = (0..TEMPLATE_CLIENTS)
        .map(|c| {
            let topics: Vec<String> = (0..TEMPLATES_EACH)
                .map(|i| format!("topic=/t/{c}/{i}/%7Bx%7D"))
                .collect();
            let request = format!(
                "GET /.well-known/mercure?{} HTTP/1.1\r\nHost: x\r\n\r\n",
                topics.join("&")
            );
            Arc::from(request.into_bytes())
        })
        .collect();
    let opened = load::open(server, requests).await;
    let templates = metric(server, "tidings_templates").await?;
    let during = child.rss_kib()?;
    let summary = opened.summary();
    close(&child, opened).await?;
    let templates_after = metric(server, "tidings_templates").await?;
    let after = child.rss_kib()?;
    table.row(
        format!("{TEMPLATE_CLIENTS} x {TEMPLATES_EACH} templates over HTTP: {summary}"),
        format!(
            "before {}; during {} ({}); after {} ({})",
            mib(before),
            mib(during),
            delta_mib(during, before),
            mib(after),
            delta_mib(after, before)
        ),
    );
    table.row(
        "  templates the server held (tidings_templates): during / after",
        format!(
            "{templates} / {templates_after} ({:.1} KiB of RSS per template held)",
            during.saturating_sub(before) as f64 / templates.max(1) as f64
        ),
    );
    let (end, high_water) = child.memory_kib()?;
    table.row(
        "RSS at the end; peak of the whole run (VmHWM)",
        format!("{}; {}", mib(end), mib(high_water)),
    );
    Ok(())
}
