//! `hearth pull`: download a GGUF from Hugging Face (or any HTTPS URL) into the store,
//! resuming interrupted downloads and verifying the published sha256. What a spec may be
//! and which name it gets: [`super::spec`].
//!
//! Environment: `HEARTH_HF_ENDPOINT` (default `https://huggingface.co`), `HF_TOKEN` (sent
//! as a bearer token to the endpoint), `HEARTH_HTTP_TIMEOUT` (seconds without data before
//! giving up, default 30).
//!
//! A download goes to `partial/<key>.part` (key: the published sha256, else a hash of the
//! URL) under a per-download lock; a second process pulling the same file waits, then
//! finds the blob present. An interrupted download resumes with an HTTP `Range` request
//! from the partial file's length (its bytes are hashed first); a server that answers 200
//! instead of 206 makes us start over. Only a file whose size and sha256 match the
//! published ones, and that parses as GGUF, becomes a blob; a mismatch deletes the
//! partial file.

pub use super::spec::{
    is_hf_spec, name_for_spec, parse_spec, pick_gguf, Lfs, Source, TreeEntry, ALIASES,
    DEFAULT_QUANT,
};

use super::http::{agent, download, get, map_ureq, status_error};
use super::{
    hex, is_sha256_hex, quantization, Entry, FileLock, Manifest, ModelName, Result, Store,
    StoreError,
};
use crate::gguf::GgufFile;
use sha2::{Digest, Sha256};
use std::fs;
use std::path::Path;
use std::time::Duration;

/// Network settings of a pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Base URL of the Hugging Face API and file server, without a trailing slash.
    pub endpoint: String,
    /// Bearer token sent to the endpoint.
    pub token: Option<String>,
    /// Connect timeout and longest wait for any read.
    pub timeout: Duration,
    /// Store the model under this name instead of the derived one.
    pub name: Option<String>,
}

impl PullOptions {
    /// Reads `HEARTH_HF_ENDPOINT`, `HF_TOKEN` and `HEARTH_HTTP_TIMEOUT`.
    pub fn from_env() -> Result<Self> {
        let endpoint = std::env::var("HEARTH_HF_ENDPOINT")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "https://huggingface.co".into());
        let token = std::env::var("HF_TOKEN").ok().filter(|s| !s.is_empty());
        let timeout = match std::env::var("HEARTH_HTTP_TIMEOUT") {
            Ok(s) if !s.is_empty() => {
                let secs: f64 = s
                    .trim()
                    .parse()
                    .ok()
                    .filter(|v: &f64| *v > 0.0 && v.is_finite())
                    .ok_or_else(|| {
                        StoreError::BadSpec(format!(
                            "HEARTH_HTTP_TIMEOUT={s:?}: expected a positive number of seconds"
                        ))
                    })?;
                Duration::from_secs_f64(secs.min(86_400.0))
            }
            _ => Duration::from_secs(30),
        };
        Ok(Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            timeout,
            name: None,
        })
    }
}

/// Reports download progress; the CLI draws a bar or prints lines.
pub trait Progress {
    /// A download starts: `total` bytes in all when known, `resumed` of them already here.
    fn start(&mut self, file: &str, total: Option<u64>, resumed: u64);
    /// `n` more bytes arrived.
    fn advance(&mut self, n: u64);
    /// The transfer ended (successfully or not).
    fn finish(&mut self);
    /// A status line (picked file, verifying, …).
    fn message(&mut self, msg: &str);
}

/// A [`Progress`] that reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn start(&mut self, _: &str, _: Option<u64>, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
    fn message(&mut self, _: &str) {}
}

/// What a pull did.
#[derive(Debug)]
pub struct PullOutcome {
    /// The installed model.
    pub entry: Entry,
    /// Bytes received over the network in this run.
    pub transferred: u64,
    /// Bytes of an earlier partial download that were reused.
    pub resumed_from: u64,
    /// The download's sha256 matched a digest the server published.
    pub verified: bool,
    /// Nothing was downloaded: the file was in the store already.
    pub already_present: bool,
}

/// The file to download: URL, original file name, published size and sha256.
pub(crate) struct Target {
    pub(crate) url: String,
    pub(crate) file_name: String,
    pub(crate) size: Option<u64>,
    pub(crate) sha256: Option<String>,
}

fn locate(agent: &ureq::Agent, opts: &PullOptions, source: &Source) -> Result<Target> {
    let (owner, repo, quant) = match source {
        Source::Url(url) => {
            let path = url.split(['?', '#']).next().unwrap_or(url);
            return Ok(Target {
                url: url.clone(),
                file_name: path.rsplit('/').next().unwrap_or("model.gguf").to_string(),
                size: None,
                sha256: None,
            });
        }
        Source::Hf { owner, repo, quant } => (owner, repo, quant),
    };
    let url = format!(
        "{}/api/models/{owner}/{repo}/tree/main?recursive=true",
        opts.endpoint
    );
    let mut resp = get(agent, opts, &url, 0)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(status_error(
            &url,
            status,
            &format!("repository {owner}/{repo}"),
        ));
    }
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| map_ureq(&url, opts, e))?;
    let files: Vec<TreeEntry> = serde_json::from_str(&text).map_err(|e| StoreError::Http {
        url: url.clone(),
        why: format!("unexpected file listing: {e}"),
    })?;
    let Some(f) = pick_gguf(&files, quant.as_deref()) else {
        let ggufs: Vec<&str> = files
            .iter()
            .filter(|f| f.path.to_ascii_lowercase().ends_with(".gguf"))
            .map(|f| f.path.as_str())
            .collect();
        return Err(StoreError::BadSpec(format!(
            "hf.co/{owner}/{repo}: no GGUF file{} (GGUF files there: {})",
            quant
                .as_ref()
                .map(|q| format!(" for quantization {q}"))
                .unwrap_or_default(),
            if ggufs.is_empty() {
                "none".into()
            } else {
                ggufs.join(", ")
            }
        )));
    };
    if f.path.split('/').any(|p| p == ".." || p.is_empty()) {
        return Err(StoreError::BadSpec(format!(
            "hf.co/{owner}/{repo}: refusing file path {:?}",
            f.path
        )));
    }
    if super::spec::is_split_part(&f.path) {
        return Err(StoreError::BadSpec(format!(
            "hf.co/{owner}/{repo}: {} is one part of a split GGUF; split models are not supported yet",
            f.path
        )));
    }
    let sha256 = f
        .lfs
        .as_ref()
        .map(|l| l.oid.to_ascii_lowercase())
        .filter(|h| is_sha256_hex(h));
    Ok(Target {
        url: format!(
            "{}/{owner}/{repo}/resolve/main/{}",
            opts.endpoint,
            f.path.replace(' ', "%20")
        ),
        file_name: f.path.rsplit('/').next().unwrap_or(&f.path).to_string(),
        size: f.lfs.as_ref().and_then(|l| l.size).or(f.size),
        sha256,
    })
}

/// Downloads `spec` into `store` (see the module docs for specs and guarantees).
pub fn pull(
    store: &Store,
    spec: &str,
    opts: &PullOptions,
    progress: &mut dyn Progress,
) -> Result<PullOutcome> {
    let (source, derived) = parse_spec(spec)?;
    let name = match &opts.name {
        Some(n) => ModelName::parse(n)?,
        None => derived,
    };
    let agent = agent(opts);
    let target = locate(&agent, opts, &source)?;
    progress.message(&format!("pulling {} as {name}", target.file_name));

    // Partial files are keyed by the published digest when there is one, so a file
    // replaced upstream never resumes onto the old one's bytes.
    let key = match &target.sha256 {
        Some(h) => h[..24].to_string(),
        None => hex(&Sha256::digest(target.url.as_bytes()))[..24].to_string(),
    };
    let part = store.partial_dir().join(format!("{key}.part"));
    // The published file may be in the store already (another name, another process).
    if let Some(h) = &target.sha256 {
        if let Some(o) = already_present(store, &name, &target, h)? {
            return Ok(o);
        }
    }
    let _download_lock = FileLock::acquire(&store.partial_dir().join(format!("{key}.lock")))?;
    // Whoever held the lock before us may have just installed it.
    if let Some(h) = &target.sha256 {
        if let Some(o) = already_present(store, &name, &target, h)? {
            return Ok(o);
        }
    }
    let got = download(&agent, opts, &target, &part, progress);
    progress.finish();
    let (digest, size, transferred, resumed_from) = got?;
    let fail = |e: StoreError| {
        let _ = fs::remove_file(&part);
        Err(e)
    };
    if let Some(expected) = &target.sha256 {
        if *expected != digest {
            return fail(StoreError::HashMismatch {
                url: target.url.clone(),
                expected: expected.clone(),
                actual: digest,
            });
        }
    }
    if let Some(expected) = target.size {
        if expected != size {
            return fail(StoreError::Http {
                url: target.url.clone(),
                why: format!("expected {expected} bytes, received {size}; nothing was installed"),
            });
        }
    }
    let quant = match GgufFile::open(&part) {
        Ok(f) => quantization(&f),
        Err(cause) => {
            return fail(StoreError::Gguf {
                path: Path::new(&target.url).to_owned(),
                cause,
            })
        }
    };
    let mut m = Manifest {
        schema: 1,
        name: name.to_string(),
        digest: format!("sha256:{digest}"),
        size,
        source: target.url.clone(),
        file_name: target.file_name.clone(),
        quantization: quant,
        created: 0,
    };
    m.created = now_secs();
    let entry = store.commit(&part, m)?;
    Ok(PullOutcome {
        entry,
        transferred,
        resumed_from,
        verified: target.sha256.is_some(),
        already_present: false,
    })
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Registers `name` for the blob `hex` when the store holds it already.
fn already_present(
    store: &Store,
    name: &ModelName,
    target: &Target,
    hex: &str,
) -> Result<Option<PullOutcome>> {
    if !store.blob_path(hex).is_file() {
        return Ok(None);
    }
    let m = Manifest {
        schema: 1,
        name: name.to_string(),
        digest: format!("sha256:{hex}"),
        size: 0,
        source: target.url.clone(),
        file_name: target.file_name.clone(),
        quantization: String::new(),
        created: 0,
    };
    let entry = store.register_existing(with_quant_and_time(store, m)?)?;
    Ok(entry.map(|entry| PullOutcome {
        entry,
        transferred: 0,
        resumed_from: 0,
        verified: true,
        already_present: true,
    }))
}

/// Fills in the quantization (read from the blob) and the time of a manifest for a blob
/// already in the store; `None`-like errors are left to `register_existing`.
fn with_quant_and_time(store: &Store, mut m: Manifest) -> Result<Manifest> {
    let blob = store.blob_path(m.hex().unwrap_or_default());
    if let Ok(meta) = fs::metadata(&blob) {
        m.size = meta.len();
        if let Ok(f) = GgufFile::open(&blob) {
            m.quantization = quantization(&f);
        }
    }
    m.created = now_secs();
    Ok(m)
}
