//! Certificates for the TLS tests, made in process with rcgen: a CA, a server certificate for
//! `localhost` and 127.0.0.1 signed by it, client certificates signed by it, and a second,
//! untrusted CA with a client certificate of its own. Written as PEM files in a temporary
//! directory, as an operator's would be.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A CA that signs certificates.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    /// A new self-signed CA called `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-signed CA");
        Ca { cert, key }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A server certificate for localhost and 127.0.0.1: (certificate PEM, key PEM).
    pub fn server(&self) -> (String, String) {
        self.sign(
            "localhost",
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate whose subject CN is `cn`: (certificate PEM, key PEM).
    pub fn client(&self, cn: &str) -> (String, String) {
        self.sign(cn, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn sign(
        &self,
        cn: &str,
        names: Vec<String>,
        usage: ExtendedKeyUsagePurpose,
    ) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// The PEM files of one test: `ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key`
/// (CN `client`), and `rogue.pem`/`rogue.key` (CN `client`, from another CA).
pub struct Certs {
    dir: tempfile::TempDir,
    /// The CA that signed the server's and the client's certificates.
    pub ca: Ca,
}

impl Certs {
    /// Makes the CAs and writes every file.
    pub fn new() -> Certs {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca = Ca::new("sluice test CA");
        let rogue_ca = Ca::new("someone else's CA");
        let write = |name: &str, text: &str| {
            std::fs::write(dir.path().join(name), text).expect("write PEM")
        };
        write("ca.pem", &ca.pem());
        let (cert, key) = ca.server();
        write("server.pem", &cert);
        write("server.key", &key);
        let (cert, key) = ca.client("client");
        write("client.pem", &cert);
        write("client.key", &key);
        let (cert, key) = rogue_ca.client("client");
        write("rogue.pem", &cert);
        write("rogue.key", &key);
        write("rogue-ca.pem", &rogue_ca.pem());
        Certs { dir, ca }
    }

    /// The path of one of the files.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory holding them.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `[tls]` table for them on an ephemeral loopback port, with `extra` lines.
    pub fn tls_toml(&self, extra: &str) -> String {
        format!(
            "[tls]\nlisten = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n{extra}\n",
            self.path("server.pem").display(),
            self.path("server.key").display()
        )
    }
}

/// A client trusting the CA in `ca_file`, showing `client` (certificate and key files) if given.
pub fn connector(ca_file: &Path, client: Option<(&Path, &Path)>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).expect("CA file") {
        roots.add(cert.expect("CA PEM")).expect("CA certificate");
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("client certificate file")
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificate PEM");
            let key = PrivateKeyDer::from_pem_file(key).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate and key")
        }
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

/// Opens TLS to `addr` as `localhost` with `connector`.
pub async fn connect(
    connector: &TlsConnector,
    addr: std::net::SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("server name");
    connector.connect(name, tcp).await
}
