//! An address or CIDR block (`10.0.0.0/8`, `::1`), as `console.trusted_proxies` lists them.

use std::fmt;
use std::net::IpAddr;

/// Addresses sharing their first `prefix` bits with `addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    addr: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// Parses `192.0.2.7`, `10.0.0.0/8`, `::1` or `fd00::/8`; the error says what was expected.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("{text:?} is not an address or a CIDR block (expected \"10.0.0.0/8\" or \"127.0.0.1\")")
        })?;
        let most = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => most,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= most => p,
                _ => {
                    return Err(format!(
                        "{text:?} has a prefix length out of range (expected 0 to {most})"
                    ));
                }
            },
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 peer counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(a), IpAddr::V4(b)) => same_prefix(&a.octets(), &b.octets(), self.prefix),
            (IpAddr::V6(a), IpAddr::V6(b)) => same_prefix(&a.octets(), &b.octets(), self.prefix),
            _ => false,
        }
    }
}

fn same_prefix(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[full] & mask == b[full] & mask
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::IpBlock;

    #[test]
    fn blocks_hold_the_addresses_that_share_their_prefix() {
        let b = IpBlock::parse("10.1.0.0/16").unwrap();
        assert!(b.contains("10.1.200.3".parse().unwrap()));
        assert!(!b.contains("10.2.0.1".parse().unwrap()));
        let one = IpBlock::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(one.contains("::ffff:127.0.0.1".parse().unwrap()), "IPv4-mapped");
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        let odd = IpBlock::parse("192.168.0.0/23").unwrap();
        assert!(odd.contains("192.168.1.255".parse().unwrap()));
        assert!(!odd.contains("192.168.2.0".parse().unwrap()));
        let v6 = IpBlock::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(
            IpBlock::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn what_is_not_a_block_says_what_was_expected() {
        assert!(
            IpBlock::parse("proxy.local")
                .unwrap_err()
                .contains("expected \"10.0.0.0/8\"")
        );
        assert!(IpBlock::parse("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(IpBlock::parse("::/129").unwrap_err().contains("0 to 128"));
    }
}
