//! The HTTP clients deliveries use, built once per instance.
//!
//! rustls only, no redirects, no proxies, bounded timeouts, and a DNS
//! resolver that drops every non-public address (unless the configured
//! allow-list permits it), so a target name re-pointed at an internal host
//! after registration (DNS rebinding) can't reach it. Plain `http` (only
//! with an allow-list, for local development) has a client of its own whose
//! resolver keeps only the allow-listed addresses: a name that resolves
//! anywhere else is refused. IP-literal hosts never reach a resolver:
//! [`check_target`] judges them before the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use shared::target_guard::allow_list::AllowList;
use shared::target_guard::ip as ip_guard;
use url::{Host, Url};

use crate::config::DeliveryConfig;

/// `user-agent` of every delivery.
pub const USER_AGENT: &str = concat!("JobWebhooks/", env!("CARGO_PKG_VERSION"));

/// A target is refused by the SSRF guard.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Blocked {
    /// Every address the name resolves to is non-public.
    #[error("{host} resolves only to non-public addresses")]
    NonPublicName {
        /// The host name.
        host: String,
    },
    /// A plain-`http` target's name resolves outside the allow-list.
    #[error("{host} does not resolve only into TARGET_ALLOW_LIST networks: plain http refused")]
    PlainHttpName {
        /// The host name.
        host: String,
    },
    /// A plain-`http` target's IP literal is outside the allow-list.
    #[error("{0} is outside TARGET_ALLOW_LIST: plain http refused")]
    PlainHttpIp(IpAddr),
    /// The URL's host is a non-public IP literal.
    #[error("{ip} is not a public address ({range})")]
    NonPublicIp {
        /// The address.
        ip: IpAddr,
        /// Which range it lies in.
        range: &'static str,
    },
    /// The scheme is neither https nor (with an allow-list) http.
    #[error("scheme {0} is not allowed")]
    Scheme(String),
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The extra CA file could not be read.
    #[error("cannot read TARGET_EXTRA_CA_FILE {path}: {source}")]
    ReadCa {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The extra CA file holds no usable certificate.
    #[error("TARGET_EXTRA_CA_FILE {path} is not a PEM certificate: {source}")]
    ParseCa {
        /// The file.
        path: String,
        /// Why.
        source: reqwest::Error,
    },
    /// reqwest refused the settings.
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

fn permitted(ip: IpAddr, allow: &AllowList) -> Result<(), &'static str> {
    match ip_guard::non_public_reason(ip) {
        Some(range) if !allow.permits(ip) => Err(range),
        _ => Ok(()),
    }
}

/// Checks what the resolver can't see: the scheme, and IP-literal hosts.
/// Plain `http` needs a non-empty allow-list, and an IP literal in it.
pub fn check_target(url: &Url, allow: &AllowList) -> Result<(), Blocked> {
    let plain = match url.scheme() {
        "https" => false,
        "http" if !allow.is_empty() => true,
        other => return Err(Blocked::Scheme(other.to_owned())),
    };
    let ip = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
        _ => return Ok(()),
    };
    if plain && !allow.permits(ip) {
        return Err(Blocked::PlainHttpIp(ip));
    }
    permitted(ip, allow).map_err(|range| Blocked::NonPublicIp { ip, range })
}

/// Which resolved addresses a [`GuardedResolver`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// Public addresses and those in the allow-list (https).
    PublicOrListed,
    /// Only addresses in the allow-list, and only when all are (plain http).
    ListedOnly,
}

/// Resolves with the system resolver and keeps only permitted addresses.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow: Arc<AllowList>,
    keep: Keep,
}

impl GuardedResolver {
    /// A resolver admitting public addresses and those in `allow`.
    pub fn new(allow: AllowList) -> Self {
        Self {
            allow: Arc::new(allow),
            keep: Keep::PublicOrListed,
        }
    }

    /// A resolver for plain-`http` targets: a name resolves only when every
    /// address it has lies in `allow`.
    pub fn listed_only(allow: AllowList) -> Self {
        Self {
            allow: Arc::new(allow),
            keep: Keep::ListedOnly,
        }
    }
}

/// The addresses of `host` a resolver with `keep` may connect to.
fn kept_addresses(
    host: &str,
    resolved: Vec<SocketAddr>,
    allow: &AllowList,
    keep: Keep,
) -> Result<Vec<SocketAddr>, Blocked> {
    if keep == Keep::ListedOnly {
        if !allow.permits_all(resolved.iter().map(SocketAddr::ip)) {
            return Err(Blocked::PlainHttpName {
                host: host.to_owned(),
            });
        }
        return Ok(resolved);
    }
    let kept: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|addr| permitted(addr.ip(), allow).is_ok())
        .collect();
    if kept.is_empty() {
        return Err(Blocked::NonPublicName {
            host: host.to_owned(),
        });
    }
    Ok(kept)
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (allow, keep) = (Arc::clone(&self.allow), self.keep);
        Box::pin(async move {
            let host = name.as_str();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
            match kept_addresses(host, resolved, &allow, keep) {
                Ok(kept) => Ok(Box::new(kept.into_iter()) as Addrs),
                Err(blocked) => Err(Box::new(blocked) as _),
            }
        })
    }
}

/// The delivery clients: one for https, and with an allow-list one for
/// plain http whose resolver admits only allow-listed addresses.
#[derive(Debug, Clone)]
pub struct Clients {
    https: reqwest::Client,
    plain_http: Option<reqwest::Client>,
}

impl Clients {
    /// The client for `url`'s scheme: plain http gets its own client when
    /// there is an allow-list ([`check_target`] refuses it otherwise).
    pub fn for_url(&self, url: &Url) -> &reqwest::Client {
        match (&self.plain_http, url.scheme()) {
            (Some(plain), "http") => plain,
            _ => &self.https,
        }
    }
}

/// Builds the delivery clients from the configuration.
pub fn build(config: &DeliveryConfig) -> Result<Clients, ClientError> {
    let https = build_one(config, GuardedResolver::new(config.allow_list.clone()))?;
    let plain_http = if config.allow_list.is_empty() {
        None
    } else {
        Some(build_one(
            config,
            GuardedResolver::listed_only(config.allow_list.clone()),
        )?)
    };
    Ok(Clients { https, plain_http })
}

fn build_one(
    config: &DeliveryConfig,
    resolver: GuardedResolver,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .user_agent(USER_AGENT)
        .dns_resolver(Arc::new(resolver));
    if let Some(file) = &config.extra_ca_file {
        let path = file.display().to_string();
        let pem = std::fs::read(file).map_err(|source| ClientError::ReadCa {
            path: path.clone(),
            source,
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|source| ClientError::ParseCa { path, source })?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(ClientError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(u: &str) -> Url {
        Url::parse(u).unwrap()
    }

    #[test]
    fn ip_literals_and_schemes_are_judged_before_sending() {
        let none = AllowList::default();
        assert_eq!(check_target(&url("https://93.184.216.34/x"), &none), Ok(()));
        assert_eq!(check_target(&url("https://example.com/x"), &none), Ok(()));
        assert!(matches!(
            check_target(&url("https://127.0.0.1/x"), &none),
            Err(Blocked::NonPublicIp {
                range: "loopback",
                ..
            })
        ));
        assert!(check_target(&url("https://[::ffff:10.0.0.1]/"), &none).is_err());
        assert_eq!(
            check_target(&url("http://example.com/"), &none),
            Err(Blocked::Scheme("http".into()))
        );
        let loopback = AllowList::parse("127.0.0.0/8").unwrap();
        assert_eq!(check_target(&url("http://127.0.0.1:9/"), &loopback), Ok(()));
        assert!(check_target(&url("http://10.1.1.1/"), &loopback).is_err());
        // Plain http keeps the https rule outside the listed networks.
        assert_eq!(
            check_target(&url("http://93.184.216.34/x"), &loopback),
            Err(Blocked::PlainHttpIp("93.184.216.34".parse().unwrap()))
        );
        assert_eq!(
            check_target(&url("https://93.184.216.34/x"), &loopback),
            Ok(())
        );
    }

    #[test]
    fn plain_http_names_must_resolve_only_into_the_list() {
        let addr = |s: &str| SocketAddr::new(s.parse().unwrap(), 0);
        let (public, inside) = (addr("93.184.216.34"), addr("127.0.0.1"));
        let loopback = AllowList::parse("127.0.0.0/8").unwrap();
        let plain = |resolved: Vec<SocketAddr>| {
            kept_addresses("h.test", resolved, &loopback, Keep::ListedOnly)
        };
        assert_eq!(plain(vec![inside]), Ok(vec![inside]));
        // A public address, alone or beside a listed one, is refused for
        // plain http, where https would connect to it.
        for resolved in [vec![public], vec![inside, public], vec![]] {
            assert_eq!(
                plain(resolved.clone()),
                Err(Blocked::PlainHttpName {
                    host: "h.test".into()
                }),
                "{resolved:?}"
            );
        }
        let https = kept_addresses(
            "h.test",
            vec![inside, public],
            &loopback,
            Keep::PublicOrListed,
        );
        assert_eq!(https, Ok(vec![inside, public]));
        let none = AllowList::default();
        let https = kept_addresses("h.test", vec![inside, public], &none, Keep::PublicOrListed);
        assert_eq!(https, Ok(vec![public]));
    }

    #[tokio::test]
    async fn the_plain_http_resolver_admits_only_names_inside_the_list() {
        let loopback = AllowList::parse("127.0.0.0/8,::1").unwrap();
        let plain = GuardedResolver::listed_only(loopback);
        let addrs: Vec<_> = plain
            .resolve("localhost".parse().unwrap())
            .await
            .expect("localhost is inside the list")
            .collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()));
        let elsewhere = GuardedResolver::listed_only(AllowList::parse("10.0.0.0/8").unwrap());
        let err = elsewhere
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is outside 10.0.0.0/8");
        assert!(err.to_string().contains("plain http refused"), "{err}");
    }

    #[tokio::test]
    async fn the_resolver_drops_non_public_addresses() {
        let guarded = GuardedResolver::new(AllowList::default());
        let err = guarded
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is refused");
        assert!(err.to_string().contains("non-public"), "{err}");
        let open = GuardedResolver::new(AllowList::parse("127.0.0.0/8,::1").unwrap());
        let addrs: Vec<_> = open
            .resolve("localhost".parse().unwrap())
            .await
            .expect("allowed")
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
