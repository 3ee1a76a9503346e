//! TLS for the AMQP listeners and the admin API: the server configuration made from
//! `[tls]`'s PEM files with rustls (aws-lc-rs as the crypto provider), swapped whole on reload so a
//! connection keeps the configuration it started with, and the client certificate's subject CN
//! for SASL EXTERNAL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::crypto::{aws_lc_rs, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{ClientAuth, TlsConfig};

/// Why a certificate, key or CA file could not be used; names the file.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {why}")]
pub struct TlsError {
    path: PathBuf,
    why: String,
}

impl TlsError {
    fn new(path: &Path, why: impl std::fmt::Display) -> TlsError {
        TlsError {
            path: path.to_owned(),
            why: why.to_string(),
        }
    }
}

/// The PEM files a TLS server configuration is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA that client certificates must chain to, and whether they must show one.
    pub client_ca: Option<(PathBuf, ClientAuth)>,
}

impl TlsFiles {
    /// A server certificate and key, no client certificates.
    pub fn server(cert: &Path, key: &Path) -> TlsFiles {
        TlsFiles {
            cert: cert.to_owned(),
            key: key.to_owned(),
            client_ca: None,
        }
    }
}

impl From<&TlsConfig> for TlsFiles {
    fn from(c: &TlsConfig) -> TlsFiles {
        TlsFiles {
            cert: c.cert.clone(),
            key: c.key.clone(),
            client_ca: c.client_ca.clone().map(|ca| (ca, c.client_auth)),
        }
    }
}

/// A TLS server configuration that can be reloaded from its files, with the counts of
/// handshakes for `/metrics`.
#[derive(Debug)]
pub struct TlsContext {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
    handshakes: AtomicU64,
    failures: AtomicU64,
}

impl TlsContext {
    /// Reads the files; fails naming the one that cannot be used.
    pub fn load(files: TlsFiles) -> Result<TlsContext, TlsError> {
        let config = server_config(&files)?;
        Ok(TlsContext {
            files,
            current: RwLock::new(Arc::new(config)),
            handshakes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Reads the files again. On success new connections use them (open ones keep theirs); on
    /// failure the configuration in use stays and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.files)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(config);
        Ok(())
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        TlsAcceptor::from(config)
    }

    /// Runs the TLS handshake on `stream`, counting it.
    pub async fn accept<S>(&self, stream: S) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let accepted = self.acceptor().accept(stream).await;
        match &accepted {
            Ok(_) => self.handshakes.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failures.fetch_add(1, Ordering::Relaxed),
        };
        accepted
    }

    /// Counts a handshake that failed before rustls saw it (plain AMQP on the TLS port).
    pub fn failed(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Completed TLS handshakes.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Failed TLS handshakes.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

/// What a TLS connection tells the SASL layer about its peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Channel {
    /// The bytes travel encrypted, so PLAIN may be used from anywhere.
    pub encrypted: bool,
    /// The subject CN of a client certificate the TLS layer verified against `client_ca`.
    pub peer_cn: Option<String>,
    /// The layer below may hold written bytes back until it is flushed (TLS records,
    /// WebSocket messages), so the connection flushes whenever it has nothing left to write.
    pub buffered: bool,
}

impl Channel {
    /// A plain TCP socket.
    pub fn plain() -> Channel {
        Channel::default()
    }

    /// What the TLS session of `stream` says about its peer.
    pub fn of<S>(stream: &TlsStream<S>) -> Channel {
        let peer_cn = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|leaf| subject_cn(leaf));
        Channel {
            encrypted: true,
            peer_cn,
            buffered: true,
        }
    }
}

/// The first CN of a certificate's subject, if it has one in a string form.
fn subject_cn(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(aws_lc_rs::default_provider())
}

fn server_config(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let chain = read_certs(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        TlsError::new(
            &files.key,
            format!("no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"),
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::new(&files.cert, e))?;
    let builder = match &files.client_ca {
        Some((ca, mode)) if *mode != ClientAuth::None => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::new(ca, format!("not a usable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = match mode {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            }
            .build()
            .map_err(|e| TlsError::new(ca, e))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::new(&files.key, format!("does not fit the certificate: {e}")))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::new(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::new(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::new(path, "no PEM certificate in the file"));
    }
    Ok(certs)
}
