//! Page cursors, each naming the last item of the page before: `<unix ms>:<id>` for the
//! listings ordered newest first by creation time and id (the campaigns), `p<position>:<id>`
//! for the inbox, listed in the order its messages were written (ADR 0025).

use liveops_core::event::is_label;
use liveops_core::stores::InboxBelow;

use crate::Problem;

/// The OpenAPI pattern of a cursor (what [`parse_cursor`] takes).
pub const CURSOR_PATTERN: &str = r"^-?[0-9]{1,18}:[A-Za-z0-9_.:-]{1,64}$";

/// The cursor after the item created at `created_at_ms` with `id`: `<unix ms>:<id>`.
fn cursor_after(created_at_ms: i64, id: &str) -> String {
    format!("{created_at_ms}:{id}")
}

/// The creation time and id a cursor names; 400 naming `cursor` if it is not one.
pub fn parse_cursor(cursor: &str) -> Result<(i64, &str), Problem> {
    let bad = || Problem::invalid("cursor", "must be a nextCursor of an earlier page");
    let (at, id) = cursor.split_once(':').ok_or_else(bad)?;
    let digits = at.strip_prefix('-').unwrap_or(at);
    let number = (1..=18).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    if !number || !is_label(id) {
        return Err(bad());
    }
    Ok((at.parse().map_err(|_| bad())?, id))
}

/// The next page's cursor: after the last of `page`'s items (`key` gives its creation time and
/// id) when the page is full (`limit` items), so more may follow; `None` after a short page.
pub fn next_cursor<T>(page: &[T], limit: usize, key: impl Fn(&T) -> (i64, &str)) -> Option<String> {
    page.last().filter(|_| page.len() >= limit).map(|last| {
        let (at, id) = key(last);
        cursor_after(at, id)
    })
}

/// The OpenAPI pattern of an inbox cursor (what [`parse_inbox_cursor`] takes).
pub const INBOX_CURSOR_PATTERN: &str = r"^p?-?[0-9]{1,18}:[A-Za-z0-9_.:-]{1,64}$";

/// Where the page an inbox cursor asks for starts: below the position `p<position>:<id>` names,
/// or below the message a creation-time cursor (`<unix ms>:<id>`, given before ADR 0025)
/// names; 400 naming `cursor` if it is neither.
pub fn parse_inbox_cursor(cursor: &str) -> Result<InboxBelow<'_>, Problem> {
    match cursor.strip_prefix('p') {
        Some(rest) => parse_cursor(rest).map(|(position, _)| InboxBelow::Position(position)),
        None => parse_cursor(cursor).map(|(_, id)| InboxBelow::Message(id)),
    }
}

/// The next inbox page's cursor, `p<position>:<id>` of `page`'s last item (`key` gives its
/// position and id) when the page is full; `None` after a short page.
pub fn next_inbox_cursor<T>(
    page: &[T],
    limit: usize,
    key: impl Fn(&T) -> (i64, &str),
) -> Option<String> {
    next_cursor(page, limit, key).map(|c| format!("p{c}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_cursors_name_a_position_or_an_earlier_release_s_message() {
        let page = [(-3_i64, "msg_a"), (7, "msg_b")];
        let cursor = next_inbox_cursor(&page, 2, |(p, id)| (*p, *id)).expect("a full page");
        assert_eq!(cursor, "p7:msg_b");
        assert_eq!(
            parse_inbox_cursor(&cursor).ok(),
            Some(InboxBelow::Position(7))
        );
        assert_eq!(
            parse_inbox_cursor("p-3:msg_a").ok(),
            Some(InboxBelow::Position(-3))
        );
        assert_eq!(
            parse_inbox_cursor("1796400000123:msg_a").ok(),
            Some(InboxBelow::Message("msg_a"))
        );
        let pattern = regex::Regex::new(INBOX_CURSOR_PATTERN).expect("pattern");
        for good in [cursor.as_str(), "p-3:msg_a", "1796400000123:msg_a"] {
            assert!(pattern.is_match(good), "{good}");
        }
        for bad in ["p:msg", "pp1:msg", "q1:msg", "p1", "p1:"] {
            assert!(
                parse_inbox_cursor(bad).is_err() && !pattern.is_match(bad),
                "{bad}"
            );
        }
        assert_eq!(next_inbox_cursor(&page, 3, |(p, id)| (*p, *id)), None);
    }

    #[test]
    fn cursors_read_back_what_they_name_and_refuse_the_rest() {
        let cursor = cursor_after(1_796_400_000_123, "msg_0a1b");
        assert_eq!(cursor, "1796400000123:msg_0a1b");
        assert_eq!(
            parse_cursor(&cursor).ok(),
            Some((1_796_400_000_123, "msg_0a1b"))
        );
        let pattern = regex::Regex::new(CURSOR_PATTERN).expect("pattern");
        assert!(pattern.is_match(&cursor));
        // The pattern's extremes: 18 digits, a sign, an id with colons.
        assert_eq!(
            parse_cursor("-999999999999999999:a:b").ok(),
            Some((-999_999_999_999_999_999, "a:b"))
        );
        for bad in [
            "",
            ":",
            "12",
            "12:",
            ":msg",
            "1x:msg",
            "1234567890123456789:m",
            "12:a/b",
            "+1:m",
        ] {
            assert!(parse_cursor(bad).is_err(), "{bad:?}");
            assert!(!pattern.is_match(bad), "{bad:?}");
        }
    }

    #[test]
    fn only_a_full_page_has_a_next_cursor() {
        let page = [(5, "b".to_owned()), (3, "a".to_owned())];
        let next = |items: &[(i64, String)], limit| next_cursor(items, limit, |i| (i.0, &i.1));
        assert_eq!(next(&page, 2), Some("3:a".into()));
        assert_eq!(next(&page, 3), None);
        assert_eq!(next(&page[..0], 1), None);
    }
}
