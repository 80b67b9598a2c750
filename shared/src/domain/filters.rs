//! Subscription filters: which events a subscription receives.
//!
//! A subscription is of one of two kinds ([`SubscriptionKind`]): `jobs`
//! receives job state changes, filtered on `job_ids`, `job_types` and
//! `states`; `events` receives the platform's other events, chosen by
//! `event_types` (exact names or prefix wildcards such as `engine.*`) and
//! filtered on `subject_types`, `subject_ids`, `verbs` and `app_ids`. An
//! events subscription always has `event_types`, a jobs subscription never
//! does, so the kind is read off the filters.
//!
//! Each filter is either absent, matching everything, or a non-empty set.
//! Values are ORed within a filter and the filters are ANDed. An event
//! without the attribute a filter names does not pass it.

use serde::{Deserialize, Serialize};

use crate::domain::jobs::{self, JobState};
use crate::domain::message::EventContext;
use crate::validation::ValidationError;

/// Most job ids one subscription may list, unless configured otherwise
/// (`MAX_JOB_IDS_PER_FILTER` of the API).
pub const MAX_JOB_IDS: usize = 1000;
/// Longest accepted job id, in characters.
pub const MAX_JOB_ID_LEN: usize = 256;

/// Filters as sent by API clients, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FiltersInput {
    /// Only these job ids.
    pub job_ids: Option<Vec<String>>,
    /// Only these catalogue job types.
    pub job_types: Option<Vec<String>>,
    /// Only transitions into these states.
    pub states: Option<Vec<String>>,
}

/// What a subscription receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionKind {
    /// Job state changes (the default: every subscription made before
    /// other sources existed is one).
    #[default]
    Jobs,
    /// The platform's other events: app, subject/verb and engine events.
    Events,
}

impl SubscriptionKind {
    /// The wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Jobs => "jobs",
            Self::Events => "events",
        }
    }
}

/// Validated filters, stored with the subscription.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filters {
    /// Only these job ids; `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_ids: Option<Vec<String>>,
    /// Only these job types; `None` matches any, including types unknown to
    /// the catalogue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_types: Option<Vec<String>>,
    /// Only transitions into these states; `None` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<JobState>>,
    /// The platform event types of an `events` subscription: catalogue
    /// names, or prefix wildcards (`engine.*`, `*`). Present exactly when
    /// the subscription is of kind `events`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_types: Option<Vec<String>>,
    /// Only events about these subject types (`work`, `segment`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_types: Option<Vec<String>>,
    /// Only events about these subjects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_ids: Option<Vec<String>>,
    /// Only events with these verbs (`created`, `failed`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbs: Option<Vec<String>>,
    /// Only events of these applications: an app webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_ids: Option<Vec<String>>,
}

impl FiltersInput {
    /// Checks every value and returns the filters with duplicates removed
    /// (first occurrence kept), with the default [`MAX_JOB_IDS`].
    pub fn validate(self) -> Result<Filters, ValidationError> {
        self.validate_within(MAX_JOB_IDS)
    }

    /// [`Self::validate`] with at most `max_job_ids` job ids.
    pub fn validate_within(self, max_job_ids: usize) -> Result<Filters, ValidationError> {
        let job_ids = match self.job_ids {
            None => None,
            Some(ids) => {
                non_empty(&ids, "filters.job_ids")?;
                if ids.len() > max_job_ids {
                    return Err(ValidationError::field(
                        "too_many_job_ids",
                        "filters.job_ids",
                        format!(
                            "at most {max_job_ids} job ids per subscription (the quota \
                             MAX_JOB_IDS_PER_FILTER), got {}",
                            ids.len()
                        ),
                    ));
                }
                for (i, id) in ids.iter().enumerate() {
                    let len = id.chars().count();
                    if len == 0 || len > MAX_JOB_ID_LEN || id.chars().any(char::is_control) {
                        return Err(ValidationError::field(
                            "invalid_job_id",
                            format!("filters.job_ids[{i}]"),
                            format!("job ids must be 1 to {MAX_JOB_ID_LEN} printable characters"),
                        ));
                    }
                }
                Some(dedup(ids))
            }
        };
        let job_types = match self.job_types {
            None => None,
            Some(types) => {
                non_empty(&types, "filters.job_types")?;
                if let Some((i, bad)) = types
                    .iter()
                    .enumerate()
                    .find(|(_, t)| jobs::job_type(t).is_none())
                {
                    return Err(ValidationError::field(
                        "unknown_job_type",
                        format!("filters.job_types[{i}]"),
                        format!(
                            "unknown job type {bad:?}; allowed: {}",
                            jobs::job_type_names()
                        ),
                    ));
                }
                Some(dedup(types))
            }
        };
        let states = match self.states {
            None => None,
            Some(names) => {
                non_empty(&names, "filters.states")?;
                let mut states = Vec::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    let state = JobState::parse(name).ok_or_else(|| {
                        ValidationError::field(
                            "unknown_state",
                            format!("filters.states[{i}]"),
                            format!("unknown job state {name:?}; allowed: {}", JobState::names()),
                        )
                    })?;
                    if !states.contains(&state) {
                        states.push(state);
                    }
                }
                Some(states)
            }
        };
        Ok(Filters {
            job_ids,
            job_types,
            states,
            ..Filters::default()
        })
    }
}

impl Filters {
    /// The kind of subscription these filters belong to.
    pub fn kind(&self) -> SubscriptionKind {
        if self.event_types.is_some() {
            SubscriptionKind::Events
        } else {
            SubscriptionKind::Jobs
        }
    }

    /// Whether a job of `job_type` with id `job_id` entering `state` passes
    /// these filters (never for an `events` subscription).
    pub fn matches(&self, job_id: &str, job_type: &str, state: JobState) -> bool {
        self.kind() == SubscriptionKind::Jobs
            && self
                .job_ids
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|id| id == job_id))
            && self
                .job_types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t == job_type))
            && self.states.as_ref().is_none_or(|s| s.contains(&state))
    }

    /// Whether a platform event of `event_type` with `context` passes these
    /// filters (never for a `jobs` subscription).
    pub fn matches_event(&self, event_type: &str, context: &EventContext<'_>) -> bool {
        let Some(patterns) = &self.event_types else {
            return false;
        };
        patterns.iter().any(|p| type_matches(p, event_type))
            && passes(&self.subject_types, context.subject_type)
            && passes(&self.subject_ids, context.subject_id)
            && passes(&self.verbs, context.verb)
            && passes(&self.app_ids, context.app_id)
    }
}

/// Whether `event_type` is `pattern`, or starts with its prefix when it is
/// a wildcard (`engine.*` matches `engine.slow_query_event`, `*` matches
/// every type).
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => {
            event_type.starts_with(prefix) && (prefix.is_empty() || prefix.ends_with('.'))
        }
        None => pattern == event_type,
    }
}

/// An absent filter passes everything; a present one only events whose
/// attribute is one of its values.
fn passes(filter: &Option<Vec<String>>, value: Option<&str>) -> bool {
    filter
        .as_ref()
        .is_none_or(|allowed| value.is_some_and(|v| allowed.iter().any(|a| a == v)))
}

fn non_empty<T>(values: &[T], field: &'static str) -> Result<(), ValidationError> {
    if values.is_empty() {
        return Err(ValidationError::field(
            "empty_filter",
            field,
            format!("{field} must not be empty; omit it to match everything"),
        ));
    }
    Ok(())
}

fn dedup(values: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> FiltersInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn empty_lists_are_rejected_per_kind() {
        for kind in ["job_ids", "job_types", "states"] {
            let err = input(serde_json::json!({ kind: [] }))
                .validate()
                .unwrap_err();
            assert_eq!(err.code, "empty_filter");
            assert_eq!(
                err.field.as_deref(),
                Some(format!("filters.{kind}").as_str())
            );
        }
    }

    #[test]
    fn unknown_job_type_names_the_value_and_the_allowed_ones() {
        let err = input(serde_json::json!({"job_types": ["forecast", "sql"]}))
            .validate()
            .unwrap_err();
        assert_eq!(err.code, "unknown_job_type");
        assert_eq!(err.field.as_deref(), Some("filters.job_types[1]"));
        assert!(err.message.contains("\"sql\""));
        assert!(err.message.contains("materialize-view"));
        assert!(err.message.contains("models_deliver_model"));
    }

    #[test]
    fn unknown_state_names_the_value_and_the_allowed_ones() {
        let err = input(serde_json::json!({"states": ["DONE"]}))
            .validate()
            .unwrap_err();
        assert_eq!(err.code, "unknown_state");
        assert!(err.message.contains("\"DONE\""));
        assert!(err.message.contains("pending_cancellation"));
    }

    #[test]
    fn job_id_limits() {
        let ids: Vec<String> = (0..=MAX_JOB_IDS).map(|i| format!("job-{i}")).collect();
        let err = input(serde_json::json!({ "job_ids": ids }))
            .validate()
            .unwrap_err();
        assert_eq!(err.code, "too_many_job_ids");
        let ids: Vec<String> = (0..MAX_JOB_IDS).map(|i| format!("job-{i}")).collect();
        assert!(
            input(serde_json::json!({ "job_ids": ids }))
                .validate()
                .is_ok()
        );
        let err = input(serde_json::json!({"job_ids": ["ok", ""]}))
            .validate()
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("filters.job_ids[1]"));
    }

    #[test]
    fn duplicates_are_removed_keeping_order() {
        let f = input(serde_json::json!({
            "job_ids": ["b", "a", "b"],
            "states": ["failed", "completed", "failed"]
        }))
        .validate()
        .unwrap();
        assert_eq!(f.job_ids.unwrap(), ["b", "a"]);
        assert_eq!(f.states.unwrap(), [JobState::Failed, JobState::Completed]);
    }

    #[test]
    fn matching_ors_within_and_ands_across_kinds() {
        let any = Filters::default();
        assert!(any.matches("j1", "not-in-catalogue", JobState::Running));

        let f = Filters {
            job_ids: None,
            job_types: Some(vec!["forecast".into(), "costs".into()]),
            states: Some(vec![JobState::Completed, JobState::Failed]),
            ..Filters::default()
        };
        assert!(f.matches("j1", "costs", JobState::Failed));
        assert!(f.matches("j2", "forecast", JobState::Completed));
        assert!(!f.matches("j1", "costs", JobState::Running));
        assert!(!f.matches("j1", "materialize-view", JobState::Completed));

        let by_id = Filters {
            job_ids: Some(vec!["j1".into()]),
            ..Filters::default()
        };
        assert!(by_id.matches("j1", "x", JobState::Pending));
        assert!(!by_id.matches("j2", "x", JobState::Pending));
    }

    fn strings(values: &[&str]) -> Option<Vec<String>> {
        Some(values.iter().map(|v| (*v).to_owned()).collect())
    }

    #[test]
    fn wildcards_match_by_prefix_at_a_dot() {
        assert!(type_matches("engine.*", "engine.slow_query_event"));
        assert!(type_matches("*", "app.installed"));
        assert!(type_matches("app.installed", "app.installed"));
        assert!(!type_matches("app.installed", "app.installed2"));
        assert!(!type_matches("engine.*", "enginex.slow"));
        assert!(
            !type_matches("eng*", "engine.slow_query_event"),
            "only at a dot"
        );
    }

    #[test]
    fn job_and_event_subscriptions_never_see_each_others_events() {
        let jobs = Filters::default();
        let events = Filters {
            event_types: strings(&["*"]),
            ..Filters::default()
        };
        assert_eq!(jobs.kind(), SubscriptionKind::Jobs);
        assert_eq!(events.kind(), SubscriptionKind::Events);
        assert!(jobs.matches("j1", "forecast", JobState::Completed));
        assert!(!events.matches("j1", "forecast", JobState::Completed));
        let ctx = EventContext::default();
        assert!(events.matches_event("engine.slow_query_event", &ctx));
        assert!(!jobs.matches_event("engine.slow_query_event", &ctx));
    }

    #[test]
    fn event_filters_and_across_attributes_and_need_the_attribute() {
        let f = Filters {
            event_types: strings(&["subject.*", "app.installed"]),
            subject_types: strings(&["work", "segment"]),
            verbs: strings(&["failed"]),
            ..Filters::default()
        };
        let work_failed = EventContext {
            subject_type: Some("work"),
            subject_id: Some("w1"),
            verb: Some("failed"),
            ..EventContext::default()
        };
        assert!(f.matches_event("subject.failed", &work_failed));
        assert!(!f.matches_event("engine.slow_query_event", &work_failed));
        let user = EventContext {
            subject_type: Some("user"),
            ..work_failed
        };
        assert!(!f.matches_event("subject.failed", &user));
        let no_verb = EventContext {
            verb: None,
            ..work_failed
        };
        assert!(
            !f.matches_event("subject.failed", &no_verb),
            "a filter needs its attribute"
        );

        let app = Filters {
            event_types: strings(&["app.*"]),
            app_ids: strings(&["app_a"]),
            ..Filters::default()
        };
        let of = |id| EventContext {
            app_id: Some(id),
            ..EventContext::default()
        };
        assert!(app.matches_event("app.installed", &of("app_a")));
        assert!(
            !app.matches_event("app.installed", &of("app_b")),
            "another app's event"
        );
        assert!(!app.matches_event("app.installed", &EventContext::default()));
    }
}
