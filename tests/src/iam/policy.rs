//! The functions' IAM policies as `template.yaml` writes them, resolved for
//! one deployed stack, and IAM's evaluation of a request against them.
//!
//! Resolution: `Ref`, `Fn::GetAtt`, `Fn::Sub` and `Fn::If` (short and long
//! forms) with the stack's parameters (the template's defaults under the
//! deployed values), its conditions, its resources' physical ids and the
//! pseudo parameters. Evaluation follows IAM for identity policies: an
//! explicit `Deny` wins, else a matching `Allow` is needed; `Action` and
//! `Resource` (or their `Not` forms) with `*` and `?` wildcards; every
//! condition must hold, with the `ForAllValues:`/`ForAnyValue:` prefixes
//! and the `IfExists` suffix, for the string operators. An operator outside
//! that set never holds, so the check fails rather than guesses.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_yaml::Value;

use super::request::Access;

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Grants.
    Allow,
    /// Refuses, whatever else grants.
    Deny,
}

/// One condition: `operator` on `key` with `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// E.g. `ForAllValues:StringEquals`.
    pub operator: String,
    /// E.g. `dynamodb:Attributes`.
    pub key: String,
    /// The policy's values (any of them may match).
    pub values: Vec<String>,
}

/// A statement with its resources resolved to ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// `Sid`, or the statement's position.
    pub sid: String,
    /// `Effect`.
    pub effect: Effect,
    /// `Action` patterns, or `NotAction` ones when `not_action`.
    pub actions: Vec<String>,
    /// The statement uses `NotAction`.
    pub not_action: bool,
    /// `Resource` patterns, or `NotResource` ones when `not_resource`.
    pub resources: Vec<String>,
    /// The statement uses `NotResource`.
    pub not_resource: bool,
    /// Every condition, all of which must hold.
    pub conditions: Vec<Condition>,
}

/// A function's policy, and what of it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Its statements.
    pub statements: Vec<Statement>,
    /// Policies or statements that could not be read or resolved, and why.
    pub unreadable: Vec<String>,
}

/// The stack the template is resolved for.
#[derive(Debug, Clone, Default)]
pub struct StackFacts {
    /// Parameter values, the template's defaults under the deployed ones.
    pub parameters: HashMap<String, String>,
    /// Resources by logical id: CloudFormation type and physical id.
    pub resources: HashMap<String, (String, String)>,
    /// Function ARNs by logical id.
    pub function_arns: HashMap<String, String>,
    /// The stack's name.
    pub stack_name: String,
    /// Its region.
    pub region: String,
    /// Its account.
    pub account: String,
}

/// A template resolved against one stack.
pub struct Resolver<'a> {
    template: &'a Value,
    facts: &'a StackFacts,
}

fn tag_name(tagged: &serde_yaml::value::TaggedValue) -> String {
    tagged.tag.to_string().trim_start_matches('!').to_owned()
}

/// `value` as a one-key mapping of an intrinsic function (`Ref`, `Fn::X`),
/// or a tagged short form (`!Ref`, `!X`): the function's name without
/// `Fn::`, and its argument.
fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => Some((tag_name(tagged), &tagged.value)),
        Value::Mapping(map) if map.len() == 1 => {
            let (k, v) = map.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" || k == "Condition" {
                Some((k.to_owned(), v))
            } else {
                Some((k.strip_prefix("Fn::")?.to_owned(), v))
            }
        }
        _ => None,
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl<'a> Resolver<'a> {
    /// Resolves `template` for the stack `facts` describes.
    pub fn new(template: &'a Value, facts: &'a StackFacts) -> Self {
        Self { template, facts }
    }

    fn parameter(&self, name: &str) -> Option<String> {
        self.facts
            .parameters
            .get(name)
            .cloned()
            .or_else(|| scalar(&self.template["Parameters"][name]["Default"]))
    }

    fn arn(&self, service: &str, rest: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{rest}",
            self.facts.region, self.facts.account
        )
    }

    /// `Ref` of a parameter, pseudo parameter or resource; `Ok(None)` for
    /// `AWS::NoValue`.
    fn reference(&self, name: &str) -> Result<Option<String>, String> {
        let pseudo = match name {
            "AWS::NoValue" => return Ok(None),
            "AWS::Region" => Some(self.facts.region.clone()),
            "AWS::AccountId" => Some(self.facts.account.clone()),
            "AWS::Partition" => Some("aws".to_owned()),
            "AWS::URLSuffix" => Some("amazonaws.com".to_owned()),
            "AWS::StackName" => Some(self.facts.stack_name.clone()),
            _ => None,
        };
        if let Some(value) = pseudo {
            return Ok(Some(value));
        }
        if let Some(value) = self.parameter(name) {
            return Ok(Some(value));
        }
        self.physical(name)
            .map(|(_, physical)| Some(physical))
            .map_err(|e| format!("Ref {e}"))
    }

    /// Type and physical id of resource `id`: the stack's, or for a
    /// resource the emulator lists without one (an EventBridge bus), the
    /// name the template gives it.
    fn physical(&self, id: &str) -> Result<(String, String), String> {
        if let Some(found) = self.facts.resources.get(id) {
            return Ok(found.clone());
        }
        let declared = &self.template["Resources"][id];
        let missing = || format!("{id}: no such resource in the stack");
        let resource_type = declared["Type"].as_str().ok_or_else(missing)?;
        let name = &declared["Properties"]["Name"];
        if name.is_null() {
            return Err(missing());
        }
        Ok((resource_type.to_owned(), self.string(name)?))
    }

    /// `Fn::GetAtt` `id`.`attribute`.
    pub fn attribute(&self, id: &str, attribute: &str) -> Result<String, String> {
        if let Some(arn) = self
            .facts
            .function_arns
            .get(id)
            .filter(|_| attribute == "Arn")
        {
            return Ok(arn.clone());
        }
        let (resource_type, physical) = &self.physical(id)?;
        let already_arn = physical.starts_with("arn:");
        let name_of_url = || physical.rsplit('/').next().unwrap_or(physical).to_owned();
        match (resource_type.as_str(), attribute) {
            ("AWS::DynamoDB::Table", "Arn") => {
                Ok(self.arn("dynamodb", &format!("table/{physical}")))
            }
            ("AWS::SQS::Queue", "Arn") => Ok(self.arn("sqs", &name_of_url())),
            ("AWS::SQS::Queue", "QueueName") => Ok(name_of_url()),
            ("AWS::KMS::Key", "Arn") if already_arn => Ok(physical.clone()),
            ("AWS::KMS::Key", "Arn") => Ok(self.arn("kms", &format!("key/{physical}"))),
            ("AWS::Events::EventBus", "Arn") if already_arn => Ok(physical.clone()),
            ("AWS::Events::EventBus", "Arn") => {
                Ok(self.arn("events", &format!("event-bus/{physical}")))
            }
            ("AWS::Events::EventBus", "Name") => {
                Ok(physical.rsplit('/').next().unwrap_or(physical).to_owned())
            }
            _ => Err(format!(
                "GetAtt {id}.{attribute} ({resource_type}) is not resolved locally"
            )),
        }
    }

    /// Whether the template's condition `name` holds.
    pub fn condition(&self, name: &str) -> Result<bool, String> {
        let definition = &self.template["Conditions"][name];
        if definition.is_null() {
            return Err(format!("no condition {name}"));
        }
        self.truth(definition)
    }

    fn truth(&self, value: &Value) -> Result<bool, String> {
        let (function, argument) =
            intrinsic(value).ok_or_else(|| format!("{value:?} is not a condition"))?;
        let items = || {
            argument
                .as_sequence()
                .map(Vec::as_slice)
                .unwrap_or_default()
        };
        match function.as_str() {
            "Equals" => {
                let [a, b] = items() else {
                    return Err(format!("Equals takes two values: {argument:?}"));
                };
                Ok(self.string(a)? == self.string(b)?)
            }
            "Not" => Ok(!self.truth(items().first().ok_or("Not of nothing")?)?),
            "And" => items()
                .iter()
                .try_fold(true, |all, c| Ok(all && self.truth(c)?)),
            "Or" => items()
                .iter()
                .try_fold(false, |any, c| Ok(any || self.truth(c)?)),
            "Condition" => self.condition(argument.as_str().unwrap_or_default()),
            other => Err(format!(
                "condition function {other} is not resolved locally"
            )),
        }
    }

    fn string(&self, value: &Value) -> Result<String, String> {
        self.resolve(value)?
            .and_then(|v| match v {
                Resolved::One(s) => Some(s),
                Resolved::Many(_) => None,
            })
            .ok_or_else(|| format!("{value:?} is not one string"))
    }

    /// A template value with its intrinsic functions resolved; `None` for
    /// `AWS::NoValue`.
    pub fn resolve(&self, value: &Value) -> Result<Option<Resolved>, String> {
        if let Some((function, argument)) = intrinsic(value) {
            return match function.as_str() {
                "Ref" => Ok(self
                    .reference(argument.as_str().unwrap_or_default())?
                    .map(Resolved::One)),
                "GetAtt" => {
                    let (id, attribute) = match argument {
                        Value::String(s) => s
                            .split_once('.')
                            .ok_or_else(|| format!("GetAtt {s} names no attribute"))?,
                        Value::Sequence(parts) => (
                            parts.first().and_then(Value::as_str).unwrap_or_default(),
                            parts.get(1).and_then(Value::as_str).unwrap_or_default(),
                        ),
                        other => return Err(format!("GetAtt of {other:?}")),
                    };
                    self.attribute(id, attribute)
                        .map(|a| Some(Resolved::One(a)))
                }
                "Sub" => self.sub(argument).map(|s| Some(Resolved::One(s))),
                "If" => {
                    let items = argument
                        .as_sequence()
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    let [condition, then, otherwise] = items else {
                        return Err(format!("If takes three values: {argument:?}"));
                    };
                    let chosen = if self.condition(condition.as_str().unwrap_or_default())? {
                        then
                    } else {
                        otherwise
                    };
                    self.resolve(chosen)
                }
                other => Err(format!(
                    "intrinsic function {other} is not resolved locally"
                )),
            };
        }
        match value {
            Value::Sequence(items) => {
                let mut all = Vec::new();
                for item in items {
                    match self.resolve(item)? {
                        Some(Resolved::One(s)) => all.push(s),
                        Some(Resolved::Many(v)) => all.extend(v),
                        None => {}
                    }
                }
                Ok(Some(Resolved::Many(all)))
            }
            other => scalar(other)
                .map(|s| Some(Resolved::One(s)))
                .ok_or_else(|| format!("{other:?} is not a string")),
        }
    }

    /// `Fn::Sub` of a string, or of `[string, {variables}]`.
    fn sub(&self, argument: &Value) -> Result<String, String> {
        let (text, variables) = match argument {
            Value::String(s) => (s.as_str(), None),
            Value::Sequence(parts) => (
                parts.first().and_then(Value::as_str).unwrap_or_default(),
                parts.get(1),
            ),
            other => return Err(format!("Sub of {other:?}")),
        };
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find('}')
                .ok_or_else(|| format!("Sub {text:?}: unclosed ${{"))?;
            let name = &after[..end];
            if let Some(literal) = name.strip_prefix('!') {
                out.push_str("${");
                out.push_str(literal);
                out.push('}');
            } else if let Some(value) = variables.map(|v| &v[name]).filter(|v| !v.is_null()) {
                out.push_str(&self.string(value)?);
            } else if let Some((id, attribute)) = name.split_once('.') {
                out.push_str(&self.attribute(id, attribute)?);
            } else {
                out.push_str(&self.reference(name)?.unwrap_or_default());
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// The policy of function `function`: the statements of its
    /// `Properties.Policies`, resolved.
    pub fn policy(&self, function: &str) -> Policy {
        let mut policy = Policy::default();
        let resource = &self.template["Resources"][function];
        if resource.is_null() {
            policy
                .unreadable
                .push(format!("{function} is not a resource of the template"));
            return policy;
        }
        for (i, document) in resource["Properties"]["Policies"]
            .as_sequence()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(statements) = document["Statement"].as_sequence() else {
                policy.unreadable.push(format!(
                    "policy {i} is not an inline policy document: {document:?}"
                ));
                continue;
            };
            for (j, statement) in statements.iter().enumerate() {
                match self.statement(statement, &format!("{i}.{j}")) {
                    Ok(s) => policy.statements.push(s),
                    Err(e) => policy.unreadable.push(e),
                }
            }
        }
        policy
    }

    fn statement(&self, statement: &Value, position: &str) -> Result<Statement, String> {
        let sid = statement["Sid"]
            .as_str()
            .map_or_else(|| format!("statement {position}"), str::to_owned);
        let fail = |e: String| format!("{sid}: {e}");
        let effect = match statement["Effect"].as_str() {
            Some("Allow") => Effect::Allow,
            Some("Deny") => Effect::Deny,
            other => return Err(fail(format!("Effect {other:?}"))),
        };
        let list = |field: &str| -> Result<Option<Vec<String>>, String> {
            let value = &statement[field];
            if value.is_null() {
                return Ok(None);
            }
            Ok(match self.resolve(value).map_err(fail)? {
                Some(Resolved::One(s)) => Some(vec![s]),
                Some(Resolved::Many(v)) => Some(v),
                None => Some(Vec::new()),
            })
        };
        let (actions, not_action) = match (list("Action")?, list("NotAction")?) {
            (Some(a), None) => (a, false),
            (None, Some(a)) => (a, true),
            _ => return Err(fail("needs one of Action and NotAction".to_owned())),
        };
        let (resources, not_resource) = match (list("Resource")?, list("NotResource")?) {
            (Some(r), None) => (r, false),
            (None, Some(r)) => (r, true),
            _ => return Err(fail("needs one of Resource and NotResource".to_owned())),
        };
        let mut conditions = Vec::new();
        for (operator, keys) in statement["Condition"].as_mapping().into_iter().flatten() {
            let operator = operator.as_str().unwrap_or_default().to_owned();
            for (key, values) in keys.as_mapping().into_iter().flatten() {
                let values = match self.resolve(values).map_err(fail)? {
                    Some(Resolved::One(s)) => vec![s],
                    Some(Resolved::Many(v)) => v,
                    None => Vec::new(),
                };
                conditions.push(Condition {
                    operator: operator.clone(),
                    key: key.as_str().unwrap_or_default().to_owned(),
                    values,
                });
            }
        }
        Ok(Statement {
            sid,
            effect,
            actions,
            not_action,
            resources,
            not_resource,
            conditions,
        })
    }
}

/// A resolved value: one string or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// A string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

/// Whether IAM pattern `pattern` (`*` any run, `?` one character) matches
/// `value`; case-insensitive when `ignore_case` (actions).
pub fn glob(pattern: &str, value: &str, ignore_case: bool) -> bool {
    fn go(p: &[char], v: &[char], ignore_case: bool) -> bool {
        match (p.first(), v.first()) {
            (None, None) => true,
            (Some('*'), _) => {
                go(&p[1..], v, ignore_case) || (!v.is_empty() && go(p, &v[1..], ignore_case))
            }
            (Some('?'), Some(_)) => go(&p[1..], &v[1..], ignore_case),
            (Some(a), Some(b)) if a == b || (ignore_case && a.eq_ignore_ascii_case(b)) => {
                go(&p[1..], &v[1..], ignore_case)
            }
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    go(&p, &v, ignore_case)
}

/// Whether `condition` holds for a request with `context`; `Err` says why
/// not.
pub fn holds(
    condition: &Condition,
    context: &BTreeMap<String, BTreeSet<String>>,
) -> Result<(), String> {
    let mut operator = condition.operator.as_str();
    let mut set = None;
    for prefix in ["ForAllValues:", "ForAnyValue:"] {
        if let Some(rest) = operator.strip_prefix(prefix) {
            set = Some(prefix);
            operator = rest;
        }
    }
    let (operator, if_exists) = match operator.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (operator, false),
    };
    let (negated, matches): (bool, fn(&str, &str) -> bool) = match operator {
        "StringEquals" => (false, |p, v| p == v),
        "StringNotEquals" => (true, |p, v| p == v),
        "StringEqualsIgnoreCase" => (false, |p, v| p.eq_ignore_ascii_case(v)),
        "StringNotEqualsIgnoreCase" => (true, |p, v| p.eq_ignore_ascii_case(v)),
        "StringLike" => (false, |p, v| glob(p, v, false)),
        "StringNotLike" => (true, |p, v| glob(p, v, false)),
        other => {
            return Err(format!(
                "condition operator {other} is not evaluated locally"
            ));
        }
    };
    let given = context.get(&condition.key);
    let describe = || {
        format!(
            "{} {} {:?} (the request: {})",
            condition.operator,
            condition.key,
            condition.values,
            given.map_or_else(|| "not set".to_owned(), |v| format!("{v:?}")),
        )
    };
    // One request value against the policy's values.
    let fits = |value: &str| {
        let any = condition.values.iter().any(|p| matches(p, value));
        if negated { !any } else { any }
    };
    let ok = match (set, given) {
        (Some("ForAllValues:"), None) => true,
        (Some("ForAllValues:"), Some(values)) => values.iter().all(|v| fits(v)),
        (Some(_), None) => false,
        (Some(_), Some(values)) => values.iter().any(|v| fits(v)),
        (None, None) => if_exists || negated,
        (None, Some(values)) => values.iter().any(|v| fits(v)),
    };
    if ok {
        return Ok(());
    }
    let outside: Vec<&String> = match (set, given) {
        (Some("ForAllValues:"), Some(values)) => values.iter().filter(|v| !fits(v)).collect(),
        _ => Vec::new(),
    };
    if outside.is_empty() {
        Err(describe())
    } else {
        Err(format!("{} does not list {outside:?}", describe()))
    }
}

fn applies(statement: &Statement, action: &str, resource: &str) -> bool {
    let action_listed = statement.actions.iter().any(|p| glob(p, action, true));
    let resource_listed = statement.resources.iter().any(|p| glob(p, resource, false));
    action_listed != statement.not_action && resource_listed != statement.not_resource
}

/// Whether `policy` allows `access` on the resource with ARN `resource`;
/// `Err` says why not: the explicit `Deny`, the conditions of the
/// statements that would allow it, or that none does.
pub fn allows(policy: &Policy, access: &Access, resource: &str) -> Result<(), String> {
    let mut unmet = Vec::new();
    let mut allowed = false;
    for statement in &policy.statements {
        if !applies(statement, &access.action, resource) {
            continue;
        }
        let failed: Vec<String> = statement
            .conditions
            .iter()
            .filter_map(|c| holds(c, &access.context).err())
            .collect();
        match (statement.effect, failed.is_empty()) {
            (Effect::Deny, true) => return Err(format!("denied by {}", statement.sid)),
            (Effect::Allow, true) => allowed = true,
            (Effect::Allow, false) => unmet.push(format!(
                "{} allows it only if {}",
                statement.sid,
                failed.join(" and ")
            )),
            (Effect::Deny, false) => {}
        }
    }
    if allowed {
        return Ok(());
    }
    if !unmet.is_empty() {
        return Err(unmet.join("; "));
    }
    let elsewhere: BTreeSet<&str> = policy
        .statements
        .iter()
        .filter(|s| s.effect == Effect::Allow && !s.not_action)
        .filter(|s| s.actions.iter().any(|p| glob(p, &access.action, true)))
        .flat_map(|s| s.resources.iter().map(String::as_str))
        .collect();
    if elsewhere.is_empty() {
        Err("no statement of its Policies grants the action".to_owned())
    } else {
        Err(format!(
            "no statement grants it on this resource (granted on {elsewhere:?})"
        ))
    }
}
