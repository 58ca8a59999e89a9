//! An operator's email as request bodies carry it: the bounds the OpenAPI document declares for
//! it and the check the server makes of them, written once.

use std::borrow::Cow;

use liveops_http::Problem;
use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Fewest characters of an email.
const MIN_CHARS: usize = 3;
/// Most characters of an email, as given and in lower case (the column holds 254).
const MAX_CHARS: usize = 254;
/// One `@` between two non-empty parts, no white space or control character anywhere: Unicode
/// white space and control characters spelled out, so every regex dialect reads it the same.
const PATTERN: &str = r"^[^@\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+@[^@\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$";

/// An operator's email in a request body (`POST /operators`, `POST /auth/login`), as sent:
/// [`Email::normalized`] checks it.
#[derive(Clone, Debug, Deserialize)]
#[serde(transparent)]
pub(crate) struct Email(String);

impl Email {
    /// The email as sent.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The email lower-cased, or 400 naming `email` when it is outside the bounds the document
    /// declares for it (see [`normalize_email`]).
    pub(crate) fn normalized(&self) -> Result<String, Problem> {
        normalize_email(&self.0)
    }
}

impl PartialSchema for Email {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An operator's email: one `@` between two non-empty parts, no white space or \
                 control character, 3 to 254 characters (also in lower case).",
            ))
            .min_length(Some(MIN_CHARS))
            .max_length(Some(MAX_CHARS))
            .pattern(Some(PATTERN))
            .into()
    }
}

impl ToSchema for Email {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Email")
    }
}

/// Lower-cases and checks an email: 3..=254 characters (also in lower case, which a few letters
/// lengthen: `İ` is two), one `@` with text on both sides, no whitespace or control characters.
pub(crate) fn normalize_email(raw: &str) -> Result<String, Problem> {
    // Exactly what [`PATTERN`] and the lengths of [`Email`]'s schema say; then compared in
    // lower case.
    let ok_len = (MIN_CHARS..=MAX_CHARS).contains(&raw.chars().count());
    let ok_chars = !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    let ok_shape = matches!(raw.split_once('@'), Some((a, b)) if !a.is_empty() && !b.is_empty() && !b.contains('@'));
    if ok_len && ok_chars && ok_shape {
        let lower = raw.to_lowercase();
        if lower.chars().count() > MAX_CHARS {
            return Err(Problem::invalid(
                "email",
                "must be at most 254 characters in lower case",
            ));
        }
        Ok(lower)
    } else {
        Err(Problem::invalid(
            "email",
            "must be an email address (3..=254 characters, no spaces)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{normalize_email, Email, PATTERN};
    use utoipa::PartialSchema;

    #[test]
    fn emails_are_lower_cased_and_refused_with_spaces_controls_or_a_second_at() {
        assert_eq!(
            normalize_email("Ops@Example.COM").ok(),
            Some("ops@example.com".into())
        );
        for bad in [
            " ops@example.com",
            "ops@example.com ",
            "ops @example.com",
            "ops@exa\u{a0}mple.com",
            "ops@exa\u{85}mple.com",
            "ops@exa@mple.com",
            "@example.com",
            "ops@",
            "a@",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_email(&format!("a@{}", "b".repeat(252))).is_ok());
        assert!(normalize_email(&format!("a@{}", "b".repeat(253))).is_err());
        // 254 characters as given, 506 in lower case (the column holds 254).
        let long = normalize_email(&format!("a@{}", "İ".repeat(252))).unwrap_err();
        assert!(long.detail.unwrap_or_default().contains("in lower case"));
        assert_eq!(
            normalize_email(&format!("a@{}", "İ".repeat(100)))
                .ok()
                .map(|e| e.chars().count()),
            Some(202)
        );
    }

    /// The document declares the bounds the server checks.
    #[test]
    fn the_schema_declares_the_checked_bounds() {
        let schema = serde_json::to_value(Email::schema()).expect("schema");
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["minLength"], 3);
        assert_eq!(schema["maxLength"], 254);
        assert_eq!(schema["pattern"], PATTERN);
    }

    /// A body's email is a JSON string, kept as sent until checked.
    #[test]
    fn an_email_reads_as_a_plain_string() {
        let email: Email = serde_json::from_str(r#""Ops@Example.com""#).expect("email");
        assert_eq!(email.as_str(), "Ops@Example.com");
        assert_eq!(email.normalized().ok().as_deref(), Some("ops@example.com"));
        assert!(serde_json::from_str::<Email>("3").is_err());
    }
}
