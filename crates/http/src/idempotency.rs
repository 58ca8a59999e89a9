//! The `Idempotency-Key` request header (IETF draft-ietf-httpapi-idempotency-key-header), read
//! the same way on every route that takes one.

use axum::http::HeaderMap;

use crate::Problem;

/// The header's name, as axum stores it.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The header on a repeat's answer (`true`), as Stripe sends it.
pub const REPLAYED: &str = "idempotent-replayed";

/// The `Idempotency-Key` header if sent: once, 1..=255 visible ASCII characters (the pattern
/// `^[!-~]{1,255}$` the routes document); anything else is a 400 problem naming the header.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, Problem> {
    let mut all = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(raw) = all.next() else {
        return Ok(None);
    };
    let bytes = raw.as_bytes();
    let visible = bytes.iter().all(|b| (0x21..=0x7e).contains(b));
    match raw.to_str() {
        Ok(key) if all.next().is_none() && (1..=255).contains(&bytes.len()) && visible => {
            Ok(Some(key))
        }
        _ => Err(Problem::invalid(
            "Idempotency-Key",
            "must be sent once, 1 to 255 visible ASCII characters",
        )),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue};

    use super::{idempotency_key, IDEMPOTENCY_KEY};

    fn with(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                IDEMPOTENCY_KEY,
                HeaderValue::from_bytes(v).expect("a header value"),
            );
        }
        h
    }

    #[test]
    fn a_key_is_sent_once_in_visible_ascii() {
        assert_eq!(idempotency_key(&HeaderMap::new()).ok(), Some(None));
        assert_eq!(
            idempotency_key(&with(&[b"retry-1"])).ok(),
            Some(Some("retry-1"))
        );
        let longest = "k".repeat(255);
        assert!(idempotency_key(&with(&[longest.as_bytes()])).is_ok());
        let too_long = "k".repeat(256);
        let refused: [&[&[u8]]; 5] = [
            &[b""],
            &[b"two words"],
            &[too_long.as_bytes()],
            &[b"caf\xc3\xa9"],
            &[b"a", b"b"],
        ];
        for values in refused {
            let p = idempotency_key(&with(values)).expect_err("refused");
            assert_eq!(p.status, 400, "{values:?}");
            assert_eq!(p.field.as_deref(), Some("Idempotency-Key"));
        }
    }
}
