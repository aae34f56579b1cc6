//! `kith letters export`: the pending letter invitations of an organisation as one printable
//! PDF, one A4 page per letter — the patient's name and address, the invitation and
//! activation codes and their expiry, and how to register. Never the date of birth: the
//! patient proves who they are with it when registering. Exported letters count as
//! delivered, and their codes leave the database (only the hashes stay).
//!
//! The PDF is written by hand (PDF 1.4, the standard Helvetica fonts, WinAnsi text): a few
//! dozen lines instead of a PDF library.

use std::fmt::Write as _;

use kith_app::invitations::LetterInvitation;

const PAGE_WIDTH: f32 = 595.0; // A4 in points
const PAGE_HEIGHT: f32 = 842.0;
const LEFT: f32 = 72.0;

/// One line of text on a page: where, how big, bold or not.
struct Line {
    x: f32,
    y: f32,
    size: f32,
    bold: bool,
    text: String,
}

/// The lines of one letter.
fn letter_lines(letter: &LetterInvitation, public_url: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut y = PAGE_HEIGHT - 72.0;
    let mut put = |text: &str, size: f32, bold: bool, gap: f32| {
        lines.push(Line { x: LEFT, y, size, bold, text: text.to_owned() });
        y -= gap;
    };
    put(&letter.organisation, 16.0, true, 40.0);
    put(&letter.name, 12.0, false, 15.0);
    for address_line in &letter.address {
        put(address_line, 12.0, false, 15.0);
    }
    y -= 35.0;
    let mut put = |text: &str, size: f32, bold: bool, gap: f32| {
        lines.push(Line { x: LEFT, y, size, bold, text: text.to_owned() });
        y -= gap;
    };
    put("Your invitation to Kith, your health record", 14.0, true, 26.0);
    put(&format!("Dear {},", letter.name), 12.0, false, 22.0);
    for sentence in [
        "Your care team keeps your health record in Kith. You can see it, decide which of your",
        "care teams see which parts of it, and see who has looked at it.",
        "",
        "To register, go to the address below and enter the two codes from this letter and your",
        "date of birth. Then choose your email address and a password.",
    ] {
        put(sentence, 12.0, false, 16.0);
    }
    y -= 12.0;
    let mut put = |text: &str, size: f32, bold: bool, gap: f32| {
        lines.push(Line { x: LEFT, y, size, bold, text: text.to_owned() });
        y -= gap;
    };
    put(&format!("{public_url}/register"), 13.0, true, 30.0);
    put(&format!("Invitation code:   {}", letter.invitation_code), 14.0, true, 22.0);
    put(&format!("Activation code:   {}", letter.activation_code), 14.0, true, 30.0);
    put(&format!("These codes work once, until {}.", letter.expires), 12.0, false, 16.0);
    put("If they have expired, ask your care team for a new invitation.", 12.0, false, 16.0);
    put("Keep this letter private: anyone with these codes and your date of birth could register.", 10.0, false, 16.0);
    lines
}

/// Text as a PDF string in WinAnsi (Latin-1 for the characters names use; others as '?').
fn pdf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('(');
    for character in text.chars() {
        match character {
            '(' | ')' | '\\' => {
                out.push('\\');
                out.push(character);
            }
            ' '..='~' => out.push(character),
            '\u{a0}'..='\u{ff}' => {
                let _ = write!(out, "\\{:03o}", u32::from(character));
            }
            '\u{2019}' => out.push('\''),
            '\u{2013}' | '\u{2014}' => out.push('-'),
            _ => out.push('?'),
        }
    }
    out.push(')');
    out
}

/// The PDF of these letters, one page each (a single blank page when there are none, so
/// that the file is still a valid PDF).
pub fn letters_pdf(letters: &[LetterInvitation], public_url: &str) -> Vec<u8> {
    // Objects: 1 catalog, 2 pages, 3 Helvetica, 4 Helvetica-Bold, then per page: page, content.
    let pages = letters.len().max(1);
    let mut objects: Vec<String> = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        String::new(), // the page tree, once the page ids are known
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_owned(),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>".to_owned(),
    ];
    let mut kids = Vec::new();
    for index in 0..pages {
        let mut content = String::new();
        if let Some(letter) = letters.get(index) {
            for line in letter_lines(letter, public_url) {
                let font = if line.bold { "F2" } else { "F1" };
                let _ = writeln!(
                    content,
                    "BT /{font} {} Tf {} {} Td {} Tj ET",
                    line.size,
                    line.x,
                    line.y,
                    pdf_string(&line.text)
                );
            }
        }
        let page_id = objects.len() + 1;
        let content_id = page_id + 1;
        kids.push(format!("{page_id} 0 R"));
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_WIDTH} {PAGE_HEIGHT}] \
             /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {content_id} 0 R >>"
        ));
        objects.push(format!("<< /Length {} >>\nstream\n{content}endstream", content.len()));
    }
    objects[1] = format!("<< /Type /Pages /Kids [{}] /Count {pages} >>", kids.join(" "));

    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (index, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", index + 1).as_bytes());
    }
    let xref = pdf.len();
    let mut table = format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1);
    for offset in offsets {
        let _ = writeln!(table, "{offset:010} 00000 n ");
    }
    let _ = write!(table, "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1);
    pdf.extend_from_slice(table.as_bytes());
    pdf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(name: &str) -> LetterInvitation {
        LetterInvitation {
            message: uuid::Uuid::nil(),
            organisation: "Riverside Hospitals".into(),
            name: name.into(),
            address: vec!["1 High Street".into(), "Riverside".into(), "RV1 2AB".into()],
            invitation_code: "ABCD-EFGH".into(),
            activation_code: "JKLM-NPQR".into(),
            expires: "2027-01-01".into(),
        }
    }

    #[test]
    fn one_page_per_letter_with_a_valid_cross_reference_table() {
        let pdf = letters_pdf(&[letter("Zoë O'Brien (Jr)"), letter("Sam Smith")], "https://kith.example");
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.starts_with("%PDF-1.4"));
        assert!(text.ends_with("%%EOF\n"));
        assert_eq!(text.matches("/Type /Page ").count(), 2);
        assert!(text.contains("/Count 2"));
        assert!(text.contains("(Dear Zo\\353 O'Brien \\(Jr\\),)"), "Latin-1 escapes and parentheses");
        assert!(text.contains("Invitation code:   ABCD-EFGH"));
        // Every xref offset points at its object.
        let xref = text.rfind("xref\n").unwrap();
        for (index, line) in text[xref..].lines().skip(3).take_while(|line| line.ends_with(" n ")).enumerate() {
            let offset: usize = line[..10].parse().unwrap();
            assert!(text[offset..].starts_with(&format!("{} 0 obj", index + 1)), "object {}", index + 1);
        }
        let empty = String::from_utf8_lossy(&letters_pdf(&[], "x")).into_owned();
        assert!(empty.contains("/Count 1"), "no letters: one blank page");
    }
}
