//! Where the emulator falls short of the template: resource types moto's
//! CloudFormation does not create, and settings the local stack cannot
//! honour. [`find`] compares the deployed template with the stack; the
//! runner prints the result once at start-up ([`summary`]) and the README
//! ("Emulator gaps") lists the same. A resource that is neither created nor
//! listed here is reported as unexplained, and a test fails on it.

use std::collections::BTreeMap;
use std::fmt;

use super::DeployedStack;

/// Resource types moto's CloudFormation records in the template but does
/// not create, and what the local stack does instead.
pub const NOT_CREATED: &[(&str, &str)] = &[
    (
        "AWS::ApiGatewayV2::Api",
        "the local gateway serves the routes and decodes JWTs without verifying them",
    ),
    (
        "AWS::ApiGatewayV2::Stage",
        "no throttling or access log locally",
    ),
    (
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "capacity is not auto scaled locally (the emulator does not throttle)",
    ),
    (
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "capacity is not auto scaled locally (the emulator does not throttle)",
    ),
    ("AWS::CloudWatch::Alarm", "alarms are not evaluated locally"),
    (
        "AWS::Lambda::Permission",
        "recorded without an id; the local gateway calls the API handler directly",
    ),
    (
        "AWS::SecretsManager::Secret",
        "dynamic references to it stay unresolved",
    ),
];

/// One shortfall of the emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// What falls short: logical ids, a type, a setting.
    pub subject: String,
    /// What happens locally instead.
    pub local: String,
    /// Whether the gap is a known one; `false` for a resource the emulator
    /// did not create and this module does not list.
    pub known: bool,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.local)
    }
}

/// Logical id and type of every resource in a CloudFormation JSON body,
/// each marked when it has a `Condition` (such a resource may rightly be
/// absent, so a missing one is not counted as a gap).
pub fn declared_resources(body: &str) -> Result<BTreeMap<String, Declared>, serde_json::Error> {
    let template: serde_json::Value = serde_json::from_str(body)?;
    Ok(template
        .get("Resources")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flatten()
        .map(|(id, r)| {
            (
                id.clone(),
                Declared {
                    resource_type: r["Type"].as_str().unwrap_or_default().to_owned(),
                    conditional: r.get("Condition").is_some(),
                },
            )
        })
        .collect())
}

/// A resource as the template declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declared {
    /// CloudFormation type.
    pub resource_type: String,
    /// Whether it exists only under a condition.
    pub conditional: bool,
}

/// The gaps between the declared resources and the deployed stack.
pub fn find(stack: &DeployedStack, declared: &BTreeMap<String, Declared>) -> Vec<Gap> {
    let mut missing: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, d) in declared {
        if stack.resource(id).is_none() && !d.conditional {
            missing
                .entry(d.resource_type.as_str())
                .or_default()
                .push(id);
        }
    }
    let mut gaps = Vec::new();
    for (resource_type, ids) in missing {
        let known = NOT_CREATED.iter().find(|(t, _)| *t == resource_type);
        gaps.push(Gap {
            subject: format!("{} ({resource_type})", ids.join(", ")),
            local: known.map_or_else(
                || "not created by the emulator, and not a known gap".to_owned(),
                |(_, what)| format!("not created; {what}"),
            ),
            known: known.is_some(),
        });
    }
    if stack
        .resources()
        .any(|(_, r)| r.resource_type == "AWS::IAM::Role")
    {
        gaps.push(Gap {
            subject: "IAM roles".to_owned(),
            local: "created, not enforced by the emulator; each function calls as itself, and \
                    tests hold its calls to its policy"
                .to_owned(),
            known: true,
        });
    }
    for function in stack.functions.values() {
        let mut unresolved: Vec<&str> = function
            .environment
            .iter()
            .filter(|(_, v)| v.contains("{{resolve:"))
            .map(|(k, _)| k.as_str())
            .collect();
        unresolved.sort_unstable();
        if !unresolved.is_empty() {
            gaps.push(Gap {
                subject: format!("{} {}", function.logical_id, unresolved.join(", ")),
                local: "dynamic reference left unresolved; the local stack sets a local value"
                    .to_owned(),
                known: true,
            });
        }
    }
    for m in &stack.mappings {
        if !m.report_batch_item_failures {
            gaps.push(Gap {
                subject: format!("{} mapping without ReportBatchItemFailures", m.function),
                local: "the runner honours the handler's batchItemFailures anyway".to_owned(),
                known: true,
            });
        }
        if m.is_stream()
            && let Err(e) = crate::filter::Filter::parse(&m.filters)
        {
            gaps.push(Gap {
                subject: format!("{} FilterCriteria", m.function),
                local: format!("{e}; every record reaches the handler"),
                known: true,
            });
        }
        if m.bisect {
            gaps.push(Gap {
                subject: format!("{} BisectBatchOnFunctionError", m.function),
                local: "not applied; the in-process handler reports failed records and never fails a whole batch".to_owned(),
                known: true,
            });
        }
        if m.is_queue() && !m.filters.is_empty() {
            gaps.push(Gap {
                subject: format!("{} FilterCriteria on {}", m.function, m.source_arn),
                local: "not applied to queue messages; every message reaches the handler"
                    .to_owned(),
                known: true,
            });
        }
        if m.max_record_age.is_some() {
            gaps.push(Gap {
                subject: format!("{} MaximumRecordAgeInSeconds", m.function),
                local: "not applied; failing records are retried MaximumRetryAttempts times whatever their age".to_owned(),
                known: true,
            });
        }
    }
    gaps
}

/// The gaps in one readable line.
pub fn summary(gaps: &[Gap]) -> String {
    let parts: Vec<String> = gaps.iter().map(ToString::to_string).collect();
    format!(
        "emulator gaps (README \"Emulator gaps\"): {}",
        parts.join("; ")
    )
}
