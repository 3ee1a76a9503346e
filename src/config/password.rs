//! Passwords as broker.toml keeps them: in clear (`password`, which the broker warns about at
//! start) or as an Argon2id PHC string (`password_hash`, what `sluice hash-password` prints).
//! Hashing and checking are RustCrypto's `argon2`, never hand-written.

use std::sync::OnceLock;

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

/// Whether `phc` is a PHC string this broker can check passwords against (why not, if not).
pub fn check_hash(phc: &str) -> Result<(), String> {
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
}
