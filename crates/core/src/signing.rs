//! Request signatures (HMAC-SHA256 over the timestamp, method, path and raw body, or in the
//! first scheme over the timestamp and body alone; ADR 0023) and signed reward receipts.

use std::sync::{Arc, RwLock};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

type HmacSha256 = Hmac<Sha256>;

/// The shortest secret accepted outside dev mode, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// One or more HMAC keys by id; the first is primary (signs receipts), all verify (rotation).
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs.
        let ids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Keyring").field("key_ids", &ids).finish()
    }
}

/// The keys a process checks signatures with now, kept in named layers that are replaced as
/// their source changes (the keys from configuration, keys re-read from a mounted file, API keys
/// from the repository). [`KeyStore::current`] is their union; the first layer's first key is
/// primary and signs receipts. A key id given by an earlier layer wins over a later one.
pub struct KeyStore {
    inner: RwLock<Layers>,
}

/// The layer of API keys (`POST /api-keys`): they sign requests, never receipts.
pub const API_LAYER: &str = "api";

/// Keys by id, in order: `(kid, secret)`.
pub type KeyList = Vec<(String, Vec<u8>)>;

struct Layers {
    layers: Vec<(&'static str, KeyList)>,
    merged: Arc<Keyring>,
    receipts: Arc<Keyring>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("current", &self.current())
            .finish()
    }
}

impl KeyStore {
    /// A store whose first layer, `config`, is `bootstrap`.
    pub fn new(bootstrap: Keyring) -> Self {
        Self {
            inner: RwLock::new(Layers {
                layers: vec![("config", bootstrap.keys.clone())],
                receipts: Arc::new(bootstrap.clone()),
                merged: Arc::new(bootstrap),
            }),
        }
    }

    /// A store with `layers` in order, any of them possibly empty; fails if none has a key or a
    /// key is shorter than [`MIN_SECRET_LEN`].
    pub fn with_layers(layers: Vec<(&'static str, KeyList)>) -> Result<Self, KeyError> {
        let merged = merge(&layers, true)?;
        let receipts = merge(&layers, false)?;
        Ok(Self {
            inner: RwLock::new(Layers {
                layers,
                merged: Arc::new(merged),
                receipts: Arc::new(receipts),
            }),
        })
    }

    /// The keys in force now: every layer's, for checking request signatures.
    pub fn current(&self) -> Arc<Keyring> {
        match self.inner.read() {
            Ok(l) => l.merged.clone(),
            Err(poisoned) => poisoned.into_inner().merged.clone(),
        }
    }

    /// The keys that sign and check receipts: every layer's but [`API_LAYER`]'s (a game server
    /// holding an API key must not be able to mint receipts). The primary key comes first.
    pub fn receipt_keys(&self) -> Arc<Keyring> {
        match self.inner.read() {
            Ok(l) => l.receipts.clone(),
            Err(poisoned) => poisoned.into_inner().receipts.clone(),
        }
    }

    /// Replaces (or adds, after the others) the layer `name`. Keys shorter than
    /// [`MIN_SECRET_LEN`] are refused; an empty layer is allowed (every key of it revoked), as
    /// long as some layer still has a key.
    pub fn set_layer(
        &self,
        name: &'static str,
        keys: Vec<(String, Vec<u8>)>,
    ) -> Result<(), KeyError> {
        if let Some((kid, _)) = keys.iter().find(|(_, s)| s.len() < MIN_SECRET_LEN) {
            return Err(KeyError::TooShort(kid.clone()));
        }
        let mut guard = match self.inner.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut layers = guard.layers.clone();
        match layers.iter_mut().find(|(n, _)| *n == name) {
            Some(layer) => layer.1 = keys,
            None => layers.push((name, keys)),
        }
        let keyring = merge(&layers, true)?;
        let receipts = merge(&layers, false)?;
        guard.layers = layers;
        guard.merged = Arc::new(keyring);
        guard.receipts = Arc::new(receipts);
        Ok(())
    }
}

/// The union of `layers` as one keyring (without [`API_LAYER`] unless `with_api`): an earlier
/// layer's key id wins.
fn merge(layers: &[(&'static str, KeyList)], with_api: bool) -> Result<Keyring, KeyError> {
    let mut merged: KeyList = Vec::new();
    for (_, keys) in layers
        .iter()
        .filter(|(name, _)| with_api || *name != API_LAYER)
    {
        for (kid, secret) in keys {
            if !merged.iter().any(|(k, _)| k == kid) {
                merged.push((kid.clone(), secret.clone()));
            }
        }
    }
    Keyring::new(merged)
}

/// A signed request as its signature covers it: the signature headers as sent (`None` where
/// absent) and the request's method, path (without the query) and raw body.
#[derive(Clone, Copy, Debug)]
pub struct SignedRequest<'a> {
    /// `X-Key-Id`.
    pub key_id: Option<&'a str>,
    /// `X-Timestamp`.
    pub timestamp: Option<&'a str>,
    /// `X-Signature`.
    pub signature: Option<&'a str>,
    /// The method, upper case (`POST`).
    pub method: &'a str,
    /// The path as in the request line, without the query (`/campaigns/c1/entries`).
    pub path: &'a str,
    /// The raw body.
    pub body: &'a [u8],
}

/// Which scheme a request's signature uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// `sha256=`: timestamp and body only; any route with an equal body takes it (ADR 0023).
    V1,
    /// `v2=`: timestamp, method, path and body.
    V2,
}

impl Scheme {
    /// Its name in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// Why a signed request was refused (every variant answers 401).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `X-Signature` header.
    #[error("missing X-Signature header")]
    MissingSignature,
    /// No `X-Timestamp` header.
    #[error("missing X-Timestamp header")]
    MissingTimestamp,
    /// `X-Timestamp` is not unix seconds.
    #[error("X-Timestamp must be unix seconds")]
    BadTimestamp,
    /// `X-Timestamp` is outside the tolerance.
    #[error("X-Timestamp is outside the allowed window of {0} s")]
    StaleTimestamp(i64),
    /// `X-Key-Id` names no configured key.
    #[error("unknown X-Key-Id")]
    UnknownKey,
    /// `X-Signature` is neither `v2=<hex>` nor `sha256=<hex>`.
    #[error("X-Signature must be v2=<hex> (or sha256=<hex>)")]
    MalformedSignature,
    /// A first-scheme signature where only `v2` is accepted (`SIG_ACCEPT_V1=false`).
    #[error("sha256= signatures (timestamp and body only) are not accepted: sign v2=<hex> over the timestamp, method, path and body")]
    V1Refused,
    /// The signature does not match.
    #[error("signature does not match")]
    BadSignature,
}

/// Why a keyring could not be built from configuration.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// A secret is shorter than [`MIN_SECRET_LEN`].
    #[error("secret for key {0:?} is shorter than 32 bytes")]
    TooShort(String),
    /// A `kid=secret` entry is malformed.
    #[error("entry {0:?} is not kid=secret")]
    Malformed(String),
    /// No key at all.
    #[error("no key configured")]
    Empty,
}

impl Keyring {
    /// A keyring with one key, id `default`.
    pub fn single(secret: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        Self::new(vec![("default".to_owned(), secret.into())])
    }

    /// A keyring from `(kid, secret)` pairs; the first is primary.
    pub fn new(keys: Vec<(String, Vec<u8>)>) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        if let Some((kid, _)) = keys.iter().find(|(_, s)| s.len() < MIN_SECRET_LEN) {
            return Err(KeyError::TooShort(kid.clone()));
        }
        Ok(Self { keys })
    }

    /// Parses `HMAC_KEYS` (`kid=secret,kid2=secret2`).
    pub fn parse_list(list: &str) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|entry| match entry.split_once('=') {
                Some((k, s)) if !k.trim().is_empty() && !s.is_empty() => {
                    Ok((k.trim().to_owned(), s.as_bytes().to_vec()))
                }
                _ => Err(KeyError::Malformed(entry.chars().take(8).collect())),
            })
            .collect()
    }

    /// The id of the primary key.
    pub fn primary_id(&self) -> &str {
        &self.keys[0].0
    }

    fn key(&self, kid: Option<&str>) -> Option<&[u8]> {
        match kid {
            None => Some(&self.keys[0].1),
            Some(kid) => self
                .keys
                .iter()
                .find(|(k, _)| k == kid)
                .map(|(_, s)| s.as_slice()),
        }
    }

    fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
        for p in parts {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }

    /// The `X-Signature` value (`v2=<hex>`) for a request `method path` with `body` sent at `ts`,
    /// with key `kid` (primary if `None`): it covers where the request goes, so it cannot be
    /// sent to another route or resource.
    pub fn sign_request(
        &self,
        kid: Option<&str>,
        ts: i64,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Option<String> {
        let key = self.key(kid)?;
        let ts = ts.to_string();
        let mac = Self::mac(key, &v2_message(&ts, method, path, body));
        Some(format!("v2={}", hex::encode(mac)))
    }

    /// The first scheme's `X-Signature` value (`sha256=<hex>`, over `"<ts>.<body>"` only), for
    /// clients not yet moved to [`Keyring::sign_request`] and the tests that check it still holds.
    pub fn sign_request_v1(&self, kid: Option<&str>, ts: i64, body: &[u8]) -> Option<String> {
        let key = self.key(kid)?;
        let mac = Self::mac(key, &[ts.to_string().as_bytes(), b".", body]);
        Some(format!("sha256={}", hex::encode(mac)))
    }

    /// Checks a request's signature headers against what they sign at server time `now_s`;
    /// a first-scheme signature only if `accept_v1`. Answers the scheme that matched.
    pub fn verify_request(
        &self,
        req: &SignedRequest<'_>,
        now_s: i64,
        tolerance_s: i64,
        accept_v1: bool,
    ) -> Result<Scheme, AuthError> {
        self.check_headers(req, now_s, tolerance_s, accept_v1)?
            .verify(req.method, req.path, req.body, now_s)
    }

    /// What [`Keyring::verify_request`] decides from the signature headers alone (present,
    /// well-formed, the timestamp within `tolerance_s` of `now_s`, a known key, an accepted
    /// scheme), with the same errors: a request refused here is refused whatever its body, so
    /// it can be refused before the body is read. Method, path and body are not looked at; the
    /// headers read here answer for the body with [`CheckedHeaders::verify`].
    pub fn check_headers<'r>(
        &'r self,
        req: &SignedRequest<'r>,
        now_s: i64,
        tolerance_s: i64,
        accept_v1: bool,
    ) -> Result<CheckedHeaders<'r>, AuthError> {
        let sig = req.signature.ok_or(AuthError::MissingSignature)?;
        let ts_raw = req.timestamp.ok_or(AuthError::MissingTimestamp)?.trim();
        let sent_s: i64 = ts_raw.parse().map_err(|_| AuthError::BadTimestamp)?;
        in_window(sent_s, now_s, tolerance_s)?;
        let key = self.key(req.key_id).ok_or(AuthError::UnknownKey)?;
        let sig = sig.trim();
        let (scheme, hex_sig) = if let Some(hex_sig) = sig.strip_prefix("v2=") {
            (Scheme::V2, hex_sig)
        } else if let Some(hex_sig) = sig.strip_prefix("sha256=") {
            (Scheme::V1, hex_sig)
        } else {
            return Err(AuthError::MalformedSignature);
        };
        let signature = hex::decode(hex_sig).map_err(|_| AuthError::MalformedSignature)?;
        if scheme == Scheme::V1 && !accept_v1 {
            return Err(AuthError::V1Refused);
        }
        Ok(CheckedHeaders {
            scheme,
            key,
            timestamp: ts_raw,
            sent_s,
            tolerance_s,
            signature,
        })
    }

    /// Signs a receipt with the primary key.
    pub fn sign_receipt(
        &self,
        receipt_id: &str,
        player_id: &str,
        item: &str,
        timestamp: i64,
    ) -> String {
        let msg = receipt_message(receipt_id, player_id, item, timestamp);
        hex::encode(Self::mac(&self.keys[0].1, &[msg.as_bytes()]))
    }

    /// Checks a receipt against every key (receipts stay valid across a key rotation).
    pub fn verify_receipt(&self, r: &Receipt) -> Verification {
        // The signed text joins the fields with ':'; items may hold ':', so only a receipt id and
        // a player id without one keep the split unique (else "R:P:a:b:T" could be re-read as
        // receipt "R:P", player "a", item "b").
        if r.receipt_id.contains(':') || crate::PlayerId::parse(&r.player_id).is_err() {
            return Verification::invalid("malformed receiptId or playerId");
        }
        let Ok(given) = hex::decode(&r.sig) else {
            return Verification::invalid("sig is not hex");
        };
        let msg = receipt_message(&r.receipt_id, &r.player_id, &r.item, r.timestamp);
        let ok = self.keys.iter().any(|(_, key)| {
            let expected = Self::mac(key, &[msg.as_bytes()]);
            given.len() == expected.len() && bool::from(given.ct_eq(&expected))
        });
        if ok {
            Verification {
                valid: true,
                reason: "signature matches".into(),
            }
        } else {
            Verification::invalid("signature does not match the receipt's fields")
        }
    }
}

/// A request's signature headers, read and checked as far as they go without its body
/// ([`Keyring::check_headers`]); [`CheckedHeaders::verify`] finishes the check with the body.
pub struct CheckedHeaders<'a> {
    scheme: Scheme,
    /// The secret of the key that signed.
    key: &'a [u8],
    /// `X-Timestamp` as sent, trimmed (the signature covers it as text).
    timestamp: &'a str,
    /// `X-Timestamp` read as unix seconds.
    sent_s: i64,
    /// How far `X-Timestamp` may be from server time, in seconds.
    tolerance_s: i64,
    /// The signature's bytes.
    signature: Vec<u8>,
}

impl CheckedHeaders<'_> {
    /// Checks the signature against the request `method path` with `body` at server time
    /// `now_s` (the timestamp again: a body slow to arrive can outlast its window). Answers the
    /// scheme that matched.
    pub fn verify(
        self,
        method: &str,
        path: &str,
        body: &[u8],
        now_s: i64,
    ) -> Result<Scheme, AuthError> {
        in_window(self.sent_s, now_s, self.tolerance_s)?;
        let (ts_raw, key) = (self.timestamp, self.key);
        let expected = match self.scheme {
            Scheme::V2 => Keyring::mac(key, &v2_message(ts_raw, method, path, body)),
            Scheme::V1 => Keyring::mac(key, &[ts_raw.as_bytes(), b".", body]),
        };
        let given = self.signature;
        if given.len() == expected.len() && bool::from(given.ct_eq(&expected)) {
            Ok(self.scheme)
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

/// Refuses a timestamp `sent_s` more than `tolerance_s` from server time `now_s`.
fn in_window(sent_s: i64, now_s: i64, tolerance_s: i64) -> Result<(), AuthError> {
    if now_s.abs_diff(sent_s) > tolerance_s.unsigned_abs() {
        return Err(AuthError::StaleTimestamp(tolerance_s));
    }
    Ok(())
}

/// What a `v2` signature covers: `"v2\n<ts>\n<METHOD>\n<path>\n<body>"` (no field but the
/// body can hold a line break, so no two requests share a message).
fn v2_message<'a>(ts: &'a str, method: &'a str, path: &'a str, body: &'a [u8]) -> [&'a [u8]; 8] {
    [
        b"v2\n",
        ts.as_bytes(),
        b"\n",
        method.as_bytes(),
        b"\n",
        path.as_bytes(),
        b"\n",
        body,
    ]
}

fn receipt_message(receipt_id: &str, player_id: &str, item: &str, timestamp: i64) -> String {
    format!("{receipt_id}:{player_id}:{item}:{timestamp}")
}

/// A signed proof that a player was granted an item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// Unique id of the receipt.
    pub receipt_id: String,
    /// Who received the item.
    pub player_id: String,
    /// The item granted.
    pub item: String,
    /// When it was issued, unix seconds, within ±2^53 however it is written (with a fraction
    /// or an exponent, a number is exact only there).
    #[serde(deserialize_with = "crate::event::whole_number")]
    #[schema(minimum = -9_007_199_254_740_992_i64, maximum = 9_007_199_254_740_992_i64)]
    pub timestamp: i64,
    /// `hex(HMAC-SHA256(key, "receiptId:playerId:item:timestamp"))`.
    pub sig: String,
}

/// The answer of a receipt check.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Verification {
    /// Whether the receipt is authentic and untampered.
    pub valid: bool,
    /// Why, for a human.
    pub reason: String,
}

impl Verification {
    fn invalid(reason: &str) -> Self {
        Self {
            valid: false,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "0123456789abcdef0123456789abcdef";
    const K2: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn key_store_layers_add_replace_and_revoke_keys() {
        let store = KeyStore::new(Keyring::single(K1).unwrap());
        let body = b"{}";
        let sig = |kid: Option<&str>, secret: &str| {
            Keyring::single(secret)
                .unwrap()
                .sign_request(None, 100, "POST", "/events", body)
                .map(|s| (kid.map(str::to_owned), s))
                .unwrap()
        };
        let ok = |(kid, s): (Option<String>, String)| {
            store
                .current()
                .verify_request(&req(kid.as_deref(), "100", &s, body), 100, 300, false)
                .is_ok()
        };
        assert!(ok(sig(None, K1)));
        assert!(!ok(sig(Some("api_1"), K2)));
        store
            .set_layer("api", vec![("api_1".into(), K2.into())])
            .unwrap();
        assert!(ok(sig(Some("api_1"), K2)), "a new key works");
        let forged = Receipt {
            receipt_id: "r".into(),
            player_id: "p".into(),
            item: "i".into(),
            timestamp: 1,
            sig: Keyring::single(K2).unwrap().sign_receipt("r", "p", "i", 1),
        };
        assert!(
            !store.receipt_keys().verify_receipt(&forged).valid,
            "an API key cannot mint receipts"
        );
        assert_eq!(store.receipt_keys().primary_id(), "default");
        assert_eq!(
            store.current().primary_id(),
            "default",
            "the config layer stays primary"
        );
        store.set_layer("api", vec![]).unwrap();
        assert!(!ok(sig(Some("api_1"), K2)), "a revoked key stops working");
        assert!(ok(sig(None, K1)));
        assert!(store
            .set_layer("api", vec![("x".into(), b"short".to_vec())])
            .is_err());
        // An earlier layer's id wins.
        store
            .set_layer("api", vec![("default".into(), K2.into())])
            .unwrap();
        assert!(ok(sig(None, K1)));
    }

    #[test]
    fn a_store_may_start_with_an_empty_layer_but_not_without_keys() {
        let store = KeyStore::with_layers(vec![
            ("config", vec![]),
            ("file", vec![("k1".into(), K1.into())]),
        ])
        .unwrap();
        assert_eq!(store.current().primary_id(), "k1");
        assert!(
            store.set_layer("file", vec![]).is_err(),
            "the last key stays"
        );
        assert_eq!(store.current().primary_id(), "k1");
        assert!(KeyStore::with_layers(vec![("config", vec![]), ("file", vec![])]).is_err());
    }

    fn ring() -> Keyring {
        Keyring::new(vec![("k1".into(), K1.into()), ("k2".into(), K2.into())]).unwrap()
    }

    /// A `POST /events` request with these headers and `body`.
    fn req<'a>(
        kid: Option<&'a str>,
        ts: &'a str,
        sig: &'a str,
        body: &'a [u8],
    ) -> SignedRequest<'a> {
        SignedRequest {
            key_id: kid,
            timestamp: Some(ts),
            signature: Some(sig),
            method: "POST",
            path: "/events",
            body,
        }
    }

    #[test]
    fn request_signature_round_trips_and_rejects_tampering() {
        let ring = ring();
        let body = br#"{"a":1}"#;
        let check = |r: SignedRequest<'_>, now: i64| ring.verify_request(&r, now, 300, true);
        let sig = ring
            .sign_request(None, 100, "POST", "/events", body)
            .unwrap();
        assert!(sig.starts_with("v2="));
        assert_eq!(check(req(None, "100", &sig, body), 100), Ok(Scheme::V2));
        assert_eq!(
            check(req(None, "100", &sig, br#"{"a":2}"#), 100),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            check(req(None, "100", &sig, body), 401),
            Err(AuthError::StaleTimestamp(300))
        );
        assert_eq!(
            check(req(Some("k2"), "100", &sig, body), 100),
            Err(AuthError::BadSignature)
        );
        let sig2 = ring
            .sign_request(Some("k2"), 100, "POST", "/events", body)
            .unwrap();
        assert_eq!(
            check(req(Some("k2"), "100", &sig2, body), 100),
            Ok(Scheme::V2)
        );
        assert_eq!(
            check(req(Some("nope"), "100", &sig2, body), 100),
            Err(AuthError::UnknownKey)
        );
        assert_eq!(
            check(req(None, "x", &sig, body), 100),
            Err(AuthError::BadTimestamp)
        );
        for bad in ["md5=00", "V2=00", "v2=zz", "v2"] {
            assert_eq!(
                check(req(None, "100", bad, body), 100),
                Err(AuthError::MalformedSignature),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_v2_signature_holds_only_for_its_method_and_path() {
        let ring = ring();
        let body = br#"{"playerId":"p1"}"#;
        let path = "/campaigns/c1/entries";
        let sig = ring.sign_request(None, 100, "POST", path, body).unwrap();
        let at = |method: &'static str, path: &'static str| {
            let r = SignedRequest {
                method,
                path,
                ..req(None, "100", &sig, body)
            };
            ring.verify_request(&r, 100, 300, true)
        };
        assert_eq!(at("POST", "/campaigns/c1/entries"), Ok(Scheme::V2));
        for (method, path) in [
            ("POST", "/campaigns/c2/entries"),
            ("POST", "/players/p1/inbox/m1/claim"),
            ("PUT", "/campaigns/c1/entries"),
            ("POST", "/campaigns/c1/entries/"),
        ] {
            assert_eq!(
                at(method, path),
                Err(AuthError::BadSignature),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_v1_signature_covers_the_body_only_and_can_be_refused() {
        let ring = ring();
        let body = br#"{"playerId":"p1"}"#;
        let sig = ring.sign_request_v1(None, 100, body).unwrap();
        assert!(sig.starts_with("sha256="));
        let anywhere = SignedRequest {
            path: "/players/p1/inbox/m1/claim",
            ..req(None, "100", &sig, body)
        };
        assert_eq!(
            ring.verify_request(&anywhere, 100, 300, true),
            Ok(Scheme::V1)
        );
        assert_eq!(
            ring.verify_request(&anywhere, 100, 300, false),
            Err(AuthError::V1Refused)
        );
        let forged = req(None, "100", "sha256=00", body);
        assert_eq!(
            ring.verify_request(&forged, 100, 300, true),
            Err(AuthError::BadSignature)
        );
        // A v2 signature presented as v1 (or the reverse) is not the other scheme's.
        let v2 = ring
            .sign_request(None, 100, "POST", "/events", body)
            .unwrap();
        let swapped = v2.replacen("v2=", "sha256=", 1);
        assert_eq!(
            ring.verify_request(&req(None, "100", &swapped, body), 100, 300, true),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            Keyring::single("short").unwrap_err(),
            KeyError::TooShort("default".into())
        );
        assert!(Keyring::parse_list("a=b,broken").is_err());
    }

    /// A receipt for `item` signed by `ring`.
    fn signed_receipt(ring: &Keyring, id: &str, player: &str, item: &str, ts: i64) -> Receipt {
        Receipt {
            receipt_id: id.into(),
            player_id: player.into(),
            item: item.into(),
            timestamp: ts,
            sig: ring.sign_receipt(id, player, item, ts),
        }
    }

    #[test]
    fn receipts_detect_any_tampered_field() {
        let ring = ring();
        let r = signed_receipt(&ring, "r1", "player_1", "sword", 42);
        assert!(ring.verify_receipt(&r).valid);
        let tampered = [
            Receipt {
                receipt_id: "r2".into(),
                ..r.clone()
            },
            Receipt {
                player_id: "player_2".into(),
                ..r.clone()
            },
            Receipt {
                item: "axe".into(),
                ..r.clone()
            },
            Receipt {
                timestamp: 43,
                ..r.clone()
            },
            Receipt {
                sig: "00".into(),
                ..r.clone()
            },
        ];
        for t in tampered {
            assert!(!ring.verify_receipt(&t).valid, "{t:?}");
        }
        // Still valid after rotation puts a new primary first.
        let rotated = Keyring::new(vec![
            ("k3".into(), [7u8; 32].to_vec()),
            ("k1".into(), K1.into()),
        ])
        .unwrap();
        assert!(rotated.verify_receipt(&r).valid);
        // Fields shifted across the ':' that joins them sign the same text: refused.
        let honest = signed_receipt(&ring, "r1", "player_1", "abc:gem", 42);
        assert!(ring.verify_receipt(&honest).valid);
        let shifted = Receipt {
            receipt_id: "r1:player_1".into(),
            player_id: "abc".into(),
            item: "gem".into(),
            ..honest
        };
        assert!(!ring.verify_receipt(&shifted).valid, "{shifted:?}");
    }
}
