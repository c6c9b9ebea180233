//! HTTPS: the certificate chain and private key, read from PEM files at start and again on
//! SIGHUP, and the TLS configuration every new connection is accepted with (ALPN: `h2`, then
//! `http/1.1`).
//!
//! A reload swaps the configuration new connections get; connections already open keep the
//! one they were accepted with. A reload that fails (a file missing, half written, or a key
//! that does not fit the certificate) changes nothing: the certificate in use stays, and the
//! reason is logged. At start the same failure stops the server with that reason.
//!
//! rustls with *ring* (no OpenSSL, no AWS-LC): TLS 1.3 and 1.2 with classical key exchange
//! (X25519, P-256, P-384); no post-quantum hybrid, which only the aws-lc-rs provider offers.

use parking_lot::RwLock;
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use std::{
    fmt, io,
    path::{Path, PathBuf},
    sync::Arc,
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The two files HTTPS is served with, and the configuration made of them last.
pub struct Certificates {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

/// Which of the two files.
#[derive(Debug, Clone, Copy)]
pub enum PemFile {
    Certificate,
    Key,
}

impl fmt::Display for PemFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PemFile::Certificate => "certificate (--tls-cert)",
            PemFile::Key => "key (--tls-key)",
        })
    }
}

/// Why the files cannot serve HTTPS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("--tls-cert and --tls-key go together: give both, or neither")]
    HalfGiven,
    #[error("cannot read the TLS {file} file {path}: {source}")]
    Read {
        file: PemFile,
        path: String,
        source: io::Error,
    },
    #[error(
        "the TLS {file} file {path} is not usable PEM ({reason}): it should hold {}",
        expected(.file)
    )]
    NotPem {
        file: PemFile,
        path: String,
        reason: String,
    },
    #[error("the TLS key {key} does not fit the certificate {cert}: {source}")]
    Refused {
        cert: String,
        key: String,
        source: rustls::Error,
    },
}

fn expected(file: &PemFile) -> &'static str {
    match file {
        PemFile::Certificate => {
            "the certificate chain, the server's own certificate first (BEGIN CERTIFICATE)"
        }
        PemFile::Key => "its private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
    }
}

impl Certificates {
    /// The files of `--tls-cert` and `--tls-key`, read and checked; `None` without either.
    pub fn from_config(
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Option<Arc<Self>>, TlsError> {
        let (cert, key) = match (cert, key) {
            (Some(cert), Some(key)) => (cert.to_owned(), key.to_owned()),
            (None, None) => return Ok(None),
            _ => return Err(TlsError::HalfGiven),
        };
        let config = server_config(&cert, &key)?;
        Ok(Some(Arc::new(Self {
            cert,
            key,
            current: RwLock::new(config),
        })))
    }

    /// Reads both files again; on success new connections get what they hold, otherwise
    /// nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert, &self.key)?;
        *self.current.write() = config;
        Ok(())
    }

    /// Accepts a new connection with the configuration in force now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().clone())
    }

    /// Reloads on every SIGHUP until shutdown, logging what happened.
    pub async fn reload_on_hangup(self: Arc<Self>, shutdown: CancellationToken) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangups = match signal(SignalKind::hangup()) {
                Ok(hangups) => hangups,
                Err(error) => {
                    tracing::error!("cannot listen for SIGHUP, so no certificate reloads: {error}");
                    return;
                }
            };
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    hangup = hangups.recv() => if hangup.is_none() { return },
                }
                match self.reload() {
                    Ok(()) => tracing::info!(
                        "SIGHUP: new connections get the certificate in {}",
                        self.cert.display()
                    ),
                    Err(error) => {
                        tracing::error!("SIGHUP: {error}; the certificate in use stays")
                    }
                }
            }
        }
        #[cfg(not(unix))]
        let _ = shutdown;
    }
}

/// What both files make: rustls's configuration for a server offering `h2` and `http/1.1`.
fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let not_pem = |file, path: &Path, reason: String| TlsError::NotPem {
        file,
        path: path.display().to_string(),
        reason,
    };
    let cert_pem = read(PemFile::Certificate, cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_pem(PemFile::Certificate, cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(not_pem(
            PemFile::Certificate,
            cert,
            "no certificate in it".into(),
        ));
    }
    let key_pem = read(PemFile::Key, key)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => {
            not_pem(PemFile::Key, key, "no private key in it".into())
        }
        other => not_pem(PemFile::Key, key, other.to_string()),
    })?;
    // Deprecated since rustls 0.23.48 because *ring* has no post-quantum key exchange; its
    // groups and suites are the classical ones the aws-lc-rs provider offers beside its hybrid,
    // without building AWS-LC into the server.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| {
            builder
                .with_no_client_auth()
                .with_single_cert(chain, private_key)
        })
        .map_err(|source| TlsError::Refused {
            cert: cert.display().to_string(),
            key: key.display().to_string(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(file: PemFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        file,
        path: path.display().to_string(),
        source,
    })
}
