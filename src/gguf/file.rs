//! The parsed file: [`GgufHeader`] (metadata in file order, tensor infos, layout) with its
//! typed getters, and [`GgufFile`], which adds the file's bytes (memory-mapped on native
//! targets, owned in the browser) and hands out each tensor's raw data.
//!
//! Getters are strict about types, so a model file can never have a value silently
//! reinterpreted: `get_f32` wants an `f32`, `get_str` a string, `get_f32_array` an
//! `array<f32>` (token scores stored as `i8` are an error). The one leniency is for
//! integers: `get_u32`, `get_u64` and `get_i32` accept any integer type whose value
//! converts losslessly (converters disagree on u32 vs u64 for hyperparameters), and
//! return `OutOfRange` when it does not fit. Floats and bools are never integers.

use std::collections::HashMap;
use std::ops::Deref;

use super::error::GgufError;
use super::value::{Array, Value};
use crate::quant::GgmlType;

type Result<T> = std::result::Result<T, GgufError>;

/// One tensor's entry in the header; its data lives at `data_offset + offset`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Name as upstream writes it, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions, dim 0 fastest-varying (a row has `dims[0]` elements).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset of the data relative to the start of the data section.
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Total number of elements (saturating; validated tensors never saturate).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Number of rows: the product of `dims[1..]`, 1 for a 1-D tensor.
    pub fn n_rows(&self) -> u64 {
        self.dims
            .iter()
            .skip(1)
            .fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Elements per row: `dims[0]`.
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Bytes per row (`row_len` elements of `ty`); 0 if the row is not whole blocks.
    pub fn row_bytes(&self) -> u64 {
        self.ty.bytes_for(self.row_len()).unwrap_or(0)
    }
}

/// Validates a tensor shape for type `ty` and returns its size in bytes. `offset` is
/// where the dims are stored (for messages; 0 in the writer).
pub(crate) fn check_shape(name: &str, dims: &[u64], ty: GgmlType, offset: u64) -> Result<u64> {
    let n_dims = u32::try_from(dims.len()).unwrap_or(u32::MAX);
    if !(1..=4).contains(&n_dims) {
        return Err(GgufError::BadDimCount {
            tensor: name.to_owned(),
            offset: offset.saturating_sub(4),
            n_dims,
        });
    }
    let mut n_elements: u64 = 1;
    for (index, &value) in dims.iter().enumerate() {
        let reason = if value == 0 {
            "must be at least 1"
        } else if value > i64::MAX as u64 {
            "is negative as a signed 64-bit value (limit 2^63 - 1)"
        } else {
            ""
        };
        if !reason.is_empty() {
            return Err(GgufError::BadDim {
                tensor: name.to_owned(),
                offset: offset + 8 * index as u64,
                index,
                value,
                reason,
            });
        }
        n_elements = n_elements
            .checked_mul(value)
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| GgufError::Overflow {
                what: format!("tensor '{name}': element count of dims {dims:?}"),
            })?;
    }
    let row_len = dims.first().copied().unwrap_or(1);
    let block = ty.block_elems() as u64;
    if !row_len.is_multiple_of(block) {
        return Err(GgufError::RowNotBlockMultiple {
            tensor: name.to_owned(),
            row_len,
            ty,
            block,
        });
    }
    ty.bytes_for(n_elements).ok_or_else(|| GgufError::Overflow {
        what: format!("tensor '{name}': byte size of {n_elements} {ty} elements"),
    })
}

/// A parsed and validated GGUF header: everything but the tensor data.
#[derive(Clone)]
pub struct GgufHeader {
    /// Format version (2 or 3).
    pub version: u32,
    /// Alignment of tensor data (`general.alignment`, default 32).
    pub alignment: u64,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    pub(crate) metadata: Vec<(String, Value)>,
    pub(crate) index: HashMap<String, usize>,
    /// Tensor infos in file order.
    pub tensors: Vec<TensorInfo>,
    pub(crate) tensor_index: HashMap<String, usize>,
}

/// Defines `require_*` in terms of the matching `get_*`.
macro_rules! require {
    ($($(#[$doc:meta])* $req:ident => $get:ident -> $t:ty;)*) => {$(
        $(#[$doc])*
        pub fn $req(&self, key: &str) -> Result<$t> {
            self.$get(key)?.ok_or_else(|| GgufError::MissingKey { key: key.to_owned() })
        }
    )*};
}

impl GgufHeader {
    /// All metadata entries in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let (k, v) = self.metadata.get(*self.index.get(key)?)?;
        (k == key).then_some(v)
    }

    fn wrong_type(key: &str, expected: &'static str, found: &Value) -> GgufError {
        GgufError::WrongType {
            key: key.to_owned(),
            expected,
            found: found.type_name(),
        }
    }

    fn get_int<T: TryFrom<i128>>(&self, key: &str, expected: &'static str) -> Result<Option<T>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let n = v
            .as_integer()
            .ok_or_else(|| Self::wrong_type(key, expected, v))?;
        T::try_from(n).map(Some).map_err(|_| GgufError::OutOfRange {
            key: key.to_owned(),
            value: n.to_string(),
            expected,
        })
    }

    /// An integer of any stored integer type that fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>> {
        self.get_int(key, "u32")
    }

    /// An integer of any stored integer type that fits in u64.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.get_int(key, "u64")
    }

    /// An integer of any stored integer type that fits in i32.
    pub fn get_i32(&self, key: &str) -> Result<Option<i32>> {
        self.get_int(key, "i32")
    }

    /// An `f32` value (no other type is accepted).
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::F32(x)) => Ok(Some(*x)),
            Some(v) => Err(Self::wrong_type(key, "f32", v)),
        }
    }

    /// A `bool` value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(x)) => Ok(Some(*x)),
            Some(v) => Err(Self::wrong_type(key, "bool", v)),
        }
    }

    /// A `string` value.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(Self::wrong_type(key, "string", v)),
        }
    }

    /// An `array<string>` value.
    pub fn get_str_array(&self, key: &str) -> Result<Option<&[String]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::String(a))) => Ok(Some(a)),
            Some(v) => Err(Self::wrong_type(key, "array<string>", v)),
        }
    }

    /// An `array<f32>` value.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<&[f32]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::F32(a))) => Ok(Some(a)),
            Some(v) => Err(Self::wrong_type(key, "array<f32>", v)),
        }
    }

    /// An `array<i32>` value.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<&[i32]>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::I32(a))) => Ok(Some(a)),
            Some(v) => Err(Self::wrong_type(key, "array<i32>", v)),
        }
    }

    require! {
        /// Like [`Self::get_u32`], but a missing key is an error naming it.
        require_u32 => get_u32 -> u32;
        /// Like [`Self::get_u64`], but a missing key is an error naming it.
        require_u64 => get_u64 -> u64;
        /// Like [`Self::get_i32`], but a missing key is an error naming it.
        require_i32 => get_i32 -> i32;
        /// Like [`Self::get_f32`], but a missing key is an error naming it.
        require_f32 => get_f32 -> f32;
        /// Like [`Self::get_bool`], but a missing key is an error naming it.
        require_bool => get_bool -> bool;
        /// Like [`Self::get_str`], but a missing key is an error naming it.
        require_str => get_str -> &str;
        /// Like [`Self::get_str_array`], but a missing key is an error naming it.
        require_str_array => get_str_array -> &[String];
        /// Like [`Self::get_f32_array`], but a missing key is an error naming it.
        require_f32_array => get_f32_array -> &[f32];
        /// Like [`Self::get_i32_array`], but a missing key is an error naming it.
        require_i32_array => get_i32_array -> &[i32];
    }

    /// The model architecture (`general.architecture`), e.g. `gemma3`.
    pub fn architecture(&self) -> Result<&str> {
        self.require_str("general.architecture")
    }

    /// The tensor info named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let t = self.tensors.get(*self.tensor_index.get(name)?)?;
        (t.name == name).then_some(t)
    }

    /// Like [`Self::tensor`], but a missing tensor is an error naming it.
    pub fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor(name).ok_or_else(|| GgufError::MissingTensor {
            name: name.to_owned(),
        })
    }
}

/// Where a file's bytes live.
enum Bytes {
    #[cfg(not(target_arch = "wasm32"))]
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// A validated GGUF file and its bytes; derefs to its [`GgufHeader`].
pub struct GgufFile {
    header: GgufHeader,
    bytes: Bytes,
}

impl GgufFile {
    /// Memory-maps and parses the file at `path`.
    ///
    /// The file must not be modified or truncated while the `GgufFile` lives: the map
    /// would then change under us (truncation faults with SIGBUS). Use
    /// [`GgufFile::from_bytes`] where that cannot be ruled out.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let bytes = if len == 0 {
            // Mapping an empty file fails on some platforms; parsing reports the real problem.
            Bytes::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only and we never create references that outlive it.
            // The remaining hazard is another process writing or truncating the file while
            // it is mapped, which no Rust code can rule out; model files are treated as
            // immutable, and `open` documents that requirement.
            Bytes::Mapped(unsafe { memmap2::Mmap::map(&file) }.map_err(io)?)
        };
        Self::from_parts(bytes)
    }

    /// Parses a file held in memory (the only constructor in the browser).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self> {
        Self::from_parts(Bytes::Owned(bytes))
    }

    fn from_parts(bytes: Bytes) -> Result<Self> {
        let header = super::reader::parse(bytes.as_slice())?;
        Ok(Self { header, bytes })
    }

    /// The parsed header.
    pub fn header(&self) -> &GgufHeader {
        &self.header
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.as_slice()
    }

    /// File size in bytes.
    pub fn file_size(&self) -> u64 {
        self.as_bytes().len() as u64
    }

    /// The raw (quantized) bytes of tensor `t`.
    ///
    /// # Panics
    /// If `t` is not one of this file's tensor infos (parsing checked those lie inside
    /// the file, so only an info from elsewhere can fail).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = self
            .header
            .data_offset
            .checked_add(t.offset)
            .and_then(|s| Some((s, s.checked_add(t.n_bytes)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        match range.and_then(|r| self.as_bytes().get(r)) {
            Some(data) => data,
            None => panic!("tensor '{}' does not belong to this GGUF file", t.name),
        }
    }
}

impl Deref for GgufFile {
    type Target = GgufHeader;

    fn deref(&self) -> &GgufHeader {
        &self.header
    }
}

impl std::fmt::Debug for GgufHeader {
    /// A summary: vocabularies are far too long to print whole.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufHeader")
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish()
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("file_size", &self.file_size())
            .field("header", &self.header)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufWriter;

    fn file_with(entries: Vec<(&str, Value)>) -> GgufFile {
        let mut w = GgufWriter::new();
        for (k, v) in entries {
            w.add(k, v).unwrap();
        }
        GgufFile::from_bytes(w.to_bytes()).unwrap()
    }

    #[test]
    fn integer_getters_accept_any_integer_that_fits() {
        let f = file_with(vec![
            ("a", Value::U64(7)),
            ("b", Value::I8(-1)),
            ("c", Value::U64(1 << 40)),
            ("d", Value::F32(1.0)),
            ("e", Value::String("9".into())),
        ]);
        assert_eq!(f.get_u32("a").unwrap(), Some(7));
        assert_eq!(f.get_i32("b").unwrap(), Some(-1));
        assert_eq!(f.get_u64("c").unwrap(), Some(1 << 40));
        assert_eq!(f.get_u32("missing").unwrap(), None);
        let err = f.get_u32("b").unwrap_err();
        assert!(matches!(err, GgufError::OutOfRange { .. }), "{err}");
        assert!(err.to_string().contains("'b'"));
        assert!(matches!(f.get_u32("c"), Err(GgufError::OutOfRange { .. })));
        let err = f.get_u32("d").unwrap_err();
        assert!(matches!(
            err,
            GgufError::WrongType {
                expected: "u32",
                found: "f32",
                ..
            }
        ));
        assert!(matches!(f.get_u32("e"), Err(GgufError::WrongType { .. })));
        let err = f.require_u32("missing").unwrap_err();
        assert!(matches!(err, GgufError::MissingKey { .. }));
        assert!(err.to_string().contains("'missing'"));
    }

    #[test]
    fn other_getters_are_strict() {
        let f = file_with(vec![
            ("general.architecture", Value::String("gemma3".into())),
            ("f", Value::F32(0.5)),
            ("g", Value::F64(0.5)),
            ("b", Value::Bool(true)),
            ("scores", Value::Array(Array::F32(vec![1.0, 2.0]))),
            ("scores8", Value::Array(Array::I8(vec![1, 2]))),
            ("types", Value::Array(Array::I32(vec![1, 3]))),
            ("toks", Value::Array(Array::String(vec!["a".into()]))),
        ]);
        assert_eq!(f.architecture().unwrap(), "gemma3");
        assert_eq!(f.require_f32("f").unwrap(), 0.5);
        assert!(matches!(f.get_f32("g"), Err(GgufError::WrongType { .. })));
        assert!(f.require_bool("b").unwrap());
        assert!(matches!(f.get_bool("f"), Err(GgufError::WrongType { .. })));
        assert_eq!(f.require_f32_array("scores").unwrap(), &[1.0, 2.0]);
        let err = f.get_f32_array("scores8").unwrap_err();
        assert!(
            matches!(
                err,
                GgufError::WrongType {
                    expected: "array<f32>",
                    found: "array<i8>",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(f.require_i32_array("types").unwrap(), &[1, 3]);
        assert_eq!(f.require_str_array("toks").unwrap(), &["a".to_string()]);
        assert!(matches!(
            f.get_str("toks"),
            Err(GgufError::WrongType { .. })
        ));
        assert_eq!(f.metadata().len(), 8);
        assert_eq!(f.metadata()[1].0, "f");
    }

    #[test]
    fn tensor_helpers_and_shape_checks() {
        let t = TensorInfo {
            name: "w".into(),
            dims: vec![256, 3, 2],
            ty: GgmlType::Q4_K,
            offset: 0,
            n_bytes: 6 * 144,
        };
        assert_eq!(
            (t.n_elements(), t.n_rows(), t.row_len(), t.row_bytes()),
            (1536, 6, 256, 144)
        );
        assert_eq!(check_shape("w", &t.dims, t.ty, 0).unwrap(), t.n_bytes);
        let cases: &[(&[u64], GgmlType)] = &[
            (&[], GgmlType::F32),
            (&[1, 1, 1, 1, 1], GgmlType::F32),
            (&[4, 0], GgmlType::F32),
            (&[1 << 63], GgmlType::F32),
            (&[1 << 40, 1 << 40], GgmlType::F32),
            (&[100], GgmlType::Q4_K),
        ];
        for (dims, ty) in cases {
            let err = check_shape("w", dims, *ty, 0).unwrap_err();
            assert!(err.to_string().contains("'w'"), "{err}");
        }
    }
}
