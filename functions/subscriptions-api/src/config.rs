//! Configuration of the subscriptions API, read once at cold start.

use shared::config::{self, ConfigError};
use shared::cursor::{CursorCodec, MIN_KEY_LEN};

/// Settings of the subscriptions API.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// `SUBSCRIPTIONS_TABLE`: the DynamoDB subscriptions table.
    pub table: String,
    /// `COMPANY_CLAIM`: the authorizer claim that holds the company id
    /// (default `company_id`).
    pub company_claim: String,
    /// `CURSOR_SIGNING_KEY`: at least 32 bytes, signs pagination cursors.
    pub cursors: CursorCodec,
}

impl ApiConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        let table = config::required("SUBSCRIPTIONS_TABLE")?;
        let company_claim =
            config::optional("COMPANY_CLAIM").unwrap_or_else(|| "company_id".to_owned());
        let key = config::required("CURSOR_SIGNING_KEY")?;
        let cursors = CursorCodec::new(key.as_bytes()).ok_or_else(|| {
            ConfigError::new(
                "CURSOR_SIGNING_KEY",
                format!("must be at least {MIN_KEY_LEN} bytes long"),
            )
        })?;
        Ok(Self {
            table,
            company_claim,
            cursors,
        })
    }
}
