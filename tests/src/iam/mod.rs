//! IAM, which the emulator does not enforce, checked against what each
//! function really calls.
//!
//! The local stack gives every function its own access key id, its
//! logical id in the template ([`local_infra::identity`]). An [`Audit`]
//! puts an [`AwsProxy`] in front of the emulator that records, for each
//! function, every permission its requests needed: the IAM action, the
//! resource, and the condition keys the template's policies use
//! ([`request`]). [`Audit::assert_granted`] then holds each of them to
//! that function's `Policies` in `template.yaml`, resolved for the
//! deployed stack ([`policy`]), and fails naming the function, the action,
//! the resource and why, for every permission missing. So a call the
//! template does not grant fails the test that makes it, as it would fail
//! in AWS.
//!
//! Calls signed with the emulator's test identity (the tests' own set-up
//! and checks, the local runners that stand in for Lambda's event source
//! mappings) are not checked.

pub mod policy;
pub mod request;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use local_infra::cloudformation::DeployedStack;
use serde_yaml::Value;

use crate::aws_proxy::AwsProxy;
use crate::emulator;
use policy::{Resolver, StackFacts};
use request::Access;

/// What a function's request needed, or why that is unknown.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Needed {
    /// A permission.
    Access(Access),
    /// A request the mapping cannot read (an unknown service).
    Unmapped(String),
}

/// One permission a function needed and its policy does not grant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// Logical id of the function.
    pub function: String,
    /// The IAM action.
    pub action: String,
    /// The resource's ARN.
    pub resource: String,
    /// The template's logical id of the resource, when it is one.
    pub resource_id: Option<String>,
    /// Why the policy does not allow it.
    pub reason: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} may not {} on {}",
            self.function, self.action, self.resource
        )?;
        if let Some(id) = &self.resource_id {
            write!(f, " ({id})")?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The facts of `stack` the template's policies are resolved with.
pub fn stack_facts(template: &Value, stack: &DeployedStack) -> StackFacts {
    let mut parameters: HashMap<String, String> = HashMap::new();
    for (name, definition) in template["Parameters"].as_mapping().into_iter().flatten() {
        if let (Some(name), Some(default)) = (name.as_str(), definition["Default"].as_str()) {
            parameters.insert(name.to_owned(), default.to_owned());
        }
    }
    parameters.extend(stack.parameters.clone());
    let function_arns: HashMap<String, String> = stack
        .functions
        .iter()
        .map(|(id, f)| (id.clone(), f.arn.clone()))
        .collect();
    // arn:aws:lambda:REGION:ACCOUNT:function:NAME
    let any_arn = function_arns.values().next().cloned().unwrap_or_default();
    let mut parts = any_arn.split(':').skip(3);
    let region = parts.next().unwrap_or("us-east-1").to_owned();
    let account = parts.next().unwrap_or_default().to_owned();
    StackFacts {
        parameters,
        resources: stack
            .resources()
            .map(|(id, r)| {
                (
                    id.to_owned(),
                    (r.resource_type.clone(), r.physical_id.clone()),
                )
            })
            .collect(),
        function_arns,
        stack_name: stack.name.clone(),
        region,
        account,
    }
}

/// `template.yaml` (or `TEMPLATE_PATH`), parsed.
///
/// # Panics
/// When it cannot be read or parsed.
pub fn template() -> Value {
    let path = local_infra::cloudformation::template_path();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// The template's logical id of the resource with ARN `arn` (a table's
/// index counts as its table).
fn resource_id(resolver: &Resolver<'_>, facts: &StackFacts, arn: &str) -> Option<String> {
    facts.resources.keys().find_map(|id| {
        let own = resolver.attribute(id, "Arn").ok()?;
        (arn == own || arn.starts_with(&format!("{own}/"))).then(|| id.clone())
    })
}

/// Every permission in `needed` (function logical id, what it needed) that
/// the function's policy in `template`, resolved with `facts`, does not
/// grant; each once.
pub fn findings(
    template: &Value,
    facts: &StackFacts,
    needed: impl IntoIterator<Item = (String, Needed)>,
) -> Vec<Finding> {
    let resolver = Resolver::new(template, facts);
    let mut policies = HashMap::new();
    let mut found = BTreeSet::new();
    for (function, needed) in needed {
        let policy = policies
            .entry(function.clone())
            .or_insert_with(|| resolver.policy(&function));
        let access = match needed {
            Needed::Access(access) => access,
            Needed::Unmapped(why) => {
                found.insert(Finding {
                    function,
                    action: "(an unmapped call)".to_owned(),
                    resource: "(unknown)".to_owned(),
                    resource_id: None,
                    reason: why,
                });
                continue;
            }
        };
        let resource = access.resource.arn(&facts.region, &facts.account);
        if let Err(mut reason) = policy::allows(policy, &access, &resource) {
            if !policy.unreadable.is_empty() {
                reason.push_str(&format!(
                    " (not evaluated: {})",
                    policy.unreadable.join("; ")
                ));
            }
            found.insert(Finding {
                function,
                action: access.action.clone(),
                resource_id: resource_id(&resolver, facts, &resource),
                resource,
                reason,
            });
        }
    }
    found.into_iter().collect()
}

/// A recording proxy in front of the emulator: every request signed as a
/// function is kept, as the permissions it needed.
pub struct Audit {
    proxy: AwsProxy,
    needed: Arc<Mutex<BTreeSet<(String, Needed)>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("endpoint", &self.proxy.endpoint())
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// Starts the proxy in front of the emulator ([`emulator::endpoint`]).
    ///
    /// # Panics
    /// Outside a Tokio runtime, or without the emulator's endpoint.
    pub fn start() -> Self {
        let proxy = AwsProxy::start(emulator::endpoint());
        let needed: Arc<Mutex<BTreeSet<(String, Needed)>>> = Arc::default();
        let record = Arc::clone(&needed);
        proxy.observe(move |call| {
            let Some(principal) = call
                .authorization
                .and_then(local_infra::identity::function_of)
            else {
                return;
            };
            if principal == emulator::ACCESS_KEY_ID {
                return;
            }
            let entries: Vec<Needed> = match request::accesses(call.target, call.request) {
                Ok(accesses) => accesses.into_iter().map(Needed::Access).collect(),
                Err(why) => vec![Needed::Unmapped(why)],
            };
            let mut needed = record.lock().unwrap_or_else(|p| p.into_inner());
            for entry in entries {
                needed.insert((principal.to_owned(), entry));
            }
        });
        Self { proxy, needed }
    }

    /// SDK configuration for the emulator through the proxy: give it to
    /// the local stack's pipeline so every function's
    /// calls are recorded.
    pub async fn sdk(&self) -> SdkConfig {
        self.proxy.sdk().await
    }

    /// The proxy, e.g. to inject faults.
    pub fn proxy(&self) -> &AwsProxy {
        &self.proxy
    }

    /// The permissions recorded so far that `stack`'s template does not
    /// grant.
    pub fn findings(&self, stack: &DeployedStack) -> Vec<Finding> {
        let template = template();
        let facts = stack_facts(&template, stack);
        let needed = self
            .needed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        findings(&template, &facts, needed)
    }

    /// How many distinct (function, permission) pairs were recorded.
    pub fn recorded(&self) -> usize {
        self.needed.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Asserts that every function was granted everything it called.
    ///
    /// # Panics
    /// Listing each missing permission: function, action, resource, why;
    /// or when no call was recorded at all (the functions' calls did not
    /// go through the audit, and nothing would have been checked).
    pub fn assert_granted(&self, stack: &DeployedStack) {
        assert!(
            self.recorded() > 0,
            "no function's AWS call was recorded: the audit checked nothing"
        );
        let findings = self.findings(stack);
        assert!(
            findings.is_empty(),
            "template.yaml does not grant what the functions called:\n{}",
            findings
                .iter()
                .map(|f| format!("  - {f}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
