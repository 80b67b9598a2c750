//! The filters and globals a template may use: an allow-list of
//! MiniJinja's builtins, each behind a wrapper that keeps the values it
//! makes within [`MAX_VALUE_BYTES`] (see the parent module's docs for
//! the bound this gives).

use std::borrow::Cow;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, Value, filters, functions};

/// The largest value a filter may take in (where its work grows with
/// its input) or give back, in [`size`] units (about bytes).
pub const MAX_VALUE_BYTES: usize = 128 * 1024;
/// The most items a filter may take in or give back (a list's items, a
/// mapping's entries, a string's lines or parts).
pub const MAX_ITEMS: usize = 10_000;
/// The longest separator `join` accepts, in bytes.
pub const MAX_JOINER_BYTES: usize = 64;

/// MiniJinja's builtin filters that templates lose: escaping for HTML
/// (`escape`, `e`, `safe`), width and layout (`indent`, `format`,
/// `pprint`, `batch`, `slice`), and the rest of what JSON bodies do not
/// need (`attr`, `groupby`, `chain`, `zip`, `urlencode`).
const DROPPED_FILTERS: &[&str] = &[
    "safe",
    "escape",
    "e",
    "attr",
    "batch",
    "slice",
    "indent",
    "groupby",
    "chain",
    "zip",
    "pprint",
    "format",
    "urlencode",
];

/// The filters templates keep, each wrapped.
pub const FILTERS: &[&str] = &[
    "tojson",
    "default",
    "d",
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "length",
    "count",
    "first",
    "last",
    "round",
    "int",
    "float",
    "abs",
    "bool",
    "string",
    "join",
    "items",
    "dictsort",
    "sort",
    "reverse",
    "unique",
    "min",
    "max",
    "sum",
    "list",
    "select",
    "reject",
    "selectattr",
    "rejectattr",
    "map",
    "replace",
    "split",
    "lines",
];

/// Removes every builtin filter and global not on the allow-list, and
/// registers the kept ones behind size checks.
pub(super) fn install(env: &mut Environment<'static>) {
    for name in DROPPED_FILTERS {
        env.remove_filter(name);
    }
    // `namespace()` is the one mutable value; `debug` prints the state.
    env.remove_global("namespace");
    env.remove_global("debug");
    env.add_function("range", range);
    env.add_function("dict", dict);

    env.add_filter("tojson", tojson);
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("upper", |s: &State, v: Value| text(s, v, filters::upper));
    env.add_filter("lower", |s: &State, v: Value| text(s, v, filters::lower));
    env.add_filter("capitalize", |s: &State, v: Value| {
        text(s, v, filters::capitalize)
    });
    env.add_filter("title", |s: &State, v: Value| {
        text(s, v, |i| {
            Value::from(filters::title(Cow::Borrowed(i.as_str())))
        })
    });
    env.add_filter("trim", trim);
    env.add_filter("length", |v: &Value| filters::length(v));
    env.add_filter("count", |v: &Value| filters::length(v));
    env.add_filter("first", |v: &Value| result(filters::first(v)));
    env.add_filter("last", |v: Value| {
        items_in(&v)?;
        result(filters::last(v))
    });
    env.add_filter("round", |v: Value, p: Option<i32>| filters::round(v, p));
    env.add_filter("int", |s: &State, v: &Value| {
        fits(v)?;
        filters::int(s, v)
    });
    env.add_filter("float", |s: &State, v: &Value| {
        fits(v)?;
        filters::float(s, v)
    });
    env.add_filter("abs", |v: Value| filters::abs(v));
    env.add_filter("bool", |s: &State, v: &Value| filters::bool(s, v));
    env.add_filter("string", string);
    env.add_filter("join", join);
    env.add_filter("items", |v: &Value| {
        items_in(v)?;
        result(filters::items(v))
    });
    env.add_filter("dictsort", |v: &Value, k: Kwargs| {
        items_in(v)?;
        result(filters::dictsort(v, k))
    });
    env.add_filter("sort", |s: &State, v: Value, k: Kwargs| {
        items_in(&v)?;
        result(filters::sort(s, v, k))
    });
    env.add_filter("reverse", |v: &Value| {
        items_in(v)?;
        result(filters::reverse(v))
    });
    env.add_filter("unique", |s: &State, v: Value, k: Kwargs| {
        items_in(&v)?;
        result(filters::unique(s, v, k))
    });
    env.add_filter("min", |s: &State, v: Value| {
        items_in(&v)?;
        result(filters::min(s, v))
    });
    env.add_filter("max", |s: &State, v: Value| {
        items_in(&v)?;
        result(filters::max(s, v))
    });
    env.add_filter("sum", |s: &State, v: Value| {
        items_in(&v)?;
        result(filters::sum(s, v))
    });
    env.add_filter("list", list);
    env.add_filter(
        "select",
        |s: &State, v: Value, t: Option<Value>, a: Rest<Value>| {
            items_in(&v)?;
            let t = name_arg(t)?;
            result(filters::select(s, v, t, a).map(Value::from))
        },
    );
    env.add_filter(
        "reject",
        |s: &State, v: Value, t: Option<Value>, a: Rest<Value>| {
            items_in(&v)?;
            let t = name_arg(t)?;
            result(filters::reject(s, v, t, a).map(Value::from))
        },
    );
    env.add_filter(
        "selectattr",
        |s: &State, v: Value, attr: Value, t: Option<Value>, a: Rest<Value>| {
            items_in(&v)?;
            let attr = name_arg(Some(attr))?.unwrap_or_default();
            let t = name_arg(t)?;
            result(filters::selectattr(s, v, attr, t, a).map(Value::from))
        },
    );
    env.add_filter(
        "rejectattr",
        |s: &State, v: Value, attr: Value, t: Option<Value>, a: Rest<Value>| {
            items_in(&v)?;
            let attr = name_arg(Some(attr))?.unwrap_or_default();
            let t = name_arg(t)?;
            result(filters::rejectattr(s, v, attr, t, a).map(Value::from))
        },
    );
    env.add_filter("map", map);
    env.add_filter("replace", replace);
    env.add_filter("split", split);
    env.add_filter("lines", |v: &Value| {
        let s = small_str(v)?;
        if s.lines().count() > MAX_ITEMS {
            return Err(too_many());
        }
        result(filters::lines(v))
    });
}

/// An error naming the limit a value went over.
fn too_large() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "value too large: a filter takes in and makes values of at most \
             {MAX_VALUE_BYTES} bytes"
        ),
    )
}

fn too_many() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("too many items: a filter takes in and makes at most {MAX_ITEMS} items"),
    )
}

/// The size of `value`, counting at most `budget`: `None` past it.
///
/// A bound on both the bytes of the value's text (what `~` or
/// `|string` makes of it: a string in a list or mapping is quoted and
/// may have every character escaped, counted as 10 bytes unless it is
/// printable ASCII) and the memory of the value itself (24 bytes a
/// value, 64 a list or mapping). The walk stops as soon as it passes
/// the budget, so it costs at most about `budget` steps.
pub fn size(value: &Value, budget: usize) -> Option<usize> {
    let mut left = budget;
    walk(value, false, &mut left)?;
    Some(budget - left)
}

fn take(left: &mut usize, n: usize) -> Option<()> {
    *left = left.checked_sub(n)?;
    Some(())
}

fn walk(value: &Value, nested: bool, left: &mut usize) -> Option<()> {
    take(left, 24)?;
    match value.kind() {
        ValueKind::String | ValueKind::Bytes => {
            if let Some(s) = value.as_str() {
                if nested {
                    take(left, 2)?;
                    for c in s.chars() {
                        let n = if c.is_ascii_graphic() || c == ' ' {
                            1
                        } else {
                            10
                        };
                        take(left, n)?;
                    }
                } else {
                    take(left, s.len())?;
                }
            } else if let Some(b) = value.as_bytes() {
                take(left, b.len() * 4)?;
            }
        }
        ValueKind::Seq | ValueKind::Iterable => {
            take(left, 64)?;
            for item in value.try_iter().ok()? {
                take(left, 2)?;
                walk(&item, true, left)?;
            }
        }
        ValueKind::Map => {
            take(left, 64)?;
            for key in value.try_iter().ok()? {
                take(left, 4)?;
                let item = value.get_item(&key).ok()?;
                walk(&key, true, left)?;
                walk(&item, true, left)?;
            }
        }
        // Numbers, booleans, none, undefined: within the 24. A plain
        // object (the `loop` variable) shows as a short name.
        _ => take(left, 40)?,
    }
    Some(())
}

/// Refuses a value over [`MAX_VALUE_BYTES`].
fn fits(value: &Value) -> Result<(), Error> {
    size(value, MAX_VALUE_BYTES)
        .map(|_| ())
        .ok_or_else(too_large)
}

/// A filter's result, refused when over [`MAX_VALUE_BYTES`].
/// `map`: with `attribute=`, MiniJinja's (the items are parts of the
/// input); with a filter, that filter applied item by item, the results
/// counted as they come, so the list stops at [`MAX_VALUE_BYTES`] instead
/// of being built whole and measured after.
fn map(state: &State, value: Value, args: Rest<Value>) -> Result<Value, Error> {
    items_in(&value)?;
    let (positional, kwargs): (&[Value], Kwargs) = minijinja::value::from_args(&args)?;
    if kwargs.has("attribute") {
        return result(filters::map(state, value, args).map(Value::from));
    }
    kwargs.assert_all_used()?;
    let name = positional.first().and_then(Value::as_str).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            "map needs a filter name or attribute=",
        )
    })?;
    let mut left = MAX_VALUE_BYTES;
    let mut mapped = Vec::new();
    for item in value.try_iter()? {
        let call: Vec<Value> = std::iter::once(item)
            .chain(positional.iter().skip(1).cloned())
            .collect();
        let out = state.apply_filter(name, &call)?;
        let used = size(&out, left).ok_or_else(too_large)?;
        left -= used;
        mapped.push(out);
    }
    Ok(Value::from(mapped))
}

fn result(value: Result<Value, Error>) -> Result<Value, Error> {
    let value = value?;
    fits(&value)?;
    Ok(value)
}

/// Refuses an input with more than [`MAX_ITEMS`] items (counting at most
/// one more).
fn items_in(value: &Value) -> Result<(), Error> {
    let n = match value.len() {
        Some(n) => n,
        None => match value.try_iter() {
            Ok(iter) => iter.take(MAX_ITEMS + 1).count(),
            Err(_) => 0,
        },
    };
    if n > MAX_ITEMS {
        Err(too_many())
    } else {
        Ok(())
    }
}

/// A string input of at most [`MAX_VALUE_BYTES`] (anything else is
/// turned into its text only after its size is checked).
fn small_str(value: &Value) -> Result<Cow<'_, str>, Error> {
    fits(value)?;
    Ok(match value.as_str() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(value.to_string()),
    })
}

/// A name argument (a test's, an attribute's), checked before it is
/// made a string.
fn name_arg(value: Option<Value>) -> Result<Option<Cow<'static, str>>, Error> {
    match value {
        None => Ok(None),
        Some(v) => Ok(Some(Cow::Owned(small_str(&v)?.into_owned()))),
    }
}

/// A case-changing filter: checked input; the output (up to three times
/// the input for some characters) checked too.
fn text(
    state: &State,
    value: Value,
    f: impl Fn(minijinja::value::StringInput<'_>) -> Value,
) -> Result<Value, Error> {
    let s = Value::from(small_str(&value)?.as_ref());
    let input = minijinja::value::StringInput::new(state, &s)?;
    result(Ok(f(input)))
}

fn trim(state: &State, value: Value, chars: Option<Value>) -> Result<Value, Error> {
    let s = Value::from(small_str(&value)?.as_ref());
    let chars = name_arg(chars)?;
    let input = minijinja::value::StringInput::new(state, &s)?;
    Ok(filters::trim(input, chars))
}

fn default(state: &State, value: &Value, args: Rest<Value>) -> Result<Value, Error> {
    result(filters::default(state, value, args))
}

/// `range`, as MiniJinja's (at most 100,000 numbers, made one at a
/// time as a loop asks for them).
fn range(lower: isize, upper: Option<isize>, step: Option<isize>) -> Result<Value, Error> {
    functions::range(lower, upper, step)
}

fn dict(value: Option<Value>, update_with: Kwargs) -> Result<Value, Error> {
    if let Some(v) = &value {
        items_in(v)?;
    }
    result(functions::dict(value, update_with))
}

/// A capped text buffer: stops (with an error) past [`MAX_VALUE_BYTES`].
#[derive(Default)]
struct Capped(String);

impl std::fmt::Write for Capped {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.0.len() + s.len() > MAX_VALUE_BYTES {
            return Err(std::fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let s = std::str::from_utf8(buf).map_err(std::io::Error::other)?;
        std::fmt::Write::write_str(self, s).map_err(|_| std::io::Error::other("too large"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `tojson`, compact only: the JSON text of the value, with `<`, `>`,
/// `&` and `'` escaped as `\u003c`... as MiniJinja's own does (still
/// valid JSON, safe to embed anywhere). Written into a capped buffer.
fn tojson(value: &Value) -> Result<Value, Error> {
    let mut out = Capped::default();
    if let Err(e) = serde_json::to_writer(&mut out, value) {
        if e.is_io() {
            return Err(too_large());
        }
        return Err(
            Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON").with_source(e),
        );
    }
    let extra = out.0.matches(['<', '>', '&', '\'']).count() * 5;
    if out.0.len() + extra > MAX_VALUE_BYTES {
        return Err(too_large());
    }
    let mut rv = String::with_capacity(out.0.len() + extra);
    for c in out.0.chars() {
        match c {
            '<' => rv.push_str("\\u003c"),
            '>' => rv.push_str("\\u003e"),
            '&' => rv.push_str("\\u0026"),
            '\'' => rv.push_str("\\u0027"),
            _ => rv.push(c),
        }
    }
    Ok(Value::from_safe_string(rv))
}

/// `string`: the value's text, written into a capped buffer.
fn string(value: &Value) -> Result<Value, Error> {
    if value.is_undefined() || value.as_str().is_some() {
        return result(Ok(if value.is_undefined() {
            Value::from("")
        } else {
            value.clone()
        }));
    }
    let mut out = Capped::default();
    write!(out, "{value}").map_err(|_| too_large())?;
    Ok(Value::from(out.0))
}

/// `join`: the items' text with a separator of at most
/// [`MAX_JOINER_BYTES`], built into a capped buffer.
fn join(value: &Value, joiner: Option<Value>) -> Result<Value, Error> {
    let joiner = match joiner {
        None => Cow::Borrowed(""),
        Some(j) => {
            let j = small_str(&j)?.into_owned();
            if j.len() > MAX_JOINER_BYTES {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("join takes a separator of at most {MAX_JOINER_BYTES} bytes"),
                ));
            }
            Cow::Owned(j)
        }
    };
    if value.is_undefined() || value.is_none() {
        return Ok(Value::from(""));
    }
    if let Some(s) = value.as_str() {
        // Joining a string's characters.
        fits(value)?;
        let mut out = Capped::default();
        for (i, c) in s.chars().enumerate() {
            if i > 0 {
                out.write_str(&joiner).map_err(|_| too_large())?;
            }
            out.write_char(c).map_err(|_| too_large())?;
        }
        return Ok(Value::from(out.0));
    }
    items_in(value)?;
    let mut out = Capped::default();
    let iter = value.try_iter()?;
    for (i, item) in iter.enumerate() {
        if i > 0 {
            out.write_str(&joiner).map_err(|_| too_large())?;
        }
        write!(out, "{item}").map_err(|_| too_large())?;
    }
    Ok(Value::from(out.0))
}

/// `list`: at most [`MAX_ITEMS`] items, counted as they come.
fn list(state: &State, value: Value) -> Result<Value, Error> {
    if value.as_str().is_some() {
        fits(&value)?;
    }
    items_in(&value)?;
    result(filters::list(state, value))
}

/// `replace`: the result's length is worked out before it is made.
fn replace(state: &State, value: Value, from: Value, to: Value) -> Result<Value, Error> {
    let s = small_str(&value)?;
    let from = small_str(&from)?;
    let to = small_str(&to)?;
    let n = if from.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(from.as_ref()).count()
    };
    // The matches do not overlap: `n * from.len()` is at most `s.len()`.
    let len = (s.len() - n.saturating_mul(from.len()).min(s.len()))
        .saturating_add(n.saturating_mul(to.len()));
    if len > MAX_VALUE_BYTES {
        return Err(too_large());
    }
    let (s, from, to) = (
        Value::from(s.as_ref()),
        Value::from(from.as_ref()),
        Value::from(to.as_ref()),
    );
    result(filters::replace(
        state,
        minijinja::value::StringInput::new(state, &s)?,
        minijinja::value::StringInput::new(state, &from)?,
        minijinja::value::StringInput::new(state, &to)?,
    ))
}

/// `split`: at most [`MAX_ITEMS`] parts, counted before they are made.
fn split(value: &Value, sep: Option<Value>, maxsplits: Option<i64>) -> Result<Value, Error> {
    let s = small_str(value)?;
    let sep = match sep {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(small_str(&v)?.into_owned()),
    };
    let parts = match &sep {
        None => s.split_whitespace().count(),
        Some(sep) if sep.is_empty() => s.chars().count() + 2,
        Some(sep) => s.matches(sep.as_str()).count() + 1,
    };
    let parts = match maxsplits {
        Some(m) if m >= 0 => parts.min(m as usize + 1),
        _ => parts,
    };
    if parts > MAX_ITEMS {
        return Err(too_many());
    }
    let value = Value::from(s.as_ref());
    result(filters::split(&value, sep.map(Into::into), maxsplits))
}
