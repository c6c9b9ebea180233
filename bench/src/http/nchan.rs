//! nginx with nchan, as Debian packages them (`nginx-light`, `libnginx-mod-nchan`; `scripts/
//! setup.sh --bench` installs them), run by the bench as the current user: one worker, on a
//! free loopback port, with a configuration and a folder of its own, in the foreground.
//!
//! `/sub?topic=…` is an EventSource subscriber of channel `topic` (new subscribers start at the
//! next message, like Tidings' without `Last-Event-ID`; with one they resume after it), `/pub?
//! topic=…` publishes the request body to it, keeping the last [`Nginx::start`]'s `buffer`
//! messages in memory, and `/status` is nchan's stub status (its subscriber count).

use crate::server::{Problems, tie};
use std::{
    io,
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const NGINX: &str = "/usr/sbin/nginx";
const MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";
/// How long nginx may take to start listening with its worker.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the error log kept as [`Problems`].
const PROBLEMS_KEPT: usize = 20;

/// nginx's master process and its one worker; both are killed when dropped.
pub struct Nginx {
    master: std::process::Child,
    /// The worker, which serves every connection: its CPU time and memory are the figures.
    pub worker: u32,
    pub addr: SocketAddr,
    /// Configuration, logs, temporary files; removed when dropped, after the processes.
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx on `cpu` (its worker inherits it), for `connections` connections at once,
    /// keeping `buffer` messages per channel; an error saying why if it cannot.
    pub fn start(cpu: Option<usize>, connections: u64, buffer: u64) -> io::Result<Self> {
        for (path, package) in [(NGINX, "nginx-light"), (MODULE, "libnginx-mod-nchan")] {
            if !Path::new(path).exists() {
                return Err(io::Error::other(format!(
                    "{package} is not installed (scripts/setup.sh --bench installs it)"
                )));
            }
        }
        let dir = tempfile::tempdir()?;
        // A free port: the kernel's choice, let go just before nginx takes it.
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let config = dir.path().join("nginx.conf");
        std::fs::write(
            &config,
            configuration(dir.path(), addr, connections, buffer),
        )?;
        let mut command = Command::new(NGINX);
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("stderr.log"))?);
        tie(&mut command, cpu);
        let master = command
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot start {NGINX}: {e}")))?;
        let mut nginx = Self {
            worker: 0,
            master,
            addr,
            dir,
        };
        let started = Instant::now();
        while started.elapsed() < START_TIMEOUT {
            if let Some(status) = nginx.master.try_wait()? {
                return Err(io::Error::other(format!(
                    "nginx stopped ({status}): {}",
                    nginx.log_tail()
                )));
            }
            if nginx.worker == 0 {
                nginx.worker = worker_of(nginx.master.id()).unwrap_or(0);
            }
            if nginx.worker != 0 && TcpStream::connect(addr).is_ok() {
                return Ok(nginx);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(io::Error::other(format!(
            "nginx did not listen on {addr} with a worker within {START_TIMEOUT:?}: {}",
            nginx.log_tail()
        )))
    }

    /// The last lines nginx wrote about itself, for an error.
    fn log_tail(&self) -> String {
        let mut text = String::new();
        for name in ["stderr.log", "error.log"] {
            text += &std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" / ")
    }

    /// The error log's lines at `warn` and above so far (it has no others), but for the one
    /// this configuration causes on purpose ([`configuration`]'s connection slots).
    pub fn problems(&self) -> Problems {
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("exceed open file resource limit"))
            .collect();
        Problems {
            count: lines.len(),
            first: lines
                .iter()
                .take(PROBLEMS_KEPT)
                .map(|l| (*l).to_owned())
                .collect(),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if self.worker != 0 {
            // SAFETY: kill only sends a signal, to the worker this master started.
            unsafe { libc::kill(self.worker as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

/// The pid of a child of `master` (nginx's one worker), from `/proc/<pid>/stat`.
fn worker_of(master: u32) -> Option<u32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // After the command name, in parentheses: the state, then the parent's pid.
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if parent == Some(master) {
            return Some(pid);
        }
    }
    None
}

fn configuration(dir: &Path, addr: SocketAddr, connections: u64, buffer: u64) -> String {
    let dir = dir.display();
    // As root, nginx would hand its worker to `nobody`; it stays the current user otherwise.
    // SAFETY: geteuid only reads this process's user id.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    // nginx closes idle ("reusable") connections, nchan's subscribers among them, once fewer
    // than 1/16 of its connection slots are free: with as many slots as files it dropped ~250
    // of 19,000 subscribers ("worker_connections are not enough, reusing connections"). Slots
    // are memory only (allocated at start); the rlimit still bounds the sockets.
    let slots = connections * 9 / 8;
    format!(
        "load_module {MODULE};
daemon off;
{user}
worker_processes 1;
worker_rlimit_nofile {connections};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{
    worker_connections {slots};
}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    nchan_shared_memory_size 512m;
    server {{
        listen {addr};
        location = /sub {{
            nchan_subscriber eventsource;
            nchan_channel_id $arg_topic;
            nchan_subscriber_first_message newest;
        }}
        location = /pub {{
            nchan_publisher;
            nchan_channel_id $arg_topic;
            nchan_message_buffer_length {buffer};
            nchan_message_timeout 1h;
        }}
        location = /status {{
            nchan_stub_status;
        }}
    }}
}}
"
    )
}
