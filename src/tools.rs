//! Tool calling: the functions a request offers, how the model is told about them, how
//! its calls are constrained and how they are read back out of its text.
//!
//! A template that knows tools (it uses the `tools` variable) renders them itself, and
//! the model answers in its own format, told apart by what the template writes:
//! Hermes/Qwen `<tool_call>{json}</tool_call>`, Llama 3 `{"name", "parameters"}` JSON,
//! Mistral `[TOOL_CALLS][...]`. A template that knows no tools (SmolLM2's, Gemma's)
//! gets them through a system message, and the model answers with one JSON object,
//! `{"tool_calls": [{"name", "arguments"}]}` or `{"response": "text"}`, held to that
//! shape (and each call's arguments to its function's schema) by the grammar, as
//! llama.cpp's generic handler does.
//!
//! `tool_choice: "required"` or a named function forces a call through the grammar in
//! every format that has one (Hermes, Llama 3, generic).

use crate::constraint::{lark_json, Format};
use crate::tokenizer::{ChatTemplate, Message, ToolCall};
use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most tools one request may offer.
pub const MAX_TOOLS: usize = 128;

/// Most calls one answer may make.
pub const MAX_CALLS: usize = 8;

/// One function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    /// Its name (`[A-Za-z0-9_.-]`, at most 64 bytes).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// The JSON schema of its arguments (an object schema).
    pub parameters: Value,
}

/// Which calls the model may or must make.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolChoice {
    /// Text or calls, as the model decides.
    Auto,
    /// No calls: the tools are not shown.
    None,
    /// At least one call.
    Required,
    /// A call of this function.
    Named(String),
}

/// How a model writes calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>` (Hermes, Qwen 2.5/3).
    Hermes,
    /// A JSON object `{"name": …, "parameters": {…}}` (Llama 3.1+).
    Llama3,
    /// `[TOOL_CALLS][{"name": …, "arguments": {…}}]` (Mistral; also the newer
    /// `[TOOL_CALLS]name[ARGS]{…}`).
    Mistral,
    /// gpt-oss harmony: `<|channel|>commentary to=functions.NAME <|constrain|>json
    /// <|message|>{…}<|call|>`, the answer in the `final` channel.
    Harmony,
    /// Gemma 4: `<|tool_call>call:NAME{key:value,…}<tool_call|>`, strings between
    /// `<|"|>` marks.
    Gemma4,
    /// A template that knows no tools: hearth's system message and JSON answer.
    Generic,
}

impl Style {
    /// The format `template` uses (Generic when it never mentions `tools`).
    pub fn of(template: Option<&ChatTemplate>) -> Self {
        let Some(src) = template.map(ChatTemplate::source) else {
            return Style::Generic;
        };
        if !src.contains("tools") {
            Style::Generic
        } else if src.contains("<|tool_call>call:") {
            Style::Gemma4
        } else if src.contains("<|channel|>") {
            Style::Harmony
        } else if src.contains("<tool_call>") {
            Style::Hermes
        } else if src.contains("[TOOL_CALLS]") {
            Style::Mistral
        } else if src.contains("<|python_tag|>") || src.contains("ipython") {
            Style::Llama3
        } else {
            // Templates that render tools in a format of their own: their calls are
            // read as JSON objects naming a function, wherever they appear.
            Style::Llama3
        }
    }
}

/// The tools of one request, with the choice and the model's format.
#[derive(Clone, Debug)]
pub struct ToolSetup {
    /// The functions.
    pub tools: Vec<Tool>,
    /// What the model may do with them.
    pub choice: ToolChoice,
    /// How the model writes calls.
    pub style: Style,
}

/// A tool definition or choice that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ToolError(pub String);

fn bad(msg: impl Into<String>) -> ToolError {
    ToolError(msg.into())
}

/// Reads OpenAI/ollama tool definitions: `{"type": "function", "function": {"name",
/// "description", "parameters"}}`.
pub fn parse_tools(defs: &[Value]) -> Result<Vec<Tool>, ToolError> {
    if defs.len() > MAX_TOOLS {
        return Err(bad(format!("at most {MAX_TOOLS} tools")));
    }
    let mut tools = Vec::with_capacity(defs.len());
    for (i, d) in defs.iter().enumerate() {
        match d.get("type").and_then(Value::as_str) {
            Some("function") | None => {}
            Some(t) => return Err(bad(format!("tools[{i}].type {t:?}: only \"function\""))),
        }
        let f = d
            .get("function")
            .ok_or_else(|| bad(format!("tools[{i}] has no function")))?;
        let name = f
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("tools[{i}].function has no name")))?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if !valid {
            return Err(bad(format!(
                "tools[{i}].function.name {name:?}: 1 to 64 of A-Z a-z 0-9 _ - ."
            )));
        }
        if tools.iter().any(|t: &Tool| t.name == name) {
            return Err(bad(format!("tool {name:?} is defined twice")));
        }
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p @ Value::Object(_)) => p.clone(),
            Some(_) => {
                return Err(bad(format!(
                    "tools[{i}].function.parameters must be a JSON schema object"
                )))
            }
        };
        tools.push(Tool {
            name: name.to_string(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            parameters,
        });
    }
    Ok(tools)
}

/// Reads `tool_choice`: "auto", "none", "required", or `{"type": "function",
/// "function": {"name"}}` naming one of `tools`.
pub fn parse_choice(v: Option<&Value>, tools: &[Tool]) -> Result<ToolChoice, ToolError> {
    let choice = match v {
        None | Some(Value::Null) => ToolChoice::Auto,
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(format!(
                    "tool_choice {other:?}: auto, none, required or a function"
                )))
            }
        },
        Some(o) => {
            let name = o
                .pointer("/function/name")
                .or_else(|| o.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| bad("tool_choice names no function"))?;
            ToolChoice::Named(name.to_string())
        }
    };
    if let ToolChoice::Named(n) = &choice {
        if !tools.iter().any(|t| &t.name == n) {
            return Err(bad(format!(
                "tool_choice names {n:?}, which is not in tools"
            )));
        }
    }
    if tools.is_empty() && matches!(choice, ToolChoice::Required) {
        return Err(bad("tool_choice is required but no tools are given"));
    }
    Ok(choice)
}

/// The text a template sees for an OpenAI-style function list.
fn definitions(tools: &[Tool]) -> Value {
    Value::Array(
        tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect(),
    )
}

impl ToolSetup {
    /// Whether the model is offered the tools at all.
    pub fn active(&self) -> bool {
        self.choice != ToolChoice::None && !self.tools.is_empty()
    }

    /// The functions a call may name.
    fn callable(&self) -> Vec<&Tool> {
        match &self.choice {
            ToolChoice::Named(n) => self.tools.iter().filter(|t| &t.name == n).collect(),
            _ => self.tools.iter().collect(),
        }
    }

    /// The conversation and `tools` value to render: the template's own `tools`, or for
    /// a template without them, a system message that describes them.
    pub fn prepare(&self, messages: &[Message]) -> (Vec<Message>, Option<Value>) {
        let mut msgs = messages.to_vec();
        if self.style != Style::Generic {
            return (msgs, self.active().then(|| definitions(&self.tools)));
        }
        // The generic format: earlier calls and results become text the template can
        // show, and a system message explains the tools and the answer's shape.
        for m in &mut msgs {
            if !m.tool_calls.is_empty() {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"name": c.name, "arguments": c.arguments}))
                    .collect();
                m.content = json!({"tool_calls": calls}).to_string();
                m.tool_calls.clear();
            }
            if m.role == "tool" {
                m.role = "user".into();
                m.content = format!(
                    "Result of tool {}: {}",
                    m.name.as_deref().unwrap_or("call"),
                    m.content
                );
            }
        }
        if !self.active() {
            return (msgs, None);
        }
        let list: Vec<Value> = self
            .callable()
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "parameters": t.parameters}))
            .collect();
        let answer = match self.choice {
            ToolChoice::Auto => "Respond with one JSON object: {\"tool_calls\": [{\"name\": ..., \"arguments\": {...}}]} to call tools, or {\"response\": \"...\"} to answer the user directly.",
            _ => "Respond with one JSON object: {\"tool_calls\": [{\"name\": ..., \"arguments\": {...}}]} calling the tools you need.",
        };
        let text = format!(
            "You can call these tools:\n{}\n{answer} After calling tools you receive their results and then answer.",
            Value::Array(list)
        );
        match msgs.first_mut() {
            Some(m) if m.role == "system" => m.content = format!("{}\n\n{text}", m.content),
            _ => msgs.insert(0, Message::new("system", text)),
        }
        (msgs, None)
    }

    /// One call of any callable function, as JSON: `{"name": const, <args>: schema}`.
    fn call_schema(&self, args_key: &str) -> Value {
        let one: Vec<Value> = self
            .callable()
            .iter()
            .map(|t| {
                let mut props = Map::new();
                props.insert("name".into(), json!({"const": t.name}));
                props.insert(args_key.into(), t.parameters.clone());
                json!({"type": "object", "properties": props,
                       "required": ["name", args_key], "additionalProperties": false})
            })
            .collect();
        if one.len() == 1 {
            one.into_iter().next().unwrap_or_default()
        } else {
            json!({"anyOf": one})
        }
    }

    /// What the output must match: always for the generic format; for Hermes the calls
    /// from the moment one opens (`<tool_call>`), and the whole answer when a call is
    /// required; for the others only when a call is required.
    pub fn constraint(&self) -> Option<Format> {
        if !self.active() {
            return None;
        }
        let forced = matches!(self.choice, ToolChoice::Required | ToolChoice::Named(_));
        match self.style {
            Style::Generic => {
                let calls = json!({"type": "object", "properties": {"tool_calls": {
                    "type": "array", "items": self.call_schema("arguments"), "minItems": 1,
                    "maxItems": MAX_CALLS}},
                    "required": ["tool_calls"], "additionalProperties": false});
                Some(Format::schema(if forced {
                    calls
                } else {
                    json!({"anyOf": [calls, {"type": "object", "properties": {"response":
                        {"type": "string"}}, "required": ["response"],
                        "additionalProperties": false}]})
                }))
            }
            Style::Hermes if forced => Some(Format::Lark(format!(
                "start: call (\"\\n\" call){{0,{}}}\ncall: \"<tool_call>\\n\" %json {} \"\\n</tool_call>\"\n",
                MAX_CALLS - 1,
                lark_json(self.call_schema("arguments"))
            ))),
            // Free text until the model opens a call; from there the call (and any
            // further ones) follows the tools' schemas.
            Style::Hermes => Some(Format::Triggered {
                trigger: "<tool_call>".into(),
                then: Box::new(Format::Lark(format!(
                    "start: body (\"\\n\"? \"<tool_call>\" body){{0,{}}}\nbody: \"\\n\"? %json {} \"\\n\"? \"</tool_call>\"\n",
                    MAX_CALLS - 1,
                    lark_json(self.call_schema("arguments"))
                ))),
            }),
            Style::Llama3 if forced => Some(Format::schema(self.call_schema("parameters"))),
            _ => None,
        }
    }

    /// Whether calls are read from the text with special tokens spelled out (their
    /// markers are control tokens, which plain text leaves out).
    pub fn needs_special_text(&self) -> bool {
        matches!(self.style, Style::Mistral | Style::Harmony | Style::Gemma4)
    }

    /// The text and the calls of a finished answer (`text` with special tokens spelled
    /// out where `needs_special_text`). Calls of unknown functions, or whose arguments
    /// are not an object, are left in the text.
    pub fn parse(&self, text: &str) -> (String, Vec<ToolCall>) {
        if !self.active() {
            return (text.to_string(), Vec::new());
        }
        match self.style {
            Style::Harmony => return self.parse_harmony(text),
            Style::Gemma4 => return self.parse_gemma4(text),
            _ => {}
        }
        let known = |name: &str| self.tools.iter().any(|t| t.name == name);
        let call_of = |v: &Value| -> Option<ToolCall> {
            let name = v.get("name")?.as_str()?;
            let args = v.get("arguments").or_else(|| v.get("parameters"))?;
            let args = match args {
                Value::String(s) => serde_json::from_str(s).ok()?,
                a => a.clone(),
            };
            (known(name) && args.is_object()).then(|| ToolCall {
                id: new_call_id(),
                name: name.to_string(),
                arguments: args,
            })
        };
        let trimmed = text.trim();
        match self.style {
            Style::Generic => {
                if let Ok(v) = serde_json::from_str::<Value>(trimmed) {
                    if let Some(r) = v.get("response").and_then(Value::as_str) {
                        return (r.to_string(), Vec::new());
                    }
                    if let Some(calls) = v.get("tool_calls").and_then(Value::as_array) {
                        let calls: Vec<ToolCall> = calls.iter().filter_map(call_of).collect();
                        if !calls.is_empty() {
                            return (String::new(), calls);
                        }
                    }
                }
                (text.to_string(), Vec::new())
            }
            Style::Hermes => {
                let mut content = String::new();
                let mut calls = Vec::new();
                let mut rest = text;
                while let Some(start) = rest.find("<tool_call>") {
                    content.push_str(&rest[..start]);
                    let body = &rest[start + "<tool_call>".len()..];
                    let (inner, after) = match body.find("</tool_call>") {
                        Some(e) => (&body[..e], &body[e + "</tool_call>".len()..]),
                        None => (body, ""),
                    };
                    match serde_json::from_str::<Value>(inner.trim())
                        .ok()
                        .as_ref()
                        .and_then(call_of)
                    {
                        Some(c) => calls.push(c),
                        None => content.push_str(&rest[start..rest.len() - after.len()]),
                    }
                    rest = after;
                }
                content.push_str(rest);
                (content.trim().to_string(), calls)
            }
            Style::Harmony | Style::Gemma4 => unreachable!("parsed above"),
            Style::Mistral | Style::Llama3 => {
                // Newer Mistral templates: `[TOOL_CALLS]name[ARGS]{…}`, repeated.
                if trimmed.contains("[ARGS]") {
                    let calls: Vec<ToolCall> = trimmed
                        .split("[TOOL_CALLS]")
                        .filter_map(|part| {
                            let (name, args) = part.split_once("[ARGS]")?;
                            let args: Value = serde_json::from_str(args.trim()).ok()?;
                            call_of(&json!({"name": name.trim(), "arguments": args}))
                        })
                        .collect();
                    if !calls.is_empty() {
                        let before = trimmed.split("[TOOL_CALLS]").next().unwrap_or("");
                        return (before.trim().to_string(), calls);
                    }
                }
                let (before, body) = match trimmed.split_once("[TOOL_CALLS]") {
                    Some((b, rest)) => (b.trim(), rest),
                    None => ("", trimmed),
                };
                let body = body
                    .trim_start_matches("<|python_tag|>")
                    .trim()
                    .trim_end_matches("</s>")
                    .trim_end_matches("<|eom_id|>")
                    .trim_end_matches("<|eot_id|>")
                    .trim();
                let calls: Vec<ToolCall> = match serde_json::from_str::<Value>(body) {
                    Ok(Value::Array(a)) => a.iter().filter_map(call_of).collect(),
                    Ok(v) => call_of(&v).into_iter().collect(),
                    // Llama 3.2 may write several objects separated by `;`.
                    Err(_) => body
                        .split(';')
                        .map(|p| serde_json::from_str::<Value>(p.trim()).ok())
                        .map(|v| v.as_ref().and_then(call_of))
                        .collect::<Option<Vec<_>>>()
                        .unwrap_or_default(),
                };
                if calls.is_empty() {
                    (text.to_string(), calls)
                } else {
                    (before.to_string(), calls)
                }
            }
        }
    }

    /// A call of a known function with object arguments.
    fn known_call(&self, name: &str, args: Value) -> Option<ToolCall> {
        (self.tools.iter().any(|t| t.name == name) && args.is_object()).then(|| ToolCall {
            id: new_call_id(),
            name: name.to_string(),
            arguments: args,
        })
    }

    /// harmony: messages are `<|channel|>HEADER<|message|>BODY` up to `<|end|>`,
    /// `<|call|>` or `<|return|>`, each after `<|start|>assistant` but the first; a
    /// header with `to=functions.NAME` is a call with JSON arguments, the `final`
    /// channel is the answer. The `analysis` channel (reasoning) is dropped.
    fn parse_harmony(&self, text: &str) -> (String, Vec<ToolCall>) {
        let mut calls = Vec::new();
        let mut finals = Vec::new();
        for msg in text.split("<|start|>") {
            let Some((header, body)) = msg.split_once("<|message|>") else {
                continue;
            };
            let body = ["<|end|>", "<|call|>", "<|return|>"]
                .iter()
                .fold(body, |b, end| b.split(end).next().unwrap_or(b))
                .trim();
            if let Some(at) = header.find("to=functions.") {
                let name: String = header[at + "to=functions.".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "_-.".contains(*c))
                    .collect();
                let name = name.trim_end_matches('.');
                match serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|a| self.known_call(name, a))
                {
                    Some(c) => calls.push(c),
                    None => finals.push(body.to_string()),
                }
            } else if header.contains("final") {
                finals.push(body.to_string());
            }
        }
        if calls.is_empty() && finals.is_empty() {
            return (text.to_string(), calls);
        }
        (finals.join("\n"), calls)
    }

    /// Gemma 4: `<|tool_call>call:NAME{…}<tool_call|>`, the text around them the answer.
    fn parse_gemma4(&self, text: &str) -> (String, Vec<ToolCall>) {
        let mut content = String::new();
        let mut calls = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("<|tool_call>call:") {
            content.push_str(&rest[..start]);
            let body = &rest[start + "<|tool_call>call:".len()..];
            let (inner, after) = match body.find("<tool_call|>") {
                Some(e) => (&body[..e], &body[e + "<tool_call|>".len()..]),
                None => (body, ""),
            };
            let parsed = inner.find('{').and_then(|brace| {
                let args = gemma4_value(&mut inner[brace..].trim_end().chars().peekable())?;
                self.known_call(inner[..brace].trim(), args)
            });
            match parsed {
                Some(c) => calls.push(c),
                None => content.push_str(&rest[start..rest.len() - after.len()]),
            }
            rest = after;
        }
        content.push_str(rest);
        (content.trim().to_string(), calls)
    }
}

/// Most nested Gemma 4 values read.
const GEMMA4_DEPTH: usize = 64;

/// One Gemma 4 argument value: `{key:value,…}`, `[value,…]`, a `<|"|>`-quoted string,
/// or a bare number, `true`, `false` or `null`.
fn gemma4_value(it: &mut std::iter::Peekable<std::str::Chars>) -> Option<Value> {
    gemma4_at(it, 0)
}

fn gemma4_at(it: &mut std::iter::Peekable<std::str::Chars>, depth: usize) -> Option<Value> {
    const QUOTE: &str = "<|\"|>";
    if depth > GEMMA4_DEPTH {
        return None;
    }
    while it.peek().is_some_and(|c| c.is_whitespace()) {
        it.next();
    }
    match *it.peek()? {
        '{' => {
            it.next();
            let mut map = Map::new();
            loop {
                while it.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                    it.next();
                }
                if it.peek() == Some(&'}') {
                    it.next();
                    return Some(Value::Object(map));
                }
                let mut key = String::new();
                while let Some(&c) = it.peek() {
                    if c == ':' {
                        break;
                    }
                    key.push(c);
                    it.next();
                }
                it.next()?; // ':'
                let key = key.trim().trim_start_matches(QUOTE).trim_end_matches(QUOTE);
                let v = gemma4_at(it, depth + 1)?;
                map.insert(key.to_string(), v);
            }
        }
        '[' => {
            it.next();
            let mut items = Vec::new();
            loop {
                while it.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                    it.next();
                }
                if it.peek() == Some(&']') {
                    it.next();
                    return Some(Value::Array(items));
                }
                items.push(gemma4_at(it, depth + 1)?);
            }
        }
        '<' => {
            let mark: String = it.by_ref().take(QUOTE.len()).collect();
            if mark != QUOTE {
                return None;
            }
            let mut s = String::new();
            loop {
                s.push(it.next()?);
                if s.ends_with(QUOTE) {
                    s.truncate(s.len() - QUOTE.len());
                    return Some(Value::String(s));
                }
            }
        }
        _ => {
            let mut word = String::new();
            while let Some(&c) = it.peek() {
                if matches!(c, ',' | '}' | ']') {
                    break;
                }
                word.push(c);
                it.next();
            }
            serde_json::from_str(word.trim()).ok()
        }
    }
}

/// What of a streamed answer with tools may go out as it comes: in the Hermes format
/// the text before the first `<tool_call>` (holding back a tail that could be the
/// start of one); in the others nothing until the end (their calls are only known
/// then).
pub struct ToolStream {
    trigger: Option<&'static str>,
    /// Text not yet sent.
    held: String,
    /// Text sent so far.
    sent: String,
}

impl ToolStream {
    /// For an answer in `setup`'s format.
    pub fn new(setup: &ToolSetup) -> Self {
        Self {
            trigger: (setup.style == Style::Hermes).then_some("<tool_call>"),
            held: String::new(),
            sent: String::new(),
        }
    }

    /// Takes the next piece of text; returns what may go out now (possibly empty).
    pub fn push(&mut self, piece: &str) -> String {
        self.held.push_str(piece);
        let Some(trigger) = self.trigger else {
            return String::new();
        };
        let free = match self.held.find(trigger) {
            Some(at) => {
                self.trigger = None;
                at
            }
            None => {
                // Hold back the longest tail that begins the trigger.
                let tail = (1..trigger.len().min(self.held.len() + 1))
                    .rev()
                    .find(|&n| {
                        self.held.is_char_boundary(self.held.len() - n)
                            && trigger.starts_with(&self.held[self.held.len() - n..])
                    })
                    .unwrap_or(0);
                self.held.len() - tail
            }
        };
        let out: String = self.held.drain(..free).collect();
        self.sent.push_str(&out);
        out
    }

    /// At the end, given the answer's content as `ToolSetup::parse` reads it: what of
    /// it has not gone out yet. The content may be trimmed (when calls were read) or the
    /// whole text (when none can be), so leading blanks are set aside on both sides, and
    /// blanks that went out at the end are not sent again.
    pub fn rest_of(&self, content: &str) -> String {
        if self.sent.is_empty() {
            return content.to_string();
        }
        let sent = self.sent.trim_start();
        let content = content.trim_start();
        content
            .strip_prefix(sent)
            .or_else(|| content.strip_prefix(sent.trim_end()))
            .unwrap_or_default()
            .to_string()
    }
}

/// A fresh call id, `call_` and 24 hex digits.
pub fn new_call_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("call_{:016x}{:08x}", t ^ n.rotate_left(32), n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "get_weather",
            "description": "Current weather", "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
        ]
    }

    fn setup(style: Style, choice: ToolChoice) -> ToolSetup {
        ToolSetup {
            tools: parse_tools(&weather()).unwrap(),
            choice,
            style,
        }
    }

    #[test]
    fn definitions_and_choices_are_checked() {
        assert!(parse_tools(&[json!({"type": "function", "function": {"name": "a b"}})]).is_err());
        assert!(parse_tools(&[json!({"type": "retrieval"})]).is_err());
        assert!(parse_tools(&[json!({"function": {"name": "f", "parameters": 3}})]).is_err());
        let twice = [weather(), weather()].concat();
        assert!(parse_tools(&twice).unwrap_err().0.contains("twice"));
        let t = parse_tools(&weather()).unwrap();
        assert_eq!(parse_choice(None, &t).unwrap(), ToolChoice::Auto);
        assert_eq!(
            parse_choice(
                Some(&json!({"type": "function", "function": {"name": "get_weather"}})),
                &t
            )
            .unwrap(),
            ToolChoice::Named("get_weather".into())
        );
        assert!(parse_choice(Some(&json!({"function": {"name": "nope"}})), &t).is_err());
        assert!(parse_choice(Some(&json!("sometimes")), &t).is_err());
        assert!(parse_choice(Some(&json!("required")), &[]).is_err());
    }

    #[test]
    fn calls_are_read_in_each_format() {
        let h = setup(Style::Hermes, ToolChoice::Auto);
        let (text, calls) = h.parse("Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>");
        assert_eq!(text, "Let me check.");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].arguments, json!({"city": "Paris"}));
        // An unknown function stays text.
        let (text, calls) =
            h.parse("<tool_call>{\"name\": \"nope\", \"arguments\": {}}</tool_call>");
        assert!(calls.is_empty() && text.contains("nope"));
        let l = setup(Style::Llama3, ToolChoice::Auto);
        let (_, calls) =
            l.parse("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}");
        assert_eq!(calls[0].arguments["city"], "Oslo");
        let (text, calls) = l.parse("The weather is fine.");
        assert!(calls.is_empty() && text == "The weather is fine.");
        let m = setup(Style::Mistral, ToolChoice::Auto);
        let (_, calls) = m.parse(
            "[{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}]",
        );
        assert_eq!(calls[0].arguments["city"], "Rome");
        let (before, calls) = m.parse("Checking.[TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bern\"}}]</s>");
        assert_eq!(
            (before.as_str(), calls[0].arguments["city"].as_str()),
            ("Checking.", Some("Bern"))
        );
        let (_, calls) = m.parse("[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Nice\"}");
        assert_eq!(calls[0].arguments["city"], "Nice");
        let h = setup(Style::Harmony, ToolChoice::Auto);
        let out = "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Tokyo\"}<|call|>";
        let (text, calls) = h.parse(out);
        assert_eq!(
            (text.as_str(), calls[0].arguments["city"].as_str()),
            ("", Some("Tokyo"))
        );
        let (text, calls) = h.parse("<|channel|>analysis<|message|>Easy.<|end|><|start|>assistant<|channel|>final<|message|>It is sunny.<|return|>");
        assert!(calls.is_empty());
        assert_eq!(text, "It is sunny.");
        let g4 = setup(Style::Gemma4, ToolChoice::Auto);
        let (text, calls) = g4.parse("Sure.<|tool_call>call:get_weather{city:<|\"|>São Paulo, {BR}<|\"|>,days:3,opts:{hourly:true,tags:[<|\"|>a<|\"|>,2]}}<tool_call|>");
        assert_eq!(text, "Sure.");
        assert_eq!(
            calls[0].arguments,
            json!({"city": "São Paulo, {BR}", "days": 3, "opts": {"hourly": true, "tags": ["a", 2]}})
        );
        let (text, calls) = g4.parse("<|tool_call>call:get_weather{city:<|\"|>unterminated");
        assert!(calls.is_empty() && text.contains("unterminated"));
        let g = setup(Style::Generic, ToolChoice::Auto);
        let (_, calls) = g.parse(
            "{\"tool_calls\": [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}]}",
        );
        assert_eq!(calls[0].name, "get_weather");
        let (text, calls) = g.parse("{\"response\": \"Hello!\"}");
        assert!(calls.is_empty() && text == "Hello!");
        assert_ne!(new_call_id(), new_call_id());
    }

    #[test]
    fn hermes_text_streams_until_a_call_opens() {
        let h = setup(Style::Hermes, ToolChoice::Auto);
        let mut st = ToolStream::new(&h);
        let mut out = String::new();
        for piece in [
            "Let me ",
            "check the <",
            "weather. <to",
            "ol_c",
            "all>\n{\"name\"",
            ": 1}",
        ] {
            out += &st.push(piece);
        }
        assert_eq!(out, "Let me check the <weather. ");
        let text = "Let me check the <weather. <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"X\"}}\n</tool_call> Done.";
        let (content, calls) = h.parse(text);
        assert_eq!(calls.len(), 1);
        // What streamed and the rest are the content, the blank that went out not twice.
        assert_eq!(st.rest_of(&content), " Done.");
        assert_eq!(out + &st.rest_of(&content), content);
        // A call that does not parse stays in the text, after the blank that went out.
        let mut st = ToolStream::new(&h);
        let out = st.push("Hi ") + &st.push("<tool_call>oops</tool_call>");
        let (content, calls) = h.parse("Hi <tool_call>oops</tool_call>");
        assert!(calls.is_empty());
        assert_eq!(out.clone() + &st.rest_of(&content), content);
        // A call that parses, after a blank: nothing more.
        let mut st = ToolStream::new(&h);
        let out = st.push("Hi \n")
            + &st.push("<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>");
        let (content, calls) =
            h.parse("Hi \n<tool_call>{\"name\": \"get_weather\", \"arguments\": {}}</tool_call>");
        assert_eq!(
            (calls.len(), out.as_str(), content.as_str()),
            (1, "Hi \n", "Hi")
        );
        assert_eq!(st.rest_of(&content), "");
        // Calls not offered: the text is the content untrimmed, and what the stream held
        // back (a tail that could have opened a call) still comes at the end.
        let off = setup(Style::Hermes, ToolChoice::None);
        let mut st = ToolStream::new(&off);
        let out = st.push("\n2 ") + &st.push("<");
        let (content, _) = off.parse("\n2 <");
        assert_eq!((out.as_str(), content.as_str()), ("\n2 ", "\n2 <"));
        assert_eq!(out + &st.rest_of(&content), content);
        // Without a call everything streams, the end releases nothing twice.
        let mut st = ToolStream::new(&h);
        let all: String = ["Hello", " there <", "b>"]
            .iter()
            .map(|p| st.push(p))
            .collect();
        assert_eq!(all, "Hello there <b>");
        assert_eq!(st.rest_of("Hello there <b>"), "");
        // Other formats hold everything.
        let mut st = ToolStream::new(&setup(Style::Generic, ToolChoice::Auto));
        assert_eq!(st.push("{\"response\": \"hi\"}"), "");
        assert_eq!(st.rest_of("hi"), "hi");
    }

    #[test]
    fn the_generic_format_explains_the_tools_in_a_system_message() {
        let g = setup(Style::Generic, ToolChoice::Auto);
        let mut asked = Message::new("assistant", "");
        asked.tool_calls.push(ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"}),
        });
        let mut result = Message::new("tool", "18 C");
        result.name = Some("get_weather".into());
        let (msgs, tools) = g.prepare(&[Message::new("user", "Weather in Paris?"), asked, result]);
        assert!(tools.is_none());
        assert_eq!(msgs[0].role, "system");
        assert!(msgs[0].content.contains("get_weather"));
        assert!(msgs[2].content.contains("\"tool_calls\""));
        assert_eq!(msgs[3].role, "user");
        assert!(msgs[3].content.contains("18 C"));
        // Hermes renders through the template's own `tools`.
        let h = setup(Style::Hermes, ToolChoice::Auto);
        let (msgs, tools) = h.prepare(&[Message::new("user", "hi")]);
        assert_eq!(msgs.len(), 1);
        assert_eq!(tools.unwrap()[0]["function"]["name"], "get_weather");
        // No tools shown with tool_choice none.
        let n = setup(Style::Hermes, ToolChoice::None);
        assert!(n.prepare(&[Message::new("user", "hi")]).1.is_none());
        assert!(n.constraint().is_none());
    }
}
