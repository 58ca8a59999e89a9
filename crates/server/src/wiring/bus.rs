//! The bus: the local SQLite log (default), Redis Streams, or memory (tests only).

use std::sync::Arc;

use liveops_core::{Bus, PortError};
use liveops_memory::MemoryBus;
use liveops_module::ports::Opened;
use liveops_module::{Adapter, Ports, Task};
use liveops_sqlite_bus::SqliteBus;

use super::named;
use crate::config::{BusKind, Settings};

/// Registers the bus `BUS_KIND` names.
pub(super) fn provide(ports: &mut Ports, s: &Settings) {
    let opts = s.bus_options();
    let adapter: Arc<Adapter<dyn Bus>> = match s.raw.bus_kind {
        BusKind::Sqlite => {
            let path = s.bus_path.clone();
            Adapter::new_dyn(
                "bus",
                |a| a,
                move || {
                    let path = path.clone();
                    async move {
                        let bus = Arc::new(
                            SqliteBus::open(&path, opts)
                                .await
                                .map_err(named("BUS_CONN"))?,
                        );
                        let upkeep = bus.clone();
                        Ok(Opened {
                            adapter: bus as Arc<dyn Bus>,
                            upkeep: vec![Task::new("bus upkeep", move |stop| async move {
                                upkeep.run_upkeep(stop).await;
                                Ok(())
                            })],
                        })
                    }
                },
            )
        }
        BusKind::Inmem => Adapter::new_dyn(
            "bus",
            |a| a,
            move || async move { Ok(Opened::plain(Arc::new(MemoryBus::new(opts)) as Arc<dyn Bus>)) },
        ),
        BusKind::Redis => {
            let url = s.bus_url.clone().unwrap_or_default();
            let ca = s.redis_ca.clone();
            let partitions = s.raw.bus_partitions;
            Adapter::new_dyn(
                "bus",
                |a| a,
                move || {
                    let (url, ca) = (url.clone(), ca.clone());
                    async move {
                        redis_bus(&url, ca.as_deref(), opts, partitions)
                            .await
                            .map(Opened::plain)
                    }
                },
            )
        }
    };
    ports.provide::<_, dyn Bus>(&adapter, |a| a);
}

#[cfg(feature = "redis")]
async fn redis_bus(
    url: &str,
    ca: Option<&[u8]>,
    opts: liveops_core::ports::BusOptions,
    partitions: u32,
) -> Result<Arc<dyn Bus>, PortError> {
    let bus = liveops_redis::bus::RedisBus::connect_with_ca(url, ca, opts, partitions)
        .await
        .map_err(named("BUS_CONN"))?;
    Ok(Arc::new(bus))
}

#[cfg(not(feature = "redis"))]
async fn redis_bus(
    _url: &str,
    _ca: Option<&[u8]>,
    _opts: liveops_core::ports::BusOptions,
    _partitions: u32,
) -> Result<Arc<dyn Bus>, PortError> {
    Err(PortError::Unavailable(
        "BUS_KIND: this build has no Redis bus".into(),
    ))
}
