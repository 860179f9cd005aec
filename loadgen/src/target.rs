//! Where the load goes: a broker on this machine. Any URL whose host is
//! not a loopback address is refused before anything is sent, and the
//! load leaves from many 127.0.0.0/8 source addresses so the broker's
//! per-source rate limit applies to each simulated host group, not to the
//! whole load.

use std::net::{IpAddr, Ipv4Addr};

/// Why a target was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Not `http://HOST:PORT` with an IP literal or `localhost`.
    #[error("broker URL {url:?}: expected http://HOST:PORT, {reason}")]
    BadUrl { url: String, reason: &'static str },
    /// The host is not on this machine.
    #[error(
        "broker URL {url:?}: {actual} is not a loopback address (expected 127.0.0.0/8 or ::1)"
    )]
    NotLoopback { url: String, actual: String },
    /// More source addresses than the scheme below provides.
    #[error("source addresses: expected 1..={expected}, got {actual}")]
    Sources { expected: usize, actual: usize },
}

/// A broker base URL, checked to be on loopback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `http://IP:PORT`, no trailing slash.
    pub base: String,
    pub ip: IpAddr,
}

impl Target {
    /// Parse `http://HOST:PORT[/]` and refuse any host that is not loopback.
    pub fn parse(url: &str) -> Result<Target, TargetError> {
        let bad = |reason| TargetError::BadUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only plain http:// to loopback is supported"))?;
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') || authority.contains('@') {
            return Err(bad("no path or user info"));
        }
        let (host, port) = authority
            .rsplit_once(':')
            .ok_or_else(|| bad("the port is missing"))?;
        port.parse::<u16>()
            .map_err(|_| bad("the port is not a number"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: IpAddr = if host == "localhost" {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse()
                .map_err(|_| bad("the host must be an IP address or localhost"))?
        };
        if !ip.is_loopback() {
            return Err(TargetError::NotLoopback {
                url: url.to_owned(),
                actual: ip.to_string(),
            });
        }
        let base = match ip {
            IpAddr::V4(v4) => format!("http://{v4}:{port}"),
            IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
        };
        Ok(Target { base, ip })
    }

    /// `count` distinct source addresses for this target: 127.0.1.1 upwards
    /// for an IPv4 broker (the whole 127.0.0.0/8 is this machine's), only
    /// `::1` for an IPv6 one.
    pub fn sources(&self, count: usize) -> Result<Vec<IpAddr>, TargetError> {
        const MAX: usize = 250 * 250;
        if count == 0 || count > MAX {
            return Err(TargetError::Sources {
                expected: MAX,
                actual: count,
            });
        }
        Ok(match self.ip {
            IpAddr::V6(_) => vec![self.ip],
            IpAddr::V4(_) => (0..count)
                .map(|i| {
                    // 127.0.1.1 … 127.0.1.250, 127.0.2.1 …: never .0 or .255.
                    let third = 1 + i / 250;
                    let fourth = 1 + i % 250;
                    IpAddr::V4(Ipv4Addr::new(127, 0, third as u8, fourth as u8))
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        let t = Target::parse("http://127.0.0.1:8443/").unwrap();
        assert_eq!(t.base, "http://127.0.0.1:8443");
        assert!(Target::parse("http://localhost:1").is_ok());
        assert!(Target::parse("http://[::1]:1").is_ok());
        assert!(Target::parse("http://127.9.9.9:1").is_ok());
        for url in [
            "http://10.0.0.1:80",
            "http://192.168.1.1:80",
            "http://8.8.8.8:53",
        ] {
            assert!(
                matches!(Target::parse(url), Err(TargetError::NotLoopback { .. })),
                "{url}"
            );
        }
        for url in [
            "https://127.0.0.1:1",
            "http://example.com:80",
            "http://127.0.0.1",
            "http://127.0.0.1:1/v1",
            "http://x@127.0.0.1:1",
        ] {
            assert!(
                matches!(Target::parse(url), Err(TargetError::BadUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn sources_are_distinct_loopback_addresses() {
        let t = Target::parse("http://127.0.0.1:1").unwrap();
        let s = t.sources(600).unwrap();
        assert_eq!(s[0], IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(s[250], IpAddr::V4(Ipv4Addr::new(127, 0, 2, 1)));
        let unique: std::collections::BTreeSet<_> = s.iter().collect();
        assert_eq!(unique.len(), 600);
        assert!(s.iter().all(IpAddr::is_loopback));
        assert!(t.sources(0).is_err());
    }
}
