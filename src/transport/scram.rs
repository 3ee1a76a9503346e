//! SASL SCRAM-SHA-256 (RFC 5802, RFC 7677) on the broker's side, sans I/O: the client's first
//! message in, the server's first out; the client's final message in, the server's final out.
//! The password never crosses the wire and the broker keeps only SCRAM keys (or a clear
//! password, whose keys are derived with a fresh salt per login). The primitives (PBKDF2,
//! HMAC, SHA-256, random nonces) are aws-lc-rs', through config::password.
//!
//! Channel binding is not offered (SCRAM-SHA-256-PLUS is not advertised), so a client that asks
//! for it (`p=` in the GS2 header) is refused; SASLprep is not applied, so names and passwords
//! are compared as the UTF-8 the client sends.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::config::password::{hmac_sha256, random_bytes, same_bytes, sha256, ScramKeys};
use crate::logging::PeerText;

/// The mechanism's name.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// An exchange after the server's first message, waiting for the client's final one.
#[derive(Debug)]
pub struct Exchange {
    user: String,
    /// None for a user that does not exist or has no SCRAM keys: the exchange goes on with
    /// made-up parameters (so the answer does not tell which names exist) and fails at the end.
    keys: Option<ScramKeys>,
    /// Why `keys` is None, for the log.
    missing: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
}

/// Reads the client's first message and answers with the server's: `keys_for` gives the
/// user's keys, or why there are none.
///
/// Deriving a clear password's keys is 4096 HMAC rounds: callers run this off the async
/// threads.
pub fn start(
    client_first: &[u8],
    keys_for: impl FnOnce(&str) -> Result<ScramKeys, String>,
) -> Result<(Exchange, Vec<u8>), String> {
    let text = std::str::from_utf8(client_first)
        .map_err(|_| "SCRAM client-first-message is not UTF-8".to_owned())?;
    // gs2-header: cbind-flag "," [authzid] ","
    let mut parts = text.splitn(3, ',');
    let (Some(cbind), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed SCRAM client-first-message".into());
    };
    match cbind {
        "n" | "y" => {}
        _ if cbind.starts_with("p=") => {
            return Err("SCRAM channel binding is not supported (no -PLUS mechanism)".into())
        }
        _ => return Err("malformed SCRAM GS2 header".into()),
    }
    let mut user = None;
    let mut client_nonce = None;
    for attribute in bare.split(',') {
        match attribute.split_once('=') {
            Some(("n", v)) => user = Some(unescape(v)?),
            Some(("r", v)) if !v.is_empty() => client_nonce = Some(v),
            Some(("m", _)) => return Err("SCRAM mandatory extension not supported".into()),
            _ => {}
        }
    }
    let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
        return Err("SCRAM client-first-message without n= or r=".into());
    };
    if let Some(asked) = authzid.strip_prefix("a=") {
        // A user may act only as itself, as with PLAIN.
        if unescape(asked)? != user {
            return Err("SCRAM authorization identity differs from the user name".into());
        }
    }
    let (keys, missing) = match keys_for(&user) {
        Ok(keys) => (Some(keys), String::new()),
        Err(why) => (None, why),
    };
    // Made-up but stable parameters for a name without keys: the same name gets the same
    // salt every time, as a real one would.
    let (salt, iterations) = match &keys {
        Some(k) => (k.salt.clone(), k.iterations),
        None => {
            let secret = fake_salt_secret();
            (hmac_sha256(secret, user.as_bytes())[..16].to_vec(), 4096)
        }
    };
    let server_nonce = BASE64.encode(random_bytes(18)?);
    let nonce = format!("{client_nonce}{server_nonce}");
    let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(salt));
    let exchange = Exchange {
        user,
        keys,
        missing,
        gs2_header: text[..text.len() - bare.len()].to_owned(),
        client_first_bare: bare.to_owned(),
        server_first: server_first.clone(),
        nonce,
    };
    Ok((exchange, server_first.into_bytes()))
}

impl Exchange {
    /// Checks the client's final message: returns the user and the server's final message
    /// (its signature, which proves to the client that the broker knows its keys).
    pub fn finish(self, client_final: &[u8]) -> Result<(String, Vec<u8>), String> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| "SCRAM client-final-message is not UTF-8".to_owned())?;
        let (without_proof, proof) = text
            .rsplit_once(",p=")
            .ok_or_else(|| "SCRAM client-final-message without a proof".to_owned())?;
        let mut binding = None;
        let mut nonce = None;
        for attribute in without_proof.split(',') {
            match attribute.split_once('=') {
                Some(("c", v)) => binding = Some(v),
                Some(("r", v)) => nonce = Some(v),
                _ => {}
            }
        }
        if binding != Some(BASE64.encode(&self.gs2_header).as_str()) {
            return Err("SCRAM channel binding does not match the GS2 header".into());
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err("SCRAM nonce does not match the server's".into());
        }
        let proof = BASE64
            .decode(proof)
            .map_err(|_| "SCRAM proof is not base64".to_owned())?;
        let Some(keys) = &self.keys else {
            return Err(self.missing);
        };
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let signature = hmac_sha256(&keys.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(wrong(&self.user));
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !same_bytes(&sha256(&client_key), &keys.stored_key) {
            return Err(wrong(&self.user));
        }
        let server_signature = hmac_sha256(&keys.server_key, auth_message.as_bytes());
        let server_final = format!("v={}", BASE64.encode(server_signature));
        Ok((self.user, server_final.into_bytes()))
    }
}

fn wrong(user: &str) -> String {
    format!(
        "wrong user name or password for '{}' (SCRAM)",
        PeerText(user)
    )
}

/// `=2C` and `=3D` stand for `,` and `=` in a SCRAM name (RFC 5802 §5.1); any other `=` is an
/// error.
/// The user name a client-first-message gives (`n=`), for the login throttle; `None` if the
/// message is not one.
pub fn user_name(client_first: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(client_first).ok()?;
    let bare = text.splitn(3, ',').nth(2)?;
    let name = bare.split(',').find_map(|a| a.strip_prefix("n="))?;
    unescape(name).ok()
}

fn unescape(name: &str) -> Result<String, String> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err("malformed SCRAM user name".into()),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err("empty SCRAM user name".into());
    }
    Ok(out)
}

/// A secret drawn once per process, from which made-up salts are derived.
fn fake_salt_secret() -> &'static [u8] {
    static SECRET: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SECRET.get_or_init(|| random_bytes(32).unwrap_or_else(|_| b"sluice fake salt".to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side of RFC 7677 §3's example, with our server nonce.
    fn client_final(server_first: &str, password: &str, client_first_bare: &str) -> String {
        let mut nonce = "";
        let mut salt = Vec::new();
        let mut iterations = 0;
        for a in server_first.split(',') {
            match a.split_once('=').unwrap() {
                ("r", v) => nonce = v,
                ("s", v) => salt = BASE64.decode(v).unwrap(),
                ("i", v) => iterations = v.parse().unwrap(),
                _ => {}
            }
        }
        let keys = ScramKeys::derive(password, &salt, iterations);
        let without_proof = format!("c=biws,r={nonce}");
        let auth = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(&keys.stored_key, auth.as_bytes());
        // ClientKey from the password, as a client computes it.
        let mut salted = [0u8; 32];
        aws_lc_rs::pbkdf2::derive(
            aws_lc_rs::pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        format!("{without_proof},p={}", BASE64.encode(proof))
    }

    fn keys(password: &str) -> impl FnOnce(&str) -> Result<ScramKeys, String> {
        let keys = ScramKeys::derive(password, b"0123456789abcdef", 4096);
        move |user| {
            if user == "user" {
                Ok(keys)
            } else {
                Err(format!("no user '{user}'"))
            }
        }
    }

    #[test]
    fn the_right_password_logs_in_and_the_server_proves_it_knows_the_keys() {
        let bare = "n=user,r=rOprNGfwEbeRWgbNEkqO";
        let (exchange, server_first) =
            start(format!("n,,{bare}").as_bytes(), keys("pencil")).unwrap();
        let server_first = String::from_utf8(server_first).unwrap();
        assert!(server_first.starts_with("r=rOprNGfwEbeRWgbNEkqO"));
        assert!(server_first.ends_with(",i=4096"));
        let last = client_final(&server_first, "pencil", bare);
        let (user, server_final) = exchange.finish(last.as_bytes()).unwrap();
        assert_eq!(user, "user");
        assert!(server_final.starts_with(b"v="));
    }

    #[test]
    fn a_wrong_password_an_unknown_user_and_a_replayed_nonce_fail() {
        let bare = "n=user,r=abc";
        let (exchange, first) = start(format!("n,,{bare}").as_bytes(), keys("pencil")).unwrap();
        let last = client_final(std::str::from_utf8(&first).unwrap(), "pen", bare);
        assert!(exchange
            .finish(last.as_bytes())
            .unwrap_err()
            .contains("wrong"));

        let bare = "n=nobody,r=abc";
        let (exchange, first) = start(format!("n,,{bare}").as_bytes(), keys("pencil")).unwrap();
        let first = std::str::from_utf8(&first).unwrap().to_owned();
        // The made-up salt is stable for a name.
        let (_, again) = start(format!("n,,{bare}").as_bytes(), keys("pencil")).unwrap();
        let salt = |s: &str| s.split(",s=").nth(1).unwrap().to_owned();
        assert_eq!(salt(&first), salt(std::str::from_utf8(&again).unwrap()));
        let last = client_final(&first, "pencil", bare);
        assert!(exchange
            .finish(last.as_bytes())
            .unwrap_err()
            .contains("nobody"));

        let bare = "n=user,r=abc";
        let (exchange, _) = start(format!("n,,{bare}").as_bytes(), keys("pencil")).unwrap();
        let forged = "c=biws,r=abcOTHER,p=AAAA";
        assert!(exchange
            .finish(forged.as_bytes())
            .unwrap_err()
            .contains("nonce"));
    }

    #[test]
    fn malformed_messages_and_channel_binding_are_refused() {
        for bad in [
            "".as_bytes(),
            b"n,,",
            b"n,,r=abc",
            b"x,,n=user,r=abc",
            b"p=tls-unique,,n=user,r=abc",
            b"n,a=other,n=user,r=abc",
            b"n,,n=us=er,r=abc",
            b"n,,m=ext,n=user,r=abc",
            &[0xff, 0xfe],
        ] {
            assert!(start(bad, keys("pencil")).is_err(), "{bad:?}");
        }
        assert_eq!(unescape("a=2Cb=3Dc").unwrap(), "a,b=c");
    }

    #[test]
    fn the_user_name_is_read_for_the_throttle_as_the_exchange_reads_it() {
        assert_eq!(user_name(b"n,,n=a=2Cb=3Dc,r=x").as_deref(), Some("a,b=c"));
        assert_eq!(user_name(b"n,a=u,n=u,r=x").as_deref(), Some("u"));
        assert_eq!(user_name(b"n,,r=x"), None);
        assert_eq!(user_name(b"n,,n=bad=2,r=x"), None);
        assert_eq!(user_name(b"garbage"), None);
    }
}
