//! The `hearth` binary end to end: `info` on the real model and on bad files (one-line
//! error, non-zero exit, never a panic), `devices`.

mod common;

use hearth::gguf::{put_string, put_tensor_info, GgufWriter, Value};
use hearth::quant::GgmlType;
use std::path::PathBuf;
use std::process::{Command, Output};

fn hearth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env("HEARTH_NO_EXTERNAL_MODELS", "1")
        .output()
        .expect("run hearth")
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hearth-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend(version.to_le_bytes());
    b.extend(n_tensors.to_le_bytes());
    b.extend(n_kv.to_le_bytes());
    b
}

#[test]
fn info_on_bad_files_is_one_line_error() {
    let valid = {
        let mut w = GgufWriter::new();
        w.add("general.architecture", Value::String("llama".into()))
            .unwrap();
        w.add_tensor("t", &[32, 2], GgmlType::Q8_0, [0u8; 68])
            .unwrap();
        w.to_bytes()
    };
    let mut past_end = header(3, 1, 0);
    put_tensor_info(&mut past_end, "t", &[32, 1000], GgmlType::Q8_0.id(), 0);
    let mut huge_string = header(3, 0, 1);
    huge_string.extend(u64::MAX.to_le_bytes());
    let mut bad_type = header(3, 1, 0);
    put_tensor_info(&mut bad_type, "t", &[32], 99, 0);
    let mut bad_align = header(3, 0, 1);
    put_string(&mut bad_align, "general.alignment");
    bad_align.extend(4u32.to_le_bytes()); // u32 type id...
    bad_align.extend(3u32.to_le_bytes()); // ...value 3: not a power of two
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "magic"),
        ("magic", b"GGML\x03\0\0\0".to_vec(), "magic"),
        ("version1", header(1, 0, 0), "version"),
        ("version9", header(9, 0, 0), "version"),
        ("tensors", header(3, u64::MAX, 0), "tensor"),
        ("kvs", header(3, 0, u64::MAX), ""),
        ("string", huge_string, ""),
        ("past_end", past_end, "t"),
        ("bad_type", bad_type, "99"),
        ("alignment", bad_align, "alignment"),
        ("truncated", valid[..valid.len() - 40].to_vec(), "past"),
    ];
    for (name, bytes, needle) in cases {
        let p = temp_file(&format!("{name}.gguf"), &bytes);
        let out = hearth(&["info", p.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{name}: exit status {:?}",
            out.status
        );
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{name}: not one line: {err}"
        );
        assert!(err.starts_with("hearth: error:"), "{name}: {err}");
        assert!(
            err.to_lowercase().contains(&needle.to_lowercase()),
            "{name}: '{needle}' not in: {err}"
        );
    }
    let out = hearth(&["info", "/nonexistent/model.gguf"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/model.gguf"));
    let p = temp_file("valid.gguf", &valid);
    let out = hearth(&["info", p.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn info_on_the_real_model() {
    let Some(path) = common::real_model() else {
        return;
    };
    let out = hearth(&["info", path.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("architecture:  gemma3"), "{text}");
    assert!(text.contains("tensors: 236"), "{text}");
    for ty in ["F32", "Q5_0", "Q8_0", "Q4_K", "Q6_K"] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(ty)),
            "no total for {ty}"
        );
    }
    assert!(
        text.contains("token_embd.weight is split into 2 row shards"),
        "{text}"
    );
    assert!(text.contains("vocabulary     262144 tokens"), "{text}");
}

#[test]
fn devices_lists_an_adapter() {
    let out = hearth(&["devices"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("[0] "));
    let out = hearth(&["--backend", "nonsense", "devices"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown backend"));
}

#[test]
fn run_raw_greedy_answers_paris() {
    let Some(path) = common::real_model() else {
        return;
    };
    let p = path.to_str().unwrap();
    let q = "Question: What is the capital of France?\nAnswer:";
    let out = hearth(&[
        "run",
        p,
        q,
        "--raw",
        "--temperature",
        "0",
        "-n",
        "4",
        "--ctx",
        "128",
        "--verbose",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with(" Paris"), "{stdout:?}");
    for key in [
        "load duration:",
        "prompt eval count:    13 token(s)",
        "eval rate:",
    ] {
        assert!(stderr.contains(key), "--verbose lacks {key:?}: {stderr}");
    }
    assert!(stderr.contains("none (--raw)"), "{stderr}");
    // Interactive mode reads turns from stdin; /bye ends it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(["run", p, "--temperature", "0", "-n", "3", "--ctx", "128"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"Hello\n/clear\nHi again\n/bye\nnever read\n")
        .unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| !l.is_empty()).count(),
        2,
        "{stdout:?}"
    );
}

#[test]
fn run_and_tokenize_reject_bad_input_in_one_line() {
    let Some(path) = common::real_model() else {
        return;
    };
    let p = path.to_str().unwrap();
    for args in [
        vec!["run", p, "x", "--temperature", "-1"],
        vec!["run", p, "x", "--top-p", "2"],
        vec!["run", p, "x", "-n", "-5"],
        vec!["run", p, "x", "--template", "/nonexistent/t.jinja"],
        vec!["run", "/nonexistent/model.gguf", "x"],
        vec!["run", p, &"word ".repeat(200), "--raw", "--ctx", "64"],
        vec!["bench", p, "-p", "64", "-r", "0"],
        vec!["bench", p, "-p", "0", "-n", "4", "--parallel", "0"],
        vec!["bench", p, "-p", "0", "-n", "4", "--parallel", "2,1,2"],
        vec!["run", p, "x", "--raw", "--grammar", "root ::= missing"],
        vec!["run", p, "x", "--raw", "--format", "{not json"],
        vec!["run", p, "x", "--raw", "--regex", "(open"],
    ] {
        let out = hearth(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.starts_with("hearth: error: "), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}

/// `bench -o json` reports each test with its token count and positive rates; with
/// `--parallel 1,2` generation by one sequence and by two (the total over both and per
/// sequence, half of it), each repetition running both, and the two's speedup over one
/// as the ratio of their rates in each repetition.
#[test]
fn bench_reports_single_and_parallel_generation() {
    let Some(path) = common::real_model() else {
        return;
    };
    let p = path.to_str().unwrap();
    let args = ["bench", p, "-p", "8", "-n", "4", "-r", "2", "-o", "json"];
    let out = hearth(&[&args[..], &["--parallel", "1,2"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["parallel"], 2);
    assert_eq!(v["parallel_tests"], serde_json::json!([1, 2]));
    let tests = v["tests"].as_array().unwrap();
    let find = |name: &str| {
        tests
            .iter()
            .find(|t| t["test"] == name)
            .unwrap_or_else(|| panic!("no {name} in {tests:?}"))
    };
    assert_eq!(find("pp8")["n_tokens"], 8);
    let (total, per) = (find("tg4 x2"), find("tg4 x2 per sequence"));
    assert_eq!(
        (total["n_tokens"].as_u64(), per["n_tokens"].as_u64()),
        (Some(8), Some(4))
    );
    let rate = |t: &serde_json::Value| t["tokens_per_second"].as_f64().unwrap();
    assert!(rate(total) > 0.0 && (rate(per) - rate(total) / 2.0).abs() < 1e-9 * rate(total));
    let one = find("tg4");
    assert_eq!(one["n_tokens"], 4);
    let samples = |t: &serde_json::Value| -> Vec<f64> {
        let s = t["samples"].as_array().unwrap();
        s.iter().map(|x| x.as_f64().unwrap()).collect()
    };
    let speedups = v["speedups"].as_array().unwrap();
    assert_eq!(speedups.len(), 1, "{speedups:?}");
    assert_eq!(speedups[0]["test"], "tg4 x2 / tg4");
    let (two, one, ratio) = (samples(total), samples(one), samples(&speedups[0]));
    assert_eq!((two.len(), one.len(), ratio.len()), (2, 2, 2));
    for i in 0..2 {
        assert!(one[i] > 0.0 && (ratio[i] - two[i] / one[i]).abs() < 1e-9 * ratio[i]);
    }
}

#[test]
fn tokenize_prints_ids_and_pieces() {
    let Some(path) = common::real_model() else {
        return;
    };
    let p = path.to_str().unwrap();
    let out = hearth(&["tokenize", p, "<start_of_turn>Hello", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids[..2], [2, 105], "BOS then <start_of_turn>: {v}");
    let out = hearth(&["tokenize", p, "<start_of_turn>Hello", "--no-special"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        !text.contains("     2 -> "),
        "no BOS with --no-special: {text}"
    );
    assert!(
        text.lines().count() > 3,
        "the spelling is split as text: {text}"
    );
}

#[test]
fn run_refuses_an_absurd_penalty_window_without_allocating() {
    // Used to abort: the sampler preallocated `--repeat-last-n` entries.
    let model = hearth::model::tiny::TinySpec::new(hearth::model::Arch::Llama).build();
    let p = temp_file("tiny-window.gguf", &model);
    let out = hearth(&[
        "run",
        p.to_str().unwrap(),
        "--raw",
        "-n",
        "2",
        "--repeat-last-n",
        "18446744073709551615",
        "hi",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("capacity"),
        "{err}"
    );
    assert!(err.contains("repeat_last_n"), "{err}");
}

/// The README's first command: the chat model, imported into a store as `smollm2:135m`,
/// answers through its own chat template; greedy without a repeat penalty it gives the
/// exact (f64 reference) answer and stops at `<|im_end|>`.
#[test]
fn run_chat_model_by_store_name_answers_paris() {
    let Some(path) = common::chat_model() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("hearth-cli-chat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let with_store = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(args)
            .env("HEARTH_MODELS", dir.join("store"))
            .env("HEARTH_NO_EXTERNAL_MODELS", "1")
            .output()
            .expect("run hearth")
    };
    let out = with_store(&["import", "--link", path.to_str().unwrap(), "smollm2:135m"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_store(&[
        "run",
        "smollm2:135m",
        "What is the capital of France?",
        "--temperature",
        "0",
        "--repeat-penalty",
        "1",
        "--verbose",
    ]);
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stdout.trim_end(),
        "The capital of France is Paris.",
        "{stderr}"
    );
    assert!(stderr.contains("done reason:          stop"), "{stderr}");
    assert!(stderr.contains("from the GGUF"), "{stderr}");
}

/// `--format SCHEMA_FILE`, `--grammar FILE` and `--regex` hold the answer on the real
/// model, and `--verbose` reports the masks.
#[test]
fn run_constrains_with_a_schema_file_a_grammar_file_and_a_regex() {
    let Some(path) = common::real_model() else {
        return;
    };
    let p = path.to_str().unwrap();
    let schema = temp_file(
        "schema.json",
        br#"{"type": "object", "properties": {"city": {"enum": ["Paris", "Lyon"]}}, "required": ["city"], "additionalProperties": false}"#,
    );
    let grammar = temp_file("answer.gbnf", b"root ::= (\"yes\" | \"no\") \".\"\n");
    let q = "Question: What is the capital of France?\nAnswer:";
    for (flag, value, check) in [
        ("--format", schema.to_str().unwrap(), "json"),
        ("--grammar", grammar.to_str().unwrap(), "yesno"),
        ("--regex", "[0-9]{2}-[a-c]", "regex"),
    ] {
        let out = hearth(&[
            "run",
            p,
            q,
            "--raw",
            "--temperature",
            "0.8",
            "--seed",
            "1",
            "-n",
            "40",
            "--ctx",
            "256",
            "--verbose",
            flag,
            value,
        ]);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{flag}: {stderr}");
        let text = stdout.trim_end_matches('\n');
        let ok = match check {
            "json" => serde_json::from_str::<serde_json::Value>(text)
                .is_ok_and(|v| v["city"] == "Paris" || v["city"] == "Lyon"),
            "yesno" => text == "yes." || text == "no.",
            _ => {
                let b = text.as_bytes();
                b.len() == 4
                    && b[..2].iter().all(u8::is_ascii_digit)
                    && b[2] == b'-'
                    && (b'a'..=b'c').contains(&b[3])
            }
        };
        assert!(ok, "{flag}: {text:?}");
        assert!(stderr.contains("constraint masks:"), "{flag}: {stderr}");
    }
}
