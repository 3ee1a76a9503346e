//! One client connection: TCP, SASL, open and begin, then a single-task event loop that reads
//! and writes at once, so a peer that blocks on writing to us can never deadlock our writes.

use std::time::Duration;

use bytes::BytesMut;
use fe2o3_amqp_types::definitions::{self, Handle};
use fe2o3_amqp_types::performatives::{
    Attach, Begin, ChannelMax, Close, Detach, End, MaxFrameSize, Open, Performative,
};
use fe2o3_amqp_types::primitives::{Binary, Symbol};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use sluice::codec::frame::{
    decode_amqp, decode_raw, decode_sasl, Body, Frame, FrameError, Output, RawFrame, HEARTBEAT,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

/// The largest frame we accept; big frames mean fewer of them for large messages.
pub const OUR_MAX_FRAME_SIZE: u32 = 1 << 20;
/// The session incoming-window we advertise: large enough never to stall a sender.
pub const OUR_INCOMING_WINDOW: u32 = 1 << 30;
/// How long a handshake step may take before the run gives up on the peer.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Read buffer: large, so one read picks up many frames.
const READ_BUFFER: usize = 1 << 20;

const SASL_HEADER: &[u8; 8] = b"AMQP\x03\x01\x00\x00";
const AMQP_HEADER: &[u8; 8] = b"AMQP\x00\x01\x00\x00";

/// Everything that can end a connection early.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from peer: {0}")]
    Frame(#[from] FrameError),
    #[error("peer closed the connection")]
    Eof,
    #[error("timed out waiting for the peer during {0}")]
    Timeout(&'static str),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("SASL {0:?}: authentication refused")]
    Sasl(SaslCode),
    #[error("peer sent {what}: {condition}")]
    Remote {
        what: &'static str,
        condition: String,
    },
}

impl LoadError {
    /// Builds the error for a close, end or detach, with its condition and description.
    pub fn remote(what: &'static str, error: Option<definitions::Error>) -> LoadError {
        let condition = match error {
            Some(e) => format!(
                "{:?}: {}",
                e.condition,
                e.description.as_deref().unwrap_or("(no description)")
            ),
            None => "no error".to_string(),
        };
        LoadError::Remote { what, condition }
    }
}

/// Where to connect and how to authenticate.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: String,
    pub host: String,
    pub user: Option<(String, String)>,
    pub sasl: bool,
    /// amqps: TLS, trusting the CA given with --tls-ca.
    pub tls: Option<Tls>,
}

/// A TLS client (rustls) for amqps:// URLs.
#[derive(Clone)]
pub struct Tls(pub tokio_rustls::TlsConnector);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// A client trusting the CA certificates in the PEM file `ca`.
    pub fn trusting(ca: &std::path::Path) -> Result<Tls, String> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::CertificateDer;
        use tokio_rustls::rustls::{ClientConfig, RootCertStore};
        let mut roots = RootCertStore::empty();
        let certs =
            CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
        for cert in certs {
            let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("{}: {e}", ca.display()))?;
        }
        let provider =
            std::sync::Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
            config,
        ))))
    }
}

impl Endpoint {
    /// Parses `amqp[s]://[user:pass@]host[:port][/...]`; amqps needs `tls`.
    pub fn parse(url: &str, sasl: bool, tls: Option<Tls>) -> Result<Endpoint, String> {
        let (rest, tls, port) = if let Some(rest) = url.strip_prefix("amqps://") {
            let tls = tls.ok_or_else(|| format!("{url}: amqps needs --tls-ca"))?;
            (rest, Some(tls), 5671)
        } else {
            let rest = url
                .strip_prefix("amqp://")
                .ok_or_else(|| format!("{url}: only amqp:// and amqps:// URLs are supported"))?;
            (rest, None, 5672)
        };
        let rest = rest.split('/').next().unwrap_or_default();
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((cred, hp)) => {
                let (u, p) = cred.split_once(':').unwrap_or((cred, ""));
                (Some((u.to_string(), p.to_string())), hp)
            }
            None => (None, rest),
        };
        if hostport.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let has_port = hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.contains(']'));
        let addr = if has_port {
            hostport.to_string()
        } else {
            format!("{hostport}:{port}")
        };
        let host = addr.rsplit_once(':').map_or("", |(h, _)| h).to_string();
        Ok(Endpoint {
            addr,
            host,
            user,
            sasl,
            tls,
        })
    }
}

/// What woke the event loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Bytes arrived in [`Conn::rbuf`].
    Read,
    /// Some output was written.
    Wrote,
    /// The caller's deadline passed.
    Timer,
}

/// An open connection with one session on channel 0.
pub struct Conn {
    rd: Box<dyn AsyncRead + Send + Unpin>,
    wr: Box<dyn AsyncWrite + Send + Unpin>,
    /// TLS may hold written bytes back until a flush.
    unflushed: bool,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Bytes to write; `written` of them already are.
    out: Vec<u8>,
    written: usize,
    control: Output,
    /// The peer's max-frame-size.
    pub remote_max_frame_size: u32,
    /// The peer's begin: its next-outgoing-id and incoming-window.
    pub remote_begin: Begin,
    heartbeat_every: Option<Duration>,
    last_write: Instant,
}

impl Conn {
    /// Connects, authenticates, and opens a connection and a session.
    pub async fn open(ep: &Endpoint, container_id: &str) -> Result<Conn, LoadError> {
        let stream = TcpStream::connect(&ep.addr)
            .await
            .map_err(|source| LoadError::Connect {
                addr: ep.addr.clone(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let (rd, wr): (
            Box<dyn AsyncRead + Send + Unpin>,
            Box<dyn AsyncWrite + Send + Unpin>,
        ) = match &ep.tls {
            Some(Tls(connector)) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::try_from(ep.host.clone())
                    .map_err(|e| LoadError::Protocol(format!("TLS server name: {e}")))?;
                let tls = connector.connect(name, stream).await?;
                let (rd, wr) = tokio::io::split(tls);
                (Box::new(rd), Box::new(wr))
            }
            None => {
                let (rd, wr) = stream.into_split();
                (Box::new(rd), Box::new(wr))
            }
        };
        let mut conn = Conn {
            rd,
            wr,
            unflushed: false,
            rbuf: BytesMut::with_capacity(READ_BUFFER),
            out: Vec::with_capacity(READ_BUFFER),
            written: 0,
            control: Output::default(),
            remote_max_frame_size: 512,
            remote_begin: begin(None),
            heartbeat_every: None,
            last_write: Instant::now(),
        };
        if ep.sasl {
            conn.sasl(ep).await?;
        }
        conn.out.extend_from_slice(AMQP_HEADER);
        conn.send(&Performative::Open(Open {
            container_id: container_id.to_string(),
            hostname: Some(ep.host.clone()),
            max_frame_size: MaxFrameSize(OUR_MAX_FRAME_SIZE),
            channel_max: ChannelMax(0),
            idle_time_out: None,
            outgoing_locales: None,
            incoming_locales: None,
            offered_capabilities: None,
            desired_capabilities: None,
            properties: None,
        }));
        conn.send(&Performative::Begin(begin(None)));
        conn.expect_header(AMQP_HEADER).await?;
        match conn.next_frame("open").await?.body {
            Body::Performative(Performative::Open(open)) => {
                conn.remote_max_frame_size = open.max_frame_size.0.max(512);
                conn.heartbeat_every = open
                    .idle_time_out
                    .filter(|&ms| ms > 0)
                    .map(|ms| Duration::from_millis(u64::from(ms) / 2));
            }
            other => return Err(unexpected("open", other)),
        }
        match conn.next_frame("begin").await?.body {
            Body::Performative(Performative::Begin(b)) => conn.remote_begin = b,
            Body::Performative(Performative::Close(c)) => {
                return Err(LoadError::remote("close", c.error))
            }
            other => return Err(unexpected("begin", other)),
        }
        Ok(conn)
    }

    async fn sasl(&mut self, ep: &Endpoint) -> Result<(), LoadError> {
        self.out.extend_from_slice(SASL_HEADER);
        self.expect_header(SASL_HEADER).await?;
        let mechanisms: SaslMechanisms = decode_sasl(&self.next_raw("sasl-mechanisms").await?)?;
        let offered: Vec<String> = mechanisms
            .sasl_server_mechanisms
            .0
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        let (mechanism, response) = match &ep.user {
            Some((u, p)) => ("PLAIN", Some(format!("\0{u}\0{p}").into_bytes())),
            None => ("ANONYMOUS", None),
        };
        if !offered.iter().any(|m| m == mechanism) {
            return Err(LoadError::Protocol(format!(
                "peer offers SASL {offered:?}, not {mechanism}"
            )));
        }
        self.control.push_sasl(&SaslInit {
            mechanism: Symbol::from(mechanism),
            initial_response: response.map(Binary::from),
            hostname: Some(ep.host.clone()),
        });
        self.out.extend_from_slice(&self.control.take_all());
        let outcome: SaslOutcome = decode_sasl(&self.next_raw("sasl-outcome").await?)?;
        if outcome.code != SaslCode::Ok {
            return Err(LoadError::Sasl(outcome.code));
        }
        Ok(())
    }

    async fn expect_header(&mut self, want: &[u8; 8]) -> Result<(), LoadError> {
        while self.rbuf.len() < 8 {
            self.step_blocking("protocol header").await?;
        }
        let got = self.rbuf.split_to(8);
        if &got[..] != want {
            return Err(LoadError::Protocol(format!(
                "peer answered protocol header {:?}",
                String::from_utf8_lossy(&got)
            )));
        }
        Ok(())
    }

    /// Writes what is queued and reads once, bounded by the handshake timeout.
    async fn step_blocking(&mut self, during: &'static str) -> Result<(), LoadError> {
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        if self.pump(Some(deadline)).await? == Wake::Timer {
            return Err(LoadError::Timeout(during));
        }
        Ok(())
    }

    async fn next_raw(&mut self, during: &'static str) -> Result<RawFrame, LoadError> {
        loop {
            if let Some(raw) = decode_raw(&mut self.rbuf, OUR_MAX_FRAME_SIZE)? {
                return Ok(raw);
            }
            self.step_blocking(during).await?;
        }
    }

    /// The next AMQP frame that is not a heartbeat, outside the event loop.
    pub async fn next_frame(&mut self, during: &'static str) -> Result<Frame, LoadError> {
        loop {
            let frame = decode_amqp(self.next_raw(during).await?)?;
            if !matches!(frame.body, Body::Heartbeat) {
                return Ok(frame);
            }
        }
    }

    /// Attaches a link and waits for the peer's attach. A refused link (null source or
    /// target, followed by a detach) is an error carrying the detach's condition.
    pub async fn attach(&mut self, attach: Attach) -> Result<Attach, LoadError> {
        let ours_is_sender = attach.role == definitions::Role::Sender;
        self.send(&Performative::Attach(attach));
        let reply = match self.next_frame("attach").await?.body {
            Body::Performative(Performative::Attach(a)) => a,
            Body::Performative(Performative::Detach(d)) => {
                return Err(LoadError::remote("detach", d.error))
            }
            Body::Performative(Performative::End(e)) => {
                return Err(LoadError::remote("end", e.error))
            }
            Body::Performative(Performative::Close(c)) => {
                return Err(LoadError::remote("close", c.error))
            }
            other => return Err(unexpected("attach", other)),
        };
        let refused = if ours_is_sender {
            reply.target.is_none()
        } else {
            reply.source.is_none()
        };
        if refused {
            if let Ok(f) = self.next_frame("detach").await {
                if let Body::Performative(Performative::Detach(d)) = f.body {
                    return Err(LoadError::remote("detach", d.error));
                }
            }
            return Err(LoadError::Protocol("link refused without a detach".into()));
        }
        Ok(reply)
    }

    /// Queues a control frame on channel 0.
    pub fn send(&mut self, performative: &Performative) {
        self.control.push_frame(0, performative, &[]);
        self.out.extend_from_slice(&self.control.take_all());
    }

    /// The output buffer, for the hot path to append pre-encoded frames to.
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.out.len() - self.written
    }

    /// Writes queued output and reads input, whichever the socket allows, until one of them
    /// makes progress or `deadline` passes. Sends heartbeats if the peer asked for them.
    pub async fn pump(&mut self, deadline: Option<Instant>) -> Result<Wake, LoadError> {
        let now = Instant::now();
        if let Some(every) = self.heartbeat_every {
            if self.pending() == 0 && now >= self.last_write + every {
                self.out.extend_from_slice(&HEARTBEAT);
            }
        }
        let wake_at = match (deadline, self.heartbeat_every) {
            (Some(d), Some(h)) => Some(d.min(self.last_write + h)),
            (Some(d), None) => Some(d),
            (None, Some(h)) => Some(self.last_write + h),
            (None, None) => None,
        };
        if self.rbuf.capacity() - self.rbuf.len() < READ_BUFFER / 4 {
            self.rbuf.reserve(READ_BUFFER);
        }
        let Conn {
            rd,
            wr,
            unflushed,
            rbuf,
            out,
            written,
            last_write,
            ..
        } = self;
        let has_output = *written < out.len();
        let wake = tokio::select! {
            biased;
            // TLS may keep bytes a write could not send; a flush sends them.
            n = write_or_flush(wr, &out[*written..]), if has_output || *unflushed => {
                match n? {
                    Some(n) => {
                        *written += n;
                        *unflushed = true;
                        if *written == out.len() {
                            out.clear();
                            *written = 0;
                        }
                        *last_write = Instant::now();
                    }
                    None => *unflushed = false,
                }
                Wake::Wrote
            }
            n = rd.read_buf(rbuf) => {
                if n? == 0 {
                    return Err(LoadError::Eof);
                }
                Wake::Read
            }
            () = sleep_until(wake_at.unwrap_or(now)), if wake_at.is_some() => Wake::Timer,
        };
        Ok(wake)
    }

    /// Detaches handle 0, ends the session and closes the connection, waiting briefly for
    /// the peer's close so that everything we wrote is read.
    pub async fn shutdown(mut self) {
        self.send(&Performative::Detach(Detach {
            handle: Handle(0),
            closed: true,
            error: None,
        }));
        self.send(&Performative::End(End { error: None }));
        self.send(&Performative::Close(Close { error: None }));
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            while let Ok(Some(raw)) = decode_raw(&mut self.rbuf, OUR_MAX_FRAME_SIZE) {
                if let Ok(Frame {
                    body: Body::Performative(Performative::Close(_)),
                    ..
                }) = decode_amqp(raw)
                {
                    return;
                }
            }
            match self.pump(Some(deadline)).await {
                Ok(Wake::Timer) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// Our begin: a large incoming window so the peer never waits on us.
pub fn begin(remote_channel: Option<u16>) -> Begin {
    Begin {
        remote_channel,
        next_outgoing_id: 0,
        incoming_window: OUR_INCOMING_WINDOW,
        outgoing_window: u32::MAX,
        handle_max: Handle(1023),
        offered_capabilities: None,
        desired_capabilities: None,
        properties: None,
    }
}

fn unexpected(during: &str, body: Body) -> LoadError {
    LoadError::Protocol(format!("expected {during}, got {body:?}"))
}

/// The current wall-clock time in ns since the UNIX epoch: what the stamp carries.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Writes some of `out`, or with nothing to write, flushes (`None`).
async fn write_or_flush(
    wr: &mut Box<dyn AsyncWrite + Send + Unpin>,
    out: &[u8],
) -> std::io::Result<Option<usize>> {
    if out.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        wr.write(out).await.map(Some)
    }
}
