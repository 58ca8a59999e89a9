//! What a process running only some of the modules needs of its backends: state it shares
//! with the modules it does not run must be outside it.

use super::{bad, BusChoice, ConfigError};
use crate::modules::{Table, Target};

/// Refuses backends kept inside one process for a target that shares them with others: hot
/// state without `REDIS_URL` between the gateway and fairness, and the in-process bus.
pub(super) fn check(
    table: &Table,
    target: &Target,
    redis: bool,
    bus: &BusChoice,
) -> Result<(), ConfigError> {
    // Fairness blocks players into hot state and the gateway refuses them from it: in process
    // (no REDIS_URL) the two only meet inside one process.
    if !redis && target.runs("gateway") != target.runs("fairness") {
        return Err(bad(
            "REDIS_URL",
            "the gateway and fairness share blocked players through hot state: run them in one \
             process (--target ingest or all) or give both REDIS_URL",
        ));
    }
    // The in-process bus is one process's: a split target would accept events no other process
    // ever reads.
    if matches!(bus, BusChoice::Inmem) && target.modules.len() < table.modules().len() {
        return Err(bad(
            "BUS_KIND",
            "inmem is one process's bus: only with --target all (split targets: sqlite on one \
             host, redis, sqs or servicebus)",
        ));
    }
    Ok(())
}
