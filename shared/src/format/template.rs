//! Customer templates: a sandboxed template engine rendering the event
//! into a JSON body, with fuel and output-size limits.
//!
//! The engine is MiniJinja (Jinja2 syntax:
//! <https://docs.rs/minijinja/2/minijinja/syntax/index.html>), built
//! without a loader, without `include`, `import` and `extends`
//! (MiniJinja's `multi_template` feature is off) and without macros: a
//! template is one
//! self-contained source of at most [`MAX_SOURCE_BYTES`] and can read
//! nothing but the event.
//!
//! What a template sees: the payload's top-level fields (`type`,
//! `timestamp`, `idempotency_key`, `subscription_id`, `company_id`, a
//! platform event's `source`, `app_id`, `subject_type`, `subject_id`,
//! `verb`, and `data`) and `event`, the whole payload. For example:
//!
//! ```text
//! {"text": {{ ("Job " ~ data.job_id ~ " is " ~ data.state) | tojson }},
//!  "failed": {{ (type == "job.failed") | tojson }},
//!  "error": {{ data.error.message | default(none) | tojson }}}
//! ```
//!
//! Auto-escaping is off: the output is JSON, not HTML, so a template
//! must put every string it interpolates through `|tojson`, which quotes
//! and escapes it (`{{ data.job_id | tojson }}` → `"job_01"`); a bare
//! `{{ data.job_id }}` is inserted as it is. An undefined variable
//! renders as nothing, and reading an attribute of one
//! (`{{ nope.x }}`) is an error.
//!
//! Limits: each render gets [`FUEL`] units of fuel (about one per
//! instruction run; a typical template uses a few hundred) and fails
//! with [`RenderError::OutOfFuel`] when it runs out; recursion (macros
//! recursive `for` loops) is bounded by MiniJinja's default limit; the
//! output is cut off at [`MAX_OUTPUT_BYTES`] ([`RenderError::TooLarge`]).
//! The output must parse as JSON ([`RenderError::NotJson`]); it is sent
//! as rendered, byte for byte (whitespace and a final newline included).
//!
//! Known limit: fuel counts instructions, not the size of the values
//! they make. One instruction can build a large string (`"x" * n` makes
//! up to 100 MB; `~` concatenates without a limit), so a hostile
//! template can still use much memory and time before the output cap
//! stops it. MiniJinja has no hook to bound value sizes.

use std::io;

use minijinja::{AutoEscape, Environment, ErrorKind};
use serde::de::IgnoredAny;

use super::{EventView, RenderError};

/// Longest template source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 16 * 1024;
/// Largest rendered body, in bytes.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// The fuel of one render: at most this many instructions.
pub const FUEL: u64 = 50_000;

/// The name the template has in its errors (`(in template:3)`).
const NAME: &str = "template";

/// A compiled template.
pub struct Template {
    env: Environment<'static>,
    source: String,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("source_bytes", &self.source.len())
            .finish_non_exhaustive()
    }
}

/// A successful render: the body, and the fuel it used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The rendered JSON document, as rendered.
    pub body: Vec<u8>,
    /// The fuel the render used (out of [`FUEL`]).
    pub fuel: u64,
}

impl Template {
    /// Compiles `source`; a syntax error or a source over
    /// [`MAX_SOURCE_BYTES`] is a [`RenderError::Template`].
    pub fn compile(source: &str) -> Result<Self, RenderError> {
        Self::compile_with_fuel(source, FUEL)
    }

    fn compile_with_fuel(source: &str, fuel: u64) -> Result<Self, RenderError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(RenderError::Template(format!(
                "the template is {} bytes long, more than the {MAX_SOURCE_BYTES} allowed",
                source.len()
            )));
        }
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(fuel));
        // Byte for byte: a final newline is kept.
        env.set_keep_trailing_newline(true);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| template_error(&e))?;
        Ok(Self {
            env,
            source: source.to_owned(),
        })
    }

    /// The template's source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `event` into a JSON document.
    pub fn render(&self, event: &EventView) -> Result<Vec<u8>, RenderError> {
        self.render_measured(event).map(|r| r.body)
    }

    /// Renders `event` into a JSON document, telling the fuel used (for
    /// a template's check before it is saved).
    pub fn render_measured(&self, event: &EventView) -> Result<Rendered, RenderError> {
        let mut context = event.value().as_object().cloned().unwrap_or_default();
        context.insert("event".into(), event.value().clone());
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| template_error(&e))?;
        let mut out = Capped::default();
        let captured = template
            .render_captured_to(&context, &mut out)
            .map_err(|e| match e.kind() {
                ErrorKind::OutOfFuel => RenderError::OutOfFuel(self.env.fuel().unwrap_or(FUEL)),
                _ if out.over => RenderError::TooLarge(MAX_OUTPUT_BYTES),
                _ => template_error(&e),
            })?;
        let fuel = captured
            .state()
            .fuel_levels()
            .map_or(0, |(consumed, _)| consumed);
        drop(captured);
        serde_json::from_slice::<IgnoredAny>(&out.buf)
            .map_err(|e| RenderError::NotJson(e.to_string()))?;
        Ok(Rendered {
            body: out.buf,
            fuel,
        })
    }
}

/// The engine's message, with the line (`... (in template:3)`).
fn template_error(e: &minijinja::Error) -> RenderError {
    RenderError::Template(e.to_string())
}

/// An output buffer that refuses to grow past [`MAX_OUTPUT_BYTES`],
/// which stops the render.
#[derive(Default)]
struct Capped {
    buf: Vec<u8>,
    over: bool,
}

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.buf.len() + bytes.len() > MAX_OUTPUT_BYTES {
            self.over = true;
            return Err(io::Error::other("rendered body too large"));
        }
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A typical template: a Slack-like message with a few fields, a
    /// condition and a loop over the state history.
    pub(crate) const TYPICAL: &str = r#"{
  "text": {{ ("[" ~ type ~ "] " ~ (data.job_id | default(subject_id | default(app_id | default("event"))))) | tojson }},
  "event_type": {{ type | tojson }},
  "at": {{ timestamp | tojson }},
  "key": {{ event.idempotency_key | tojson }},
  {% if data.error is mapping %}"error": {{ (data.error.reason ~ ": " ~ data.error.message) | tojson }},{% endif %}
  "history": [{% for h in data.state_history | default([]) %}{{ (h.state ~ " at " ~ h.at) | tojson }}{% if not loop.last %}, {% endif %}{% endfor %}],
  "fields": {{ data | tojson }}
}"#;

    fn view(value: Value) -> EventView {
        EventView::from_value(value).unwrap()
    }

    fn example(name: &str) -> EventView {
        let t = crate::catalogue::find(name).unwrap();
        EventView::parse(&t.example).unwrap()
    }

    fn render(source: &str, event: &EventView) -> Result<Value, RenderError> {
        let body = Template::compile(source)?.render(event)?;
        Ok(serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn format_template_is_send_and_sync() {
        fn shared<T: Send + Sync + 'static>() {}
        shared::<Template>();
        shared::<std::sync::Arc<Template>>();
    }

    #[test]
    fn format_template_typical_renders_every_example_within_a_tenth_of_the_fuel() {
        let template = Template::compile(TYPICAL).unwrap();
        let mut most = 0;
        for t in crate::catalogue::event_types() {
            let event = EventView::parse(&t.example).unwrap();
            let rendered = template
                .render_measured(&event)
                .unwrap_or_else(|e| panic!("{}: {e}", t.name));
            let body: Value = serde_json::from_slice(&rendered.body).unwrap();
            assert_eq!(body["event_type"], t.name.as_str());
            most = most.max(rendered.fuel);
        }
        assert!(most > 0);
        assert!(most < FUEL / 10, "a typical template used {most} of {FUEL}");
        // The fuel measured is the fuel needed (give or take the last
        // instruction).
        let event = example("job.failed");
        let used = template.render_measured(&event).unwrap().fuel;
        eprintln!("a typical template used {used} fuel (most: {most}) of {FUEL}");
        let enough = Template::compile_with_fuel(TYPICAL, used + 1).unwrap();
        assert!(enough.render(&event).is_ok());
        let short = Template::compile_with_fuel(TYPICAL, used - 2).unwrap();
        assert_eq!(short.render(&event), Err(RenderError::OutOfFuel(used - 2)));
    }

    #[test]
    fn format_template_context_has_top_level_fields_and_event() {
        let e = example("subject.failed");
        let v = render(
            r#"{"t": {{ type | tojson }}, "s": {{ subject_id | tojson }}, "e": {{ event.data.verb | tojson }}, "c": {{ company_id | tojson }}}"#,
            &e,
        )
        .unwrap();
        assert_eq!(v["t"], "subject.failed");
        assert_eq!(v["s"], e.str("subject_id").unwrap());
        assert_eq!(v["e"], "failed");
        assert_eq!(v["c"], e.str("company_id").unwrap());
    }

    #[test]
    fn format_template_output_is_sent_as_rendered() {
        let e = example("webhook.test");
        let body = Template::compile("{ \"a\" :  1 }\n")
            .unwrap()
            .render(&e)
            .unwrap();
        assert_eq!(body, b"{ \"a\" :  1 }\n");
    }

    #[test]
    fn format_template_tojson_escapes_hostile_strings() {
        let e = view(json!({"type": "x.y", "data": {"s": "\"}, \"evil\": 1, {\"<&>\u{2028}"}}));
        let v = render(r#"{"s": {{ data.s | tojson }}}"#, &e).unwrap();
        assert_eq!(v["s"], e.data()["s"]);
        assert_eq!(v.as_object().unwrap().len(), 1);
    }

    #[test]
    fn format_template_infinite_loop_runs_out_of_fuel() {
        let e = example("job.failed");
        let r = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &e,
        );
        assert_eq!(r, Err(RenderError::OutOfFuel(FUEL)));
    }

    #[test]
    fn format_template_huge_output_is_too_large() {
        let e = example("job.failed");
        let r = render(r#"{{ "x" * 10000000 }}"#, &e);
        assert_eq!(r, Err(RenderError::TooLarge(MAX_OUTPUT_BYTES)));
        let r = render(
            r#"{% for i in range(1000) %}{{ "y" * 1000 }}{% endfor %}"#,
            &e,
        );
        assert_eq!(r, Err(RenderError::TooLarge(MAX_OUTPUT_BYTES)));
    }

    #[test]
    fn format_template_non_json_is_refused() {
        let e = example("job.failed");
        let r = render("job {{ data.job_id }} failed", &e);
        assert!(matches!(r, Err(RenderError::NotJson(_))), "{r:?}");
        // Without tojson, a string is inserted bare.
        let r = render(r#"{"id": {{ data.job_id }}}"#, &e);
        assert!(matches!(r, Err(RenderError::NotJson(_))), "{r:?}");
        let r = render("", &e);
        assert!(matches!(r, Err(RenderError::NotJson(_))), "{r:?}");
    }

    #[test]
    fn format_template_syntax_errors_name_the_line() {
        let r = Template::compile("{\n\"a\": {% if %}\n}");
        match r {
            Err(RenderError::Template(m)) => assert!(m.contains("template:2"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            Template::compile("{{ x "),
            Err(RenderError::Template(_))
        ));
    }

    #[test]
    fn format_template_undefined_attribute_is_an_error() {
        let e = example("job.failed");
        let r = render("{{ nope.x }}", &e);
        assert!(matches!(r, Err(RenderError::Template(_))), "{r:?}");
        let r = render("{{ nope() }}", &e);
        assert!(matches!(r, Err(RenderError::Template(_))), "{r:?}");
        let r = render("{{ data | nofilter }}", &e);
        assert!(matches!(r, Err(RenderError::Template(_))), "{r:?}");
    }

    #[test]
    fn format_template_cannot_include_or_import() {
        let e = example("job.failed");
        for source in [
            r#"{% include "template" %}"#,
            r#"{% import "template" as t %}1"#,
            r#"{% extends "template" %}"#,
        ] {
            let r = Template::compile(source).and_then(|t| t.render(&e));
            assert!(
                matches!(r, Err(RenderError::Template(_))),
                "{source}: {r:?}"
            );
        }
    }

    #[test]
    fn format_template_source_is_bounded() {
        let big = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_SOURCE_BYTES));
        assert!(matches!(
            Template::compile(&big),
            Err(RenderError::Template(_))
        ));
        let t = Template::compile("1").unwrap();
        assert_eq!(t.source(), "1");
        assert!(!format!("{t:?}").contains('1') || format!("{t:?}").contains("source_bytes"));
    }

    #[test]
    fn format_template_macros_are_not_available() {
        let e = example("job.failed");
        let r = Template::compile("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}")
            .and_then(|t| t.render(&e));
        assert!(matches!(r, Err(RenderError::Template(_))), "{r:?}");
    }

    #[test]
    fn format_template_deep_data_does_not_overflow_the_stack() {
        // Tokio's worker threads have 2 MiB stacks: render on one that size,
        // a recursive loop over data nested as deep as JSON parsing allows.
        let mut nested = json!({"name": "leaf", "children": []});
        for i in 0..120 {
            nested = json!({"name": i, "children": [nested]});
        }
        let e = view(json!({"type": "x.y", "data": {"tree": [nested]}}));
        let r = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                render(
                    "[{% for n in data.tree recursive %}{{ n.name | tojson }},{{ loop(n.children) }}{% endfor %}0]",
                    &e,
                )
            })
            .unwrap()
            .join()
            .unwrap();
        let v = r.unwrap();
        assert_eq!(v.as_array().unwrap().len(), 122);
    }
}
