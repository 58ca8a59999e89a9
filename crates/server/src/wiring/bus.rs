//! The bus: the local SQLite log (default), Redis Streams, AWS SQS, Azure Service Bus, or memory
//! (tests only). The only place that picks one (`BUS_KIND`, else the one `CLOUD` implies).

use std::future::Future;
use std::sync::Arc;

use liveops_core::ports::BusOptions;
use liveops_core::{Bus, PortError};
use liveops_memory::MemoryBus;
use liveops_module::ports::Opened;
use liveops_module::{Adapter, Ports, Task};
use liveops_sqlite_bus::SqliteBus;

use super::named;
use crate::config::{BusArgs, BusChoice, Settings};

/// Registers the bus the settings name.
pub(super) fn provide(ports: &mut Ports, s: &Settings) {
    let opts = s.bus_options();
    let adapter: Arc<Adapter<dyn Bus>> = match s.bus.clone() {
        BusChoice::Sqlite(path) => Adapter::new_dyn(
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
        ),
        BusChoice::Inmem => {
            plain(move || async move { Ok(Arc::new(MemoryBus::new(opts)) as Arc<dyn Bus>) })
        }
        BusChoice::Redis(url) => {
            let bus = s.raw.bus.clone();
            let ca = s.redis_ca.clone();
            plain(move || redis_bus(url.clone(), ca.clone(), opts, bus.clone()))
        }
        BusChoice::Sqs {
            region,
            endpoint,
            prefix,
        } => plain(move || sqs_bus(region.clone(), endpoint.clone(), prefix.clone(), opts)),
        BusChoice::ServiceBus(conn) => {
            let sessions = s.raw.bus.bus_sb_sessions;
            plain(move || service_bus(conn.clone(), opts, sessions))
        }
    };
    ports.provide::<_, dyn Bus>(&adapter, |a| a);
}

/// A bus adapter with no upkeep of its own, opened by `open` on first use.
fn plain<F, Fut>(open: F) -> Arc<Adapter<dyn Bus>>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Arc<dyn Bus>, PortError>> + Send + 'static,
{
    Adapter::new_dyn(
        "bus",
        |a| a,
        move || {
            let opened = open();
            async move { opened.await.map(Opened::plain) }
        },
    )
}

/// Redis Streams with `args`' partitions and replica acknowledgements, verifying TLS against
/// `ca` when given.
async fn redis_bus(
    url: String,
    ca: Option<Vec<u8>>,
    opts: BusOptions,
    args: BusArgs,
) -> Result<Arc<dyn Bus>, PortError> {
    #[cfg(feature = "redis")]
    {
        use liveops_redis::bus::{RedisBus, ReplicaAcks};
        let bus = RedisBus::connect_with_ca(&url, ca.as_deref(), opts, args.bus_partitions)
            .await
            .map_err(named("BUS_CONN"))?
            .with_max_len(args.bus_redis_max_len)
            .with_replica_acks(ReplicaAcks {
                replicas: args.bus_redis_replicas,
                wait: std::time::Duration::from_millis(args.bus_redis_replica_wait_ms),
                away: args.bus_redis_replicas_away,
            });
        // A Redis that does not answer `INFO replication` to this user cannot be followed.
        bus.follow_replicas()
            .await
            .map_err(named("BUS_REDIS_REPLICAS_AWAY"))?;
        Ok(Arc::new(bus))
    }
    #[cfg(not(feature = "redis"))]
    {
        let _ = (url, ca, opts, args);
        Err(missing("redis"))
    }
}

/// SQS with the standard AWS credential chain (static keys only from `AWS_ACCESS_KEY_ID` and
/// `AWS_SECRET_ACCESS_KEY`, which the chain also reads first).
async fn sqs_bus(
    region: Option<String>,
    endpoint: Option<String>,
    queue_prefix: String,
    opts: BusOptions,
) -> Result<Arc<dyn Bus>, PortError> {
    #[cfg(feature = "sqs")]
    {
        use liveops_sqs::{SqsBus, SqsConfig};
        let env = SqsConfig::from_env().map_err(|e| named("SQS_QUEUE_PREFIX")(e.into()))?;
        let config = SqsConfig {
            region: region.or(env.region.clone()),
            endpoint,
            queue_prefix,
            visibility_timeout: opts.visibility_timeout,
            max_deliveries: opts.max_deliveries,
            // A gateway answers 503 (the client retries) rather than hold a request longer.
            publish_deadline: SQS_PUBLISH_DEADLINE,
            ..env
        };
        let bus = SqsBus::connect(config)
            .await
            .map_err(|e| named("SQS_ENDPOINT")(e.into()))?;
        Ok(Arc::new(bus))
    }
    #[cfg(not(feature = "sqs"))]
    {
        let _ = (region, endpoint, queue_prefix, opts);
        Err(missing("sqs"))
    }
}

/// How long an SQS publish may take, counted from when it is queued in this process, before it
/// answers `Unavailable` (a batch takes tens of milliseconds on AWS; the client retries a 503).
/// A send of queued publishes is capped at `liveops_sqs::SEND_CALLS` calls (8 rounds side by
/// side, a fraction of this), so under load the publishes go out in sends that finish, and one
/// whose deadline passes while it waits is answered then and not sent; a publish bigger than
/// one send gets this once per send it takes. The fairness consumer forwards in parts of 256
/// messages, each well within it.
#[cfg(feature = "sqs")]
const SQS_PUBLISH_DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Azure Service Bus (AMQP 1.0) at the connection string `conn`, reading up to `sessions`
/// players' sessions at once per consumer group.
async fn service_bus(
    conn: String,
    opts: BusOptions,
    sessions: u32,
) -> Result<Arc<dyn Bus>, PortError> {
    #[cfg(feature = "servicebus")]
    {
        use liveops_servicebus::{ServiceBusBus, ServiceBusConfig};
        let config = ServiceBusConfig {
            visibility_timeout: opts.visibility_timeout,
            max_deliveries: opts.max_deliveries,
            session_links: usize::try_from(sessions).unwrap_or(usize::MAX),
            ..ServiceBusConfig::parse(&conn).map_err(|e| named("BUS_CONN")(e.into()))?
        };
        let bus = ServiceBusBus::connect(config)
            .await
            .map_err(|e| named("BUS_CONN")(e.into()))?;
        Ok(Arc::new(bus))
    }
    #[cfg(not(feature = "servicebus"))]
    {
        let _ = (conn, opts, sessions);
        Err(missing("servicebus"))
    }
}

/// Settings::resolve refuses a bus this build lacks; this is the answer should one get here.
#[allow(dead_code)]
fn missing(kind: &str) -> PortError {
    PortError::Unavailable(format!("BUS_KIND: this build has no {kind} bus"))
}
