//! Which events a consumer already applied: what makes redelivery harmless.

use std::collections::HashSet;

use async_trait::async_trait;
use uuid::Uuid;

use crate::ports::{Health, PortResult};

/// Event ids recorded with each consumer's commits.
#[async_trait]
pub trait ProcessedEvents: Health {
    /// Of `ids`, those `consumer` has already applied.
    async fn processed(&self, consumer: &str, ids: &[Uuid]) -> PortResult<HashSet<Uuid>>;
}
