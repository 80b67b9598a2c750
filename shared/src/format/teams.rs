//! Microsoft Teams: an Adaptive Card in the envelope Teams workflows
//! accept.
//!
//! Teams' Office 365 connectors (incoming webhooks) are retired; a
//! channel now receives webhooks through a Power Automate workflow
//! ("Post to a channel when a webhook request is received", trigger
//! "When a Teams webhook request is received"), which takes a `message`
//! whose `attachments` are Adaptive Cards and posts each card:
//!
//! ```text
//! {"type": "message",
//!  "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
//!                   "contentUrl": null,
//!                   "content": {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
//!                               "type": "AdaptiveCard", "version": "1.4",
//!                               "body": [...], "actions": [...]}}]}
//! ```
//!
//! The card's body: a `TextBlock` title (bolder, medium, wrapping), a
//! subtle `TextBlock` with what the event is about, a `FactSet` (event
//! type, job or subject, state change, failure reason, the data's scalar
//! fields for platform events, time, idempotency key) and, for a
//! failure, the error message in a `TextBlock` coloured `attention`. An
//! `Action.OpenUrl` when the event carries an `https` link. Version 1.4
//! is what Teams renders (schema 1.5 cards fail on older clients).
//!
//! Sources: <https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using>
//! (the envelope), <https://learn.microsoft.com/en-us/power-automate/teams/overview>
//! (the workflow), <https://adaptivecards.io/explorer> (the elements).
//! A Teams message is at most 28 KB: facts and texts are cut to keep
//! cards far below it.

use serde_json::{Value, json};

use super::EventView;
use super::event::truncate;

/// The Adaptive Card version sent.
pub const CARD_VERSION: &str = "1.4";
/// The attachment's content type.
pub const CONTENT_TYPE: &str = "application/vnd.microsoft.card.adaptive";
/// The card schema's URL.
pub const CARD_SCHEMA: &str = "http://adaptivecards.io/schemas/adaptive-card.json";

/// Most facts in the card.
const MAX_FACTS: usize = 12;
/// A fact value's length shown, in characters.
const FACT_VALUE_CHARS: usize = 300;
/// An error message's length shown, in characters.
const ERROR_MESSAGE_CHARS: usize = 2000;

/// The Teams message for `event`.
pub fn message(event: &EventView) -> Value {
    let mut body = vec![json!({
        "type": "TextBlock",
        "text": truncate(&event.title(), 150),
        "weight": "Bolder",
        "size": "Medium",
        "wrap": true,
    })];
    if let Some(subject) = event.subject() {
        body.push(json!({
            "type": "TextBlock",
            "text": truncate(&subject, FACT_VALUE_CHARS),
            "isSubtle": true,
            "spacing": "None",
            "wrap": true,
        }));
    }
    let mut facts: Vec<Value> = event
        .facts(MAX_FACTS - 2)
        .into_iter()
        .map(|(title, value)| fact(&title, &value))
        .collect();
    if let Some(time) = event.time() {
        facts.push(fact("Time", time));
    }
    if let Some(key) = event.idempotency_key() {
        facts.push(fact("Key", key));
    }
    body.push(json!({ "type": "FactSet", "facts": facts }));
    if let Some(message) = event.failure().and_then(|f| f.message) {
        body.push(json!({
            "type": "TextBlock",
            "text": truncate(message, ERROR_MESSAGE_CHARS),
            "color": "Attention",
            "wrap": true,
        }));
    } else if event.is_test()
        && let Some(message) = event.data_str("message")
    {
        body.push(json!({
            "type": "TextBlock",
            "text": truncate(message, ERROR_MESSAGE_CHARS),
            "wrap": true,
        }));
    }
    let mut content = json!({
        "$schema": CARD_SCHEMA,
        "type": "AdaptiveCard",
        "version": CARD_VERSION,
        "body": body,
    });
    if let Some(link) = event.link() {
        content["actions"] = json!([{ "type": "Action.OpenUrl", "title": "Open", "url": link }]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": CONTENT_TYPE,
            "contentUrl": null,
            "content": content,
        }],
    })
}

fn fact(title: &str, value: &str) -> Value {
    json!({ "title": truncate(title, 100), "value": truncate(value, FACT_VALUE_CHARS) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_teams_job_failed() {
        let t = crate::catalogue::find("job.failed").unwrap();
        let m = message(&EventView::parse(&t.example).unwrap());
        assert_eq!(m["type"], "message");
        let content = &m["attachments"][0]["content"];
        assert_eq!(content["type"], "AdaptiveCard");
        let body = content["body"].as_array().unwrap();
        assert_eq!(body[0]["text"], "Job failed");
        assert_eq!(body[0]["weight"], "Bolder");
        let facts = body[2]["facts"].to_string();
        assert!(facts.contains("running → failed"), "{facts}");
        assert_eq!(body.last().unwrap()["color"], "Attention");
        assert!(content.get("actions").is_none());
    }

    #[test]
    fn format_teams_link_becomes_an_action() {
        let e = EventView::from_value(json!({
            "type": "app.installed",
            "data": {"link": "https://apps.example/app_1"},
        }))
        .unwrap();
        let m = message(&e);
        let action = &m["attachments"][0]["content"]["actions"][0];
        assert_eq!(action["type"], "Action.OpenUrl");
        assert_eq!(action["url"], "https://apps.example/app_1");
    }
}
