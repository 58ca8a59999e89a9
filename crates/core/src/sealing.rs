//! Secrets at rest: the values a database row must hold but nobody reading the database should
//! learn (API keys' and webhooks' HMAC secrets, campaigns' seeds before their draw) are sealed
//! with XChaCha20-Poly1305 under keys derived (HKDF-SHA256) from `SECRETS_KEYS_FILE`'s entries.
//! The row keeps the id of the key that sealed it beside the sealed text; a value without a key
//! id is in the clear (written before sealing was configured) and is read as it is. The row's
//! identity is the associated data, so a sealed value copied into another row does not open.
//! See docs/adr/0032-secrets-sealed-at-rest.md.

use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};

/// The fewest characters of key material an entry of `SECRETS_KEYS_FILE` may hold (256 bits of
/// hex, or more than that of base64 or of a generated password).
pub const MIN_MATERIAL_LEN: usize = 32;

/// The longest key id: it is stored beside every sealed value.
pub const MAX_KEY_ID_LEN: usize = 32;

/// Whether `id` is a key id: 1 to [`MAX_KEY_ID_LEN`] of `[A-Za-z0-9_.-]` (so an error may quote
/// it: text of another shape may be key material).
pub fn is_key_id(id: &str) -> bool {
    (1..=MAX_KEY_ID_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// Bytes of the random nonce in front of each sealed value.
const NONCE_LEN: usize = 24;

/// What HKDF derives the cipher key for (so the same material used elsewhere yields another key).
const INFO: &[u8] = b"liveops secrets at rest v1";

/// A stored value and the key that sealed it, as read from or written to a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The sealed text (base64 of nonce, ciphertext and tag), or the clear value.
    pub text: String,
    /// The id of the key that sealed `text`; `None` when `text` is in the clear.
    pub key_id: Option<String>,
}

/// Why a key list or a sealed value was refused. Never holds key material or a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    /// A key entry is malformed (its position, from 1, and why).
    #[error("key {0}: {1}")]
    BadKey(usize, String),
    /// The value was sealed with a key this process does not hold.
    #[error("sealed with key {0:?}, which SECRETS_KEYS_FILE does not hold")]
    UnknownKey(String),
    /// The value does not open: altered, copied from another row, or not sealed text.
    #[error("a value sealed with key {0:?} does not open (altered, or copied from another row)")]
    Tampered(String),
    /// The cipher refused to seal the value (only past its length limit, 256 GiB).
    #[error("a value could not be sealed")]
    Unsealable,
}

/// The keys secrets are sealed with: the first seals, every one opens. Empty: nothing is sealed
/// (values are written in the clear, as before sealing existed).
#[derive(Clone, Default)]
pub struct Sealer {
    keys: Vec<(String, XChaCha20Poly1305)>,
    /// SHA-256 over the entries as given (ids and material): tells the same keys read again.
    entries: [u8; 32],
    /// Whether new values are sealed; off, the keys only open (`SECRETS_SEAL=false`).
    sealing: bool,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only.
        let ids: Vec<&str> = self.keys.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("Sealer")
            .field("keys", &ids)
            .field("sealing", &self.sealing)
            .finish()
    }
}

impl Sealer {
    /// A sealer over `(key id, material)` entries, the sealing key first. Ids are 1 to 32 of
    /// `[A-Za-z0-9_.-]` and distinct; material holds at least [`MIN_MATERIAL_LEN`] characters.
    pub fn new<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Self, SealError> {
        let mut keys: Vec<(String, XChaCha20Poly1305)> = Vec::new();
        let mut given = Sha256::new();
        for (i, (id, material)) in entries.into_iter().enumerate() {
            for part in [id.as_bytes(), b"=", material, b"\n"] {
                given.update(part);
            }
            let n = i + 1;
            if !is_key_id(id) {
                return Err(SealError::BadKey(
                    n,
                    format!("its id must be 1 to {MAX_KEY_ID_LEN} of A-Z a-z 0-9 _ . -"),
                ));
            }
            if material.len() < MIN_MATERIAL_LEN {
                return Err(SealError::BadKey(
                    n,
                    format!("{id}: needs at least {MIN_MATERIAL_LEN} characters of key material"),
                ));
            }
            if keys.iter().any(|(k, _)| k == id) {
                return Err(SealError::BadKey(
                    n,
                    format!("{id}: the id is listed twice"),
                ));
            }
            let mut key = [0u8; 32];
            // 32 bytes is far below HKDF-SHA256's limit (255 × 32), so expansion cannot fail.
            if Hkdf::<Sha256>::new(None, material)
                .expand(INFO, &mut key)
                .is_err()
            {
                return Err(SealError::BadKey(n, format!("{id}: key derivation failed")));
            }
            keys.push((id.to_owned(), XChaCha20Poly1305::new(&key.into())));
        }
        Ok(Self {
            keys,
            entries: given.finalize().into(),
            sealing: true,
        })
    }

    /// The same keys, opening values only: new values are written in the clear, and those
    /// sealed are [`Sealer::stale`] (for a rollback to a release that reads them in the clear).
    pub fn opening_only(mut self) -> Self {
        self.sealing = false;
        self
    }

    /// Whether new values are sealed.
    pub fn seals(&self) -> bool {
        self.current().is_some()
    }

    /// Whether some key is configured (sealed values can be opened).
    pub fn opens(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The ids of the keys, the sealing one first (for logs: never their material).
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.iter().map(|(k, _)| k.clone()).collect()
    }

    /// The id of the key new values are sealed with; `None` when they are written in the clear.
    pub fn current(&self) -> Option<&str> {
        self.keys
            .first()
            .filter(|_| self.sealing)
            .map(|(k, _)| k.as_str())
    }

    /// `clear` as the row `row` (its table, column and key, e.g. `api_keys.secret:k_1`) stores it:
    /// sealed with the current key, or in the clear when no key is configured.
    pub fn seal(&self, row: &str, clear: &str) -> Result<Stored, SealError> {
        let Some((id, cipher)) = self.keys.first().filter(|_| self.sealing) else {
            return Ok(Stored {
                text: clear.to_owned(),
                key_id: None,
            });
        };
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let payload = Payload {
            msg: clear.as_bytes(),
            aad: row.as_bytes(),
        };
        let sealed = cipher
            .encrypt(&nonce, payload)
            .map_err(|_| SealError::Unsealable)?;
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce_bytes);
        bytes.extend_from_slice(&sealed);
        Ok(Stored {
            text: STANDARD_NO_PAD.encode(bytes),
            key_id: Some(id.clone()),
        })
    }

    /// The clear value of what row `row` stores: `text` itself when `key_id` is `None`.
    pub fn open(&self, row: &str, text: &str, key_id: Option<&str>) -> Result<String, SealError> {
        let Some(id) = key_id else {
            return Ok(text.to_owned());
        };
        let cipher = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, c)| c)
            .ok_or_else(|| SealError::UnknownKey(id.to_owned()))?;
        let tampered = || SealError::Tampered(id.to_owned());
        let bytes = STANDARD_NO_PAD.decode(text).map_err(|_| tampered())?;
        if bytes.len() < NONCE_LEN {
            return Err(tampered());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let payload = Payload {
            msg: sealed,
            aad: row.as_bytes(),
        };
        let clear = cipher
            .decrypt(XNonce::from_slice(nonce), payload)
            .map_err(|_| tampered())?;
        String::from_utf8(clear).map_err(|_| tampered())
    }

    /// Whether a value stored under `key_id` should be written again: it is not under the
    /// current key (sealing on) or it is sealed (sealing off), and a key is configured.
    pub fn stale(&self, key_id: Option<&str>) -> bool {
        self.opens() && key_id != self.current()
    }
}

/// The sealer in use, replaced whole when `SECRETS_KEYS_FILE` changes while the process runs:
/// each read or write takes the one current as it starts, so a rotation needs no restart.
#[derive(Debug, Default)]
pub struct SealerCell {
    current: ArcSwap<Sealer>,
    /// Woken by each replacement (the upkeep that seals again starts a round at once).
    replaced: tokio::sync::Notify,
}

impl SealerCell {
    /// A cell holding `sealer`.
    pub fn new(sealer: Sealer) -> Self {
        Self {
            current: ArcSwap::from_pointee(sealer),
            replaced: tokio::sync::Notify::new(),
        }
    }

    /// The sealer current now.
    pub fn load(&self) -> Arc<Sealer> {
        self.current.load_full()
    }

    /// Puts `sealer` in place of the current one and wakes [`Self::replaced`], unless it holds
    /// the same keys, sealing or not alike (the same file read again).
    pub fn replace(&self, sealer: Sealer) {
        let now = self.current.load();
        if now.entries == sealer.entries && now.sealing == sealer.sealing {
            return;
        }
        self.current.store(Arc::new(sealer));
        self.replaced.notify_one();
    }

    /// Returns once the sealer is replaced (at once if it was since the last call returned).
    pub async fn replaced(&self) {
        self.replaced.notified().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    const A: &[u8] = b"0123456789abcdef0123456789abcdef";
    const B: &[u8] = b"fedcba9876543210fedcba9876543210";

    #[test]
    fn a_sealed_value_opens_to_itself_and_hides_it() {
        let s = Sealer::new([("k1", A)]).unwrap();
        let stored = s.seal("api_keys.secret:key_1", "topsecret").unwrap();
        assert_eq!(stored.key_id.as_deref(), Some("k1"));
        assert!(!stored.text.contains("topsecret"));
        let again = s.seal("api_keys.secret:key_1", "topsecret").unwrap();
        assert_ne!(stored.text, again.text, "each seal draws its own nonce");
        let open = s.open("api_keys.secret:key_1", &stored.text, Some("k1"));
        assert_eq!(open.unwrap(), "topsecret");
    }

    #[test]
    fn a_value_copied_to_another_row_or_altered_does_not_open() {
        let s = Sealer::new([("k1", A)]).unwrap();
        let stored = s.seal("api_keys.secret:key_1", "topsecret").unwrap();
        let other = s.open("api_keys.secret:key_2", &stored.text, Some("k1"));
        assert_eq!(other, Err(SealError::Tampered("k1".into())));
        let mut bytes = STANDARD_NO_PAD.decode(&stored.text).unwrap();
        bytes[NONCE_LEN] ^= 1;
        let altered = STANDARD_NO_PAD.encode(bytes);
        let open = s.open("api_keys.secret:key_1", &altered, Some("k1"));
        assert_eq!(open, Err(SealError::Tampered("k1".into())));
        assert!(s.open("x", "not base64!", Some("k1")).is_err());
        assert!(s.open("x", "AAAA", Some("k1")).is_err());
    }

    #[test]
    fn every_key_opens_and_the_first_seals() {
        let old = Sealer::new([("k1", A)]).unwrap();
        let rotated = Sealer::new([("k2", B), ("k1", A)]).unwrap();
        let by_old = old.seal("r", "v").unwrap();
        assert_eq!(rotated.open("r", &by_old.text, Some("k1")).unwrap(), "v");
        assert!(rotated.stale(Some("k1")));
        assert!(!rotated.stale(Some("k2")));
        assert!(rotated.stale(None));
        let by_new = rotated.seal("r", "v").unwrap();
        assert_eq!(by_new.key_id.as_deref(), Some("k2"));
        assert_eq!(
            old.open("r", &by_new.text, Some("k2")),
            Err(SealError::UnknownKey("k2".into()))
        );
    }

    #[test]
    fn opening_only_writes_in_the_clear_and_opens_what_was_sealed() {
        let s = Sealer::new([("k1", A)]).unwrap();
        let sealed = s.seal("r", "v").unwrap();
        let off = s.clone().opening_only();
        assert!(!off.seals() && off.opens());
        assert_eq!(
            off.seal("r", "v").unwrap(),
            Stored {
                text: "v".into(),
                key_id: None
            }
        );
        assert_eq!(off.open("r", &sealed.text, Some("k1")).unwrap(), "v");
        assert!(off.stale(Some("k1")));
        assert!(!off.stale(None));
    }

    #[test]
    fn without_keys_values_stay_in_the_clear() {
        let none = Sealer::default();
        assert!(!none.seals());
        let stored = none.seal("r", "v").unwrap();
        assert_eq!(
            stored,
            Stored {
                text: "v".into(),
                key_id: None
            }
        );
        assert_eq!(none.open("r", "v", None).unwrap(), "v");
        assert!(!none.stale(None));
        // A value in the clear reads as it is whatever the keys.
        let s = Sealer::new([("k1", A)]).unwrap();
        assert_eq!(s.open("r", "legacy", None).unwrap(), "legacy");
    }

    #[test]
    fn bad_key_lists_are_refused_by_position_without_their_material() {
        let short = Sealer::new([("k1", &b"short"[..])]).unwrap_err();
        assert!(matches!(short, SealError::BadKey(1, ref m) if !m.contains("short")));
        let twice = Sealer::new([("k1", A), ("k1", B)]).unwrap_err();
        assert!(matches!(twice, SealError::BadKey(2, _)));
        let id = Sealer::new([("k 1", A)]).unwrap_err();
        assert!(matches!(id, SealError::BadKey(1, _)));
        let long = "k".repeat(MAX_KEY_ID_LEN + 1);
        assert!(Sealer::new([(long.as_str(), A)]).is_err());
    }

    #[test]
    fn a_cell_hands_out_the_sealer_put_in_last() {
        let cell = SealerCell::new(Sealer::new([("k1", A)]).unwrap());
        let before = cell.load();
        let by_k1 = before.seal("r", "v").unwrap();
        cell.replace(Sealer::new([("k2", B), ("k1", A)]).unwrap());
        let now = cell.load();
        assert_eq!(now.current(), Some("k2"));
        assert_eq!(now.open("r", &by_k1.text, Some("k1")).unwrap(), "v");
        // What was taken before the replacement stays as it was.
        assert_eq!(before.current(), Some("k1"));
        assert!(!SealerCell::default().load().opens());
        // The replacement was told, once; the same keys again change nothing and tell nobody.
        let told = async { cell.replaced().await };
        assert!(futures_now(told));
        cell.replace(Sealer::new([("k2", B), ("k1", A)]).unwrap());
        assert!(!futures_now(async { cell.replaced().await }));
        cell.replace(Sealer::new([("k2", B), ("k1", A)]).unwrap().opening_only());
        assert!(!cell.load().seals(), "sealing off is a change");
    }

    /// Whether `f` is done on its first poll.
    fn futures_now(f: impl std::future::Future<Output = ()>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        std::pin::pin!(f).poll(&mut cx).is_ready()
    }

    #[test]
    fn another_material_gives_another_key() {
        let a = Sealer::new([("k1", A)]).unwrap();
        let b = Sealer::new([("k1", B)]).unwrap();
        let stored = a.seal("r", "v").unwrap();
        assert!(b.open("r", &stored.text, Some("k1")).is_err());
    }
}
