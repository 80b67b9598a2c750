//! What CloudFormation made of the template in the emulator, read back
//! through the AWS APIs: the stack's resources and outputs (CloudFormation),
//! each function's configuration and event source mappings (Lambda), and
//! the schedules (EventBridge rules). The local runners take every setting
//! from here, so they run what the template deploys.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_config::SdkConfig;
use shared::config::Vars;

use super::gaps::{self, Gap};
use crate::stream::StartPosition;

/// The deployed stack could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StackReadError {
    /// An AWS call failed.
    #[error("{operation} for stack {stack}: {message}")]
    Request {
        /// The API call.
        operation: &'static str,
        /// The stack.
        stack: String,
        /// The service's answer.
        message: String,
    },
    /// The stack lacks a resource the local stack needs.
    #[error("stack {stack} has no {resource_type} {logical_id}")]
    Missing {
        /// The stack.
        stack: String,
        /// The logical id asked for.
        logical_id: String,
        /// The kind of resource asked for.
        resource_type: &'static str,
    },
    /// The template body is not the JSON CloudFormation was given.
    #[error("the deployed template is not JSON: {0}")]
    Template(#[from] serde_json::Error),
}

/// One resource of the stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackResource {
    /// CloudFormation type, e.g. `AWS::SQS::Queue`.
    pub resource_type: String,
    /// Physical id: a table's name, a queue's URL, a function's name.
    pub physical_id: String,
}

/// A Lambda function of the stack, as Lambda holds it.
#[derive(Clone)]
pub struct Function {
    /// Logical id in the template.
    pub logical_id: String,
    /// Function name.
    pub name: String,
    /// Function ARN.
    pub arn: String,
    /// Environment variables as CloudFormation resolved them.
    pub environment: HashMap<String, String>,
    /// The function's timeout (Lambda's default, 3 s, when unset).
    pub timeout: std::time::Duration,
    /// The function's memory in MB (Lambda's default, 128, when unset).
    pub memory_mb: u32,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Variable names only: values may be secrets.
        let mut names: Vec<&str> = self.environment.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Function")
            .field("logical_id", &self.logical_id)
            .field("name", &self.name)
            .field("environment", &names)
            .finish_non_exhaustive()
    }
}

impl Function {
    /// The environment with `local` set on top (local-only variables such
    /// as the allow-list), as configuration [`Vars`].
    pub fn vars_with(&self, local: &[(&str, String)]) -> Vars {
        let mut env = self.environment.clone();
        for (k, v) in local {
            env.insert((*k).to_owned(), v.clone());
        }
        Vars::from_map(env)
    }
}

/// An event source mapping, as Lambda holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSourceMapping {
    /// The mapping's UUID.
    pub uuid: String,
    /// Logical id of the function it invokes.
    pub function: String,
    /// ARN of the stream or queue.
    pub source_arn: String,
    /// `BatchSize`.
    pub batch_size: usize,
    /// `MaximumBatchingWindowInSeconds`.
    pub batching_window: Duration,
    /// `StartingPosition` (streams).
    pub starting_position: Option<StartPosition>,
    /// `MaximumRetryAttempts` (streams; `None` retries until the record
    /// expires).
    pub max_retries: Option<u32>,
    /// `BisectBatchOnFunctionError` (streams).
    pub bisect: bool,
    /// `MaximumRecordAgeInSeconds` (streams).
    pub max_record_age: Option<Duration>,
    /// ARN of the on-failure destination (streams).
    pub on_failure_arn: Option<String>,
    /// `FilterCriteria` patterns.
    pub filters: Vec<String>,
    /// `ScalingConfig.MaximumConcurrency` (queues; Lambda scales to 1,000
    /// when unset).
    pub max_concurrency: Option<usize>,
    /// `FunctionResponseTypes` holds `ReportBatchItemFailures`.
    pub report_batch_item_failures: bool,
    /// `State` is `Enabled`.
    pub enabled: bool,
}

impl EventSourceMapping {
    /// Whether the source is a DynamoDB stream.
    pub fn is_stream(&self) -> bool {
        self.source_arn.contains(":dynamodb:") && self.source_arn.contains("/stream/")
    }

    /// Whether the source is an SQS queue.
    pub fn is_queue(&self) -> bool {
        self.source_arn.starts_with("arn:aws:sqs:")
    }
}

/// A schedule of the stack: an EventBridge rule with a schedule
/// expression and a function target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Logical id of the rule.
    pub rule: String,
    /// `rate(...)` or `cron(...)`.
    pub expression: String,
    /// Logical ids of the functions it invokes.
    pub targets: Vec<String>,
    /// `State` is `ENABLED`.
    pub enabled: bool,
}

/// The deployed stack.
#[derive(Debug, Clone)]
pub struct DeployedStack {
    /// Stack name.
    pub name: String,
    resources: BTreeMap<String, StackResource>,
    /// Outputs by key.
    pub outputs: HashMap<String, String>,
    /// The parameters it was deployed with, by key (those left to their
    /// default may be absent).
    pub parameters: HashMap<String, String>,
    /// Functions by logical id.
    pub functions: BTreeMap<String, Function>,
    /// Every event source mapping of the stack's functions.
    pub mappings: Vec<EventSourceMapping>,
    /// Every scheduled rule of the stack.
    pub schedules: Vec<Schedule>,
    /// Where the emulator falls short of what the template asks.
    pub gaps: Vec<Gap>,
    /// The HTTP API routes declared without an authorizer (`Auth:
    /// Authorizer: NONE`), read from the deployed template.
    pub public_routes: Vec<PublicRoute>,
}

/// A route of the stack's HTTP API that API Gateway serves without the
/// authorizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicRoute {
    /// Upper-case method, e.g. `GET`.
    pub method: String,
    /// Path template, e.g. `/console/{file}`.
    pub path: String,
}

/// The routes of every HTTP API in a CloudFormation JSON body (the SAM
/// transform's OpenAPI `Body`) whose `security` is `NONE` or empty.
pub fn public_routes(body: &str) -> Result<Vec<PublicRoute>, serde_json::Error> {
    let template: serde_json::Value = serde_json::from_str(body)?;
    let mut routes = Vec::new();
    let apis = template
        .get("Resources")
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|r| r.values())
        .filter(|r| r["Type"] == "AWS::ApiGatewayV2::Api");
    for api in apis {
        let Some(paths) = api["Properties"]["Body"]["paths"].as_object() else {
            continue;
        };
        for (path, operations) in paths {
            for (method, operation) in operations.as_object().into_iter().flatten() {
                let public = match operation.get("security").and_then(|s| s.as_array()) {
                    Some(schemes) => {
                        schemes.is_empty()
                            || schemes
                                .iter()
                                .all(|s| s.as_object().is_some_and(|o| o.contains_key("NONE")))
                    }
                    None => false,
                };
                if public {
                    routes.push(PublicRoute {
                        method: method.to_ascii_uppercase(),
                        path: path.clone(),
                    });
                }
            }
        }
    }
    Ok(routes)
}

fn request<'a, E>(operation: &'static str, stack: &'a str) -> impl FnOnce(E) -> StackReadError + 'a
where
    E: std::error::Error + 'static,
{
    move |e| StackReadError::Request {
        operation,
        stack: stack.to_owned(),
        message: aws_sdk_cloudformation::error::DisplayErrorContext(e).to_string(),
    }
}

/// Every resource of stack `stack`: all pages of `ListStackResources`,
/// or the error's text.
pub(crate) async fn list_resources(
    cfn: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<Vec<aws_sdk_cloudformation::types::StackResourceSummary>, String> {
    let mut all = Vec::new();
    let mut next = None;
    loop {
        let page = cfn
            .list_stack_resources()
            .stack_name(stack)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| aws_sdk_cloudformation::error::DisplayErrorContext(e).to_string())?;
        all.extend(page.stack_resource_summaries.unwrap_or_default());
        next = page.next_token;
        if next.is_none() {
            return Ok(all);
        }
    }
}

impl DeployedStack {
    /// Reads stack `name`, deployed from `template_body`, back from the
    /// emulator.
    pub async fn read(
        sdk: &SdkConfig,
        name: &str,
        template_body: &str,
    ) -> Result<Self, StackReadError> {
        let cfn = aws_sdk_cloudformation::Client::new(sdk);
        let lambda = aws_sdk_lambda::Client::new(sdk);
        let events = aws_sdk_eventbridge::Client::new(sdk);

        let mut resources = BTreeMap::new();
        let listed =
            list_resources(&cfn, name)
                .await
                .map_err(|message| StackReadError::Request {
                    operation: "ListStackResources",
                    stack: name.to_owned(),
                    message,
                })?;
        for r in listed {
            let (Some(id), Some(physical)) = (r.logical_resource_id, r.physical_resource_id) else {
                continue;
            };
            if id.is_empty() || physical.is_empty() {
                continue;
            }
            resources.insert(
                id,
                StackResource {
                    resource_type: r.resource_type.unwrap_or_default(),
                    physical_id: physical,
                },
            );
        }
        let described = cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(request("DescribeStacks", name))?
            .stacks
            .unwrap_or_default();
        let outputs = described
            .iter()
            .flat_map(|s| s.outputs())
            .filter_map(|o| Some((o.output_key.clone()?, o.output_value.clone()?)))
            .collect();
        let parameters = described
            .iter()
            .flat_map(|s| s.parameters())
            .filter_map(|p| Some((p.parameter_key.clone()?, p.parameter_value.clone()?)))
            .collect();

        let mut functions = BTreeMap::new();
        for (id, r) in resources
            .iter()
            .filter(|(_, r)| r.resource_type == "AWS::Lambda::Function")
        {
            let config = lambda
                .get_function_configuration()
                .function_name(&r.physical_id)
                .send()
                .await
                .map_err(request("GetFunctionConfiguration", name))?;
            functions.insert(
                id.clone(),
                Function {
                    logical_id: id.clone(),
                    name: config
                        .function_name
                        .unwrap_or_else(|| r.physical_id.clone()),
                    arn: config.function_arn.unwrap_or_default(),
                    timeout: std::time::Duration::from_secs(
                        config
                            .timeout
                            .and_then(|t| u64::try_from(t).ok())
                            .unwrap_or(3),
                    ),
                    memory_mb: config
                        .memory_size
                        .and_then(|m| u32::try_from(m).ok())
                        .unwrap_or(128),
                    environment: config
                        .environment
                        .and_then(|e| e.variables)
                        .unwrap_or_default(),
                },
            );
        }
        let mut mappings = Vec::new();
        for function in functions.values() {
            let listed = lambda
                .list_event_source_mappings()
                .function_name(&function.name)
                .send()
                .await
                .map_err(request("ListEventSourceMappings", name))?;
            mappings.extend(
                listed
                    .event_source_mappings
                    .unwrap_or_default()
                    .into_iter()
                    .map(|m| mapping(m, &function.logical_id)),
            );
        }
        let function_by_arn: HashMap<&str, &str> = functions
            .values()
            .map(|f| (f.arn.as_str(), f.logical_id.as_str()))
            .collect();
        let mut schedules = Vec::new();
        for (id, r) in resources
            .iter()
            .filter(|(_, r)| r.resource_type == "AWS::Events::Rule")
        {
            let rule = events
                .describe_rule()
                .name(&r.physical_id)
                .send()
                .await
                .map_err(request("DescribeRule", name))?;
            let Some(expression) = rule.schedule_expression else {
                continue;
            };
            let targets = events
                .list_targets_by_rule()
                .rule(&r.physical_id)
                .send()
                .await
                .map_err(request("ListTargetsByRule", name))?
                .targets
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| function_by_arn.get(t.arn.as_str()).map(|f| (*f).to_owned()))
                .collect();
            schedules.push(Schedule {
                rule: id.clone(),
                expression,
                targets,
                enabled: rule.state.is_none_or(|s| s.as_str() == "ENABLED"),
            });
        }
        let declared = gaps::declared_resources(template_body)?;
        let mut stack = Self {
            name: name.to_owned(),
            resources,
            outputs,
            parameters,
            functions,
            mappings,
            schedules,
            gaps: Vec::new(),
            public_routes: public_routes(template_body)?,
        };
        stack.gaps = gaps::find(&stack, &declared);
        Ok(stack)
    }

    /// Reads stack `name` as it is deployed now (for tools that run beside
    /// `make run`, such as the simulator and the redrive command).
    pub async fn read_existing(sdk: &SdkConfig, name: &str) -> Result<Self, StackReadError> {
        let body = aws_sdk_cloudformation::Client::new(sdk)
            .get_template()
            .stack_name(name)
            .send()
            .await
            .map_err(request("GetTemplate", name))?
            .template_body
            .unwrap_or_default();
        Self::read(sdk, name, &body).await
    }

    /// The resource `logical_id`, if the emulator created it.
    pub fn resource(&self, logical_id: &str) -> Option<&StackResource> {
        self.resources.get(logical_id)
    }

    /// Logical ids and resources the emulator created.
    pub fn resources(&self) -> impl Iterator<Item = (&str, &StackResource)> {
        self.resources.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn physical(
        &self,
        logical_id: &str,
        resource_type: &'static str,
    ) -> Result<&str, StackReadError> {
        self.resources
            .get(logical_id)
            .filter(|r| r.resource_type == resource_type)
            .map(|r| r.physical_id.as_str())
            .ok_or_else(|| StackReadError::Missing {
                stack: self.name.clone(),
                logical_id: logical_id.to_owned(),
                resource_type,
            })
    }

    /// The name of table `logical_id`.
    pub fn table(&self, logical_id: &str) -> Result<&str, StackReadError> {
        self.physical(logical_id, "AWS::DynamoDB::Table")
    }

    /// The URL of queue `logical_id`.
    pub fn queue_url(&self, logical_id: &str) -> Result<&str, StackReadError> {
        self.physical(logical_id, "AWS::SQS::Queue")
    }

    /// The URL of the stack's queue with ARN `arn`.
    pub fn queue_url_of_arn(&self, arn: &str) -> Option<&str> {
        let name = arn.rsplit(':').next()?;
        self.resources
            .values()
            .filter(|r| r.resource_type == "AWS::SQS::Queue")
            .map(|r| r.physical_id.as_str())
            .find(|url| url.rsplit('/').next() == Some(name))
    }

    /// Logical id of the stack's queue with ARN `arn`.
    pub fn queue_id_of_arn(&self, arn: &str) -> Option<&str> {
        let url = self.queue_url_of_arn(arn)?;
        self.resources
            .iter()
            .find(|(_, r)| r.physical_id == url)
            .map(|(id, _)| id.as_str())
    }

    /// The function `logical_id`.
    pub fn function(&self, logical_id: &str) -> Result<&Function, StackReadError> {
        self.functions
            .get(logical_id)
            .ok_or_else(|| StackReadError::Missing {
                stack: self.name.clone(),
                logical_id: logical_id.to_owned(),
                resource_type: "AWS::Lambda::Function",
            })
    }

    /// The event source mappings of function `logical_id`.
    pub fn mappings_of<'a>(
        &'a self,
        function: &'a str,
    ) -> impl Iterator<Item = &'a EventSourceMapping> + 'a {
        self.mappings.iter().filter(move |m| m.function == function)
    }
}

fn mapping(
    m: aws_sdk_lambda::types::EventSourceMappingConfiguration,
    function: &str,
) -> EventSourceMapping {
    use aws_sdk_lambda::types::{EventSourcePosition, FunctionResponseType};
    let seconds =
        |s: Option<i32>| Duration::from_secs(s.and_then(|s| u64::try_from(s).ok()).unwrap_or(0));
    EventSourceMapping {
        uuid: m.uuid.unwrap_or_default(),
        function: function.to_owned(),
        source_arn: m.event_source_arn.unwrap_or_default(),
        batch_size: m
            .batch_size
            .and_then(|b| usize::try_from(b).ok())
            .unwrap_or(10),
        batching_window: seconds(m.maximum_batching_window_in_seconds),
        starting_position: m.starting_position.and_then(|p| match p {
            EventSourcePosition::TrimHorizon => Some(StartPosition::TrimHorizon),
            EventSourcePosition::Latest => Some(StartPosition::Latest),
            _ => None,
        }),
        // -1 (or unset) retries until the record expires.
        max_retries: m.maximum_retry_attempts.and_then(|n| u32::try_from(n).ok()),
        bisect: m.bisect_batch_on_function_error.unwrap_or(false),
        max_record_age: m
            .maximum_record_age_in_seconds
            .filter(|s| *s > 0)
            .map(|s| seconds(Some(s))),
        on_failure_arn: m
            .destination_config
            .and_then(|d| d.on_failure)
            .and_then(|o| o.destination),
        filters: m
            .filter_criteria
            .and_then(|f| f.filters)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|f| f.pattern)
            .collect(),
        max_concurrency: m
            .scaling_config
            .and_then(|s| s.maximum_concurrency)
            .and_then(|n| usize::try_from(n).ok()),
        report_batch_item_failures: m
            .function_response_types
            .unwrap_or_default()
            .contains(&FunctionResponseType::ReportBatchItemFailures),
        enabled: m.state.is_none_or(|s| s == "Enabled"),
    }
}
