//! Constrained decoding on llguidance: the output is held to a JSON schema, "some JSON
//! object", a Lark or GBNF grammar, or a regular expression.
//!
//! Each step llguidance computes the set of tokens that keep the output a valid prefix
//! (a mask over the whole vocabulary). The engine samples among the GPU's top
//! candidates that the mask allows; when none of them is allowed it reads the whole
//! logit row and samples among every allowed token, so the output is valid whatever the
//! model prefers. End-of-generation tokens are allowed exactly when the grammar accepts
//! what was written, and generation stops once the grammar allows nothing more.
//!
//! The token trie llguidance needs is built once per tokenizer, on first use
//! ([`Grammars`]).

mod gbnf;

pub use gbnf::gbnf_to_lark;

use crate::tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use thiserror::Error;
use web_time::{Duration, Instant};

/// Longest grammar, schema or regular expression accepted, in bytes.
pub const MAX_GRAMMAR_BYTES: usize = 256 * 1024;

/// Whitespace allowed between two tokens of constrained JSON, as llama.cpp's JSON
/// grammars allow it: one space, or one or two newlines and up to 20 spaces or tabs of
/// indentation; so a model cannot stall in whitespace forever.
const JSON_SPACE: &str = r"\x20|\n{1,2}[\x20\t]{0,20}";

/// A constraint that cannot be used.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum ConstraintError {
    /// The grammar, schema or expression is malformed or unsupported.
    #[error("{0}")]
    Invalid(String),
    /// The tokenizer could not be turned into llguidance's token trie.
    #[error("constrained decoding is unavailable for this vocabulary: {0}")]
    Vocabulary(String),
}

/// What the output must match.
#[derive(Clone, Debug, PartialEq)]
pub enum Format {
    /// Any JSON object (ollama's `format: "json"`, OpenAI's `json_object`).
    JsonObject,
    /// A JSON value valid under this JSON schema.
    JsonSchema(Value),
    /// A grammar in llguidance's Lark syntax.
    Lark(String),
    /// A grammar in llama.cpp's GBNF syntax (start rule `root`).
    Gbnf(String),
    /// A regular expression (Rust `regex` syntax) the whole output matches.
    Regex(String),
    /// Free text until the output contains `trigger`, then the rest of the output
    /// matches `then` (e.g. a tool call's JSON after `<tool_call>`). When the token
    /// that completes the trigger also carries text past it (other than whitespace),
    /// the rest stays free.
    Triggered {
        /// The text that starts the constrained part.
        trigger: String,
        /// What follows it.
        then: Box<Format>,
    },
}

impl Format {
    /// A grammar given as text: GBNF when it defines rules with `::=`, else Lark.
    pub fn grammar(text: &str) -> Self {
        if text.contains("::=") {
            Format::Gbnf(text.to_string())
        } else {
            Format::Lark(text.to_string())
        }
    }

    /// A JSON schema; `true` and `{}` (anything) become any JSON value.
    pub fn schema(schema: Value) -> Self {
        Format::JsonSchema(schema)
    }

    /// What kind of constraint this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Format::JsonObject => "JSON object",
            Format::JsonSchema(_) => "JSON schema",
            Format::Lark(_) => "Lark grammar",
            Format::Gbnf(_) => "GBNF grammar",
            Format::Regex(_) => "regular expression",
            Format::Triggered { then, .. } => then.kind(),
        }
    }

    /// The grammar llguidance compiles.
    fn top_level(&self) -> Result<TopLevelGrammar, ConstraintError> {
        let size = match self {
            Format::JsonObject => 0,
            Format::JsonSchema(v) => v.to_string().len(),
            Format::Lark(s) | Format::Gbnf(s) | Format::Regex(s) => s.len(),
            Format::Triggered { trigger, .. } if trigger.is_empty() => {
                return Err(ConstraintError::Invalid("an empty trigger".into()))
            }
            Format::Triggered { then, .. } => return then.top_level(),
        };
        if size > MAX_GRAMMAR_BYTES {
            return Err(ConstraintError::Invalid(format!(
                "the grammar is {size} bytes; at most {MAX_GRAMMAR_BYTES} are accepted"
            )));
        }
        Ok(match self {
            Format::JsonObject => {
                TopLevelGrammar::from_json_schema(with_json_space(json!({"type": "object"}))?)
            }
            Format::JsonSchema(v) => TopLevelGrammar::from_json_schema(with_json_space(v.clone())?),
            Format::Lark(s) => TopLevelGrammar::from_lark(s.clone()),
            Format::Gbnf(s) => TopLevelGrammar::from_lark(gbnf_to_lark(s)?),
            Format::Regex(s) => TopLevelGrammar::from_regex(s),
            Format::Triggered { .. } => unreachable!("returned above"),
        })
    }
}

/// A triggered format waiting for its trigger in the generated text.
pub struct Pending {
    trigger: String,
    then: Format,
    /// The end of the text so far, long enough to hold the trigger.
    window: String,
}

impl Pending {
    /// For `Format::Triggered`; None for any other format.
    pub fn of(format: &Format) -> Option<Self> {
        match format {
            Format::Triggered { trigger, then } => Some(Self {
                trigger: trigger.clone(),
                then: (**then).clone(),
                window: String::new(),
            }),
            _ => None,
        }
    }

    /// Takes the next piece of generated text: `Some(Some(format))` once the trigger
    /// is complete and only whitespace follows it (constrain from here on),
    /// `Some(None)` when text follows it in the same piece (stay free), None while
    /// waiting.
    pub fn push(&mut self, piece: &str) -> Option<Option<Format>> {
        self.window.push_str(piece);
        if let Some(at) = self.window.find(&self.trigger) {
            let rest = &self.window[at + self.trigger.len()..];
            return Some(rest.trim().is_empty().then(|| self.then.clone()));
        }
        let keep = self.trigger.len();
        if self.window.len() > keep {
            let mut cut = self.window.len() - keep;
            while !self.window.is_char_boundary(cut) {
                cut -= 1;
            }
            self.window.drain(..cut);
        }
        None
    }
}

/// A JSON schema to embed in a Lark grammar (`%json {…}`), with hearth's bounded JSON
/// whitespace (llguidance's own default there is unbounded).
pub fn lark_json(schema: Value) -> Value {
    with_json_space(schema.clone()).unwrap_or(schema)
}

/// The schema with hearth's bounded whitespace, unless it sets its own `x-guidance`.
fn with_json_space(schema: Value) -> Result<Value, ConstraintError> {
    match schema {
        Value::Bool(true) => Ok(json!({"x-guidance": {"whitespace_pattern": JSON_SPACE}})),
        Value::Bool(false) => Err(ConstraintError::Invalid(
            "the JSON schema `false` accepts nothing".into(),
        )),
        Value::Object(mut o) => {
            o.entry("x-guidance")
                .or_insert_with(|| json!({"whitespace_pattern": JSON_SPACE}));
            Ok(Value::Object(o))
        }
        other => Err(ConstraintError::Invalid(format!(
            "a JSON schema must be an object or a boolean, not {}",
            kind_of(&other)
        ))),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// llguidance's view of one tokenizer, built on first use and shared by every session of
/// a model.
pub struct Grammars {
    tokenizer: Arc<Tokenizer>,
    factory: OnceLock<Result<Arc<ParserFactory>, ConstraintError>>,
}

impl Grammars {
    /// For `tokenizer`; nothing is built until the first constraint.
    pub fn new(tokenizer: Arc<Tokenizer>) -> Self {
        Self {
            tokenizer,
            factory: OnceLock::new(),
        }
    }

    fn factory(&self) -> Result<&Arc<ParserFactory>, ConstraintError> {
        self.factory
            .get_or_init(|| build_factory(&self.tokenizer).map(Arc::new))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// A fresh constraint for one generation, or why `format` cannot be used.
    pub fn constraint(&self, format: &Format) -> Result<Constraint, ConstraintError> {
        let grammar = format.top_level()?;
        let factory = self.factory()?;
        // llguidance's messages span lines (a caret under the source); one line here.
        let invalid = |e: String| {
            let e = e.split_whitespace().collect::<Vec<_>>().join(" ");
            ConstraintError::Invalid(format!("{}: {e}", format.kind()))
        };
        let parser = factory
            .create_parser(grammar)
            .map_err(|e| invalid(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(invalid(e));
        }
        Ok(Constraint {
            matcher,
            mask_time: Duration::ZERO,
            masks: 0,
        })
    }
}

/// The token trie: every token's bytes, control tokens marked with llguidance's special
/// byte so that no grammar text matches them, and the end-of-generation tokens. Those
/// are marked too whatever their type (a vocabulary may give one as plain text, such
/// as a GGUF without an end token, where llama.cpp's default for byte-level BPE is a
/// byte token), so that they end the output only where the grammar is complete and
/// never stand in for text.
fn build_factory(tok: &Tokenizer) -> Result<ParserFactory, ConstraintError> {
    let n = tok.vocab_size();
    let mut eog = tok.eog_ids();
    let eos = tok.eos().or(eog.first().copied()).ok_or_else(|| {
        ConstraintError::Vocabulary("the vocabulary has no end-of-generation token".into())
    })?;
    if !eog.contains(&eos) {
        eog.push(eos);
    }
    let words: Vec<Vec<u8>> = (0..n as u32)
        .map(|id| {
            let b = tok.token_bytes(id, false);
            let control = b.is_empty() && tok.token_text(id).is_some_and(|t| !t.is_empty());
            if control || eog.contains(&id) {
                let mut s = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                s.extend_from_slice(tok.token_bytes(id, true).as_slice());
                s
            } else {
                b
            }
        })
        .collect();
    let info = TokRxInfo {
        vocab_size: n as u32,
        tok_eos: eos,
        tok_bos: tok.bos(),
        tok_pad: None,
        tok_unk: None,
        tok_end_of_turn: None,
    };
    let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
    let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
    let mut factory =
        ParserFactory::new_simple(&env).map_err(|e| ConstraintError::Vocabulary(e.to_string()))?;
    factory.quiet();
    Ok(factory)
}

/// One generation's constraint: which tokens may come next.
pub struct Constraint {
    matcher: Matcher,
    mask_time: Duration,
    masks: usize,
}

/// The tokens allowed at one step: one bit per token id.
#[derive(Clone, Debug)]
pub struct Mask {
    bits: Vec<u32>,
    count: usize,
}

impl Mask {
    fn of(v: &SimpleVob) -> Self {
        Self {
            bits: v.as_slice().to_vec(),
            count: v.num_set(),
        }
    }

    /// A mask allowing exactly `ids` (tests).
    pub fn from_ids(ids: &[u32]) -> Self {
        let n = ids.iter().max().map_or(0, |&m| m as usize / 32 + 1);
        let mut bits = vec![0u32; n];
        for &id in ids {
            bits[id as usize / 32] |= 1 << (id % 32);
        }
        let count = bits.iter().map(|w| w.count_ones() as usize).sum();
        Self { bits, count }
    }

    /// Whether token `id` may come next (end-of-generation tokens: whether the output may
    /// end here).
    pub fn allows(&self, id: u32) -> bool {
        self.bits
            .get(id as usize / 32)
            .is_some_and(|w| w & (1 << (id % 32)) != 0)
    }

    /// How many tokens are allowed.
    pub fn count(&self) -> usize {
        self.count
    }
}

impl Constraint {
    /// The tokens allowed next. An error when the grammar has ended or failed.
    pub fn mask(&mut self) -> Result<Mask, ConstraintError> {
        let t = Instant::now();
        let m = self
            .matcher
            .compute_mask()
            .map_err(|e| ConstraintError::Invalid(format!("grammar: {e}")))?;
        let m = Mask::of(&m);
        self.mask_time += t.elapsed();
        self.masks += 1;
        Ok(m)
    }

    /// Records that `id` was generated (an allowed, non-end token).
    pub fn accept(&mut self, id: u32) -> Result<(), ConstraintError> {
        self.matcher
            .consume_token(id)
            .map_err(|e| ConstraintError::Invalid(format!("grammar: {e}")))
    }

    /// Whether nothing may follow: the grammar is complete and allows no more text.
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Whether the output so far is a complete match.
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }

    /// Masks computed and their total time.
    pub fn mask_stats(&self) -> (usize, Duration) {
        (self.masks, self.mask_time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_split_across_pieces_is_found_and_text_after_it_frees_the_rest() {
        let f = Format::Triggered {
            trigger: "<tool_call>".into(),
            then: Box::new(Format::JsonObject),
        };
        let mut p = Pending::of(&f).unwrap();
        for piece in ["Sure, ", "let me ", "check. <to", "ol_c", "all"] {
            assert!(p.push(piece).is_none(), "{piece}");
        }
        assert_eq!(p.push(">\n"), Some(Some(Format::JsonObject)));
        let mut p = Pending::of(&f).unwrap();
        assert_eq!(p.push("<tool_call>{\"na"), Some(None));
        // Multi-byte text before the trigger keeps the window on char boundaries.
        let mut p = Pending::of(&f).unwrap();
        assert!(p.push(&"é世".repeat(40)).is_none());
        assert_eq!(p.push("<tool_call>"), Some(Some(Format::JsonObject)));
        assert!(Pending::of(&Format::JsonObject).is_none());
    }
}
