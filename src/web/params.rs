//! What the page sends, read into the engine's types: the prompt (a string or a list of
//! `{role, content}` messages), generation parameters with the CLI's names and defaults,
//! and load options. Pure Rust over `serde_json`, so it is tested natively; the
//! bindings turn JS values into JSON first.

use crate::constraint::Format;
use crate::engine::{EngineOptions, GenerateOptions, Prompt};
use crate::sampling::SamplingParams;
use crate::tokenizer::Message;
use serde_json::{Map, Value};

/// Generation parameters with everything the page may set.
#[derive(Clone, Debug)]
pub struct WebGenerate {
    /// Sampling, length and stop sequences.
    pub options: GenerateOptions,
    /// Feed a string prompt as is instead of as one user turn.
    pub raw: bool,
    /// System prompt put before a string prompt in chat mode.
    pub system: Option<String>,
}

/// Keys `generate` accepts (the CLI's flag names, with `max_tokens` as an alias of
/// `num_predict`).
const GENERATE_KEYS: &[&str] = &[
    "temperature",
    "top_k",
    "top_p",
    "min_p",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "num_predict",
    "max_tokens",
    "stop",
    "raw",
    "system",
    "format",
    "grammar",
    "regex",
];

/// Keys `load` accepts.
const LOAD_KEYS: &[&str] = &["context", "batch", "kv_type"];

fn object<'a>(
    v: &'a Value,
    what: &str,
    keys: &[&str],
) -> Result<Option<&'a Map<String, Value>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| !keys.contains(&k.as_str())) {
                return Err(format!(
                    "unknown {what} option '{k}' (expected one of: {})",
                    keys.join(", ")
                ));
            }
            Ok(Some(m))
        }
        _ => Err(format!("{what} options must be an object")),
    }
}

fn number(m: &Map<String, Value>, key: &str) -> Result<Option<f64>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(format!("'{key}' must be a number, not {other}")),
    }
}

fn count(m: &Map<String, Value>, key: &str) -> Result<Option<usize>, String> {
    match number(m, key)? {
        None => Ok(None),
        Some(x) if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 => Ok(Some(x as usize)),
        Some(x) => Err(format!("'{key}' must be a whole number >= 0, not {x}")),
    }
}

/// Reads `{temperature, top_k, ..., num_predict, stop, raw, system}`; missing keys take
/// the CLI's defaults, `num_predict` -1 or absent means no limit.
pub fn generate_params(v: &Value) -> Result<WebGenerate, String> {
    let mut sampling = SamplingParams::default();
    let mut out = WebGenerate {
        options: GenerateOptions::default(),
        raw: false,
        system: None,
    };
    let Some(m) = object(v, "generate", GENERATE_KEYS)? else {
        out.options.sampling = sampling;
        return Ok(out);
    };
    let float = |key: &str, slot: &mut f32| -> Result<(), String> {
        if let Some(x) = number(m, key)? {
            *slot = x as f32;
        }
        Ok(())
    };
    float("temperature", &mut sampling.temperature)?;
    float("top_p", &mut sampling.top_p)?;
    float("min_p", &mut sampling.min_p)?;
    float("repeat_penalty", &mut sampling.repeat_penalty)?;
    float("presence_penalty", &mut sampling.presence_penalty)?;
    float("frequency_penalty", &mut sampling.frequency_penalty)?;
    if let Some(k) = count(m, "top_k")? {
        sampling.top_k = k;
    }
    if let Some(n) = count(m, "repeat_last_n")? {
        sampling.repeat_last_n = n;
    }
    sampling.seed = match number(m, "seed")? {
        Some(s) if s >= 0.0 && s.fract() == 0.0 => s as u64,
        Some(s) => return Err(format!("'seed' must be a whole number >= 0, not {s}")),
        None => web_time::SystemTime::now()
            .duration_since(web_time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    };
    sampling.validate().map_err(|e| e.to_string())?;
    let limit = match (number(m, "num_predict")?, number(m, "max_tokens")?) {
        (Some(_), Some(_)) => return Err("give 'num_predict' or 'max_tokens', not both".into()),
        (Some(n), None) | (None, Some(n)) => Some(n),
        (None, None) => None,
    };
    out.options.max_tokens = match limit {
        None => None,
        Some(n) if n < 0.0 && n.fract() == 0.0 && n as i64 == -1 => None,
        Some(n) if n >= 0.0 && n.fract() == 0.0 => Some(n as usize),
        Some(n) => {
            return Err(format!(
                "'num_predict' must be -1 (no limit) or >= 0, not {n}"
            ))
        }
    };
    out.options.stop = match m.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| match s {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("'stop' entries must be strings, not {other}")),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("'stop' must be a string or a list, not {other}")),
    };
    out.raw = match m.get("raw") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("'raw' must be true or false, not {other}")),
    };
    out.system = match m.get("system") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => return Err(format!("'system' must be a string, not {other}")),
    };
    let text = |key: &str| match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!("'{key}' must be a string, not {other}")),
    };
    let format = match m.get("format") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s == "json" => Some(Format::JsonObject),
        Some(v @ (Value::Object(_) | Value::Bool(true))) => Some(Format::schema(v.clone())),
        Some(other) => {
            return Err(format!(
                "'format' must be \"json\" or a JSON schema object, not {other}"
            ))
        }
    };
    let grammar = text("grammar")?.map(|g| Format::grammar(&g));
    let regex = text("regex")?.map(Format::Regex);
    let mut all = [format, grammar, regex].into_iter().flatten();
    out.options.format = all.next();
    if all.next().is_some() {
        return Err("give at most one of 'format', 'grammar' and 'regex'".into());
    }
    out.options.sampling = sampling;
    Ok(out)
}

/// A string (raw, or one user turn after the optional system prompt) or a list of
/// `{role, content}` messages.
pub fn prompt(v: &Value, params: &WebGenerate) -> Result<Prompt, String> {
    match v {
        Value::String(s) if params.raw => Ok(Prompt::Raw(s.clone())),
        Value::String(s) => {
            let mut turns = Vec::new();
            if let Some(sys) = &params.system {
                turns.push(Message::new("system", sys.clone()));
            }
            turns.push(Message::new("user", s.clone()));
            Ok(Prompt::Chat(turns))
        }
        Value::Array(items) => {
            if params.raw {
                return Err("'raw' needs a string prompt, not a list of messages".into());
            }
            let turns = items
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    let field = |k: &str| match m.get(k) {
                        Some(Value::String(s)) => Ok(s.clone()),
                        _ => Err(format!("message {i} needs a string '{k}'")),
                    };
                    Ok(Message::new(field("role")?, field("content")?))
                })
                .collect::<Result<Vec<_>, String>>()?;
            if turns.is_empty() {
                return Err("the list of messages is empty".into());
            }
            Ok(Prompt::Chat(turns))
        }
        _ => Err("the prompt must be a string or a list of {role, content} messages".into()),
    }
}

/// Reads `{context, batch, kv_type}` on top of the browser defaults (a 2048-token
/// context); `kv_type` is "f32", "f16" or "q8_0".
pub fn load_options(v: &Value) -> Result<EngineOptions, String> {
    let mut opts = EngineOptions {
        context: 2048,
        ..EngineOptions::default()
    };
    if let Some(m) = object(v, "load", LOAD_KEYS)? {
        if let Some(c) = count(m, "context")? {
            opts.context = c.max(1);
        }
        if let Some(b) = count(m, "batch")? {
            opts.batch = b.max(1);
        }
        match m.get("kv_type") {
            None | Some(Value::Null) => {}
            Some(Value::String(t)) => opts.kv_type = Some(crate::kernels::KvType::parse(t)?),
            Some(other) => return Err(format!("load.kv_type must be a string, not {other}")),
        }
    }
    Ok(opts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn load_takes_a_kv_type() {
        let o = load_options(&json!({"kv_type": "q8_0"})).unwrap();
        assert_eq!(o.kv_type, Some(crate::kernels::KvType::Q8_0));
        assert_eq!(load_options(&Value::Null).unwrap().kv_type, None);
        let Err(e) = load_options(&json!({"kv_type": "q4"})) else {
            panic!("q4 is no KV type");
        };
        assert!(e.contains("q8_0"), "{e}");
        assert!(load_options(&json!({"kv_type": 8})).is_err());
    }

    #[test]
    fn defaults_match_the_cli() {
        let p = generate_params(&Value::Null).unwrap();
        let d = SamplingParams::default();
        assert_eq!(p.options.sampling.temperature, d.temperature);
        assert_eq!(p.options.sampling.top_k, d.top_k);
        assert_eq!(p.options.max_tokens, None);
        assert!(!p.raw);
    }

    #[test]
    fn reads_every_key() {
        let p = generate_params(&json!({
            "temperature": 0, "top_k": 5, "seed": 7, "num_predict": 12,
            "stop": "\n", "raw": true, "repeat_penalty": 1.0
        }))
        .unwrap();
        assert_eq!(p.options.sampling.temperature, 0.0);
        assert_eq!(p.options.sampling.top_k, 5);
        assert_eq!(p.options.sampling.seed, 7);
        assert_eq!(p.options.max_tokens, Some(12));
        assert_eq!(p.options.stop, vec!["\n".to_string()]);
        assert!(p.raw);
        let p = generate_params(&json!({"max_tokens": -1})).unwrap();
        assert_eq!(p.options.max_tokens, None);
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for bad in [
            json!({"temprature": 0}),
            json!({"temperature": "hot"}),
            json!({"temperature": -1}),
            json!({"top_k": 1.5}),
            json!({"num_predict": -2}),
            json!({"num_predict": 1, "max_tokens": 1}),
            json!({"stop": [1]}),
            json!([1]),
        ] {
            assert!(generate_params(&bad).is_err(), "{bad}");
        }
        assert!(load_options(&json!({"ctx": 1})).is_err());
    }

    #[test]
    fn prompts_from_strings_and_messages() {
        let raw = generate_params(&json!({"raw": true})).unwrap();
        assert!(matches!(prompt(&json!("hi"), &raw), Ok(Prompt::Raw(s)) if s == "hi"));
        let chat = generate_params(&json!({"system": "be brief"})).unwrap();
        match prompt(&json!("hi"), &chat).unwrap() {
            Prompt::Chat(m) => assert_eq!((m.len(), m[0].role.as_str()), (2, "system")),
            other => panic!("{other:?}"),
        }
        let msgs = json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]);
        assert!(matches!(prompt(&msgs, &chat), Ok(Prompt::Chat(m)) if m.len() == 2));
        assert!(prompt(&json!([{"role": "user"}]), &chat).is_err());
        assert!(prompt(&json!([]), &chat).is_err());
        assert!(prompt(&msgs, &raw).is_err());
        assert!(prompt(&json!(3), &chat).is_err());
    }

    #[test]
    fn load_options_default_and_override() {
        assert_eq!(load_options(&Value::Null).unwrap().context, 2048);
        let o = load_options(&json!({"context": 512, "batch": 64})).unwrap();
        assert_eq!((o.context, o.batch), (512, 64));
    }
}
