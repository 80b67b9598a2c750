//! The rules for what a Teams workflow ("Post to a channel when a webhook
//! request is received", trigger "When a Teams webhook request is
//! received") takes: a `message` with Adaptive Card attachments. What
//! the `teams` body format must satisfy.
//!
//! Sources:
//! - the envelope: <https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using#send-adaptive-cards-using-an-incoming-webhook>
//!   and the workflow: <https://learn.microsoft.com/en-us/power-automate/teams/overview>
//!   (answers `202 Accepted`);
//! - card elements and actions: <https://adaptivecards.io/explorer>;
//! - Teams renders cards up to schema 1.5, and a message is at most
//!   28 KB: <https://learn.microsoft.com/en-us/microsoftteams/platform/task-modules-and-cards/cards/cards-reference>.

use serde_json::Value;

/// The attachment content type of an Adaptive Card.
pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";

/// Card element types (<https://adaptivecards.io/explorer>, up to 1.5).
pub const ELEMENT_TYPES: [&str; 18] = [
    "TextBlock",
    "Image",
    "Media",
    "RichTextBlock",
    "Container",
    "ColumnSet",
    "FactSet",
    "ImageSet",
    "ActionSet",
    "Table",
    "Input.Text",
    "Input.Number",
    "Input.Date",
    "Input.Time",
    "Input.Toggle",
    "Input.ChoiceSet",
    "Column",
    "TableCell",
];

/// Card action types (<https://adaptivecards.io/explorer>).
pub const ACTION_TYPES: [&str; 5] = [
    "Action.OpenUrl",
    "Action.Submit",
    "Action.ShowCard",
    "Action.ToggleVisibility",
    "Action.Execute",
];

/// Versions Teams renders.
pub const VERSIONS: [&str; 6] = ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5"];

/// Largest message Teams posts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 28 * 1024;

/// Checks `body` against the workflow's and Adaptive Cards' rules; every
/// problem found.
pub fn check(body: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    if body.get("type").and_then(Value::as_str) != Some("message") {
        errors.push("type: must be `message`".into());
    }
    if serde_json::to_vec(body).map_or(0, |b| b.len()) > MAX_MESSAGE_BYTES {
        errors.push(format!("the message is over {MAX_MESSAGE_BYTES} bytes"));
    }
    match body.get("attachments").and_then(Value::as_array) {
        Some(attachments) if !attachments.is_empty() => {
            for (i, attachment) in attachments.iter().enumerate() {
                check_attachment(&format!("attachments[{i}]"), attachment, &mut errors);
            }
        }
        _ => errors.push("attachments: a non-empty array required".into()),
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_attachment(path: &str, attachment: &Value, errors: &mut Vec<String>) {
    if attachment.get("contentType").and_then(Value::as_str) != Some(CONTENT_TYPE) {
        errors.push(format!("{path}.contentType: must be `{CONTENT_TYPE}`"));
    }
    let Some(card) = attachment.get("content").filter(|c| c.is_object()) else {
        errors.push(format!("{path}.content: the card, an object, is required"));
        return;
    };
    // AdaptiveCard: `type` "AdaptiveCard" and `version` required.
    if card.get("type").and_then(Value::as_str) != Some("AdaptiveCard") {
        errors.push(format!("{path}.content.type: must be `AdaptiveCard`"));
    }
    match card.get("version").and_then(Value::as_str) {
        Some(v) if VERSIONS.contains(&v) => {}
        _ => errors.push(format!(
            "{path}.content.version: one of {VERSIONS:?} required"
        )),
    }
    match card.get("body") {
        Some(Value::Array(body)) => {
            for (i, element) in body.iter().enumerate() {
                check_element(&format!("{path}.content.body[{i}]"), element, errors);
            }
        }
        Some(_) => errors.push(format!("{path}.content.body: not an array")),
        None => {}
    }
    if let Some(actions) = card.get("actions") {
        check_actions(&format!("{path}.content.actions"), actions, errors);
    }
}

fn check_element(path: &str, element: &Value, errors: &mut Vec<String>) {
    let Some(kind) = element.get("type").and_then(Value::as_str) else {
        errors.push(format!("{path}: an element needs `type`"));
        return;
    };
    if !ELEMENT_TYPES.contains(&kind) {
        errors.push(format!("{path}: unknown element type `{kind}`"));
        return;
    }
    let string = |name: &str| element.get(name).and_then(Value::as_str);
    match kind {
        // TextBlock: `text` required.
        "TextBlock" if string("text").is_none() => {
            errors.push(format!("{path}.text: required, a string"))
        }
        // FactSet: `facts` required, each with `title` and `value` strings.
        "FactSet" => match element.get("facts").and_then(Value::as_array) {
            Some(facts) => {
                for (i, fact) in facts.iter().enumerate() {
                    for field in ["title", "value"] {
                        if !fact.get(field).is_some_and(Value::is_string) {
                            errors.push(format!("{path}.facts[{i}].{field}: required, a string"));
                        }
                    }
                }
            }
            None => errors.push(format!("{path}.facts: required, an array")),
        },
        // Image: `url` required.
        "Image" if string("url").is_none() => errors.push(format!("{path}.url: required")),
        // Containers hold elements in `items`.
        "Container" => match element.get("items").and_then(Value::as_array) {
            Some(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_element(&format!("{path}.items[{i}]"), item, errors);
                }
            }
            None => errors.push(format!("{path}.items: required, an array")),
        },
        "ActionSet" => match element.get("actions") {
            Some(actions) => check_actions(&format!("{path}.actions"), actions, errors),
            None => errors.push(format!("{path}.actions: required")),
        },
        _ => {}
    }
}

fn check_actions(path: &str, actions: &Value, errors: &mut Vec<String>) {
    let Some(actions) = actions.as_array() else {
        errors.push(format!("{path}: not an array"));
        return;
    };
    for (i, action) in actions.iter().enumerate() {
        let path = format!("{path}[{i}]");
        match action.get("type").and_then(Value::as_str) {
            // Action.OpenUrl: `url` required.
            Some("Action.OpenUrl") => {
                if action
                    .get("url")
                    .and_then(Value::as_str)
                    .is_none_or(|u| u.is_empty())
                {
                    errors.push(format!("{path}.url: required for Action.OpenUrl"));
                }
            }
            Some(kind) if ACTION_TYPES.contains(&kind) => {}
            Some(kind) => errors.push(format!("{path}: unknown action type `{kind}`")),
            None => errors.push(format!("{path}: an action needs `type`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn card() -> Value {
        json!({
            "type": "message",
            "attachments": [{
                "contentType": CONTENT_TYPE,
                "contentUrl": null,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": [
                        {"type": "TextBlock", "text": "Job failed", "weight": "Bolder", "wrap": true},
                        {"type": "FactSet", "facts": [{"title": "State", "value": "failed"}]},
                    ],
                    "actions": [{"type": "Action.OpenUrl", "title": "Open", "url": "https://x.example"}],
                },
            }],
        })
    }

    #[test]
    fn vendors_teams_accepts_valid_cards() {
        assert_eq!(check(&card()), Ok(()));
    }

    #[test]
    fn vendors_teams_refuses_invalid_cards() {
        let edits: [(&str, Value); 9] = [
            ("/type", json!("card")),
            ("/attachments", json!([])),
            ("/attachments/0/contentType", json!("application/json")),
            ("/attachments/0/content/type", json!("HeroCard")),
            ("/attachments/0/content/version", json!("2.0")),
            ("/attachments/0/content/body/0/type", json!("Marquee")),
            ("/attachments/0/content/body/0/text", Value::Null),
            ("/attachments/0/content/body/1/facts/0/value", json!(3)),
            ("/attachments/0/content/actions/0/url", Value::Null),
        ];
        for (pointer, value) in edits {
            let mut body = card();
            *body.pointer_mut(pointer).unwrap() = value;
            assert!(check(&body).is_err(), "{pointer}: {body}");
        }
        let mut big = card();
        big["attachments"][0]["content"]["body"][0]["text"] = json!("x".repeat(30_000));
        assert!(check(&big).is_err());
    }
}
