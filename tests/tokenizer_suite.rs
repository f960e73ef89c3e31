//! llama.cpp's own tokenizer tests (models/ggml-vocab-*.gguf with .inp/.out): every
//! vocabulary hearth claims to support must give exactly llama.cpp's ids for every
//! string, without BOS/EOS and with special-token parsing off, as test-tokenizer-0 does.
//!
//! The files come from `scripts/fetch-llama-src.sh`; `HEARTH_LLAMA_MODELS` points at them
//! (default ~/.cache/hearth/llama-models-0.3.36). Without them the test prints a note.

use hearth::gguf::GgufFile;
use hearth::tokenizer::Tokenizer;
use std::path::{Path, PathBuf};

/// Vocabularies that must match llama.cpp exactly.
const SUPPORTED: &[&str] = &[
    "llama-spm",
    "phi-3",
    "llama-bpe",
    "qwen2",
    "qwen35",
    "gpt-2",
    "mpt",
    "starcoder",
    "refact",
    "command-r",
    "falcon",
    "deepseek-coder",
    "gemma-4",
    "deepseek-llm",
];

/// Vocabularies with tests that hearth does not claim, and why.
const UNSUPPORTED: &[(&str, &str)] = &[(
    "bert-bge",
    "WordPiece ('bert') vocabularies are not implemented",
)];

fn models_dir() -> Option<PathBuf> {
    let p = match std::env::var_os("HEARTH_LLAMA_MODELS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/hearth/llama-models-0.3.36"),
    };
    if p.join("ggml-vocab-llama-spm.gguf").exists() {
        Some(p)
    } else {
        eprintln!(
            "note: llama.cpp's vocab tests not found in {}; run scripts/fetch-llama-src.sh",
            p.display()
        );
        None
    }
}

/// The (input, expected ids) pairs of one vocabulary, as test-tokenizer-0 reads them.
fn cases(dir: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let base = dir.join(format!("ggml-vocab-{name}.gguf"));
    let inp = std::fs::read_to_string(base.with_extension("gguf.inp")).expect(".inp");
    let out = std::fs::read_to_string(base.with_extension("gguf.out")).expect(".out");
    let sep = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut pos = 0;
    while pos < inp.len() {
        match inp[pos..].find(sep) {
            Some(n) => {
                inputs.push(inp[pos..pos + n].to_owned());
                pos += n + sep.len();
            }
            None => {
                inputs.push(inp[pos..].to_owned());
                break;
            }
        }
    }
    let outputs: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("id"))
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        outputs.len(),
        "{name}: .inp and .out disagree"
    );
    inputs.into_iter().zip(outputs).collect()
}

fn load(dir: &Path, name: &str) -> Result<Tokenizer, String> {
    let f =
        GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf"))).map_err(|e| e.to_string())?;
    Tokenizer::from_gguf(f.header()).map_err(|e| e.to_string())
}

/// Mismatching cases as printable lines.
fn mismatches(tok: &Tokenizer, cases: &[(String, Vec<u32>)]) -> Vec<String> {
    let mut bad = Vec::new();
    for (s, want) in cases {
        match tok.encode(s, false, false) {
            Ok(got) if &got == want => {}
            Ok(got) => bad.push(format!("  {s:?}\n    want {want:?}\n    got  {got:?}")),
            Err(e) => bad.push(format!("  {s:?}: {e}")),
        }
    }
    bad
}

fn all_with_tests(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("models dir")
        .filter_map(|e| {
            let n = e.ok()?.file_name().into_string().ok()?;
            Some(
                n.strip_prefix("ggml-vocab-")?
                    .strip_suffix(".gguf.out")?
                    .to_owned(),
            )
        })
        .collect();
    names.sort();
    names
}

#[test]
fn supported_vocabularies_match_llama_cpp() {
    let Some(dir) = models_dir() else { return };
    let mut failed = Vec::new();
    for name in SUPPORTED {
        let tok = load(&dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let cases = cases(&dir, name);
        let bad = mismatches(&tok, &cases);
        println!(
            "{name}: {} ({} strings, {} mismatches)",
            tok.describe(),
            cases.len(),
            bad.len()
        );
        if !bad.is_empty() {
            failed.push(format!("{name}:\n{}", bad.join("\n")));
        }
    }
    for (name, why) in UNSUPPORTED {
        println!("not supported: {name}: {why}");
    }
    assert!(failed.is_empty(), "mismatches:\n{}", failed.join("\n"));
}

/// Every vocabulary with tests is either supported or listed with a reason.
#[test]
fn every_vocabulary_is_accounted_for() {
    let Some(dir) = models_dir() else { return };
    let mut unlisted: Vec<String> = Vec::new();
    for name in all_with_tests(&dir) {
        let listed =
            SUPPORTED.contains(&name.as_str()) || UNSUPPORTED.iter().any(|(n, _)| *n == name);
        let status = match load(&dir, &name) {
            Err(e) => format!("does not load: {e}"),
            Ok(tok) => {
                let c = cases(&dir, &name);
                format!(
                    "{} of {} strings match",
                    c.len() - mismatches(&tok, &c).len(),
                    c.len()
                )
            }
        };
        println!("{name}: {status}");
        if !listed {
            unlisted.push(format!("{name} ({status})"));
        }
    }
    assert!(
        unlisted.is_empty(),
        "neither in SUPPORTED nor in UNSUPPORTED: {unlisted:?}"
    );
}

/// Detokenizing the ids gives the text back, as llama.cpp's detokenizer does.
#[test]
fn decode_round_trips() {
    let Some(dir) = models_dir() else { return };
    let mut failed = Vec::new();
    for name in SUPPORTED {
        let tok = load(&dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (s, _) in cases(&dir, name) {
            let ids = tok.encode(&s, false, false).expect("encode");
            let back = tok.decode(&ids, false);
            if back != s {
                failed.push(format!("{name}: {s:?} -> {back:?}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "round trips failed:\n{}",
        failed.join("\n")
    );
}
