//! How the HTTP server guards itself against slow and numerous clients: how long a request's
//! head (`HTTP_HEADER_TIMEOUT`) and body (`HTTP_BODY_TIMEOUT`) may take to arrive, and how many
//! requests one process serves at once (`HTTP_MAX_IN_FLIGHT`).

use std::time::Duration;

use clap::Args;

use super::{bad, duration, ConfigError};

/// The HTTP server's limits as given.
#[derive(Args, Clone, Debug)]
pub struct HttpConfig {
    /// How long a client may take to send a request's head (`20s`, `500ms`; 1 s to 5 min): a
    /// slower one, or a kept-alive connection that sends no next request within it, is closed.
    #[arg(long, env = "HTTP_HEADER_TIMEOUT", default_value = "20s")]
    pub http_header_timeout: String,
    /// How long a request's body may take to arrive, from its head (`20s`; 1 s to 5 min): a
    /// slower one is answered 408 and its connection closed.
    #[arg(long, env = "HTTP_BODY_TIMEOUT", default_value = "20s")]
    pub http_body_timeout: String,
    /// Requests one process serves at once (16 to 100000), `/healthz`, `/readyz` and
    /// `/metrics` aside: more are answered 503 with `Retry-After: 1`.
    #[arg(long, env = "HTTP_MAX_IN_FLIGHT", default_value_t = 512)]
    pub http_max_in_flight: u32,
}

/// The HTTP server's limits, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// How long a request's head may take.
    pub header_timeout: Duration,
    /// How long a request's body may take, from its head.
    pub body_timeout: Duration,
    /// Requests served at once.
    pub max_in_flight: usize,
}

const SHORTEST: Duration = Duration::from_secs(1);
const LONGEST: Duration = Duration::from_secs(300);

fn timeout(var: &'static str, text: &str) -> Result<Duration, ConfigError> {
    use duration::{M, MS, S};
    let d = duration::parse(text, &[MS, S, M]).map_err(|e| bad(var, e))?;
    if !(SHORTEST..=LONGEST).contains(&d) {
        return Err(bad(var, "must be between 1s and 5m"));
    }
    Ok(d)
}

impl HttpConfig {
    /// Checks the limits.
    pub fn resolve(&self) -> Result<HttpLimits, ConfigError> {
        Ok(HttpLimits {
            header_timeout: timeout("HTTP_HEADER_TIMEOUT", &self.http_header_timeout)?,
            body_timeout: timeout("HTTP_BODY_TIMEOUT", &self.http_body_timeout)?,
            max_in_flight: ConfigError::within(
                "HTTP_MAX_IN_FLIGHT",
                self.http_max_in_flight,
                16..=100_000,
            )? as usize,
        })
    }
}
