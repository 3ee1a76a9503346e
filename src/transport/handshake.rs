//! Protocol-header negotiation and SASL (AMQP 1.0 part 2 §2.2, part 5 §5.3).
//!
//! A peer starts with `AMQP 3 1 0 0` (SASL) or `AMQP 0 1 0 0` (no SASL, accepted as anonymous
//! where anonymous is allowed, as WIRE.md §1 asks). For any other header — TLS `AMQP 2 1 0 0`
//! while TLS is not configured, a version we do not speak, or bytes that are not AMQP at all —
//! we answer with the header we do support and close, as §2.2 prescribes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use fe2o3_amqp_types::primitives::{Array, Symbol};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::config::{Config, Exposure};

use super::frame::{decode_raw, decode_sasl, FrameError, Output};

/// The AMQP protocol header (no security layer).
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// The SASL protocol header.
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// The TLS protocol header.
pub const TLS_HEADER: [u8; 8] = *b"AMQP\x02\x01\x00\x00";

/// SASL frames are small; this bounds what an unauthenticated peer can make us buffer.
const SASL_MAX_FRAME: u32 = 4096;
/// How long a peer may take over the header and SASL exchange.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who the peer turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials (SASL ANONYMOUS, or no SASL layer at all).
    Anonymous,
    /// A configured user, authenticated with SASL PLAIN.
    User(String),
}

/// Why a connection ended before the AMQP layer started.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed or closed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer took too long.
    #[error("no complete protocol header and SASL exchange within {0:?}")]
    Timeout(Duration),
    /// The peer asked for a protocol we do not speak; it was told which one we do.
    #[error("unsupported protocol header {0:02x?}")]
    UnsupportedHeader([u8; 8]),
    /// A SASL frame was malformed or unexpected.
    #[error("bad SASL frame: {0}")]
    Frame(#[from] FrameError),
    /// Authentication failed; the peer got `sasl-outcome` auth.
    #[error("authentication failed: {0}")]
    AuthFailed(String),
}

/// Runs the header and SASL exchange. On success the AMQP header has been exchanged and `rbuf`
/// holds whatever the peer sent after it.
pub async fn negotiate<R, W>(
    rd: &mut R,
    wr: &mut W,
    rbuf: &mut BytesMut,
    config: &Config,
    peer: SocketAddr,
) -> Result<Identity, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        negotiate_inner(rd, wr, rbuf, config, peer),
    )
    .await
    .map_err(|_| HandshakeError::Timeout(HANDSHAKE_TIMEOUT))?
}

async fn negotiate_inner<R, W>(
    rd: &mut R,
    wr: &mut W,
    rbuf: &mut BytesMut,
    config: &Config,
    peer: SocketAddr,
) -> Result<Identity, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let policy = Policy::for_peer(config, peer);
    let header = read_header(rd, rbuf).await?;
    match header {
        SASL_HEADER => {
            wr.write_all(&SASL_HEADER).await?;
            let identity = sasl(rd, wr, rbuf, config, &policy).await?;
            let header = read_header(rd, rbuf).await?;
            if header != AMQP_HEADER {
                wr.write_all(&AMQP_HEADER).await?;
                return Err(HandshakeError::UnsupportedHeader(header));
            }
            wr.write_all(&AMQP_HEADER).await?;
            Ok(identity)
        }
        AMQP_HEADER if policy.anonymous => {
            wr.write_all(&AMQP_HEADER).await?;
            Ok(Identity::Anonymous)
        }
        other => {
            // Not acceptable as it stands: name the header we would accept, then close.
            wr.write_all(&SASL_HEADER).await?;
            wr.flush().await?;
            Err(HandshakeError::UnsupportedHeader(other))
        }
    }
}

/// Which mechanisms this peer may use.
struct Policy {
    anonymous: bool,
    plain: bool,
}

impl Policy {
    fn for_peer(config: &Config, peer: SocketAddr) -> Policy {
        let loopback = peer.ip().to_canonical().is_loopback();
        let allowed = |e: Exposure| match e {
            Exposure::Never => false,
            Exposure::Loopback => loopback,
            Exposure::Everywhere => true,
        };
        Policy {
            anonymous: allowed(config.auth.anonymous),
            // No TLS yet: every socket is plain TCP.
            plain: allowed(config.auth.plain_without_tls),
        }
    }
}

async fn read_header<R: AsyncRead + Unpin>(
    rd: &mut R,
    rbuf: &mut BytesMut,
) -> Result<[u8; 8], HandshakeError> {
    while rbuf.len() < 8 {
        if rd.read_buf(rbuf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
    let header = rbuf.split_to(8);
    let mut out = [0u8; 8];
    out.copy_from_slice(&header);
    Ok(out)
}

async fn sasl<R, W>(
    rd: &mut R,
    wr: &mut W,
    rbuf: &mut BytesMut,
    config: &Config,
    policy: &Policy,
) -> Result<Identity, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut mechanisms = Vec::new();
    if policy.anonymous {
        mechanisms.push(Symbol::from("ANONYMOUS"));
    }
    // PLAIN is always offered, so a peer that may not use it learns so from a failed login
    // rather than from an empty list the spec does not allow.
    mechanisms.push(Symbol::from("PLAIN"));
    let mut out = Output::default();
    out.push_sasl(&SaslMechanisms {
        sasl_server_mechanisms: Array(mechanisms),
    });
    wr.write_all(&out.take_all()).await?;

    let raw = loop {
        if let Some(raw) = decode_raw(rbuf, SASL_MAX_FRAME)? {
            break raw;
        }
        if rd.read_buf(rbuf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    };
    let init: SaslInit = decode_sasl(&raw)?;
    match authenticate(&init, config, policy) {
        Ok(identity) => {
            send_outcome(wr, SaslCode::Ok).await?;
            Ok(identity)
        }
        Err(reason) => {
            // A failed login is answered late, and never says which part was wrong.
            tokio::time::sleep(Duration::from_millis(config.auth.failure_delay_ms)).await;
            send_outcome(wr, SaslCode::Auth).await?;
            wr.flush().await?;
            Err(HandshakeError::AuthFailed(reason))
        }
    }
}

/// Decides a `sasl-init`. The reason is for our log only.
fn authenticate(init: &SaslInit, config: &Config, policy: &Policy) -> Result<Identity, String> {
    match init.mechanism.as_str() {
        "ANONYMOUS" if policy.anonymous => Ok(Identity::Anonymous),
        "ANONYMOUS" => Err("ANONYMOUS is not allowed for this peer (auth.anonymous)".into()),
        "PLAIN" => {
            let response = init
                .initial_response
                .as_ref()
                .map(|b| b.as_ref())
                .unwrap_or(&[]);
            let mut parts = response.split(|&b| b == 0);
            let (_authzid, authcid, password) = (parts.next(), parts.next(), parts.next());
            let (Some(user), Some(password), None) = (authcid, password, parts.next()) else {
                return Err("malformed PLAIN response".into());
            };
            let user = String::from_utf8_lossy(user).into_owned();
            if !policy.plain {
                return Err(format!(
                    "PLAIN over an unencrypted connection is not allowed for this peer (auth.plain_without_tls), user '{user}'"
                ));
            }
            if config.authenticate(&user, &String::from_utf8_lossy(password)) {
                Ok(Identity::User(user))
            } else {
                Err(format!("wrong user name or password for '{user}'"))
            }
        }
        other => Err(format!("unsupported mechanism {other}")),
    }
}

async fn send_outcome<W: AsyncWrite + Unpin>(wr: &mut W, code: SaslCode) -> std::io::Result<()> {
    let mut out = Output::default();
    out.push_sasl(&SaslOutcome {
        code,
        additional_data: None,
    });
    wr.write_all(&out.take_all()).await
}
