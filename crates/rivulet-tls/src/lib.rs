//! TLS for Rivulet's listeners (Kafka, AMQP, HTTP) with rustls: a server certificate and
//! key from PEM files, read again when either file changes (checked at most once a second,
//! at handshakes), so a renewed certificate needs no restart; and optionally client
//! certificates required and verified against a CA (mutual TLS).

mod subject;

pub use subject::common_name;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::ring::{default_provider, sign::any_supported_type};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

pub use tokio_rustls::server::TlsStream;

/// How often at most the certificate files are checked for changes.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Where a listener's certificate, key and (for mutual TLS) client CA are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates client certificates must chain to; `None`: no client
    /// certificates asked for.
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// rustls refused the configuration (a key that does not fit, an unusable CA).
    #[error("TLS configuration: {0}")]
    Config(String),
}

impl TlsError {
    /// A stable numeric code.
    pub fn code(&self) -> u32 {
        match self {
            TlsError::File { .. } => 9001,
            TlsError::Config(_) => 9002,
        }
    }
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Reads a certificate chain and key into a signing key.
fn load(files: &TlsFiles) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| file_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error(&files.cert, e))?;
    if chain.is_empty() {
        return Err(file_error(&files.cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_error(&files.key, e))?;
    let signing = any_supported_type(&key).map_err(|e| file_error(&files.key, e))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError::Config(format!("the key does not belong to the certificate: {e}")))?;
    Ok(Arc::new(certified))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The current certificate, and what the files looked like when it was read.
#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
}

/// Hands out the certificate, reading the files again when they changed. A file that
/// fails to load keeps the previous certificate in use (and is logged).
#[derive(Debug)]
struct Reloading {
    files: TlsFiles,
    loaded: Mutex<Loaded>,
}

impl Reloading {
    fn new(files: TlsFiles) -> Result<Reloading, TlsError> {
        let key = load(&files)?;
        let stamps = (modified(&files.cert), modified(&files.key));
        Ok(Reloading {
            files,
            loaded: Mutex::new(Loaded {
                key,
                stamps,
                checked: Instant::now(),
            }),
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        let mut loaded = self.loaded.lock().unwrap_or_else(|p| p.into_inner());
        if loaded.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            loaded.checked = Instant::now();
            let stamps = (modified(&self.files.cert), modified(&self.files.key));
            if stamps != loaded.stamps {
                match load(&self.files) {
                    Ok(key) => {
                        tracing::info!(cert = %self.files.cert.display(), "Reloaded the TLS certificate");
                        loaded.key = key;
                        loaded.stamps = stamps;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Reloading the TLS certificate failed; keeping the previous one")
                    }
                }
            }
        }
        loaded.key.clone()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Accepts TLS connections with one listener's configuration. Cheap to clone.
#[derive(Clone)]
pub struct Acceptor(TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Acceptor")
    }
}

impl Acceptor {
    /// Runs the server side of the handshake on `stream`.
    pub async fn accept<S>(&self, stream: S) -> std::io::Result<TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        self.0.accept(stream).await
    }
}

/// A TLS acceptor for `files`, offering `alpn` protocols (empty: none).
pub fn acceptor(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Acceptor, TlsError> {
    let provider = Arc::new(default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
                roots
                    .add(cert.map_err(|e| file_error(ca, e))?)
                    .map_err(|e| file_error(ca, e))?;
            }
            if roots.is_empty() {
                return Err(file_error(ca, "no CA certificate in the file"));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Reloading::new(files.clone())?));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
}

/// Connects a client over TLS to `server_name` on `stream`, trusting the CA certificates
/// in the PEM file `ca` (for Rivulet's own tools talking to a TLS listener).
pub async fn connect_client(
    stream: tokio::net::TcpStream,
    server_name: &str,
    ca: &Path,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| file_error(ca, e))? {
        roots
            .add(cert.map_err(|e| file_error(ca, e))?)
            .map_err(|e| file_error(ca, e))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| TlsError::Config(format!("server name {server_name:?}: {e}")))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(|e| TlsError::Config(format!("TLS handshake with {server_name}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }

    #[test]
    fn a_changed_certificate_is_served_after_the_check_interval() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = write_pair(dir.path(), "first.test");
        let files = TlsFiles {
            cert,
            key,
            client_ca: None,
        };
        let r = Reloading::new(files.clone()).expect("loads");
        let first = r.current().cert[0].clone();
        std::thread::sleep(Duration::from_millis(20));
        write_pair(dir.path(), "second.test");
        assert_eq!(
            r.current().cert[0],
            first,
            "not checked again within the interval"
        );
        std::thread::sleep(RELOAD_CHECK_INTERVAL);
        assert_ne!(r.current().cert[0], first, "the new certificate is served");
        // A broken file keeps the last good certificate.
        std::fs::write(&files.key, "not a key").expect("write");
        std::thread::sleep(RELOAD_CHECK_INTERVAL);
        assert!(!r.current().cert.is_empty());
    }

    #[test]
    fn missing_or_mismatched_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, _) = write_pair(dir.path(), "a.test");
        let other = tempfile::tempdir().expect("tempdir");
        let (_, other_key) = write_pair(other.path(), "b.test");
        let mismatched = TlsFiles {
            cert: cert.clone(),
            key: other_key,
            client_ca: None,
        };
        assert!(matches!(acceptor(&mismatched, &[]), Err(TlsError::Config(_))));
        let missing = TlsFiles {
            cert,
            key: dir.path().join("nope.pem"),
            client_ca: None,
        };
        assert!(matches!(acceptor(&missing, &[]), Err(TlsError::File { .. })));
    }
}
