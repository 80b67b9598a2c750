//! The DynamoDB tables: subscriptions, the attempt log, parked events and
//! the keyring of the data keys that seal signing secrets.

pub mod deliveries;
pub mod error;
pub mod keyring;
pub mod parked;
pub mod subscriptions;
pub mod table;

pub use error::StoreError;
