//! An ollama store and a Hugging Face cache laid out as those tools write them, holding a
//! tiny random-weight model, plus broken entries hearth must skip: for the tests of
//! hearth finding the models a user already has.

#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where the layouts are and what they hold.
pub struct Layout {
    pub ollama: PathBuf,
    pub hf: PathBuf,
    /// sha256 hex of the model file.
    pub digest: String,
    pub size: u64,
}

pub fn sha_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Writes `bytes` as a blob of ollama's store; returns (`sha256:<hex>`, size).
fn blob(root: &Path, bytes: &[u8]) -> (String, u64) {
    let hex = sha_hex(bytes);
    let dir = root.join("blobs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("sha256-{hex}")), bytes).unwrap();
    (format!("sha256:{hex}"), bytes.len() as u64)
}

fn layer(media: &str, (digest, size): &(String, u64)) -> serde_json::Value {
    serde_json::json!({"mediaType": media, "digest": digest, "size": size})
}

fn write_manifest(root: &Path, rel: &str, text: &str) {
    let p = root.join("manifests").join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn manifest(config: Option<&(String, u64)>, layers: Vec<serde_json::Value>) -> String {
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "layers": layers,
    });
    if let Some(c) = config {
        m["config"] = layer("application/vnd.docker.container.image.v1+json", c);
    }
    m.to_string()
}

const MODEL: &str = "application/vnd.ollama.image.model";

/// Builds both layouts under `dir` (which it creates).
///
/// ollama: `tiny:latest` (config with `file_type`, template and params layers) and
/// `someone/tiny:q8` (the model layer only) are usable; `badjson`, `noblob`, `short`
/// (blob shorter than the manifest says), `escape` (digest with `..`), `huge` (a 2 MiB
/// manifest) and `nomodel` are not.
///
/// Hugging Face (Unix only: symlinks): `hf.co/test-org/Tiny-GGUF:Q8_0` and `:Q4_0` (the
/// first part of a split model) are usable; its vision projector, the second split part
/// and a file of an older snapshot are not listed; `evil/Out` links outside its
/// repository and `gone/Missing` to a missing blob.
pub fn build(dir: &Path, model: &[u8]) -> Layout {
    let ollama = dir.join("ollama");
    let hf = dir.join("hf");
    std::fs::create_dir_all(&ollama).unwrap();
    std::fs::create_dir_all(&hf).unwrap();

    let m = blob(&ollama, model);
    let config = blob(
        &ollama,
        br#"{"model_format":"gguf","model_family":"llama","file_type":"Q8_0"}"#,
    );
    let template = blob(&ollama, b"{{ .Prompt }}");
    let params = blob(
        &ollama,
        br#"{"stop":["<|end|>","</s>"],"temperature":0.7,"num_predict":3}"#,
    );
    let reg = "registry.ollama.ai";
    write_manifest(
        &ollama,
        &format!("{reg}/library/tiny/latest"),
        &manifest(
            Some(&config),
            vec![
                layer(MODEL, &m),
                layer("application/vnd.ollama.image.template", &template),
                layer("application/vnd.ollama.image.params", &params),
            ],
        ),
    );
    write_manifest(
        &ollama,
        &format!("{reg}/someone/tiny/q8"),
        &manifest(None, vec![layer(MODEL, &m)]),
    );
    // Broken ones.
    write_manifest(
        &ollama,
        &format!("{reg}/library/badjson/latest"),
        "{\"layers\": [",
    );
    let absent = (format!("sha256:{}", "ab".repeat(32)), 10);
    write_manifest(
        &ollama,
        &format!("{reg}/library/noblob/latest"),
        &manifest(None, vec![layer(MODEL, &absent)]),
    );
    write_manifest(
        &ollama,
        &format!("{reg}/library/short/latest"),
        &manifest(None, vec![layer(MODEL, &(m.0.clone(), m.1 + 1))]),
    );
    write_manifest(
        &ollama,
        &format!("{reg}/library/escape/latest"),
        &manifest(
            None,
            vec![layer(MODEL, &("sha256:../../../etc/passwd".into(), 1))],
        ),
    );
    write_manifest(
        &ollama,
        &format!("{reg}/library/huge/latest"),
        &format!(
            "{}{}",
            " ".repeat(2 << 20),
            manifest(None, vec![layer(MODEL, &m)])
        ),
    );
    write_manifest(
        &ollama,
        &format!("{reg}/library/nomodel/latest"),
        &manifest(
            None,
            vec![layer("application/vnd.ollama.image.template", &template)],
        ),
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        let hex = sha_hex(model);
        let repo = hf.join("models--test-org--Tiny-GGUF");
        let commit = "0123456789abcdef0123456789abcdef01234567";
        let snap = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::write(repo.join("blobs").join(&hex), model).unwrap();
        std::fs::write(repo.join("refs").join("main"), commit).unwrap();
        for f in [
            "tiny-Q8_0.gguf",
            "mmproj-tiny-F16.gguf",
            "tiny-Q4_0-00001-of-00002.gguf",
            "tiny-Q4_0-00002-of-00002.gguf",
        ] {
            symlink(format!("../../blobs/{hex}"), snap.join(f)).unwrap();
        }
        std::fs::write(snap.join("README.md"), "# tiny").unwrap();
        let old = repo.join("snapshots").join("old");
        std::fs::create_dir_all(&old).unwrap();
        symlink(format!("../../blobs/{hex}"), old.join("tiny-Q2_K.gguf")).unwrap();

        let evil = hf.join("models--evil--Out").join("snapshots").join("c");
        std::fs::create_dir_all(&evil).unwrap();
        symlink(
            ollama.join("blobs").join(format!("sha256-{hex}")),
            evil.join("evil-Q8_0.gguf"),
        )
        .unwrap();
        let gone = hf.join("models--gone--Missing").join("snapshots").join("c");
        std::fs::create_dir_all(&gone).unwrap();
        symlink("../../blobs/nothing", gone.join("m-Q8_0.gguf")).unwrap();
    }
    Layout {
        ollama,
        hf,
        digest: sha_hex(model),
        size: model.len() as u64,
    }
}

/// Every path under `dir` with its length and modification time (links not followed):
/// compared before and after, it shows that nothing was written.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        out.push((d.clone(), m.len(), m.modified().unwrap()));
        if m.is_dir() {
            for e in std::fs::read_dir(&d).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
    }
    out.sort();
    out
}
