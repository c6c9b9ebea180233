//! HTTPS for the bench: a certificate for 127.0.0.1 made at bench time by `openssl` (as the
//! server's tests make theirs), signed by an authority of the bench's own in a temporary folder,
//! and the load generator's TLS client, which trusts that authority and nobody else.
//!
//! The client is rustls with *ring*, as the server is: TLS 1.3, X25519, AES-128-GCM first (a
//! browser's order), one ALPN protocol (`http/1.1`, or `h2`), and no session resumption, so that every connection
//! costs the server a full handshake, as a new browser's does.

use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use std::{
    io,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
};
use tokio_rustls::TlsConnector;

/// A P-256 key and a certificate for it, valid two days.
const NEW_CERTIFICATE: &str =
    "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2";

/// The server's certificate chain and key, in a temporary folder (removed when dropped).
pub struct Certificate {
    dir: tempfile::TempDir,
}

impl Certificate {
    /// An authority, and a certificate for `IP:127.0.0.1` it signed; an error saying why not.
    pub fn new() -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        openssl(
            dir.path(),
            &format!("{NEW_CERTIFICATE} -keyout ca.key -out ca.pem -subj /CN=tidings-bench-ca"),
        )?;
        openssl(
            dir.path(),
            &format!(
                "{NEW_CERTIFICATE} -keyout server.key -out server.leaf -subj /CN=tidings-bench \
                 -CA ca.pem -CAkey ca.key -addext subjectAltName=IP:127.0.0.1 \
                 -addext basicConstraints=critical,CA:FALSE"
            ),
        )?;
        let chain = [
            std::fs::read(dir.path().join("server.leaf"))?,
            std::fs::read(dir.path().join("ca.pem"))?,
        ]
        .concat();
        std::fs::write(dir.path().join("server.pem"), chain)?;
        Ok(Self { dir })
    }

    /// PEM: the server's certificate, then the authority's (`--tls-cert`).
    pub fn chain(&self) -> PathBuf {
        self.dir.path().join("server.pem")
    }

    /// PEM: the server's private key (`--tls-key`).
    pub fn key(&self) -> PathBuf {
        self.dir.path().join("server.key")
    }

    /// A client that trusts this authority only, offering `alpn` (`http/1.1`, `h2`), resuming
    /// no session.
    pub fn connector(&self, alpn: &[u8]) -> io::Result<TlsConnector> {
        let root = CertificateDer::from_pem_file(self.dir.path().join("ca.pem"))
            .map_err(io::Error::other)?;
        let mut roots = RootCertStore::empty();
        roots.add(root).map_err(io::Error::other)?;
        // The server's provider (see server/src/edge/tls.rs); its suites in a browser's order.
        #[allow(deprecated)]
        let mut provider = rustls::crypto::ring::default_provider();
        provider
            .cipher_suites
            .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        config.resumption = rustls::client::Resumption::disabled();
        Ok(TlsConnector::from(Arc::new(config)))
    }
}

/// The name the client checks the server's certificate for.
pub fn server_name() -> ServerName<'static> {
    ServerName::from(std::net::IpAddr::from([127, 0, 0, 1]))
}

/// Runs `openssl` in `dir` with these arguments, separated by spaces.
fn openssl(dir: &Path, args: &str) -> io::Result<()> {
    let output = Command::new("openssl")
        .args(args.split(' '))
        .current_dir(dir)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run openssl: {e}")))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "openssl {}: {}",
            args.split(' ').next().unwrap_or(""),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}
