//! Models other tools downloaded, used in place: an ollama store and a Hugging Face cache
//! built in a temp directory (tests/common/external.rs) with a tiny random-weight llama,
//! found by `hearth list`, `show` and `run` through `OLLAMA_MODELS` and `HF_HUB_CACHE`;
//! broken entries skipped with a warning; nothing in them written; `rm` refused;
//! hearth's own store winning a name clash; `HEARTH_NO_EXTERNAL_MODELS` turning it off.

#[path = "common/external.rs"]
mod layout;

use hearth::model::{Arch, TinySpec};
use hearth::store::{External, Origin, Store};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hearth-external-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn hearth(dir: &Path, l: &layout::Layout, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .env("HEARTH_MODELS", dir.join("store"))
        .env("OLLAMA_MODELS", &l.ollama)
        .env("HF_HUB_CACHE", &l.hf)
        .env_remove("HEARTH_NO_EXTERNAL_MODELS")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(1), "expected failure: {o:?}");
    let e = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!e.contains("panicked"), "{e}");
    e.lines().last().unwrap_or("").to_string()
}

/// The NAME and SOURCE columns of `hearth list`.
fn listed(out: &str) -> Vec<(String, String)> {
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("SOURCE"),
        "{out}"
    );
    let at = header.find("SOURCE").unwrap();
    lines
        .map(|l| {
            let name = l.split_whitespace().next().unwrap().to_string();
            let source = l[at..].split_whitespace().next().unwrap().to_string();
            (name, source)
        })
        .collect()
}

fn tiny() -> Vec<u8> {
    TinySpec::new(Arch::Llama).build()
}

#[test]
fn list_show_rm_and_the_clash_rule() {
    let dir = temp_dir("list");
    let l = layout::build(&dir, &tiny());
    let before = (layout::snapshot(&l.ollama), layout::snapshot(&l.hf));

    let o = hearth(&dir, &l, &["list"]);
    let out = ok(&o);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let mut want = vec![("someone/tiny:q8", "ollama"), ("tiny:latest", "ollama")];
    if cfg!(unix) {
        want.extend([
            ("hf.co/test-org/Tiny-GGUF:Q4_0", "hf-cache"),
            ("hf.co/test-org/Tiny-GGUF:Q8_0", "hf-cache"),
        ]);
    }
    let got = listed(&out);
    let got: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got, want, "{out}\n{stderr}");
    let id = &l.digest[..12];
    assert!(out.lines().nth(1).unwrap().contains(id), "{out}");
    assert!(out.contains("Q8_0"), "{out}");
    // Each broken entry is named in a warning.
    for broken in ["badjson", "noblob", "short", "escape", "huge", "nomodel"] {
        assert!(stderr.contains(broken), "no warning for {broken}: {stderr}");
    }
    if cfg!(unix) {
        for broken in ["Out", "Missing"] {
            assert!(stderr.contains(broken), "no warning for {broken}: {stderr}");
        }
    }
    assert!(!stderr.contains("panicked"), "{stderr}");

    // show: the file in ollama's store, its source, the params.
    let show = ok(&hearth(&dir, &l, &["show", "tiny"]));
    assert!(
        show.contains("architecture") && show.contains("llama"),
        "{show}"
    );
    assert!(show.contains(&format!("sha256:{}", l.digest)), "{show}");
    assert!(
        show.contains("ollama") && show.contains("temperature"),
        "{show}"
    );
    assert!(show.contains(&format!("sha256-{}", l.digest)), "{show}");
    let show = ok(&hearth(&dir, &l, &["show", "someone/tiny:q8"]));
    assert!(show.contains("ollama"), "{show}");
    if cfg!(unix) {
        let show = ok(&hearth(
            &dir,
            &l,
            &["show", "hf.co/test-org/Tiny-GGUF:Q8_0"],
        ));
        assert!(
            show.contains("hf-cache") && show.contains("tiny-Q8_0.gguf"),
            "{show}"
        );
        // Without QUANT, hearth pull's rule: Q4_K_M, else the first file.
        let show = ok(&hearth(&dir, &l, &["show", "hf.co/test-org/tiny-gguf"]));
        assert!(show.contains("tiny-Q4_0-00001-of-00002.gguf"), "{show}");
    }

    // rm and cp refuse, naming the other store.
    let e = err(&hearth(&dir, &l, &["rm", "tiny:latest"]));
    assert!(e.contains("ollama") && e.contains("never modifies"), "{e}");
    let e = err(&hearth(&dir, &l, &["rm", "someone/tiny:q8"]));
    assert!(e.contains("ollama rm someone/tiny:q8"), "{e}");
    if cfg!(unix) {
        let e = err(&hearth(&dir, &l, &["rm", "hf.co/test-org/Tiny-GGUF:Q8_0"]));
        assert!(e.contains("Hugging Face cache"), "{e}");
    }
    let e = err(&hearth(&dir, &l, &["cp", "tiny", "mine"]));
    assert!(e.contains("hearth import --link"), "{e}");
    assert_eq!(
        (layout::snapshot(&l.ollama), layout::snapshot(&l.hf)),
        before,
        "a file in another tool's store changed"
    );

    // hearth's own model of the same name wins, and is listed once.
    let own = dir.join("own.gguf");
    std::fs::write(&own, TinySpec::new(Arch::Gemma3).build()).unwrap();
    ok(&hearth(
        &dir,
        &l,
        &["import", own.to_str().unwrap(), "tiny:latest"],
    ));
    let got = listed(&ok(&hearth(&dir, &l, &["list"])));
    let tiny: Vec<_> = got.iter().filter(|(n, _)| n == "tiny:latest").collect();
    assert_eq!(tiny, [&("tiny:latest".to_string(), "hearth".to_string())]);
    let show = ok(&hearth(&dir, &l, &["show", "tiny"]));
    assert!(show.contains("gemma3"), "{show}");
    // ... and rm removes hearth's, after which ollama's shows through again.
    ok(&hearth(&dir, &l, &["rm", "tiny:latest"]));
    assert!(ok(&hearth(&dir, &l, &["show", "tiny"])).contains("ollama"));

    // Turned off: none of them.
    let o = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("list")
        .env("HEARTH_MODELS", dir.join("store"))
        .env("OLLAMA_MODELS", &l.ollama)
        .env("HF_HUB_CACHE", &l.hf)
        .env("HEARTH_NO_EXTERNAL_MODELS", "1")
        .output()
        .unwrap();
    assert_eq!(ok(&o).lines().count(), 1, "{}", ok(&o));
    assert_eq!(
        (layout::snapshot(&l.ollama), layout::snapshot(&l.hf)),
        before,
        "a file in another tool's store changed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_library_resolves_them_and_a_plain_store_does_not() {
    let dir = temp_dir("lib");
    let l = layout::build(&dir, &tiny());
    let plain = Store::open(dir.join("store")).unwrap();
    assert!(
        plain.resolve("tiny").is_err(),
        "Store::open looks nowhere else"
    );
    let store = plain.with_external(External {
        ollama: Some(l.ollama.clone()),
        hf: Some(l.hf.clone()),
    });
    let blob = l.ollama.join("blobs").join(format!("sha256-{}", l.digest));
    assert_eq!(store.resolve("tiny").unwrap(), blob);
    assert_eq!(store.resolve("tiny:latest").unwrap(), blob);
    assert_eq!(store.resolve("someone/tiny:q8").unwrap(), blob);
    assert_eq!(store.resolve_name("someone/tiny:q8").unwrap(), blob);
    assert!(store.resolve("someone/tiny:nosuch").is_err());
    let all = store.list_all().unwrap();
    let t = all.iter().find(|e| e.name == "tiny:latest").unwrap();
    assert_eq!(
        (t.origin, t.size, t.digest.as_str()),
        (Origin::Ollama, l.size, l.digest.as_str())
    );
    let ext = t.external.as_ref().unwrap();
    assert!(ext.has_template);
    assert_eq!(ext.params.as_ref().unwrap()["temperature"], 0.7);
    if cfg!(unix) {
        let p = store.resolve("hf.co/test-org/Tiny-GGUF:q8_0").unwrap();
        assert!(p.ends_with("tiny-Q8_0.gguf"), "{}", p.display());
        // The store name the spec maps to (as `hearth pull` would name it).
        assert_eq!(store.resolve_name("tiny:q8_0").unwrap(), p);
        assert!(store.resolve("hf.co/test-org/Tiny-GGUF:Q2_K").is_err());
        let h = all.iter().find(|e| e.name.ends_with(":Q8_0")).unwrap();
        assert_eq!(
            (h.origin, h.digest.as_str()),
            (Origin::HfCache, l.digest.as_str())
        );
    }
    assert!(matches!(
        store.rm("tiny").unwrap_err(),
        hearth::store::StoreError::ReadOnly(_)
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `hearth run` on the model in ollama's store (and on the HF cache's), on the default
/// adapter (lavapipe in CI).
#[test]
fn run_generates_from_them() {
    let dir = temp_dir("run");
    let l = layout::build(&dir, &tiny());
    let mut names = vec!["tiny", "someone/tiny:q8"];
    if cfg!(unix) {
        names.push("hf.co/test-org/Tiny-GGUF:Q8_0");
    }
    for name in names {
        let o = hearth(
            &dir,
            &l,
            &[
                "run",
                name,
                "hello",
                "--raw",
                "-n",
                "3",
                "--temperature",
                "0",
                "--verbose",
            ],
        );
        ok(&o);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(stderr.contains("eval count"), "{name}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
