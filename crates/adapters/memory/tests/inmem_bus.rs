//! The bus conformance suite against the in-memory bus.

#![allow(clippy::unwrap_used)] // tests may unwrap

use std::sync::Arc;
use std::time::Duration;

use liveops_core::ports::BusOptions;
use liveops_memory::MemoryBus;
use liveops_testkit::conformance;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bus_passes_the_bus_suite() {
    let opts = BusOptions {
        visibility_timeout: Duration::from_secs(1),
        max_deliveries: 3,
    };
    conformance::bus::run_all(Arc::new(MemoryBus::new(opts)), opts).await;
}
