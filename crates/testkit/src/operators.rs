//! An operator signed in, for the tests of routes that take an operator's bearer token.

use liveops_core::now_ms;
use liveops_core::stores::{AuditEntry, OperatorRecord, OperatorStore, Role, Sessions};
use liveops_http::token_hash;

/// Writes operator `id` (role `operator`, `ops@example.com`) into `repo` with a session that
/// `token` opens for an hour, as a login would leave them.
pub async fn signed_in<R: OperatorStore + Sessions + ?Sized>(
    repo: &R,
    id: &str,
    token: &str,
) -> OperatorRecord {
    let now = now_ms();
    let op = OperatorRecord {
        id: id.to_owned(),
        email: "ops@example.com".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        role: Role::Operator,
        disabled: false,
        created_at_ms: now,
        updated_at_ms: now,
    };
    let created = AuditEntry {
        at_ms: now,
        actor: "test".into(),
        action: "operator.create".into(),
        target: op.id.clone(),
        before: None,
        after: None,
    };
    let made = repo.create_operator(&op, &created).await;
    assert!(made.expect("create_operator"), "{id} is new");
    let hash = token_hash(token);
    let opened = repo.open_session(&hash, id, &op.password_hash, now + 3_600_000);
    assert!(opened.await.expect("open_session"), "session of {id}");
    op
}
