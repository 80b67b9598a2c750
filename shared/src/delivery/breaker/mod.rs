//! The circuit breaker: its policy (when an endpoint counts as down, is
//! probed and disabled) and the decision of what each outcome does to an
//! endpoint's health, which the delivery function and the prober hand to
//! the subscription store to write.

pub mod decision;
pub mod policy;

pub use crate::domain::health::{Condition, Write};
pub use decision::{
    DISABLED_REASON, Decision, Fate, Notice, Outcome, ParkedCount, Subject, decide, draw_jitter,
};
pub use policy::*;
