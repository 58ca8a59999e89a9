//! Operator writes under an `Idempotency-Key`: the answer each key got, so a retry after a lost
//! answer gets it again instead of creating, sending or paying twice (ADR 0021).

use async_trait::async_trait;

use crate::ports::{Health, PortResult};

/// An operator's request under an `Idempotency-Key`: whose key it is and what was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKey {
    /// The operator that sent it: keys are theirs alone, one per request across routes.
    pub operator_id: String,
    /// The `Idempotency-Key` as sent.
    pub key: String,
    /// Its method and path (`POST /inbox/messages`).
    pub route: String,
    /// A digest of the route and body, telling a retry from another request under the same key.
    pub request_hash: String,
}

/// A write under a key, with the answer (a JSON body) a retry gets if this write stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyed {
    /// The request's key.
    pub key: RequestKey,
    /// The body of the answer to give it and its retries.
    pub answer: String,
}

/// What became of a write that may carry a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyedOutcome {
    /// Written now.
    Written,
    /// Its key was used before with the same request: that request's answer; nothing written.
    Replayed(String),
    /// Its key was used before with another request; nothing written.
    KeyReused,
}

/// What became of a create that adds to a set whose size a setting caps (the active webhooks,
/// the active API keys).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CappedOutcome {
    /// The set had room, or the key answered before the count was taken: what became of the
    /// write.
    Keyed(KeyedOutcome),
    /// The set held its cap already (or more, the cap lowered since): nothing written, and the
    /// key left unused.
    Full,
}

/// Looks a key up before any work, so a retry is answered even where the request would no
/// longer pass (an expiry since passed, a name since taken).
#[async_trait]
pub trait RequestKeys: Health {
    /// What a write under `key` would meet: the first answer (`Replayed`), the key taken by
    /// another request (`KeyReused`), or `None` if it is unused.
    async fn answered(&self, key: &RequestKey) -> PortResult<Option<KeyedOutcome>>;
}
