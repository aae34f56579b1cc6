//! The character sets Kith reads (MSH-18), decoded without a dependency: UTF-8, ISO-8859-1
//! (every byte is the code point of the same number) and Windows-1252 (ISO-8859-1 but for
//! 0x80–0x9F).

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
        let name = name.trim().to_ascii_uppercase();
        match name.as_str() {
            "" | "ASCII" | "UNICODE UTF-8" | "UTF-8" | "UTF8" => Some(Charset::Utf8),
            "8859/1" | "ISO-8859-1" | "ISO 8859-1" | "ISO8859-1" | "LATIN1" | "LATIN-1" => Some(Charset::Latin1),
            "WINDOWS-1252" | "CP1252" | "WIN1252" | "WINDOWS1252" => Some(Charset::Windows1252),
            _ => None,
        }
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
        match self {
            Charset::Utf8 => match std::str::from_utf8(bytes) {
                Ok(text) => (text.to_owned(), None),
                Err(error) => (String::from_utf8_lossy(bytes).into_owned(), Some(error.valid_up_to())),
            },
            Charset::Latin1 => (bytes.iter().map(|&b| char::from(b)).collect(), None),
            Charset::Windows1252 => {
                let mut first_invalid = None;
                let text = bytes
                    .iter()
                    .enumerate()
                    .map(|(offset, &b)| match b {
                        0x80..=0x9F => WINDOWS_1252_HIGH[usize::from(b - 0x80)].unwrap_or_else(|| {
                            first_invalid.get_or_insert(offset);
                            char::REPLACEMENT_CHARACTER
                        }),
                        _ => char::from(b),
                    })
                    .collect();
                (text, first_invalid)
            }
        }
    }
}

/// Windows-1252 bytes 0x80–0x9F; `None` where the code page leaves a byte undefined.
const WINDOWS_1252_HIGH: [Option<char>; 32] = [
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
}
