//! The domain: subscriptions, their filters and endpoint health, the job
//! catalogue and the events built from job transitions.

pub mod filters;
pub mod health;
pub mod job_event;
pub mod jobs;
pub mod subscription;
