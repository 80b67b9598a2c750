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

use crate::catalogue;
use crate::domain::jobs::{self, JobState};
use crate::domain::message::EventContext;
use crate::validation::ValidationError;

/// Most job ids one subscription may list, unless configured otherwise
/// (`MAX_JOB_IDS_PER_FILTER` of the API).
pub const MAX_JOB_IDS: usize = 1000;
/// Longest accepted job id, in characters.
pub const MAX_JOB_ID_LEN: usize = 256;

/// Most event type names or patterns one subscription may list.
pub const MAX_EVENT_TYPES: usize = 100;

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
    /// The platform event types (names or prefix wildcards).
    pub event_types: Option<Vec<String>>,
    /// Only events about these subject types.
    pub subject_types: Option<Vec<String>>,
    /// Only events about these subjects.
    pub subject_ids: Option<Vec<String>>,
    /// Only events with these verbs.
    pub verbs: Option<Vec<String>>,
    /// Only events of these applications.
    pub app_ids: Option<Vec<String>>,
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
    /// (first occurrence kept), with the default [`MAX_JOB_IDS`], for the
    /// kind its fields imply ([`Self::kind`]).
    pub fn validate(self) -> Result<Filters, ValidationError> {
        let kind = self.kind();
        self.validate_for(kind, MAX_JOB_IDS)
    }

    /// Checks the values of every list given, whatever kind it belongs to
    /// (for a request whose subscription's kind is not known yet): unknown
    /// types, states, subject types or verbs, bad ids, lists over
    /// `max_ids`. Which filters the kind takes is [`Self::validate_for`]'s.
    pub fn check_values(&self, max_ids: usize) -> Result<(), ValidationError> {
        // Filters no kind takes together are refused whatever the kind.
        if self.event_types.is_some() {
            if let Some(name) = JOB_FILTERS.iter().find(|n| self.has(n)) {
                return Err(ValidationError::field(
                    "filter_not_for_kind",
                    format!("filters.{name}"),
                    format!(
                        "filters.{name} is a filter of subscriptions of kind jobs; filters \
                         naming event_types are of kind events, whose filters are: {}",
                        EVENT_FILTERS.join(", ")
                    ),
                ));
            }
        } else if let Some(name) = EVENT_FILTERS.iter().find(|n| self.has(n)) {
            return Err(ValidationError::field(
                "missing_event_types",
                "filters.event_types",
                format!(
                    "filters.{name} is a filter of subscriptions of kind events, which name \
                     their event types; allowed: {}",
                    allowed_event_types()
                ),
            ));
        }
        let jobs = Self {
            job_ids: self.job_ids.clone(),
            job_types: self.job_types.clone(),
            states: self.states.clone(),
            ..Self::default()
        };
        jobs.validate_jobs(max_ids)?;
        let events = Self {
            // Any valid pattern stands in when none is given: only the
            // values are checked here.
            event_types: self
                .event_types
                .clone()
                .or_else(|| Some(vec!["*".to_owned()])),
            subject_types: self.subject_types.clone(),
            subject_ids: self.subject_ids.clone(),
            verbs: self.verbs.clone(),
            app_ids: self.app_ids.clone(),
            ..Self::default()
        };
        events.validate_events(max_ids).map(drop)
    }

    /// Whether no filter is given at all.
    pub fn is_empty(&self) -> bool {
        EVENT_FILTERS
            .iter()
            .chain(JOB_FILTERS)
            .all(|name| !self.has(name))
    }

    /// The kind these filters are for when the request does not say:
    /// `events` when `event_types` is given, else `jobs`.
    pub fn kind(&self) -> SubscriptionKind {
        if self.event_types.is_some() {
            SubscriptionKind::Events
        } else {
            SubscriptionKind::Jobs
        }
    }

    /// [`Self::validate`] for a subscription of `kind`, with at most
    /// `max_ids` ids in each id list (job ids, subject ids, app ids).
    pub fn validate_for(
        self,
        kind: SubscriptionKind,
        max_ids: usize,
    ) -> Result<Filters, ValidationError> {
        let (own, foreign) = match kind {
            SubscriptionKind::Jobs => (JOB_FILTERS, EVENT_FILTERS),
            SubscriptionKind::Events => (EVENT_FILTERS, JOB_FILTERS),
        };
        if let Some(name) = foreign.iter().find(|n| self.has(n)) {
            return Err(ValidationError::field(
                "filter_not_for_kind",
                format!("filters.{name}"),
                format!(
                    "filters.{name} does not apply to subscriptions of kind {}; its filters \
                     are: {}",
                    kind.as_str(),
                    own.join(", ")
                ),
            ));
        }
        match kind {
            SubscriptionKind::Jobs => self.validate_jobs(max_ids),
            SubscriptionKind::Events => self.validate_events(max_ids),
        }
    }

    fn has(&self, filter: &str) -> bool {
        match filter {
            "job_ids" => self.job_ids.is_some(),
            "job_types" => self.job_types.is_some(),
            "states" => self.states.is_some(),
            "event_types" => self.event_types.is_some(),
            "subject_types" => self.subject_types.is_some(),
            "subject_ids" => self.subject_ids.is_some(),
            "verbs" => self.verbs.is_some(),
            "app_ids" => self.app_ids.is_some(),
            _ => false,
        }
    }

    fn validate_jobs(self, max_job_ids: usize) -> Result<Filters, ValidationError> {
        let job_ids = self
            .job_ids
            .map(|ids| check_ids(ids, "job_ids", "job ids", max_job_ids))
            .transpose()?;
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

    fn validate_events(self, max_ids: usize) -> Result<Filters, ValidationError> {
        let Some(types) = self.event_types else {
            return Err(ValidationError::field(
                "missing_event_types",
                "filters.event_types",
                format!(
                    "a subscription of kind events names the event types it receives; \
                     allowed: {}",
                    allowed_event_types()
                ),
            ));
        };
        non_empty(&types, "filters.event_types")?;
        if types.len() > MAX_EVENT_TYPES {
            return Err(ValidationError::field(
                "too_many_event_types",
                "filters.event_types",
                format!(
                    "at most {MAX_EVENT_TYPES} event types per subscription, got {}",
                    types.len()
                ),
            ));
        }
        for (i, pattern) in types.iter().enumerate() {
            if !is_platform_pattern(pattern) {
                return Err(ValidationError::field(
                    "unknown_event_type",
                    format!("filters.event_types[{i}]"),
                    format!(
                        "unknown event type {pattern:?} (job events go to subscriptions of \
                         kind jobs); allowed: {}",
                        allowed_event_types()
                    ),
                ));
            }
        }
        let vocabulary = catalogue::vocabulary();
        let subject_types = self
            .subject_types
            .map(|v| {
                check_known(
                    v,
                    "subject_types",
                    "subject type",
                    &vocabulary.subject_types,
                )
            })
            .transpose()?;
        let verbs = self
            .verbs
            .map(|v| check_known(v, "verbs", "verb", &vocabulary.verbs))
            .transpose()?;
        let subject_ids = self
            .subject_ids
            .map(|ids| check_ids(ids, "subject_ids", "subject ids", max_ids))
            .transpose()?;
        let app_ids = self
            .app_ids
            .map(|ids| check_ids(ids, "app_ids", "app ids", max_ids))
            .transpose()?;
        Ok(Filters {
            event_types: Some(dedup(types)),
            subject_types,
            subject_ids,
            verbs,
            app_ids,
            ..Filters::default()
        })
    }
}

/// The filters of each kind, in the order the API documents them.
const JOB_FILTERS: &[&str] = &["job_ids", "job_types", "states"];
const EVENT_FILTERS: &[&str] = &[
    "event_types",
    "subject_types",
    "subject_ids",
    "verbs",
    "app_ids",
];

/// Whether an event type is delivered to `events` subscriptions: every
/// catalogue type but job events and test events.
pub fn is_platform_type(name: &str) -> bool {
    !name.starts_with("job.") && name != crate::domain::message::TEST_EVENT_TYPE
}

/// Whether `pattern` names a platform event type of the catalogue, or is a
/// wildcard matching at least one.
fn is_platform_pattern(pattern: &str) -> bool {
    catalogue::event_types()
        .iter()
        .any(|e| is_platform_type(&e.name) && type_matches(pattern, &e.name))
}

/// The values `event_types` takes: `*`, each group's wildcard (`engine.*`),
/// then each platform event type of the catalogue.
pub fn event_type_patterns() -> Vec<String> {
    let platform = || {
        catalogue::event_types()
            .iter()
            .filter(|e| is_platform_type(&e.name))
    };
    let mut patterns = vec!["*".to_owned()];
    for e in platform() {
        let wildcard = format!("{}.*", e.group);
        if !patterns.contains(&wildcard) {
            patterns.push(wildcard);
        }
    }
    patterns.extend(platform().map(|e| e.name.clone()));
    patterns
}

/// The allowed `event_types` values, for error messages.
fn allowed_event_types() -> String {
    event_type_patterns().join(", ")
}

/// A non-empty list of values from `allowed`, deduplicated.
fn check_known(
    values: Vec<String>,
    name: &'static str,
    what: &str,
    allowed: &[String],
) -> Result<Vec<String>, ValidationError> {
    let field = format!("filters.{name}");
    non_empty(&values, field.clone())?;
    if let Some((i, bad)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !allowed.contains(v))
    {
        return Err(ValidationError::field(
            match name {
                "verbs" => "unknown_verb",
                _ => "unknown_subject_type",
            },
            format!("{field}[{i}]"),
            format!("unknown {what} {bad:?}; allowed: {}", allowed.join(", ")),
        ));
    }
    Ok(dedup(values))
}

/// A non-empty list of at most `max` ids of 1 to [`MAX_JOB_ID_LEN`]
/// printable characters, deduplicated.
fn check_ids(
    ids: Vec<String>,
    name: &'static str,
    what: &str,
    max: usize,
) -> Result<Vec<String>, ValidationError> {
    let field = format!("filters.{name}");
    non_empty(&ids, field.clone())?;
    if ids.len() > max {
        return Err(ValidationError::field(
            match name {
                "subject_ids" => "too_many_subject_ids",
                "app_ids" => "too_many_app_ids",
                _ => "too_many_job_ids",
            },
            field,
            format!(
                "at most {max} {what} per subscription (the quota MAX_JOB_IDS_PER_FILTER), \
                 got {}",
                ids.len()
            ),
        ));
    }
    for (i, id) in ids.iter().enumerate() {
        let len = id.chars().count();
        if len == 0 || len > MAX_JOB_ID_LEN || id.chars().any(char::is_control) {
            return Err(ValidationError::field(
                match name {
                    "subject_ids" => "invalid_subject_id",
                    "app_ids" => "invalid_app_id",
                    _ => "invalid_job_id",
                },
                format!("{field}[{i}]"),
                format!("{what} must be 1 to {MAX_JOB_ID_LEN} printable characters"),
            ));
        }
    }
    Ok(dedup(ids))
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

fn non_empty<T>(
    values: &[T],
    field: impl Into<std::borrow::Cow<'static, str>>,
) -> Result<(), ValidationError> {
    if values.is_empty() {
        let field = field.into();
        let message = format!("{field} must not be empty; omit it to match everything");
        return Err(ValidationError::field("empty_filter", field, message));
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

    fn events(json: serde_json::Value) -> Result<Filters, ValidationError> {
        input(json).validate_for(SubscriptionKind::Events, 3)
    }

    #[test]
    fn events_subscriptions_name_catalogued_platform_types() {
        let f =
            events(serde_json::json!({"event_types": ["engine.*", "app.installed", "engine.*"]}))
                .unwrap();
        assert_eq!(f.kind(), SubscriptionKind::Events);
        assert_eq!(f.event_types.unwrap(), ["engine.*", "app.installed"]);
        assert!(events(serde_json::json!({"event_types": ["*"]})).is_ok());

        let err = events(serde_json::json!({})).unwrap_err();
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("missing_event_types", Some("filters.event_types"))
        );
        assert!(err.message.contains("engine.*"), "{}", err.message);
        for bad in [
            "job.completed",
            "job.*",
            "webhook.test",
            "eng*",
            "nope.*",
            "engine.nope",
        ] {
            let err = events(serde_json::json!({"event_types": ["app.*", bad]})).unwrap_err();
            assert_eq!(err.code, "unknown_event_type", "{bad}");
            assert_eq!(err.field.as_deref(), Some("filters.event_types[1]"));
            assert!(err.message.contains(&format!("{bad:?}")), "{}", err.message);
            assert!(
                err.message.contains("engine.slow_query_event"),
                "{}",
                err.message
            );
        }
        let many: Vec<String> = (0..=MAX_EVENT_TYPES).map(|_| "app.*".to_owned()).collect();
        let err = events(serde_json::json!({ "event_types": many })).unwrap_err();
        assert_eq!(err.code, "too_many_event_types");
    }

    #[test]
    fn subject_types_and_verbs_come_from_the_vocabulary() {
        let f = events(serde_json::json!({
            "event_types": ["subject.*"], "subject_types": ["work"], "verbs": ["failed"],
            "subject_ids": ["w1", "w1"], "app_ids": ["app_a"]
        }))
        .unwrap();
        assert_eq!(f.subject_ids.unwrap(), ["w1"]);
        let err = events(serde_json::json!({"event_types": ["*"], "subject_types": ["planet"]}))
            .unwrap_err();
        assert_eq!(err.code, "unknown_subject_type");
        assert_eq!(err.field.as_deref(), Some("filters.subject_types[0]"));
        assert!(err.message.contains("workflow"), "{}", err.message);
        let err =
            events(serde_json::json!({"event_types": ["*"], "verbs": ["created", "exploded"]}))
                .unwrap_err();
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("unknown_verb", Some("filters.verbs[1]"))
        );
        let err = events(serde_json::json!({"event_types": ["*"], "app_ids": []})).unwrap_err();
        assert_eq!(err.code, "empty_filter");
    }

    #[test]
    fn id_lists_of_events_subscriptions_fall_under_the_quota() {
        let err =
            events(serde_json::json!({"event_types": ["*"], "subject_ids": ["a", "b", "c", "d"]}))
                .unwrap_err();
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("too_many_subject_ids", Some("filters.subject_ids"))
        );
        let err =
            events(serde_json::json!({"event_types": ["*"], "app_ids": ["a", "b", "c", "d"]}))
                .unwrap_err();
        assert_eq!(err.code, "too_many_app_ids");
        let err =
            events(serde_json::json!({"event_types": ["*"], "app_ids": ["ok", ""]})).unwrap_err();
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("invalid_app_id", Some("filters.app_ids[1]"))
        );
    }

    #[test]
    fn a_kind_refuses_the_other_kinds_filters() {
        let err =
            events(serde_json::json!({"event_types": ["*"], "states": ["failed"]})).unwrap_err();
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("filter_not_for_kind", Some("filters.states"))
        );
        assert!(err.message.contains("subject_types"), "{}", err.message);
        let err = input(serde_json::json!({"verbs": ["failed"]}))
            .validate_for(SubscriptionKind::Jobs, 10)
            .unwrap_err();
        assert_eq!(
            (err.code, err.field.as_deref()),
            ("filter_not_for_kind", Some("filters.verbs"))
        );
        let implied = input(serde_json::json!({"event_types": ["app.*"]}));
        assert_eq!(implied.kind(), SubscriptionKind::Events);
    }

    #[test]
    fn values_are_checked_before_the_kind_is_known() {
        let bad = |json: serde_json::Value| input(json).check_values(5).unwrap_err().code;
        assert_eq!(
            bad(serde_json::json!({"event_types": ["*"], "app_ids": ["\u{9b}"]})),
            "invalid_app_id"
        );
        assert_eq!(
            bad(serde_json::json!({"states": ["done"]})),
            "unknown_state"
        );
        assert_eq!(
            bad(serde_json::json!({"event_types": ["nope.*"]})),
            "unknown_event_type"
        );
        assert_eq!(
            bad(serde_json::json!({"verbs": ["failed"]})),
            "missing_event_types",
            "no kind takes event filters without event types"
        );
        assert_eq!(
            bad(serde_json::json!({"event_types": ["*"], "job_ids": ["j"]})),
            "filter_not_for_kind",
            "nor job filters beside event types"
        );
        assert!(
            input(serde_json::json!({"job_ids": ["j"], "states": ["failed"]}))
                .check_values(5)
                .is_ok()
        );
    }
}
