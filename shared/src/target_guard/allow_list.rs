//! An explicit allow-list of non-public addresses webhook targets may use.
//!
//! Production leaves it empty: targets must be public HTTPS hosts. Local
//! development and tests deliver to receivers on loopback, over plain HTTP
//! or self-signed TLS; setting `TARGET_ALLOW_LIST=127.0.0.0/8,::1` permits
//! exactly that, and nothing else.

use std::net::IpAddr;

/// Environment variable holding the allow-list.
pub const ENV_VAR: &str = "TARGET_ALLOW_LIST";

/// Comma-separated networks (`10.0.0.0/8`, `::1/128`, or a bare address).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowList {
    nets: Vec<(IpAddr, u8)>,
}

/// An allow-list entry is not an address or CIDR network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allow-list entry {entry:?}: use addresses or CIDR networks, comma-separated")]
pub struct AllowListError {
    /// The offending entry.
    pub entry: String,
}

impl AllowList {
    /// Parses `"127.0.0.0/8, ::1"`; an empty text is the empty list.
    pub fn parse(text: &str) -> Result<Self, AllowListError> {
        let nets = text
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                parse_net(entry).ok_or_else(|| AllowListError {
                    entry: entry.to_owned(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { nets })
    }

    /// Reads [`ENV_VAR`] (absent = empty).
    pub fn from_env() -> Result<Self, crate::config::ConfigError> {
        Self::from_vars(&crate::config::Vars::Process)
    }

    /// The list in `vars` (empty when unset).
    pub fn from_vars(vars: &crate::config::Vars) -> Result<Self, crate::config::ConfigError> {
        let text = vars.optional(ENV_VAR).unwrap_or_default();
        Self::parse(&text).map_err(|e| crate::config::ConfigError::new(ENV_VAR, e.to_string()))
    }

    /// Whether the list is empty (production).
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether `ip` lies in one of the listed networks.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|&(net, len)| in_net(ip, net, len))
    }

    /// Whether there is at least one address and every one lies in a listed
    /// network: the rule for plain-`http` targets given by name.
    pub fn permits_all(&self, ips: impl IntoIterator<Item = IpAddr>) -> bool {
        let mut any = false;
        for ip in ips {
            if !self.permits(ip) {
                return false;
            }
            any = true;
        }
        any
    }
}

fn parse_net(entry: &str) -> Option<(IpAddr, u8)> {
    let (addr, len) = match entry.split_once('/') {
        Some((addr, len)) => (addr, Some(len.parse::<u8>().ok()?)),
        None => (entry, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}

fn in_net(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_only_listed_networks() {
        let list = AllowList::parse("127.0.0.0/8, ::1").unwrap();
        assert!(list.permits("127.0.0.1".parse().unwrap()));
        assert!(list.permits("127.9.9.9".parse().unwrap()));
        assert!(list.permits("::1".parse().unwrap()));
        assert!(list.permits("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!list.permits("10.0.0.1".parse().unwrap()));
        assert!(!list.permits("::2".parse().unwrap()));
        assert!(
            AllowList::parse("0.0.0.0/0")
                .unwrap()
                .permits("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn permits_all_needs_every_address_inside_and_at_least_one() {
        let list = AllowList::parse("127.0.0.0/8").unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(list.permits_all([ip("127.0.0.1"), ip("127.0.0.2")]));
        assert!(!list.permits_all([ip("127.0.0.1"), ip("93.184.216.34")]));
        assert!(!list.permits_all([]));
    }

    #[test]
    fn empty_and_invalid_lists() {
        assert!(AllowList::parse("").unwrap().is_empty());
        assert!(AllowList::parse(" , ").unwrap().is_empty());
        for bad in [
            "localhost",
            "127.0.0.1/33",
            "::1/129",
            "1.2.3/8",
            "10.0.0.0/x",
        ] {
            assert!(AllowList::parse(bad).is_err(), "{bad}");
        }
    }
}
