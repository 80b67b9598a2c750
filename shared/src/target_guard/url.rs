//! Creation-time guard against server-side request forgery (SSRF) through
//! webhook target URLs.
//!
//! Customers register an HTTPS URL that the service later POSTs events to. A
//! URL pointing at an internal host (loopback, cloud metadata endpoints,
//! private networks, local DNS names) would let a customer make the service
//! call into our own infrastructure, so such URLs are refused when the
//! subscription is created or updated.

use std::net::IpAddr;

use thiserror::Error;
use url::{Host, Url};

use crate::target_guard::allow_list::AllowList;
use crate::target_guard::ip;

/// Longest accepted target URL, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Host-name suffixes that only resolve inside private networks.
const LOCAL_SUFFIXES: &[&str] = &[
    "localhost",
    "local",
    "localdomain",
    "internal",
    "home.arpa",
    "lan",
];

/// Why a target URL was refused. The `Display` text is shown to API users.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlRejection {
    /// The URL is longer than [`MAX_URL_LEN`] bytes.
    #[error("URL is {len} bytes long; the maximum is {max} bytes", max = MAX_URL_LEN)]
    TooLong { len: usize },
    /// The URL could not be parsed; holds the reason.
    #[error("URL is malformed: {0}")]
    Malformed(String),
    /// The scheme is not `https`.
    #[error("URL scheme must be https, not {scheme}")]
    NotHttps { scheme: String },
    /// The URL carries a username or password.
    #[error("URL must not contain a username or password")]
    UserInfo,
    /// The URL has no host.
    #[error("URL must contain a host")]
    MissingHost,
    /// The host is an IP address outside public address space.
    #[error("URL host {ip} is not a public address ({range})")]
    NonPublicIp { ip: String, range: &'static str },
    /// The host is a name that resolves only inside private networks.
    #[error("URL host {host} is a local or single-label name, not a public domain name")]
    LocalName { host: String },
    /// Plain `http` to a host outside the allow-list's networks.
    #[error(
        "URL scheme must be https: plain http is allowed only for hosts inside TARGET_ALLOW_LIST \
         networks, and {host} is not one"
    )]
    PlainHttp { host: String },
}

/// Checks that `raw` is an acceptable webhook target and returns it parsed
/// and normalised.
///
/// The URL must be at most [`MAX_URL_LEN`] bytes, free of surrounding
/// whitespace and control characters, use `https`, carry no credentials, and
/// name a host that is either a public IP address (see
/// [`ip::is_public_ip`]; unusual IPv4 spellings such as `0x7f.1` are
/// normalised by the parser first) or a multi-label domain name outside the
/// local-only suffixes (`localhost`, `.local`, `.internal`, ...).
///
/// This is the creation-time check only: a public-looking name can still
/// resolve to an internal address, now or later. The delivery path must
/// resolve the host itself and re-check every resolved address with
/// [`ip::is_public_ip`] before connecting.
pub fn check_target_url(raw: &str) -> Result<Url, UrlRejection> {
    if raw.len() > MAX_URL_LEN {
        return Err(UrlRejection::TooLong { len: raw.len() });
    }
    // The parser silently strips surrounding whitespace and control
    // characters and drops embedded tabs and newlines; refuse them instead
    // so that what we store is exactly what the customer sent.
    if raw.trim() != raw {
        return Err(UrlRejection::Malformed(
            "leading or trailing whitespace".to_owned(),
        ));
    }
    if raw.chars().any(char::is_control) {
        return Err(UrlRejection::Malformed("control character".to_owned()));
    }

    let url = Url::parse(raw).map_err(|e| UrlRejection::Malformed(e.to_string()))?;
    if url.scheme() != "https" {
        return Err(UrlRejection::NotHttps {
            scheme: url.scheme().to_owned(),
        });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRejection::UserInfo);
    }
    match url.host().ok_or(UrlRejection::MissingHost)? {
        Host::Ipv4(v4) => check_ip(IpAddr::V4(v4))?,
        Host::Ipv6(v6) => check_ip(IpAddr::V6(v6))?,
        Host::Domain(name) => check_domain(name)?,
    }
    Ok(url)
}

/// [`check_target_url`], except that a non-empty allow-list (local
/// development and tests only) admits the hosts it lists:
///
/// - `https` to an IP literal in a listed network, or to `localhost` when the
///   list permits 127.0.0.1;
/// - plain `http` only to a host inside the listed networks: an IP literal
///   in one of them, or a name that resolves (now) only into them. Any other
///   `http` target keeps the https rule ([`UrlRejection::PlainHttp`]).
///
/// Delivery applies the same rule to the addresses a plain-`http` name
/// resolves to at delivery time, so a name re-pointed elsewhere later is
/// refused there.
pub async fn check_target_url_with(raw: &str, allow: &AllowList) -> Result<Url, UrlRejection> {
    if allow.is_empty() {
        return check_target_url(raw);
    }
    match check_target_url(raw) {
        Err(UrlRejection::NotHttps { scheme }) if scheme == "http" => {
            // Every other rule as if it were https; then the plain-http rule.
            let https = format!("https{}", &raw["http".len()..]);
            let url = match check_target_url(&https) {
                Ok(_) => Url::parse(raw).map_err(|e| UrlRejection::Malformed(e.to_string()))?,
                Err(rejection) => allowed_anyway(raw, rejection, allow)?,
            };
            if plain_http_permitted(&url, allow).await {
                Ok(url)
            } else {
                Err(UrlRejection::PlainHttp {
                    host: url.host_str().unwrap_or_default().to_owned(),
                })
            }
        }
        Err(rejection) => allowed_anyway(raw, rejection, allow),
        ok => ok,
    }
}

/// How long the creation-time check waits for a name to resolve; a name
/// that does not resolve in time is refused like one that does not resolve.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether plain `http` may reach `url`'s host: an IP literal inside
/// `allow`, or a name whose every resolved address lies inside `allow`.
async fn plain_http_permitted(url: &Url, allow: &AllowList) -> bool {
    match url.host() {
        Some(Host::Ipv4(v4)) => allow.permits(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => allow.permits(IpAddr::V6(v6)),
        Some(Host::Domain(name)) => {
            let port = url.port_or_known_default().unwrap_or(80);
            match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((name, port))).await
            {
                Ok(Ok(addrs)) => allow.permits_all(addrs.map(|a| a.ip())),
                _ => false,
            }
        }
        None => false,
    }
}

fn allowed_anyway(
    raw: &str,
    rejection: UrlRejection,
    allow: &AllowList,
) -> Result<Url, UrlRejection> {
    let permitted = |url: &Url| match url.host() {
        Some(Host::Ipv4(v4)) => allow.permits(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => allow.permits(IpAddr::V6(v6)),
        Some(Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost") && allow.permits([127, 0, 0, 1].into())
        }
        None => false,
    };
    match &rejection {
        UrlRejection::NonPublicIp { .. } | UrlRejection::LocalName { .. } => {
            match Url::parse(raw) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && permitted(&url) => Ok(url),
                _ => Err(rejection),
            }
        }
        _ => Err(rejection),
    }
}

fn check_ip(ip: IpAddr) -> Result<(), UrlRejection> {
    match ip::non_public_reason(ip) {
        Some(range) => Err(UrlRejection::NonPublicIp {
            ip: ip.to_string(),
            range,
        }),
        None => Ok(()),
    }
}

/// Refuses single-label names and names under local-only suffixes.
///
/// For `https` URLs the parser has already lowercased the name and mapped it
/// through IDNA, so plain byte comparisons are case-insensitive.
fn check_domain(host: &str) -> Result<(), UrlRejection> {
    let name = host.trim_end_matches('.');
    let single_label = !name.contains('.');
    let local_suffix = LOCAL_SUFFIXES.iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
    });
    if single_label || local_suffix {
        return Err(UrlRejection::LocalName {
            host: host.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(raw: &str, allow: &AllowList) -> Result<Url, UrlRejection> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(check_target_url_with(raw, allow))
    }

    #[test]
    fn allow_list_admits_listed_loopback_targets_only() {
        let loopback = AllowList::parse("127.0.0.0/8,::1").unwrap();
        for ok in [
            "http://127.0.0.1:8080/hook",
            "http://127.9.9.9/hook",
            "http://[::1]:9000/",
            "https://127.0.0.1:8443/hook",
            "http://localhost:9000/",
            "https://localhost:9443/",
            "https://example.com/hook",
        ] {
            assert!(with(ok, &loopback).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1/",
            "https://10.0.0.1/",
            "ftp://127.0.0.1/",
            "http://user:pw@127.0.0.1/",
            "http://printer.local/",
        ] {
            assert!(with(bad, &loopback).is_err(), "{bad}");
        }
        let none = AllowList::default();
        assert!(with("http://127.0.0.1/", &none).is_err());
        assert!(with("https://127.0.0.1/", &none).is_err());
    }

    #[test]
    fn plain_http_needs_a_host_inside_the_listed_networks() {
        let loopback = AllowList::parse("127.0.0.0/8,::1").unwrap();
        // Public IP literals and names that do not resolve only into the
        // list keep the https rule, even with an allow-list.
        for (raw, host) in [
            ("http://93.184.216.34/h", "93.184.216.34"),
            ("http://[2606:4700:4700::1111]/h", "[2606:4700:4700::1111]"),
            ("http://example.com/h", "example.com"),
            ("http://no-such-host.invalid/h", "no-such-host.invalid"),
        ] {
            assert_eq!(
                with(raw, &loopback),
                Err(UrlRejection::PlainHttp { host: host.into() }),
                "{raw}"
            );
        }
        // https to the same public hosts is fine.
        assert!(with("https://93.184.216.34/h", &loopback).is_ok());
        // Local-only names and non-public literals outside the list keep
        // their own rules: `localhost` passes only when the list holds
        // 127.0.0.1, before any lookup.
        let other = AllowList::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            with("http://localhost:9000/", &other),
            Err(UrlRejection::LocalName {
                host: "localhost".into()
            })
        );
        assert!(matches!(
            with("http://127.0.0.1:9000/", &other),
            Err(UrlRejection::NonPublicIp { .. })
        ));
    }

    fn non_public(ip: &str, range: &'static str) -> UrlRejection {
        UrlRejection::NonPublicIp {
            ip: ip.to_owned(),
            range,
        }
    }

    fn local_name(host: &str) -> UrlRejection {
        UrlRejection::LocalName {
            host: host.to_owned(),
        }
    }

    fn malformed(reason: impl ToString) -> UrlRejection {
        UrlRejection::Malformed(reason.to_string())
    }

    fn assert_rejected(cases: &[(&str, UrlRejection)]) {
        for (raw, expected) in cases {
            assert_eq!(check_target_url(raw).as_ref(), Err(expected), "{raw:?}");
        }
    }

    /// Builds an `https://example.com/aaa...` URL of exactly `len` bytes.
    fn url_of_len(len: usize) -> String {
        let base = "https://example.com/";
        format!("{base}{}", "a".repeat(len - base.len()))
    }

    #[test]
    fn accepts_public_targets_and_returns_normalised_url() {
        let cases = [
            ("https://example.com/", "https://example.com/"),
            (
                "https://example.com:8443/hook?x=1",
                "https://example.com:8443/hook?x=1",
            ),
            ("https://Hooks.Example.COM/a", "https://hooks.example.com/a"),
            ("https://example.com./", "https://example.com./"),
            ("https://93.184.216.34/", "https://93.184.216.34/"),
            (
                "https://[2606:4700:4700::1111]/",
                "https://[2606:4700:4700::1111]/",
            ),
            ("https://[::ffff:8.8.8.8]/", "https://[::ffff:808:808]/"),
            (
                "https://localhost.example.com/",
                "https://localhost.example.com/",
            ),
            ("https://mylan.example/", "https://mylan.example/"),
            // Suffixes only count at a label boundary.
            ("https://hooks.nonlocal/", "https://hooks.nonlocal/"),
            ("https://hooks.notinternal/", "https://hooks.notinternal/"),
        ];
        for (raw, normalised) in cases {
            let url = check_target_url(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
            assert_eq!(url.as_str(), normalised, "{raw:?}");
        }
    }

    #[test]
    fn rejects_urls_over_max_len_and_accepts_exactly_max_len() {
        let at_limit = url_of_len(MAX_URL_LEN);
        assert_eq!(at_limit.len(), 2048);
        assert!(check_target_url(&at_limit).is_ok());

        let over_limit = url_of_len(MAX_URL_LEN + 1);
        assert_eq!(
            check_target_url(&over_limit),
            Err(UrlRejection::TooLong { len: 2049 })
        );
    }

    #[test]
    fn rejects_surrounding_whitespace_and_control_characters_as_malformed() {
        assert_rejected(&[
            (
                " https://example.com/",
                malformed("leading or trailing whitespace"),
            ),
            (
                "https://example.com/ ",
                malformed("leading or trailing whitespace"),
            ),
            (
                "https://example.com/\n",
                malformed("leading or trailing whitespace"),
            ),
            ("https://exa\tmple.com/", malformed("control character")),
            ("https://example.com/a\nb", malformed("control character")),
            ("https://example.com/\u{0}x", malformed("control character")),
        ]);
    }

    #[test]
    fn rejects_unparsable_urls_as_malformed() {
        assert_rejected(&[
            (
                "not a url",
                malformed(url::ParseError::RelativeUrlWithoutBase),
            ),
            ("", malformed(url::ParseError::RelativeUrlWithoutBase)),
            ("https://", malformed(url::ParseError::EmptyHost)),
            (
                "https://1.2.3.4.5/",
                malformed(url::ParseError::InvalidIpv4Address),
            ),
            (
                "https://[::1/",
                malformed(url::ParseError::InvalidIpv6Address),
            ),
        ]);
    }

    #[test]
    fn rejects_schemes_other_than_https() {
        let not_https = |scheme: &str| UrlRejection::NotHttps {
            scheme: scheme.to_owned(),
        };
        assert_rejected(&[
            ("http://example.com", not_https("http")),
            ("HTTP://example.com/", not_https("http")),
            ("ftp://example.com/file", not_https("ftp")),
            ("file:///etc/passwd", not_https("file")),
            ("gopher://example.com/", not_https("gopher")),
        ]);
    }

    #[test]
    fn rejects_username_or_password() {
        assert_rejected(&[
            ("https://user:pw@example.com", UrlRejection::UserInfo),
            ("https://user@example.com", UrlRejection::UserInfo),
            ("https://:pw@example.com/", UrlRejection::UserInfo),
        ]);
    }

    #[test]
    fn rejects_non_public_ipv4_literals() {
        assert_rejected(&[
            ("https://127.0.0.1/", non_public("127.0.0.1", "loopback")),
            ("https://0.0.0.0/", non_public("0.0.0.0", "unspecified")),
            ("https://10.0.0.5/", non_public("10.0.0.5", "private")),
            ("https://172.16.0.1/", non_public("172.16.0.1", "private")),
            ("https://192.168.1.1/", non_public("192.168.1.1", "private")),
            ("https://100.64.0.1/", non_public("100.64.0.1", "CGNAT")),
            (
                "https://169.254.169.254/latest/meta-data",
                non_public("169.254.169.254", "link-local"),
            ),
            (
                "https://192.0.0.1/",
                non_public("192.0.0.1", "IETF protocol assignments"),
            ),
            (
                "https://192.0.2.1/",
                non_public("192.0.2.1", "documentation"),
            ),
            (
                "https://192.88.99.1/",
                non_public("192.88.99.1", "6to4 relay anycast"),
            ),
            (
                "https://198.18.0.1/",
                non_public("198.18.0.1", "benchmarking"),
            ),
            (
                "https://198.51.100.1/",
                non_public("198.51.100.1", "documentation"),
            ),
            (
                "https://203.0.113.1/",
                non_public("203.0.113.1", "documentation"),
            ),
            ("https://224.0.0.1/", non_public("224.0.0.1", "multicast")),
            ("https://240.0.0.1/", non_public("240.0.0.1", "reserved")),
            (
                "https://255.255.255.255/",
                non_public("255.255.255.255", "broadcast"),
            ),
        ]);
    }

    #[test]
    fn rejects_odd_ipv4_spellings_after_normalisation() {
        assert_rejected(&[
            ("https://2130706433/", non_public("127.0.0.1", "loopback")),
            ("https://0x7f.1/", non_public("127.0.0.1", "loopback")),
            ("https://0177.0.0.1/", non_public("127.0.0.1", "loopback")),
            ("https://127.1/", non_public("127.0.0.1", "loopback")),
            ("https://0x7f000001./", non_public("127.0.0.1", "loopback")),
            ("https://127.0.0.1./", non_public("127.0.0.1", "loopback")),
            ("https://０x7f.1/", non_public("127.0.0.1", "loopback")),
            (
                "https://0xa9fea9fe/",
                non_public("169.254.169.254", "link-local"),
            ),
        ]);
    }

    #[test]
    fn rejects_non_public_ipv6_literals() {
        assert_rejected(&[
            ("https://[::]/", non_public("::", "unspecified")),
            ("https://[::1]/", non_public("::1", "loopback")),
            (
                "https://[::7f00:1]/",
                non_public("::7f00:1", "IPv4-compatible"),
            ),
            (
                "https://[64:ff9b:1::1]/",
                non_public("64:ff9b:1::1", "local-use NAT64"),
            ),
            ("https://[100::1]/", non_public("100::1", "discard-only")),
            ("https://[2001::1]/", non_public("2001::1", "Teredo")),
            (
                "https://[2001:1::1]/",
                non_public("2001:1::1", "IETF protocol assignments"),
            ),
            (
                "https://[2001:db8::1]/",
                non_public("2001:db8::1", "documentation"),
            ),
            (
                "https://[2002:7f00:1::]/",
                non_public("2002:7f00:1::", "6to4"),
            ),
            ("https://[3fff::1]/", non_public("3fff::1", "documentation")),
            ("https://[fd00::1]/", non_public("fd00::1", "private")),
            ("https://[fc00::1]/", non_public("fc00::1", "private")),
            ("https://[fe80::1]/", non_public("fe80::1", "link-local")),
            ("https://[fec0::1]/", non_public("fec0::1", "site-local")),
            ("https://[ff02::1]/", non_public("ff02::1", "multicast")),
        ]);
    }

    #[test]
    fn rejects_v4_mapped_and_nat64_ipv6_of_non_public_ipv4() {
        assert_rejected(&[
            (
                "https://[::ffff:127.0.0.1]/",
                non_public("::ffff:127.0.0.1", "IPv4-mapped loopback"),
            ),
            (
                "https://[::ffff:7f00:1]/",
                non_public("::ffff:127.0.0.1", "IPv4-mapped loopback"),
            ),
            (
                "https://[::ffff:169.254.169.254]/",
                non_public("::ffff:169.254.169.254", "IPv4-mapped link-local"),
            ),
            (
                "https://[64:ff9b::10.0.0.1]/",
                non_public("64:ff9b::a00:1", "NAT64-translated private"),
            ),
            (
                "https://[64:ff9b::a9fe:a9fe]/",
                non_public("64:ff9b::a9fe:a9fe", "NAT64-translated link-local"),
            ),
        ]);
        assert!(check_target_url("https://[64:ff9b::93.184.216.34]/").is_ok());
        assert!(check_target_url("https://[::ffff:93.184.216.34]/").is_ok());
    }

    #[test]
    fn rejects_localhost_and_local_only_suffixes() {
        assert_rejected(&[
            ("https://localhost/", local_name("localhost")),
            ("https://LOCALHOST./", local_name("localhost.")),
            ("https://localhost../", local_name("localhost..")),
            ("https://localhost:8443/hook", local_name("localhost")),
            ("https://foo.localhost/", local_name("foo.localhost")),
            ("https://printer.local/", local_name("printer.local")),
            ("https://db.LocalDomain/", local_name("db.localdomain")),
            (
                "https://metadata.google.internal/",
                local_name("metadata.google.internal"),
            ),
            (
                "https://metadata.google.internal./computeMetadata/v1/",
                local_name("metadata.google.internal."),
            ),
            ("https://router.home.arpa/", local_name("router.home.arpa")),
            ("https://home.arpa/", local_name("home.arpa")),
            ("https://nas.lan./", local_name("nas.lan.")),
        ]);
    }

    #[test]
    fn rejects_single_label_names() {
        assert_rejected(&[
            ("https://intranet/", local_name("intranet")),
            ("https://intranet./", local_name("intranet.")),
            ("https://Jenkins:8080/job", local_name("jenkins")),
            ("https://./", local_name(".")),
        ]);
    }

    #[test]
    fn rejection_messages_are_user_facing() {
        let cases = [
            (
                UrlRejection::TooLong { len: 2049 },
                "URL is 2049 bytes long; the maximum is 2048 bytes",
            ),
            (malformed("empty host"), "URL is malformed: empty host"),
            (
                UrlRejection::NotHttps {
                    scheme: "http".to_owned(),
                },
                "URL scheme must be https, not http",
            ),
            (
                UrlRejection::UserInfo,
                "URL must not contain a username or password",
            ),
            (UrlRejection::MissingHost, "URL must contain a host"),
            (
                non_public("127.0.0.1", "loopback"),
                "URL host 127.0.0.1 is not a public address (loopback)",
            ),
            (
                local_name("intranet"),
                "URL host intranet is a local or single-label name, not a public domain name",
            ),
        ];
        for (rejection, message) in cases {
            assert_eq!(rejection.to_string(), message);
        }
    }
}
