//! Configuration of the redrive function, read once at cold start.

use shared::config::{ConfigError, Vars};

/// Settings of the redrive function.
#[derive(Debug, Clone)]
pub struct RedriveConfig {
    /// `DEAD_LETTER_QUEUE_URL`: where dead-lettered deliveries are read from.
    pub dead_letter_queue_url: String,
    /// `DELIVERY_QUEUE_URL`: where redriven deliveries are sent.
    pub delivery_queue_url: String,
}

impl RedriveConfig {
    /// Reads the configuration from the environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&Vars::Process)
    }

    /// Reads the configuration from `vars` (the local stack passes the
    /// environment CloudFormation resolved for the function).
    pub fn from_vars(vars: &Vars) -> Result<Self, ConfigError> {
        let config = Self {
            dead_letter_queue_url: vars.required("DEAD_LETTER_QUEUE_URL")?,
            delivery_queue_url: vars.required("DELIVERY_QUEUE_URL")?,
        };
        config.validate()?;
        Ok(config)
    }

    /// Rejects a configuration that would move messages in a circle.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dead_letter_queue_url.trim() == self.delivery_queue_url.trim() {
            return Err(ConfigError::new(
                "DEAD_LETTER_QUEUE_URL",
                "must differ from DELIVERY_QUEUE_URL",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_queue_on_both_sides_is_rejected() {
        let config = RedriveConfig {
            dead_letter_queue_url: "http://sqs/q".into(),
            delivery_queue_url: "http://sqs/q".into(),
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.var, "DEAD_LETTER_QUEUE_URL");
        assert!(err.to_string().contains("DELIVERY_QUEUE_URL"), "{err}");
    }
}
