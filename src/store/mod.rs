//! The local model store: GGUF files by name, like a package cache.
//!
//! Layout under the root (`--models DIR`, `HEARTH_MODELS`, or [`Store::default_root`]):
//!
//! ```text
//! blobs/sha256-<hex>              content-addressed model files, never modified in place
//! manifests/<family>/<tag>.json   one small JSON manifest per name (see [`Manifest`])
//! partial/<key>.part              downloads in progress (resumable), never listed as models
//! partial/<key>.lock              held by the process downloading <key>
//! .lock                           held around every change to blobs/ and manifests/
//! ```
//!
//! Every file that appears under `blobs/` or `manifests/` is written to a temporary name
//! in the same directory and renamed into place, so a reader sees the old file or the new
//! one, never half of one. Changes take the store's exclusive file lock, so two `hearth`
//! processes never interleave a blob deletion with a manifest that still needs it.
//!
//! [`Store::with_external`] adds, read-only, the models of ollama's store and the Hugging
//! Face cache (see [`external`]); hearth's own names win on a clash.

mod error;
pub mod external;
mod files;
mod http;
mod name;
pub mod pull;
mod quant;
pub mod spec;

pub use error::{Result, StoreError};
pub use external::{External, ExternalModel, Origin};
pub use files::{hex, is_sha256_hex, FileLock};
pub use name::{ModelName, MAX_PIECE};
pub use quant::quantization;

use crate::gguf::{GgufError, GgufFile};
use error::io_err;
use files::{hash_copy, temp_path, write_atomic};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What the store records for one name.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// Format version of this record.
    pub schema: u32,
    /// `family:tag`.
    pub name: String,
    /// `sha256:<64 hex>` of the blob.
    pub digest: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// Where the file came from: a URL, or `file:<path>` for an import.
    pub source: String,
    /// The file's original name.
    pub file_name: String,
    /// Quantization, e.g. `Q4_K_M` (from `general.file_type`, else the dominant tensor type).
    pub quantization: String,
    /// Seconds since the Unix epoch when the name was registered.
    pub created: u64,
}

impl Manifest {
    /// The hex digest without the `sha256:` prefix, checked to be 64 lowercase hex digits.
    pub fn hex(&self) -> Option<&str> {
        let h = self.digest.strip_prefix("sha256:")?;
        is_sha256_hex(h).then_some(h)
    }
}

/// One installed model, as `hearth list` shows it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its name.
    pub name: ModelName,
    /// The first 12 hex digits of its digest.
    pub id: String,
    /// The full manifest.
    pub manifest: Manifest,
    /// Size in bytes.
    pub size: u64,
    /// Quantization label.
    pub quantization: String,
    /// When the name was registered.
    pub modified: SystemTime,
    /// The blob.
    pub path: PathBuf,
}

/// One model `hearth list` shows: from hearth's store or found in another tool's.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The name it runs under.
    pub name: String,
    /// Which store holds it.
    pub origin: Origin,
    /// sha256 hex of the file, or empty when its store does not record it.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Quantization label.
    pub quantization: String,
    /// When it was registered or last modified.
    pub modified: SystemTime,
    /// The GGUF file.
    pub path: PathBuf,
    /// The other store's record (None for hearth's own models).
    pub external: Option<ExternalModel>,
}

impl Listing {
    /// The first 12 hex digits of the digest (`-` when unknown).
    pub fn id(&self) -> String {
        if self.digest.is_empty() {
            "-".into()
        } else {
            self.digest.chars().take(12).collect()
        }
    }
}

/// A spec that names a file rather than a store entry: ends in `.gguf`, or holds a path
/// separator (but is not an `hf.co/…` spec), or starts with `.` or `~`.
pub fn looks_like_path(spec: &str) -> bool {
    let lower = spec.to_ascii_lowercase();
    if pull::is_hf_spec(&lower) {
        return false;
    }
    lower.ends_with(".gguf")
        || spec.contains('/')
        || spec.contains('\\')
        || spec.starts_with('.')
        || spec.starts_with('~')
}

/// A model store rooted at one directory.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    external: External,
}

impl Store {
    /// The platform's default root: `<data dir>/hearth/models` (e.g.
    /// `~/.local/share/hearth/models` on Linux).
    pub fn default_root() -> Result<PathBuf> {
        dirs::data_dir()
            .map(|d| d.join("hearth").join("models"))
            .ok_or(StoreError::NoDataDir)
    }

    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let store = Self {
            root: root.into(),
            external: External::none(),
        };
        for dir in [
            store.root.clone(),
            store.blobs_dir(),
            store.manifests_dir(),
            store.partial_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        store.remove_stale_temps();
        Ok(store)
    }

    /// Deletes temporary files (`.tmp-*`) that a killed process left in blobs/ or a
    /// manifest directory more than a day ago. Best effort: errors are ignored.
    fn remove_stale_temps(&self) {
        let day = Duration::from_secs(86_400);
        let mut dirs = vec![self.blobs_dir()];
        if let Ok(rd) = fs::read_dir(self.manifests_dir()) {
            dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
        for dir in dirs {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for e in rd.flatten() {
                let stale = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age > day);
                if stale && e.file_name().to_string_lossy().starts_with(".tmp-") {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
    }

    /// Also finds (read-only) the models of the other stores `external` names; hearth's
    /// own store wins on a name clash.
    pub fn with_external(mut self, external: External) -> Self {
        self.external = external;
        self
    }

    /// The other stores looked in.
    pub fn external(&self) -> &External {
        &self.external
    }

    /// The model of another store `spec` names, unless hearth's own store has that name.
    pub fn find_external(&self, spec: &str) -> Option<ExternalModel> {
        let own = pull::name_for_spec(spec)
            .ok()
            .and_then(|n| self.get(&n).ok().flatten());
        if own.is_some() {
            return None;
        }
        self.external.find(spec)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    fn manifests_dir(&self) -> PathBuf {
        self.root.join("manifests")
    }

    /// Where downloads in progress live.
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }

    /// The blob file of a hex digest.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.blobs_dir().join(format!("sha256-{hex}"))
    }

    fn manifest_path(&self, name: &ModelName) -> PathBuf {
        self.manifests_dir()
            .join(name.family())
            .join(format!("{}.json", name.tag()))
    }

    /// Takes the store-wide lock that guards blobs/ and manifests/.
    pub fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.root.join(".lock"))
    }

    /// The manifest of `name`, if installed.
    pub fn get(&self, name: &ModelName) -> Result<Option<Manifest>> {
        let path = self.manifest_path(name);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| StoreError::Manifest {
            path: path.clone(),
            why: format!("corrupt manifest: {e}"),
        })?;
        if m.hex().is_none() {
            return Err(StoreError::Manifest {
                path,
                why: format!("corrupt manifest: bad digest {:?}", m.digest),
            });
        }
        Ok(Some(m))
    }

    /// The file a model spec refers to: a path to an existing `.gguf` file, a store name,
    /// an `hf.co/OWNER/REPO[:QUANT]` spec that was pulled before, or a model of another
    /// store (see [`External`]).
    pub fn resolve(&self, spec: &str) -> Result<PathBuf> {
        if looks_like_path(spec) {
            let p = PathBuf::from(spec);
            if p.is_file() {
                return Ok(p);
            }
            return match self.external.find(spec) {
                Some(m) => Ok(m.path),
                None => Err(StoreError::NoFile(p)),
            };
        }
        self.resolve_name(spec)
    }

    /// Like [`Store::resolve`], but `spec` is never taken as a file path (the server's
    /// names): a store name, a pulled `hf.co` spec, or another store's model.
    pub fn resolve_name(&self, spec: &str) -> Result<PathBuf> {
        let name = match pull::name_for_spec(spec) {
            Ok(n) => n,
            Err(e) => {
                return match self.external.find(spec) {
                    Some(m) => Ok(m.path),
                    None => Err(e),
                }
            }
        };
        match self.get(&name)? {
            Some(m) => {
                let path = self.blob_path(m.hex().unwrap_or_default());
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(StoreError::Manifest {
                        path: self.manifest_path(&name),
                        why: format!("the blob of '{name}' is missing; run `hearth pull` or `hearth import` again"),
                    })
                }
            }
            None => match self.external.find(spec) {
                Some(m) => Ok(m.path),
                None => Err(self.not_found(&name)),
            },
        }
    }

    /// hearth's models, then those of the other stores whose names hearth's store does
    /// not hold.
    pub fn list_all(&self) -> Result<Vec<Listing>> {
        let own = self.list()?;
        let mut out: Vec<Listing> = own
            .iter()
            .map(|e| Listing {
                name: e.name.to_string(),
                origin: Origin::Hearth,
                digest: e.manifest.hex().unwrap_or_default().to_string(),
                size: e.size,
                quantization: e.quantization.clone(),
                modified: e.modified,
                path: e.path.clone(),
                external: None,
            })
            .collect();
        for m in self.external.list() {
            let shadowed = ModelName::parse(&m.name).is_ok_and(|n| own.iter().any(|e| e.name == n));
            if shadowed {
                continue;
            }
            out.push(Listing {
                name: m.name.clone(),
                origin: m.origin,
                digest: m.digest.clone(),
                size: m.size,
                quantization: m.quantization.clone(),
                modified: m.modified,
                path: m.path.clone(),
                external: Some(m),
            });
        }
        Ok(out)
    }

    fn not_found(&self, name: &ModelName) -> StoreError {
        let installed: Vec<String> = self
            .list_all()
            .map(|l| l.into_iter().map(|e| e.name).collect())
            .unwrap_or_default();
        let full = name.to_string();
        let how = if pull::ALIASES.iter().any(|(a, _)| *a == full) {
            format!("`hearth pull {full}`")
        } else {
            format!("`hearth pull hf.co/OWNER/REPO:QUANT --name {full}` or `hearth import FILE.gguf {full}`")
        };
        StoreError::NotFound {
            how,
            name: full,
            installed: if installed.is_empty() {
                "none".into()
            } else {
                installed.join(", ")
            },
        }
    }

    /// Every installed model, sorted by name. Manifests that fail to parse are skipped
    /// with a warning in the log.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let dir = self.manifests_dir();
        let mut out = Vec::new();
        for fam in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let fam = fam.map_err(io_err(&dir))?;
            let fam_path = fam.path();
            if !fam_path.is_dir() {
                continue;
            }
            let Some(family) = fam.file_name().to_str().map(str::to_string) else {
                continue;
            };
            for f in fs::read_dir(&fam_path).map_err(io_err(&fam_path))? {
                let f = f.map_err(io_err(&fam_path))?;
                let file_name = f.file_name();
                let Some(tag) = file_name.to_str().and_then(|s| s.strip_suffix(".json")) else {
                    continue;
                };
                let Ok(name) = ModelName::parse(&format!("{family}:{tag}")) else {
                    continue;
                };
                match self.get(&name) {
                    Ok(Some(m)) => out.push(self.entry(name, m)),
                    Ok(None) => {}
                    Err(e) => log::warn!("{e}"),
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn entry(&self, name: ModelName, m: Manifest) -> Entry {
        let hex = m.hex().unwrap_or_default().to_string();
        Entry {
            name,
            id: hex.chars().take(12).collect(),
            size: m.size,
            quantization: m.quantization.clone(),
            modified: UNIX_EPOCH + Duration::from_secs(m.created),
            path: self.blob_path(&hex),
            manifest: m,
        }
    }

    /// Copies (or hard-links, with `link`, where the file system allows) a GGUF file into
    /// the store under `name`. The file must parse; the name is checked before anything
    /// is read or written.
    pub fn import(&self, path: &Path, name: &str, link: bool) -> Result<Entry> {
        let name = ModelName::parse(name)?;
        let quant = {
            let f = GgufFile::open(path).map_err(|cause| StoreError::Gguf {
                path: path.to_owned(),
                cause,
            })?;
            quantization(&f)
        };
        let file_name = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let source = format!(
            "file:{}",
            fs::canonicalize(path)
                .unwrap_or_else(|_| path.to_owned())
                .display()
        );
        if link {
            let (hex, size) = {
                let f = File::open(path).map_err(io_err(path))?;
                hash_copy(f, None).map_err(io_err(path))?
            };
            let tmp = temp_path(&self.blobs_dir(), "link");
            if fs::hard_link(path, &tmp).is_ok() {
                let m = self.new_manifest(&name, &hex, size, source, file_name, quant);
                return self.commit(&tmp, m);
            }
            log::info!("cannot hard-link {}; copying", path.display());
        }
        let tmp = temp_path(&self.blobs_dir(), "import");
        let copied = (|| {
            let src = File::open(path)?;
            let mut dst = File::create(&tmp)?;
            let r = hash_copy(src, Some(&mut dst))?;
            dst.sync_all()?;
            Ok(r)
        })();
        let (hex, size) = match copied {
            Ok(r) => r,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(io_err(path)(e));
            }
        };
        let m = self.new_manifest(&name, &hex, size, source, file_name, quant);
        self.commit(&tmp, m)
    }

    fn new_manifest(
        &self,
        name: &ModelName,
        hex: &str,
        size: u64,
        source: String,
        file_name: String,
        quantization: String,
    ) -> Manifest {
        Manifest {
            schema: 1,
            name: name.to_string(),
            digest: format!("sha256:{hex}"),
            size,
            source,
            file_name,
            quantization,
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        }
    }

    /// Under the store lock: moves `file` (a verified file inside the store's directory
    /// tree) to its blob, unless that blob exists already, then writes the manifest and
    /// drops the blob the name pointed at before if nothing else uses it.
    fn commit(&self, file: &Path, m: Manifest) -> Result<Entry> {
        let name = ModelName::parse(&m.name)?;
        let hex = m.hex().unwrap_or_default().to_string();
        let _lock = self.lock()?;
        let blob = self.blob_path(&hex);
        if blob.is_file() {
            let _ = fs::remove_file(file);
        } else {
            fs::rename(file, &blob).map_err(io_err(&blob))?;
        }
        let old = self.get(&name).ok().flatten();
        self.write_manifest(&name, &m)?;
        if let Some(old) = old {
            if old.digest != m.digest {
                self.drop_blob_if_unused(&old)?;
            }
        }
        Ok(self.entry(name, m))
    }

    /// Registers an existing blob under `name` (used when a pull finds the file already
    /// present).
    pub(crate) fn register_existing(&self, m: Manifest) -> Result<Option<Entry>> {
        let name = ModelName::parse(&m.name)?;
        let hex = m.hex().unwrap_or_default().to_string();
        let _lock = self.lock()?;
        if !self.blob_path(&hex).is_file() {
            return Ok(None);
        }
        let old = self.get(&name).ok().flatten();
        self.write_manifest(&name, &m)?;
        if let Some(old) = old {
            if old.digest != m.digest {
                self.drop_blob_if_unused(&old)?;
            }
        }
        Ok(Some(self.entry(name, m)))
    }

    fn write_manifest(&self, name: &ModelName, m: &Manifest) -> Result<()> {
        let path = self.manifest_path(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut text = serde_json::to_string_pretty(m).map_err(|e| StoreError::Manifest {
            path: path.clone(),
            why: e.to_string(),
        })?;
        text.push('\n');
        write_atomic(&path, text.as_bytes())
    }

    /// Deletes the blob of `m` when no manifest refers to it. Call with the lock held.
    fn drop_blob_if_unused(&self, m: &Manifest) -> Result<()> {
        let used = self.list()?.iter().any(|e| e.manifest.digest == m.digest);
        if !used {
            if let Some(hex) = m.hex() {
                let blob = self.blob_path(hex);
                match fs::remove_file(&blob) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&blob)(e)),
                }
            }
        }
        Ok(())
    }

    /// Removes `name`; its blob goes too when no other name uses it.
    /// Models of other stores are refused ([`StoreError::ReadOnly`]).
    pub fn rm(&self, name: &str) -> Result<()> {
        let parsed = ModelName::parse(name);
        let own = match &parsed {
            Ok(n) => self.get(n)?,
            Err(_) => None,
        };
        if own.is_none() {
            if let Some(m) = self.external.find(name) {
                return Err(StoreError::ReadOnly(m.read_only_why()));
            }
        }
        let name = parsed?;
        let _lock = self.lock()?;
        let Some(m) = self.get(&name)? else {
            return Err(self.not_found(&name));
        };
        let path = self.manifest_path(&name);
        fs::remove_file(&path).map_err(io_err(&path))?;
        if let Some(dir) = path.parent() {
            // Only succeeds when empty, which is what we want.
            let _ = fs::remove_dir(dir);
        }
        self.drop_blob_if_unused(&m)
    }

    /// Makes `dst` another name for the model `src` (no bytes are copied). An existing
    /// `dst` is replaced.
    pub fn cp(&self, src: &str, dst: &str) -> Result<Entry> {
        if let Some(m) = self.find_external(src) {
            return Err(StoreError::ReadOnly(format!(
                "'{}' is not in hearth's store but in {}; run it by that name, or add it with `hearth import --link {} NAME`",
                m.name,
                m.origin.label(),
                m.path.display()
            )));
        }
        let src = ModelName::parse(src)?;
        let dst = ModelName::parse(dst)?;
        let _lock = self.lock()?;
        let Some(mut m) = self.get(&src)? else {
            return Err(self.not_found(&src));
        };
        let old = self.get(&dst).ok().flatten();
        m.name = dst.to_string();
        self.write_manifest(&dst, &m)?;
        if let Some(old) = old {
            if old.digest != m.digest {
                self.drop_blob_if_unused(&old)?;
            }
        }
        Ok(self.entry(dst, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_names() {
        assert!(looks_like_path("model.gguf"));
        assert!(looks_like_path("./m"));
        assert!(looks_like_path("dir/m.bin"));
        assert!(!looks_like_path("gemma3:270m"));
        assert!(!looks_like_path("hf.co/o/r:Q4_K_M"));
    }
}
