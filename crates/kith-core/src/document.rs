//! Documents uploaded to a record (a letter as a PDF, a photograph of one): which files Kith
//! takes, judged by their content, never by the name or the type the sender declared, and
//! the name they are kept under.

use std::fmt;

/// The largest document Kith takes: 10 MiB.
pub const MAX_DOCUMENT_BYTES: usize = 10 * 1024 * 1024;

/// The longest file name kept, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 100;

/// The name a document is kept under when the one given has nothing left after
/// [`sanitise_file_name`].
pub const DEFAULT_FILE_NAME: &str = "document";

/// What an uploaded document is, by its content.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DocumentType {
    Pdf,
    Png,
    Jpeg,
}

impl DocumentType {
    pub const ALL: [DocumentType; 3] = [DocumentType::Pdf, DocumentType::Png, DocumentType::Jpeg];

    /// The media type it is served and stored as.
    pub const fn media_type(self) -> &'static str {
        match self {
            DocumentType::Pdf => "application/pdf",
            DocumentType::Png => "image/png",
            DocumentType::Jpeg => "image/jpeg",
        }
    }

    /// The type whose media type is exactly `media_type` (see [`DocumentType::media_type`]);
    /// for reading back what Kith stored, never for judging an upload.
    pub fn from_media_type(media_type: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.media_type() == media_type)
    }

    /// The signature a file of this type starts with.
    const fn magic(self) -> &'static [u8] {
        match self {
            DocumentType::Pdf => b"%PDF-",
            DocumentType::Png => b"\x89PNG\r\n\x1a\n",
            DocumentType::Jpeg => b"\xFF\xD8\xFF",
        }
    }
}

impl fmt::Display for DocumentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.media_type())
    }
}

/// Why an upload was refused. Each message is a sentence the person uploading can act on.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DocumentRefusal {
    #[error("The file is empty: choose the document again.")]
    Empty,
    #[error("The file is too large: a document may be at most {} MB.", limit / (1024 * 1024))]
    TooLarge { limit: usize },
    #[error("The file is not a PDF, PNG or JPEG image: save or scan the document as one of those and upload it again.")]
    NotAllowedType,
}

/// What the uploaded bytes are: a PDF, a PNG or a JPEG image, by their first bytes (the
/// name and the type declared with them do not count); refused when empty, larger than
/// [`MAX_DOCUMENT_BYTES`], or anything else.
pub fn sniff_document(bytes: &[u8]) -> Result<DocumentType, DocumentRefusal> {
    if bytes.is_empty() {
        return Err(DocumentRefusal::Empty);
    }
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentRefusal::TooLarge { limit: MAX_DOCUMENT_BYTES });
    }
    DocumentType::ALL.into_iter().find(|kind| bytes.starts_with(kind.magic())).ok_or(DocumentRefusal::NotAllowedType)
}

/// The name a document is kept (and later offered for download) under: the last part of
/// the name given (a browser may send a whole path), keeping only letters, digits, spaces,
/// dots, dashes and underscores, runs of spaces made one, without leading or trailing
/// spaces and dots (no hidden or relative names), at most [`MAX_FILE_NAME_CHARS`]
/// characters; [`DEFAULT_FILE_NAME`] when nothing is left.
pub fn sanitise_file_name(given: &str) -> String {
    let last_part = given.rsplit(['/', '\\']).next().unwrap_or(given);
    let mut kept = String::new();
    for c in last_part.chars() {
        let c = if c.is_whitespace() { ' ' } else { c };
        let allowed = c.is_alphanumeric() || matches!(c, ' ' | '.' | '-' | '_');
        if !allowed || (c == ' ' && kept.ends_with(' ')) {
            continue;
        }
        kept.push(c);
    }
    let trimmed: String = kept
        .trim_matches([' ', '.'])
        .chars()
        .take(MAX_FILE_NAME_CHARS)
        .collect::<String>()
        .trim_end_matches([' ', '.'])
        .to_owned();
    if trimmed.is_empty() { DEFAULT_FILE_NAME.to_owned() } else { trimmed }
}
