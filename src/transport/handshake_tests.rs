//! Tests of handshake.rs: the SASL policy per peer, PLAIN and EXTERNAL, and whole exchanges.

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
        scram: false,
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
    let reason = authenticate(&plain(b"admin\0app\0secret"), &config, &permissive()).unwrap_err();
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
        scram: false,
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
