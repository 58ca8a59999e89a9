//! Free text operators write for players (titles, descriptions, message bodies): [`Text`] is
//! bounded, never holds U+0000 (PostgreSQL cannot store it), and is not blank where it is
//! required. It checks this as it is read from JSON (400 naming the field) and writes the same
//! into the OpenAPI document, white space spelled out as Rust's `char::is_whitespace` reads it so
//! every regex dialect agrees.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Pattern of optional free text: anything but U+0000.
const TEXT_PATTERN: &str = r"^[^\u0000]*$";

/// Pattern of required free text: no U+0000, and at least one character that is not white space.
const NONBLANK_TEXT_PATTERN: &str = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$";

/// Free text of at most `MAX` characters without U+0000, not all white space when `REQUIRED`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text<const MAX: usize, const REQUIRED: bool>(String);

impl<const MAX: usize, const REQUIRED: bool> Text<MAX, REQUIRED> {
    /// `text`, if it keeps the rules; else why not.
    pub fn new(text: String) -> Result<Self, String> {
        let blank = text.chars().all(char::is_whitespace);
        if text.chars().count() > MAX || (REQUIRED && blank) {
            return Err(if REQUIRED {
                format!("must be 1..={MAX} characters, not all white space")
            } else {
                format!("must be at most {MAX} characters")
            });
        }
        if text.contains('\0') {
            return Err("must not contain U+0000 (NUL)".into());
        }
        Ok(Self(text))
    }

    /// The text.
    pub fn into_inner(self) -> String {
        self.0
    }

    /// The text, borrowed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A title shown to players: 1..=200 characters, not all white space.
pub type Title = Text<200, true>;

impl<'de, const MAX: usize, const REQUIRED: bool> Deserialize<'de> for Text<MAX, REQUIRED> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl<const MAX: usize, const REQUIRED: bool> PartialSchema for Text<MAX, REQUIRED> {
    fn schema() -> RefOr<Schema> {
        let (min, pattern) = if REQUIRED {
            (Some(1), NONBLANK_TEXT_PATTERN)
        } else {
            (None, TEXT_PATTERN)
        };
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(min)
            .max_length(Some(MAX))
            .pattern(Some(pattern))
            .into()
    }
}

impl<const MAX: usize, const REQUIRED: bool> ToSchema for Text<MAX, REQUIRED> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The document's schema, read as its readers read it, accepts exactly what is read.
    #[test]
    fn the_schema_accepts_exactly_what_is_read() {
        fn agree<const MAX: usize, const REQUIRED: bool>(samples: &[&str]) {
            let schema = serde_json::to_value(Text::<MAX, REQUIRED>::schema()).expect("schema");
            let pattern = schema["pattern"].as_str().expect("pattern");
            let pattern = regex::Regex::new(pattern).expect("a pattern");
            let max = schema["maxLength"].as_u64().expect("maxLength");
            let min = schema["minLength"].as_u64().unwrap_or(0);
            for s in samples {
                let n = s.chars().count() as u64;
                let documented = pattern.is_match(s) && (min..=max).contains(&n);
                let read = Text::<MAX, REQUIRED>::new((*s).to_owned()).is_ok();
                assert_eq!(documented, read, "{s:?} (required: {REQUIRED})");
            }
        }
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
            "abcdefghijk",
        ];
        agree::<10, true>(&samples);
        agree::<10, false>(&samples);
    }

    #[test]
    fn refusals_name_the_field_and_say_why() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Message {
            title: Text<5, true>,
            #[serde(default)]
            body: Text<10, false>,
        }
        let refused = |json: &str| crate::parse_json::<Message>(json.as_bytes()).unwrap_err();
        let p = refused(r#"{"title": "  "}"#);
        assert_eq!((p.status, p.field.as_deref()), (400, Some("title")));
        let p = refused(r#"{"title": "hi", "body": "a\u0000b"}"#);
        assert_eq!(p.field.as_deref(), Some("body"));
        assert!(p.detail.unwrap_or_default().contains("U+0000"));
        let ok = crate::parse_json::<Message>(br#"{"title": " hi "}"#).expect("read");
        assert_eq!(ok.title.into_inner(), " hi ");
        assert_eq!(ok.body.into_inner(), "");
    }
}
