//! Small vocabularies of every kind the tokenizer reads, built in memory as GGUF
//! metadata: SentencePiece (plain and Phi-3's, whose special tokens swallow the spaces
//! after them), byte-level BPE under several of llama.cpp's pre-tokenizers, and Gemma 4's
//! UTF-8 BPE. Each has byte tokens or byte characters (so any text encodes), merges,
//! user-defined and control tokens, and a special token that is a prefix of another.
//! WordPiece and Unigram vocabularies (whose normalization loses text) come too.

use crate::gguf::{parse, Array, GgufWriter, Value};
use crate::tokenizer::Tokenizer;
use std::sync::{Arc, OnceLock};

/// Which family a vocabulary belongs to, for the round-trip rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// SentencePiece: `▁` in the text decodes as a space, and the space prefixed after
    /// each special token stays in the output.
    Spm,
    /// Byte-level BPE: every text round-trips.
    ByteBpe,
    /// Gemma 4: `▁` in the text decodes as a space.
    Gemma4,
    /// WordPiece and Unigram: normalized (case, accents, spaces), unknown tokens; no
    /// text is promised back.
    Lossy,
}

/// Spellings of the special tokens of these vocabularies.
const SPECIALS: &[&str] = &[
    "<unk>",
    "<s>",
    "</s>",
    "<|user|>",
    "<tool>",
    "<turn>",
    "<turn>x",
    "<|im_end|>",
    "<|im_start|>",
    "<|im",
    "<|fim_prefix|>",
    "<|endoftext|>",
    "<pad>",
    "<eos>",
    "<bos>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|tool_response>",
];

/// The pre-tokenizers the byte-level vocabulary is built with.
const BPE_PRES: &[&str] = &[
    "gpt-2",
    "llama-bpe",
    "qwen2",
    "qwen35",
    "default",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "tekken",
    "starcoder",
];

/// The tokenizer numbered `i` (modulo how many there are) and its kind.
pub(super) fn get(i: u8) -> (&'static Tokenizer, Kind) {
    let (t, k) = shared(i);
    (t.as_ref(), k)
}

/// Vocabulary `i` (modulo their count) as the engine holds a tokenizer, shared.
pub(super) fn shared(i: u8) -> (&'static Arc<Tokenizer>, Kind) {
    static ALL: OnceLock<Vec<(Arc<Tokenizer>, Kind)>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        let mut all = vec![
            (Arc::new(build(spm(None))), Kind::Spm),
            (Arc::new(build(spm(Some("Phi-3 mini")))), Kind::Spm),
            (Arc::new(build(gemma4())), Kind::Gemma4),
            (Arc::new(build(wordpiece())), Kind::Lossy),
            (Arc::new(build(unigram())), Kind::Lossy),
        ];
        all.extend(
            BPE_PRES
                .iter()
                .map(|pre| (Arc::new(build(byte_bpe(pre))), Kind::ByteBpe)),
        );
        all
    });
    let (t, k) = &all[usize::from(i) % all.len()];
    (t, *k)
}

/// Whether `decode(encode(text, false, parse_special), true)` must give back `text`.
pub(super) fn round_trips(kind: Kind, text: &str, _parse_special: bool) -> bool {
    let visible_space = text.contains('\u{2581}');
    match kind {
        Kind::ByteBpe => true,
        Kind::Gemma4 => !visible_space,
        Kind::Lossy => false,
        // User-defined tokens are split out whether or not specials are parsed.
        Kind::Spm => !visible_space && !SPECIALS.iter().any(|s| text.contains(s)),
    }
}

fn build(kv: Vec<(&'static str, Value)>) -> Tokenizer {
    let mut w = GgufWriter::new();
    for (k, v) in kv {
        w.add(k, v).expect("fuzz vocabulary metadata");
    }
    let h = parse(&w.to_bytes()).expect("fuzz vocabulary parses");
    Tokenizer::from_gguf(&h).expect("fuzz vocabulary builds")
}

fn strings(v: Vec<String>) -> Value {
    Value::Array(Array::String(v))
}

/// Tokens and types from (text, llama.cpp token type) pairs.
fn split(pairs: Vec<(String, i32)>) -> (Vec<String>, Vec<i32>) {
    pairs.into_iter().unzip()
}

fn words() -> impl Iterator<Item = (String, i32)> {
    [
        "t", "h", "e", "a", "b", "i", "n", "r", "th", "he", "in", "er", "ab", "日", "本",
    ]
    .into_iter()
    .map(|s| (s.to_string(), 1))
}

fn spm(name: Option<&str>) -> Vec<(&'static str, Value)> {
    let mut pairs = vec![
        ("<unk>".to_string(), 2),
        ("<s>".into(), 3),
        ("</s>".into(), 3),
    ];
    pairs.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 6)));
    pairs.push(("\u{2581}".into(), 1));
    pairs.extend(words());
    for w in ["t", "th", "the", "a", "ab", "in"] {
        pairs.push((format!("\u{2581}{w}"), 1));
    }
    for (t, ty) in [
        ("<|user|>", 4),
        ("<tool>", 4),
        ("<turn>", 3),
        ("<turn>x", 3),
        ("<|im_end|>", 1),
        ("<|fim_prefix|>", 1),
    ] {
        pairs.push((t.into(), ty));
    }
    let n = pairs.len();
    let (tokens, types) = split(pairs);
    let mut kv = vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        (
            "tokenizer.ggml.scores",
            Value::Array(Array::F32((0..n).map(|i| -(i as f32)).collect())),
        ),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
    ];
    if let Some(name) = name {
        kv.push(("general.name", Value::String(name.into())));
    }
    kv
}

fn byte_bpe(pre: &str) -> Vec<(&'static str, Value)> {
    let chars = crate::tokenizer::bpe::byte_chars();
    let g = |c: char| chars[c as usize];
    let (sp, nl) = (g(' '), g('\n'));
    let mut pairs: Vec<(String, i32)> = chars.iter().map(|c| (c.to_string(), 1)).collect();
    let merges: Vec<(String, String)> = [
        (sp.to_string(), "t".to_string()),
        ("t".into(), "h".into()),
        (format!("{sp}t"), "h".into()),
        ("h".into(), "e".into()),
        (format!("{sp}th"), "e".into()),
        ("i".into(), "n".into()),
        ("e".into(), "r".into()),
        ("a".into(), "b".into()),
        (sp.to_string(), "a".into()),
        (format!("{sp}a"), "b".into()),
        (nl.to_string(), nl.to_string()),
        ("1".into(), "2".into()),
        ("12".into(), "3".into()),
    ]
    .into();
    for (a, b) in &merges {
        pairs.push((format!("{a}{b}"), 1));
    }
    for (t, ty) in [
        ("<|endoftext|>", 3),
        ("<|im_start|>", 3),
        ("<|im_end|>", 3),
        ("<tool>", 4),
        ("<|im", 4),
    ] {
        pairs.push((t.into(), ty));
    }
    let (tokens, types) = split(pairs);
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String(pre.into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        (
            "tokenizer.ggml.merges",
            strings(merges.iter().map(|(a, b)| format!("{a} {b}")).collect()),
        ),
    ]
}

/// WordPiece in llama.cpp's form (`▁` starts a word), with [CLS]/[SEP] and a
/// user-defined token.
fn wordpiece() -> Vec<(&'static str, Value)> {
    let mut pairs = vec![
        ("[PAD]".to_string(), 3),
        ("[UNK]".into(), 3),
        ("[CLS]".into(), 3),
        ("[SEP]".into(), 3),
        ("<tool>".into(), 4),
    ];
    for (w, _) in words() {
        pairs.push((format!("\u{2581}{w}"), 1));
        pairs.push((w, 1));
    }
    let (tokens, types) = split(pairs);
    vec![
        ("tokenizer.ggml.model", Value::String("bert".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.unknown_token_id", Value::U32(1)),
        ("tokenizer.ggml.cls_token_id", Value::U32(2)),
        ("tokenizer.ggml.seperator_token_id", Value::U32(3)),
    ]
}

/// Unigram with scores, merged spaces, a space prefix and a user-defined token (no
/// character map).
fn unigram() -> Vec<(&'static str, Value)> {
    let mut pairs = vec![
        ("<s>".to_string(), 3),
        ("<pad>".into(), 3),
        ("</s>".into(), 3),
        ("<unk>".into(), 2),
        ("<tool>".into(), 4),
        ("\u{2581}".into(), 1),
    ];
    for (w, _) in words() {
        pairs.push((format!("\u{2581}{w}"), 1));
        pairs.push((w, 1));
    }
    let n = pairs.len();
    let (tokens, types) = split(pairs);
    vec![
        ("tokenizer.ggml.model", Value::String("t5".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        (
            "tokenizer.ggml.scores",
            Value::Array(Array::F32((0..n).map(|i| -(i as f32) / 3.0).collect())),
        ),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(3)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(true)),
        ("tokenizer.ggml.remove_extra_whitespaces", Value::Bool(true)),
    ]
}

fn gemma4() -> Vec<(&'static str, Value)> {
    let mut pairs = vec![
        ("<pad>".to_string(), 3),
        ("<eos>".into(), 3),
        ("<bos>".into(), 3),
        ("<unk>".into(), 2),
    ];
    pairs.extend((0..=255u8).map(|b| (format!("<0x{b:02X}>"), 6)));
    pairs.extend(words());
    let merges: Vec<(&str, &str)> = vec![
        ("\u{2581}", "t"),
        ("\u{2581}t", "h"),
        ("\u{2581}th", "e"),
        ("\n", "\n"),
        ("\u{2581}", "\u{2581}"),
    ];
    for t in [
        "\u{2581}",
        "\n",
        "\u{2581}t",
        "\u{2581}th",
        "\u{2581}the",
        "\n\n",
        "\u{2581}\u{2581}",
    ] {
        pairs.push((t.into(), 1));
    }
    for (t, ty) in [
        ("<start_of_turn>", 3),
        ("<end_of_turn>", 3),
        ("<|tool_response>", 3),
        ("</s>", 3),
        ("<tool>", 4),
    ] {
        pairs.push((t.into(), ty));
    }
    let (tokens, types) = split(pairs);
    vec![
        ("tokenizer.ggml.model", Value::String("gemma4".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        (
            "tokenizer.ggml.merges",
            strings(merges.iter().map(|(a, b)| format!("{a} {b}")).collect()),
        ),
        ("tokenizer.ggml.bos_token_id", Value::U32(2)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
    ]
}
