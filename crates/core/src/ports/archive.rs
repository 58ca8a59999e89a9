//! [`Archive`]: object storage that keeps copies away from the machine that made them (an Azure
//! Blob container; an S3 bucket would fit the same trait). Backups of the embedded files go there.

use std::path::Path;

use async_trait::async_trait;

use super::PortResult;

/// Whole files stored under names such as `liveops-20261201T101500.000Z/bus.db`.
#[async_trait]
pub trait Archive: Send + Sync {
    /// Where the objects go, for logs and answers (never a secret).
    fn location(&self) -> String;
    /// Stores the file at `from` as object `name`, replacing any object of that name; returns
    /// the bytes sent.
    async fn put_file(&self, name: &str, from: &Path) -> PortResult<u64>;
    /// Fetches object `name` into the new file `to`; returns the bytes received.
    async fn get_file(&self, name: &str, to: &Path) -> PortResult<u64>;
    /// The names of the objects that start with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> PortResult<Vec<String>>;
}
