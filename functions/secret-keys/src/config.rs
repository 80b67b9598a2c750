//! Configuration of the key maintenance function, read once at cold start.

use shared::config::{ConfigError, Vars};
use shared::storage::keyring::KeyringConfig;

/// Settings of the key maintenance function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysConfig {
    /// `SUBSCRIPTIONS_TABLE`: the items whose secrets are re-sealed.
    pub subscriptions_table: String,
    /// `KEYRING_TABLE`, `SECRETS_KMS_KEY_ID`: the keyring.
    pub keyring: KeyringConfig,
}

impl KeysConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::Process)
    }

    /// Reads the configuration from `vars`.
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        Ok(Self {
            subscriptions_table: vars.required("SUBSCRIPTIONS_TABLE")?,
            keyring: KeyringConfig::from_vars(vars)?,
        })
    }
}
