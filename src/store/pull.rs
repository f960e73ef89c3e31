//! `hearth pull`: download a GGUF from Hugging Face (or any HTTPS URL) into the store,
//! resuming interrupted downloads and verifying the published sha256.
//!
//! Specs:
//! - `hf.co/OWNER/REPO[:QUANT]` (also `huggingface.co/…`): the repository's file list
//!   (`GET {endpoint}/api/models/OWNER/REPO/tree/main?recursive=true`) gives each file's
//!   path, size and, for LFS files, `lfs.oid` = the sha256 of the content. We pick the
//!   `.gguf` whose name ends in (else contains) QUANT, case-insensitively; without QUANT,
//!   the Q4_K_M file, else the only or first one. Vision projectors (`mmproj*`) are never
//!   picked. The file comes from `{endpoint}/OWNER/REPO/resolve/main/FILE`. The name it
//!   is stored under is `repo:quant`, lowercased, with a trailing `-gguf` dropped from the
//!   repository (`hf.co/unsloth/gemma-3-270m-it-GGUF:Q4_K_M` → `gemma-3-270m-it:q4_k_m`;
//!   `latest` without QUANT). Two repositories of the same name under different owners
//!   share that name: the later pull replaces the earlier; `--name` picks another.
//! - `http(s)://…/file.gguf`: downloaded as is, stored as `file:latest` unless `--name`.
//! - a built-in alias (table below), stored under the alias itself.
//!
//! | alias          | source                                              |
//! |----------------|-----------------------------------------------------|
//! | `gemma3:270m`  | `hf.co/unsloth/gemma-3-270m-it-GGUF:Q4_K_M`         |
//! | `qwen3:0.6b`   | `hf.co/Qwen/Qwen3-0.6B-GGUF:Q8_0`                   |
//! | `llama3.2:1b`  | `hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M` |
//! | `smollm2:135m` | `hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M` |
//!
//! Like ollama's, the aliases are the instruction-tuned models. Environment:
//! `HEARTH_HF_ENDPOINT` (default `https://huggingface.co`), `HF_TOKEN` (sent as a bearer
//! token to the endpoint), `HEARTH_HTTP_TIMEOUT` (seconds without data before giving up,
//! default 30).
//!
//! A download goes to `partial/<key>.part` (key: a hash of the URL) under a per-download
//! lock; a second process pulling the same file waits, then finds the blob present. An
//! interrupted download resumes with an HTTP `Range` request from the partial file's
//! length (its bytes are hashed first); a server that answers 200 instead of 206 makes
//! us start over. Only a file whose size and sha256 match the published ones, and that
//! parses as GGUF, becomes a blob; a mismatch deletes the partial file.

use super::{
    hex, io_err, is_sha256_hex, quantization, Entry, FileLock, Manifest, ModelName, Result, Store,
    StoreError,
};
use crate::gguf::GgufFile;
use sha2::{Digest, Sha256};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

/// Built-in short names and the Hugging Face GGUF each stands for.
pub const ALIASES: &[(&str, &str)] = &[
    ("gemma3:270m", "hf.co/unsloth/gemma-3-270m-it-GGUF:Q4_K_M"),
    ("qwen3:0.6b", "hf.co/Qwen/Qwen3-0.6B-GGUF:Q8_0"),
    (
        "llama3.2:1b",
        "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M",
    ),
    (
        "smollm2:135m",
        "hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M",
    ),
];

/// The quantization picked when an `hf.co` spec names none.
pub const DEFAULT_QUANT: &str = "Q4_K_M";

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

/// Where a spec points.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// A Hugging Face repository and an optional quantization.
    Hf {
        /// Owner (user or organization).
        owner: String,
        /// Repository.
        repo: String,
        /// Quantization to pick, e.g. `Q4_K_M`.
        quant: Option<String>,
    },
    /// A direct URL.
    Url(String),
}

/// True when `spec` (any case) starts with `hf.co/` or `huggingface.co/`.
pub fn is_hf_spec(spec: &str) -> bool {
    hf_rest(spec).is_some()
}

fn hf_rest(spec: &str) -> Option<&str> {
    let lower = spec.to_ascii_lowercase();
    for prefix in [
        "hf.co/",
        "huggingface.co/",
        "https://hf.co/",
        "https://huggingface.co/",
    ] {
        if lower.starts_with(prefix) && !lower.ends_with(".gguf") {
            return Some(&spec[prefix.len()..]);
        }
    }
    None
}

fn repo_piece_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 96
        && !s.starts_with('.')
        && !s.contains("..")
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Parses a spec into its source and the name it will be stored under (before `--name`).
pub fn parse_spec(spec: &str) -> Result<(Source, ModelName)> {
    let spec = spec.trim();
    if let Some(rest) = hf_rest(spec) {
        let (path, quant) = match rest.rsplit_once(':') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let mut parts = path.trim_end_matches('/').split('/');
        let (Some(owner), Some(repo), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(StoreError::BadSpec(format!(
                "{spec:?}: expected hf.co/OWNER/REPO[:QUANT]"
            )));
        };
        if !repo_piece_ok(owner) || !repo_piece_ok(repo) {
            return Err(StoreError::BadSpec(format!(
                "{spec:?}: owner and repository may hold only letters, digits, '.', '_' and '-'"
            )));
        }
        if let Some(q) = quant {
            if !repo_piece_ok(q) {
                return Err(StoreError::BadSpec(format!(
                    "{spec:?}: bad quantization {q:?}"
                )));
            }
        }
        let lower = repo.to_ascii_lowercase();
        let family = lower.strip_suffix("-gguf").unwrap_or(&lower);
        let tag = quant.map(ModelName::sanitize_piece);
        let name = ModelName::parse(&format!(
            "{}:{}",
            ModelName::sanitize_piece(family),
            tag.as_deref().unwrap_or("latest")
        ))?;
        let source = Source::Hf {
            owner: owner.into(),
            repo: repo.into(),
            quant: quant.map(str::to_string),
        };
        return Ok((source, name));
    }
    let lower = spec.to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        let path = spec.split(['?', '#']).next().unwrap_or(spec);
        let file = path.rsplit('/').next().unwrap_or("");
        let stem = file
            .len()
            .checked_sub(5)
            .filter(|&i| file.is_char_boundary(i) && file[i..].eq_ignore_ascii_case(".gguf"))
            .map(|i| &file[..i])
            .unwrap_or(file);
        let name = ModelName::parse(&format!("{}:latest", ModelName::sanitize_piece(stem)))?;
        return Ok((Source::Url(spec.to_string()), name));
    }
    let name = ModelName::parse(spec)?;
    let full = name.to_string();
    if let Some((_, target)) = ALIASES.iter().find(|(a, _)| *a == full) {
        let (source, _) = parse_spec(target)?;
        return Ok((source, name));
    }
    let aliases: Vec<&str> = ALIASES.iter().map(|(a, _)| *a).collect();
    Err(StoreError::BadSpec(format!(
        "don't know where to get '{full}': not a built-in model ({}), an hf.co/OWNER/REPO[:QUANT] spec or an https:// URL",
        aliases.join(", ")
    )))
}

/// The store name a spec refers to: the derived name of an `hf.co` spec, else the name
/// itself (validated).
pub fn name_for_spec(spec: &str) -> Result<ModelName> {
    if is_hf_spec(spec) {
        Ok(parse_spec(spec)?.1)
    } else {
        ModelName::parse(spec)
    }
}

/// One file of a repository listing.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct TreeEntry {
    /// `file` or `directory`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Path inside the repository.
    pub path: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: Option<u64>,
    /// Set for files stored with Git LFS.
    #[serde(default)]
    pub lfs: Option<Lfs>,
}

/// The LFS record of a file: `oid` is the sha256 of its content.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct Lfs {
    /// sha256 of the content (hex).
    pub oid: String,
    /// Size of the content.
    #[serde(default)]
    pub size: Option<u64>,
}

/// Picks the GGUF for `quant` among a repository's files (see the module docs).
pub fn pick_gguf<'a>(files: &'a [TreeEntry], quant: Option<&str>) -> Option<&'a TreeEntry> {
    let mut ggufs: Vec<&TreeEntry> = files
        .iter()
        .filter(|f| f.kind != "directory")
        .filter(|f| {
            let base = f.path.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
            base.ends_with(".gguf") && !base.starts_with("mmproj")
        })
        .collect();
    ggufs.sort_by(|a, b| a.path.cmp(&b.path));
    let stem = |f: &TreeEntry| {
        let base = f.path.rsplit('/').next().unwrap_or("").to_ascii_uppercase();
        base.trim_end_matches(".GGUF").to_string()
    };
    let find = |q: &str| -> Option<&'a TreeEntry> {
        let q = q.to_ascii_uppercase();
        let ends = ggufs.iter().copied().find(|f| {
            let s = stem(f);
            s.strip_suffix(&q)
                .is_some_and(|head| head.is_empty() || head.ends_with(['-', '.', '_']))
        });
        ends.or_else(|| ggufs.iter().copied().find(|f| stem(f).contains(&q)))
    };
    match quant {
        Some(q) => find(q),
        None => find(DEFAULT_QUANT).or_else(|| ggufs.first().copied()),
    }
}

fn agent(opts: &PullOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::SameHost)
        .timeout_connect(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .timeout_send_request(Some(opts.timeout))
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn is_timeout_io(e: &io::Error) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    ) {
        return true;
    }
    let s = e.to_string().to_ascii_lowercase();
    s.contains("timeout") || s.contains("timed out")
}

fn map_ureq(url: &str, opts: &PullOptions, e: ureq::Error) -> StoreError {
    let timeout = StoreError::Timeout {
        url: url.into(),
        secs: opts.timeout.as_secs().max(1),
    };
    match e {
        ureq::Error::Timeout(_) => timeout,
        ureq::Error::Io(ref io) if is_timeout_io(io) => timeout,
        e => StoreError::Http {
            url: url.into(),
            why: e.to_string(),
        },
    }
}

fn get(
    agent: &ureq::Agent,
    opts: &PullOptions,
    url: &str,
    range_from: u64,
) -> Result<ureq::http::Response<ureq::Body>> {
    let mut req = agent.get(url);
    if let Some(t) = &opts.token {
        if url.starts_with(&opts.endpoint) {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
    }
    if range_from > 0 {
        req = req.header("Range", format!("bytes={range_from}-"));
    }
    // Byte counts and ranges must refer to the file itself, not a compressed encoding.
    req = req.header("Accept-Encoding", "identity");
    req.call().map_err(|e| map_ureq(url, opts, e))
}

fn status_error(url: &str, status: u16, what: &str) -> StoreError {
    let why = match status {
        401 | 403 => format!(
            "HTTP {status}: access denied to {what} (a gated or private repository? set HF_TOKEN)"
        ),
        404 => format!("HTTP 404: {what} not found"),
        s => format!("HTTP {s} for {what}"),
    };
    StoreError::Http {
        url: url.into(),
        why,
    }
}

/// The file to download: URL, original file name, published size and sha256.
struct Target {
    url: String,
    file_name: String,
    size: Option<u64>,
    sha256: Option<String>,
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

/// Fetches `target` into `part`, resuming from its current length. Returns the sha256
/// hex of the whole file, its size, the bytes received now and the bytes reused.
fn download(
    agent: &ureq::Agent,
    opts: &PullOptions,
    target: &Target,
    part: &Path,
    progress: &mut dyn Progress,
) -> Result<(String, u64, u64, u64)> {
    let url = &target.url;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(part)
        .map_err(io_err(part))?;
    let mut have = file.metadata().map_err(io_err(part))?.len();
    if target.size.is_some_and(|s| have > s) {
        file.set_len(0).map_err(io_err(part))?;
        have = 0;
    }
    let mut hasher = Sha256::new();
    if have > 0 {
        progress.message(&format!("resuming at {have} bytes"));
        let mut buf = vec![0u8; 1 << 20];
        let mut r = (&file).take(have);
        let mut n_read = 0u64;
        loop {
            let n = r.read(&mut buf).map_err(io_err(part))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            n_read += n as u64;
        }
        if n_read != have {
            // The file shrank under us; start over.
            file.set_len(0).map_err(io_err(part))?;
            hasher = Sha256::new();
            have = 0;
        }
    }
    if have > 0 && target.size == Some(have) {
        return Ok((hex(&hasher.finalize()), have, 0, have));
    }
    let mut resp = get(agent, opts, url, have)?;
    let mut status = resp.status().as_u16();
    if have > 0 && status == 416 {
        // Our partial file is not a prefix the server recognizes: start over.
        have = 0;
        resp = get(agent, opts, url, 0)?;
        status = resp.status().as_u16();
    }
    let resumed_ok = status == 206
        && have > 0
        && resp
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().starts_with(&format!("bytes {have}-")));
    if status == 206 && !resumed_ok {
        return Err(StoreError::Http {
            url: url.clone(),
            why: "the server sent a range we did not ask for".into(),
        });
    }
    if status != 200 && status != 206 {
        return Err(status_error(
            url,
            status,
            &format!("file {}", target.file_name),
        ));
    }
    if !resumed_ok {
        if have > 0 {
            progress.message("the server does not resume downloads; starting over");
        }
        have = 0;
        hasher = Sha256::new();
        file.set_len(0).map_err(io_err(part))?;
    }
    file.seek(SeekFrom::Start(have)).map_err(io_err(part))?;
    let length = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let total = length.map(|l| l + have).or(target.size);
    progress.start(&target.file_name, total, have);
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 256 << 10];
    let mut transferred = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = file.sync_all();
                if is_timeout_io(&e) {
                    return Err(StoreError::Timeout {
                        url: url.clone(),
                        secs: opts.timeout.as_secs().max(1),
                    });
                }
                return Err(StoreError::Http {
                    url: url.clone(),
                    why: format!(
                        "download interrupted after {} bytes ({e}); run the command again to resume",
                        have + transferred
                    ),
                });
            }
        };
        transferred += n as u64;
        if let Some(limit) = target.size {
            if have + transferred > limit {
                drop(file);
                let _ = fs::remove_file(part);
                return Err(StoreError::Http {
                    url: url.clone(),
                    why: format!(
                        "the server sent more than the published {limit} bytes; nothing was installed"
                    ),
                });
            }
        }
        file.write_all(&buf[..n]).map_err(io_err(part))?;
        hasher.update(&buf[..n]);
        progress.advance(n as u64);
    }
    file.sync_all().map_err(io_err(part))?;
    let size = have + transferred;
    if let Some(l) = length {
        if transferred != l {
            return Err(StoreError::Http {
                url: url.clone(),
                why: format!(
                    "connection closed after {size} bytes of {}; run the command again to resume",
                    l + have
                ),
            });
        }
    }
    Ok((hex(&hasher.finalize()), size, transferred, have))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> TreeEntry {
        TreeEntry {
            kind: "file".into(),
            path: path.into(),
            size: Some(1),
            lfs: None,
        }
    }

    #[test]
    fn specs() {
        let (s, n) = parse_spec("hf.co/unsloth/gemma-3-270m-it-GGUF:Q4_K_M").unwrap();
        assert_eq!(n.to_string(), "gemma-3-270m-it:q4_k_m");
        assert_eq!(
            s,
            Source::Hf {
                owner: "unsloth".into(),
                repo: "gemma-3-270m-it-GGUF".into(),
                quant: Some("Q4_K_M".into())
            }
        );
        let (_, n) = parse_spec("gemma3:270m").unwrap();
        assert_eq!(n.to_string(), "gemma3:270m");
        let (s, n) = parse_spec("https://example.com/a/Model-Q8_0.gguf?x=1").unwrap();
        assert_eq!(n.to_string(), "model-q8_0:latest");
        assert!(matches!(s, Source::Url(_)));
        for bad in [
            "hf.co/a",
            "hf.co/a/b/c",
            "hf.co/../b",
            "nosuch:model",
            "../x",
        ] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
        for (alias, target) in ALIASES {
            assert!(parse_spec(alias).is_ok() && parse_spec(target).is_ok());
        }
    }

    #[test]
    fn picking() {
        let files = [
            entry("README.md"),
            entry("mmproj-F16.gguf"),
            entry("m-Q4_K_S.gguf"),
            entry("m-Q4_K_M.gguf"),
            entry("m-Q8_0.gguf"),
        ];
        assert_eq!(pick_gguf(&files, None).unwrap().path, "m-Q4_K_M.gguf");
        assert_eq!(pick_gguf(&files, Some("q8_0")).unwrap().path, "m-Q8_0.gguf");
        assert_eq!(
            pick_gguf(&files, Some("Q4_K_S")).unwrap().path,
            "m-Q4_K_S.gguf"
        );
        assert!(pick_gguf(&files, Some("Q2_K")).is_none());
        let one = [entry("mmproj.gguf"), entry("x-F16.gguf")];
        assert_eq!(pick_gguf(&one, None).unwrap().path, "x-F16.gguf");
    }
}
