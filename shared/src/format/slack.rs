//! Slack: a Block Kit message per event, for incoming webhooks (and
//! workflow webhooks that take a message), readable on a phone.
//!
//! The message:
//! - `text`: the notification line (`Job failed: job_01 (materialize-view)`),
//!   which Slack requires next to `blocks` for notifications and
//!   clients that cannot show blocks;
//! - a `header` block with the title (`plain_text`, at most 150
//!   characters);
//! - a `section` with the summary (what the event is about; the error
//!   message of a failure, quoted) and `fields`: the event type, the job
//!   or subject, the state change, the failure reason, and for platform
//!   events and `webhook.test` the data's scalar fields (at most 10
//!   fields in all);
//! - an `actions` block with an "Open" button when the event carries an
//!   `https` link ([`EventView::link`]);
//! - a `context` block with the event's time (shown in the reader's time
//!   zone by Slack's date formatting) and its idempotency key.
//!
//! Limits and escaping follow Slack's documentation:
//! - blocks and their limits: <https://api.slack.com/reference/block-kit/blocks>
//!   (header text 150 characters; section text 3000, at most 10 fields of
//!   2000 each; button URL 3000; at most 50 blocks);
//! - `text` with `blocks`: <https://api.slack.com/reference/messaging/payload>;
//! - escaping `&`, `<` and `>` in mrkdwn, and date formatting:
//!   <https://api.slack.com/reference/surfaces/formatting>.
//!
//! Every text is cut on a character boundary, after escaping, so an
//! entity (`&amp;`) is never cut in half.

use chrono::DateTime;
use serde_json::{Value, json};

use super::EventView;
use super::event::{Outcome, truncate};

/// Longest header text, in characters.
pub const MAX_HEADER_CHARS: usize = 150;
/// Longest section text, in characters.
pub const MAX_SECTION_CHARS: usize = 3000;
/// Most fields in a section.
pub const MAX_FIELDS: usize = 10;
/// Longest field text, in characters.
pub const MAX_FIELD_CHARS: usize = 2000;
/// Longest top-level `text` (the notification), in characters.
pub const MAX_TEXT_CHARS: usize = 3000;

/// A field value's length shown, in characters: short enough for a phone.
const FIELD_VALUE_CHARS: usize = 300;
/// An error message's length shown, in characters.
/// (Quoting every line at most doubles it: with the subject and resource,
/// the section stays within [`MAX_SECTION_CHARS`].)
const ERROR_MESSAGE_CHARS: usize = 1000;

/// The Block Kit message for `event`.
pub fn message(event: &EventView) -> Value {
    let title = event.title();
    let subject = event.subject();
    let mut blocks = Vec::with_capacity(5);

    blocks.push(json!({
        "type": "header",
        "text": {
            "type": "plain_text",
            "text": truncate(&format!("{}{title}", emoji(event)), MAX_HEADER_CHARS),
            "emoji": true,
        },
    }));

    let mut section = json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": summary(event, subject.as_deref()) },
    });
    let fields: Vec<Value> = event
        .facts(MAX_FIELDS)
        .iter()
        .map(|(label, value)| {
            let value = mrkdwn(value, FIELD_VALUE_CHARS);
            let text = if label == "Event" {
                format!("*{label}*\n`{value}`")
            } else {
                format!("*{}*\n{value}", mrkdwn(label, 100))
            };
            json!({ "type": "mrkdwn", "text": truncate(&text, MAX_FIELD_CHARS) })
        })
        .collect();
    if !fields.is_empty() {
        section["fields"] = Value::Array(fields);
    }
    blocks.push(section);

    if let Some(link) = event.link() {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": { "type": "plain_text", "text": "Open", "emoji": false },
                "url": link,
                "action_id": "open",
            }],
        }));
    }

    let mut context = Vec::with_capacity(2);
    if let Some(time) = event.time() {
        context.push(json!({ "type": "mrkdwn", "text": slack_date(time) }));
    }
    if let Some(key) = event.idempotency_key() {
        context.push(json!({ "type": "mrkdwn", "text": format!("Key `{}`", mrkdwn(key, 300)) }));
    }
    if !context.is_empty() {
        blocks.push(json!({ "type": "context", "elements": context }));
    }

    let text = match &subject {
        Some(subject) => format!("{title}: {subject}"),
        None => title,
    };
    json!({ "text": mrkdwn(&text, MAX_TEXT_CHARS), "blocks": blocks })
}

/// The header's emoji: a red circle for a failure, a green one for a
/// completion.
fn emoji(event: &EventView) -> &'static str {
    match event.outcome() {
        Outcome::Failed => ":red_circle: ",
        Outcome::Completed => ":large_green_circle: ",
        Outcome::Other => "",
    }
}

/// The section's text: the subject in bold (with a job's resource), and a
/// failure's message quoted.
fn summary(event: &EventView, subject: Option<&str>) -> String {
    let mut text = match subject {
        Some(subject) => format!("*{}*", mrkdwn(subject, 300)),
        None => format!("`{}`", mrkdwn(event.event_type(), 200)),
    };
    if let Some(resource) = event.resource() {
        text.push_str(" · ");
        text.push_str(&mrkdwn(&resource, 300));
    }
    if let Some(message) = event.failure().and_then(|f| f.message) {
        text.push_str("\n>");
        // A quote ends at a newline: quote every line.
        text.push_str(&mrkdwn(message, ERROR_MESSAGE_CHARS).replace('\n', "\n>"));
    } else if event.is_test()
        && let Some(message) = event.data_str("message")
    {
        text.push('\n');
        text.push_str(&mrkdwn(message, ERROR_MESSAGE_CHARS));
    }
    truncate(&text, MAX_SECTION_CHARS)
}

/// `time` in Slack's date formatting (the reader's own time zone), with
/// the RFC 3339 text as the fallback; the text alone, escaped, when it is
/// not RFC 3339.
fn slack_date(time: &str) -> String {
    match DateTime::parse_from_rfc3339(time) {
        Ok(at) => format!(
            "<!date^{}^{{date_short_pretty}} at {{time_secs}}|{}>",
            at.timestamp(),
            mrkdwn(time, 100),
        ),
        Err(_) => mrkdwn(time, 100),
    }
}

/// `text` escaped for mrkdwn (`&`, `<`, `>` as entities) and cut to at
/// most `max` characters (ending in `…` when cut), never inside an
/// entity.
pub fn mrkdwn(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut count = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let escaped = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            _ => "",
        };
        let width = if escaped.is_empty() { 1 } else { escaped.len() };
        // Keep room for the ellipsis unless this is the last character.
        let room = if chars.peek().is_some() {
            max.saturating_sub(1)
        } else {
            max
        };
        if count + width > room {
            if count < max {
                out.push('…');
            }
            return out;
        }
        if escaped.is_empty() {
            out.push(c);
        } else {
            out.push_str(escaped);
        }
        count += width;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn view(value: Value) -> EventView {
        EventView::from_value(value).unwrap()
    }

    #[test]
    fn format_slack_escapes_and_cuts() {
        assert_eq!(mrkdwn("a<b>&c", 100), "a&lt;b&gt;&amp;c");
        assert_eq!(mrkdwn("abc", 3), "abc");
        assert_eq!(mrkdwn("abcd", 3), "ab…");
        // An entity is never cut in half.
        assert_eq!(mrkdwn("a&b", 4), "a…");
        assert_eq!(mrkdwn("éééé", 3), "éé…");
        for max in 0..20 {
            let s = mrkdwn("<<&&é>>", max);
            assert!(s.chars().count() <= max.max(1), "{max}: {s}");
        }
    }

    #[test]
    fn format_slack_job_failed() {
        let t = crate::catalogue::find("job.failed").unwrap();
        let m = message(&EventView::parse(&t.example).unwrap());
        assert_eq!(m["text"], "Job failed: job_01JD8X3K7Q2M (materialize-view)");
        let blocks = m["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], ":red_circle: Job failed");
        let section = &blocks[1];
        let text = section["text"]["text"].as_str().unwrap();
        assert!(text.contains("column \"region\" does not exist"), "{text}");
        let fields: Vec<&str> = section["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&"*State*\nrunning → failed"), "{fields:?}");
        assert!(fields.contains(&"*Reason*\nPLANNING_FAILED"), "{fields:?}");
        let context = blocks.last().unwrap();
        assert_eq!(context["type"], "context");
        let when = context["elements"][0]["text"].as_str().unwrap();
        assert!(when.starts_with("<!date^"), "{when}");
    }

    #[test]
    fn format_slack_hostile_and_huge_data_stays_within_limits() {
        let long = "<&>é".repeat(5000);
        let mut data = serde_json::Map::new();
        for i in 0..40 {
            data.insert(format!("f{i}_{long}"), json!(long));
        }
        data.insert("url".into(), json!("https://example.com/a?b=1&c=<2>"));
        data.insert("error".into(), json!({"reason": long, "message": long}));
        let m = message(&view(json!({
            "type": format!("x.{long}_failed"),
            "idempotency_key": long,
            "timestamp": long,
            "source": long,
            "subject_type": long,
            "subject_id": long,
            "data": data,
        })));
        let blocks = m["blocks"].as_array().unwrap();
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        let section = &blocks[1];
        assert!(section["text"]["text"].as_str().unwrap().chars().count() <= 3000);
        let fields = section["fields"].as_array().unwrap();
        assert!(fields.len() <= 10);
        for f in fields {
            let text = f["text"].as_str().unwrap();
            assert!(text.chars().count() <= 2000);
            assert!(!text.contains('<'), "{text}");
        }
        assert_eq!(blocks[2]["type"], "actions");
        assert!(m["text"].as_str().unwrap().chars().count() <= MAX_TEXT_CHARS);
    }

    #[test]
    fn format_slack_generic_fields_for_platform_events() {
        let t = crate::catalogue::find("app.run_completed").unwrap();
        let m = message(&EventView::parse(&t.example).unwrap());
        let fields = m["blocks"][1]["fields"].to_string();
        assert!(fields.contains("Records processed"), "{fields}");
        assert!(fields.contains("48213"), "{fields}");
    }
}
