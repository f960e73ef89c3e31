//! The embedding endpoints over the tiny EmbeddingGemma of `tests/fixtures/embed/`:
//! shapes, batches, unit norm, `dimensions`, base64 round trip, the legacy endpoint's raw
//! vector, and the 400s of bad input; a tiny BERT through `/v1/embeddings`.

use super::client::*;
use serde_json::{json, Value};

fn fixture() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/embed/gemma-embedding.gguf")
}

fn vector(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| *x as f64 * *x as f64).sum::<f64>().sqrt()
}

fn decode_base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("bad base64 {c}"),
    } as u32;
    let mut out = Vec::new();
    for chunk in s.as_bytes().chunks(4) {
        let pad = chunk.iter().filter(|&&c| c == b'=').count();
        let n = chunk
            .iter()
            .map(|&c| if c == b'=' { 0 } else { val(c) })
            .fold(0u32, |a, v| a << 6 | v);
        out.extend(&n.to_be_bytes()[1..4 - pad]);
    }
    out
}

#[test]
fn embedding_endpoints() {
    // The context (and batch) of 64 tokens bounds each input of this non-causal model.
    let srv = serve_file(
        "embed",
        &fixture(),
        "emb:tiny",
        &["--ctx", "64", "--parallel", "1"],
    );
    let a = srv.addr.as_str();

    // ollama: one string, then a batch; unit vectors of the model's width.
    let one = ok(post(
        a,
        "/api/embed",
        json!({"model": "emb:tiny", "input": "hello world"}),
    ))
    .json();
    assert_eq!(one["model"], "emb:tiny");
    let e = one["embeddings"].as_array().unwrap();
    assert_eq!(e.len(), 1);
    let v0 = vector(&e[0]);
    assert_eq!(v0.len(), 64);
    assert!((norm(&v0) - 1.0).abs() < 1e-5);
    assert_eq!(one["prompt_eval_count"], 13);
    assert!(one["total_duration"].as_u64().unwrap() > 0);
    assert!(one["load_duration"].is_u64());
    let batch = ok(post(
        a,
        "/api/embed",
        json!({"model": "emb:tiny", "input": ["a", "hello world", "the lazy dog"]}),
    ))
    .json();
    let e = batch["embeddings"].as_array().unwrap();
    assert_eq!(e.len(), 3);
    let v1 = vector(&e[1]);
    let same: f64 = v0.iter().zip(&v1).map(|(x, y)| (x - y).abs() as f64).sum();
    assert!(
        same < 1e-4,
        "the same text embeds the same in a batch ({same})"
    );
    // dimensions: cut and normalized again.
    let cut = ok(post(
        a,
        "/api/embed",
        json!({"model": "emb:tiny", "input": "hello world", "dimensions": 8}),
    ))
    .json();
    let c = vector(&cut["embeddings"][0]);
    assert_eq!(c.len(), 8);
    assert!((norm(&c) - 1.0).abs() < 1e-5);
    // Too long: truncated by default, a 400 with truncate false.
    let long = "word ".repeat(40);
    ok(post(
        a,
        "/api/embed",
        json!({"model": "emb:tiny", "input": long}),
    ));
    let r = post(
        a,
        "/api/embed",
        json!({"model": "emb:tiny", "input": long, "truncate": false}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
    // No input only loads the model.
    let none = ok(post(a, "/api/embed", json!({"model": "emb:tiny"}))).json();
    assert_eq!(none["embeddings"], json!([]));
    // Bad input.
    for body in [
        json!({"model": "emb:tiny", "input": 5}),
        json!({"model": "emb:tiny", "input": [1, 2]}),
        json!({"model": "emb:tiny", "input": "x", "dimensions": 0}),
        json!({"model": "emb:tiny", "input": "x", "dimensions": 65}),
        json!({"model": "emb:tiny", "input": "x", "options": 3}),
        json!({"model": "../etc", "input": "x"}),
    ] {
        let r = post(a, "/api/embed", body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(!r.error().is_empty());
    }
    assert_eq!(
        post(a, "/api/embed", json!({"model": "nope:1", "input": "x"})).status,
        404
    );

    // Legacy: the raw (unnormalized) vector, pointing the same way.
    let legacy = ok(post(
        a,
        "/api/embeddings",
        json!({"model": "emb:tiny", "prompt": "hello world"}),
    ))
    .json();
    let raw = vector(&legacy["embedding"]);
    let n = norm(&raw);
    assert!((n - 1.0).abs() > 1e-3, "legacy vectors are not normalized");
    let cos: f64 = raw
        .iter()
        .zip(&v0)
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum::<f64>()
        / n;
    assert!(cos > 0.99999, "{cos}");

    // OpenAI: floats, base64 (little-endian f32), token ids, usage.
    let f = ok(post(
        a,
        "/v1/embeddings",
        json!({"model": "emb:tiny", "input": ["hello world", "a"]}),
    ))
    .json();
    assert_eq!(f["object"], "list");
    assert_eq!(f["data"][1]["index"], 1);
    assert_eq!(f["data"][0]["object"], "embedding");
    assert_eq!(f["usage"]["prompt_tokens"], 13 + 3);
    assert_eq!(f["usage"]["total_tokens"], 13 + 3);
    let floats = vector(&f["data"][0]["embedding"]);
    let b = ok(post(
        a,
        "/v1/embeddings",
        json!({"model": "emb:tiny", "input": "hello world", "encoding_format": "base64"}),
    ))
    .json();
    let bytes = decode_base64(b["data"][0]["embedding"].as_str().unwrap());
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, floats, "base64 round trip");
    let ids = ok(post(
        a,
        "/v1/embeddings",
        json!({"model": "emb:tiny", "input": [[1, 200, 201, 2], [5, 6]], "dimensions": 16}),
    ))
    .json();
    assert_eq!(ids["data"].as_array().unwrap().len(), 2);
    assert_eq!(vector(&ids["data"][0]["embedding"]).len(), 16);
    assert_eq!(ids["usage"]["prompt_tokens"], 6);
    for body in [
        json!({"model": "emb:tiny", "input": ""}),
        json!({"model": "emb:tiny", "input": []}),
        json!({"model": "emb:tiny"}),
        json!({"model": "emb:tiny", "input": [[1, 999999]]}),
        json!({"model": "emb:tiny", "input": "x", "encoding_format": "hex"}),
        json!({"model": "emb:tiny", "input": [true]}),
    ] {
        let r = post(a, "/v1/embeddings", body.clone());
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
    let many: Vec<String> = (0..600).map(|_| "a".to_string()).collect();
    assert_eq!(
        post(
            a,
            "/v1/embeddings",
            json!({"model": "emb:tiny", "input": many})
        )
        .status,
        400
    );
    // The server keeps serving.
    ok(post(
        a,
        "/api/embed",
        json!({"model": "emb:tiny", "input": "still here"}),
    ));
}

/// A tiny BERT ([CLS] pooling, WordPiece) through `/v1/embeddings`: llama.cpp's vector,
/// normalized; asked to generate, it answers with an error that says it only embeds.
#[test]
fn bert_embeds_over_openai_endpoint() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embed");
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bert-cls.json")).unwrap()).unwrap();
    let srv = serve_file(
        "embed-bert",
        &dir.join("bert-cls.gguf"),
        "bert:tiny",
        &["--ctx", "64", "--parallel", "1"],
    );
    let a = srv.addr.as_str();
    let input = &golden["inputs"][1];
    let r = ok(post(
        a,
        "/v1/embeddings",
        json!({"model": "bert:tiny", "input": input["text"]}),
    ))
    .json();
    let got = vector(&r["data"][0]["embedding"]);
    let want = vector(&input["embedding"]);
    assert!((norm(&got) - 1.0).abs() < 1e-5);
    let dot: f64 = got
        .iter()
        .zip(&want)
        .map(|(x, y)| *x as f64 * *y as f64)
        .sum();
    assert!(dot / norm(&want) >= 0.9999, "cosine {}", dot / norm(&want));
    let n_tokens = input["tokens"].as_array().unwrap().len();
    assert_eq!(r["usage"]["prompt_tokens"], n_tokens);
    let g = post(
        a,
        "/api/generate",
        json!({"model": "bert:tiny", "prompt": "hello", "stream": false}),
    );
    assert_eq!(g.status, 400, "{}", g.body);
    assert!(g.error().contains("embedding model"), "{}", g.body);
}
