//! Protocol-header negotiation and SASL (AMQP 1.0 part 2 §2.2, part 5 §5.3).
//!
//! A peer starts with `AMQP 3 1 0 0` (SASL) or `AMQP 0 1 0 0` (no SASL, accepted as anonymous
//! where anonymous is allowed, as WIRE.md §1 asks). For any other header — TLS `AMQP 2 1 0 0`
//! while TLS is not configured, a version we do not speak, or bytes that are not AMQP at all —
//! we answer with the header we do support and close, as §2.2 prescribes.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use fe2o3_amqp_types::primitives::{Array, Binary, Symbol};
use fe2o3_amqp_types::sasl::{
    SaslChallenge, SaslCode, SaslInit, SaslMechanisms, SaslOutcome, SaslResponse,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::config::{
    has_hashed_passwords, scram_keys_for, scram_offered, user_for_certificate, Exposure,
};

use super::scram;
use super::settings::TransportConfig;
use super::tls::Channel;
use crate::logging::PeerText;

use crate::codec::frame::{decode_raw, decode_sasl, FrameError, Output};

/// The AMQP protocol header (no security layer).
pub const AMQP_HEADER: [u8; 8] = *b"AMQP\x00\x01\x00\x00";
/// The SASL protocol header.
pub const SASL_HEADER: [u8; 8] = *b"AMQP\x03\x01\x00\x00";
/// The TLS protocol header.
pub const TLS_HEADER: [u8; 8] = *b"AMQP\x02\x01\x00\x00";

/// SASL frames are small; this bounds what an unauthenticated peer can make us buffer.
const SASL_MAX_FRAME: u32 = 4096;

/// Who the peer turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// No credentials (SASL ANONYMOUS, or no SASL layer at all).
    Anonymous,
    /// A configured user, authenticated with SASL PLAIN or EXTERNAL (or, without users
    /// configured, the CN of a verified client certificate).
    User(String),
}

/// Why a connection ended before the AMQP layer started.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed or closed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer took too long.
    #[error(
        "no protocol header, SASL exchange and open within {0:?} (broker.handshake_timeout_ms)"
    )]
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

/// Runs the header and SASL exchange, which must end by `deadline` (the handshake timeout,
/// counted from accept: the peer's `open` must arrive by then too). On success the AMQP header
/// has been exchanged and `rbuf` holds whatever the peer sent after it.
pub async fn negotiate<R, W>(
    rd: &mut R,
    wr: &mut W,
    rbuf: &mut BytesMut,
    config: &TransportConfig,
    peer: SocketAddr,
    deadline: Instant,
    channel: &Channel,
) -> Result<Identity, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tokio::time::timeout_at(
        deadline,
        negotiate_inner(rd, wr, rbuf, config, peer, channel),
    )
    .await
    .map_err(|_| HandshakeError::Timeout(config.handshake_timeout))?
}

async fn negotiate_inner<R, W>(
    rd: &mut R,
    wr: &mut W,
    rbuf: &mut BytesMut,
    config: &TransportConfig,
    peer: SocketAddr,
    channel: &Channel,
) -> Result<Identity, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let policy = Policy::for_peer(config, peer, channel);
    let header = read_header(rd, rbuf).await?;
    match header {
        SASL_HEADER => {
            wr.write_all(&SASL_HEADER).await?;
            let identity = sasl(rd, wr, rbuf, config, &policy, peer).await?;
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
#[derive(Debug, Clone)]
struct Policy {
    anonymous: bool,
    plain: bool,
    /// The CN of the peer's verified client certificate, for EXTERNAL.
    external: Option<String>,
    /// SCRAM-SHA-256 is offered (to everyone: the password never crosses the wire).
    scram: bool,
}

impl Policy {
    fn for_peer(config: &TransportConfig, peer: SocketAddr, channel: &Channel) -> Policy {
        let loopback = peer.ip().to_canonical().is_loopback();
        let allowed = |e: Exposure| match e {
            Exposure::Never => false,
            Exposure::Loopback => loopback,
            Exposure::Everywhere => true,
        };
        Policy {
            anonymous: allowed(config.anonymous),
            // Inside TLS the password travels encrypted.
            plain: channel.encrypted || allowed(config.plain_without_tls),
            external: channel.peer_cn.clone(),
            scram: scram_offered(&config.users),
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
    config: &TransportConfig,
    policy: &Policy,
    peer: SocketAddr,
) -> Result<Identity, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut mechanisms = Vec::new();
    // First, so a client holding a certificate uses it rather than a password.
    if policy.external.is_some() {
        mechanisms.push(Symbol::from("EXTERNAL"));
    }
    // Before PLAIN and ANONYMOUS, so a client that picks the first it knows picks it.
    if policy.scram {
        mechanisms.push(Symbol::from(scram::MECHANISM));
    }
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
    wr.flush().await?;

    let raw = read_sasl_frame(rd, rbuf).await?;
    let init: SaslInit = decode_sasl(&raw)?;
    // A source or user name that failed too often is refused without a look at the password.
    let user = plain_user(&init).or_else(|| scram_user(&init));
    let now = std::time::Instant::now();
    if !config.throttle.allows(peer.ip(), user.as_deref(), now) {
        tokio::time::sleep(config.failure_delay).await;
        send_outcome(wr, SaslCode::Auth, None).await?;
        wr.flush().await?;
        return Err(HandshakeError::AuthFailed(
            "too many failed logins from this source or for this user name; refused unchecked"
                .into(),
        ));
    }
    // Checking a hashed password takes milliseconds of CPU: off the async threads.
    let decided = if init.mechanism.as_str() == scram::MECHANISM && policy.scram {
        scram_exchange(rd, wr, rbuf, &init, config).await?
    } else if init.mechanism.as_str() == "PLAIN" && has_hashed_passwords(&config.users) {
        let (init, config, policy) = (init.clone(), config.clone(), policy.clone());
        tokio::task::spawn_blocking(move || authenticate(&init, &config, &policy))
            .await
            .unwrap_or_else(|e| Err(format!("the password check failed: {e}")))
            .map(|identity| (identity, None))
    } else {
        authenticate(&init, config, policy).map(|identity| (identity, None))
    };
    match decided {
        Ok((identity, additional)) => {
            send_outcome(wr, SaslCode::Ok, additional).await?;
            wr.flush().await?;
            Ok(identity)
        }
        Err(reason) => {
            if config.throttle.failed(peer.ip(), user.as_deref(), now) {
                tracing::warn!(%peer, "login failed: {reason} (more failures are summarised, a line a minute)");
            }
            // A failed login is answered late, and never says which part was wrong.
            tokio::time::sleep(config.failure_delay).await;
            send_outcome(wr, SaslCode::Auth, None).await?;
            wr.flush().await?;
            Err(HandshakeError::AuthFailed(reason))
        }
    }
}

async fn read_sasl_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    rbuf: &mut BytesMut,
) -> Result<crate::codec::frame::RawFrame, HandshakeError> {
    loop {
        if let Some(raw) = decode_raw(rbuf, SASL_MAX_FRAME)? {
            return Ok(raw);
        }
        if rd.read_buf(rbuf).await? == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
        }
    }
}

/// SCRAM-SHA-256 after its `sasl-init`: the challenge (server-first-message), the client's
/// response (client-final-message), then the identity and the server-final-message for the
/// outcome's additional data, or why the login failed.
async fn scram_exchange<R, W>(
    rd: &mut R,
    wr: &mut W,
    rbuf: &mut BytesMut,
    init: &SaslInit,
    config: &TransportConfig,
) -> Result<Result<(Identity, Option<Binary>), String>, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let first = init
        .initial_response
        .as_ref()
        .map_or_else(Vec::new, |b| b.to_vec());
    // Deriving a clear password's keys takes milliseconds of CPU: off the async threads.
    let users = config.users.clone();
    let started = tokio::task::spawn_blocking(move || {
        scram::start(&first, |name| scram_keys_for(&users, name))
    })
    .await
    .unwrap_or_else(|e| Err(format!("the SCRAM key derivation failed: {e}")));
    let (exchange, server_first) = match started {
        Ok(started) => started,
        Err(why) => return Ok(Err(why)),
    };
    let mut out = Output::default();
    out.push_sasl(&SaslChallenge {
        challenge: Binary::from(server_first),
    });
    wr.write_all(&out.take_all()).await?;
    wr.flush().await?;
    let raw = read_sasl_frame(rd, rbuf).await?;
    let response: SaslResponse = decode_sasl(&raw)?;
    Ok(exchange
        .finish(response.response.as_ref())
        .map(|(user, last)| (Identity::User(user), Some(Binary::from(last)))))
}

/// The user name a SCRAM client-first-message names (for the login throttle).
fn scram_user(init: &SaslInit) -> Option<String> {
    if init.mechanism.as_str() != scram::MECHANISM {
        return None;
    }
    scram::user_name(init.initial_response.as_ref()?.as_ref())
}

/// The user name (authcid) a PLAIN response names, if it is UTF-8.
fn plain_user(init: &SaslInit) -> Option<String> {
    if init.mechanism.as_str() != "PLAIN" {
        return None;
    }
    let response = init.initial_response.as_ref()?;
    let user = response.split(|&b| b == 0).nth(1)?;
    std::str::from_utf8(user).ok().map(str::to_owned)
}

/// Decides a `sasl-init`. The reason is for our log only.
fn authenticate(
    init: &SaslInit,
    config: &TransportConfig,
    policy: &Policy,
) -> Result<Identity, String> {
    match init.mechanism.as_str() {
        "ANONYMOUS" if policy.anonymous => Ok(Identity::Anonymous),
        "ANONYMOUS" => Err("ANONYMOUS is not allowed for this peer (auth.anonymous)".into()),
        "EXTERNAL" => external(init, config, policy),
        "PLAIN" => {
            let response = init
                .initial_response
                .as_ref()
                .map(|b| b.as_ref())
                .unwrap_or(&[]);
            let mut parts = response.split(|&b| b == 0);
            let (authzid, authcid, password) = (parts.next(), parts.next(), parts.next());
            let (Some(authzid), Some(user), Some(password), None) =
                (authzid, authcid, password, parts.next())
            else {
                return Err("malformed PLAIN response".into());
            };
            // RFC 4616 §2: a user may act only as itself; nobody may act for others.
            if !authzid.is_empty() && authzid != user {
                return Err("PLAIN authorization identity differs from the user name".into());
            }
            // RFC 4616 §2: both are UTF-8. A lossy conversion would let any invalid byte
            // match a configured U+FFFD.
            let (Ok(user), Ok(password)) =
                (std::str::from_utf8(user), std::str::from_utf8(password))
            else {
                return Err("malformed PLAIN response: not UTF-8".into());
            };
            if !policy.plain {
                return Err(format!(
                    "PLAIN over an unencrypted connection is not allowed for this peer (auth.plain_without_tls), user '{}'",
                    PeerText(user)
                ));
            }
            if config.authenticate(user, password) {
                Ok(Identity::User(user.to_owned()))
            } else {
                Err(format!(
                    "wrong user name or password for '{}'",
                    PeerText(user)
                ))
            }
        }
        other => Err(format!("unsupported mechanism {}", PeerText(other))),
    }
}

/// SASL EXTERNAL (RFC 4422 appendix A): the identity is the verified client certificate's. The
/// response, if any, is the authorization identity the client asks for, which must be the one
/// its certificate gives.
fn external(
    init: &SaslInit,
    config: &TransportConfig,
    policy: &Policy,
) -> Result<Identity, String> {
    let Some(cn) = &policy.external else {
        return Err("EXTERNAL without a verified client certificate".into());
    };
    let user = if config.users.is_empty() {
        cn.clone()
    } else {
        match user_for_certificate(&config.users, cn) {
            Some(user) => user.name.clone(),
            None => {
                return Err(format!(
                    "no user for the client certificate with CN '{}' (a [[users]] name or certificate_cn)",
                    PeerText(cn)
                ))
            }
        }
    };
    let asked = init
        .initial_response
        .as_ref()
        .map(|b| b.as_ref())
        .unwrap_or(&[]);
    if !asked.is_empty() && asked != user.as_bytes() {
        return Err(format!(
            "EXTERNAL asked to act as '{}', but the certificate logs in as '{}'",
            PeerText(&String::from_utf8_lossy(asked)),
            PeerText(&user)
        ));
    }
    Ok(Identity::User(user))
}

async fn send_outcome<W: AsyncWrite + Unpin>(
    wr: &mut W,
    code: SaslCode,
    additional_data: Option<Binary>,
) -> std::io::Result<()> {
    let mut out = Output::default();
    out.push_sasl(&SaslOutcome {
        code,
        additional_data,
    });
    wr.write_all(&out.take_all()).await
}

#[cfg(test)]
#[path = "handshake_tests.rs"]
mod tests;
