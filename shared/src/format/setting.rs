//! A format as the API takes it (`format` of `POST /webhooks` and `PATCH
//! /webhooks/{id}`), validated; its sealing into the item; and the event
//! types a subscription can receive, which a template must render.

use serde::{Deserialize, Serialize};

use super::template::Template;
use super::{EventView, Format, FormatKind, RenderError, Severity, StoredFormat, pagerduty};
use crate::catalogue::{self, EventType};
use crate::domain::filters::{Filters, SubscriptionKind, is_platform_type};
use crate::domain::headers::MASK;
use crate::domain::jobs::JobState;
use crate::signing::sealed::{
    EmptyKeyring, Keyring, OpenError, ResealError, SealPurpose, SecretOwner,
};
use crate::signing::secret::WebhookSecret;
use crate::validation::ValidationError;

/// Longest template accepted, in characters (its bytes are checked again
/// when it is compiled: [`super::template::MAX_SOURCE_BYTES`]).
pub const MAX_SOURCE_CHARS: usize = 16 * 1024;

/// Longest routing key accepted (PagerDuty's are 32 characters).
pub const MAX_ROUTING_KEY_LEN: usize = 128;

/// The `format` object of a request.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatInput {
    /// `standard`, `slack`, `pagerduty`, `teams` or `template`.
    #[serde(rename = "type")]
    pub kind: String,
    /// PagerDuty: the integration's routing key (required on create; on
    /// PATCH of a PagerDuty subscription, absent keeps the stored one;
    /// never `null`).
    #[serde(default, deserialize_with = "string")]
    pub routing_key: Option<String>,
    /// PagerDuty: the severity of every trigger, instead of the default.
    #[serde(default)]
    pub severity: Option<String>,
    /// Template: its source (never `null`).
    #[serde(default, deserialize_with = "string")]
    pub template: Option<String>,
}

impl std::fmt::Debug for FormatInput {
    // Never the routing key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FormatInput")
            .field("kind", &self.kind)
            .field("routing_key", &self.routing_key.as_ref().map(|_| MASK))
            .field("severity", &self.severity)
            .field("template", &self.template)
            .finish()
    }
}

/// A field that, when present, is a string (`null` is refused).
fn string<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    String::deserialize(de).map(Some)
}

/// A validated format, its routing key in the clear.
pub enum FormatSetting {
    /// Standard payload.
    Standard,
    /// Block Kit.
    Slack,
    /// Events API v2; `routing_key` `None` keeps the stored key.
    Pagerduty {
        /// The new routing key, if one was given.
        routing_key: Option<WebhookSecret>,
        /// The severity override.
        severity: Option<Severity>,
    },
    /// Adaptive Card.
    Teams,
    /// A template, compiled.
    Template(Box<Template>),
}

impl std::fmt::Debug for FormatSetting {
    // Never the routing key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind().as_str())
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::field("invalid_format", format!("format.{field}"), message)
}

impl FormatInput {
    /// Checks the fields of the named kind (and that no other kind's
    /// fields are given).
    pub fn validate(self) -> Result<FormatSetting, ValidationError> {
        let allowed = FormatKind::ALL.map(FormatKind::as_str).join(", ");
        let kind = FormatKind::parse(&self.kind).ok_or_else(|| {
            invalid(
                "type",
                format!("unknown format {:?}; allowed: {allowed}", self.kind),
            )
        })?;
        let only = |field: &str, given: bool, of: FormatKind| {
            if given && kind != of {
                Err(invalid(
                    field,
                    format!("{field} is a field of the {} format only", of.as_str()),
                ))
            } else {
                Ok(())
            }
        };
        only(
            "routing_key",
            self.routing_key.is_some(),
            FormatKind::Pagerduty,
        )?;
        only("severity", self.severity.is_some(), FormatKind::Pagerduty)?;
        only("template", self.template.is_some(), FormatKind::Template)?;
        Ok(match kind {
            FormatKind::Standard => FormatSetting::Standard,
            FormatKind::Slack => FormatSetting::Slack,
            FormatKind::Teams => FormatSetting::Teams,
            FormatKind::Pagerduty => FormatSetting::Pagerduty {
                routing_key: self.routing_key.map(check_routing_key).transpose()?,
                severity: self
                    .severity
                    .map(|s| {
                        Severity::parse(&s).ok_or_else(|| {
                            invalid(
                                "severity",
                                format!(
                                    "unknown severity {s:?}; allowed: critical, error, warning, info"
                                ),
                            )
                        })
                    })
                    .transpose()?,
            },
            FormatKind::Template => {
                let source = self
                    .template
                    .ok_or_else(|| invalid("template", "the template format needs a template"))?;
                if source.is_empty() {
                    return Err(invalid("template", "a template can't be empty"));
                }
                if source.chars().count() > MAX_SOURCE_CHARS {
                    return Err(invalid(
                        "template",
                        format!("a template is limited to {MAX_SOURCE_CHARS} characters"),
                    ));
                }
                FormatSetting::Template(Box::new(Template::compile(&source).map_err(|e| {
                    ValidationError::field("template_invalid", "format.template", e.to_string())
                })?))
            }
        })
    }
}

fn check_routing_key(key: String) -> Result<WebhookSecret, ValidationError> {
    let len = key.chars().count();
    if len == 0 || len > MAX_ROUTING_KEY_LEN || !key.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid(
            "routing_key",
            format!(
                "a routing key is 1 to {MAX_ROUTING_KEY_LEN} printable ASCII characters \
                 (PagerDuty's integration key)"
            ),
        ));
    }
    Ok(WebhookSecret::from_string(key))
}

impl FormatSetting {
    /// Its kind.
    pub fn kind(&self) -> FormatKind {
        match self {
            Self::Standard => FormatKind::Standard,
            Self::Slack => FormatKind::Slack,
            Self::Pagerduty { .. } => FormatKind::Pagerduty,
            Self::Teams => FormatKind::Teams,
            Self::Template(_) => FormatKind::Template,
        }
    }

    /// The format to preview with: a routing key shows as [`MASK`].
    pub fn preview(self) -> Format {
        match self {
            Self::Standard => Format::Standard,
            Self::Slack => Format::Slack,
            Self::Teams => Format::Teams,
            Self::Pagerduty { severity, .. } => Format::Pagerduty(pagerduty::Options {
                routing_key: MASK.to_owned(),
                severity,
            }),
            Self::Template(t) => Format::Template(std::sync::Arc::from(t)),
        }
    }

    /// Refuses a template that fails on the catalogue's example of an
    /// event type a subscription with `filters` can receive, naming it.
    pub fn check_examples(&self, filters: &Filters) -> Result<(), ValidationError> {
        let Self::Template(template) = self else {
            return Ok(());
        };
        for event_type in receivable_types(filters, self.kind()) {
            let rendered =
                EventView::parse(&event_type.example).and_then(|event| template.render(&event));
            if let Err(e) = rendered {
                return Err(ValidationError::field(
                    "template_fails",
                    "format.template",
                    format!(
                        "the template fails on the catalogue's example of {}: {e}",
                        event_type.name
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The format sealed for `owner`, keeping `current`'s routing key
    /// when a PagerDuty setting gives none; `None` when there is no key to
    /// keep (a new PagerDuty format needs one).
    pub fn seal(
        &self,
        current: &StoredFormat,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<Option<StoredFormat>, EmptyKeyring> {
        Ok(Some(match self {
            Self::Standard => StoredFormat::Standard,
            Self::Slack => StoredFormat::Slack,
            Self::Teams => StoredFormat::Teams,
            Self::Template(t) => StoredFormat::Template {
                template: t.source().to_owned(),
            },
            Self::Pagerduty {
                routing_key,
                severity,
            } => {
                let routing_key = match (routing_key, current) {
                    (Some(key), _) => keyring.seal_text(SealPurpose::RoutingKey, key, owner)?,
                    (None, StoredFormat::Pagerduty { routing_key, .. }) => routing_key.clone(),
                    (None, _) => return Ok(None),
                };
                StoredFormat::Pagerduty {
                    routing_key,
                    severity: *severity,
                }
            }
        }))
    }
}

/// Why a stored format could not be opened for a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenFormatError {
    /// The routing key does not decrypt.
    #[error("routing key: {0}")]
    Sealed(#[from] OpenError),
    /// The stored template does not compile.
    #[error(transparent)]
    Template(#[from] RenderError),
}

impl StoredFormat {
    /// Opened for rendering: the routing key decrypted, the template
    /// compiled.
    pub fn open(
        &self,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<Format, OpenFormatError> {
        Ok(match self {
            Self::Standard => Format::Standard,
            Self::Slack => Format::Slack,
            Self::Teams => Format::Teams,
            Self::Pagerduty {
                routing_key,
                severity,
            } => Format::Pagerduty(pagerduty::Options {
                routing_key: keyring
                    .open_text(SealPurpose::RoutingKey, routing_key, owner)?
                    .expose()
                    .to_owned(),
                severity: *severity,
            }),
            Self::Template { template } => {
                Format::Template(std::sync::Arc::new(Template::compile(template)?))
            }
        })
    }

    /// Re-seals the routing key when it is not sealed with the keyring's
    /// newest version. Returns whether it changed.
    pub fn reseal(
        &mut self,
        keyring: &Keyring,
        owner: SecretOwner<'_>,
    ) -> Result<bool, ResealError> {
        let Self::Pagerduty { routing_key, .. } = self else {
            return Ok(false);
        };
        let newest = keyring.newest().ok_or(ResealError::Empty(EmptyKeyring))?;
        if routing_key.key_version == newest {
            return Ok(false);
        }
        let text = keyring.open_text(SealPurpose::RoutingKey, routing_key, owner)?;
        *routing_key = keyring.seal_text(SealPurpose::RoutingKey, &text, owner)?;
        Ok(true)
    }

    /// [`FormatSetting::check_examples`] for the stored template (after a
    /// change of filters).
    pub fn check_examples(&self, filters: &Filters) -> Result<(), ValidationError> {
        let Self::Template { template } = self else {
            return Ok(());
        };
        let compiled = Template::compile(template).map_err(|e| {
            ValidationError::field("template_invalid", "format.template", e.to_string())
        })?;
        FormatSetting::Template(Box::new(compiled)).check_examples(filters)
    }

    /// The key version its routing key is sealed with, if it has one.
    pub fn key_version(&self) -> Option<u32> {
        match self {
            Self::Pagerduty { routing_key, .. } => Some(routing_key.key_version),
            _ => None,
        }
    }

    /// What reads show: the routing key masked.
    pub fn view(&self) -> FormatView<'_> {
        let (routing_key, severity, template) = match self {
            Self::Pagerduty { severity, .. } => (Some(MASK), *severity, None),
            Self::Template { template } => (None, None, Some(template.as_str())),
            _ => (None, None, None),
        };
        FormatView {
            kind: self.kind(),
            routing_key,
            severity,
            template,
        }
    }
}

/// A format as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FormatView<'a> {
    /// Its kind.
    #[serde(rename = "type")]
    pub kind: FormatKind,
    /// PagerDuty: the routing key, masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<&'static str>,
    /// PagerDuty: the severity override.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Template: its source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<&'a str>,
}

/// The catalogue's event types a subscription with `filters` and a
/// format of `kind` can receive: for `jobs`, `job.<state>` of the states
/// its filters name (else the format's default states, else all six); for
/// `events`, the platform types its patterns name; and `webhook.test`
/// (`POST /webhooks/{id}/test`) for both.
pub fn receivable_types(filters: &Filters, kind: FormatKind) -> Vec<&'static EventType> {
    let mut types: Vec<&'static EventType> = match filters.kind() {
        SubscriptionKind::Jobs => {
            let states: &[JobState] = match (&filters.states, kind.default_states()) {
                (Some(states), _) => states,
                (None, Some(defaults)) => defaults,
                (None, None) => &JobState::ALL,
            };
            states
                .iter()
                .filter_map(|s| catalogue::find(&format!("job.{}", s.as_str())))
                .collect()
        }
        SubscriptionKind::Events => {
            let patterns = filters.event_types.as_deref().unwrap_or_default();
            let mut found: Vec<&'static EventType> = patterns
                .iter()
                .flat_map(|p| catalogue::expand(p))
                .filter(|e| is_platform_type(&e.name))
                .collect();
            found.sort_by(|a, b| a.name.cmp(&b.name));
            found.dedup_by(|a, b| a.name == b.name);
            found
        }
    };
    types.extend(catalogue::find("webhook.test"));
    types
}
