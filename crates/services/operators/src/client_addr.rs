//! The client address the login limits count under: the peer's, or what trusted proxies in
//! front of the service forwarded in `X-Forwarded-For`.
//!
//! A forwarded entry is believed only when every hop that handed it on is itself trusted: the
//! peer, then each proxy's own entry, must lie in `TRUSTED_PROXY_CIDRS`, at most
//! `TRUSTED_PROXIES` of them. Anyone else who reaches the service directly (another pod, a
//! misrouted request) is counted under their own address whatever they write in the header,
//! so they cannot spread their attempts over made-up addresses.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use ipnet::IpNet;
use liveops_http::{header, Problem};
use liveops_module::ConfigError;

use crate::OperatorsState;

/// Most proxies a request may pass through that the service is told to trust.
pub const MAX_TRUSTED_PROXIES: u32 = 8;

/// Who may forward a client's address to the service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    /// How many proxies, outermost last, stand in front of the service (0: none).
    hops: usize,
    /// Where those proxies connect from.
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// Checks `TRUSTED_PROXIES` (0 to [`MAX_TRUSTED_PROXIES`]) and `TRUSTED_PROXY_CIDRS` (a
    /// comma-separated list of networks, `10.40.17.0/24` or a bare address; needed when hops > 0).
    pub fn new(hops: u32, cidrs: &str) -> Result<Self, ConfigError> {
        let hops = ConfigError::within("TRUSTED_PROXIES", hops, 0..=MAX_TRUSTED_PROXIES)?;
        let nets = cidrs
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| {
                        ConfigError::new(
                            "TRUSTED_PROXY_CIDRS",
                            format!("{s:?} is neither a network (10.40.17.0/24) nor an address"),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if hops > 0 && nets.is_empty() {
            return Err(ConfigError::new(
                "TRUSTED_PROXY_CIDRS",
                "TRUSTED_PROXIES > 0 needs the networks the proxies connect from \
                 (e.g. the Application Gateway's subnet): without them anyone who reaches \
                 the service could choose the address their logins count under",
            ));
        }
        Ok(Self {
            hops: hops as usize,
            nets,
        })
    }

    /// Whether `ip` (an IPv4 address also when mapped into IPv6) is a trusted proxy's.
    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request from `peer` carrying `forwarded` (`X-Forwarded-For`): walking
    /// from the peer outwards, each trusted hop hands over to the entry it appended, up to
    /// `hops` times; the first untrusted or unreadable hop is the client.
    pub fn client(&self, peer: IpAddr, forwarded: Option<&str>) -> IpAddr {
        let mut client = peer;
        let mut entries = forwarded.unwrap_or_default().rsplit(',').map(str::trim);
        for _ in 0..self.hops {
            if !self.trusts(client) {
                break;
            }
            match entries.next().and_then(forwarded_ip) {
                Some(ip) => client = ip,
                None => break,
            }
        }
        client
    }
}

/// The client's address as the login limits count it (see the module's doc).
pub(crate) struct ClientAddr(pub(crate) String);

impl FromRequestParts<OperatorsState> for ClientAddr {
    type Rejection = Problem;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &OperatorsState,
    ) -> Result<Self, Self::Rejection> {
        let Some(ConnectInfo(peer)) = parts.extensions.get::<ConnectInfo<SocketAddr>>() else {
            return Ok(Self("unknown".into()));
        };
        let forwarded = header(&parts.headers, "x-forwarded-for");
        let client = state.config.proxies.client(peer.ip(), forwarded);
        Ok(Self(limited(client)))
    }
}

/// The address the login limits count under: an IPv4 address as it is (also when mapped into
/// IPv6), an IPv6 address by its /64, which one host or customer is commonly given whole.
fn limited(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The address of an `X-Forwarded-For` entry: a bare IP, or with a port as Azure Application
/// Gateway writes it (`203.0.113.7:51234`, `[2001:db8::7]:51234`).
fn forwarded_ip(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn forwarded_entries_may_carry_a_port() {
        for (entry, ip) in [
            ("203.0.113.7", Some("203.0.113.7")),
            ("203.0.113.7:51234", Some("203.0.113.7")),
            ("2001:db8::7", Some("2001:db8::7")),
            ("[2001:db8::7]:51234", Some("2001:db8::7")),
            ("unknown", None),
            ("203.0.113.7:port", None),
        ] {
            assert_eq!(
                forwarded_ip(entry).map(|a| a.to_string()).as_deref(),
                ip,
                "{entry}"
            );
        }
    }

    #[test]
    fn only_a_trusted_peer_may_name_the_client() {
        let gw = TrustedProxies::new(1, "10.40.17.0/24").expect("valid");
        let header = Some("198.51.100.9, 203.0.113.7:51234");
        // Through the Application Gateway: its entry names the client.
        assert_eq!(gw.client(ip("10.40.17.5"), header), ip("203.0.113.7"));
        // Mapped into IPv6 (a dual-stack listener) it is the same gateway.
        assert_eq!(
            gw.client(ip("::ffff:10.40.17.5"), header),
            ip("203.0.113.7")
        );
        // Straight from elsewhere (another pod): the header is not believed.
        assert_eq!(gw.client(ip("10.40.0.9"), header), ip("10.40.0.9"));
        // A trusted peer with no readable entry: the peer.
        assert_eq!(gw.client(ip("10.40.17.5"), None), ip("10.40.17.5"));
        assert_eq!(
            gw.client(ip("10.40.17.5"), Some("nonsense")),
            ip("10.40.17.5")
        );
        // No proxies configured: always the peer.
        let none = TrustedProxies::new(0, "").expect("valid");
        assert_eq!(none.client(ip("10.40.17.5"), header), ip("10.40.17.5"));
    }

    #[test]
    fn each_hop_handing_on_must_be_trusted() {
        let two = TrustedProxies::new(2, "10.0.0.0/8, 192.0.2.1").expect("valid");
        // CDN 192.0.2.1 -> gateway 10.1.1.1 -> service: the CDN's entry names the client.
        let chain = Some("203.0.113.7, 192.0.2.1");
        assert_eq!(two.client(ip("10.1.1.1"), chain), ip("203.0.113.7"));
        // The second hop is not a trusted proxy: it is the client, whatever it forwarded.
        let forged = Some("203.0.113.7, 198.51.100.9");
        assert_eq!(two.client(ip("10.1.1.1"), forged), ip("198.51.100.9"));
        // Never further than the hops configured, however many entries are trusted.
        let one = TrustedProxies::new(1, "10.0.0.0/8").expect("valid");
        assert_eq!(
            one.client(ip("10.1.1.1"), Some("203.0.113.7, 10.2.2.2")),
            ip("10.2.2.2")
        );
    }

    #[test]
    fn proxies_without_networks_or_beyond_the_bound_are_refused() {
        let var = |hops, cidrs| TrustedProxies::new(hops, cidrs).err().map(|e| e.var);
        assert_eq!(var(1, ""), Some("TRUSTED_PROXY_CIDRS"));
        assert_eq!(var(1, " , "), Some("TRUSTED_PROXY_CIDRS"));
        assert_eq!(var(1, "10.40.17.0/33"), Some("TRUSTED_PROXY_CIDRS"));
        assert_eq!(var(1, "gateway"), Some("TRUSTED_PROXY_CIDRS"));
        assert_eq!(
            var(MAX_TRUSTED_PROXIES + 1, "10.0.0.0/8"),
            Some("TRUSTED_PROXIES")
        );
        assert_eq!(var(0, ""), None);
        assert_eq!(var(1, "10.40.17.0/24,2001:db8::/48"), None);
    }

    #[test]
    fn ipv6_clients_count_by_their_64() {
        assert_eq!(limited(ip("2001:db8:1:2:3:4:5:6")), "2001:db8:1:2::/64");
        assert_eq!(limited(ip("::ffff:203.0.113.7")), "203.0.113.7");
    }
}
