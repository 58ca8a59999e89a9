//! Passwords: argon2id hashes in PHC strings (the `argon2` crate's defaults: 19 MiB, 2 passes,
//! one lane, as OWASP recommends), computed off the async threads.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Shortest password accepted.
pub const MIN_LEN: usize = 12;
/// Longest password accepted (argon2 takes any length; this bounds the work per login).
pub const MAX_LEN: usize = 256;

/// Why a password cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("a password must be {MIN_LEN} to {MAX_LEN} characters")]
    Length,
    /// Hashing failed (it does not, with these parameters).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Checks a new password's length.
pub fn check(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if (MIN_LEN..=MAX_LEN).contains(&n) {
        Ok(())
    } else {
        Err(PasswordError::Length)
    }
}

/// The argon2id PHC string of `password`, with a fresh salt.
pub async fn hash(password: String) -> Result<String, PasswordError> {
    check(&password)?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError::Hash(e.to_string()))?
}

/// A hash of no password anyone has, checked when the email is unknown so that a login takes as
/// long whether the account exists or not.
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$bm90LWEtdXNlci1zYWx0$\
                     ZmFrZS1oYXNoLWZvci11bmtub3duLWVtYWlscy0wMDAwMDA";

/// Whether `password` matches `phc` (or the decoy, when `phc` is `None`: always false).
pub async fn verify(password: String, phc: Option<String>) -> bool {
    let known = phc.is_some();
    let phc = phc.unwrap_or_else(|| DECOY.to_owned());
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .unwrap_or(false)
        && known
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = hash("correct horse battery".into()).await.expect("hash");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify("correct horse battery".into(), Some(h.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(h)).await);
        assert!(!verify("anything at all".into(), None).await);
        assert_eq!(hash("short".into()).await, Err(PasswordError::Length));
    }
}
