//! Passwords as broker.toml keeps them: in clear (`password`, which the broker warns about at
//! start), as an Argon2id PHC string (`password_hash`, what `sluice hash-password` prints), or
//! as SCRAM-SHA-256 keys (`password_hash = "SCRAM-SHA-256$4096:salt$StoredKey:ServerKey"`,
//! PostgreSQL's form, what `sluice hash-password --scram` prints), which SASL SCRAM-SHA-256
//! logs in with as well as PLAIN. Hashing and checking are RustCrypto's `argon2` and aws-lc-rs'
//! PBKDF2, HMAC and SHA-256, never hand-written.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// The PHC string of `password`, Argon2id with the crate's recommended parameters and a random
/// salt.
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash the password: {e}"))
}

/// Whether `phc` is a PHC string (or SCRAM keys) this broker can check passwords against (why
/// not, if not).
pub fn check_hash(phc: &str) -> Result<(), String> {
    if phc.starts_with(SCRAM_PREFIX) {
        return ScramKeys::parse(phc).map(|_| ());
    }
    let hash = PasswordHash::new(phc).map_err(|e| format!("not a PHC password hash: {e}"))?;
    match hash.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => Ok(()),
        other => Err(format!(
            "hash algorithm '{other}' is not supported; use an Argon2 hash (sluice hash-password)"
        )),
    }
}

/// Whether `password` is the one `phc` was made from (false for a hash that does not parse;
/// `check_hash` refused those when the file was read).
pub fn verify(phc: &str, password: &str) -> bool {
    if phc.starts_with(SCRAM_PREFIX) {
        return ScramKeys::parse(phc).is_ok_and(|keys| keys.verify(password));
    }
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// Takes as long as checking a password against a hash does, for a user name nobody has, so
/// the time a failed login takes does not tell which names exist.
pub fn verify_nobody(password: &str) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_password("no such user").unwrap_or_default());
    let _ = verify(phc, password);
}

const SCRAM_PREFIX: &str = "SCRAM-SHA-256$";

/// PBKDF2 rounds for new SCRAM keys: RFC 7677's minimum, what PostgreSQL and RabbitMQ use.
pub const SCRAM_ITERATIONS: u32 = 4096;

/// What SCRAM-SHA-256 (RFC 5802, RFC 7677) needs of a password: the salt and rounds the client
/// derives its key with, and the two keys the server checks the client's proof against and
/// signs its own answer with. They do not give the password back.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    /// PBKDF2 rounds.
    pub iterations: u32,
    /// PBKDF2 salt.
    pub salt: Vec<u8>,
    /// H(HMAC(SaltedPassword, "Client Key")).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramKeys")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA-256 of `data` under `key`.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, data).as_ref().to_vec()
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Vec<u8> {
    digest::digest(&digest::SHA256, data).as_ref().to_vec()
}

/// Whether `a` and `b` are equal, in time that does not depend on where they differ.
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    constant_time::verify_slices_are_equal(a, b).is_ok()
}

/// `len` bytes from the operating system's random source.
pub fn random_bytes(len: usize) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "no random bytes from the system".to_owned())?;
    Ok(bytes)
}

impl ScramKeys {
    /// The keys of `password` with this salt and rounds (`iterations` at least 1).
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        let mut salted = [0u8; 32];
        let rounds = NonZeroU32::new(iterations).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac_sha256(&salted, b"Client Key");
        ScramKeys {
            iterations,
            salt: salt.to_vec(),
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// Reads `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64).
    pub fn parse(text: &str) -> Result<ScramKeys, String> {
        let bad = |why: &str| {
            format!(
                "not a SCRAM-SHA-256 hash ({why}); expected \
                 SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> as `sluice \
                 hash-password --scram` prints"
            )
        };
        let rest = text
            .strip_prefix(SCRAM_PREFIX)
            .ok_or_else(|| bad("prefix"))?;
        let (params, keys) = rest.split_once('$').ok_or_else(|| bad("no keys"))?;
        let (iterations, salt) = params.split_once(':').ok_or_else(|| bad("no salt"))?;
        let (stored, server) = keys.split_once(':').ok_or_else(|| bad("one key"))?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|&i| i >= 1)
            .ok_or_else(|| bad("iterations"))?;
        let decode = |b64: &str, what: &str| BASE64.decode(b64).map_err(|_| bad(what));
        let (salt, stored_key, server_key) = (
            decode(salt, "salt")?,
            decode(stored, "StoredKey")?,
            decode(server, "ServerKey")?,
        );
        if salt.is_empty() || stored_key.len() != 32 || server_key.len() != 32 {
            return Err(bad("lengths"));
        }
        Ok(ScramKeys {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Whether `password` gives these keys (a PLAIN login against SCRAM keys).
    pub fn verify(&self, password: &str) -> bool {
        let derived = ScramKeys::derive(password, &self.salt, self.iterations);
        same_bytes(&derived.stored_key, &self.stored_key)
    }
}

impl std::fmt::Display for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{SCRAM_PREFIX}{}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(&self.stored_key),
            BASE64.encode(&self.server_key)
        )
    }
}

/// SCRAM-SHA-256 keys for `password` with a random 16-byte salt, as broker.toml keeps them.
pub fn hash_password_scram(password: &str) -> Result<String, String> {
    let salt = random_bytes(16)?;
    Ok(ScramKeys::derive(password, &salt, SCRAM_ITERATIONS).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_checks_its_password_and_no_other() {
        let phc = hash_password("s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert_eq!(check_hash(&phc), Ok(()));
        assert!(verify(&phc, "s3cret"));
        assert!(!verify(&phc, "s3cret "));
        assert!(!verify("not a hash", "s3cret"));
        assert_ne!(hash_password("s3cret").unwrap(), phc, "salted");
        assert!(check_hash("$pbkdf2-sha256$i=1000$c2FsdA$aGFzaA").is_err());
        assert!(check_hash("plain text").is_err());
    }

    #[test]
    fn scram_keys_match_rfc_7677s_example_and_check_plain_passwords() {
        // RFC 7677 §3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096.
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive("pencil", &salt, 4096);
        let text = keys.to_string();
        assert_eq!(ScramKeys::parse(&text).unwrap(), keys);
        assert_eq!(check_hash(&text), Ok(()));
        assert!(verify(&text, "pencil"));
        assert!(!verify(&text, "pencil!"));
        // The server signature of the RFC's exchange comes from these keys.
        let auth_message = "n=user,r=rOprNGfwEbeRWgbNEkqO,\
            r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,\
            c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        let signature = hmac_sha256(&keys.server_key, auth_message.as_bytes());
        assert_eq!(
            BASE64.encode(signature),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        let fresh = hash_password_scram("pencil").unwrap();
        assert!(fresh.starts_with("SCRAM-SHA-256$4096:") && verify(&fresh, "pencil"));
        for bad in [
            "SCRAM-SHA-256$",
            "SCRAM-SHA-256$0:c2FsdA==$a:b",
            "SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ==",
        ] {
            assert!(check_hash(bad).is_err(), "{bad}");
        }
    }
}
