//! Configuration read once from environment variables at cold start.
//!
//! Every function builds its own config struct with these helpers, so a
//! missing or malformed variable fails the cold start with a message naming
//! the variable instead of surfacing later as a confusing runtime error.

use std::str::FromStr;

use crate::queue::batch::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES};

/// A configuration variable is missing or has an unusable value.
#[derive(Debug, thiserror::Error)]
#[error("configuration variable {var}: {problem}")]
pub struct ConfigError {
    /// Name of the environment variable.
    pub var: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// A config error for `var` with a human-readable problem description.
    pub fn new(var: &'static str, problem: impl Into<String>) -> Self {
        Self {
            var,
            problem: problem.into(),
        }
    }
}

/// Where configuration variables are read from: the process environment
/// (a Lambda function's, at cold start) or a given set, such as the
/// environment CloudFormation resolved for a function, which the local
/// stack reads back from the emulator.
#[derive(Clone, Default)]
pub enum Vars {
    /// `std::env`.
    #[default]
    Process,
    /// Exactly these variables.
    Map(std::collections::HashMap<String, String>),
}

impl std::fmt::Debug for Vars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Process => f.write_str("Vars::Process"),
            // Names only: values may be secrets.
            Self::Map(map) => {
                let mut names: Vec<&str> = map.keys().map(String::as_str).collect();
                names.sort_unstable();
                f.debug_tuple("Vars::Map").field(&names).finish()
            }
        }
    }
}

impl Vars {
    /// The variables in `map`, and no others.
    pub fn from_map(map: std::collections::HashMap<String, String>) -> Self {
        Self::Map(map)
    }

    /// The non-empty value of `var`, if set.
    pub fn optional(&self, var: &'static str) -> Option<String> {
        let value = match self {
            Self::Process => std::env::var(var).ok(),
            Self::Map(map) => map.get(var).cloned(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// The non-empty value of `var`, or an error saying it must be set.
    pub fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.optional(var)
            .ok_or_else(|| ConfigError::new(var, "must be set to a non-empty value"))
    }

    /// `var` parsed as `T`, or `default` when unset.
    pub fn parse_or<T>(&self, var: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(var) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(var, format!("cannot parse {raw:?}: {e}"))),
        }
    }

    /// `var` parsed as `T` (or `default` when unset), refused outside
    /// `[min, max]`.
    pub fn parse_in_range<T>(
        &self,
        var: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + std::fmt::Display,
        T::Err: std::fmt::Display,
    {
        let value = self.parse_or(var, default)?;
        if value < min || value > max {
            return Err(ConfigError::new(
                var,
                format!("must be from {min} to {max}, got {value}"),
            ));
        }
        Ok(value)
    }
}

/// The settings both ingest functions (job and platform events) read the
/// same way: how long a company's subscriptions are reused, how their
/// messages are sent, and how many are built before a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FanoutSettings {
    /// `SUBSCRIPTION_CACHE_TTL_SECONDS` (default 10): how long a company's
    /// subscriptions are reused inside a warm instance.
    pub cache_ttl: std::time::Duration,
    /// `SEND_CONCURRENCY` (default 8): `SendMessageBatch` calls in flight.
    pub send_concurrency: usize,
    /// `SEND_ATTEMPTS` (default 4): tries per batch entry before its record
    /// is reported as failed.
    pub send_attempts: u32,
    /// `OUTBOX_MAX_MESSAGES` (default [`OUTBOX_WAVES`] rounds of
    /// `SEND_CONCURRENCY` full batches, 160): messages built before they
    /// are sent (the outbox's flush threshold).
    pub outbox_messages: usize,
    /// `OUTBOX_MAX_BYTES` (default [`OUTBOX_WAVES`] rounds of
    /// `SEND_CONCURRENCY` batches of the most bytes SQS takes, 4 MiB):
    /// bytes of message bodies built before they are sent.
    pub outbox_bytes: usize,
}

/// Rounds of `SEND_CONCURRENCY` concurrent `SendMessageBatch` calls one
/// outbox flush makes by default.
pub const OUTBOX_WAVES: usize = 2;

impl FanoutSettings {
    /// Reads the settings from `vars`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let cache_ttl = std::time::Duration::from_secs(vars.parse_in_range(
            "SUBSCRIPTION_CACHE_TTL_SECONDS",
            10u64,
            0,
            3600,
        )?);
        let send_concurrency = vars.parse_in_range("SEND_CONCURRENCY", 8usize, 1, 64)?;
        let wave = OUTBOX_WAVES * send_concurrency;
        Ok(Self {
            cache_ttl,
            send_concurrency,
            send_attempts: vars.parse_in_range("SEND_ATTEMPTS", 4u32, 1, 10)?,
            outbox_messages: vars.parse_in_range(
                "OUTBOX_MAX_MESSAGES",
                wave * MAX_BATCH_ENTRIES,
                1,
                100_000,
            )?,
            outbox_bytes: vars.parse_in_range(
                "OUTBOX_MAX_BYTES",
                wave * MAX_BATCH_BYTES,
                1024,
                1 << 28,
            )?,
        })
    }
}

/// The non-empty value of `var` in the process environment, if set.
pub fn optional(var: &'static str) -> Option<String> {
    Vars::Process.optional(var)
}

/// The non-empty value of `var` in the process environment, or an error.
pub fn required(var: &'static str) -> Result<String, ConfigError> {
    Vars::Process.required(var)
}

/// `var` of the process environment parsed as `T`, or `default` when unset.
pub fn parse_or<T>(var: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    Vars::Process.parse_or(var, default)
}

/// `var` of the process environment parsed as `T` (or `default` when
/// unset), refused outside `[min, max]`.
pub fn parse_in_range<T>(var: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
where
    T: FromStr + PartialOrd + std::fmt::Display,
    T::Err: std::fmt::Display,
{
    Vars::Process.parse_in_range(var, default, min, max)
}

/// The AWS SDK configuration from the standard provider chain (region,
/// credentials, and `AWS_ENDPOINT_URL` for the local emulator), with
/// [`sdk_http_client`]. Load it once per process and build every client
/// from it.
pub async fn aws_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(sdk_http_client())
        .load()
        .await
}

/// The HTTP client of every AWS SDK config: the SDK's default client
/// (hyper, rustls, the system's root certificates, proxies from the
/// environment) with rustls on ring instead of aws-lc, so a binary carries
/// one crypto library (ring: signing, reqwest). The workspace builds the SDK
/// without its `default-https-client` feature, so a config loaded without
/// this client fails every request ("No HTTP client was available").
pub fn sdk_http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig};
    // What `aws_smithy_runtime`'s default HTTPS client does, with ring.
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut connector =
            ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::Ring));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_or_reports_the_variable_and_value() {
        // SAFETY: test-only variable name unique to this test.
        unsafe { std::env::set_var("SHARED_CONFIG_TEST_NUM", "ten") };
        let err = parse_or::<u32>("SHARED_CONFIG_TEST_NUM", 3).unwrap_err();
        assert_eq!(err.var, "SHARED_CONFIG_TEST_NUM");
        assert!(err.to_string().contains("\"ten\""), "{err}");
        assert_eq!(parse_or::<u32>("SHARED_CONFIG_TEST_UNSET", 3).unwrap(), 3);
    }

    #[test]
    fn a_map_of_variables_is_read_alone() {
        let vars = Vars::from_map([("SHARED_CONFIG_MAP_N".to_owned(), "7".to_owned())].into());
        assert_eq!(
            vars.parse_in_range("SHARED_CONFIG_MAP_N", 1u32, 1, 9)
                .unwrap(),
            7
        );
        // SAFETY: test-only variable name unique to this test.
        unsafe { std::env::set_var("SHARED_CONFIG_MAP_OTHER", "x") };
        assert_eq!(vars.optional("SHARED_CONFIG_MAP_OTHER"), None);
        assert!(
            vars.parse_in_range("SHARED_CONFIG_MAP_N", 1u32, 1, 5)
                .is_err()
        );
    }

    #[test]
    fn required_rejects_blank_values() {
        // SAFETY: test-only variable name unique to this test.
        unsafe { std::env::set_var("SHARED_CONFIG_TEST_BLANK", "  ") };
        let err = required("SHARED_CONFIG_TEST_BLANK").unwrap_err();
        assert!(err.to_string().contains("must be set"));
    }

    fn fanout(pairs: &[(&str, &str)]) -> Result<FanoutSettings, ConfigError> {
        let map = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        FanoutSettings::from_vars(&Vars::from_map(map))
    }

    #[test]
    fn the_outbox_thresholds_default_to_two_rounds_of_full_batches() {
        let default = fanout(&[]).unwrap();
        assert_eq!(
            (default.outbox_messages, default.outbox_bytes),
            (160, 4 * 1024 * 1024)
        );
        let fewer = fanout(&[("SEND_CONCURRENCY", "2")]).unwrap();
        assert_eq!(
            (fewer.outbox_messages, fewer.outbox_bytes),
            (40, 1024 * 1024)
        );
        let set = fanout(&[("OUTBOX_MAX_MESSAGES", "25"), ("OUTBOX_MAX_BYTES", "65536")]).unwrap();
        assert_eq!((set.outbox_messages, set.outbox_bytes), (25, 65536));
    }

    #[test]
    fn bad_outbox_thresholds_name_their_variable() {
        for (var, value) in [
            ("OUTBOX_MAX_MESSAGES", "0"),
            ("OUTBOX_MAX_MESSAGES", "many"),
            ("OUTBOX_MAX_BYTES", "100"),
            ("OUTBOX_MAX_BYTES", "4MB"),
        ] {
            let err = fanout(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.to_string().contains(var), "{err}");
        }
    }
}
