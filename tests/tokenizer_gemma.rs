//! Gemma 3's tokenizer against llama.cpp's ids (tests/fixtures/gemma3_tokens.json, written
//! by scripts/gen-tokenizer-goldens.py): every string with BOS and special-token parsing
//! and without either, and the detokenized bytes of a few ids.

mod common;

use hearth::gguf::GgufFile;
use hearth::tokenizer::{StreamDecoder, Tokenizer};
use serde_json::Value;
use std::time::Instant;

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn bytes(v: &Value) -> Vec<u8> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("byte") as u8)
        .collect()
}

fn load() -> Option<Tokenizer> {
    let path = common::real_model()?;
    let file = GgufFile::open(&path).expect("open the model");
    let t0 = Instant::now();
    let tok = Tokenizer::from_gguf(file.header()).expect("Gemma 3's vocabulary");
    println!("{}: built in {:.0?}", tok.describe(), t0.elapsed());
    Some(tok)
}

fn goldens() -> Value {
    let text = include_str!("fixtures/gemma3_tokens.json");
    serde_json::from_str(text).expect("gemma3_tokens.json")
}

#[test]
fn gemma3_matches_llama_cpp() {
    let Some(tok) = load() else { return };
    let g = goldens();
    assert_eq!(tok.vocab_size() as u64, g["n_vocab"].as_u64().unwrap());
    let cases = g["cases"].as_array().expect("cases");
    assert!(cases.len() >= 40);
    let mut bad = Vec::new();
    for c in cases {
        let text = c["text"].as_str().expect("text");
        for (key, add_special, parse_special) in [("special", true, true), ("plain", false, false)]
        {
            let want = ids(&c[key]);
            let got = tok
                .encode(text, add_special, parse_special)
                .expect("encode");
            if got != want {
                bad.push(format!("{text:?} ({key})\n  want {want:?}\n  got  {got:?}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn gemma3_pieces_match_llama_cpp() {
    let Some(tok) = load() else { return };
    for p in goldens()["pieces"].as_array().expect("pieces") {
        let id = p["id"].as_u64().unwrap() as u32;
        assert_eq!(tok.token_bytes(id, true), bytes(&p["special"]), "id {id}");
        assert_eq!(tok.token_bytes(id, false), bytes(&p["plain"]), "id {id}");
    }
}

#[test]
fn gemma3_special_ids_and_round_trip() {
    let Some(tok) = load() else { return };
    assert_eq!(tok.bos(), tok.token_id("<bos>"));
    assert_eq!(tok.eos(), tok.token_id("<eos>"));
    assert!(tok.add_bos() && !tok.add_eos());
    let eot = tok.token_id("<end_of_turn>").expect("<end_of_turn>");
    assert!(tok.is_eog(eot) && tok.is_eog(tok.eos().unwrap()));
    assert!(tok.is_control(eot) && !tok.is_eog(tok.bos().unwrap()));
    assert_eq!(tok.token_text(eot), Some("<end_of_turn>"));
    for c in goldens()["cases"].as_array().unwrap() {
        let text = c["text"].as_str().unwrap();
        let ids = tok.encode(text, false, false).unwrap();
        assert_eq!(tok.decode(&ids, false), text);
        let mut stream = StreamDecoder::new();
        let mut out: String = ids.iter().map(|&id| stream.push(&tok, id)).collect();
        out.push_str(&stream.finish());
        assert_eq!(out, text);
    }
}

/// A long chat transcript tokenizes quickly (the special-token scan runs over every
/// control token of a 262144-token vocabulary) and the same as its pieces joined.
#[test]
fn gemma3_long_text() {
    let Some(tok) = load() else { return };
    let turn = "<start_of_turn>user\nWrite a poem about the sea, with 日本語 and emoji 🌊.<end_of_turn>\n<start_of_turn>model\nThe sea is wide, the sea is deep; its secrets are not ours to keep.<end_of_turn>\n";
    let text = turn.repeat(100);
    let t0 = Instant::now();
    let ids = tok.encode(&text, true, true).expect("encode");
    println!(
        "{} bytes -> {} tokens in {:.1?}",
        text.len(),
        ids.len(),
        t0.elapsed()
    );
    let one = tok.encode(turn, false, true).expect("encode");
    assert_eq!(ids.len(), 1 + 100 * one.len());
    assert_eq!(&ids[1..1 + one.len()], &one[..]);
}
