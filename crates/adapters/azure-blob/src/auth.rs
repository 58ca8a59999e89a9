//! Request authentication: Shared Key (an HMAC-SHA256 of the request's canonical form with the
//! account key) or a SAS token that travels in the query and needs no header.
//! <https://learn.microsoft.com/rest/api/storageservices/authorize-with-shared-key>

use base64::Engine as _;
use hmac::{Hmac, Mac};
use reqwest::{Method, Url};
use sha2::Sha256;

/// How requests prove they may act on the container.
pub(crate) enum Auth {
    /// The storage account key, decoded.
    SharedKey(Vec<u8>),
    /// A SAS query string (already part of every URL).
    Sas(String),
}

/// What of a request the Shared Key signature covers.
#[derive(Clone, Copy)]
pub(crate) struct Signed<'a> {
    pub(crate) method: &'a Method,
    pub(crate) url: &'a Url,
    /// The request's `x-ms-*` headers.
    pub(crate) ms: &'a [(String, String)],
    /// The body's length in bytes.
    pub(crate) length: usize,
    /// The body's content type ("" for none).
    pub(crate) content_type: &'a str,
}

impl Auth {
    /// The `Authorization` header for `request` to `account`, if this scheme uses one.
    pub(crate) fn authorization(&self, account: &str, request: &Signed<'_>) -> Option<String> {
        let Auth::SharedKey(key) = self else {
            return None;
        };
        let to_sign = string_to_sign(account, request);
        let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
        mac.update(to_sign.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        Some(format!("SharedKey {account}:{sig}"))
    }
}

/// The Blob service's string to sign (versions 2015-02-21 and later: a zero length is empty).
fn string_to_sign(account: &str, request: &Signed<'_>) -> String {
    let Signed {
        method,
        url,
        ms,
        length,
        content_type,
    } = *request;
    let length = if length == 0 {
        String::new()
    } else {
        length.to_string()
    };
    let mut headers: Vec<(String, &str)> = ms
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.trim()))
        .filter(|(k, _)| k.starts_with("x-ms-"))
        .collect();
    headers.sort();
    let mut out = format!(
        "{method}\n\n\n{length}\n\n{content_type}\n\n\n\n\n\n\n",
        method = method.as_str()
    );
    for (k, v) in headers {
        out.push_str(&format!("{k}:{v}\n"));
    }
    // The resource: the account, then the URL's path (for the emulator's path-style URLs the
    // account appears twice, as the service expects), then each query parameter.
    out.push_str(&format!("/{account}{}", url.path()));
    let mut params: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.into_owned()))
        .collect();
    params.sort();
    let mut merged: Vec<(String, Vec<String>)> = Vec::new();
    for (k, v) in params {
        match merged.last_mut() {
            Some((last, values)) if *last == k => values.push(v),
            _ => merged.push((k, vec![v])),
        }
    }
    for (k, values) in merged {
        out.push_str(&format!("\n{k}:{}", values.join(",")));
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_string_to_sign_follows_the_documented_layout() {
        let url = Url::parse(
            "http://127.0.0.1:10000/devstoreaccount1/backups/a.db?comp=block&blockid=YmxvY2s%3D",
        )
        .unwrap();
        let ms = vec![
            ("x-ms-version".to_owned(), "2021-08-06".to_owned()),
            (
                "x-ms-date".to_owned(),
                "Mon, 01 Dec 2026 10:15:00 GMT".to_owned(),
            ),
        ];
        let s = string_to_sign(
            "devstoreaccount1",
            &Signed {
                method: &Method::PUT,
                url: &url,
                ms: &ms,
                length: 5,
                content_type: "",
            },
        );
        assert_eq!(
            s,
            "PUT\n\n\n5\n\n\n\n\n\n\n\n\n\
             x-ms-date:Mon, 01 Dec 2026 10:15:00 GMT\nx-ms-version:2021-08-06\n\
             /devstoreaccount1/devstoreaccount1/backups/a.db\nblockid:YmxvY2s=\ncomp:block"
        );
        let empty = string_to_sign(
            "acct",
            &Signed {
                method: &Method::GET,
                url: &url,
                ms: &[],
                length: 0,
                content_type: "",
            },
        );
        assert!(empty.starts_with("GET\n\n\n\n"), "{empty:?}");
    }
}
