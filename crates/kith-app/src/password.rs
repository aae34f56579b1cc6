//! Password hashing with Argon2id (OWASP parameters: 19 MiB, 2 passes). Hashing is CPU
//! work: async callers run it on a blocking thread.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use kith_core::text::Secret;

use crate::AppError;

/// The shortest password Kith accepts. Length beats complexity rules (NCSC, NIST 800-63B).
pub const MINIMUM_PASSWORD_LENGTH: usize = 12;
pub const MAXIMUM_PASSWORD_LENGTH: usize = 256;

/// Checks a new password and hashes it to a PHC string.
pub fn hash_password(password: &Secret) -> Result<String, AppError> {
    let length = password.expose().chars().count();
    if length < MINIMUM_PASSWORD_LENGTH {
        return Err(AppError::Invalid(format!("password: must be at least {MINIMUM_PASSWORD_LENGTH} characters")));
    }
    if length > MAXIMUM_PASSWORD_LENGTH {
        return Err(AppError::Invalid(format!("password: must be at most {MAXIMUM_PASSWORD_LENGTH} characters")));
    }
    Argon2::default()
        .hash_password(password.expose().as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| AppError::Invalid(format!("password: cannot be hashed ({error})")))
}

/// Whether `password` matches the stored PHC string.
pub fn verify_password(password: &Secret, stored: &str) -> bool {
    PasswordHash::new(stored)
        .ok()
        .is_some_and(|hash| Argon2::default().verify_password(password.expose().as_bytes(), &hash).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_short_passwords_are_refused() {
        let password = Secret::new("correct horse battery staple".into());
        let hash = hash_password(&password).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(verify_password(&password, &hash));
        assert!(!verify_password(&Secret::new("wrong horse battery staple".into()), &hash));
        assert!(!verify_password(&password, "not a hash"));
        assert!(matches!(hash_password(&Secret::new("short".into())), Err(AppError::Invalid(_))));
    }
}
