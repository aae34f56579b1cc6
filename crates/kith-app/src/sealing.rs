//! Secrets Kith must read back, sealed at rest: today the TOTP keys of two-step
//! verification (a code can only be checked with the key, so the key cannot be hashed).
//! ChaCha20-Poly1305 (ring) with a 256-bit server key, a random nonce per value, and the
//! account id as associated data, so a sealed value copied to another account's row does
//! not open. Stored as `v1:` and hex (nonce, ciphertext, tag).

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

/// The server's sealing key.
pub struct SealingKey(LessSafeKey);

impl std::fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealingKey(***)")
    }
}

const PREFIX: &str = "v1:";

impl SealingKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Self {
        Self(LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte key")))
    }

    /// A key from 64 hexadecimal digits (how `KITH_SECRET_KEY` and the key file hold it).
    pub fn from_hex(text: &str) -> Option<Self> {
        let text = text.trim();
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(index * 2..index * 2 + 2)?, 16).ok()?;
        }
        Some(Self::from_bytes(&bytes))
    }

    /// 32 random bytes as 64 hexadecimal digits: a new key for a key file.
    pub fn generate_hex() -> String {
        let bytes: [u8; 32] = crate::secrets::random_bytes();
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// A random key that lives as long as the process (tests, and apps built without one:
    /// what it seals cannot be opened after a restart).
    pub fn ephemeral() -> Self {
        Self::from_hex(&Self::generate_hex()).expect("a generated key")
    }

    /// Seals `plaintext`, bound to `context` (e.g. the account id).
    pub fn seal(&self, context: &str, plaintext: &str) -> String {
        let nonce: [u8; NONCE_LEN] = crate::secrets::random_bytes();
        let mut sealed = plaintext.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut sealed)
            .expect("sealing a short value");
        let mut text = String::with_capacity(PREFIX.len() + (NONCE_LEN + sealed.len()) * 2);
        text.push_str(PREFIX);
        for byte in nonce.iter().chain(&sealed) {
            text.push_str(&format!("{byte:02x}"));
        }
        text
    }

    /// Opens a sealed value; `None` when it was sealed with another key or context, or
    /// changed.
    pub fn open(&self, context: &str, sealed: &str) -> Option<String> {
        let hex = sealed.strip_prefix(PREFIX)?;
        if hex.len() % 2 != 0 || hex.len() < (NONCE_LEN + 16) * 2 {
            return None;
        }
        let bytes: Vec<u8> =
            (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[i * 2..i * 2 + 2], 16).ok()).collect::<Option<_>>()?;
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let mut rest = rest.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = self.0.open_in_place(nonce, Aad::from(context.as_bytes()), &mut rest).ok()?;
        String::from_utf8(plain.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = SealingKey::ephemeral();
        let sealed = key.seal("account-1", "JBSWY3DPEHPK3PXP");
        assert!(sealed.starts_with("v1:") && !sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(key.open("account-1", &sealed).as_deref(), Some("JBSWY3DPEHPK3PXP"));
        assert_ne!(key.seal("account-1", "JBSWY3DPEHPK3PXP"), sealed, "a fresh nonce each time");
        assert_eq!(key.open("account-2", &sealed), None, "bound to its account");
        assert_eq!(SealingKey::ephemeral().open("account-1", &sealed), None, "another key");
        let mut tampered = sealed.clone();
        tampered.replace_range(40..41, if &sealed[40..41] == "0" { "1" } else { "0" });
        assert_eq!(key.open("account-1", &tampered), None, "changed");
        assert_eq!(key.open("account-1", "JBSWY3DPEHPK3PXP"), None, "not sealed");
        assert!(SealingKey::from_hex(&SealingKey::generate_hex()).is_some());
        assert!(SealingKey::from_hex("not a key").is_none());
    }
}
