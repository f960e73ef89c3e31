//! GGUF, the model file format of llama.cpp: reading it safely and writing it for tests
//! and `quantize`.
//!
//! A file is a header (magic `GGUF`, version, tensor and metadata counts), metadata
//! key-value pairs, tensor infos, padding to `general.alignment`, then tensor data. The
//! reader treats every byte as hostile: each read is bounds-checked, each count is
//! checked against the bytes left before anything is allocated, all size arithmetic is
//! checked, and tensor data must be aligned, inside the file and non-overlapping
//! (see `ROBUSTNESS.md`, cases 1-14). Errors are [`GgufError`]s naming the field and
//! byte offset at fault. Tensor data is never copied: [`GgufFile::open`] memory-maps the
//! file on native targets and [`GgufFile::tensor_data`] returns slices of it.

mod error;
mod file;
mod reader;
mod value;
mod writer;

pub use error::GgufError;
pub use file::{GgufFile, GgufHeader, TensorInfo};
pub use reader::parse;
pub use value::{Array, Value};
pub use writer::{put_string, put_tensor_info, put_value, GgufWriter};

/// Alignment of tensor data when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// Largest `general.alignment` accepted.
pub const MAX_ALIGNMENT: u64 = 65536;
/// Longest metadata key or tensor name accepted, in bytes (the GGUF spec's key limit).
pub const MAX_NAME_LEN: u64 = 65535;
/// Longest string value accepted, in bytes. Generous because some older files embed a
/// whole `tokenizer.json` (tens of MiB for large vocabularies) as one string.
pub const MAX_STRING_LEN: u64 = 64 << 20;

/// Checks the types and ranges of the metadata keys the format itself defines.
pub(crate) fn check_known_key(key: &str, value: &Value) -> Result<(), GgufError> {
    let wrong = |expected| GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found: value.type_name(),
    };
    match (key, value) {
        ("general.alignment", Value::U32(a)) => {
            let a = u64::from(*a);
            let reason = if a == 0 {
                "must not be 0"
            } else if !a.is_power_of_two() {
                "must be a power of two"
            } else if a > MAX_ALIGNMENT {
                "must be at most 65536"
            } else {
                return Ok(());
            };
            Err(GgufError::BadAlignment { value: a, reason })
        }
        ("general.alignment", _) => Err(wrong("u32")),
        ("general.architecture", Value::String(_)) => Ok(()),
        ("general.architecture", _) => Err(wrong("string")),
        _ => Ok(()),
    }
}
