//! Every secret Kith hands out is minted here, from one source: the operating system's
//! CSPRNG through `ring::rand::SystemRandom` (as `sealing.rs` uses for keys and nonces).
//! Session ids, API and integration tokens, password-reset and activation codes,
//! invitation codes, recovery codes and TOTP keys.
//!
//! A secret is stored only as [`token_hash`] of what its holder types or presents (a TOTP
//! key, which must be read back, is sealed instead: `sealing.rs`). Identifiers (UUIDv7,
//! `crate::new_uuid`) are not secrets and do not come from here.

use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// `N` bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).expect("the system's random source works");
    bytes
}

/// SHA-256 of a secret as presented (a bearer token, a session cookie, a code as typed and
/// normalised): what is stored, and what a presented secret is looked up by.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut text, byte| {
        let _ = write!(text, "{byte:02x}");
        text
    })
}

/// A session id or a single-use code sent by link (password reset, activation): 64
/// lowercase hexadecimal digits (256 bits).
pub fn new_secret() -> String {
    hex(&random_bytes::<32>())
}

/// A bearer token for the API or an integration: `kith_` and 64 hexadecimal digits (256
/// bits).
pub fn new_bearer_token() -> String {
    format!("kith_{}", new_secret())
}

/// The symbols of invitation codes: no 0/O, 1/I, so that a code read off a letter is typed
/// right.
pub const INVITATION_ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A patient's invitation: 16 symbols of [`INVITATION_ALPHABET`] (80 bits); the first 8
/// are the invitation code, the last 8 the activation code.
pub fn new_invitation_secret() -> String {
    // 32 symbols divide 256: every symbol is equally likely.
    random_bytes::<16>().iter().map(|byte| char::from(INVITATION_ALPHABET[usize::from(byte % 32)])).collect()
}

/// A two-step recovery code: ten characters from an alphabet without look-alikes, as
/// `xxxxx-xxxxx` (about 50 bits).
pub fn new_recovery_code() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    // 31 symbols do not divide 256: bytes from 248 up are drawn again, so that every symbol
    // is equally likely.
    let limit = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let mut symbols = Vec::with_capacity(10);
    while symbols.len() < 10 {
        for byte in random_bytes::<16>() {
            if byte < limit && symbols.len() < 10 {
                symbols.push(ALPHABET[usize::from(byte) % ALPHABET.len()]);
            }
        }
    }
    let mut code = String::with_capacity(11);
    for (index, symbol) in symbols.into_iter().enumerate() {
        if index == 5 {
            code.push('-');
        }
        code.push(char::from(symbol));
    }
    code
}

/// A new TOTP key: 20 bytes (160 bits, RFC 4226's recommendation).
pub fn new_totp_key() -> [u8; 20] {
    random_bytes()
}

/// The two codes of a secret, formatted for reading: `ABCD-EFGH`, `JKLM-NPQR`.
pub fn split_codes(secret: &str) -> (String, String) {
    let format = |part: &str| {
        if part.len() == 8 { format!("{}-{}", &part[..4], &part[4..]) } else { part.to_owned() }
    };
    let middle = secret.len().min(8);
    (format(&secret[..middle]), format(&secret[middle..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_their_formats_and_differ() {
        let secret = new_secret();
        assert_eq!(secret.len(), 64);
        assert!(secret.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(new_secret(), secret);

        let token = new_bearer_token();
        assert!(token.starts_with("kith_") && token.len() == 69, "{token}");

        let invitation = new_invitation_secret();
        assert_eq!(invitation.len(), 16);
        assert!(invitation.bytes().all(|b| INVITATION_ALPHABET.contains(&b)));

        let code = new_recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(&code[5..6], "-");
        assert!(code.bytes().filter(|&b| b != b'-').all(|b| b"abcdefghjkmnpqrstuvwxyz23456789".contains(&b)));

        assert_ne!(new_totp_key(), new_totp_key());
    }

    #[test]
    fn hashes_are_sha256_of_what_is_presented() {
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(hex(&token_hash("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
