//! The servers under test, started afresh for every run: the release `tidings` (embedded
//! SQLite in a temporary folder), nginx + nchan ([`super::nchan`]), and `tidings` again on
//! HTTPS (`--tls-cert`, `--tls-key`: the bench's certificate, [`crate::tls`]), loaded over
//! HTTP/1.1 over TLS.

use super::{REPLAY_UPDATES, nchan::Nginx};
use crate::{
    load::{self, Opened, Publisher},
    server::{self, Child, Problems, cpu_time, memory_kib, random_key},
    tls::Certificate,
};
use std::{
    io,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio_rustls::TlsConnector;

/// For a server to count its subscribers as expected.
const COUNT_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Tidings,
    Nchan,
    /// Tidings on HTTPS, loaded over HTTP/1.1 over TLS.
    TidingsTls,
}

/// In the order each run starts them.
pub const KINDS: [Kind; 3] = [Kind::Tidings, Kind::Nchan, Kind::TidingsTls];

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Tidings => "Tidings",
            Kind::Nchan => "nchan",
            Kind::TidingsTls => "Tidings HTTPS",
        }
    }

    /// Whether a publish answered `status` was taken.
    pub fn accepts(self, status: u16) -> bool {
        match self {
            Kind::Tidings | Kind::TidingsTls => status == 200,
            Kind::Nchan => matches!(status, 201 | 202),
        }
    }
}

/// Where and how to subscribe and publish; cheap to copy to another thread.
#[derive(Clone)]
pub struct Endpoint {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// A publisher token (Tidings).
    token: String,
    /// The TLS client, on HTTPS (ALPN `http/1.1`).
    tls: Option<TlsConnector>,
    /// The TLS client offering `h2`, on HTTPS.
    pub tls_h2: Option<TlsConnector>,
}

impl Endpoint {
    /// An EventSource request for `topic`, resuming after `last_event_id` if given.
    pub fn subscription(&self, topic: &str, last_event_id: Option<&str>) -> Arc<[u8]> {
        let target = match self.kind {
            Kind::Tidings | Kind::TidingsTls => format!("/.well-known/mercure?topic={topic}"),
            Kind::Nchan => format!("/sub?topic={topic}"),
        };
        let resume = last_event_id.map_or(String::new(), |id| format!("Last-Event-ID: {id}\r\n"));
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{resume}\r\n"
        );
        Arc::from(request.into_bytes())
    }

    /// A keep-alive publisher to `topic`.
    pub async fn publisher(&self, topic: &str) -> io::Result<Publisher> {
        match self.kind {
            Kind::Tidings | Kind::TidingsTls => {
                Publisher::mercure_over(self.addr, self.tls.as_ref(), &self.token, topic).await
            }
            Kind::Nchan => Publisher::body(self.addr, &format!("/pub?topic={topic}")).await,
        }
    }

    /// One subscription per request ([`load::open`]), over TLS on HTTPS.
    pub async fn open(&self, requests: Vec<Arc<[u8]>>) -> Opened {
        load::open_over(self.addr, self.tls.as_ref(), requests).await
    }
}

/// A server under test; stopped when dropped.
pub struct Server {
    pub endpoint: Endpoint,
    /// The process that serves (nginx: its worker): its CPU time and RSS are the figures.
    pid: u32,
    process: Process,
}

enum Process {
    /// The server, then its history's folder (dropped in this order).
    Tidings {
        child: Child,
        _data: tempfile::TempDir,
    },
    Nchan(Nginx),
}

impl Server {
    /// Starts a server on `cpu` alone (Tidings with one tokio worker thread, nginx with one
    /// worker process), able to hold `open_files` connections; on HTTPS, with `certificate`
    /// (or the reason there is none).
    pub fn start(
        kind: Kind,
        cpu: Option<usize>,
        open_files: u64,
        certificate: &Result<Certificate, String>,
    ) -> io::Result<Self> {
        match kind {
            Kind::Tidings | Kind::TidingsTls => {
                let binary = server::binary()?;
                let data = tempfile::tempdir()?;
                let key = random_key()?;
                // Every update of a run kept (the default keeps 100,000): none of those the
                // replay resumes is pruned.
                let mut extra = vec!["--history-max-events".to_owned(), "10000000".to_owned()];
                let (mut tls, mut tls_h2) = (None, None);
                if kind == Kind::TidingsTls {
                    let certificate = certificate
                        .as_ref()
                        .map_err(|e| io::Error::other(format!("no certificate: {e}")))?;
                    for (flag, path) in [
                        ("--tls-cert", certificate.chain()),
                        ("--tls-key", certificate.key()),
                    ] {
                        extra.push(flag.to_owned());
                        extra.push(path.display().to_string());
                    }
                    tls = Some(certificate.connector(b"http/1.1")?);
                    tls_h2 = Some(certificate.connector(b"h2")?);
                }
                let child = Child::spawn_with(&binary, data.path(), &key, &extra, cpu)?;
                Ok(Self {
                    endpoint: Endpoint {
                        kind,
                        addr: child.addr,
                        token: load::token(&key)?,
                        tls,
                        tls_h2,
                    },
                    pid: child.pid(),
                    process: Process::Tidings { child, _data: data },
                })
            }
            Kind::Nchan => {
                let nginx = Nginx::start(cpu, open_files, REPLAY_UPDATES * 2)?;
                Ok(Self {
                    endpoint: Endpoint {
                        kind,
                        addr: nginx.addr,
                        token: String::new(),
                        tls: None,
                        tls_h2: None,
                    },
                    pid: nginx.worker,
                    process: Process::Nchan(nginx),
                })
            }
        }
    }

    pub fn kind(&self) -> Kind {
        self.endpoint.kind
    }

    /// The subscribers the server counts.
    async fn subscribers(&self) -> io::Result<u64> {
        let addr = self.endpoint.addr;
        match self.kind() {
            Kind::Tidings | Kind::TidingsTls => {
                let tls = self.endpoint.tls.as_ref();
                server::metric_over(addr, tls, "tidings_subscribers").await
            }
            Kind::Nchan => {
                let status = server::get(addr, "/status").await?;
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("subscribers: ")?.trim().parse().ok())
                    .ok_or_else(|| io::Error::other("no subscriber count in nchan's status"))
            }
        }
    }

    /// Waits until the server counts `n` subscribers.
    pub async fn wait_for_subscribers(&self, n: usize) -> io::Result<()> {
        let started = Instant::now();
        loop {
            let counted = self.subscribers().await?;
            if counted == n as u64 {
                return Ok(());
            }
            if started.elapsed() > COUNT_TIMEOUT {
                return Err(io::Error::other(format!(
                    "the server counts {counted} subscribers, not {n}, after {COUNT_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The serving process's CPU time so far.
    pub fn cpu(&self) -> io::Result<Duration> {
        cpu_time(self.pid)
    }

    pub fn rss_kib(&self) -> io::Result<u64> {
        Ok(memory_kib(self.pid)?.0)
    }

    /// The WARN and ERROR lines it logged (nginx: `warn` and above).
    pub fn problems(&self) -> Problems {
        match &self.process {
            Process::Tidings { child, .. } => child.take_problems(),
            Process::Nchan(nginx) => nginx.problems(),
        }
    }
}
