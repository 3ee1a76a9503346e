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
use tokio::time::Instant;

use crate::config::{has_hashed_passwords, user_for_certificate, Exposure};

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
    // A source or user name that failed too often is refused without a look at the password.
    let user = plain_user(&init);
    let now = std::time::Instant::now();
    if !config.throttle.allows(peer.ip(), user.as_deref(), now) {
        tokio::time::sleep(config.failure_delay).await;
        send_outcome(wr, SaslCode::Auth).await?;
        wr.flush().await?;
        return Err(HandshakeError::AuthFailed(
            "too many failed logins from this source or for this user name; refused unchecked"
                .into(),
        ));
    }
    // Checking a hashed password takes milliseconds of CPU: off the async threads.
    let decided = if init.mechanism.as_str() == "PLAIN" && has_hashed_passwords(&config.users) {
        let (init, config, policy) = (init.clone(), config.clone(), policy.clone());
        tokio::task::spawn_blocking(move || authenticate(&init, &config, &policy))
            .await
            .unwrap_or_else(|e| Err(format!("the password check failed: {e}")))
    } else {
        authenticate(&init, config, policy)
    };
    match decided {
        Ok(identity) => {
            send_outcome(wr, SaslCode::Ok).await?;
            Ok(identity)
        }
        Err(reason) => {
            config.throttle.failed(peer.ip(), user.as_deref(), now);
            // A failed login is answered late, and never says which part was wrong.
            tokio::time::sleep(config.failure_delay).await;
            send_outcome(wr, SaslCode::Auth).await?;
            wr.flush().await?;
            Err(HandshakeError::AuthFailed(reason))
        }
    }
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

async fn send_outcome<W: AsyncWrite + Unpin>(wr: &mut W, code: SaslCode) -> std::io::Result<()> {
    let mut out = Output::default();
    out.push_sasl(&SaslOutcome {
        code,
        additional_data: None,
    });
    wr.write_all(&out.take_all()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, User};
    use fe2o3_amqp_types::primitives::Binary;

    const LOOPBACK: &str = "127.0.0.1:40000";
    const LOOPBACK_V6: &str = "[::1]:40000";
    const V4_MAPPED_LOOPBACK: &str = "[::ffff:127.0.0.1]:40000";
    // TEST-NET-1 (RFC 5737): only ever used as a value, never connected to.
    const REMOTE: &str = "192.0.2.1:5000";

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a socket address")
    }

    fn config_with_user() -> TransportConfig {
        TransportConfig::from(&Config {
            users: vec![User {
                name: "app".into(),
                password: "secret".into(),
                password_hash: None,
                roles: vec![],
                ..Default::default()
            }],
            ..Config::default()
        })
    }

    fn plain(response: &[u8]) -> SaslInit {
        SaslInit {
            mechanism: Symbol::from("PLAIN"),
            initial_response: Some(Binary::from(response.to_vec())),
            hostname: None,
        }
    }

    fn anonymous() -> SaslInit {
        SaslInit {
            mechanism: Symbol::from("ANONYMOUS"),
            initial_response: None,
            hostname: None,
        }
    }

    fn permissive() -> Policy {
        Policy {
            anonymous: true,
            plain: true,
            external: None,
        }
    }

    #[test]
    fn by_default_loopback_peers_may_use_anonymous_and_plain() {
        let config = TransportConfig::from(&Config::default());
        for peer in [LOOPBACK, LOOPBACK_V6, V4_MAPPED_LOOPBACK, "127.1.2.3:1"] {
            let policy = Policy::for_peer(&config, addr(peer), &Channel::plain());
            assert!(policy.anonymous, "anonymous from {peer}");
            assert!(policy.plain, "plain from {peer}");
        }
    }

    #[test]
    fn by_default_a_remote_peer_may_use_neither_anonymous_nor_plain_without_tls() {
        let config = config_with_user();
        for peer in [REMOTE, "[2001:db8::1]:5000", "[::ffff:192.0.2.1]:5000"] {
            let policy = Policy::for_peer(&config, addr(peer), &Channel::plain());
            assert!(!policy.anonymous, "anonymous from {peer}");
            assert!(!policy.plain, "plain from {peer}");
        }
    }

    #[test]
    fn a_remote_peer_gets_what_the_config_exposes_everywhere() {
        let mut config = config_with_user();
        config.anonymous = Exposure::Everywhere;
        let policy = Policy::for_peer(&config, addr(REMOTE), &Channel::plain());
        assert!(policy.anonymous);
        assert!(!policy.plain);

        config.anonymous = Exposure::Loopback;
        config.plain_without_tls = Exposure::Everywhere;
        let policy = Policy::for_peer(&config, addr(REMOTE), &Channel::plain());
        assert!(!policy.anonymous);
        assert!(policy.plain);
    }

    #[test]
    fn never_applies_to_loopback_peers_too() {
        let mut config = config_with_user();
        config.anonymous = Exposure::Never;
        config.plain_without_tls = Exposure::Never;
        let policy = Policy::for_peer(&config, addr(LOOPBACK), &Channel::plain());
        assert!(!policy.anonymous);
        assert!(!policy.plain);
    }

    #[test]
    fn a_remote_peer_with_a_correct_password_is_refused_plain_without_tls() {
        let config = config_with_user();
        let policy = Policy::for_peer(&config, addr(REMOTE), &Channel::plain());
        let reason = authenticate(&plain(b"\0app\0secret"), &config, &policy).unwrap_err();
        assert!(reason.contains("plain_without_tls"), "{reason}");
        assert!(authenticate(&anonymous(), &config, &policy).is_err());
    }

    #[test]
    fn plain_accepts_a_configured_user_with_or_without_authzid() {
        let config = config_with_user();
        let policy = permissive();
        assert_eq!(
            authenticate(&plain(b"\0app\0secret"), &config, &policy),
            Ok(Identity::User("app".into()))
        );
        assert_eq!(
            authenticate(&plain(b"app\0app\0secret"), &config, &policy),
            Ok(Identity::User("app".into()))
        );
    }

    #[test]
    fn plain_refuses_to_act_for_another_identity() {
        let config = config_with_user();
        let reason =
            authenticate(&plain(b"admin\0app\0secret"), &config, &permissive()).unwrap_err();
        assert!(reason.contains("authorization identity"), "{reason}");
    }

    #[test]
    fn plain_rejects_a_wrong_password_or_an_unknown_user() {
        let config = config_with_user();
        let policy = permissive();
        for response in [
            &b"\0app\0wrong"[..],
            b"\0app\0secre",
            b"\0app\0secrets",
            b"\0app\0",
            b"\0nobody\0secret",
            b"\0\0secret",
            b"\0APP\0secret",
        ] {
            assert!(
                authenticate(&plain(response), &config, &policy).is_err(),
                "accepted {response:?}"
            );
        }
    }

    #[test]
    fn plain_rejects_malformed_responses() {
        let config = config_with_user();
        let policy = permissive();
        for response in [
            &b""[..],
            b"app",
            b"app\0secret",
            b"\0app\0secret\0",
            b"\0app\0secret\0extra",
            b"\0app\0sec\0ret",
            b"\0\0\0\0",
        ] {
            let reason = authenticate(&plain(response), &config, &policy).unwrap_err();
            assert!(reason.contains("malformed"), "{response:?}: {reason}");
        }
        let missing = SaslInit {
            initial_response: None,
            ..plain(b"")
        };
        assert!(authenticate(&missing, &config, &policy).is_err());
    }

    #[test]
    fn plain_rejects_bytes_that_are_not_utf8_even_against_a_replacement_character_password() {
        let config = TransportConfig::from(&Config {
            users: vec![User {
                name: "app".into(),
                password: "\u{FFFD}".into(),
                password_hash: None,
                roles: vec![],
                ..Default::default()
            }],
            ..Config::default()
        });
        let reason = authenticate(&plain(b"\0app\0\xff"), &config, &permissive()).unwrap_err();
        assert!(reason.contains("UTF-8"), "{reason}");
        assert!(authenticate(&plain("\0app\0\u{FFFD}".as_bytes()), &config, &permissive()).is_ok());
    }

    #[test]
    fn the_failure_reason_never_reaches_the_peer_but_names_the_user_for_the_log() {
        // Wrong password and unknown user give the same reason text, apart from the name.
        let config = config_with_user();
        let policy = permissive();
        let wrong = authenticate(&plain(b"\0app\0wrong"), &config, &policy).unwrap_err();
        let unknown = authenticate(&plain(b"\0bob\0secret"), &config, &policy).unwrap_err();
        assert_eq!(
            wrong.replace("'app'", "'?'"),
            unknown.replace("'bob'", "'?'")
        );
    }

    #[test]
    fn what_the_peer_sent_is_escaped_in_the_failure_reason() {
        let config = config_with_user();
        let reason = authenticate(
            &plain(b"\0bob\nERROR forged\x1b[2J\0pw"),
            &config,
            &permissive(),
        )
        .unwrap_err();
        assert!(reason.contains(r"bob\nERROR forged\u{1b}[2J"), "{reason}");
        assert!(!reason.contains(['\n', '\x1b']), "{reason}");
        let mechanism = SaslInit {
            mechanism: Symbol::from("X\r\nY"),
            ..anonymous()
        };
        let reason = authenticate(&mechanism, &config, &permissive()).unwrap_err();
        assert!(reason.ends_with(r"X\r\nY"), "{reason}");
    }

    #[test]
    fn anonymous_follows_the_policy_and_unknown_mechanisms_fail() {
        let config = TransportConfig::from(&Config::default());
        assert_eq!(
            authenticate(&anonymous(), &config, &permissive()),
            Ok(Identity::Anonymous)
        );
        let closed = Policy {
            anonymous: false,
            plain: true,
            external: None,
        };
        assert!(authenticate(&anonymous(), &config, &closed).is_err());
        let external = SaslInit {
            mechanism: Symbol::from("EXTERNAL"),
            ..anonymous()
        };
        assert!(authenticate(&external, &config, &permissive()).is_err());
    }

    #[test]
    fn external_logs_in_as_the_certificate_user() {
        let config = TransportConfig::from(&Config {
            users: vec![User {
                name: "app".into(),
                certificate_cn: Some("app-device".into()),
                certificate_only: true,
                ..Default::default()
            }],
            ..Config::default()
        });
        let external = |response: &[u8]| SaslInit {
            mechanism: Symbol::from("EXTERNAL"),
            initial_response: Some(Binary::from(response.to_vec())),
            hostname: None,
        };
        let with_cn = |cn: &str| Policy {
            external: Some(cn.into()),
            ..permissive()
        };
        let ok = Ok(Identity::User("app".into()));
        assert_eq!(
            authenticate(&external(b""), &config, &with_cn("app-device")),
            ok
        );
        assert_eq!(
            authenticate(&external(b"app"), &config, &with_cn("app-device")),
            ok
        );
        assert!(authenticate(&external(b"root"), &config, &with_cn("app-device")).is_err());
        assert!(authenticate(&external(b""), &config, &with_cn("stranger")).is_err());
        // A certificate-only account has no password, not even an empty one.
        let plain = SaslInit {
            mechanism: Symbol::from("PLAIN"),
            initial_response: Some(Binary::from(b"\0app\0".to_vec())),
            hostname: None,
        };
        assert!(authenticate(&plain, &config, &permissive()).is_err());
        // Without users, the CN is the user.
        let open = TransportConfig::from(&Config::default());
        let cn = Ok(Identity::User("someone".into()));
        assert_eq!(authenticate(&external(b""), &open, &with_cn("someone")), cn);
    }

    async fn exchange(
        peer: &str,
        config: &Config,
        sent: &[u8],
    ) -> (Result<Identity, HandshakeError>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(4096);
        let (mut rd, mut wr) = tokio::io::split(server);
        client.write_all(sent).await.expect("write to duplex");
        let mut rbuf = BytesMut::new();
        let config = TransportConfig::from(config);
        let deadline = Instant::now() + config.handshake_timeout;
        let result = negotiate(
            &mut rd,
            &mut wr,
            &mut rbuf,
            &config,
            addr(peer),
            deadline,
            &Channel::plain(),
        )
        .await;
        drop((rd, wr));
        let mut answer = Vec::new();
        client
            .read_to_end(&mut answer)
            .await
            .expect("read from duplex");
        (result, answer)
    }

    #[tokio::test]
    async fn a_remote_peer_without_sasl_is_told_to_use_sasl() {
        let (result, answer) = exchange(REMOTE, &Config::default(), &AMQP_HEADER).await;
        assert!(
            matches!(result, Err(HandshakeError::UnsupportedHeader(AMQP_HEADER))),
            "{result:?}"
        );
        assert_eq!(answer, SASL_HEADER);
    }

    #[tokio::test]
    async fn a_loopback_peer_without_sasl_is_anonymous() {
        let (result, answer) = exchange(LOOPBACK, &Config::default(), &AMQP_HEADER).await;
        assert_eq!(result.expect("accepted"), Identity::Anonymous);
        assert_eq!(answer, AMQP_HEADER);
    }

    #[tokio::test]
    async fn tls_and_foreign_headers_are_answered_with_the_sasl_header() {
        for header in [
            &TLS_HEADER[..],
            b"AMQP\x00\x01\x00\x01",
            b"GET / HTTP/1.1\r\n",
        ] {
            let (result, answer) = exchange(LOOPBACK, &Config::default(), header).await;
            assert!(
                matches!(result, Err(HandshakeError::UnsupportedHeader(_))),
                "{result:?}"
            );
            assert_eq!(answer, SASL_HEADER);
        }
    }
}
