//! What an AWS request needs from IAM: each action it performs, on which
//! resource, with the request's values of the condition keys the template
//! uses.
//!
//! The functions talk to DynamoDB, DynamoDB Streams, SQS, EventBridge and
//! KMS, all with JSON protocols whose `x-amz-target` names the operation.
//! Most operations are the IAM action of the same name; the exceptions are
//! mapped here (`SendMessageBatch` needs `sqs:SendMessage`, a
//! `TransactWriteItems` needs the action of each item on its table, ...).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// A resource a request acts on, as the request names it; turned into an
/// ARN with the stack's region and account ([`Resource::arn`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// A DynamoDB table, or one of its indexes.
    Table {
        /// Table name.
        name: String,
        /// Index name.
        index: Option<String>,
    },
    /// An SQS queue, by name.
    Queue(String),
    /// A KMS key: its id, ARN or alias.
    Key(String),
    /// An EventBridge bus: its name or ARN.
    Bus(String),
    /// An ARN as the request gives it (a stream's).
    Arn(String),
    /// Not named by the request (IAM's `*`).
    Any,
}

impl Resource {
    /// The resource's ARN in `region` of `account`.
    pub fn arn(&self, region: &str, account: &str) -> String {
        let arn =
            |service: &str, rest: &str| format!("arn:aws:{service}:{region}:{account}:{rest}");
        match self {
            Self::Table { name, index: None } => arn("dynamodb", &format!("table/{name}")),
            Self::Table {
                name,
                index: Some(index),
            } => arn("dynamodb", &format!("table/{name}/index/{index}")),
            Self::Queue(name) => arn("sqs", name),
            Self::Key(id) if id.starts_with("arn:") => id.clone(),
            Self::Key(id) if id.starts_with("alias/") => arn("kms", id),
            Self::Key(id) => arn("kms", &format!("key/{id}")),
            Self::Bus(name) if name.starts_with("arn:") => name.clone(),
            Self::Bus(name) => arn("events", &format!("event-bus/{name}")),
            Self::Arn(arn) => arn.clone(),
            Self::Any => "*".to_owned(),
        }
    }
}

/// One permission a request needs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Access {
    /// The IAM action, e.g. `dynamodb:UpdateItem`.
    pub action: String,
    /// What it acts on.
    pub resource: Resource,
    /// The request's values of condition keys: `dynamodb:Attributes` (every
    /// top-level attribute the request names), `dynamodb:ReturnValues`,
    /// `dynamodb:Select`, `kms:EncryptionContext:<key>` and
    /// `kms:EncryptionContextKeys`. A key the request does not set is absent.
    pub context: BTreeMap<String, BTreeSet<String>>,
}

impl Access {
    fn new(action: impl Into<String>, resource: Resource) -> Self {
        Self {
            action: action.into(),
            resource,
            context: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, values: impl IntoIterator<Item = String>) -> Self {
        self.context
            .entry(key.to_owned())
            .or_default()
            .extend(values);
        self
    }

    fn with_if(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.with(key, [v.to_owned()]),
            None => self,
        }
    }
}

/// The accesses the request with `x-amz-target` `target` and JSON body
/// `body` needs; an error names a service the mapping does not know.
pub fn accesses(target: &str, body: &[u8]) -> Result<Vec<Access>, String> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (service, operation) = target
        .split_once('.')
        .ok_or_else(|| format!("{target:?} is not SERVICE.Operation"))?;
    match service {
        "DynamoDB_20120810" => Ok(dynamodb(operation, &request)),
        "DynamoDBStreams_20120810" => {
            let resource = request["StreamArn"]
                .as_str()
                .map_or(Resource::Any, |a| Resource::Arn(a.to_owned()));
            Ok(vec![Access::new(format!("dynamodb:{operation}"), resource)])
        }
        "AmazonSQS" => Ok(vec![sqs(operation, &request)]),
        "AWSEvents" => Ok(events(operation, &request)),
        "TrentService" => Ok(vec![kms(operation, &request)]),
        _ => Err(format!("no IAM mapping for service {service} ({target})")),
    }
}

fn str_of<'a>(value: &'a Value, field: &str) -> Option<&'a str> {
    value.get(field).and_then(Value::as_str)
}

fn sqs(operation: &str, request: &Value) -> Access {
    let action = match operation {
        "SendMessageBatch" => "SendMessage",
        "DeleteMessageBatch" => "DeleteMessage",
        "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
        other => other,
    };
    let queue = str_of(request, "QueueUrl")
        .and_then(|url| url.trim_end_matches('/').rsplit('/').next())
        .or_else(|| str_of(request, "QueueName"));
    Access::new(
        format!("sqs:{action}"),
        queue.map_or(Resource::Any, |q| Resource::Queue(q.to_owned())),
    )
}

fn events(operation: &str, request: &Value) -> Vec<Access> {
    if operation == "PutEvents" {
        let buses: BTreeSet<&str> = request["Entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| str_of(e, "EventBusName").unwrap_or("default"))
            .collect();
        return buses
            .into_iter()
            .map(|bus| Access::new("events:PutEvents", Resource::Bus(bus.to_owned())))
            .collect();
    }
    let bus = str_of(request, "EventBusName").or_else(|| str_of(request, "Name"));
    vec![Access::new(
        format!("events:{operation}"),
        bus.map_or(Resource::Any, |b| Resource::Bus(b.to_owned())),
    )]
}

fn kms(operation: &str, request: &Value) -> Access {
    let key = str_of(request, "KeyId").map_or(Resource::Any, |k| Resource::Key(k.to_owned()));
    let mut access = Access::new(format!("kms:{operation}"), key);
    if let Some(context) = request["EncryptionContext"].as_object() {
        for (k, v) in context {
            access = access.with(
                &format!("kms:EncryptionContext:{k}"),
                v.as_str().map(str::to_owned),
            );
        }
        access = access.with("kms:EncryptionContextKeys", context.keys().cloned());
    }
    access
}

fn table(request: &Value) -> Resource {
    str_of(request, "TableName").map_or(Resource::Any, |name| Resource::Table {
        name: name.to_owned(),
        index: str_of(request, "IndexName").map(str::to_owned),
    })
}

fn dynamodb(operation: &str, request: &Value) -> Vec<Access> {
    let one = |action: &str, request: &Value, resource: Resource| {
        Access::new(format!("dynamodb:{action}"), resource)
            .with("dynamodb:Attributes", attributes(request))
            .with_if("dynamodb:ReturnValues", str_of(request, "ReturnValues"))
            .with_if("dynamodb:Select", str_of(request, "Select"))
    };
    match operation {
        "BatchWriteItem" | "BatchGetItem" => request["RequestItems"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, requests)| {
                let names: BTreeSet<String> = match requests {
                    // BatchWriteItem: a list of Put and Delete requests.
                    Value::Array(list) => list
                        .iter()
                        .flat_map(|r| {
                            let item = if r["PutRequest"].is_object() {
                                &r["PutRequest"]["Item"]
                            } else {
                                &r["DeleteRequest"]["Key"]
                            };
                            item.as_object()
                                .into_iter()
                                .flatten()
                                .map(|(k, _)| k.clone())
                        })
                        .collect(),
                    // BatchGetItem: keys and a projection.
                    other => attributes(other),
                };
                Access::new(
                    format!("dynamodb:{operation}"),
                    Resource::Table {
                        name: name.clone(),
                        index: None,
                    },
                )
                .with("dynamodb:Attributes", names)
            })
            .collect(),
        "TransactWriteItems" | "TransactGetItems" => request["TransactItems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| item.as_object()?.iter().next())
            .map(|(kind, item)| {
                let action = match kind.as_str() {
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "ConditionCheck" => "ConditionCheckItem",
                    "Get" => "GetItem",
                    other => other,
                };
                one(action, item, table(item))
            })
            .collect(),
        _ => vec![one(operation, request, table(request))],
    }
}

/// Every top-level attribute name a DynamoDB request (or transaction item)
/// names: its key, its item, and those its expressions use.
fn attributes(request: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for field in ["Key", "Item"] {
        names.extend(
            request[field]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
    }
    // BatchGetItem: a list of keys.
    for key in request["Keys"].as_array().into_iter().flatten() {
        names.extend(
            key.as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone()),
        );
    }
    names.extend(
        request["AttributesToGet"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned),
    );
    let aliases = &request["ExpressionAttributeNames"];
    for field in [
        "UpdateExpression",
        "ConditionExpression",
        "ProjectionExpression",
        "KeyConditionExpression",
        "FilterExpression",
    ] {
        if let Some(expression) = str_of(request, field) {
            names.extend(expression_names(expression, aliases));
        }
    }
    names
}

/// Words of DynamoDB's expression grammar that are not attribute names.
const KEYWORDS: [&str; 9] = [
    "SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "IN", "BETWEEN",
];

/// The top-level attribute names of a DynamoDB expression: names and
/// `#aliases` (resolved through `aliases`) that start a path, leaving out
/// keywords, function names, `:values` and the later parts of a path.
pub fn expression_names(expression: &str, aliases: &Value) -> BTreeSet<String> {
    let chars: Vec<char> = expression.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    // The last character before the current token that is not a space.
    let mut before = ' ';
    while i < chars.len() {
        let c = chars[i];
        let word = |start: usize| {
            let mut end = start;
            while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            end
        };
        if c == ':' {
            let end = word(i + 1);
            before = 'v';
            i = end;
            continue;
        }
        if c == '#' || c.is_alphabetic() || c == '_' {
            let start = if c == '#' { i + 1 } else { i };
            let end = word(start);
            let token: String = chars[i..end].iter().collect();
            let next = chars[end..].iter().find(|c| !c.is_whitespace());
            let nested = before == '.';
            let function = next == Some(&'(');
            let keyword = c != '#' && KEYWORDS.contains(&token.to_ascii_uppercase().as_str());
            if !nested && !function && !keyword {
                if c == '#' {
                    let name = aliases[&token].as_str().unwrap_or(&token);
                    names.insert(name.to_owned());
                } else {
                    names.insert(token);
                }
            }
            before = 'w';
            i = end;
            continue;
        }
        if !c.is_whitespace() {
            before = c;
        }
        i += 1;
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expression_names_are_the_top_level_attributes() {
        let aliases = json!({"#status": "status", "#m": "map"});
        let names = expression_names(
            "SET #status = :archived, archived_at = :now, #m.inner[0] = :x, \
             version = if_not_exists(version, :zero) + :one REMOVE probe_lane, next_probe_at",
            &aliases,
        );
        let expected: BTreeSet<String> = [
            "status",
            "archived_at",
            "map",
            "version",
            "probe_lane",
            "next_probe_at",
        ]
        .map(str::to_owned)
        .into();
        assert_eq!(names, expected);
        let condition = expression_names(
            "attribute_exists(subscription_id) AND breaker IN (:open, :half) AND NOT begins_with(x, :p)",
            &Value::Null,
        );
        assert_eq!(
            condition,
            ["breaker", "subscription_id", "x"]
                .map(str::to_owned)
                .into()
        );
    }
}
