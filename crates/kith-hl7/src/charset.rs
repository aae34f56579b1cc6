//! The character sets Kith reads (MSH-18), decoded without a dependency: UTF-8, ISO-8859-1
//! (every byte is the code point of the same number) and Windows-1252 (ISO-8859-1 but for
//! 0x80–0x9F).

use std::borrow::Cow;

/// A character set named by MSH-18.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Charset {
    Utf8,
    Latin1,
    Windows1252,
}

impl Charset {
    /// The character set named by MSH-18 (HL7 table 0211 values and common aliases). An
    /// empty MSH-18 means the default, UTF-8 (of which ASCII is a part).
    pub fn from_msh18(name: &str) -> Option<Self> {
        const NAMES: [(&str, Charset); 15] = [
            ("", Charset::Utf8),
            ("ASCII", Charset::Utf8),
            ("UNICODE UTF-8", Charset::Utf8),
            ("UTF-8", Charset::Utf8),
            ("UTF8", Charset::Utf8),
            ("8859/1", Charset::Latin1),
            ("ISO-8859-1", Charset::Latin1),
            ("ISO 8859-1", Charset::Latin1),
            ("ISO8859-1", Charset::Latin1),
            ("LATIN1", Charset::Latin1),
            ("LATIN-1", Charset::Latin1),
            ("WINDOWS-1252", Charset::Windows1252),
            ("CP1252", Charset::Windows1252),
            ("WIN1252", Charset::Windows1252),
            ("WINDOWS1252", Charset::Windows1252),
        ];
        let name = name.trim();
        // The names are upper-case ASCII: comparing without regard to ASCII case is the same
        // as upper-casing the name first, without a copy.
        NAMES.iter().find(|(known, _)| known.eq_ignore_ascii_case(name)).map(|&(_, charset)| charset)
    }

    /// The HL7 table 0211 name Kith writes in MSH-18.
    pub fn msh18(self) -> &'static str {
        match self {
            Charset::Utf8 => "UNICODE UTF-8",
            Charset::Latin1 => "8859/1",
            Charset::Windows1252 => "WINDOWS-1252",
        }
    }

    /// Decodes `bytes`; the second value is the offset of the first byte that is not valid
    /// in this character set (replaced by U+FFFD), if any.
    pub fn decode(self, bytes: &[u8]) -> (String, Option<usize>) {
        let (text, invalid_at) = self.decode_text(bytes);
        (text.into_owned(), invalid_at)
    }

    /// As [`Charset::decode`], borrowing `bytes` when they are already the text: valid
    /// UTF-8, or ASCII in any of these character sets.
    pub(crate) fn decode_text(self, bytes: &[u8]) -> (Cow<'_, str>, Option<usize>) {
        if self != Charset::Utf8
            && bytes.is_ascii()
            && let Ok(text) = std::str::from_utf8(bytes)
        {
            return (Cow::Borrowed(text), None);
        }
        match self {
            Charset::Utf8 => match std::str::from_utf8(bytes) {
                Ok(text) => (Cow::Borrowed(text), None),
                Err(error) => (String::from_utf8_lossy(bytes), Some(error.valid_up_to())),
            },
            Charset::Latin1 => {
                // Bytes from 0x80 take two bytes in UTF-8.
                let mut text = String::with_capacity(bytes.len() + bytes.iter().filter(|&&b| b >= 0x80).count());
                text.extend(bytes.iter().map(|&b| char::from(b)));
                (Cow::Owned(text), None)
            }
            Charset::Windows1252 => {
                let mut first_invalid = None;
                // Bytes from 0x80 take at most three bytes in UTF-8.
                let mut text = String::with_capacity(bytes.len() + 2 * bytes.iter().filter(|&&b| b >= 0x80).count());
                text.extend(bytes.iter().enumerate().map(|(offset, &b)| match b {
                    0x80..=0x9F => WINDOWS_1252_HIGH[usize::from(b - 0x80)].unwrap_or_else(|| {
                        first_invalid.get_or_insert(offset);
                        char::REPLACEMENT_CHARACTER
                    }),
                    _ => char::from(b),
                }));
                (Cow::Owned(text), first_invalid)
            }
        }
    }
}

/// Windows-1252 bytes 0x80–0x9F; `None` where the code page leaves a byte undefined.
pub(crate) const WINDOWS_1252_HIGH: [Option<char>; 32] = [
    Some('€'),
    None,
    Some('‚'),
    Some('ƒ'),
    Some('„'),
    Some('…'),
    Some('†'),
    Some('‡'),
    Some('ˆ'),
    Some('‰'),
    Some('Š'),
    Some('‹'),
    Some('Œ'),
    None,
    Some('Ž'),
    None,
    None,
    Some('‘'),
    Some('’'),
    Some('“'),
    Some('”'),
    Some('•'),
    Some('–'),
    Some('—'),
    Some('˜'),
    Some('™'),
    Some('š'),
    Some('›'),
    Some('œ'),
    None,
    Some('ž'),
    Some('Ÿ'),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_decoding() {
        assert_eq!(Charset::from_msh18(""), Some(Charset::Utf8));
        assert_eq!(Charset::from_msh18("unicode utf-8"), Some(Charset::Utf8));
        assert_eq!(Charset::from_msh18("8859/1"), Some(Charset::Latin1));
        assert_eq!(Charset::from_msh18("windows-1252"), Some(Charset::Windows1252));
        assert_eq!(Charset::from_msh18("ISO IR87"), None);
        assert_eq!(Charset::Latin1.decode(b"Sian \xe9"), ("Sian é".to_owned(), None));
        assert_eq!(Charset::Windows1252.decode(b"\x80 \x93x\x94 \xe9"), ("€ “x” é".to_owned(), None));
        assert_eq!(Charset::Windows1252.decode(b"a\x81"), ("a\u{fffd}".to_owned(), Some(1)));
        assert_eq!(Charset::Utf8.decode("Siân".as_bytes()), ("Siân".to_owned(), None));
        assert_eq!(Charset::Utf8.decode(b"ab\xe9cd"), ("ab\u{fffd}cd".to_owned(), Some(2)));
    }

    #[test]
    fn names_ignore_ascii_case_and_surrounding_space_only() {
        assert_eq!(Charset::from_msh18(" Unicode Utf-8\t"), Some(Charset::Utf8));
        assert_eq!(Charset::from_msh18("iso 8859-1"), Some(Charset::Latin1));
        assert_eq!(Charset::from_msh18("Cp1252"), Some(Charset::Windows1252));
        assert_eq!(Charset::from_msh18("  "), Some(Charset::Utf8));
        assert_eq!(Charset::from_msh18("UTF 8"), None);
        assert_eq!(Charset::from_msh18("ÜTF-8"), None);
        assert_eq!(Charset::from_msh18("UTF-8x"), None);
    }

    #[test]
    fn text_is_borrowed_when_the_bytes_are_it() {
        for charset in [Charset::Utf8, Charset::Latin1, Charset::Windows1252] {
            assert!(matches!(charset.decode_text(b"MSH|plain"), (Cow::Borrowed("MSH|plain"), None)));
        }
        assert!(matches!(Charset::Utf8.decode_text("Siân".as_bytes()), (Cow::Borrowed("Siân"), None)));
        assert!(matches!(Charset::Latin1.decode_text(b"Sian\xe9"), (Cow::Owned(_), None)));
        assert_eq!(Charset::Windows1252.decode_text(b"\x81\x80").0, "\u{fffd}€");
    }
}
