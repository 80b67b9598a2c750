//! Body formats: what a subscription's deliveries look like on the wire.
//!
//! Every event is built once, as the standard payload (the message's
//! `payload`, §4.3 of the design); a subscription's format turns that
//! payload into the body actually POSTed, at delivery, just before it is
//! signed (signatures always cover the body sent):
//! - [`FormatKind::Standard`]: the payload itself, byte for byte;
//! - [`FormatKind::Slack`]: a Block Kit message ([`slack`]);
//! - [`FormatKind::Pagerduty`]: an Events API v2 event ([`pagerduty`]):
//!   a failed job triggers an incident, a later `completed` of the same
//!   job resolves it;
//! - [`FormatKind::Teams`]: an Adaptive Card in the envelope Teams
//!   workflows accept ([`teams`]);
//! - [`FormatKind::Template`]: the customer's own template ([`template`]),
//!   sandboxed, with fuel and output limits, rendering JSON.
//!
//! Rendering is pure: no I/O, the payload and the opened format in, the
//! body or a [`RenderError`] out. The subscription stores a
//! [`StoredFormat`] (the PagerDuty routing key sealed like the signing
//! secret); delivery opens it once per cache fill into a [`Format`].

pub mod event;
pub mod pagerduty;
pub mod setting;
pub mod slack;
pub mod teams;
pub mod template;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::domain::jobs::JobState;
use crate::signing::sealed::SealedSecret;

pub use event::EventView;
pub use pagerduty::Severity;
pub use setting::{FormatInput, FormatSetting, FormatView, OpenFormatError, receivable_types};

/// The body formats a subscription can choose, by wire name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatKind {
    /// The standard payload, unchanged (the default).
    Standard,
    /// A Slack Block Kit message (incoming webhooks, workflow webhooks).
    Slack,
    /// A PagerDuty Events API v2 event.
    Pagerduty,
    /// A Microsoft Teams Adaptive Card (Workflows' "post to a channel when
    /// a webhook request is received").
    Teams,
    /// The subscription's own template.
    Template,
}

impl FormatKind {
    /// Every kind, in documentation order.
    pub const ALL: [FormatKind; 5] = [
        Self::Standard,
        Self::Slack,
        Self::Pagerduty,
        Self::Teams,
        Self::Template,
    ];

    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "standard",
            Self::Slack => "slack",
            Self::Pagerduty => "pagerduty",
            Self::Teams => "teams",
            Self::Template => "template",
        }
    }

    /// The kind named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The job states a `jobs` subscription of this format receives when
    /// its filters name none: PagerDuty gets only what opens and closes an
    /// incident; every other format, every state.
    pub fn default_states(self) -> Option<&'static [JobState]> {
        match self {
            Self::Pagerduty => Some(&[JobState::Failed, JobState::Completed]),
            _ => None,
        }
    }
}

/// A subscription's format as its item stores it (attribute `format`,
/// absent for `standard`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StoredFormat {
    /// The standard payload.
    #[default]
    Standard,
    /// Block Kit.
    Slack,
    /// Events API v2.
    Pagerduty {
        /// The integration's routing key, sealed for the subscription.
        routing_key: SealedSecret,
        /// The severity of every trigger, instead of the per-event-type
        /// default ([`pagerduty::default_severity`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        severity: Option<Severity>,
    },
    /// Adaptive Card.
    Teams,
    /// The customer's template (its source).
    Template {
        /// The template's source text.
        template: String,
    },
}

impl StoredFormat {
    /// Its kind.
    pub fn kind(&self) -> FormatKind {
        match self {
            Self::Standard => FormatKind::Standard,
            Self::Slack => FormatKind::Slack,
            Self::Pagerduty { .. } => FormatKind::Pagerduty,
            Self::Teams => FormatKind::Teams,
            Self::Template { .. } => FormatKind::Template,
        }
    }

    /// Whether it is the standard payload (what items without the
    /// attribute hold).
    pub fn is_standard(&self) -> bool {
        matches!(self, Self::Standard)
    }
}

/// A format opened and ready to render: the routing key in the clear,
/// the template compiled. Built once per subscription read.
#[derive(Clone)]
pub enum Format {
    /// The standard payload.
    Standard,
    /// Block Kit.
    Slack,
    /// Events API v2.
    Pagerduty(pagerduty::Options),
    /// Adaptive Card.
    Teams,
    /// A compiled template.
    Template(Arc<template::Template>),
}

impl std::fmt::Debug for Format {
    // Never the routing key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind().as_str())
    }
}

impl Format {
    /// Its kind.
    pub fn kind(&self) -> FormatKind {
        match self {
            Self::Standard => FormatKind::Standard,
            Self::Slack => FormatKind::Slack,
            Self::Pagerduty(_) => FormatKind::Pagerduty,
            Self::Teams => FormatKind::Teams,
            Self::Template(_) => FormatKind::Template,
        }
    }

    /// The body to POST for the standard `payload`: the payload itself for
    /// `standard`, else the rendered body (always a JSON document).
    pub fn render<'p>(&self, payload: &'p RawValue) -> Result<Body<'p>, RenderError> {
        let event = match self {
            Self::Standard => return Ok(Body::Payload(payload.get().as_bytes())),
            _ => EventView::parse(payload)?,
        };
        let rendered = match self {
            Self::Standard => unreachable!("returned above"),
            Self::Slack => serde_json::to_vec(&slack::message(&event)),
            Self::Teams => serde_json::to_vec(&teams::message(&event)),
            Self::Pagerduty(options) => serde_json::to_vec(&pagerduty::event(&event, options)),
            Self::Template(template) => return template.render(&event).map(Body::Rendered),
        };
        Ok(Body::Rendered(rendered.expect("JSON values serialise")))
    }
}

/// A body to POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'p> {
    /// The standard payload, as queued.
    Payload(&'p [u8]),
    /// A rendered JSON document.
    Rendered(Vec<u8>),
}

impl Body<'_> {
    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Payload(b) => b,
            Self::Rendered(b) => b,
        }
    }
}

/// Why a body could not be rendered: the attempt fails with
/// [`RenderError::class`] in the attempt log, and is retried on its
/// schedule (a template fixed meanwhile renders the retry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// The queued payload is not the JSON object it should be.
    #[error("the event payload is not a JSON object: {0}")]
    Payload(String),
    /// The template failed to render (syntax, undefined filter, a runtime
    /// error), with the engine's message.
    #[error("template error: {0}")]
    Template(String),
    /// The template used up its fuel (too many instructions).
    #[error("template ran out of fuel after {0} instructions")]
    OutOfFuel(u64),
    /// The rendered body is larger than the limit.
    #[error("rendered body is larger than {0} bytes")]
    TooLarge(usize),
    /// The rendered body is not a JSON document.
    #[error("rendered body is not JSON: {0}")]
    NotJson(String),
}

impl RenderError {
    /// The error class recorded in the attempt log.
    pub const fn class(&self) -> &'static str {
        match self {
            Self::Payload(_) => "render_payload",
            Self::Template(_) => "template_error",
            Self::OutOfFuel(_) => "template_fuel",
            Self::TooLarge(_) => "template_too_large",
            Self::NotJson(_) => "template_not_json",
        }
    }
}

#[cfg(test)]
mod tests;
