//! Slack's rules for the messages an incoming webhook takes: what the
//! `slack` body format must satisfy.
//!
//! Sources:
//! - blocks, their fields and limits:
//!   <https://api.slack.com/reference/block-kit/blocks>;
//! - text objects: <https://api.slack.com/reference/block-kit/composition-objects#text>;
//! - the button element: <https://api.slack.com/reference/block-kit/block-elements#button>;
//! - `text` and `blocks` of a message:
//!   <https://api.slack.com/reference/messaging/payload>;
//! - incoming webhooks' answers (`ok`, `invalid_payload`, `no_text`,
//!   `invalid_blocks`): <https://api.slack.com/messaging/webhooks#handling_errors>.

use serde_json::Value;

/// Block types Slack knows
/// (<https://api.slack.com/reference/block-kit/blocks>).
pub const BLOCK_TYPES: [&str; 11] = [
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "video",
];

/// Checks `body` against Slack's rules; every problem found, by JSON
/// path.
pub fn check(body: &Value) -> Result<(), Vec<String>> {
    let mut errors = Vec::new();
    let Some(message) = body.as_object() else {
        return Err(vec!["the message is not a JSON object".into()]);
    };
    let text = message.get("text");
    let blocks = message.get("blocks");
    // A message needs `text`, or `blocks` (then `text` is the notification's
    // fallback): https://api.slack.com/reference/messaging/payload
    let has_text = text
        .and_then(Value::as_str)
        .is_some_and(|t| !t.trim().is_empty());
    let has_blocks = blocks
        .and_then(Value::as_array)
        .is_some_and(|b| !b.is_empty());
    if !has_text && !has_blocks {
        errors.push("no_text: neither `text` nor `blocks`".into());
    }
    if let Some(text) = text {
        match text.as_str() {
            // Longer texts are truncated by Slack at 40,000 characters:
            // https://api.slack.com/methods/chat.postMessage#truncating
            Some(t) if chars(t) > 40_000 => errors.push("text: over 40000 characters".into()),
            Some(_) => {}
            None => errors.push("text: not a string".into()),
        }
    }
    if let Some(blocks) = blocks {
        match blocks.as_array() {
            Some(blocks) => {
                // "You can include up to 50 blocks in each message":
                // https://api.slack.com/reference/block-kit/blocks
                if blocks.len() > 50 {
                    errors.push(format!("blocks: {} blocks, at most 50", blocks.len()));
                }
                for (i, block) in blocks.iter().enumerate() {
                    check_block(&format!("blocks[{i}]"), block, &mut errors);
                }
            }
            None => errors.push("blocks: not an array".into()),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn chars(s: &str) -> usize {
    s.chars().count()
}

fn check_block(path: &str, block: &Value, errors: &mut Vec<String>) {
    let Some(kind) = block.get("type").and_then(Value::as_str) else {
        errors.push(format!("{path}: no `type`"));
        return;
    };
    if !BLOCK_TYPES.contains(&kind) {
        errors.push(format!("{path}: unknown block type `{kind}`"));
        return;
    }
    // block_id: "Maximum length for this field is 255 characters."
    if let Some(id) = block.get("block_id")
        && id.as_str().is_none_or(|id| chars(id) > 255)
    {
        errors.push(format!(
            "{path}.block_id: not a string of at most 255 characters"
        ));
    }
    match kind {
        // Header: "text: The text for the block, in the form of a plain_text
        // text object. Maximum length for the text in this field is 150
        // characters." https://api.slack.com/reference/block-kit/blocks#header
        "header" => match block.get("text") {
            Some(text) => check_text(
                &format!("{path}.text"),
                text,
                Some("plain_text"),
                150,
                errors,
            ),
            None => errors.push(format!("{path}: a header needs `text`")),
        },
        // Section: "text ... Maximum length for the text in this field is
        // 3000 characters. This field is not required if a valid array of
        // fields objects is provided"; "fields: Required if no text is
        // provided. ... Maximum number of items is 10. Maximum length for
        // the text in each item is 2000 characters."
        // https://api.slack.com/reference/block-kit/blocks#section
        "section" => {
            let text = block.get("text");
            let fields = block.get("fields");
            if text.is_none() && fields.is_none() {
                errors.push(format!("{path}: a section needs `text` or `fields`"));
            }
            if let Some(text) = text {
                check_text(&format!("{path}.text"), text, None, 3000, errors);
            }
            if let Some(fields) = fields {
                match fields.as_array() {
                    Some(fields) => {
                        if fields.is_empty() || fields.len() > 10 {
                            errors.push(format!(
                                "{path}.fields: {} fields, 1 to 10 allowed",
                                fields.len()
                            ));
                        }
                        for (i, field) in fields.iter().enumerate() {
                            check_text(&format!("{path}.fields[{i}]"), field, None, 2000, errors);
                        }
                    }
                    None => errors.push(format!("{path}.fields: not an array")),
                }
            }
            if let Some(accessory) = block.get("accessory") {
                check_element(&format!("{path}.accessory"), accessory, errors);
            }
        }
        // Context: "elements: An array of image elements and text objects.
        // Maximum number of items is 10."
        // https://api.slack.com/reference/block-kit/blocks#context
        "context" => match block.get("elements").and_then(Value::as_array) {
            Some(elements) if !elements.is_empty() && elements.len() <= 10 => {
                for (i, element) in elements.iter().enumerate() {
                    let path = format!("{path}.elements[{i}]");
                    match element.get("type").and_then(Value::as_str) {
                        Some("image") => {}
                        Some("plain_text" | "mrkdwn") => {
                            check_text(&path, element, None, 3000, errors)
                        }
                        _ => errors.push(format!("{path}: neither an image nor a text object")),
                    }
                }
            }
            _ => errors.push(format!("{path}.elements: 1 to 10 elements required")),
        },
        // Actions: "elements: An array of interactive element objects ...
        // There is a maximum of 25 elements in each action block."
        // https://api.slack.com/reference/block-kit/blocks#actions
        "actions" => match block.get("elements").and_then(Value::as_array) {
            Some(elements) if !elements.is_empty() && elements.len() <= 25 => {
                for (i, element) in elements.iter().enumerate() {
                    check_element(&format!("{path}.elements[{i}]"), element, errors);
                }
            }
            _ => errors.push(format!("{path}.elements: 1 to 25 elements required")),
        },
        _ => {}
    }
}

/// A text object: `type` `plain_text` or `mrkdwn` (or `expected`), a
/// non-empty `text` of at most `max` characters; `emoji` only on
/// `plain_text`.
/// <https://api.slack.com/reference/block-kit/composition-objects#text>
fn check_text(
    path: &str,
    text: &Value,
    expected: Option<&str>,
    max: usize,
    errors: &mut Vec<String>,
) {
    let kind = text.get("type").and_then(Value::as_str);
    match (kind, expected) {
        (Some(k), Some(e)) if k != e => errors.push(format!("{path}.type: `{k}`, must be `{e}`")),
        (Some("plain_text" | "mrkdwn"), _) => {}
        (Some(k), _) => errors.push(format!("{path}.type: `{k}` is not a text object type")),
        (None, _) => errors.push(format!("{path}: a text object needs `type`")),
    }
    if kind == Some("mrkdwn") && text.get("emoji").is_some() {
        errors.push(format!("{path}.emoji: only for plain_text"));
    }
    match text.get("text").and_then(Value::as_str) {
        Some("") => errors.push(format!("{path}.text: empty (at least 1 character)")),
        Some(t) if chars(t) > max => errors.push(format!(
            "{path}.text: {} characters, at most {max}",
            chars(t)
        )),
        Some(_) => {}
        None => errors.push(format!("{path}.text: not a string")),
    }
}

/// An interactive element; buttons are checked: "text: A text object ...
/// Can only be of type: plain_text. Maximum length for the text in this
/// field is 75 characters"; "url: ... Maximum length for this field is
/// 3000 characters"; "action_id: ... Maximum length is 255 characters";
/// "value: ... Maximum length for this field is 2000 characters".
/// <https://api.slack.com/reference/block-kit/block-elements#button>
fn check_element(path: &str, element: &Value, errors: &mut Vec<String>) {
    match element.get("type").and_then(Value::as_str) {
        Some("button") => {
            match element.get("text") {
                Some(text) => check_text(
                    &format!("{path}.text"),
                    text,
                    Some("plain_text"),
                    75,
                    errors,
                ),
                None => errors.push(format!("{path}: a button needs `text`")),
            }
            let bounded = |field: &str, max: usize, errors: &mut Vec<String>| {
                if let Some(value) = element.get(field)
                    && value.as_str().is_none_or(|v| chars(v) > max)
                {
                    errors.push(format!(
                        "{path}.{field}: not a string of at most {max} characters"
                    ));
                }
            };
            bounded("url", 3000, errors);
            bounded("action_id", 255, errors);
            bounded("value", 2000, errors);
        }
        Some(_) => {}
        None => errors.push(format!("{path}: an element needs `type`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vendors_slack_accepts_valid_messages() {
        assert_eq!(check(&json!({"text": "hello"})), Ok(()));
        let message = json!({
            "text": "Job failed",
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "Job failed", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": "*job*"},
                 "fields": [{"type": "mrkdwn", "text": "*State*\nfailed"}]},
                {"type": "actions", "elements": [{"type": "button",
                  "text": {"type": "plain_text", "text": "Open"}, "url": "https://x.example"}]},
                {"type": "context", "elements": [{"type": "mrkdwn", "text": "at noon"}]},
                {"type": "divider"},
            ],
        });
        assert_eq!(check(&message), Ok(()));
    }

    #[test]
    fn vendors_slack_refuses_what_slack_refuses() {
        let no_text = check(&json!({})).unwrap_err();
        assert!(no_text[0].starts_with("no_text"), "{no_text:?}");
        assert!(check(&json!([])).is_err());
        assert!(check(&json!({"text": 3})).is_err());
        let cases = [
            json!({"type": "banner"}),
            json!({"type": "header", "text": {"type": "mrkdwn", "text": "x"}}),
            json!({"type": "header", "text": {"type": "plain_text", "text": "x".repeat(151)}}),
            json!({"type": "section"}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "é".repeat(3001)}}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": ""}}),
            json!({"type": "section", "fields": (0..11).map(|_| json!({"type": "mrkdwn", "text": "f"})).collect::<Vec<_>>()}),
            json!({"type": "section", "fields": [{"type": "mrkdwn", "text": "x".repeat(2001)}]}),
            json!({"type": "section", "text": {"type": "mrkdwn", "text": "x", "emoji": true}}),
            json!({"type": "context", "elements": []}),
            json!({"type": "actions", "elements": [{"type": "button",
                   "text": {"type": "plain_text", "text": "Open"}, "url": "x".repeat(3001)}]}),
            json!({"type": "actions", "elements": [{"type": "button",
                   "text": {"type": "mrkdwn", "text": "Open"}}]}),
        ];
        for block in cases {
            let message = json!({"text": "t", "blocks": [block]});
            assert!(check(&message).is_err(), "{message}");
        }
        let many: Vec<Value> = (0..51).map(|_| json!({"type": "divider"})).collect();
        assert!(check(&json!({"blocks": many})).is_err());
    }
}
