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
//! with [`RenderError::OutOfFuel`] when it runs out; the output is cut
//! off at [`MAX_OUTPUT_BYTES`] ([`RenderError::TooLarge`]). The output
//! must parse as JSON ([`RenderError::NotJson`]); it is sent as
//! rendered, byte for byte (whitespace and a final newline included).
//!
//! # Memory: bounded by construction
//!
//! Fuel counts instructions, not the size of the values they make, so
//! the engine is also cut down until no template can make a large value.
//! The worst case of one render over an event of at most 256 KiB (one
//! SQS message; call its largest value's text `E`) is a few MB, by this
//! argument:
//!
//! 1. **Nothing accumulates.** A value lives only while the expression
//!    that made it is evaluated, or while the loop over it runs. The
//!    statements that would keep or grow a value across statements are
//!    refused when the template is compiled ([`policy`]): `set` and
//!    `with` take only literals (`{% set sep = ", " %}`), and `set`
//!    blocks, `{% filter %}` blocks, recursive loops (each level buffers
//!    its output), macros, `call`, `do`, `include`, `import` and
//!    `extends` are refused; so is the `namespace()` global (removed).
//!    Output goes straight to the capped writer.
//! 2. **No filter makes a large value.** Only an allow-list of filters
//!    remains ([`filters::FILTERS`]), each a wrapper that checks its input
//!    before working (at most [`filters::MAX_ITEMS`] items, strings of at
//!    most [`filters::MAX_VALUE_BYTES`]) and its result after (at most
//!    `MAX_VALUE_BYTES`, measured by [`filters::size`], a bound on both
//!    the value's memory and its text); text-making filters (`tojson`,
//!    `string`, `join`) write into a buffer that stops at the cap, and
//!    `replace` works out its result's length first. `tojson` is compact
//!    only; `indent`, `format`, `escape`, `pprint` and the like are gone.
//! 3. **Operators cannot amplify.** `*` (which repeats strings and
//!    lists) is refused. `**`, `-`, `/`, `//` and `%` work on numbers
//!    only. What remains that turns values into new text is `~`, `+`
//!    (string concatenation; list `+` is lazy) and `in` (`x in "text"`
//!    writes out `x`). The compiler bounds them statically: each operand
//!    is weighed (a literal 0, a value of the event or a loop variable
//!    over it 1, a filter's result 1, a list or mapping literal the sum
//!    of its items, a loop variable the weight of its iterable's items),
//!    and the weights turned into text by one expression, plus those
//!    held by the iterables of the loops around it, may total at most
//!    [`policy::MAX_CONCAT_WEIGHT`]; so may its filter calls total at most
//!    [`policy::MAX_LIVE_FILTERS`].
//!
//! So at any moment the render holds: the event (already in memory),
//! concatenated text of at most `MAX_CONCAT_WEIGHT × max(E,
//! MAX_VALUE_BYTES)` plus literals (bounded by [`MAX_SOURCE_BYTES`]),
//! up to four times that while the last piece is being copied (the
//! growing buffer and the final string); at most `MAX_LIVE_FILTERS`
//! filter results of at most `MAX_VALUE_BYTES` each, and one filter at
//! work on at most `MAX_ITEMS` items; `range` is lazy; and the output,
//! at most `MAX_OUTPUT_BYTES`. With the constants here that is at most
//! about 4 × 6 × 256 KiB + 12 × 128 KiB + 1 MB + 64 KiB ≈ 9 MB, and a
//! few hundred KB for realistic templates.

use std::io;

use minijinja::{AutoEscape, Environment, ErrorKind};
use serde::de::IgnoredAny;

use super::{EventView, RenderError};

pub mod filters;
pub mod policy;

/// Longest template source accepted, in bytes (16,384 characters of up
/// to four bytes: the API counts characters, `setting::MAX_SOURCE_CHARS`).
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
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
    /// Compiles `source`; a syntax error, a source over
    /// [`MAX_SOURCE_BYTES`] or a statement or expression the [`policy`]
    /// refuses is a [`RenderError::Template`].
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
        filters::install(&mut env);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_fuel(Some(fuel));
        // Byte for byte: a final newline is kept.
        env.set_keep_trailing_newline(true);
        env.add_template_owned(NAME, source.to_owned())
            .map_err(|e| template_error(&e))?;
        policy::check(source, NAME).map_err(RenderError::Template)?;
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
        let r = render(r#"{% for i in range(100000) %}xxxxxxxxxx{% endfor %}"#, &e);
        assert_eq!(r, Err(RenderError::TooLarge(MAX_OUTPUT_BYTES)));
        let r = render(
            r#"{% for i in range(1000) %}{{ event|tojson }}{% endfor %}"#,
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
        // Tokio's worker threads have 2 MiB stacks: render on one that
        // size data nested as deep as JSON parsing allows. (Recursive
        // loops are refused: see the amplifier tests.)
        let mut nested = json!({"name": "leaf", "children": []});
        for i in 0..60 {
            nested = json!({"name": i, "children": [nested]});
        }
        let e = view(json!({"type": "x.y", "data": {"tree": [nested]}}));
        let r = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || {
                render(
                    "[{% for n in data.tree %}{{ n|tojson }}, {{ n|string|length }}, {{ (n in data.tree)|tojson }}{% endfor %}]",
                    &e,
                )
            })
            .unwrap()
            .join()
            .unwrap();
        let v = r.unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
        assert_eq!(v[0]["children"][0]["name"], 58);
    }

    /// A template is refused at compile time with a message containing
    /// `what`.
    fn refused(source: &str, what: &str) {
        match Template::compile(source) {
            Err(RenderError::Template(m)) => assert!(m.contains(what), "{source}: {m}"),
            other => panic!("{source}: {other:?}"),
        }
    }

    /// A template compiles but fails to render, quickly, with a message
    /// containing `what`.
    fn fails(source: &str, what: &str) {
        let e = view(json!({"type": "x.y", "data": {"s": "abc", "n": [1, 2, 3]}}));
        let started = std::time::Instant::now();
        let t = Template::compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        match t.render(&e) {
            Err(RenderError::Template(m)) => assert!(m.contains(what), "{source}: {m}"),
            other => panic!("{source}: {other:?}"),
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{source}"
        );
    }

    #[test]
    fn format_template_amplifying_statements_are_refused() {
        refused(r#"{{ "x" * 100000000 }}"#, "cannot use `*`");
        refused(r#"{{ [1] * 3 }}"#, "cannot use `*`");
        refused(
            r#"{% set s = "x" %}{% for i in range(30) %}{% set s = s ~ s %}{% endfor %}{{ s }}"#,
            "set a variable only to a literal",
        );
        refused(r#"{% set s = data %}"#, "set a variable only to a literal");
        refused(r#"{% set s %}{{ data }}{% endset %}"#, "capture output");
        refused(
            r#"{% with s = data ~ data %}{{ s }}{% endwith %}"#,
            "literal values",
        );
        refused(
            r#"{% set ns = namespace(s="x") %}{% for i in range(30) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"#,
            "set a variable only to a literal",
        );
        refused(r#"{{ namespace(s=1) }}"#, "namespace()");
        refused(
            r#"{% filter upper %}{{ data }}{% endfilter %}"#,
            "`{% filter %}`",
        );
        refused(
            r#"{% for x in [1] recursive %}{{ data }}{{ loop([x]) }}{% endfor %}"#,
            "recursive loops",
        );
        refused(r#"{% macro f() %}{% endmacro %}"#, "");
        refused(r#"{% do data.x %}"#, "");
    }

    #[test]
    fn format_template_concatenation_is_bounded_at_compile_time() {
        // Realistic concatenations compile.
        Template::compile(
            r#"{{ ("[" ~ type ~ "] " ~ data.job_id ~ " is " ~ data.state ~ " since " ~ timestamp ~ " (" ~ subject_id ~ ")") | tojson }}"#,
        )
        .unwrap();
        // Seven values from the event in one expression are too many.
        refused(
            r#"{{ a ~ b ~ c ~ d ~ e ~ f ~ g }}"#,
            "concatenates too much",
        );
        refused(
            r#"{{ data + data + data + data + data + data + data }}"#,
            "concatenates too much",
        );
        // A list literal counts its items.
        refused(
            r#"{{ [data, data, data, data, data, data, data] ~ "" }}"#,
            "concatenates too much",
        );
        refused(
            r#"{{ [data, data, data, data, data, data, data] in "x" }}"#,
            "concatenates too much",
        );
        // Loop variables carry the weight of their iterable's items: the
        // doubling through nested loops is refused.
        refused(
            r#"{% for a in [data ~ data] %}{% for b in [a ~ a] %}{{ b ~ b }}{% endfor %}{% endfor %}"#,
            "concatenates too much",
        );
        // Filters' results are capped, so a filter's result weighs one.
        Template::compile(r#"{{ data|tojson ~ data|tojson ~ data|tojson }}"#).unwrap();
        // Too many filters at once.
        refused(
            &format!("{{{{ [1{}] }}}}", "|abs".repeat(13)),
            "too many filters",
        );
    }

    #[test]
    fn format_template_amplifying_filters_fail_at_render_time() {
        for (source, what) in [
            (r#"{{ range(100000)|list }}"#, "too many items"),
            (r#"{{ range(100000)|join(",") }}"#, "too many items"),
            (
                r#"{{ range(10)|join("x" ~ data.s ~ "0123456789012345678901234567890123456789012345678901234567890123") }}"#,
                "separator",
            ),
            (
                r#"{{ range(10000)|join("012345678901234567890123456789") }}"#,
                "too large",
            ),
            (r#"{{ data|tojson(indent=2) }}"#, ""),
            (r#"{{ data|tojson(2) }}"#, ""),
            (r#"{{ data.s|indent(100000000) }}"#, "unknown"),
            (r#"{{ "%s"|format(data) }}"#, "unknown"),
            (r#"{{ data.s|center(100000000) }}"#, "unknown"),
            (r#"{{ data.s|escape|escape }}"#, "unknown"),
            (r#"{{ data|pprint }}"#, "unknown"),
            (r#"{{ debug() }}"#, "unknown"),
        ] {
            fails(source, what);
        }
        // Growth chains stop at the cap.
        let chain = format!("{{{{ data.s{} }}}}", "|list|string".repeat(6));
        fails(&chain, "too");
        let chain = format!("{{{{ data{} }}}}", "|list|string".repeat(12));
        refused(&chain, "too many filters");
        let chain = format!("{{{{ event{} }}}}", "|tojson".repeat(13));
        refused(&chain, "too many filters");
        let replaced = format!(
            "{{{{ data.s{} }}}}",
            r#"|replace("a", "aaaaaaaaaaaaaaaa")|replace("b", "bbbbbbbbbbbbbbbbbbbb")"#.repeat(6)
        );
        fails(&replaced, "too large");
    }

    #[test]
    fn format_template_large_event_values_are_refused_by_filters_not_crashed() {
        let big = "x".repeat(200 * 1024);
        let e = view(json!({"type": "x.y", "data": {"big": big, "list": vec![1; 20_000]}}));
        for source in [
            r#"{{ data.big|upper }}"#,
            r#"{{ data.list|sort }}"#,
            r#"{{ data.list|join(",") }}"#,
            r#"{{ data.big|list }}"#,
            r#"{{ data|tojson }}"#,
            r#"{{ data.big[:50000]|replace("x", "xxx") }}"#,
        ] {
            let r = Template::compile(source).unwrap().render(&e);
            assert!(
                matches!(r, Err(RenderError::Template(_))),
                "{source}: {r:?}"
            );
        }
        // Emitted directly, a large value is stopped by the output cap.
        let r = Template::compile("{{ data.big ~ data.big }}")
            .unwrap()
            .render(&e);
        assert_eq!(r, Err(RenderError::TooLarge(MAX_OUTPUT_BYTES)));
        // Small things about large values still work.
        let v = render(
            r#"{"n": {{ data.list|length }}, "k": {{ data.big|length }}}"#,
            &e,
        )
        .unwrap();
        assert_eq!(v, json!({"n": 20_000, "k": 200 * 1024}));
    }

    #[test]
    fn format_template_literal_set_and_allowed_filters_work() {
        let e = view(json!({
            "type": "job.failed",
            "data": {"s": " Hello World ", "n": [3, 1, 2, 1], "m": {"b": 2, "a": 1},
                     "o": [{"k": "x", "ok": true}, {"k": "y", "ok": false}]}
        }));
        let v = render(
            r#"{% set sep = ", " %}{
  "join": {{ data.n|join(sep)|tojson }},
  "upper": {{ data.s|trim|upper|tojson }},
  "lower": {{ data.s|lower|tojson }},
  "title": {{ "a b"|title|tojson }},
  "cap": {{ "ab"|capitalize|tojson }},
  "len": {{ data.n|length }}, "count": {{ data.n|count }},
  "first": {{ data.n|first }}, "last": {{ data.n|last }},
  "round": {{ 2.55|round(1) }}, "int": {{ "7"|int }}, "float": {{ "1.5"|float }}, "abs": {{ -3|abs }},
  "string": {{ data.n|string|tojson }},
  "items": {{ data.m|items|list|tojson }},
  "dictsort": {{ data.m|dictsort|tojson }},
  "sort": {{ data.n|sort|tojson }}, "reverse": {{ data.n|reverse|list|tojson }},
  "unique": {{ data.n|unique|list|tojson }},
  "min": {{ data.n|min }}, "max": {{ data.n|max }}, "sum": {{ data.n|sum }},
  "list": {{ "ab"|list|tojson }},
  "select": {{ data.n|select("odd")|list|tojson }}, "reject": {{ data.n|reject("odd")|list|tojson }},
  "selectattr": {{ data.o|selectattr("ok")|map(attribute="k")|list|tojson }},
  "rejectattr": {{ data.o|rejectattr("ok")|map(attribute="k")|list|tojson }},
  "replace": {{ "a-b"|replace("-", "+")|tojson }},
  "split": {{ "a,b"|split(",")|list|tojson }},
  "lines": {{ "a\nb"|lines|list|tojson }},
  "default": {{ nope|default("d")|tojson }}, "d": {{ nope|d(none)|tojson }},
  "dict": {{ dict(a=1)|tojson }}, "range": {{ range(3)|list|tojson }},
  "in": {{ ("o" in data.s)|tojson }}, "pow": {{ 2 ** 3 }},
  "tests": {{ [nope is defined, data is mapping, none is none]|tojson }},
  "html": {{ "<a href='x'>&</a>"|tojson }}
}"#,
            &e,
        )
        .unwrap();
        assert_eq!(v["join"], "3, 1, 2, 1");
        assert_eq!(v["upper"], "HELLO WORLD");
        assert_eq!(v["sort"], json!([1, 1, 2, 3]));
        assert_eq!(v["unique"], json!([3, 1, 2]));
        assert_eq!(v["selectattr"], json!(["x"]));
        assert_eq!(v["rejectattr"], json!(["y"]));
        assert_eq!(v["dictsort"], json!([["a", 1], ["b", 2]]));
        assert_eq!(v["split"], json!(["a", "b"]));
        assert_eq!(v["default"], "d");
        assert_eq!(v["d"], Value::Null);
        assert_eq!(v["range"], json!([0, 1, 2]));
        assert_eq!(v["pow"], 8);
        assert_eq!(v["tests"], json!([false, true, true]));
        assert_eq!(v["html"], "<a href='x'>&</a>");
        // tojson escapes as MiniJinja's does.
        let body = Template::compile(r#"{{ "<&>'"|tojson }}"#)
            .unwrap()
            .render(&e)
            .unwrap();
        assert_eq!(body, br#""\u003c\u0026\u003e\u0027""#);
    }

    /// A Slack-like message with loops over the state history, a
    /// condition, defaults, `join` and `tojson`.
    #[test]
    fn format_template_realistic_slack_message_renders() {
        let source = r#"{% set icon = ":rotating_light:" %}{
  "text": {{ (icon ~ " " ~ type ~ ": job " ~ (data.job_id | default("?"))) | tojson }},
  "blocks": [
    {"type": "header", "text": {"type": "plain_text", "text": {{ ("Job " ~ data.job_id ~ " is " ~ data.state) | tojson }}}},
    {% if data.error is mapping %}{"type": "section", "text": {"type": "mrkdwn", "text": {{ ("*" ~ data.error.reason ~ "*: " ~ data.error.message) | tojson }}}},{% endif %}
    {"type": "section", "fields": [{% for h in data.state_history | default([]) %}{"type": "mrkdwn", "text": {{ (h.state ~ " at " ~ h.at) | tojson }}}{% if not loop.last %}, {% endif %}{% endfor %}]},
    {"type": "context", "elements": [{"type": "mrkdwn", "text": {{ data.state_history | default([]) | map(attribute="state") | join(" → ") | tojson }}}]}
  ],
  "event": {{ event | tojson }}
}"#;
        let e = example("job.failed");
        let template = Template::compile(source).unwrap();
        let rendered = template.render_measured(&e).unwrap();
        let v: Value = serde_json::from_slice(&rendered.body).unwrap();
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .starts_with(":rotating_light: job.failed")
        );
        assert!(v["blocks"].as_array().unwrap().len() >= 3);
        eprintln!("a realistic Slack template used {} fuel", rendered.fuel);
    }

    /// The templates of the console, the benches and the other crates'
    /// tests still compile and render; the endless one runs out of fuel.
    #[test]
    fn format_template_templates_used_elsewhere_still_work() {
        let e = example("job.failed");
        for source in [
            // The console's starter and its browser test (a literal `set`).
            "{\n  \"text\": {{ (\"Event \" ~ type ~ \" at \" ~ timestamp)|tojson }},\n  \"type\": {{ type|tojson }},\n  \"data\": {{ data|tojson }}\n}",
            "{% set note = '<script>x</script>' %}{\n  \"text\": {{ (\"Job \" ~ type)|tojson }},\n  \"note\": {{ note|tojson }},\n  \"data\": {{ data|tojson }}\n}",
            // The delivery bench's typical template.
            r#"{"content": {{ ("Job " ~ data.job_id ~ " (" ~ data.job_type ~ ") is " ~ data.state)|tojson }}, "fields": [{"name": "from", "value": {{ data.previous_state|tojson }}}]}"#,
            // The vendor fakes' Slack template.
            r#"{"text": {{ ("*" ~ type ~ "* " ~ (data.job_id | default(subject_id | default("")))) | tojson }}, "t": {{ ("*" ~ type ~ "*" ~ (" — " ~ data.error.message if data.error is mapping and data.error.message else "")) | tojson }}}"#,
            // The local stack's and the API's.
            r#"{"job": {{ data.job_id|tojson }}, "now": {{ data.state|tojson }}, "why": {{ (data.error.reason if data.error else none)|tojson }}}"#,
            r#"{% if type == "job.failed" %}{"failed": {{ data.job_id|tojson }}}{% else %}{"other": {{ type|tojson }}}{% endif %}"#,
        ] {
            let t = Template::compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
            t.render(&e).unwrap_or_else(|e| panic!("{source}: {e}"));
        }
        let endless = Template::compile(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{}",
        )
        .unwrap();
        let started = std::time::Instant::now();
        assert_eq!(endless.render(&e), Err(RenderError::OutOfFuel(FUEL)));
        eprintln!(
            "the endless template ran out of fuel in {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn format_template_map_stops_at_the_value_cap_as_it_goes() {
        // Each item becomes about 16 KB: the list would be 160 MB whole.
        let wide = "x".repeat(16_000);
        let source =
            format!(r#"{{{{ range(100000, 110000) | map("replace", "", "{wide}") | length }}}}"#);
        let started = std::time::Instant::now();
        let err = render(&source, &example("job.failed")).unwrap_err();
        assert!(
            matches!(err, RenderError::Template(ref m) if m.contains("too large")),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // With attribute= it maps as before.
        let v = render(
            r#"{"states": {{ data.state_history | map(attribute="state") | list | tojson }}}"#,
            &example("job.failed"),
        )
        .unwrap();
        assert_eq!(v["states"], json!(["pending", "running"]));
    }

    #[test]
    fn format_template_slices_of_event_values_count_as_values_made() {
        let slices = vec!["data.job_id[:]"; 20].join(", ");
        let source = format!(r#"{{"n": {{{{ [{slices}] | length }}}}}}"#);
        assert!(matches!(
            Template::compile(&source),
            Err(RenderError::Template(_))
        ));
        let v = render(
            r#"{"short": {{ data.job_id[:4] | tojson }}}"#,
            &example("job.failed"),
        )
        .unwrap();
        assert_eq!(v["short"], "job_");
    }
}
