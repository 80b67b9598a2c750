//! The IAM check the local pipeline's tests run ([`test_kit::iam`]):
//! requests map to the actions, resources and condition keys IAM sees;
//! the template's policies resolve for a stack; a permission a policy
//! lacks is reported with the function, the action, the resource and why.

use std::collections::HashMap;

use serde_json::json;
use serde_yaml::Value;
use test_kit::iam::policy::{Resolver, StackFacts};
use test_kit::iam::request::{Access, Resource, accesses};
use test_kit::iam::{Needed, findings};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";

/// A stack of a table `t-Items`, a queue `t-Jobs` and a KMS key `k-1`.
fn facts() -> StackFacts {
    let resources = [
        ("Items", "AWS::DynamoDB::Table", "t-Items"),
        (
            "Jobs",
            "AWS::SQS::Queue",
            "http://127.0.0.1:1/123456789012/t-Jobs",
        ),
        ("Key", "AWS::KMS::Key", "k-1"),
    ];
    StackFacts {
        parameters: HashMap::from([("BusName".to_owned(), String::new())]),
        resources: resources
            .iter()
            .map(|(id, t, p)| ((*id).to_owned(), ((*t).to_owned(), (*p).to_owned())))
            .collect(),
        function_arns: HashMap::from([(
            "Worker".to_owned(),
            format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:t-Worker"),
        )]),
        stack_name: "t".to_owned(),
        region: REGION.to_owned(),
        account: ACCOUNT.to_owned(),
    }
}

/// A template whose function `Worker` has `statements`.
fn template_with(statements: &str) -> Value {
    let text = format!(
        r#"
Parameters:
  BusName: {{Type: String, Default: ""}}
Conditions:
  CreateBus: !Equals [!Ref BusName, ""]
Resources:
  Bus:
    Type: AWS::Events::EventBus
    Condition: CreateBus
    Properties:
      Name: !Sub "${{AWS::StackName}}-bus"
  Worker:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Version: "2012-10-17"
          Statement:
{statements}
"#
    );
    serde_yaml::from_str(&text).unwrap()
}

fn needed(target: &str, body: serde_json::Value) -> Vec<(String, Needed)> {
    accesses(target, body.to_string().as_bytes())
        .unwrap()
        .into_iter()
        .map(|a| ("Worker".to_owned(), Needed::Access(a)))
        .collect()
}

fn put_item() -> Vec<(String, Needed)> {
    needed(
        "DynamoDB_20120810.PutItem",
        json!({"TableName": "t-Items", "Item": {"id": {"S": "1"}}}),
    )
}

#[test]
fn a_policy_without_the_grant_is_reported_with_function_action_and_resource() {
    let template = template_with(
        r"
            - Sid: ReadItems
              Effect: Allow
              Action: [dynamodb:Query, dynamodb:GetItem]
              Resource: !GetAtt Items.Arn",
    );
    let found = findings(&template, &facts(), put_item());
    assert_eq!(found.len(), 1, "{found:?}");
    let finding = &found[0];
    assert_eq!(finding.function, "Worker");
    assert_eq!(finding.action, "dynamodb:PutItem");
    assert_eq!(
        finding.resource,
        "arn:aws:dynamodb:us-east-1:123456789012:table/t-Items"
    );
    assert_eq!(finding.resource_id.as_deref(), Some("Items"));
    let message = finding.to_string();
    for part in [
        "Worker",
        "dynamodb:PutItem",
        "table/t-Items",
        "(Items)",
        "no statement",
    ] {
        assert!(message.contains(part), "{message}");
    }

    // Granted, on the same resource written another way: nothing to report.
    let granted = template_with(
        r#"
            - Effect: Allow
              Action: dynamodb:*Item
              Resource: !Sub "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${Items}""#,
    );
    assert_eq!(findings(&granted, &facts(), put_item()), []);
    // On another resource only: reported, naming where it is granted.
    let elsewhere = template_with(
        r#"
            - Effect: Allow
              Action: dynamodb:PutItem
              Resource: !Sub "${Items.Arn}/index/*""#,
    );
    let found = findings(&elsewhere, &facts(), put_item());
    assert!(
        found[0].reason.contains("granted on") && found[0].reason.contains("index/*"),
        "{found:?}"
    );
    // An explicit Deny wins over an Allow.
    let denied = template_with(
        r"
            - Effect: Allow
              Action: '*'
              Resource: '*'
            - Sid: NoWrites
              Effect: Deny
              Action: dynamodb:PutItem
              Resource: '*'",
    );
    let found = findings(&denied, &facts(), put_item());
    assert!(found[0].reason.contains("NoWrites"), "{found:?}");
}

#[test]
fn attribute_and_return_value_conditions_hold_the_request_to_its_list() {
    let template = template_with(
        r"
            - Sid: TrackHealth
              Effect: Allow
              Action: dynamodb:UpdateItem
              Resource: !GetAtt Items.Arn
              Condition:
                ForAllValues:StringEquals:
                  dynamodb:Attributes: [id, status, version]
                StringEqualsIfExists:
                  dynamodb:ReturnValues: [NONE, UPDATED_NEW]",
    );
    let update = |expression: &str, return_values: Option<&str>| {
        let mut body = json!({
            "TableName": "t-Items",
            "Key": {"id": {"S": "1"}},
            "UpdateExpression": expression,
            "ConditionExpression": "attribute_exists(id)",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":s": {"S": "x"}, ":one": {"N": "1"}},
        });
        if let Some(r) = return_values {
            body["ReturnValues"] = json!(r);
        }
        needed("DynamoDB_20120810.UpdateItem", body)
    };
    let facts = facts();
    assert_eq!(
        findings(
            &template,
            &facts,
            update("SET #s = :s, version = version + :one", None)
        ),
        []
    );
    assert_eq!(
        findings(
            &template,
            &facts,
            update("SET #s = :s", Some("UPDATED_NEW"))
        ),
        []
    );
    let wide = findings(&template, &facts, update("SET #s = :s, secret = :s", None));
    assert!(
        wide.len() == 1 && wide[0].reason.contains("\"secret\""),
        "an attribute outside the list is named: {wide:?}"
    );
    let all_new = findings(&template, &facts, update("SET #s = :s", Some("ALL_NEW")));
    assert!(
        all_new.len() == 1 && all_new[0].reason.contains("ALL_NEW"),
        "the whole item back is refused: {all_new:?}"
    );
}

#[test]
fn kms_calls_are_held_to_their_encryption_context() {
    let template = template_with(
        r"
            - Effect: Allow
              Action: kms:Decrypt
              Resource: !GetAtt Key.Arn
              Condition:
                StringEquals:
                  kms:EncryptionContext:purpose: signing",
    );
    let decrypt = |purpose: &str| {
        needed(
            "TrentService.Decrypt",
            json!({"KeyId": "k-1", "EncryptionContext": {"purpose": purpose, "v": "1"}}),
        )
    };
    assert_eq!(findings(&template, &facts(), decrypt("signing")), []);
    assert_eq!(findings(&template, &facts(), decrypt("other")).len(), 1);
    let generate = needed(
        "TrentService.GenerateDataKey",
        json!({"KeyId": format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/k-1"), "EncryptionContext": {"purpose": "signing"}}),
    );
    let found = findings(&template, &facts(), generate);
    assert_eq!(found[0].action, "kms:GenerateDataKey");
    assert_eq!(found[0].resource_id.as_deref(), Some("Key"));
}

#[test]
fn intrinsic_functions_resolve_for_the_stack() {
    let template = template_with("            []");
    let facts = facts();
    let resolver = Resolver::new(&template, &facts);
    let resolve = |yaml: &str| {
        let value: Value = serde_yaml::from_str(yaml).unwrap();
        format!("{:?}", resolver.resolve(&value).unwrap().unwrap())
    };
    assert!(resolve("!GetAtt Jobs.Arn").contains("arn:aws:sqs:us-east-1:123456789012:t-Jobs"));
    assert!(resolve("!Ref Jobs").contains("/123456789012/t-Jobs"));
    assert!(resolve("{\"Fn::GetAtt\": [Key, Arn]}").contains("key/k-1"));
    assert!(resolve("!Sub '${Items.Arn}/index/ByJob'").contains("table/t-Items/index/ByJob"));
    // A bus the emulator lists without a physical id: its template name.
    assert!(
        resolve("!If [CreateBus, !GetAtt Bus.Arn, !Sub 'arn:aws:events:x:y:event-bus/${BusName}']")
            .contains("event-bus/t-bus")
    );
    assert!(resolve("[!GetAtt Items.Arn, !Ref AWS::NoValue]").contains("Many"));
    assert!(resolver.condition("CreateBus").unwrap());
}

#[test]
fn requests_map_to_the_actions_and_resources_iam_checks() {
    let one = |target: &str, body: serde_json::Value| -> Vec<(String, String)> {
        accesses(target, body.to_string().as_bytes())
            .unwrap()
            .into_iter()
            .map(|a: Access| (a.action, a.resource.arn(REGION, ACCOUNT)))
            .collect()
    };
    let queue = "http://127.0.0.1:1/123456789012/t-Jobs";
    let queue_arn = "arn:aws:sqs:us-east-1:123456789012:t-Jobs".to_owned();
    assert_eq!(
        one(
            "AmazonSQS.SendMessageBatch",
            json!({"QueueUrl": queue, "Entries": []})
        ),
        [("sqs:SendMessage".to_owned(), queue_arn.clone())]
    );
    assert_eq!(
        one("AmazonSQS.DeleteMessageBatch", json!({"QueueUrl": queue})),
        [("sqs:DeleteMessage".to_owned(), queue_arn.clone())]
    );
    assert_eq!(
        one(
            "AmazonSQS.ChangeMessageVisibilityBatch",
            json!({"QueueUrl": queue})
        ),
        [("sqs:ChangeMessageVisibility".to_owned(), queue_arn)]
    );
    let table = |name: &str| format!("arn:aws:dynamodb:us-east-1:123456789012:table/{name}");
    assert_eq!(
        one(
            "DynamoDB_20120810.TransactWriteItems",
            json!({"TransactItems": [
                {"Put": {"TableName": "a", "Item": {}}},
                {"Update": {"TableName": "b", "Key": {}}},
                {"ConditionCheck": {"TableName": "a", "Key": {}}},
            ]})
        ),
        [
            ("dynamodb:PutItem".to_owned(), table("a")),
            ("dynamodb:UpdateItem".to_owned(), table("b")),
            ("dynamodb:ConditionCheckItem".to_owned(), table("a")),
        ]
    );
    assert_eq!(
        one(
            "DynamoDB_20120810.BatchWriteItem",
            json!({"RequestItems": {"a": [], "b": []}})
        ),
        [
            ("dynamodb:BatchWriteItem".to_owned(), table("a")),
            ("dynamodb:BatchWriteItem".to_owned(), table("b")),
        ]
    );
    assert_eq!(
        one(
            "DynamoDB_20120810.Query",
            json!({"TableName": "a", "IndexName": "ByLane"})
        ),
        [(
            "dynamodb:Query".to_owned(),
            format!("{}/index/ByLane", table("a"))
        )]
    );
    assert_eq!(
        one(
            "AWSEvents.PutEvents",
            json!({"Entries": [{"EventBusName": "ops"}, {"EventBusName": "ops"}, {}]})
        ),
        [
            (
                "events:PutEvents".to_owned(),
                "arn:aws:events:us-east-1:123456789012:event-bus/default".to_owned()
            ),
            (
                "events:PutEvents".to_owned(),
                "arn:aws:events:us-east-1:123456789012:event-bus/ops".to_owned()
            ),
        ]
    );
    // A service the mapping does not know is reported, never passed.
    assert!(accesses("AWSLambda.Invoke", b"{}").is_err());
    let unknown = findings(
        &template_with("            []"),
        &facts(),
        [(
            "Worker".to_owned(),
            Needed::Unmapped("no IAM mapping".to_owned()),
        )],
    );
    assert_eq!(unknown.len(), 1);
    // Resources print as ARNs with the stack's region and account.
    assert_eq!(
        Resource::Key("alias/k".to_owned()).arn(REGION, ACCOUNT),
        "arn:aws:kms:us-east-1:123456789012:alias/k"
    );
}
