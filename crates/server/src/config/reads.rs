//! Read replica settings: `DB_READ_URL` (a replica of the `DB_URL` server) and
//! `DB_READ_MAX_LAG` (how far behind it may be and still serve reads).

use std::time::Duration;

use clap::Args;

use super::{bad, duration, ConfigError};

/// Read replica settings as given (no `Debug`: the URL may hold a password).
#[derive(Args, Clone)]
pub struct ReadConfig {
    /// Read replica of the `DB_URL` server (same kind): progress views, leaderboard history and
    /// fairness flags are read there while it is reachable and at most `DB_READ_MAX_LAG` behind.
    #[arg(long, env = "DB_READ_URL", hide_env_values = true)]
    pub db_read_url: Option<String>,
    /// How far behind the primary the replica may be and still serve reads (`5s`, `500ms`).
    #[arg(long, env = "DB_READ_MAX_LAG", default_value = "5s")]
    pub db_read_max_lag: String,
}

/// A checked read replica.
#[derive(Clone)]
pub struct ReadReplica {
    /// Its URL (may hold a password: never printed).
    pub url: String,
    /// The lag beyond which reads go to the primary.
    pub max_lag: Duration,
}

// The URL may hold a password.
liveops_core::debug_fields!(ReadReplica { max_lag, .. });

impl ReadConfig {
    /// The replica, checked against the primary's URL `db_url`; `None` without one.
    pub fn resolve(&self, db_url: &str) -> Result<Option<ReadReplica>, ConfigError> {
        let max_lag = duration::parse(&self.db_read_max_lag, &[duration::MS, duration::S])
            .map_err(|e| bad("DB_READ_MAX_LAG", e))?;
        if max_lag < Duration::from_millis(100) {
            return Err(bad("DB_READ_MAX_LAG", "must be at least 100ms"));
        }
        let Some(url) = &self.db_read_url else {
            return Ok(None);
        };
        let scheme = |u: &str| match u.split("://").next().unwrap_or_default() {
            "postgres" | "postgresql" => "postgres",
            "mysql" | "mariadb" => "mysql",
            other => {
                if other.starts_with("sqlite") {
                    "sqlite"
                } else {
                    "?"
                }
            }
        };
        match (scheme(db_url), scheme(url)) {
            ("sqlite", _) => Err(bad(
                "DB_READ_URL",
                "needs DB_URL on a server (postgres:// or mysql://); SQLite has no replicas",
            )),
            (primary, replica) if primary != replica => Err(bad(
                "DB_READ_URL",
                format!("is {replica} but DB_URL is {primary}: a replica is the same kind"),
            )),
            _ => Ok(Some(ReadReplica {
                url: url.clone(),
                max_lag,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: Option<&str>, lag: &str) -> ReadConfig {
        ReadConfig {
            db_read_url: url.map(str::to_owned),
            db_read_max_lag: lag.into(),
        }
    }

    #[test]
    fn a_replica_is_a_server_of_the_primary_kind_with_a_sane_lag() {
        let pg = "postgres://u:p@primary/db";
        let r = config(Some("postgres://u:p@replica/db"), "500ms")
            .resolve(pg)
            .expect("valid")
            .expect("a replica");
        assert_eq!(r.max_lag, Duration::from_millis(500));
        assert!(config(None, "5s").resolve(pg).expect("valid").is_none());
        for (c, primary) in [
            (config(Some("mysql://u:p@r/db"), "5s"), pg),
            (
                config(Some("postgres://r/db"), "5s"),
                "sqlite://data/liveops.db",
            ),
            (config(Some("postgres://r/db"), "50ms"), pg),
            (config(Some("postgres://r/db"), "5 seconds"), pg),
        ] {
            let (url, lag) = (c.db_read_url.clone(), c.db_read_max_lag.clone());
            assert!(c.resolve(primary).is_err(), "{url:?} {lag}");
        }
    }
}
