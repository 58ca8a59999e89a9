//! Free text operators write for players (titles, descriptions, message bodies): bounded, never
//! U+0000 (PostgreSQL cannot store it), and not blank where it is required. The patterns say the
//! same in the OpenAPI document, white space spelled out as Rust's `char::is_whitespace` reads it
//! so every regex dialect agrees.

use crate::Problem;

/// Pattern of optional free text: anything but U+0000.
pub const TEXT_PATTERN: &str = r"^[^\u0000]*$";

/// Pattern of required free text: no U+0000, and at least one character that is not white space.
pub const NONBLANK_TEXT_PATTERN: &str = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$";

/// Checks free text for `field`: at most `max` characters, no U+0000, and not blank when
/// `required`; 400 naming the field.
pub fn check_text(field: &str, text: &str, max: usize, required: bool) -> Result<(), Problem> {
    let blank = text.chars().all(char::is_whitespace);
    if text.chars().count() > max || (required && blank) {
        let bounds = if required {
            format!("must be 1..={max} characters, not all white space")
        } else {
            format!("must be at most {max} characters")
        };
        return Err(Problem::invalid(field, bounds));
    }
    if text.contains('\0') {
        return Err(Problem::invalid(field, "must not contain U+0000 (NUL)"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The patterns, read as the document's readers read them, agree with [`check_text`].
    #[test]
    fn the_patterns_accept_exactly_what_check_text_accepts() {
        let text = regex::Regex::new(TEXT_PATTERN).expect("pattern");
        let nonblank = regex::Regex::new(NONBLANK_TEXT_PATTERN).expect("pattern");
        let samples = [
            "",
            " ",
            "a",
            " a ",
            "\u{0}",
            "a\u{0}",
            "\u{85}",
            "\u{feff}",
            "\u{3000}x",
            "\t\n\r",
            "\u{a0}",
            "\u{200b}",
            "é",
        ];
        for s in samples {
            assert_eq!(
                text.is_match(s),
                check_text("f", s, 10, false).is_ok(),
                "optional {s:?}"
            );
            assert_eq!(
                nonblank.is_match(s),
                check_text("f", s, 10, true).is_ok(),
                "required {s:?}"
            );
        }
        let p = check_text("title", "ab", 1, true).unwrap_err();
        assert_eq!((p.status, p.field.as_deref()), (400, Some("title")));
        let p = check_text("body", "a\u{0}b", 10, false).unwrap_err();
        assert!(p.detail.unwrap_or_default().contains("U+0000"));
    }
}
