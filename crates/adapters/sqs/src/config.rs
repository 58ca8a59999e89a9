//! [`SqsConfig`]: where the queues are and how deliveries behave, read from the environment.

use std::time::Duration;

use liveops_core::ports::BusSetupError;

/// Why the bus could not be set up (the shared [`BusSetupError`]).
pub type BusError = BusSetupError;

/// A malformed or missing setting.
pub(crate) fn config_error(reason: impl Into<String>) -> BusError {
    BusError::config("sqs bus", reason)
}

/// Static credentials (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`).
#[derive(Clone, PartialEq, Eq)]
pub struct StaticCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Everything [`crate::SqsBus::connect`] needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqsConfig {
    /// AWS region (`AWS_REGION`); `None` asks the standard chain.
    pub region: Option<String>,
    /// Explicit SQS endpoint (`AWS_ENDPOINT_URL_SQS` or `SQS_ENDPOINT`), e.g. a local emulator.
    pub endpoint: Option<String>,
    /// Static credentials; `None` uses the standard credential chain.
    pub credentials: Option<StaticCredentials>,
    /// First part of every queue name (`SQS_QUEUE_PREFIX`, default `liveops`; ≤ 20 of `[A-Za-z0-9_-]`).
    pub queue_prefix: String,
    /// How long a received message stays invisible before SQS hands it out again.
    pub visibility_timeout: Duration,
    /// Deliveries before a message moves to the group's dead-letter queue (`maxReceiveCount`).
    pub max_deliveries: u32,
    /// How long the bus keeps extending the visibility of a delivery its consumer still holds
    /// (neither acked nor polled again: the consumer's next poll of the group ends it, and what
    /// it did not ack comes back within a visibility timeout); `Duration::ZERO` turns the
    /// extension off.
    pub max_hold: Duration,
    /// Longest single SQS call (a long poll: its wait plus this) before `Unavailable`.
    pub call_timeout: Duration,
    /// How long a publish may take, from when it is queued, before it answers `Unavailable`
    /// (failed entries are retried until then); a publish bigger than one send
    /// ([`crate::SEND_CALLS`] calls) gets it once per send it takes.
    pub publish_deadline: Duration,
    /// How long a topic's list of group queues is cached before `ListQueues` runs again.
    pub group_refresh: Duration,
}

impl Default for SqsConfig {
    fn default() -> Self {
        Self {
            region: None,
            endpoint: None,
            credentials: None,
            queue_prefix: "liveops".to_owned(),
            visibility_timeout: Duration::from_secs(30),
            max_deliveries: 10,
            max_hold: Duration::from_secs(300),
            call_timeout: Duration::from_secs(5),
            publish_deadline: Duration::from_secs(10),
            group_refresh: Duration::from_secs(30),
        }
    }
}

/// Longest queue prefix: the rest of an 80-character queue name is topic, group and suffixes.
pub const MAX_PREFIX: usize = 20;

impl SqsConfig {
    /// Reads the settings from the process environment (see [`SqsConfig::from_vars`]).
    pub fn from_env() -> Result<Self, BusError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// Reads `AWS_REGION` (else `AWS_DEFAULT_REGION`; `us-east-1` when an endpoint is set and no
    /// region is), `AWS_ENDPOINT_URL_SQS` (else `SQS_ENDPOINT`), `SQS_QUEUE_PREFIX`, and static
    /// credentials when both `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are set.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, BusError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let endpoint = get("AWS_ENDPOINT_URL_SQS").or_else(|| get("SQS_ENDPOINT"));
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .or_else(|| endpoint.as_ref().map(|_| "us-east-1".to_owned()));
        let credentials = match (get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")) {
            (Some(access_key_id), Some(secret_access_key)) => Some(StaticCredentials {
                access_key_id,
                secret_access_key,
                session_token: get("AWS_SESSION_TOKEN"),
            }),
            _ => None,
        };
        let config = Self {
            region,
            endpoint,
            credentials,
            queue_prefix: get("SQS_QUEUE_PREFIX").unwrap_or_else(|| "liveops".to_owned()),
            ..Self::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the prefix and the endpoint's scheme.
    pub fn validate(&self) -> Result<(), BusError> {
        let p = &self.queue_prefix;
        if p.is_empty()
            || p.len() > MAX_PREFIX
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(config_error(format!(
                "SQS_QUEUE_PREFIX {p:?}: 1 to {MAX_PREFIX} of [A-Za-z0-9_-]"
            )));
        }
        if let Some(e) = &self.endpoint {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(config_error(format!(
                    "SQS endpoint {e:?} must start with http:// or https://"
                )));
            }
        }
        if self.max_deliveries == 0 || self.max_deliveries > 1000 {
            return Err(config_error(
                "max_deliveries must be 1..=1000 (SQS maxReceiveCount)".to_owned(),
            ));
        }
        if self.visibility_timeout > Duration::from_secs(12 * 3600) {
            return Err(config_error(
                "visibility timeout above SQS's 12 hours".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn an_endpoint_without_region_means_us_east_1_and_static_credentials_when_given() {
        let c = SqsConfig::from_vars(vars(&[
            ("SQS_ENDPOINT", "http://127.0.0.1:15000"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
        ]))
        .unwrap();
        assert_eq!(c.region.as_deref(), Some("us-east-1"));
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:15000"));
        assert_eq!(c.queue_prefix, "liveops");
        let creds = c.credentials.unwrap();
        assert_eq!(creds.access_key_id, "test");
        assert!(!format!("{creds:?}").contains("secret"), "secret in Debug");
    }

    #[test]
    fn the_sqs_specific_endpoint_wins_and_no_keys_means_the_standard_chain() {
        let c = SqsConfig::from_vars(vars(&[
            (
                "AWS_ENDPOINT_URL_SQS",
                "https://sqs.eu-west-1.amazonaws.com",
            ),
            ("SQS_ENDPOINT", "http://ignored"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "only-half"),
        ]))
        .unwrap();
        assert_eq!(
            c.endpoint.as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com")
        );
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert!(c.credentials.is_none());
        let none = SqsConfig::from_vars(vars(&[])).unwrap();
        assert_eq!((none.region, none.endpoint), (None, None));
    }

    #[test]
    fn bad_prefixes_and_endpoints_are_refused() {
        for prefix in ["", "has.dot", "way-too-long-prefix-for-sqs"] {
            let r = SqsConfig::from_vars(vars(&[("SQS_QUEUE_PREFIX", prefix)]));
            if prefix.is_empty() {
                assert!(r.is_ok(), "an empty value means the default");
            } else {
                assert!(matches!(r, Err(BusError::Config { .. })), "{prefix}: {r:?}");
            }
        }
        let r = SqsConfig::from_vars(vars(&[("SQS_ENDPOINT", "127.0.0.1:15000")]));
        assert!(matches!(r, Err(BusError::Config { .. })), "{r:?}");
    }
}
