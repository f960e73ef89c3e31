//! llama.cpp's own tokenizer tests (models/ggml-vocab-*.gguf with .inp/.out): every
//! vocabulary hearth claims to support must give exactly llama.cpp's ids for every
//! string, without BOS/EOS and with special-token parsing off, as test-tokenizer-0 does.
//!
//! The files come from `scripts/fetch-llama-src.sh`; `HEARTH_LLAMA_MODELS` points at them
//! (default ~/.cache/hearth/llama-models-0.3.36). Without them the test skips with a note,
//! except where `CI` is set: there it fails.

mod common;

use hearth::gguf::GgufFile;
use hearth::tokenizer::Tokenizer;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

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
    "bert-bge",
];

/// Vocabularies without .inp/.out files that hearth also claims (checked on the random
/// strings of tests/fixtures/vocab_fuzz.json, and those in [`GOLDENS`] on their goldens).
const SUPPORTED_NO_SUITE: &[&str] = &["aquila", "baichuan", "gpt-neox", "nomic-bert-moe"];

/// Vocabularies whose expected ids llama.cpp itself gave for another vocabulary's .inp
/// strings (tests/fixtures/ggml-vocab-NAME.gguf.out, from scripts/gen-vocab-goldens.py):
/// (vocabulary, the vocabulary whose .inp it is).
const GOLDENS: &[(&str, &str)] = &[("nomic-bert-moe", "bert-bge")];

/// Vocabularies whose normalization loses text (case, accents, whitespace runs): their
/// decoded text is checked to encode to the same ids instead of to equal the input
/// (where the ids hold no unknown token).
const LOSSY: &[&str] = &["bert-bge", "nomic-bert-moe"];

/// Vocabularies with tests that hearth does not claim, and why.
const UNSUPPORTED: &[(&str, &str)] = &[];

fn models_dir() -> Option<PathBuf> {
    let p = common::llama_models()?;
    assert!(
        p.join("ggml-vocab-llama-spm.gguf").exists(),
        "llama.cpp's vocab tests are missing from {}; rerun scripts/fetch-llama-src.sh",
        p.display()
    );
    Some(p)
}

/// The (input, expected ids) pairs of one vocabulary, as test-tokenizer-0 reads them.
fn cases(dir: &Path, name: &str) -> Vec<(String, Vec<u32>)> {
    let base = dir.join(format!("ggml-vocab-{name}.gguf"));
    read_cases(
        &base.with_extension("gguf.inp"),
        &base.with_extension("gguf.out"),
    )
}

/// The (input, expected ids) pairs of a vocabulary in [`GOLDENS`].
fn golden_cases(dir: &Path, name: &str, inp_of: &str) -> Vec<(String, Vec<u32>)> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format!("ggml-vocab-{name}.gguf.out"));
    read_cases(&dir.join(format!("ggml-vocab-{inp_of}.gguf.inp")), &out)
}

/// Inputs separated by `__ggml_vocab_test__` lines, and one line of ids per input.
fn read_cases(inp: &Path, out: &Path) -> Vec<(String, Vec<u32>)> {
    let name = out.display();
    let inp = std::fs::read_to_string(inp).expect(".inp");
    let out = std::fs::read_to_string(out).expect(".out");
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

type Loaded = Result<Arc<Tokenizer>, String>;

/// Loads a vocabulary once for all the tests of this file.
fn load(dir: &Path, name: &str) -> Loaded {
    static CACHE: OnceLock<Mutex<HashMap<String, Loaded>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(t) = cache.lock().unwrap().get(name) {
        return t.clone();
    }
    let t = GgufFile::open(dir.join(format!("ggml-vocab-{name}.gguf")))
        .map_err(|e| e.to_string())
        .and_then(|f| Tokenizer::from_gguf(f.header()).map_err(|e| e.to_string()))
        .map(Arc::new);
    cache.lock().unwrap().insert(name.to_owned(), t.clone());
    t
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
    let all = SUPPORTED
        .iter()
        .map(|&name| (name, cases(&dir, name)))
        .chain(
            GOLDENS
                .iter()
                .map(|&(name, inp_of)| (name, golden_cases(&dir, name, inp_of))),
        );
    for (name, cases) in all {
        let tok = load(&dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
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

/// Detokenizing the ids gives the text back, as llama.cpp's detokenizer does; for the
/// [`LOSSY`] vocabularies, a text that encodes to the same ids.
#[test]
fn decode_round_trips() {
    let Some(dir) = models_dir() else { return };
    let mut failed = Vec::new();
    let all = SUPPORTED
        .iter()
        .map(|&name| (name, cases(&dir, name)))
        .chain(
            GOLDENS
                .iter()
                .map(|&(name, inp_of)| (name, golden_cases(&dir, name, inp_of))),
        );
    for (name, cases) in all {
        let tok = load(&dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (s, _) in cases {
            let ids = tok.encode(&s, false, false).expect("encode");
            let back = tok.decode(&ids, false);
            if LOSSY.contains(&name) {
                // Unknown tokens decode to nothing: no text gives them back.
                if ids.iter().any(|&i| Some(i) == tok.unk()) {
                    continue;
                }
                let again = tok.encode(&back, false, false).expect("encode");
                if again != ids {
                    failed.push(format!(
                        "{name}: {s:?} -> {back:?} -> {again:?}, not {ids:?}"
                    ));
                }
            } else if back != s {
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

/// Random strings (scripts, emoji, whitespace runs, special-token spellings) against
/// llama.cpp's ids, with and without BOS/EOS and special-token parsing
/// (tests/fixtures/vocab_fuzz.json, from scripts/gen-tokenizer-goldens.py).
#[test]
fn random_strings_match_llama_cpp() {
    let Some(dir) = models_dir() else { return };
    let g: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/vocab_fuzz.json")).expect("vocab_fuzz.json");
    let strings = g["strings"].as_array().expect("strings");
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect()
    };
    let mut failed = Vec::new();
    for (name, cases) in g["vocabs"].as_object().expect("vocabs") {
        let claimed =
            SUPPORTED.contains(&name.as_str()) || SUPPORTED_NO_SUITE.contains(&name.as_str());
        if !claimed {
            assert!(
                UNSUPPORTED.iter().any(|(n, _)| n == name),
                "{name} is neither supported nor listed as unsupported"
            );
            continue;
        }
        let tok = load(&dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (s, c) in strings.iter().zip(cases.as_array().expect("cases")) {
            let s = s.as_str().expect("string");
            for (key, add, parse) in [("plain", false, false), ("special", true, true)] {
                let want = ids(&c[key]);
                let got = tok.encode(s, add, parse).expect("encode");
                if got != want {
                    failed.push(format!(
                        "{name} {key} {s:?}\n  want {want:?}\n  got  {got:?}"
                    ));
                }
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// BOS/EOS ids and flags, end-of-generation ids and the set of control tokens agree with
/// llama.cpp's (tests/fixtures/vocab_fuzz.json).
#[test]
fn special_ids_match_llama_cpp() {
    let Some(dir) = models_dir() else { return };
    let g: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/vocab_fuzz.json")).expect("vocab_fuzz.json");
    let mut failed = Vec::new();
    for (name, m) in g["meta"].as_object().expect("meta") {
        let Ok(tok) = load(&dir, name) else {
            continue;
        };
        let id = |v: &serde_json::Value| u32::try_from(v.as_i64().expect("id")).ok();
        let control: Vec<u64> = (0..tok.vocab_size() as u32)
            .filter(|&i| tok.is_control(i))
            .map(u64::from)
            .collect();
        let mine = (
            tok.bos(),
            tok.eos(),
            tok.add_bos(),
            tok.add_eos(),
            tok.eog_ids(),
            control.len() as u64,
            control.iter().sum::<u64>(),
        );
        let eog = m["eog"].as_array().expect("eog");
        let theirs = (
            id(&m["bos"]),
            id(&m["eos"]),
            m["add_bos"].as_bool().expect("add_bos"),
            m["add_eos"].as_bool().expect("add_eos"),
            eog.iter()
                .map(|x| x.as_u64().expect("id") as u32)
                .collect::<Vec<_>>(),
            m["n_control"].as_u64().expect("n_control"),
            m["control_id_sum"].as_u64().expect("sum"),
        );
        if mine != theirs {
            failed.push(format!(
                "{name}:\n  hearth    {mine:?}\n  llama.cpp {theirs:?}"
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// Edge cases of the WordPiece and Unigram vocabularies against ids llama.cpp gave
/// (llama-cpp-python 0.3.36, `tokenize(s, add_bos=False/True, special=False/True)`):
/// empty and whitespace-only text, control characters, unknown characters, accents, and
/// a 150-letter word (llama.cpp has no WordPiece limit on word length, unlike HF's 100
/// characters).
#[test]
fn wordpiece_and_unigram_edge_cases_match_llama_cpp() {
    let Some(dir) = models_dir() else { return };
    let long = "a".repeat(150);
    let rep = |id: u32, n: usize| vec![id; n];
    let bert_long: Vec<u32> = [vec![13360], rep(11057, 73), vec![2050]].concat();
    let nomic_long: Vec<u32> = [vec![6], rep(83151, 30)].concat();
    let cases: Vec<(&str, String, Vec<u32>, Vec<u32>)> = vec![
        ("bert-bge", String::new(), vec![], vec![101, 102]),
        ("bert-bge", " \t\n ".into(), vec![], vec![101, 102]),
        ("bert-bge", "\u{7}\u{200b}".into(), vec![], vec![101, 102]),
        ("bert-bge", "🦙".into(), vec![100], vec![101, 100, 102]),
        (
            "bert-bge",
            "🦙🦙 x".into(),
            vec![100, 1060],
            vec![101, 100, 1060, 102],
        ),
        (
            "bert-bge",
            "[CLS] <s> hi".into(),
            vec![1031, 18856, 2015, 1033, 1026, 1055, 1028, 7632],
            vec![101, 101, 1026, 1055, 1028, 7632, 102],
        ),
        (
            "bert-bge",
            "Ünïcödé ÀÉÎ".into(),
            vec![27260, 29347, 2072],
            vec![101, 27260, 29347, 2072, 102],
        ),
        (
            "bert-bge",
            "x\u{301}".into(),
            vec![1060],
            vec![101, 1060, 102],
        ),
        (
            "bert-bge",
            long.clone(),
            bert_long.clone(),
            [vec![101], bert_long, vec![102]].concat(),
        ),
        ("nomic-bert-moe", String::new(), vec![], vec![0, 2]),
        ("nomic-bert-moe", " \t\n ".into(), vec![], vec![0, 2]),
        ("nomic-bert-moe", "\u{7}\u{200b}".into(), vec![], vec![0, 2]),
        ("nomic-bert-moe", "🦙".into(), vec![6, 3], vec![0, 6, 3, 2]),
        (
            "nomic-bert-moe",
            "🦙🦙 x".into(),
            vec![6, 3, 1022],
            vec![0, 6, 3, 1022, 2],
        ),
        (
            "nomic-bert-moe",
            "[CLS] <s> hi".into(),
            vec![378, 441, 19759, 268, 4426, 7, 2740, 1274],
            vec![0, 378, 441, 19759, 268, 0, 1274, 2],
        ),
        (
            "nomic-bert-moe",
            "x\u{301}".into(),
            vec![1022, 4868],
            vec![0, 1022, 4868, 2],
        ),
        (
            "nomic-bert-moe",
            long,
            nomic_long.clone(),
            [vec![0], nomic_long, vec![2]].concat(),
        ),
    ];
    let mut failed = Vec::new();
    for (name, s, plain, special) in cases {
        let tok = load(&dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (add, want) in [(false, plain), (true, special)] {
            let got = tok.encode(&s, add, add).expect("encode");
            if got != want {
                failed.push(format!(
                    "{name} {s:?} ({add})\n  want {want:?}\n  got  {got:?}"
                ));
            }
        }
    }
    let bert = load(&dir, "bert-bge").unwrap();
    let ids = bert.encode("Hello, world! It's fine.", true, true).unwrap();
    // llama-cpp-python's detokenize gives " hello , world ! it ' s fine ."; hearth
    // drops the first word's space and cleans up as llama.cpp's detokenizer can.
    assert_eq!(bert.decode(&ids, false), "hello, world! it's fine.");
    let nomic = load(&dir, "nomic-bert-moe").unwrap();
    let ids = nomic
        .encode("Hello, world! It's fine.", false, false)
        .unwrap();
    assert_eq!(nomic.decode(&ids, false), "Hello, world! It's fine.");
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
