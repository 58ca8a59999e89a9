//! Signed requests: `X-Signature: v2=<hex HMAC-SHA256(key, "v2\n<X-Timestamp>\n<METHOD>\n<path>\n<raw
//! body>")>` (or, while `SIG_ACCEPT_V1` allows it, the first scheme `sha256=<hex HMAC-SHA256(key,
//! "<X-Timestamp>.<raw body>")>`) with `X-Timestamp` within the tolerance of server time and
//! `X-Key-Id` picking a key. One check for every signed route (events, batches, reward claims,
//! campaign entries, inbox claims); ADR 0023.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, OriginalUri, Request};
use axum::http::{HeaderMap, Method};
use std::sync::Arc;

use liveops_core::{now_ms, AuthError, CheckedHeaders, KeyStore, Keyring, Scheme, SignedRequest};
use utoipa::IntoParams;

use crate::body::{read_body, BodyLimit};
use crate::Problem;

/// Body limit of a signed route that set none with [`crate::body_limit`].
const DEFAULT_LIMIT: usize = 64 * 1024;

/// What a signature is checked against: the keys and the allowed clock difference.
#[derive(Clone, Debug)]
pub struct SignatureCheck {
    /// Keys that may sign (`X-Key-Id` picks one; the primary is the default), as they are now.
    pub keys: Arc<KeyStore>,
    /// How far `X-Timestamp` may be from server time, in seconds.
    pub tolerance_s: i64,
    /// Whether first-scheme signatures (`sha256=`, not covering method and path) still pass
    /// (`SIG_ACCEPT_V1`); `signatures_verified_total{scheme}` shows when none are left.
    pub accept_v1: bool,
}

/// A verified signature in canonical form (trimmed, lower case): the identity an unkeyed request
/// is held and answered under, so re-casing the hex cannot make a repeat look new.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature(pub String);

/// A header as text; one that is present but not visible ASCII, or sent more than once, reads
/// as empty, so it fails its check instead of looking absent (or letting a proxy and the server
/// each pick a different copy).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return Some("");
    }
    Some(first.to_str().unwrap_or(""))
}

/// A signature header as text ([`header`]), refused 401 naming it if it is sent more than once
/// (it would read as empty and be reported as malformed).
fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Problem> {
    if headers.get_all(name).iter().nth(1).is_some() {
        return Err(Problem::unauthorized(format!(
            "{name} is sent more than once: send one"
        )));
    }
    Ok(header(headers, name))
}

/// The signature headers of `headers`, each refused 401 if sent more than once (method, path
/// and body empty: [`Keyring::check_headers`] looks at none of them).
fn sent_headers(headers: &HeaderMap) -> Result<SignedRequest<'_>, Problem> {
    Ok(SignedRequest {
        signature: single_header(headers, "x-signature")?,
        key_id: single_header(headers, "x-key-id")?,
        timestamp: single_header(headers, "x-timestamp")?,
        method: "",
        path: "",
        body: &[],
    })
}

/// A signature fault as its 401 problem.
fn unauthorized(e: AuthError) -> Problem {
    Problem::unauthorized(e.to_string())
}

impl SignatureCheck {
    /// Checks the signature headers against the request `method path` and its raw body at
    /// server time `now_s`, counting each signature that passes by scheme (and, for the first
    /// scheme, by key id: which game servers still sign it).
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        body: &[u8],
        now_s: i64,
    ) -> Result<Signature, Problem> {
        let keys = self.keys.current();
        self.checked(&keys, headers, now_s)?
            .verify(method, path, body, now_s)
    }

    /// Refuses, as [`SignatureCheck::verify`] would, a request whose signature headers alone
    /// fail at server time `now_s` (missing, malformed or doubled, a timestamp out of the
    /// window, an unknown key id, a scheme not accepted): such a request is refused before its
    /// body is read, so an unsigned sender costs no body's memory or time.
    pub fn check_headers(&self, headers: &HeaderMap, now_s: i64) -> Result<(), Problem> {
        self.checked(&self.keys.current(), headers, now_s).map(drop)
    }

    /// The signature headers of `headers` checked with `keys` at server time `now_s`, as far
    /// as they go without the body; [`Checked::verify`] finishes with it.
    fn checked<'a>(
        &self,
        keys: &'a Keyring,
        headers: &'a HeaderMap,
        now_s: i64,
    ) -> Result<Checked<'a>, Problem> {
        let sent = sent_headers(headers)?;
        let headers = keys
            .check_headers(&sent, now_s, self.tolerance_s, self.accept_v1)
            .map_err(unauthorized)?;
        Ok(Checked {
            keys,
            sent,
            headers,
        })
    }
}

/// A request's signature headers read and checked before its body ([`SignatureCheck::checked`]).
struct Checked<'a> {
    /// The keys they were checked with.
    keys: &'a Keyring,
    /// The headers as sent.
    sent: SignedRequest<'a>,
    /// What they passed as.
    headers: CheckedHeaders<'a>,
}

impl Checked<'_> {
    /// Checks the signature against the request `method path` and its raw body at server time
    /// `now_s`, counting it by scheme (the first scheme by key id too) if it passes.
    fn verify(
        self,
        method: &Method,
        path: &str,
        body: &[u8],
        now_s: i64,
    ) -> Result<Signature, Problem> {
        let scheme = self
            .headers
            .verify(method.as_str(), path, body, now_s)
            .map_err(unauthorized)?;
        match scheme {
            // A key id that passed names a configured key, and only the keys that still sign
            // the first scheme get a series: the label stays bounded however many keys exist.
            Scheme::V1 => {
                let key = self.sent.key_id.unwrap_or_else(|| self.keys.primary_id());
                metrics::counter!("signatures_verified_total",
                    "scheme" => scheme.as_str(), "key" => key.to_owned())
                .increment(1);
            }
            Scheme::V2 => {
                metrics::counter!("signatures_verified_total", "scheme" => scheme.as_str())
                    .increment(1);
            }
        }
        Ok(Signature(
            self.sent
                .signature
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase(),
        ))
    }
}

/// A request whose body (read whole, under the route's [`BodyLimit`]) carries a valid signature.
/// Rejections are problems: 413 over the limit, 401 for any signature fault (before the body is
/// read when the headers alone fail).
#[derive(Clone, Debug)]
pub struct Signed {
    /// The raw body, exactly as signed.
    pub body: Bytes,
    /// The verified signature.
    pub signature: Signature,
    /// The request headers.
    pub headers: HeaderMap,
    /// Server time when the request was checked, unix ms.
    pub at_ms: i64,
}

impl<S> FromRequest<S> for Signed
where
    S: Send + Sync,
    SignatureCheck: FromRef<S>,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let check = SignatureCheck::from_ref(state);
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(DEFAULT_LIMIT, |l| l.0);
        let (parts, body) = req.into_parts();
        // What the headers alone refuse is refused before a byte of the body is read; what
        // they pass is read once and checked against the body when it has come.
        let keys = check.keys.current();
        let checked = check.checked(&keys, &parts.headers, now_ms().div_euclid(1000))?;
        let body = read_body(body, limit).await?;
        let at_ms = now_ms();
        // The path the client sent, also when a router nested this one under a prefix.
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |o| &o.0);
        let signature = checked.verify(&parts.method, uri.path(), &body, at_ms.div_euclid(1000))?;
        Ok(Self {
            body,
            signature,
            headers: parts.headers,
            at_ms,
        })
    }
}

/// The signature headers, as documented on every signed route.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // documents the headers; they are read from the request by `Signed`
pub struct SignatureHeaders {
    /// Unix seconds when the request was signed; at most the tolerance (default 300 s) away from
    /// server time.
    #[param(rename = "X-Timestamp")]
    x_timestamp: i64,
    /// `v2=<hex HMAC-SHA256(key, "v2\n<X-Timestamp>\n<METHOD>\n<path>\n<raw body>")>`, the path as in
    /// the request line without the query; or, unless the server sets `SIG_ACCEPT_V1=false`,
    /// `sha256=<hex HMAC-SHA256(key, "<X-Timestamp>.<raw body>")>`, which any signed route with
    /// an equal body also takes.
    #[param(rename = "X-Signature", pattern = "^(v2|sha256)=[0-9A-Fa-f]{64}$")]
    x_signature: String,
    /// Which key signed (rotation); the primary key if absent.
    #[param(rename = "X-Key-Id")]
    x_key_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn check() -> SignatureCheck {
        let ring = liveops_core::Keyring::single(b"0123456789abcdef0123456789abcdef".to_vec());
        SignatureCheck {
            keys: Arc::new(KeyStore::new(ring.expect("key"))),
            tolerance_s: 300,
            accept_v1: true,
        }
    }

    const PATH: &str = "/campaigns/c1/entries";

    fn signed(ts: i64, body: &[u8]) -> HeaderMap {
        let sig = check()
            .keys
            .current()
            .sign_request(None, ts, "POST", PATH, body)
            .expect("sign");
        headers(ts, &sig)
    }

    fn headers(ts: i64, sig: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-timestamp", HeaderValue::from(ts));
        h.insert("x-signature", HeaderValue::from_str(sig).expect("ascii"));
        h
    }

    fn verify(
        c: &SignatureCheck,
        h: &HeaderMap,
        path: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Signature, Problem> {
        c.verify(h, &Method::POST, path, body, now)
    }

    #[test]
    fn a_good_signature_comes_back_canonical() {
        let mut h = signed(1000, b"{}");
        let upper = h["x-signature"].to_str().expect("ascii").to_uppercase();
        let upper = upper.replacen("V2=", "v2=", 1);
        h.insert(
            "x-signature",
            HeaderValue::from_str(&format!(" {upper} ")).expect("ascii"),
        );
        let sig = verify(&check(), &h, PATH, b"{}", 1000).expect("valid");
        assert_eq!(sig.0, sig.0.trim().to_ascii_lowercase());
    }

    #[test]
    fn faults_are_401_problems() {
        let c = check();
        let fault = |h: &HeaderMap, path: &str, body: &[u8], now: i64| {
            verify(&c, h, path, body, now).unwrap_err().status
        };
        assert_eq!(fault(&signed(1000, b"{}"), PATH, b"{ }", 1000), 401);
        assert_eq!(fault(&signed(1000, b"{}"), PATH, b"{}", 2000), 401);
        assert_eq!(fault(&HeaderMap::new(), PATH, b"{}", 1000), 401);
        assert_eq!(
            fault(&signed(1000, b"{}"), "/campaigns/c2/entries", b"{}", 1000),
            401,
            "another path"
        );
        let mut h = signed(1000, b"{}");
        h.insert(
            "x-key-id",
            HeaderValue::from_bytes("é".as_bytes()).expect("bytes"),
        );
        assert_eq!(fault(&h, PATH, b"{}", 1000), 401, "non-ASCII key id");
    }

    #[test]
    fn a_first_scheme_signature_passes_only_while_accepted() {
        let mut c = check();
        let sig = c
            .keys
            .current()
            .sign_request_v1(None, 1000, b"{}")
            .expect("sign");
        let h = headers(1000, &sig);
        assert!(verify(&c, &h, "/events", b"{}", 1000).is_ok());
        c.accept_v1 = false;
        let refused = verify(&c, &h, "/events", b"{}", 1000).unwrap_err();
        assert_eq!(refused.status, 401);
        let detail = refused.detail.unwrap_or_default();
        assert_eq!(detail, liveops_core::AuthError::V1Refused.to_string());
        assert!(verify(&c, &signed(1000, b"{}"), PATH, b"{}", 1000).is_ok());
    }

    #[test]
    fn what_the_headers_alone_refuse_is_refused_by_the_header_check_alike() {
        let mut c = check();
        c.accept_v1 = false;
        let good = signed(1000, b"{}");
        let v1 = c.keys.current().sign_request_v1(None, 1000, b"{}");
        let mut unknown_key = good.clone();
        unknown_key.insert("x-key-id", HeaderValue::from_static("nobody"));
        let mut doubled = good.clone();
        doubled.append("x-signature", good["x-signature"].clone());
        for (h, now, why) in [
            (HeaderMap::new(), 1000, "no headers"),
            (headers(1000, "v2=zz"), 1000, "not hex"),
            (headers(1000, "md5=00"), 1000, "no scheme"),
            (good.clone(), 2000, "out of the window"),
            (unknown_key, 1000, "unknown key id"),
            (doubled, 1000, "doubled"),
            (
                headers(1000, &v1.expect("sign")),
                1000,
                "first scheme refused",
            ),
        ] {
            let early = c.check_headers(&h, now).expect_err(why);
            let late = verify(&c, &h, PATH, b"{}", now).expect_err(why);
            assert_eq!((early.status, &early.detail), (401, &late.detail), "{why}");
        }
        // Whatever the body, good headers pass the check: only the signature says if it fits.
        assert_eq!(c.check_headers(&good, 1000), Ok(()));
        assert_eq!(c.check_headers(&signed(1000, b"other"), 1000), Ok(()));
    }

    /// A request whose body never arrives: `Signed` with `headers` answers without reading it.
    async fn signed_without_a_body(headers: HeaderMap) -> Result<Signed, Problem> {
        let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        let mut req = Request::post(PATH)
            .body(axum::body::Body::from_stream(never))
            .expect("request");
        *req.headers_mut() = headers;
        let state = check();
        let answered = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            Signed::from_request(req, &state),
        );
        answered
            .await
            .expect("answered without waiting for the body")
    }

    #[tokio::test]
    async fn an_unsigned_request_is_refused_before_its_body_is_read() {
        let refused = signed_without_a_body(HeaderMap::new()).await.unwrap_err();
        assert_eq!(refused.status, 401);
        assert_eq!(
            refused.detail.as_deref(),
            Some(
                liveops_core::AuthError::MissingSignature
                    .to_string()
                    .as_str()
            )
        );
        let stale = signed(now_ms() / 1000 - 3600, b"{}");
        assert_eq!(signed_without_a_body(stale).await.unwrap_err().status, 401);
    }

    #[test]
    fn a_doubled_signature_header_is_a_fault_even_if_one_copy_is_good() {
        let c = check();
        let good = signed(1000, b"{}");
        for name in ["x-signature", "x-timestamp", "x-key-id"] {
            let mut h = good.clone();
            // Unsigned by key id, the request gets one naming the primary key, then a copy.
            let copy = good
                .get(name)
                .cloned()
                .unwrap_or(HeaderValue::from_static("default"));
            if !h.contains_key(name) {
                h.insert(name, copy.clone());
            }
            h.append(name, copy);
            let refused = verify(&c, &h, PATH, b"{}", 1000).unwrap_err();
            assert_eq!(refused.status, 401, "{name}");
            let detail = refused.detail.unwrap_or_default();
            assert!(
                detail.contains(name) && detail.contains("more than once"),
                "{detail}"
            );
        }
        assert!(verify(&c, &good, PATH, b"{}", 1000).is_ok());
    }
}
