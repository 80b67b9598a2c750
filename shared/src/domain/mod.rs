//! The domain: subscriptions, their filters, custom headers and endpoint health, the job
//! catalogue, the events built from job transitions and the delivery
//! message that carries one event to one subscription.

pub mod cloud_event;
pub mod filters;
pub mod headers;
pub mod health;
pub mod job_event;
pub mod jobs;
pub mod message;
pub mod subscription;
