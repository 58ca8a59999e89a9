//! Where webhooks may point: `http(s)://` URLs whose host resolves only to public addresses.
//! Private (RFC 1918, unique local), loopback, link-local (cloud metadata endpoints live
//! there), shared (CGNAT), unspecified, multicast and documentation addresses, Azure's platform
//! address (168.63.129.16), and IPv6 addresses that carry an IPv4 address to a tunnel or
//! translator (IPv4-compatible, 6to4, Teredo; IPv4-mapped and NAT64 ones are checked as the IPv4
//! address inside) are refused unless `WEBHOOK_ALLOW_PRIVATE=true`. The check runs when a webhook is created and again before every
//! delivery, whose connection then goes to the addresses checked (no second lookup a DNS
//! rebinding could answer differently); redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;

/// Longest webhook URL.
pub const MAX_URL_LEN: usize = 2048;

/// Reads a webhook URL: `http` or `https`, a host, no user name or password, at most
/// [`MAX_URL_LEN`] characters as given and as stored (percent-encoded, which can lengthen it).
/// Read as given, as the document's pattern reads it, before the parser forgives: `http://` or
/// `https://` (any case) first, then a host without white space, control characters or `@` (an
/// empty user name, or a tab the parser would drop).
pub fn parse_url(raw: &str) -> Result<Url, String> {
    if raw.chars().count() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    let scheme = ["https://", "http://"].into_iter().find(|s| {
        raw.get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    });
    let Some(scheme) = scheme else {
        return Err("must start with http:// or https://".into());
    };
    let authority = raw[scheme.len()..]
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    if authority.is_empty() {
        return Err("needs a host".into());
    }
    if authority.contains('@') {
        return Err("must not carry a user name or password".into());
    }
    if authority.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err("the host must not hold white space or control characters".into());
    }
    let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if url.as_str().len() > MAX_URL_LEN {
        return Err(format!(
            "must be at most {MAX_URL_LEN} characters once percent-encoded ({})",
            url.as_str().len()
        ));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be http:// or https://".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("needs a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".into());
    }
    Ok(url)
}

/// Azure's platform address (the host's DNS, DHCP and health probes, the VM agent's wire server):
/// reachable from every Azure VM and pod, never a webhook's.
const AZURE_WIRESERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

fn v4_public(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || ip == AZURE_WIRESERVER
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// The IPv4 address inside a NAT64 address of the well-known prefix `64:ff9b::/96`, which a
/// DNS64 resolver answers for IPv4-only hosts: it reaches that IPv4 address.
fn nat64_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let [a, b, c, d, e, f, ..] = ip.segments();
    ([a, b, c, d, e, f] == [0x64, 0xff9b, 0, 0, 0, 0])
        .then(|| Ipv4Addr::from_bits(ip.to_bits() as u32))
}

fn v6_public(ip: Ipv6Addr) -> bool {
    // IPv4-mapped (`::ffff:0:0/96`) and NAT64 addresses reach the IPv4 address inside.
    if let Some(v4) = ip.to_ipv4_mapped().or_else(|| nat64_v4(ip)) {
        return v4_public(v4);
    }
    let [first, second, ..] = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (ip.to_bits() >> 32) == 0 // IPv4-compatible `::a.b.c.d` (deprecated; `::/96`)
        || (ip.to_bits() >> 32) == 0xffff_0000 // IPv4-translated `::ffff:0:a.b.c.d` (SIIT)
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || first == 0x2001 && second == 0x0db8 // documentation
        || first == 0x2001 && second == 0 // Teredo (`2001::/32`, tunnels to any IPv4 address)
        || first == 0x2002 // 6to4 (`2002::/16`, tunnels to the IPv4 address inside)
        || (first == 0x0064 && second == 0xff9b)) // other NAT64 prefixes (local use: `64:ff9b:1::/48`)
}

/// Whether `ip` is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

/// The addresses `url`'s host resolves to, all of them allowed (public, or any when
/// `allow_private`); an error saying why not otherwise.
pub async fn resolve(url: &Url, allow_private: bool) -> Result<Vec<SocketAddr>, String> {
    let host = url.host_str().ok_or("needs a host")?;
    let port = url.port_or_known_default().ok_or("needs a port")?;
    // An IP literal in brackets (`[::1]`) resolves to itself.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| format!("cannot resolve {bare}: {e}"))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(format!("{bare} resolves to no address"));
    }
    if !allow_private {
        if let Some(a) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(format!(
                "{bare} resolves to {}, a private, loopback or link-local address \
                 (WEBHOOK_ALLOW_PRIVATE=true allows it)",
                a.ip()
            ));
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for ok in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(ok.parse().expect("ip")), "{ok}");
        }
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(bad.parse().expect("ip")), "{bad}");
        }
    }

    #[test]
    fn azure_s_platform_address_and_ipv6_wrappers_of_ipv4_are_refused() {
        for (bad, what) in [
            ("168.63.129.16", "Azure's platform address"),
            ("::ffff:168.63.129.16", "IPv4-mapped Azure platform address"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("::a9fe:a9fe", "IPv4-compatible metadata"),
            ("::ffff:0:808:808", "IPv4-translated"),
            ("2002:a9fe:a9fe::1", "6to4 of the metadata address"),
            ("2002:808:808::1", "6to4 of a public address"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("2001::1", "Teredo"),
            ("64:ff9b::a83f:8110", "NAT64 of Azure's platform address"),
            ("64:ff9b::a00:1", "NAT64 of 10.0.0.1"),
            ("64:ff9b:1::808:808", "local-use NAT64"),
        ] {
            assert!(!is_public(bad.parse().expect("ip")), "{bad}: {what}");
        }
        // NAT64 and IPv4-mapped addresses of public IPv4 addresses pass, as those do.
        for ok in [
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
            "168.63.129.17",
            "2001:4860::8888",
        ] {
            assert!(is_public(ok.parse().expect("ip")), "{ok}");
        }
    }

    #[test]
    fn urls_need_http_a_host_and_no_credentials() {
        assert!(parse_url("https://hooks.example.com/liveops?x=1").is_ok());
        assert!(parse_url("ftp://hooks.example.com/").is_err());
        assert!(parse_url("https://user:pw@hooks.example.com/").is_err());
        // As given: what the parser would forgive is refused, as the document's pattern does.
        for forgiven in [
            " https://hooks.example.com/x",
            "https://@hooks.example.com/x",
            "https://hooks.exa\tmple.com/x",
            "https://hooks.example.com /x",
            "https:hooks.example.com/x",
            "https:@hooks.example.com/x",
            "https:/hooks.exa\tmple.com/x",
            "https:///hooks.example.com/x",
        ] {
            assert!(parse_url(forgiven).is_err(), "{forgiven:?}");
        }
        assert!(
            parse_url("https://hooks.example.com/a b").is_ok(),
            "a path may"
        );
        assert!(
            parse_url("HTTPS://hooks.example.com/x").is_ok(),
            "any case, as the pattern"
        );
        assert!(parse_url("not a url").is_err());
        assert!(parse_url(&format!("https://a.example/{}", "x".repeat(MAX_URL_LEN))).is_err());
        // Within the limit as given, but three times as long percent-encoded (as stored).
        let braces = format!("https://93.184.216.34/{}", "{".repeat(2000));
        let err = parse_url(&braces).unwrap_err();
        assert!(err.contains("once percent-encoded"), "{err}");
    }

    #[tokio::test]
    async fn private_targets_are_refused_unless_allowed() {
        let url = parse_url("http://127.0.0.1:9/hook").expect("url");
        assert!(resolve(&url, false).await.is_err());
        assert_eq!(
            resolve(&url, true).await.expect("allowed"),
            vec!["127.0.0.1:9".parse::<SocketAddr>().expect("addr")]
        );
        let v6 = parse_url("http://[::1]:9/hook").expect("url");
        assert!(resolve(&v6, false).await.is_err());
        let named = parse_url("http://localhost:9/hook").expect("url");
        assert!(
            resolve(&named, false).await.is_err(),
            "a name is checked by what it resolves to"
        );
    }
}
