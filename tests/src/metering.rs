//! Billing units of AWS calls, counted from the requests and answers that
//! cross the [`crate::aws_proxy::AwsProxy`]: what the cost benchmark
//! multiplies by the price table.
//!
//! - SQS bills requests, each 64 KiB chunk of a request's payload as one
//!   request (a `SendMessageBatch` of ten 1.4 KiB messages is one, a
//!   `ReceiveMessage` answer of 200 KiB is four).
//! - DynamoDB on demand bills write request units (one per started KiB of
//!   each item written, twice that in a transaction) and read request units
//!   (one per started 4 KiB read with strong consistency, half that with
//!   eventual consistency), sized with DynamoDB's item-size rules
//!   ([`item_size`]).
//! - DynamoDB Streams reads by a Lambda event source mapping are free.
//!
//! Sizes come from the JSON that crosses the wire. Some are estimates, said
//! where they are made: `UpdateItem`, `DeleteItem`, the deletes of a
//! `BatchWriteItem` and the non-`Put` parts of a `TransactWriteItems` are
//! billed on the stored item, which the request does not show (the
//! request's own key and values are used), and a `Query` with a filter is
//! billed on the items it examined, not only those it returned.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Bytes of one SQS billing chunk.
pub const SQS_CHUNK: usize = 64 * 1024;

/// What one operation consumed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// API calls.
    pub calls: u64,
    /// Billing units: SQS requests, DynamoDB WRUs or RRUs, or 0 for free calls.
    pub units: f64,
}

/// The billing dimension of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    /// SQS requests (64 KiB chunks).
    SqsRequests,
    /// DynamoDB write request units.
    DynamoWrites,
    /// DynamoDB read request units.
    DynamoReads,
    /// Not billed (stream reads by Lambda, control-plane calls).
    Free,
}

/// One metered call: its `x-amz-target` and the bodies both ways.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// `x-amz-target`, e.g. `AmazonSQS.SendMessageBatch`.
    pub target: &'a str,
    /// The request body.
    pub request: &'a [u8],
    /// The answer's body.
    pub response: &'a [u8],
    /// Whether the answer was a success (2xx).
    pub ok: bool,
    /// The request's `Authorization` header: its SigV4 credential names
    /// the caller's access key id.
    pub authorization: Option<&'a str>,
}

/// Units consumed by one call, with their dimension.
pub fn units(call: Call<'_>) -> (Dimension, f64) {
    let Some((service, operation)) = call.target.split_once('.') else {
        return (Dimension::Free, 0.0);
    };
    match service {
        "AmazonSQS" => {
            // Every call is billed, failed ones too.
            let payload = call.request.len().max(call.response.len()).max(1);
            (Dimension::SqsRequests, payload.div_ceil(SQS_CHUNK) as f64)
        }
        s if s.starts_with("DynamoDB_") => dynamodb_units(operation, call),
        _ => (Dimension::Free, 0.0),
    }
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap_or(Value::Null)
}

fn write_units(item: &Value) -> f64 {
    item_size(item).max(1).div_ceil(1024) as f64
}

fn read_units(bytes: usize, consistent: bool) -> f64 {
    let units = bytes.max(1).div_ceil(4096) as f64;
    if consistent { units } else { units / 2.0 }
}

/// The dimension a DynamoDB operation is billed in.
fn dynamodb_dimension(operation: &str) -> Dimension {
    match operation {
        "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem" | "TransactWriteItems" => {
            Dimension::DynamoWrites
        }
        "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems" => {
            Dimension::DynamoReads
        }
        _ => Dimension::Free,
    }
}

fn dynamodb_units(operation: &str, call: Call<'_>) -> (Dimension, f64) {
    if !call.ok {
        // A refused request consumes no capacity (a failed condition still
        // does, but the benchmark's workloads have none to speak of); its
        // dimension stays the operation's, so the label keeps it.
        return (dynamodb_dimension(operation), 0.0);
    }
    let request = json(call.request);
    let consistent = request["ConsistentRead"].as_bool().unwrap_or(false);
    match operation {
        "PutItem" => (Dimension::DynamoWrites, write_units(&request["Item"])),
        // Estimates: billed on the stored item, which the request does not show.
        "UpdateItem" | "DeleteItem" => {
            let mut shown = request["Key"].clone();
            if let (Some(key), Some(values)) = (
                shown.as_object_mut(),
                request["ExpressionAttributeValues"].as_object(),
            ) {
                key.extend(values.clone());
            }
            (Dimension::DynamoWrites, write_units(&shown))
        }
        "BatchWriteItem" => {
            let mut wru = 0.0;
            for requests in request["RequestItems"].as_object().into_iter().flatten() {
                for r in requests.1.as_array().into_iter().flatten() {
                    wru += match (&r["PutRequest"]["Item"], &r["DeleteRequest"]["Key"]) {
                        (item @ Value::Object(_), _) => write_units(item),
                        (_, key) => write_units(key),
                    };
                }
            }
            // Unprocessed items are sent again and billed then.
            let response = json(call.response);
            for requests in response["UnprocessedItems"]
                .as_object()
                .into_iter()
                .flatten()
            {
                for r in requests.1.as_array().into_iter().flatten() {
                    wru -= write_units(&r["PutRequest"]["Item"]);
                }
            }
            (Dimension::DynamoWrites, wru.max(0.0))
        }
        "TransactWriteItems" => {
            let mut wru = 0.0;
            for item in request["TransactItems"].as_array().into_iter().flatten() {
                let written = if item["Put"].is_object() {
                    &item["Put"]["Item"]
                } else {
                    item.as_object()
                        .and_then(|o| o.values().next())
                        .map_or(&Value::Null, |op| &op["Key"])
                };
                wru += 2.0 * write_units(written);
            }
            (Dimension::DynamoWrites, wru)
        }
        "GetItem" => {
            let response = json(call.response);
            (
                Dimension::DynamoReads,
                read_units(item_size(&response["Item"]), consistent),
            )
        }
        "BatchGetItem" => {
            let response = json(call.response);
            let mut rru = 0.0;
            for items in response["Responses"].as_object().into_iter().flatten() {
                for item in items.1.as_array().into_iter().flatten() {
                    rru += read_units(item_size(item), consistent);
                }
            }
            (Dimension::DynamoReads, rru)
        }
        "Query" | "Scan" => {
            let response = json(call.response);
            let bytes: usize = response["Items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(item_size)
                .sum();
            (Dimension::DynamoReads, read_units(bytes, consistent))
        }
        _ => (Dimension::Free, 0.0),
    }
}

/// Size in bytes of a DynamoDB item (or key) in its JSON wire form,
/// `{"name": {"S": "..."}, ...}`, by DynamoDB's rules: attribute names and
/// string values count their UTF-8 bytes, binaries their raw bytes,
/// numbers about one byte per two significant digits plus one, booleans and
/// nulls one byte, lists and maps three bytes plus one per element. `Null`
/// (no item) is 0.
pub fn item_size(item: &Value) -> usize {
    item.as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

fn value_size(value: &Value) -> usize {
    let Some((kind, v)) = value.as_object().and_then(|o| o.iter().next()) else {
        return 0;
    };
    let strings = || v.as_array().into_iter().flatten().filter_map(Value::as_str);
    match kind.as_str() {
        "S" => v.as_str().map_or(0, str::len),
        "N" => v.as_str().map_or(0, number_size),
        "B" => v.as_str().map_or(0, base64_len),
        "BOOL" | "NULL" => 1,
        "SS" => strings().map(str::len).sum(),
        "NS" => strings().map(number_size).sum(),
        "BS" => strings().map(base64_len).sum(),
        "L" => {
            3 + v
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| 1 + value_size(e))
                .sum::<usize>()
        }
        "M" => {
            3 + v
                .as_object()
                .into_iter()
                .flatten()
                .map(|(name, e)| 1 + name.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

fn number_size(n: &str) -> usize {
    let mantissa = n.split(['e', 'E']).next().unwrap_or_default();
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

fn base64_len(b: &str) -> usize {
    let padding = b.bytes().rev().take_while(|&c| c == b'=').count();
    (b.len() * 3 / 4).saturating_sub(padding)
}

/// Usage by `x-amz-target`, filled by a proxy observer.
#[derive(Debug, Clone, Default)]
pub struct Meter {
    usage: Arc<Mutex<BTreeMap<String, (Dimension, Usage)>>>,
}

impl Meter {
    /// Adds one call, under its target.
    pub fn record(&self, call: Call<'_>) {
        self.record_as(call.target, call);
    }

    /// Adds one call under `label` (e.g. the target and a qualifier).
    pub fn record_as(&self, label: &str, call: Call<'_>) {
        let (dimension, units) = units(call);
        let mut usage = self.usage.lock().unwrap_or_else(|p| p.into_inner());
        let entry = usage
            .entry(label.to_owned())
            .or_insert((dimension, Usage::default()));
        entry.1.calls += 1;
        entry.1.units += units;
    }

    /// Usage so far, by target.
    pub fn usage(&self) -> BTreeMap<String, (Dimension, Usage)> {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Forgets everything recorded.
    pub fn reset(&self) {
        self.usage.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call<'a>(target: &'a str, request: &'a [u8], response: &'a [u8]) -> Call<'a> {
        Call {
            target,
            request,
            response,
            ok: true,
            authorization: None,
        }
    }

    #[test]
    fn item_sizes_follow_dynamodb_rules() {
        // Names and strings count UTF-8 bytes.
        assert_eq!(item_size(&json!({"pk": {"S": "acme"}})), 2 + 4);
        assert_eq!(item_size(&json!({"é": {"S": "ü"}})), 2 + 2);
        // Numbers: (significant digits / 2, rounded up) + 1.
        assert_eq!(item_size(&json!({"n": {"N": "12345"}})), 1 + 4);
        assert_eq!(item_size(&json!({"n": {"N": "-0.00120"}})), 1 + 2);
        // Binary counts raw bytes; booleans and nulls one byte.
        assert_eq!(item_size(&json!({"b": {"B": "AAEC"}})), 1 + 3);
        assert_eq!(
            item_size(&json!({"t": {"BOOL": true}, "z": {"NULL": true}})),
            4
        );
        // Lists and maps: 3 bytes, plus 1 per element, plus names in maps.
        assert_eq!(
            item_size(&json!({"l": {"L": [{"S": "ab"}, {"N": "1"}]}})),
            1 + 3 + (1 + 2) + (1 + 2)
        );
        assert_eq!(
            item_size(&json!({"m": {"M": {"k": {"S": "v"}}}})),
            1 + 3 + (1 + 1 + 1)
        );
        assert_eq!(item_size(&Value::Null), 0);
    }

    #[test]
    fn a_failed_call_keeps_its_operation_s_dimension() {
        let failed = Call {
            target: "DynamoDB_20120810.BatchWriteItem",
            request: b"{}",
            response: b"{}",
            ok: false,
            authorization: None,
        };
        assert_eq!(units(failed), (Dimension::DynamoWrites, 0.0));
    }

    #[test]
    fn sqs_requests_are_billed_per_64_kib_chunk() {
        let small = vec![b'x'; 14_000];
        let large = vec![b'x'; 200_000];
        assert_eq!(
            units(call("AmazonSQS.SendMessageBatch", &small, b"{}")),
            (Dimension::SqsRequests, 1.0)
        );
        assert_eq!(
            units(call("AmazonSQS.ReceiveMessage", b"{}", &large)),
            (Dimension::SqsRequests, 4.0)
        );
        assert_eq!(
            units(call("AmazonSQS.ReceiveMessage", b"{}", b"{}")),
            (Dimension::SqsRequests, 1.0)
        );
    }

    #[test]
    fn dynamodb_units_per_item_and_consistency() {
        let big = "x".repeat(1500);
        let put = json!({"RequestItems": {"T": [
            {"PutRequest": {"Item": {"a": {"S": "small"}}}},
            {"PutRequest": {"Item": {"a": {"S": big}}}},
        ]}})
        .to_string();
        assert_eq!(
            units(call(
                "DynamoDB_20120810.BatchWriteItem",
                put.as_bytes(),
                b"{}"
            )),
            (Dimension::DynamoWrites, 3.0)
        );
        let item = json!({"Item": {"a": {"S": "x".repeat(5000)}}}).to_string();
        assert_eq!(
            units(call("DynamoDB_20120810.GetItem", b"{}", item.as_bytes())),
            (Dimension::DynamoReads, 1.0)
        );
        assert_eq!(
            units(call(
                "DynamoDB_20120810.GetItem",
                br#"{"ConsistentRead":true}"#,
                item.as_bytes()
            )),
            (Dimension::DynamoReads, 2.0)
        );
        let tx = json!({"TransactItems": [{"Put": {"Item": {"a": {"S": "x"}}}}]}).to_string();
        assert_eq!(
            units(call(
                "DynamoDB_20120810.TransactWriteItems",
                tx.as_bytes(),
                b"{}"
            )),
            (Dimension::DynamoWrites, 2.0)
        );
        assert_eq!(
            units(call("DynamoDBStreams_20120810.GetRecords", b"{}", b"{}")),
            (Dimension::Free, 0.0)
        );
    }
}
