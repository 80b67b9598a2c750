//! The error of every table store.

/// A store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB refused or could not be reached.
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    Dynamo {
        /// The API call, e.g. `PutItem`.
        operation: &'static str,
        /// Table name.
        table: String,
        /// The SDK's error with its context.
        message: String,
    },
    /// An item could not be mapped to or from a subscription.
    #[error("item {key:?} of table {table} could not be mapped: {source}")]
    Mapping {
        /// Sort key of the item.
        key: String,
        /// Table name.
        table: String,
        /// The mapping error.
        source: serde_dynamo::Error,
    },
    /// A conditional write lost against a concurrent write.
    #[error("subscription {0} was changed concurrently")]
    VersionConflict(String),
    /// A create would take the company past its subscription quota.
    #[error(
        "company {company_id} already has {quota} subscriptions that are not archived, its quota"
    )]
    QuotaExceeded {
        /// The company.
        company_id: String,
        /// The quota it is at.
        quota: u64,
    },
    /// A write would have stored a signing secret in the clear.
    #[error("subscription {0} holds a signing secret in the clear: seal it before writing")]
    PlaintextSecret(String),
}
