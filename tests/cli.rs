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
