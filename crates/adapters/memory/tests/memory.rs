//! The in-process adapters pass their ports' conformance suites.

use std::sync::Arc;

use liveops_memory::{MemoryHotState, MemoryRankStore};
use liveops_testkit::conformance;

#[tokio::test]
async fn memory_rank_store_conforms() {
    conformance::rank::run_all(&MemoryRankStore::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hot_state_conforms() {
    conformance::hot::run_all(Arc::new(MemoryHotState::new())).await;
}

#[tokio::test]
async fn memory_hot_state_conforms_on_one_thread() {
    conformance::hot::run_all(Arc::new(MemoryHotState::new())).await;
}
