//! Which uploads Kith takes as documents, by content: one row per kind of file (the name it
//! came with does not count), then the file names it keeps them under.

use kith_core::document::{
    DEFAULT_FILE_NAME, DocumentRefusal, DocumentType, MAX_DOCUMENT_BYTES, MAX_FILE_NAME_CHARS, sanitise_file_name,
    sniff_document,
};

const PDF: &[u8] = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj\n<<>>\nendobj\n%%EOF\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";
const JPEG: &[u8] = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0";

#[test]
fn uploads_are_judged_by_their_content() {
    let at_limit = {
        let mut bytes = PDF.to_vec();
        bytes.resize(MAX_DOCUMENT_BYTES, b' ');
        bytes
    };
    let over_limit = {
        let mut bytes = PNG.to_vec();
        bytes.resize(MAX_DOCUMENT_BYTES + 1, 0);
        bytes
    };
    let rows: Vec<(&str, &[u8], Result<DocumentType, DocumentRefusal>)> = vec![
        ("a PDF", PDF, Ok(DocumentType::Pdf)),
        ("the smallest PDF signature", b"%PDF-", Ok(DocumentType::Pdf)),
        ("a PNG", PNG, Ok(DocumentType::Png)),
        ("a JPEG (JFIF)", JPEG, Ok(DocumentType::Jpeg)),
        ("a JPEG (Exif)", b"\xFF\xD8\xFF\xE1\0\x18Exif\0\0", Ok(DocumentType::Jpeg)),
        ("a PDF of exactly the limit", &at_limit, Ok(DocumentType::Pdf)),
        ("nothing", b"", Err(DocumentRefusal::Empty)),
        ("one byte over the limit", &over_limit, Err(DocumentRefusal::TooLarge { limit: MAX_DOCUMENT_BYTES })),
        ("plain text", b"Discharge summary: all well.\n", Err(DocumentRefusal::NotAllowedType)),
        ("HTML", b"<!DOCTYPE html><script>alert(1)</script>", Err(DocumentRefusal::NotAllowedType)),
        ("a PDF signature not at the start", b" %PDF-1.7", Err(DocumentRefusal::NotAllowedType)),
        ("%PDF without its dash", b"%PDF1.7", Err(DocumentRefusal::NotAllowedType)),
        ("a PNG signature cut short", b"\x89PNG\r\n\x1a", Err(DocumentRefusal::NotAllowedType)),
        ("two bytes of a JPEG", b"\xFF\xD8", Err(DocumentRefusal::NotAllowedType)),
        ("a GIF", b"GIF89a\x01\0\x01\0", Err(DocumentRefusal::NotAllowedType)),
        ("a ZIP (a Word document)", b"PK\x03\x04\x14\0\x06\0", Err(DocumentRefusal::NotAllowedType)),
        ("an SVG image", b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>", Err(DocumentRefusal::NotAllowedType)),
        ("a Windows program", b"MZ\x90\0\x03\0\0\0", Err(DocumentRefusal::NotAllowedType)),
    ];
    for (name, bytes, expected) in rows {
        assert_eq!(sniff_document(bytes), expected, "{name}");
    }
}

#[test]
fn each_type_has_its_media_type_and_reads_back_from_it() {
    let rows =
        [(DocumentType::Pdf, "application/pdf"), (DocumentType::Png, "image/png"), (DocumentType::Jpeg, "image/jpeg")];
    for (kind, media_type) in rows {
        assert_eq!(kind.media_type(), media_type);
        assert_eq!(DocumentType::from_media_type(media_type), Some(kind));
    }
    for other in ["text/plain", "application/PDF", "image/jpg", "image/svg+xml", ""] {
        assert_eq!(DocumentType::from_media_type(other), None, "{other}");
    }
}

#[test]
fn refusals_say_what_to_do() {
    assert_eq!(
        DocumentRefusal::NotAllowedType.to_string(),
        "The file is not a PDF, PNG or JPEG image: save or scan the document as one of those and upload it again."
    );
    assert_eq!(
        DocumentRefusal::TooLarge { limit: MAX_DOCUMENT_BYTES }.to_string(),
        "The file is too large: a document may be at most 10 MB."
    );
    assert_eq!(DocumentRefusal::Empty.to_string(), "The file is empty: choose the document again.");
}

#[test]
fn file_names_keep_letters_digits_spaces_dots_dashes_and_underscores() {
    let long = "a".repeat(150);
    let rows: Vec<(&str, &str, String)> = vec![
        ("a plain name", "letter.pdf", "letter.pdf".into()),
        ("spaces, dashes and underscores", "Clinic letter - 2026_03.pdf", "Clinic letter - 2026_03.pdf".into()),
        ("letters beyond ASCII", "Résumé clinique.pdf", "Résumé clinique.pdf".into()),
        ("a Unix path", "/home/ngozi/scans/letter.pdf", "letter.pdf".into()),
        ("a Windows path", "C:\\fakepath\\letter.pdf", "letter.pdf".into()),
        ("a climb out of the directory", "../../etc/passwd", "passwd".into()),
        ("markup (its slash counts as a path)", "<script>alert(1)</script>.pdf", "script.pdf".into()),
        ("markup without a slash", "<img src=x onerror=alert(1)>.png", "img srcx onerroralert1.png".into()),
        ("quotes and semicolons", "a\"b';c.pdf", "abc.pdf".into()),
        ("control characters and new lines", "a\r\nb\u{0}c.pdf", "a bc.pdf".into()),
        ("a right-to-left override", "invoice\u{202E}fdp.exe", "invoicefdp.exe".into()),
        ("runs of spaces and tabs", "a  \t b.pdf", "a b.pdf".into()),
        ("leading dots (a hidden file)", "..hidden.pdf", "hidden.pdf".into()),
        ("leading and trailing spaces and dots", " . letter.pdf . ", "letter.pdf".into()),
        ("nothing", "", DEFAULT_FILE_NAME.into()),
        ("only a path", "/tmp/", DEFAULT_FILE_NAME.into()),
        ("only dots", "...", DEFAULT_FILE_NAME.into()),
        ("only symbols", "<>:*?|", DEFAULT_FILE_NAME.into()),
        ("too long", &long, "a".repeat(MAX_FILE_NAME_CHARS)),
    ];
    for (name, given, expected) in rows {
        assert_eq!(sanitise_file_name(given), expected, "{name}");
    }
    // Cut at a character, not a byte; never ending in a space or dot after the cut.
    let accented = "é".repeat(120);
    assert_eq!(sanitise_file_name(&accented).chars().count(), MAX_FILE_NAME_CHARS);
    let cut_at_space = format!("{} b", "a".repeat(MAX_FILE_NAME_CHARS - 1));
    assert_eq!(sanitise_file_name(&cut_at_space), "a".repeat(MAX_FILE_NAME_CHARS - 1));
}
