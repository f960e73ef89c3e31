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
            Some(Value::String("rwkv".into()))
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

/// A small WordPiece vocabulary in llama.cpp's form: word starts carry `▁`.
fn wpm_kv() -> Vec<(&'static str, Value)> {
    let tokens = [
        "[PAD]", "[UNK]", "[CLS]", "[SEP]", "▁hello", "▁hell", "o", "▁world", "▁,", "▁!", "▁a",
        "a", "▁日", "▁e", "▁x", "s",
    ];
    let mut types = vec![1; tokens.len()];
    types[..4].copy_from_slice(&[3, 3, 3, 3]);
    vec![
        ("tokenizer.ggml.model", Value::String("bert".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        ("tokenizer.ggml.token_type", Value::Array(Array::I32(types))),
        ("tokenizer.ggml.unknown_token_id", Value::U32(1)),
        ("tokenizer.ggml.cls_token_id", Value::U32(2)),
        ("tokenizer.ggml.seperator_token_id", Value::U32(3)),
        ("tokenizer.ggml.padding_token_id", Value::U32(0)),
    ]
}

#[test]
fn wordpiece_normalizes_splits_and_matches_greedily() {
    let t = Tokenizer::from_gguf(&header(wpm_kv())).expect("tiny WordPiece vocabulary");
    let ids = |s: &str| t.encode(s, false, false).unwrap();
    let i = |s: &str| id(&t, s);
    assert!(t.describe().starts_with("WordPiece"));
    assert_eq!(
        (t.bos(), t.eos(), t.unk(), t.add_bos(), t.add_eos()),
        (Some(2), None, Some(1), true, false)
    );
    // Lowercased, punctuation split off, continuation pieces without `▁`.
    assert_eq!(
        ids("Hello, World!"),
        [i("▁hello"), i("▁,"), i("▁world"), i("▁!")]
    );
    assert_eq!(ids("hellos"), [i("▁hello"), i("s")]);
    // A word with a part no token covers is one [UNK], whatever else matched.
    assert_eq!(ids("hello0 world"), [1, i("▁world")]);
    assert_eq!(ids("🦙"), [1]);
    // Empty, whitespace-only and control-only text give nothing; [CLS] .. [SEP] around.
    for s in ["", " ", " \t\n\r ", "\u{7}\u{200b}\u{0}"] {
        assert_eq!(ids(s), [] as [u32; 0], "{s:?}");
        assert_eq!(t.encode(s, true, true).unwrap(), [2, 3], "{s:?}");
    }
    // Accents go (one-code-point NFD, then marks dropped), CJK ideographs are words.
    assert_eq!(ids("É x\u{301}"), [i("▁e"), i("▁x")]);
    assert_eq!(ids("日本"), [i("▁日"), 1]);
    // No limit on word length (llama.cpp has none; HF's WordPiece stops at 100).
    let long = ids(&"a".repeat(300));
    assert_eq!(long.len(), 300);
    assert!(long[0] == i("▁a") && long[1..].iter().all(|&x| x == i("a")));
    // Decoding joins the pieces of a word and cleans up spaces before punctuation.
    let ids = t.encode("Hello, world!", true, true).unwrap();
    assert_eq!(ids.first(), Some(&2));
    assert_eq!(ids.last(), Some(&3));
    assert_eq!(t.decode(&ids, false), "hello, world!");
    assert_eq!(t.decode(&[i("▁hello"), i("s")], false), "hellos");
    assert!(t.inner().is_none());

    // Case kept when the file says so.
    let mut kv = wpm_kv();
    kv.push(("tokenizer.ggml.normalizer.lowercase", Value::Bool(false)));
    let t = Tokenizer::from_gguf(&header(kv)).unwrap();
    assert_eq!(t.encode("Hello hello", false, false).unwrap(), [1, 4]);
    // Without [SEP] when asked.
    let mut kv = wpm_kv();
    kv.push(("tokenizer.ggml.add_sep_token", Value::Bool(false)));
    let t = Tokenizer::from_gguf(&header(kv)).unwrap();
    assert_eq!(t.encode("a", true, true).unwrap(), [2, 10]);
}

/// A small Unigram vocabulary without a character map.
fn ugm_kv(add_space_prefix: bool, remove_extra_whitespaces: bool) -> Vec<(&'static str, Value)> {
    let pieces: &[(&str, f32, i32)] = &[
        ("<pad>", 0.0, 3),
        ("</s>", 0.0, 3),
        ("<unk>", 0.0, 2),
        ("▁", -1.0, 1),
        ("▁a", -2.0, 1),
        ("a", -1.0, 1),
        ("b", -1.0, 1),
        ("ab", -1.5, 1),
        ("▁ab", -2.0, 1),
        ("<u>", -50.0, 4),
    ];
    let tokens: Vec<&str> = pieces.iter().map(|p| p.0).collect();
    vec![
        ("tokenizer.ggml.model", Value::String("t5".into())),
        ("tokenizer.ggml.tokens", strings(&tokens)),
        (
            "tokenizer.ggml.scores",
            Value::Array(Array::F32(pieces.iter().map(|p| p.1).collect())),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(pieces.iter().map(|p| p.2).collect())),
        ),
        (
            "tokenizer.ggml.add_space_prefix",
            Value::Bool(add_space_prefix),
        ),
        (
            "tokenizer.ggml.remove_extra_whitespaces",
            Value::Bool(remove_extra_whitespaces),
        ),
    ]
}

#[test]
fn unigram_picks_the_best_segmentation() {
    let t = Tokenizer::from_gguf(&header(ugm_kv(true, true))).expect("tiny Unigram vocabulary");
    let ids = |s: &str| t.encode(s, false, false).unwrap();
    let i = |s: &str| id(&t, s);
    assert!(t.describe().starts_with("Unigram"));
    // llama.cpp's defaults for t5: EOS 1 appended, no BOS, unknown 2.
    assert_eq!(
        (t.bos(), t.eos(), t.unk(), t.add_bos(), t.add_eos()),
        (None, Some(1), Some(2), false, true)
    );
    // "▁ab" (-2) beats "▁a b" (-3) and "▁ ab" (-2.5).
    assert_eq!(ids("ab"), [i("▁ab")]);
    // Runs of spaces merge; each word gets its `▁`.
    assert_eq!(ids("  ab   ab  "), [i("▁ab"), i("▁ab")]);
    for s in ["", " ", "    "] {
        assert_eq!(ids(s), [] as [u32; 0], "{s:?}");
    }
    assert_eq!(t.encode("", true, true).unwrap(), [1]);
    // Unknown code points are <unk>, and neighbouring ones merge into one.
    assert_eq!(ids("é"), [i("▁"), 2]);
    assert_eq!(ids("ééé"), [i("▁"), 2]);
    assert_eq!(ids("aéb"), [i("▁a"), 2, i("b")]);
    // User-defined tokens are split out of the text before the model sees it.
    assert_eq!(ids("a<u>b"), [i("▁a"), i("<u>"), i("▁"), i("b")]);
    assert_eq!(t.encode("ab", true, true).unwrap(), [i("▁ab"), 1]);
    assert_eq!(t.decode(&[i("▁a"), i("b"), i("▁ab")], false), "ab ab");
    assert!(t.inner().is_none());
    // A long word is still one Viterbi pass.
    assert_eq!(ids(&"ab".repeat(500)).len(), 500);

    // Without merging or a prefix, every space is a `▁`.
    let t = Tokenizer::from_gguf(&header(ugm_kv(false, false))).unwrap();
    assert_eq!(
        t.encode("a  b", false, false).unwrap(),
        [i("a"), i("▁"), i("▁"), i("b")]
    );
    assert_eq!(t.encode(" ", false, false).unwrap(), [i("▁")]);
}

#[test]
fn wordpiece_and_unigram_metadata_errors_are_typed() {
    // A charsmap must at least hold its own header.
    let mut kv = ugm_kv(true, true);
    kv.push((
        "tokenizer.ggml.precompiled_charsmap",
        Value::Array(Array::U8(vec![200, 0, 0, 0, 1])),
    ));
    let err = Tokenizer::from_gguf(&header(kv)).unwrap_err().to_string();
    assert!(err.contains("precompiled_charsmap"), "{err}");
    let mut kv = ugm_kv(true, true);
    kv.push((
        "tokenizer.ggml.precompiled_charsmap",
        Value::String("x".into()),
    ));
    let err = Tokenizer::from_gguf(&header(kv)).unwrap_err().to_string();
    assert!(err.contains("precompiled_charsmap"), "{err}");
    // A WordPiece vocabulary with no unknown token (none named, default 100 too far).
    let mut kv = wpm_kv();
    kv.retain(|(k, _)| *k != "tokenizer.ggml.unknown_token_id");
    let err = Tokenizer::from_gguf(&header(kv)).unwrap_err().to_string();
    assert!(err.contains("unknown_token_id"), "{err}");
}
