//! The operators' storage: accounts and roles, login sessions, the audit log, and the API keys
//! game servers sign requests with.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ports::{Health, PortResult};
use crate::stores::{CappedOutcome, Keyed};

/// What an operator may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including operators and API keys.
    Admin,
    /// Runs campaigns, messages, webhooks; unblocks players.
    Operator,
    /// Reads everything operators read (analytics).
    Analyst,
    /// Reads campaigns and fairness.
    Viewer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Analyst, Role::Viewer];

    /// Its name (`admin`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Analyst => "analyst",
            Role::Viewer => "viewer",
        }
    }

    /// The role called `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// An operator account as stored (the password only as its argon2id hash).
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorRecord {
    /// Stable id (`op_<uuid>`).
    pub id: String,
    /// Login, lower case.
    pub email: String,
    /// PHC string of the argon2id hash.
    pub password_hash: String,
    /// What they may do.
    pub role: Role,
    /// A disabled operator cannot log in and their sessions are closed.
    pub disabled: bool,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Last changed, unix ms (the version a change is made against).
    pub updated_at_ms: i64,
}

// The hash stays out of logs.
crate::debug_fields!(OperatorRecord {
    id,
    email,
    role,
    disabled
});

/// One change, as `GET /audit` lists it: who, what, when, before and after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// When, unix ms.
    pub at_ms: i64,
    /// Who: an operator's email, or `cli`, `bootstrap`.
    pub actor: String,
    /// What (`operator.create`, `api_key.revoke`, `campaign.schedule`).
    pub action: String,
    /// What it was done to (an id).
    pub target: String,
    /// The target before (JSON), if it existed.
    pub before: Option<String>,
    /// The target after (JSON), if it still exists.
    pub after: Option<String>,
}

/// An audit entry as listed, with where it stands in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedAudit {
    /// Increases with each entry written; a page continues below the last one.
    pub position: i64,
    /// The entry.
    pub entry: AuditEntry,
}

/// What [`OperatorStore::update_operator`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperatorUpdate {
    /// The change is written.
    Updated,
    /// The operator changed since `before` was read: nothing written.
    ChangedMeanwhile,
    /// It would leave no enabled admin: nothing written.
    LastAdmin,
}

/// Operator accounts; every change is written with its audit entry, atomically.
#[async_trait]
pub trait OperatorStore: Health {
    /// How many operators exist.
    async fn operator_count(&self) -> PortResult<u64>;
    /// Adds an operator; `false` (nothing written) if the email is taken.
    async fn create_operator(&self, op: &OperatorRecord, audit: &AuditEntry) -> PortResult<bool>;
    /// The operator with this (lower-case) email.
    async fn operator_by_email(&self, email: &str) -> PortResult<Option<OperatorRecord>>;
    /// The operator with this id.
    async fn operator(&self, id: &str) -> PortResult<Option<OperatorRecord>>;
    /// Every operator, oldest first.
    async fn operators(&self) -> PortResult<Vec<OperatorRecord>>;
    /// Replaces `before` by `after` if nobody changed it since (same `updated_at_ms`) and an
    /// enabled admin remains (checked under lock, so two concurrent changes cannot remove the
    /// last two); closes the operator's sessions when `after` is disabled or has a new
    /// password.
    async fn update_operator(
        &self,
        before: &OperatorRecord,
        after: &OperatorRecord,
        audit: &AuditEntry,
    ) -> PortResult<OperatorUpdate>;
}

/// An open login session, as a bearer token's lookup finds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The operator's id.
    pub operator_id: String,
    /// Their email.
    pub email: String,
    /// Their role now.
    pub role: Role,
    /// Whether they are disabled now.
    pub disabled: bool,
    /// When the token stops working, unix ms.
    pub expires_at_ms: i64,
}

/// Login sessions: opaque tokens, stored as their SHA-256 only.
#[async_trait]
pub trait Sessions: Health {
    /// Whether any operator exists (routes that were open before operators stay open until then).
    async fn any_operator(&self) -> PortResult<bool>;
    /// Opens a session for `operator_id` until `expires_at_ms` if the operator exists, is not
    /// disabled and still has the password hash `password_hash` (the one the login checked) at
    /// that moment (`false`: nothing opened), so a login racing a disable cannot leave a session
    /// that a later re-enable would bring back, nor one racing a new password a session of the
    /// old one.
    async fn open_session(
        &self,
        token_hash: &str,
        operator_id: &str,
        password_hash: &str,
        expires_at_ms: i64,
    ) -> PortResult<bool>;
    /// The open session of a token, if any (expired ones too: the caller checks the time).
    async fn session(&self, token_hash: &str) -> PortResult<Option<Session>>;
    /// Closes one session (logout).
    async fn close_session(&self, token_hash: &str) -> PortResult<()>;
}

/// The audit log.
#[async_trait]
pub trait AuditLog: Health {
    /// Records a change made outside the stores that write their own entries.
    async fn record(&self, entry: &AuditEntry) -> PortResult<()>;
    /// Up to `limit` entries, newest first, all or those below position `before`.
    async fn audit(&self, before: Option<i64>, limit: u32) -> PortResult<Vec<ListedAudit>>;
}

/// An API key as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// The `X-Key-Id` it signs with.
    pub key_id: String,
    /// What it is for.
    pub name: String,
    /// Who created it.
    pub created_by: String,
    /// Created, unix ms.
    pub created_at_ms: i64,
    /// Revoked, unix ms, if it was.
    pub revoked_at_ms: Option<i64>,
}

/// API keys for game servers, managed by admins.
#[async_trait]
pub trait ApiKeyStore: Health {
    /// Stores a new key with its secret, once per key if `keyed`, unless `max` keys are active
    /// (`Full`, nothing written). The count is taken in the create's transaction after its key,
    /// under a lock every create of a key waits for: creates at the same moment never leave
    /// more than `max` active, and a retry of a create that stands is answered whatever the
    /// count.
    async fn create_api_key(
        &self,
        keyed: Option<&Keyed>,
        key: &ApiKeyInfo,
        secret: &str,
        audit: &AuditEntry,
        max: u32,
    ) -> PortResult<CappedOutcome>;
    /// Every active key and the `revoked` most recently revoked ones, newest first, without
    /// secrets.
    async fn api_keys(&self, revoked: u32) -> PortResult<Vec<ApiKeyInfo>>;
    /// Revokes an active key at `audit.at_ms`; `None` if there is no such active key.
    async fn revoke_api_key(
        &self,
        key_id: &str,
        audit: &AuditEntry,
    ) -> PortResult<Option<ApiKeyInfo>>;
}

/// What every process that checks signatures reads, every second: the active keys.
#[async_trait]
pub trait ActiveKeys: Health {
    /// `(key id, secret)` of every active API key, oldest first.
    async fn active_api_keys(&self) -> PortResult<Vec<(String, Vec<u8>)>>;
}
