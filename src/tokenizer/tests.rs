//! Tokenizers over tiny hand-built vocabularies: special-token partition, streaming
//! across split characters, and malformed metadata.

use super::*;
use crate::gguf::{parse, Array, GgufWriter, Value};

/// A GGUF header holding exactly `kv`.
fn header(kv: Vec<(&str, Value)>) -> GgufHeader {
    let mut w = GgufWriter::new();
    for (k, v) in kv {
        w.add(k, v).expect("metadata");
    }
    parse(&w.to_bytes()).expect("a valid GGUF")
}

fn strings(v: &[&str]) -> Value {
    Value::Array(Array::String(v.iter().map(|s| s.to_string()).collect()))
}

/// A small SentencePiece vocabulary: <unk> <s> </s>, 256 byte tokens, some pieces, a
/// user-defined token and a control token.
fn spm_kv() -> Vec<(&'static str, Value)> {
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    for b in 0..=255u8 {
        tokens.push(format!("<0x{b:02X}>"));
        types.push(6);
    }
    for (t, ty) in [
        ("▁", 1),
        ("a", 1),
        ("b", 1),
        ("▁a", 1),
        ("ab", 1),
        ("▁ab", 1),
        ("<|user|>", 4),
        ("<turn>", 3),
        ("<turn>x", 3),
    ] {
        tokens.push(t.into());
        types.push(ty);
    }
    let n = tokens.len();
    vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        (
            "tokenizer.ggml.scores",
            Value::Array(Array::F32((0..n).map(|i| -(i as f32)).collect())),
        ),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
    ]
}

/// A byte-level BPE vocabulary: the 256 byte characters and one merge.
fn bpe_kv() -> Vec<(&'static str, Value)> {
    let chars = bpe::byte_chars();
    let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    tokens.push("ab".into());
    tokens.push("<|endoftext|>".into());
    let mut types = vec![1; tokens.len()];
    types[257] = 3;
    vec![
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("gpt-2".into())),
        ("tokenizer.ggml.tokens", Value::Array(Array::String(tokens))),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.merges", strings(&["a b"])),
        ("tokenizer.ggml.eos_token_id", Value::U32(257)),
    ]
}

fn spm() -> Tokenizer {
    Tokenizer::from_gguf(&header(spm_kv())).expect("tiny SPM vocabulary")
}

fn id(t: &Tokenizer, s: &str) -> u32 {
    t.token_id(s)
        .unwrap_or_else(|| panic!("{s} in the vocabulary"))
}

#[test]
fn spm_merges_prefix_space_and_falls_back_to_bytes() {
    let t = spm();
    assert_eq!(t.encode("ab", false, false).unwrap(), [id(&t, "▁ab")]);
    assert_eq!(t.encode("ab", true, false).unwrap(), [1, id(&t, "▁ab")]);
    assert_eq!(t.encode("", true, false).unwrap(), [1]);
    // 'é' is no piece: its two UTF-8 bytes.
    assert_eq!(
        t.encode("é", false, false).unwrap(),
        [id(&t, "▁"), id(&t, "<0xC3>"), id(&t, "<0xA9>")]
    );
    assert_eq!(
        t.decode(&t.encode(" a b é", false, false).unwrap(), false),
        " a b é"
    );
    assert!(t.describe().starts_with("SentencePiece"));
    assert_eq!(
        (t.bos(), t.eos(), t.add_bos(), t.add_eos()),
        (Some(1), Some(2), true, false)
    );
    assert_eq!(t.eog_ids(), [2]);
}

#[test]
fn special_tokens_split_like_llama_cpp() {
    let t = spm();
    let (user, turn, turnx) = (id(&t, "<|user|>"), id(&t, "<turn>"), id(&t, "<turn>x"));
    // User-defined tokens always; text after a special token gets the space prefix again.
    assert_eq!(
        t.encode("a<|user|>b", false, false).unwrap(),
        [id(&t, "▁a"), user, id(&t, "▁"), id(&t, "b")]
    );
    // Control tokens only when parsing specials, the longest spelling first.
    let plain = t.encode("<turn>x", false, false).unwrap();
    assert!(!plain.contains(&turn) && !plain.contains(&turnx));
    assert_eq!(t.encode("<turn>x", false, true).unwrap(), [turnx]);
    assert_eq!(
        t.encode("<turn>a", false, true).unwrap(),
        [turn, id(&t, "▁a")]
    );
    // Control tokens print only on request; user-defined ones always.
    assert!(t.token_bytes(turn, false).is_empty());
    assert_eq!(t.token_bytes(turn, true), b"<turn>");
    assert_eq!(t.token_bytes(user, false), b"<|user|>");
    assert!(t.is_control(turn) && !t.is_control(user));
    assert!(t.token_bytes(u32::MAX, true).is_empty());
}

/// Feeds `ids` one by one and returns what each push emitted, then the flush.
fn stream(t: &Tokenizer, ids: &[u32]) -> (Vec<String>, String) {
    let mut d = StreamDecoder::new();
    let parts = ids.iter().map(|&i| d.push(t, i)).collect();
    (parts, d.finish())
}

#[test]
fn stream_holds_a_character_split_over_byte_fallback_tokens() {
    let t = spm();
    let ids = t.encode("😀", false, false).unwrap();
    let byte_ids: Vec<u32> = [0xF0, 0x9F, 0x98, 0x80]
        .iter()
        .map(|b| id(&t, &format!("<0x{b:02X}>")))
        .collect();
    assert_eq!(ids[1..], byte_ids[..]);
    let (parts, rest) = stream(&t, &ids);
    assert_eq!(parts, [" ", "", "", "", "😀"]);
    assert_eq!(rest, "");
    // An unfinished character comes out as U+FFFD at the end; an impossible byte at once.
    let (parts, rest) = stream(&t, &byte_ids[..2]);
    assert_eq!((parts.concat(), rest.as_str()), (String::new(), "\u{FFFD}"));
    let (parts, _) = stream(&t, &[id(&t, "<0xFF>"), id(&t, "a")]);
    assert_eq!(parts, ["\u{FFFD}", "a"]);
}

#[test]
fn stream_holds_a_character_split_over_byte_level_tokens() {
    let t = Tokenizer::from_gguf(&header(bpe_kv())).expect("tiny BPE vocabulary");
    assert!(t.describe().starts_with("byte-level BPE (gpt2, pre gpt-2)"));
    assert_eq!(t.encode("ab", false, false).unwrap(), [256]);
    let ids = t.encode("é😀!", false, false).unwrap();
    assert_eq!(ids.len(), 7);
    let (parts, rest) = stream(&t, &ids);
    assert_eq!(parts, ["", "é", "", "", "", "😀", "!"]);
    assert_eq!(rest, "");
    assert_eq!(t.decode(&ids, false), "é😀!");
    assert!(t.is_eog(257) && t.is_control(257));
    assert_eq!(
        t.encode("x<|endoftext|>", false, true).unwrap().last(),
        Some(&257)
    );
}

/// `spm_kv()` with `key` replaced by `value` (or removed when `None`).
fn spm_with(key: &'static str, value: Option<Value>) -> Result<Tokenizer, TokenizerError> {
    let mut kv: Vec<_> = spm_kv().into_iter().filter(|(k, _)| *k != key).collect();
    if let Some(v) = value {
        kv.push((key, v));
    }
    Tokenizer::from_gguf(&header(kv))
}

#[test]
fn malformed_metadata_is_a_typed_error() {
    use TokenizerError as E;
    let err = |r: Result<Tokenizer, TokenizerError>| r.expect_err("must fail");
    assert!(matches!(
        err(spm_with("tokenizer.ggml.tokens", None)),
        E::Missing { .. }
    ));
    assert!(matches!(
        err(spm_with("tokenizer.ggml.model", None)),
        E::Missing { .. }
    ));
    assert!(matches!(
        err(spm_with(
            "tokenizer.ggml.tokens",
            Some(Value::Array(Array::I32(vec![1, 2])))
        )),
        E::Gguf(_)
    ));
    assert!(matches!(
        err(spm_with("tokenizer.ggml.tokens", Some(strings(&[])))),
        E::BadVocabSize { .. }
    ));
    assert!(matches!(
        err(spm_with(
            "tokenizer.ggml.scores",
            Some(Value::Array(Array::F32(vec![0.0; 3])))
        )),
        E::LengthMismatch { .. }
    ));
    assert!(matches!(
        err(spm_with(
            "tokenizer.ggml.scores",
            Some(Value::String("x".into()))
        )),
        E::Gguf(_)
    ));
    assert!(matches!(
        err(spm_with(
            "tokenizer.ggml.token_type",
            Some(Value::Array(Array::I32(vec![1])))
        )),
        E::LengthMismatch { .. }
    ));
    assert!(matches!(
        err(spm_with(
            "tokenizer.ggml.bos_token_id",
            Some(Value::U32(1 << 20))
        )),
        E::IdOutOfRange { .. }
    ));
    assert!(matches!(
        err(spm_with(
            "tokenizer.ggml.eos_token_id",
            Some(Value::I32(-1))
        )),
        E::Gguf(_)
    ));
    assert!(matches!(
        err(spm_with(
            "tokenizer.ggml.add_bos_token",
            Some(Value::U32(1))
        )),
        E::Gguf(_)
    ));
    assert!(matches!(
        err(spm_with(
            "tokenizer.ggml.model",
            Some(Value::String("bert".into()))
        )),
        E::UnsupportedModel { .. }
    ));
    let mut kv = bpe_kv();
    kv.retain(|(k, _)| *k != "tokenizer.ggml.merges");
    assert!(matches!(
        err(Tokenizer::from_gguf(&header(kv))),
        E::Missing { .. }
    ));
    let mut kv = bpe_kv();
    kv[1].1 = Value::String("no-such-pre".into());
    assert!(matches!(
        err(Tokenizer::from_gguf(&header(kv))),
        E::UnsupportedPre { .. }
    ));
    // Messages name the key.
    let msg = err(spm_with(
        "tokenizer.ggml.scores",
        Some(Value::Array(Array::F32(vec![]))),
    ))
    .to_string();
    assert!(msg.contains("tokenizer.ggml.scores"), "{msg}");
}

#[test]
fn odd_vocabularies_load_and_encode_without_panics() {
    // Empty and duplicate pieces, no byte tokens, NaN scores, unknown token types.
    let kv = vec![
        ("tokenizer.ggml.model", Value::String("llama".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["", "a", "a", "▁a", "<x>", "b"]),
        ),
        (
            "tokenizer.ggml.scores",
            Value::Array(Array::F32(vec![0.0, f32::NAN, 1.0, 2.0, 0.0, -1.0])),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![1, 1, 1, 1, 3, 99])),
        ),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ];
    let t = Tokenizer::from_gguf(&header(kv)).expect("odd but usable");
    assert_eq!(t.token_text(0), Some("[EMPTY_0]"));
    assert_eq!(
        t.token_id("a"),
        Some(2),
        "the later duplicate wins, as in llama.cpp"
    );
    for s in ["", "a", " a a", "é<x>b\u{0}", "<x><x>"] {
        for (add, parse) in [(false, false), (true, true)] {
            let ids = t.encode(s, add, parse).expect("encode");
            assert!(ids.iter().all(|&i| (i as usize) < t.vocab_size()));
            let _ = t.decode(&ids, true);
        }
    }
    assert!(
        t.token_bytes(5, true).is_empty(),
        "undefined type prints nothing"
    );

    // Malformed merges are skipped, not fatal.
    let mut kv = bpe_kv();
    kv[4].1 = strings(&["", "a", " ", "a  b", "a b", "a b", "zz b"]);
    let t = Tokenizer::from_gguf(&header(kv)).expect("BPE with junk merges");
    assert_eq!(t.encode("ab", false, false).unwrap(), [256]);
}
