//! The bus lag of the groups this process consumes, as gauges.

use std::sync::Arc;
use std::time::Duration;

use liveops_core::Bus;
use liveops_module::{Group, Task};

/// Publishes `bus_lag{topic,group}` for the groups this process consumes, every 2 s. A lag
/// that cannot be read is logged when it starts and when it ends, not every 2 s (Service Bus
/// never reports it over AMQP: Azure Monitor's `ActiveMessages` stands in).
pub fn lag_gauges(bus: Arc<dyn Bus>, groups: Vec<Group>) -> Task {
    Task::new("bus lag", move |stop| async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut unread = vec![false; groups.len()];
        loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            for (g, unread) in groups.iter().zip(unread.iter_mut()) {
                match bus.lag(g.topic, g.group).await {
                    Ok(lag) => {
                        metrics::gauge!("bus_lag", "topic" => g.topic, "group" => g.group)
                            .set(lag as f64);
                        if std::mem::take(unread) {
                            tracing::info!(topic = g.topic, group = g.group, "bus lag read again");
                        }
                    }
                    Err(e) if !*unread => {
                        *unread = true;
                        tracing::warn!(topic = g.topic, group = g.group, error = %e,
                            "cannot read bus lag (logged again once it can be read)");
                    }
                    Err(_) => {}
                }
            }
        }
    })
}
