//! Models other tools already downloaded, found and used in place (read-only, never
//! copied): ollama's store and the Hugging Face hub cache.
//!
//! - ollama: the root is `$OLLAMA_MODELS`, else `~/.ollama/models`. Each
//!   `manifests/<host>/<namespace>/<model>/<tag>` is an OCI-style JSON manifest; the layer of
//!   media type `application/vnd.ollama.image.model` is the GGUF, at
//!   `blobs/sha256-<hex>`. `registry.ollama.ai/library/llama3.2/latest` is listed as
//!   `llama3.2:latest`, other namespaces keep theirs (`user/model:tag`) and other hosts
//!   the host too (`hf.co/owner/repo:tag`), as ollama shows them. The template layer (a Go
//!   template) is only reported: hearth uses the GGUF's own Jinja template. The params
//!   layer (default options) is read and shown by `/api/show`.
//! - Hugging Face: the root is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//!   `~/.cache/huggingface/hub`. Each `models--<owner>--<repo>/snapshots/<commit>/…` holds
//!   the files (symlinks into the repository's `blobs/`); `refs/main` names the commit
//!   used. Every `.gguf` in it (not vision projectors, not the second and later parts of a
//!   split model) is listed as `hf.co/<owner>/<repo>:<QUANT>`, QUANT from the file name,
//!   so `hearth run hf.co/owner/repo:QUANT` finds it without a download.
//!
//! Nothing here writes: `hearth rm` refuses these models. A broken entry (missing or
//! short blob, bad JSON, a symlink out of its repository, an oversized manifest) is
//! skipped with a warning in the log. `HEARTH_NO_EXTERNAL_MODELS=1` turns discovery off.

use super::files::is_sha256_hex;
use super::name::ModelName;
use super::spec::{is_hf_spec, is_split_part, parse_spec, pick_gguf, Source, TreeEntry};
use serde::Deserialize;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Largest manifest read (real ones are about 1 KB).
const MAX_MANIFEST: u64 = 1 << 20;
/// Largest params or config blob read.
const MAX_SMALL_BLOB: u64 = 64 << 10;
/// Most directory entries looked at under one root, so a huge tree cannot stall a listing.
const MAX_ENTRIES: usize = 20_000;
/// The default ollama registry and namespace, left out of displayed names.
const OLLAMA_HOST: &str = "registry.ollama.ai";
const OLLAMA_NS: &str = "library";
const MODEL_LAYER: &str = "application/vnd.ollama.image.model";
const TEMPLATE_LAYER: &str = "application/vnd.ollama.image.template";
const PARAMS_LAYER: &str = "application/vnd.ollama.image.params";
const ADAPTER_LAYER: &str = "application/vnd.ollama.image.adapter";

/// Where a listed model lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// hearth's own store.
    Hearth,
    /// ollama's store.
    Ollama,
    /// The Hugging Face hub cache.
    HfCache,
}

impl Origin {
    /// The label `hearth list` shows.
    pub fn label(self) -> &'static str {
        match self {
            Origin::Hearth => "hearth",
            Origin::Ollama => "ollama",
            Origin::HfCache => "hf-cache",
        }
    }
}

/// One model found in another tool's store.
#[derive(Clone, Debug)]
pub struct ExternalModel {
    /// The name it is listed and run under (`llama3.2:latest`, `hf.co/owner/repo:Q4_K_M`).
    pub name: String,
    /// Which store it is in.
    pub origin: Origin,
    /// The GGUF file.
    pub path: PathBuf,
    /// sha256 hex of the file where the store records it, else empty.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Quantization label (from ollama's config, or the file name).
    pub quantization: String,
    /// When the manifest (ollama) or file (HF) was last modified.
    pub modified: SystemTime,
    /// The manifest (ollama) or the repository directory (HF), for messages.
    pub location: PathBuf,
    /// ollama: the manifest has a template layer (not used: hearth reads the GGUF's).
    pub has_template: bool,
    /// ollama: the default options of the params layer (`stop`, `temperature`, …).
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
    /// ollama: the lowercase (host, namespace, model, tag) it matches.
    key: Option<[String; 4]>,
    /// HF: owner and repository, and the file's path inside the snapshot.
    hf: Option<(String, String, String)>,
}

impl ExternalModel {
    /// The sentence `hearth rm` and `hearth cp` answer with.
    pub fn read_only_why(&self) -> String {
        let how = match self.origin {
            Origin::Ollama => format!("remove it with `ollama rm {}`", self.name),
            _ => "remove it with `hf cache delete` (or `huggingface-cli delete-cache`)".into(),
        };
        format!(
            "'{}' belongs to {} ({}); hearth uses it in place and never modifies it; {how}",
            self.name,
            match self.origin {
                Origin::Ollama => "ollama's model store",
                _ => "the Hugging Face cache",
            },
            self.location.display()
        )
    }
}

/// The other stores looked in; empty ones are skipped.
#[derive(Clone, Debug, Default)]
pub struct External {
    /// ollama's models directory.
    pub ollama: Option<PathBuf>,
    /// The Hugging Face hub cache directory.
    pub hf: Option<PathBuf>,
}

/// Logs a warning once per process: listings run often (every `/api/tags`), and one
/// broken manifest should not fill the log.
fn warn_once(msg: String) {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if seen.len() < 1000 && seen.insert(msg.clone()) {
        log::warn!("{msg}");
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl External {
    /// Looks nowhere.
    pub fn none() -> Self {
        Self::default()
    }

    /// The roots the environment names (see the module docs); none when
    /// `HEARTH_NO_EXTERNAL_MODELS` is set to anything but `0` or empty.
    pub fn from_env() -> Self {
        if std::env::var("HEARTH_NO_EXTERNAL_MODELS").is_ok_and(|v| !v.is_empty() && v != "0") {
            return Self::none();
        }
        let home = dirs::home_dir();
        let ollama = env_path("OLLAMA_MODELS")
            .or_else(|| home.as_ref().map(|h| h.join(".ollama").join("models")));
        let hf = env_path("HF_HUB_CACHE")
            .or_else(|| env_path("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| {
                home.as_ref()
                    .map(|h| h.join(".cache").join("huggingface").join("hub"))
            });
        Self { ollama, hf }
    }

    /// Every model found, ollama's first, each group sorted by name. A name found twice
    /// is listed once (the first).
    pub fn list(&self) -> Vec<ExternalModel> {
        let mut out = Vec::new();
        if let Some(root) = &self.ollama {
            out.extend(scan_ollama(root));
        }
        if let Some(root) = &self.hf {
            out.extend(scan_hf(root));
        }
        let mut seen = std::collections::HashSet::new();
        out.retain(|m| seen.insert(m.name.to_ascii_lowercase()));
        out
    }

    /// The model `spec` names: an ollama name (`llama3.2`, `user/model:tag`,
    /// `hf.co/owner/repo:tag`), an `hf.co/OWNER/REPO[:QUANT]` in the HF cache (QUANT
    /// picked as `hearth pull` picks it), or the store name such a spec maps to.
    pub fn find(&self, spec: &str) -> Option<ExternalModel> {
        if self.ollama.is_none() && self.hf.is_none() {
            return None;
        }
        let all = self.list();
        if let Some(key) = ollama_key(spec) {
            if let Some(m) = all.iter().find(|m| m.key.as_ref() == Some(&key)) {
                return Some(m.clone());
            }
        }
        if is_hf_spec(spec) {
            let Ok((Source::Hf { owner, repo, quant }, _)) = parse_spec(spec) else {
                return None;
            };
            let in_repo: Vec<&ExternalModel> = all
                .iter()
                .filter(|m| {
                    m.hf.as_ref().is_some_and(|(o, r, _)| {
                        o.eq_ignore_ascii_case(&owner) && r.eq_ignore_ascii_case(&repo)
                    })
                })
                .collect();
            let files: Vec<TreeEntry> = in_repo
                .iter()
                .filter_map(|m| m.hf.as_ref())
                .map(|(_, _, file)| TreeEntry {
                    kind: "file".into(),
                    path: file.clone(),
                    size: None,
                    lfs: None,
                })
                .collect();
            let picked = pick_gguf(&files, quant.as_deref())?;
            return in_repo
                .into_iter()
                .find(|m| m.hf.as_ref().is_some_and(|h| h.2 == picked.path))
                .cloned();
        }
        // A plain store name: the name the hf.co spec of an HF cache entry (or of an
        // ollama model pulled from hf.co) maps to, as `hearth pull` names it.
        let want = ModelName::parse(spec).ok()?;
        all.into_iter().find(|m| {
            is_hf_spec(&m.name) && super::spec::name_for_spec(&m.name).is_ok_and(|n| n == want)
        })
    }
}

/// A piece of an ollama name or a Hugging Face cache path, at most 128 bytes.
fn piece_ok(s: &str) -> bool {
    super::name::path_piece_ok(s, 128)
}

/// The lowercase (host, namespace, model, tag) of an ollama-style name, or None when it
/// is not one (`..`, odd characters, more than three path pieces).
pub fn ollama_key(name: &str) -> Option<[String; 4]> {
    let (path, tag) = match name.rsplit_once(':') {
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (name, "latest"),
    };
    let parts: Vec<&str> = path.split('/').collect();
    let (host, ns, model) = match parts[..] {
        [m] => (OLLAMA_HOST, OLLAMA_NS, m),
        [n, m] => (OLLAMA_HOST, n, m),
        [h, n, m] => (h, n, m),
        _ => return None,
    };
    let host = if host.eq_ignore_ascii_case("huggingface.co") {
        "hf.co"
    } else {
        host
    };
    [host, ns, model, tag]
        .iter()
        .all(|p| piece_ok(p))
        .then(|| [host, ns, model, tag].map(str::to_ascii_lowercase))
}

/// How ollama shows a (host, namespace, model, tag): the default host and namespace left
/// out.
fn ollama_display(host: &str, ns: &str, model: &str, tag: &str) -> String {
    if host == OLLAMA_HOST && ns == OLLAMA_NS {
        format!("{model}:{tag}")
    } else if host == OLLAMA_HOST {
        format!("{ns}/{model}:{tag}")
    } else {
        format!("{host}/{ns}/{model}:{tag}")
    }
}

/// Reads at most `limit` bytes of `path`; an error when the file is longer.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    let f = fs::File::open(path).map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| e.to_string())?;
    if buf.len() as u64 > limit {
        return Err(format!("larger than {limit} bytes"));
    }
    Ok(buf)
}

/// The subdirectories (or files, with `dirs` false) of `dir` with valid-piece names.
fn children(dir: &Path, want_dirs: bool, budget: &mut usize) -> Vec<(String, PathBuf)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        if *budget == 0 {
            warn_once(format!(
                "{}: too many entries; the rest are skipped",
                dir.display()
            ));
            break;
        }
        *budget -= 1;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let p = e.path();
        if p.is_dir() == want_dirs && !name.starts_with('.') {
            out.push((name, p));
        }
    }
    out.sort();
    out
}

#[derive(Deserialize)]
struct OciManifest {
    #[serde(default)]
    config: Option<OciLayer>,
    layers: Vec<OciLayer>,
}

#[derive(Deserialize)]
struct OciLayer {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: u64,
}

/// Every usable model of ollama's store at `root`.
fn scan_ollama(root: &Path) -> Vec<ExternalModel> {
    let manifests = root.join("manifests");
    let mut budget = MAX_ENTRIES;
    let mut out = Vec::new();
    for (host, hp) in children(&manifests, true, &mut budget) {
        for (ns, np) in children(&hp, true, &mut budget) {
            for (model, mp) in children(&np, true, &mut budget) {
                for (tag, tp) in children(&mp, false, &mut budget) {
                    let Some(key) = ollama_key(&format!("{host}/{ns}/{model}:{tag}")) else {
                        warn_once(format!(
                            "{}: not an ollama model name; skipped",
                            tp.display()
                        ));
                        continue;
                    };
                    let name = ollama_display(&host, &ns, &model, &tag);
                    match ollama_model(root, &tp, name, key) {
                        Ok(m) => out.push(m),
                        Err(why) => {
                            warn_once(format!("ollama model {}: {why}; skipped", tp.display()))
                        }
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The blob of `digest` (`sha256:<64 hex>`) under `root`, checked to be a file of `size`
/// bytes (when `size` is not 0).
fn ollama_blob(root: &Path, digest: &str, size: u64) -> Result<PathBuf, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| is_sha256_hex(h))
        .ok_or_else(|| {
            format!(
                "bad digest {:?}",
                digest.chars().take(80).collect::<String>()
            )
        })?;
    let path = root.join("blobs").join(format!("sha256-{hex}"));
    let meta = fs::metadata(&path).map_err(|e| format!("blob {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("blob {} is not a file", path.display()));
    }
    if size != 0 && meta.len() != size {
        return Err(format!(
            "blob {} holds {} bytes, the manifest says {size} (incomplete download?)",
            path.display(),
            meta.len()
        ));
    }
    Ok(path)
}

fn ollama_model(
    root: &Path,
    manifest: &Path,
    name: String,
    key: [String; 4],
) -> Result<ExternalModel, String> {
    let bytes = read_bounded(manifest, MAX_MANIFEST)?;
    let m: OciManifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a manifest: {e}"))?;
    if m.layers.iter().any(|l| l.media_type == ADAPTER_LAYER) {
        return Err("it applies a LoRA adapter, which hearth does not support".into());
    }
    let layer = m
        .layers
        .iter()
        .find(|l| l.media_type == MODEL_LAYER)
        .ok_or("no model layer")?;
    let path = ollama_blob(root, &layer.digest, layer.size)?;
    let size = fs::metadata(&path).map(|m| m.len()).unwrap_or(layer.size);
    let small_json = |l: &OciLayer| -> Option<serde_json::Value> {
        let p = ollama_blob(root, &l.digest, l.size).ok()?;
        let b = read_bounded(&p, MAX_SMALL_BLOB).ok()?;
        serde_json::from_slice(&b).ok()
    };
    let params = match m.layers.iter().find(|l| l.media_type == PARAMS_LAYER) {
        Some(l) => match small_json(l) {
            Some(serde_json::Value::Object(o)) => Some(o),
            _ => {
                warn_once(format!(
                    "{}: unreadable params layer; ignored",
                    manifest.display()
                ));
                None
            }
        },
        None => None,
    };
    let quantization = m
        .config
        .as_ref()
        .and_then(small_json)
        .and_then(|c| c.get("file_type")?.as_str().map(str::to_string))
        .filter(|q| !q.is_empty() && q.len() < 32)
        .or_else(|| {
            // No config blob to say: the GGUF header does.
            crate::gguf::GgufFile::open(&path)
                .ok()
                .map(|f| super::quantization(&f))
        })
        .unwrap_or_else(|| "unknown".into());
    Ok(ExternalModel {
        name,
        origin: Origin::Ollama,
        digest: layer.digest["sha256:".len()..].to_string(),
        path,
        size,
        quantization,
        modified: fs::metadata(manifest)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH),
        location: manifest.to_owned(),
        has_template: m.layers.iter().any(|l| l.media_type == TEMPLATE_LAYER),
        params,
        key: Some(key),
        hf: None,
    })
}

/// The quantization a GGUF file name ends in (`Llama-3.2-1B-Instruct-Q4_K_M` → `Q4_K_M`,
/// `model.q8_0` → `Q8_0`), or None.
fn quant_of_stem(stem: &str) -> Option<String> {
    let last = stem.rsplit(['-', '.']).next()?.to_ascii_uppercase();
    let looks = ["Q", "IQ", "F", "BF", "TQ", "MXFP"].iter().any(|p| {
        last.strip_prefix(p)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
    });
    looks.then_some(last)
}

/// Every usable GGUF of the Hugging Face cache at `root`.
fn scan_hf(root: &Path) -> Vec<ExternalModel> {
    let mut budget = MAX_ENTRIES;
    let mut out = Vec::new();
    for (dir, rp) in children(root, true, &mut budget) {
        let Some(rest) = dir.strip_prefix("models--") else {
            continue;
        };
        let Some((owner, repo)) = rest.split_once("--") else {
            continue;
        };
        if !piece_ok(owner) || !piece_ok(repo) {
            warn_once(format!(
                "{}: not a repository name hearth can use; skipped",
                rp.display()
            ));
            continue;
        }
        match hf_repo(&rp, owner, repo, &mut budget) {
            Ok(models) => out.extend(models),
            Err(why) => warn_once(format!(
                "Hugging Face cache {}: {why}; skipped",
                rp.display()
            )),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The snapshot directory `refs/main` names, else the newest snapshot.
fn hf_snapshot(repo_dir: &Path, budget: &mut usize) -> Result<PathBuf, String> {
    let snapshots = repo_dir.join("snapshots");
    if let Ok(b) = read_bounded(&repo_dir.join("refs").join("main"), 256) {
        let commit = String::from_utf8_lossy(&b).trim().to_string();
        if piece_ok(&commit) && snapshots.join(&commit).is_dir() {
            return Ok(snapshots.join(commit));
        }
    }
    children(&snapshots, true, budget)
        .into_iter()
        .max_by_key(|(_, p)| fs::metadata(p).and_then(|m| m.modified()).ok())
        .map(|(_, p)| p)
        .ok_or_else(|| "no snapshot".into())
}

fn hf_repo(
    repo_dir: &Path,
    owner: &str,
    repo: &str,
    budget: &mut usize,
) -> Result<Vec<ExternalModel>, String> {
    let snap = hf_snapshot(repo_dir, budget)?;
    let repo_real = fs::canonicalize(repo_dir).map_err(|e| e.to_string())?;
    // The .gguf files of the snapshot, two directory levels deep at most.
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    let mut dirs = vec![(String::new(), snap.clone(), 0)];
    while let Some((prefix, d, depth)) = dirs.pop() {
        for (name, p) in children(&d, false, budget) {
            files.push((format!("{prefix}{name}"), p));
        }
        if depth < 2 {
            for (name, p) in children(&d, true, budget) {
                dirs.push((format!("{prefix}{name}/"), p, depth + 1));
            }
        }
    }
    files.sort();
    let mut out: Vec<ExternalModel> = Vec::new();
    for (rel, p) in files {
        let base = rel.rsplit('/').next().unwrap_or("").to_string();
        let lower = base.to_ascii_lowercase();
        if !lower.ends_with(".gguf") || lower.contains("mmproj") {
            continue;
        }
        if is_split_part(&lower) && !lower.contains("-00001-of-") {
            continue;
        }
        let stem = &base[..base.len() - 5];
        let stem = if is_split_part(&lower) {
            &stem[..stem.len() - 15]
        } else {
            stem
        };
        let real = match fs::canonicalize(&p) {
            Ok(r) => r,
            Err(e) => {
                warn_once(format!("{}: {e} (missing blob?); skipped", p.display()));
                continue;
            }
        };
        if !real.starts_with(&repo_real) {
            warn_once(format!(
                "{}: points outside its repository ({}); skipped",
                p.display(),
                real.display()
            ));
            continue;
        }
        let Ok(meta) = fs::metadata(&real) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let mut label = quant_of_stem(stem).unwrap_or_else(|| stem.to_string());
        if out
            .iter()
            .any(|m| m.name.rsplit(':').next() == Some(label.as_str()))
        {
            label = stem.to_string();
        }
        if !piece_ok(&label) {
            warn_once(format!(
                "{}: file name hearth cannot name; skipped",
                p.display()
            ));
            continue;
        }
        let blob_name = real
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        out.push(ExternalModel {
            name: format!("hf.co/{owner}/{repo}:{label}"),
            origin: Origin::HfCache,
            path: p,
            digest: if is_sha256_hex(blob_name) {
                blob_name.to_string()
            } else {
                String::new()
            },
            size: meta.len(),
            quantization: quant_of_stem(stem).unwrap_or_else(|| "unknown".into()),
            modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            location: repo_dir.to_owned(),
            has_template: false,
            params: None,
            key: None,
            hf: Some((owner.to_string(), repo.to_string(), rel)),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_names() {
        let k = ollama_key("llama3.2").unwrap();
        assert_eq!(k, ["registry.ollama.ai", "library", "llama3.2", "latest"]);
        assert_eq!(
            ollama_display(&k[0], &k[1], &k[2], &k[3]),
            "llama3.2:latest"
        );
        let k = ollama_key("User/Model:Q4").unwrap();
        assert_eq!(ollama_display(&k[0], &k[1], &k[2], &k[3]), "user/model:q4");
        let k = ollama_key("hf.co/o/r:Q8_0").unwrap();
        assert_eq!(ollama_display(&k[0], &k[1], &k[2], &k[3]), "hf.co/o/r:q8_0");
        for bad in ["../x", "a/../b", "/abs", "a/b/c/d", ".x", "a b", "", "x:"] {
            assert!(ollama_key(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn quant_from_file_names() {
        assert_eq!(
            quant_of_stem("Llama-3.2-1B-Instruct-Q4_K_M").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(
            quant_of_stem("tinyllama-1.1b.q8_0").as_deref(),
            Some("Q8_0")
        );
        assert_eq!(quant_of_stem("m-IQ4_XS").as_deref(), Some("IQ4_XS"));
        assert_eq!(quant_of_stem("m-bf16").as_deref(), Some("BF16"));
        assert_eq!(quant_of_stem("ggml-model"), None);
    }
}
