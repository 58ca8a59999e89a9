//! [`ServiceBusConfig`]: the connection string and delivery settings.

use std::time::Duration;

use liveops_core::ports::BusSetupError;

/// Why the bus could not be set up (the shared [`BusSetupError`]).
pub type BusError = BusSetupError;

/// A malformed or missing setting.
pub(crate) fn config_error(reason: impl Into<String>) -> BusError {
    BusError::config("service bus", reason)
}

/// Which broker the connection string names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Azure Service Bus: TLS, a SAS token put to `$cbs` before links attach, sessions keyed by
    /// the player, duplicate detection, broker-side lock expiry and dead-lettering.
    Azure {
        /// `SharedAccessKeyName`.
        key_name: String,
        /// `SharedAccessKey`.
        key: String,
        /// Receivers accept sessions (`Sessions=false` in the connection string turns it off,
        /// for subscriptions created without `RequiresSession`).
        sessions: bool,
    },
    /// A plain AMQP 1.0 broker: no `$cbs`, no sessions, no duplicate detection; the bus keeps
    /// per-player order itself (one receiver per group and process) and dead-letters by
    /// rejecting after `max_deliveries`.
    Plain,
}

/// Everything [`crate::ServiceBusBus::connect`] needs.
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceBusConfig {
    /// Host name (`<namespace>.servicebus.windows.net`, or the broker's).
    pub host: String,
    /// TCP port (5671 with TLS, 5672 without).
    pub port: u16,
    /// Whether to speak TLS (`amqps`).
    pub tls: bool,
    /// Azure or a plain broker.
    pub mode: Mode,
    /// How long a delivery may stay unacked before the bus abandons it (modified,
    /// delivery-failed) so that it is handed out again.
    pub visibility_timeout: Duration,
    /// Deliveries before a message is dead-lettered.
    pub max_deliveries: u32,
    /// How long the bus keeps renewing the lock of a delivery its consumer still holds;
    /// `Duration::ZERO` turns renewal off (plain visibility-timeout semantics).
    pub max_hold: Duration,
    /// Longest single broker round trip before `Unavailable`.
    pub call_timeout: Duration,
    /// Lifetime of a SAS token; it is renewed when a fifth of it is left.
    pub token_ttl: Duration,
    /// With sessions, how many session receiver links each consumer group keeps in this process
    /// (`BUS_SB_SESSIONS`), each holding another player's session: how many players one poll of
    /// the group reads at once. At least 1; without sessions a group has one link.
    pub session_links: usize,
}

/// [`ServiceBusConfig::session_links`] unless set: 8 players read at once per group and process.
pub const DEFAULT_SESSION_LINKS: usize = 8;

impl std::fmt::Debug for ServiceBusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = match &self.mode {
            Mode::Azure {
                key_name, sessions, ..
            } => {
                format!("Azure {{ key_name: {key_name:?}, sessions: {sessions} }}")
            }
            Mode::Plain => "Plain".to_owned(),
        };
        f.debug_struct("ServiceBusConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("mode", &mode)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("max_deliveries", &self.max_deliveries)
            .field("session_links", &self.session_links)
            .finish_non_exhaustive()
    }
}

impl ServiceBusConfig {
    /// Reads `BUS_CONN` from the environment (see [`ServiceBusConfig::parse`]).
    pub fn from_env() -> Result<Self, BusError> {
        let conn = std::env::var("BUS_CONN").map_err(|_| config_error("BUS_CONN is not set"))?;
        Self::parse(&conn)
    }

    /// Parses a Service Bus connection string
    /// (`Endpoint=sb://<ns>.servicebus.windows.net/;SharedAccessKeyName=…;SharedAccessKey=…`,
    /// optionally `;UseDevelopmentEmulator=true` for the local emulator without TLS, or
    /// `;Sessions=false`), or a plain broker: `Endpoint=amqp://host:port/` without a key, or
    /// just `amqp://host:port`.
    pub fn parse(conn: &str) -> Result<Self, BusError> {
        let conn = conn.trim();
        let mut endpoint = None;
        let (mut key_name, mut key) = (None, None);
        let (mut emulator, mut sessions) = (false, true);
        if conn.starts_with("amqp://") || conn.starts_with("amqps://") {
            endpoint = Some(conn.to_owned());
        } else {
            for part in conn.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                let (k, v) = part.split_once('=').ok_or_else(|| {
                    // Not the part itself: it may be a piece of the key.
                    config_error("a connection string part is not key=value".to_owned())
                })?;
                match k.trim().to_ascii_lowercase().as_str() {
                    "endpoint" => endpoint = Some(v.trim().to_owned()),
                    "sharedaccesskeyname" => key_name = Some(v.trim().to_owned()),
                    "sharedaccesskey" => key = Some(v.trim().to_owned()),
                    "usedevelopmentemulator" => emulator = v.trim().eq_ignore_ascii_case("true"),
                    "sessions" => sessions = !v.trim().eq_ignore_ascii_case("false"),
                    "entitypath" => {
                        return Err(config_error(
                            "EntityPath: use a namespace-level connection string".to_owned(),
                        ))
                    }
                    _ => {}
                }
            }
        }
        let endpoint = endpoint.ok_or_else(|| config_error("no Endpoint in BUS_CONN"))?;
        let (scheme, rest) = endpoint
            .split_once("://")
            .ok_or_else(|| config_error("the endpoint has no scheme".to_owned()))?;
        let authority = rest.split('/').next().unwrap_or_default();
        // The endpoint is never quoted in an error: credentials typed into it would be.
        if authority.contains('@') {
            return Err(config_error(
                "the endpoint holds credentials: give them as SharedAccessKeyName and \
                 SharedAccessKey"
                    .to_owned(),
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h.to_owned(),
                Some(
                    p.parse::<u16>()
                        .map_err(|_| config_error("the endpoint has a bad port".to_owned()))?,
                ),
            ),
            None => (authority.to_owned(), None),
        };
        if host.is_empty() {
            return Err(config_error("the endpoint has no host".to_owned()));
        }
        let tls = match scheme {
            "sb" | "amqps" => !emulator,
            "amqp" => false,
            other => return Err(config_error(format!("endpoint scheme {other:?}"))),
        };
        let mode = match (key_name, key) {
            (Some(key_name), Some(key)) => Mode::Azure {
                key_name,
                key,
                sessions,
            },
            (None, None) => Mode::Plain,
            _ => {
                return Err(config_error(
                    "SharedAccessKeyName and SharedAccessKey go together".to_owned(),
                ))
            }
        };
        Ok(Self {
            port: port.unwrap_or(if tls { 5671 } else { 5672 }),
            host,
            tls,
            mode,
            visibility_timeout: Duration::from_secs(30),
            max_deliveries: 10,
            max_hold: Duration::from_secs(300),
            call_timeout: Duration::from_secs(5),
            token_ttl: Duration::from_secs(3600),
            session_links: DEFAULT_SESSION_LINKS,
        })
    }

    /// `sb://<host>/`: the namespace URI tokens are signed for.
    pub fn namespace_uri(&self) -> String {
        format!("sb://{}/", self.host)
    }

    /// Whether this is Azure (CBS, sessions) rather than a plain broker.
    pub fn is_azure(&self) -> bool {
        matches!(self.mode, Mode::Azure { .. })
    }

    /// Whether receivers accept sessions.
    pub fn sessions(&self) -> bool {
        matches!(self.mode, Mode::Azure { sessions: true, .. })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests may unwrap
mod tests {
    use super::*;

    #[test]
    fn an_azure_connection_string_means_tls_cbs_and_sessions() {
        let c = ServiceBusConfig::parse(
            "Endpoint=sb://liveops-prod.servicebus.windows.net/;SharedAccessKeyName=liveops;SharedAccessKey=c2VjcmV0",
        )
        .unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.tls),
            ("liveops-prod.servicebus.windows.net", 5671, true)
        );
        assert_eq!(
            c.mode,
            Mode::Azure {
                key_name: "liveops".into(),
                key: "c2VjcmV0".into(),
                sessions: true
            }
        );
        assert_eq!(
            c.namespace_uri(),
            "sb://liveops-prod.servicebus.windows.net/"
        );
        assert_eq!(c.session_links, 8, "8 players' sessions per group at once");
        assert!(
            !format!("{c:?}").contains("c2VjcmV0"),
            "the key is not logged"
        );
    }

    #[test]
    fn the_emulator_and_plain_brokers_speak_without_tls() {
        let e = ServiceBusConfig::parse(
            "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;Sessions=false",
        )
        .unwrap();
        assert_eq!(
            (e.port, e.tls, e.sessions(), e.is_azure()),
            (5672, false, false, true)
        );
        for plain in ["amqp://127.0.0.1:15672", "Endpoint=amqp://127.0.0.1:15672/"] {
            let p = ServiceBusConfig::parse(plain).unwrap();
            assert_eq!(
                (p.host.as_str(), p.port, p.tls),
                ("127.0.0.1", 15672, false)
            );
            assert_eq!(p.mode, Mode::Plain);
        }
    }

    #[test]
    fn malformed_strings_are_refused() {
        for bad in [
            "",
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=only",
            "Endpoint=http://x/",
            "Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=v;EntityPath=q",
            "garbage",
            "amqp://host:notaport",
        ] {
            assert!(ServiceBusConfig::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_refusal_never_quotes_what_may_hold_a_secret() {
        for bad in [
            "amqp://u:hunter2@broker",
            "amqp://u:hunter2@broker:5672",
            "Endpoint=amqps://u:hunter2@ns/;SharedAccessKeyName=k;SharedAccessKey=v",
            "Endpoint=sb://ns/;hunter2",
            "Endpoint=sb://:hunter2/;SharedAccessKeyName=k;SharedAccessKey=v",
        ] {
            let e = ServiceBusConfig::parse(bad)
                .map(drop)
                .unwrap_err()
                .to_string();
            assert!(!e.contains("hunter2"), "{bad}: {e}");
        }
    }
}
