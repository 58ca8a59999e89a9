//! The only place that picks adapters: which backend serves each port, from the configuration
//! (`BUS_KIND`, `REDIS_URL`, `DB_URL`). Every adapter is registered here and opened on first use,
//! so a process opens only what its modules ask for.

pub mod backup;
mod bus;
mod state;
mod stores;

use liveops_core::PortError;
use liveops_module::Ports;

use crate::config::Settings;

/// The registry of every port this process may use, with the adapters the settings select.
pub fn ports(settings: &Settings) -> Ports {
    let mut ports = Ports::new();
    bus::provide(&mut ports, settings);
    state::provide(&mut ports, settings);
    stores::provide(&mut ports, settings);
    ports
}

/// [`ports`] for a command that opens the repository, which migrates on open: first the
/// pre-upgrade backup set, if the embedded repository has migrations to apply
/// ([`crate::backup::pre_upgrade`]); an error, nothing opened, if it cannot be taken.
pub async fn ports_after_pre_upgrade_backup(settings: &Settings) -> anyhow::Result<Ports> {
    crate::backup::pre_upgrade::before_migrating(settings).await?;
    Ok(ports(settings))
}

/// Prefixes a backend error with the variable that configured it, for start-up messages.
fn named(var: &'static str) -> impl Fn(PortError) -> PortError {
    move |e| liveops_module::tick::naming(var, e)
}

/// `liveops migrate`: opens the repository (applying its migrations, after the pre-upgrade
/// backup set) and the bus (creating it).
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let ports = ports_after_pre_upgrade_backup(settings).await?;
    ports.get::<dyn liveops_sql::Repository>().await?;
    ports.get::<dyn liveops_core::Bus>().await?;
    Ok(())
}
