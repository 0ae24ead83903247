//! `--forwarded-allow-ips`: which peers may set the client address and scheme.
//!
//! Only a request whose connection comes from a trusted peer has its
//! `X-Forwarded-For` and `X-Forwarded-Proto` fields believed: the rightmost
//! `X-Forwarded-For` entry (the address that proxy saw, which a client cannot
//! forge) becomes `REMOTE_ADDR`, and `X-Forwarded-Proto: https` makes
//! `wsgi.url_scheme` `https`. Nobody is trusted by default (gunicorn trusts
//! loopback), `*` trusts every peer, and a Unix-socket peer is trusted only with
//! `*` or the word `unix`. The fields never touch `SCRIPT_NAME` or `PATH_INFO`.

use std::net::IpAddr;

/// The parsed `--forwarded-allow-ips` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    any: bool,
    unix: bool,
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// Parse a comma-separated list of IPs, CIDRs, `*` and `unix`.
    ///
    /// # Errors
    ///
    /// A message naming the entry that is neither.
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut trusted = TrustedProxies::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match entry {
                "*" => trusted.any = true,
                "unix" => trusted.unix = true,
                _ => {
                    let (addr, bits) = match entry.split_once('/') {
                        Some((addr, bits)) => (addr, Some(bits)),
                        None => (entry, None),
                    };
                    let bad = || format!("{entry:?} is not an IP address, a CIDR, '*' or 'unix'");
                    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
                    let max = if addr.is_ipv4() { 32 } else { 128 };
                    let bits = match bits {
                        Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
                        None => max,
                    };
                    trusted.networks.push((addr, bits));
                }
            }
        }
        Ok(trusted)
    }

    /// Whether no peer is trusted (the fields are then never read).
    pub fn is_empty(&self) -> bool {
        !self.any && !self.unix && self.networks.is_empty()
    }

    /// Whether `peer` (an IP, or `None` for a Unix-socket peer) is trusted.
    pub fn trusts(&self, peer: Option<IpAddr>) -> bool {
        if self.any {
            return true;
        }
        let Some(peer) = peer else { return self.unix };
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.networks
            .iter()
            .any(|&(net, bits)| contains(net, bits, peer))
    }
}

fn contains(net: IpAddr, bits: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// The client address in an `X-Forwarded-For` value: its rightmost entry.
pub fn forwarded_client(value: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(value).ok()?;
    let last = text.rsplit(',').next()?.trim();
    let last = last.trim_start_matches('[').split(']').next()?;
    last.parse::<IpAddr>().ok().map(|ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn nobody_by_default() {
        let t = TrustedProxies::parse("").unwrap();
        assert!(t.is_empty());
        assert!(!t.trusts(ip("127.0.0.1")));
        assert!(!t.trusts(None));
    }

    #[test]
    fn ips_cidrs_star_unix() {
        let t = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8, fd00::/8").unwrap();
        assert!(t.trusts(ip("127.0.0.1")));
        assert!(!t.trusts(ip("127.0.0.2")));
        assert!(t.trusts(ip("10.200.3.4")));
        assert!(!t.trusts(ip("11.0.0.1")));
        assert!(t.trusts(ip("fd12::1")));
        assert!(t.trusts(ip("::ffff:10.1.1.1")));
        assert!(!t.trusts(None));
        assert!(TrustedProxies::parse("unix").unwrap().trusts(None));
        let any = TrustedProxies::parse("*").unwrap();
        assert!(any.trusts(None) && any.trusts(ip("8.8.8.8")));
        assert!(TrustedProxies::parse("0.0.0.0/0")
            .unwrap()
            .trusts(ip("1.2.3.4")));
    }

    #[test]
    fn bad_entries_are_named() {
        let err = TrustedProxies::parse("127.0.0.1,localhost").unwrap_err();
        assert!(err.contains("\"localhost\""), "{err}");
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
    }

    #[test]
    fn rightmost_forwarded_entry() {
        assert_eq!(
            forwarded_client(b"1.1.1.1, 203.0.113.9").as_deref(),
            Some("203.0.113.9")
        );
        assert_eq!(
            forwarded_client(b"2001:db8::1").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(forwarded_client(b"nonsense"), None);
    }
}
