//! Random JSON schemas of the kinds applications send (nested objects with required
//! fields, arrays with bounds, enums, bounded strings and integers) and an independent
//! validator for exactly that subset, to check constrained outputs without trusting the
//! grammar engine that produced them.

use hearth::quant::Rng;
use serde_json::{json, Map, Value};

/// A random schema `depth` levels deep at most.
pub fn random_schema(rng: &mut Rng, depth: u32) -> Value {
    let pick = rng.next_u32() % if depth == 0 { 5 } else { 7 };
    match pick {
        0 => json!({"type": "string", "maxLength": 1 + rng.next_u32() % 8}),
        1 => {
            let lo = rng.next_u32() as i64 % 50 - 25;
            json!({"type": "integer", "minimum": lo, "maximum": lo + (rng.next_u32() % 200) as i64})
        }
        2 => json!({"type": "boolean"}),
        3 => {
            let words = ["red", "green", "blue", "x", "north", "a b", "\u{e9}t\u{e9}"];
            let n = 1 + rng.next_u32() as usize % 4;
            let from = rng.next_u32() as usize % (words.len() - n + 1);
            json!({"enum": words[from..from + n]})
        }
        4 => json!({"type": "null"}),
        5 => json!({
            "type": "array",
            "items": random_schema(rng, depth - 1),
            "minItems": rng.next_u32() % 2,
            "maxItems": 1 + rng.next_u32() % 3,
        }),
        _ => {
            let n = 1 + rng.next_u32() as usize % 4;
            let mut props = Map::new();
            let mut required = Vec::new();
            for i in 0..n {
                let key = format!("k{i}_{}", rng.next_u32() % 100);
                if !rng.next_u32().is_multiple_of(3) {
                    required.push(Value::String(key.clone()));
                }
                props.insert(key, random_schema(rng, depth - 1));
            }
            json!({
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": false,
            })
        }
    }
}

/// Whether `v` is valid under `schema` (the subset `random_schema` writes, plus
/// `enum`, `const` and `type` lists); the first violation otherwise.
pub fn validate(schema: &Value, v: &Value) -> Result<(), String> {
    validate_at(schema, v, "$")
}

fn validate_at(s: &Value, v: &Value, at: &str) -> Result<(), String> {
    let bad = |what: String| Err(format!("{at}: {what} (value {v})"));
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return bad(format!("not one of {e:?}"));
        }
    }
    if let Some(c) = s.get("const") {
        if c != v {
            return bad(format!("not {c}"));
        }
    }
    if let Some(t) = s.get("type") {
        let types: Vec<&str> = match t {
            Value::String(t) => vec![t.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => return bad("bad type in schema".into()),
        };
        let ok = types.iter().any(|t| match *t {
            "string" => v.is_string(),
            "integer" => v.is_i64() || v.is_u64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            _ => false,
        });
        if !ok {
            return bad(format!("not of type {t}"));
        }
    }
    if let (Some(m), Some(x)) = (s.get("maxLength").and_then(Value::as_u64), v.as_str()) {
        if x.chars().count() as u64 > m {
            return bad(format!("longer than {m}"));
        }
    }
    if let Some(x) = v.as_i64() {
        if s.get("minimum")
            .and_then(Value::as_i64)
            .is_some_and(|m| x < m)
        {
            return bad("below minimum".into());
        }
        if s.get("maximum")
            .and_then(Value::as_i64)
            .is_some_and(|m| x > m)
        {
            return bad("above maximum".into());
        }
    }
    if let Some(a) = v.as_array() {
        let n = a.len() as u64;
        if s.get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m)
        {
            return bad("too few items".into());
        }
        if s.get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m)
        {
            return bad("too many items".into());
        }
        if let Some(items) = s.get("items") {
            for (i, x) in a.iter().enumerate() {
                validate_at(items, x, &format!("{at}[{i}]"))?;
            }
        }
    }
    if let Some(o) = v.as_object() {
        let props = s.get("properties").and_then(Value::as_object);
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for k in req.iter().filter_map(Value::as_str) {
                if !o.contains_key(k) {
                    return bad(format!("missing required {k}"));
                }
            }
        }
        for (k, x) in o {
            match props.and_then(|p| p.get(k)) {
                Some(ps) => validate_at(ps, x, &format!("{at}.{k}"))?,
                None if s.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    return bad(format!("unexpected key {k}"))
                }
                None => {}
            }
        }
    }
    Ok(())
}
