//! Python behaviour chat templates rely on, written against minijinja values: `str()` of a
//! value as Jinja2 prints it, `json.dumps` as transformers' `tojson` filter calls it,
//! Python's `range` and the `iterable`/`sequence` tests.
//!
//! Templates are written and tested in Python's Jinja2, so wherever minijinja's own
//! choice differs (`none` prints as `none`, JSON separators, HTML escaping in `tojson`) a
//! template rendered here would drift from what the model was trained on.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, Value};
use std::fmt::Write as _;

/// Python's `str(value)`: what `{{ value }}` prints in Jinja2.
pub(super) fn py_str(out: &mut String, v: &Value) {
    match v.kind() {
        ValueKind::Undefined => {}
        ValueKind::String => out.push_str(v.as_str().unwrap_or_default()),
        _ => py_repr(out, v),
    }
}

/// Python's `repr(value)`, which `str()` of a list or dict uses for the items.
fn py_repr(out: &mut String, v: &Value) {
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if v.is_true() { "True" } else { "False" }),
        ValueKind::Number => match number(v) {
            Num::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Num::Float(f) => py_float(out, f, "inf", "nan"),
        },
        ValueKind::String => repr_str(out, v.as_str().unwrap_or_default()),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            if let Ok(items) = v.try_iter() {
                for (i, item) in items.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &item);
                }
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            if let Ok(keys) = v.try_iter() {
                for (i, k) in keys.enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    py_repr(out, &k);
                    out.push_str(": ");
                    py_repr(out, &v.get_item(&k).unwrap_or_default());
                }
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{v}");
        }
    }
}

/// A string in Python's repr quoting: single quotes unless only double quotes avoid escapes.
fn repr_str(out: &mut String, s: &str) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

enum Num {
    Int(i128),
    Float(f64),
}

fn number(v: &Value) -> Num {
    if v.is_integer() {
        if let Ok(i) = i128::try_from(v.clone()) {
            return Num::Int(i);
        }
    }
    Num::Float(f64::try_from(v.clone()).unwrap_or(f64::NAN))
}

/// Python's float repr: shortest round-trip digits, positional for exponents in
/// [-4, 16), otherwise `d.ddde+XX`; always a `.0` on whole numbers.
fn py_float(out: &mut String, f: f64, inf: &str, nan: &str) {
    if f.is_nan() {
        out.push_str(nan);
        return;
    }
    if f.is_infinite() {
        if f < 0.0 {
            out.push('-');
        }
        out.push_str(inf);
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits, e.g. `-1.2345e3`.
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    out.push_str(sign);
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', (-exp - 1) as usize));
            out.push_str(&digits);
        } else {
            let point = exp as usize + 1;
            if digits.len() <= point {
                out.push_str(&digits);
                out.extend(std::iter::repeat_n('0', point - digits.len()));
                out.push_str(".0");
            } else {
                out.push_str(&digits[..point]);
                out.push('.');
                out.push_str(&digits[point..]);
            }
        }
    } else {
        out.push_str(mantissa);
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
}

/// How `tojson` lays its output out; the defaults are `json.dumps`'s.
struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

/// The `tojson` filter as transformers defines it: `json.dumps(x, ensure_ascii=False,
/// indent=indent, separators=separators, sort_keys=sort_keys)`, no HTML escaping.
pub(super) fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or("").to_owned()),
        Some(v) => {
            let n = i64::try_from(v)?;
            Some(" ".repeat(n.clamp(0, 64) as usize))
        }
    };
    let (item_sep, key_sep) = match kwargs.get::<Option<Value>>("separators")? {
        Some(v) if !v.is_none() => {
            let parts: Vec<String> = v
                .try_iter()?
                .map(|p| p.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("tojson separators must be two strings"))?;
            match <[String; 2]>::try_from(parts) {
                Ok([a, b]) => (a, b),
                Err(_) => return Err(bad("tojson separators must be two strings")),
            }
        }
        _ if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        _ => (", ".to_owned(), ": ".to_owned()),
    };
    let style = JsonStyle {
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        indent,
        item_sep,
        key_sep,
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write_json(&mut out, value, &style, 0)?;
    Ok(Value::from(out))
}

fn bad(msg: &str) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.to_owned())
}

const MAX_JSON_DEPTH: usize = 128;

fn write_json(out: &mut String, v: &Value, s: &JsonStyle, depth: usize) -> Result<(), Error> {
    if depth > MAX_JSON_DEPTH {
        return Err(bad("tojson: value nested too deeply"));
    }
    match v.kind() {
        ValueKind::Undefined => return Err(bad("tojson: value is undefined")),
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
        ValueKind::Number => match number(v) {
            Num::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Num::Float(f) => py_float(out, f, "Infinity", "NaN"),
        },
        ValueKind::String => json_str(out, v.as_str().unwrap_or_default(), s.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = v.try_iter()?.collect();
            container(out, s, depth, '[', ']', items.len(), |out, i| {
                write_json(out, &items[i], s, depth + 1)
            })?;
        }
        ValueKind::Map => {
            let mut keys: Vec<(String, Value)> = v
                .try_iter()?
                .map(|k| Ok((json_key(&k)?, k)))
                .collect::<Result<_, Error>>()?;
            if s.sort_keys {
                keys.sort_by(|a, b| a.0.cmp(&b.0));
            }
            container(out, s, depth, '{', '}', keys.len(), |out, i| {
                json_str(out, &keys[i].0, s.ensure_ascii);
                out.push_str(&s.key_sep);
                write_json(out, &v.get_item(&keys[i].1)?, s, depth + 1)
            })?;
        }
        _ => {
            return Err(bad(&format!(
                "tojson: a {} is not JSON serializable",
                v.kind()
            )))
        }
    }
    Ok(())
}

/// Writes `[...]`/`{...}` with `json.dumps`'s separators and indentation.
fn container(
    out: &mut String,
    s: &JsonStyle,
    depth: usize,
    open: char,
    close: char,
    len: usize,
    mut item: impl FnMut(&mut String, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if len == 0 {
        out.push(close);
        return Ok(());
    }
    let newline = |out: &mut String, level: usize| {
        if let Some(ind) = &s.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(ind);
            }
        }
    };
    for i in 0..len {
        if i > 0 {
            out.push_str(&s.item_sep);
        }
        newline(out, depth + 1);
        item(out, i)?;
    }
    newline(out, depth);
    out.push(close);
    Ok(())
}

/// Python's json turns str, int, float, bool and None keys into strings.
fn json_key(k: &Value) -> Result<String, Error> {
    Ok(match k.kind() {
        ValueKind::String => k.as_str().unwrap_or_default().to_owned(),
        ValueKind::None => "null".to_owned(),
        ValueKind::Bool => (if k.is_true() { "true" } else { "false" }).to_owned(),
        ValueKind::Number => {
            let mut s = String::new();
            match number(k) {
                Num::Int(i) => {
                    let _ = write!(s, "{i}");
                }
                Num::Float(f) => py_float(&mut s, f, "Infinity", "NaN"),
            }
            s
        }
        _ => return Err(bad("tojson: keys must be str, int, float, bool or None")),
    })
}

fn json_str(out: &mut String, st: &str, ensure_ascii: bool) {
    out.push('"');
    for c in st.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (ensure_ascii && !c.is_ascii()) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Jinja2's `is iterable`: whatever Python's `iter()` accepts. None and numbers are not,
/// an undefined value is (minijinja's own test says yes to none, which sends templates
/// down their `tools` branch when there are no tools).
pub(super) fn is_iterable(v: &Value) -> bool {
    match v.kind() {
        ValueKind::Undefined => true,
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Plain => false,
        _ => v.try_iter().is_ok(),
    }
}

/// Jinja2's `is sequence`: anything with a length and indexing, strings and dicts included.
pub(super) fn is_sequence(v: &Value) -> bool {
    matches!(
        v.kind(),
        ValueKind::Undefined
            | ValueKind::String
            | ValueKind::Seq
            | ValueKind::Map
            | ValueKind::Iterable
            | ValueKind::Bytes
    )
}

/// Most items a `range` may have. Python has no limit, but a list of a hundred million
/// values would exhaust memory before fuel runs out (`range(n) | list` is charged only
/// once built); no chat template counts that high.
pub(super) const MAX_RANGE: u64 = 100_000;

/// Python's `range` as a list (so `length` and indexing work as on a Python range).
pub(super) fn range(lower: i64, upper: Option<i64>, step: Option<i64>) -> Result<Value, Error> {
    let (start, stop) = match upper {
        Some(u) => (lower, u),
        None => (0, lower),
    };
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(bad("range() arg 3 must not be zero"));
    }
    let span = if step > 0 {
        stop.saturating_sub(start)
    } else {
        start.saturating_sub(stop)
    };
    let len = if span <= 0 {
        0
    } else {
        (span as u64).div_ceil(step.unsigned_abs())
    };
    if len > MAX_RANGE {
        return Err(bad(&format!(
            "range of {len} items; chat templates may not count past {MAX_RANGE}"
        )));
    }
    Ok((0..len as i64).map(|i| start + i * step).collect())
}

/// A loop's iterable, unchanged, unless it is None: Jinja2 cannot loop over None.
pub fn iterable(v: Value) -> Result<Value, Error> {
    if v.is_none() {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "'NoneType' object is not iterable",
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn float(f: f64) -> String {
        let mut s = String::new();
        py_float(&mut s, f, "inf", "nan");
        s
    }

    #[test]
    fn floats_print_like_python() {
        assert_eq!(float(1.0), "1.0");
        assert_eq!(float(0.1), "0.1");
        assert_eq!(float(-1234.5), "-1234.5");
        assert_eq!(float(1e16), "1e+16");
        assert_eq!(float(1.5e-5), "1.5e-05");
        assert_eq!(float(0.0001), "0.0001");
        assert_eq!(float(123456789012345.0), "123456789012345.0");
    }

    #[test]
    fn ranges_count_like_python() {
        let list = |v: Value| {
            v.try_iter()
                .unwrap()
                .map(|x| i64::try_from(x).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(list(range(3, None, None).unwrap()), [0, 1, 2]);
        assert_eq!(list(range(5, Some(0), Some(-2)).unwrap()), [5, 3, 1]);
        assert_eq!(list(range(1, Some(1), None).unwrap()), Vec::<i64>::new());
        assert!(range(100_000_000, None, None).is_err());
        assert!(range(0, Some(1), Some(0)).is_err());
    }

    #[test]
    fn repr_quotes_like_python() {
        let v: Value = vec![Value::from("it's"), Value::from("a"), Value::from(())]
            .into_iter()
            .collect();
        let mut s = String::new();
        py_str(&mut s, &v);
        assert_eq!(s, "[\"it's\", 'a', None]");
    }
}
