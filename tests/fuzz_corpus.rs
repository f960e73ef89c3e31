//! Replays every committed fuzz corpus file (`fuzz/corpus/<target>/`) through the same
//! function its libFuzzer target calls, so the seeds and every crash input found so far
//! stay fixed under a plain `cargo test`, without a nightly toolchain. The campaigns
//! themselves run with `scripts/fuzz.sh`.

use std::path::{Path, PathBuf};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{} is empty: the replay would pass vacuously",
        dir.display()
    );
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect()
}

/// Runs `f` on every file of `target`'s corpus, naming the file that fails.
fn replay(target: &str, f: fn(&[u8])) {
    for (path, bytes) in corpus(target) {
        let run = std::panic::catch_unwind(|| f(&bytes));
        assert!(run.is_ok(), "{target}: {} fails", path.display());
    }
}

#[test]
fn gguf_corpus() {
    replay("gguf", hearth::fuzzing::gguf);
}

#[test]
fn tokenizer_corpus() {
    replay("tokenizer", hearth::fuzzing::tokenizer);
}

#[test]
fn chat_template_corpus() {
    replay("chat_template", hearth::fuzzing::chat_template);
}

#[test]
fn json_grammar_corpus() {
    replay("json_grammar", hearth::fuzzing::json_grammar);
}

#[test]
fn server_request_corpus() {
    replay("server_request", hearth::fuzzing::server_request);
}

#[test]
fn constraint_corpus() {
    replay("constraint", hearth::fuzzing::constraint);
}

#[test]
fn tool_calls_corpus() {
    replay("tool_calls", hearth::fuzzing::tool_calls);
}

#[test]
fn model_names_corpus() {
    replay("model_names", hearth::fuzzing::model_names);
}

/// Rewrites the GGUF seeds from the crate's own writer:
/// `cargo test --test fuzz_corpus -- --ignored write_gguf_seeds`.
#[test]
#[ignore = "writes fuzz/corpus/gguf; run by hand when the seeds should change"]
fn write_gguf_seeds() {
    use hearth::gguf::{Array, GgufWriter, Value};
    use hearth::model::{Arch, TinySpec};
    use hearth::quant::GgmlType;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/gguf");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let write = |name: &str, bytes: Vec<u8>| {
        std::fs::write(dir.join(name), bytes).expect("write seed");
    };
    // Whole models, as small as the architectures allow.
    for (name, arch, ty, vocab) in [
        ("seed-llama-q8_0.gguf", Arch::Llama, GgmlType::Q8_0, 300),
        ("seed-qwen3-q4_0.gguf", Arch::Qwen3, GgmlType::Q4_0, 64),
        ("seed-gemma3-f16.gguf", Arch::Gemma3, GgmlType::F16, 48),
    ] {
        let spec = TinySpec {
            n_layers: 1,
            hidden: 32,
            n_heads: 2,
            n_kv_heads: 1,
            head_dim: 16,
            ffn: 32,
            vocab,
            context: 64,
            ..TinySpec::new(arch).with_weight_type(ty)
        };
        write(name, spec.build());
    }
    // Every metadata value type, a byte-level vocabulary with a chat template, and a
    // tensor of each of several block types.
    let mut w = GgufWriter::new();
    w.set_alignment(64).expect("alignment");
    let strings =
        |v: &[&str]| Value::Array(Array::String(v.iter().map(|s| s.to_string()).collect()));
    let kv = [
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("seed".into())),
        ("seed.u8", Value::U8(7)),
        ("seed.i8", Value::I8(-7)),
        ("seed.u16", Value::U16(700)),
        ("seed.i16", Value::I16(-700)),
        ("seed.u32", Value::U32(70_000)),
        ("seed.i32", Value::I32(-70_000)),
        ("seed.u64", Value::U64(1 << 40)),
        ("seed.i64", Value::I64(-(1 << 40))),
        ("seed.f32", Value::F32(0.5)),
        ("seed.f64", Value::F64(-0.25)),
        ("seed.bool", Value::Bool(true)),
        ("seed.u32s", Value::Array(Array::U32(vec![1, 2, 3]))),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("llama-bpe".into())),
        (
            "tokenizer.ggml.tokens",
            strings(&["a", "b", "ab", "Ġ", "<|eot_id|>", "<|begin_of_text|>"]),
        ),
        (
            "tokenizer.ggml.token_type",
            Value::Array(Array::I32(vec![1, 1, 1, 1, 3, 3])),
        ),
        ("tokenizer.ggml.merges", strings(&["a b"])),
        ("tokenizer.ggml.bos_token_id", Value::U32(5)),
        (
            "tokenizer.chat_template",
            Value::String(
                "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}<|eot_id|>{% endfor %}"
                    .into(),
            ),
        ),
    ];
    for (k, v) in kv {
        w.add(k, v).expect("metadata");
    }
    for (name, ty, dims) in [
        ("f32", GgmlType::F32, vec![3u64, 2]),
        ("q4_k", GgmlType::Q4_K, vec![256]),
        ("q6_k", GgmlType::Q6_K, vec![256]),
        ("iq4_nl", GgmlType::IQ4_NL, vec![32, 1, 1, 1]),
        ("bf16", GgmlType::BF16, vec![4]),
    ] {
        let n: u64 = dims.iter().product();
        let len = ty.bytes_for(n).expect("size") as usize;
        let data: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
        w.add_tensor(name, &dims, ty, data).expect("tensor");
    }
    write("seed-types.gguf", w.to_bytes());
}
