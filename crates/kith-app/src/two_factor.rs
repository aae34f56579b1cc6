//! Two-step verification: time-based one-time passwords (TOTP, RFC 6238: HMAC-SHA1, 30 s
//! steps, 6 digits — what every authenticator app reads from an `otpauth://` QR code) and
//! single-use recovery codes.

use hmac::{Hmac, KeyInit, Mac};
use kith_core::Timestamp;
use sha1::Sha1;

/// Seconds per TOTP step.
pub const STEP_SECONDS: i64 = 30;
/// Recovery codes given at enrolment.
pub const RECOVERY_CODES: usize = 10;

/// RFC 4648 base32 as authenticator apps take keys: no padding when written; when read,
/// any case, with spaces and padding ignored.
static BASE32: std::sync::LazyLock<data_encoding::Encoding> = std::sync::LazyLock::new(|| {
    let mut specification = data_encoding::Specification::new();
    specification.symbols.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567");
    specification.translate.from.push_str("abcdefghijklmnopqrstuvwxyz");
    specification.translate.to.push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    specification.ignore.push_str(" \t\r\n=");
    specification.check_trailing_bits = false;
    specification.encoding().expect("a valid base32 specification")
});

/// RFC 4648 base32 without padding, as authenticator apps take keys.
pub fn base32(bytes: &[u8]) -> String {
    BASE32.encode(bytes)
}

/// Reads base32 (case, spaces and padding ignored); `None` for anything else.
pub fn from_base32(text: &str) -> Option<Vec<u8>> {
    BASE32.decode(text.as_bytes()).ok()
}

/// The TOTP step an instant falls in.
pub fn step_of(at: Timestamp) -> i64 {
    at.as_micros().div_euclid(1_000_000).div_euclid(STEP_SECONDS)
}

/// The code for one step (RFC 4226 dynamic truncation), `digits` long.
pub fn code_at(key: &[u8], step: i64, digits: u32) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let value = u32::from_be_bytes([digest[offset] & 0x7f, digest[offset + 1], digest[offset + 2], digest[offset + 3]]);
    format!("{:0width$}", value % 10u32.pow(digits), width = digits as usize)
}

/// The step a typed code matches: this step or one either side (clock drift), and only a
/// step later than `last_used`, so that a code cannot be replayed.
pub fn verify(key: &[u8], typed: &str, at: Timestamp, last_used: Option<i64>) -> Option<i64> {
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if typed.len() != 6 || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_of(at);
    [now - 1, now, now + 1]
        .into_iter()
        .filter(|step| last_used.is_none_or(|last| *step > last))
        .find(|step| constant_time_eq(code_at(key, *step, 6).as_bytes(), typed.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What an authenticator app reads from the QR code.
pub fn otpauth_uri(key: &[u8], issuer: &str, account: &str) -> String {
    let escape = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => char::from(b).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    format!(
        "otpauth://totp/{}:{}?secret={}&issuer={}&algorithm=SHA1&digits=6&period={STEP_SECONDS}",
        escape(issuer),
        escape(account),
        base32(key),
        escape(issuer)
    )
}

/// Recovery codes are compared as typed without dashes, spaces or case.
pub fn normalise_recovery_code(typed: &str) -> String {
    typed.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::{new_recovery_code, new_totp_key as new_key};

    #[test]
    fn rfc_6238_test_vectors() {
        // RFC 6238 appendix B, SHA-1, eight digits.
        let key = b"12345678901234567890";
        for (seconds, expected) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            let step = step_of(Timestamp::from_micros(seconds * 1_000_000));
            assert_eq!(code_at(key, step, 8), expected, "T = {seconds}");
        }
    }

    #[test]
    fn codes_verify_within_one_step_and_never_twice() {
        let key = new_key();
        let at = Timestamp::from_micros(1_795_000_000_000_000);
        let now = step_of(at);
        let code = code_at(&key, now, 6);
        assert_eq!(verify(&key, &code, at, None), Some(now));
        assert_eq!(verify(&key, &format!("{} {}", &code[..3], &code[3..]), at, None), Some(now), "spaces ignored");
        assert_eq!(verify(&key, &code, at, Some(now)), None, "no replay");
        assert_eq!(verify(&key, &code_at(&key, now - 1, 6), at, None), Some(now - 1), "drift allowed");
        assert_eq!(verify(&key, &code_at(&key, now - 2, 6), at, None), None);
        assert_eq!(verify(&key, "12345", at, None), None);
        assert_eq!(verify(&key, "abcdef", at, None), None);
    }

    #[test]
    fn base32_round_trips_and_recovery_codes_look_right() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(from_base32("mzxw 6ytb oi").unwrap(), b"foobar");
        assert_eq!(from_base32("not base32!"), None);
        let key = new_key();
        assert_eq!(from_base32(&base32(&key)).unwrap(), key);
        let code = new_recovery_code();
        assert_eq!(code.len(), 11);
        assert_eq!(&code[5..6], "-");
        assert_eq!(normalise_recovery_code(&code.to_uppercase()).len(), 10);
        let uri = otpauth_uri(&key, "Kith", "ada@example.org");
        assert!(uri.starts_with("otpauth://totp/Kith:ada@example.org?secret="), "{uri}");
    }
}
