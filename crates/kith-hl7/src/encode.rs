//! Writing ER7.

use crate::escape::escape;
use crate::message::{Field, Message};

/// The message as ER7 text (UTF-8), segments ended by `\r`. Values are escaped; MSH-1 and
/// MSH-2 are written from the message's delimiters.
pub fn encode(message: &Message) -> String {
    let delimiters = &message.delimiters;
    let mut out = String::new();
    for segment in &message.segments {
        out.push_str(&segment.id);
        let fields: &[Field] = if segment.id == "MSH" {
            out.push(delimiters.field);
            out.push_str(&delimiters.encoding_characters());
            segment.fields.get(2..).unwrap_or(&[])
        } else {
            &segment.fields
        };
        for field in fields {
            out.push(delimiters.field);
            for (r, repetition) in field.repetitions.iter().enumerate() {
                if r > 0 {
                    out.push(delimiters.repetition);
                }
                for (c, component) in repetition.components.iter().enumerate() {
                    if c > 0 {
                        out.push(delimiters.component);
                    }
                    for (s, subcomponent) in component.subcomponents.iter().enumerate() {
                        if s > 0 {
                            out.push(delimiters.subcomponent);
                        }
                        escape(subcomponent, delimiters, &mut out);
                    }
                }
            }
        }
        out.push('\r');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn encodes_what_it_parses() {
        let text = "MSH|^~\\&|PAS|RXH|||20261125||ORU^R01|42|P|2.4\rOBX|1|TX|||a\\F\\b\\.br\\c~second^x&y\r";
        let message = parse(text.as_bytes()).message.unwrap();
        assert_eq!(encode(&message), text);
        assert_eq!(message.segment("OBX").unwrap().value(5), "a|b\nc");
    }
}
