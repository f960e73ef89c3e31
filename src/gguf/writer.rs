//! Writing GGUF v3 files: [`GgufWriter`] for tests and `quantize`, validated so that what
//! it writes always reads back, and the raw `put_*` encoders underneath it, public so
//! tests can assemble deliberately malformed files piece by piece.

use std::collections::HashSet;
use std::io::Write;

use super::error::GgufError;
use super::file::check_shape;
use super::reader::align_up;
use super::value::{Array, Value};
use super::{check_known_key, DEFAULT_ALIGNMENT, MAX_NAME_LEN, MAX_STRING_LEN};
use crate::quant::GgmlType;

type Result<T> = std::result::Result<T, GgufError>;

/// Appends a GGUF string: u64 length then the bytes.
pub fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Appends a value as stored after a key: u32 type id then the payload.
pub fn put_value(out: &mut Vec<u8>, value: &Value) {
    out.extend_from_slice(&value.type_id().to_le_bytes());
    match value {
        Value::U8(v) => out.push(*v),
        Value::I8(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I16(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::U32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F32(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::Bool(v) => out.push(u8::from(*v)),
        Value::String(s) => put_string(out, s),
        Value::Array(a) => put_array(out, a),
        Value::U64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::I64(v) => out.extend_from_slice(&v.to_le_bytes()),
        Value::F64(v) => out.extend_from_slice(&v.to_le_bytes()),
    }
}

fn put_array(out: &mut Vec<u8>, a: &Array) {
    out.extend_from_slice(&a.elem_type_id().to_le_bytes());
    out.extend_from_slice(&(a.len() as u64).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match a {
        Array::U8(v) => out.extend_from_slice(v),
        Array::I8(v) => le!(v),
        Array::U16(v) => le!(v),
        Array::I16(v) => le!(v),
        Array::U32(v) => le!(v),
        Array::I32(v) => le!(v),
        Array::F32(v) => le!(v),
        Array::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        Array::String(v) => v.iter().for_each(|s| put_string(out, s)),
        Array::U64(v) => le!(v),
        Array::I64(v) => le!(v),
        Array::F64(v) => le!(v),
    }
}

/// Appends a tensor info with no checks: name, n_dims (= `dims.len()`), dims, raw type
/// id and data offset.
pub fn put_tensor_info(out: &mut Vec<u8>, name: &str, dims: &[u64], type_id: u32, offset: u64) {
    put_string(out, name);
    out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
    for d in dims {
        out.extend_from_slice(&d.to_le_bytes());
    }
    out.extend_from_slice(&type_id.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
}

/// A tensor waiting to be written.
struct Pending {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF v3 file in memory; every addition is validated as the reader would.
#[derive(Default)]
pub struct GgufWriter {
    metadata: Vec<(String, Value)>,
    keys: HashSet<String>,
    tensors: Vec<Pending>,
    names: HashSet<String>,
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.len() as u64 > MAX_NAME_LEN {
        return Err(GgufError::StringTooLong {
            what: format!("{what} '{}...'", name.chars().take(32).collect::<String>()),
            offset: 0,
            len: name.len() as u64,
            limit: MAX_NAME_LEN,
        });
    }
    Ok(())
}

fn check_strings(key: &str, value: &Value) -> Result<()> {
    let too_long = |len: usize| GgufError::StringTooLong {
        what: format!("value of metadata key '{key}'"),
        offset: 0,
        len: len as u64,
        limit: MAX_STRING_LEN,
    };
    match value {
        Value::String(s) if s.len() as u64 > MAX_STRING_LEN => Err(too_long(s.len())),
        Value::Array(Array::String(items)) => {
            match items.iter().find(|s| s.len() as u64 > MAX_STRING_LEN) {
                Some(s) => Err(too_long(s.len())),
                None => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

impl GgufWriter {
    /// An empty file: no metadata, no tensors, alignment 32.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata entry; duplicate keys, over-long strings and bad values for the
    /// format's own keys (`general.alignment`, `general.architecture`) are errors.
    pub fn add(&mut self, key: impl Into<String>, value: Value) -> Result<&mut Self> {
        let key = key.into();
        check_name("metadata key", &key)?;
        if self.keys.contains(&key) {
            return Err(GgufError::DuplicateKey { key, offset: 0 });
        }
        check_known_key(&key, &value)?;
        check_strings(&key, &value)?;
        self.keys.insert(key.clone());
        self.metadata.push((key, value));
        Ok(self)
    }

    /// Sets `general.alignment` (adding or replacing the entry).
    pub fn set_alignment(&mut self, alignment: u32) -> Result<&mut Self> {
        let value = Value::U32(alignment);
        check_known_key("general.alignment", &value)?;
        match self
            .metadata
            .iter_mut()
            .find(|(k, _)| k == "general.alignment")
        {
            Some((_, v)) => *v = value,
            None => {
                self.add("general.alignment", value)?;
            }
        }
        Ok(self)
    }

    /// The alignment tensor data will be written with.
    pub fn alignment(&self) -> u64 {
        self.metadata
            .iter()
            .find_map(|(k, v)| match (k.as_str(), v) {
                ("general.alignment", Value::U32(a)) => Some(u64::from(*a)),
                _ => None,
            })
            .unwrap_or(DEFAULT_ALIGNMENT)
    }

    /// Adds a tensor; `data` must be exactly `ty.bytes_for(n_elements)` bytes.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: impl Into<Vec<u8>>,
    ) -> Result<&mut Self> {
        let name = name.into();
        let data = data.into();
        check_name("tensor name", &name)?;
        if self.names.contains(&name) {
            return Err(GgufError::DuplicateTensor { name, offset: 0 });
        }
        let expected = check_shape(&name, dims, ty, 0)?;
        if data.len() as u64 != expected {
            return Err(GgufError::TensorSizeMismatch {
                tensor: name,
                ty,
                dims: dims.to_vec(),
                expected,
                actual: data.len() as u64,
            });
        }
        self.names.insert(name.clone());
        self.tensors.push(Pending {
            name,
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(self)
    }

    /// Everything before the data section, padded to the alignment.
    fn header_bytes(&self) -> Vec<u8> {
        let alignment = self.alignment();
        let mut out = Vec::new();
        out.extend_from_slice(b"GGUF");
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_string(&mut out, key);
            put_value(&mut out, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            offset = pad(offset, alignment);
            put_tensor_info(&mut out, &t.name, &t.dims, t.ty.id(), offset);
            offset += t.data.len() as u64;
        }
        out.resize(pad(out.len() as u64, alignment) as usize, 0);
        out
    }

    /// Writes the file to `w`, streaming tensor data without copying it.
    pub fn write_to(&self, mut w: impl Write) -> std::io::Result<()> {
        let alignment = self.alignment();
        w.write_all(&self.header_bytes())?;
        let zeros = vec![0u8; alignment as usize];
        let mut offset = 0u64;
        for t in &self.tensors {
            let padded = pad(offset, alignment);
            w.write_all(&zeros[..(padded - offset) as usize])?;
            w.write_all(&t.data)?;
            offset = padded + t.data.len() as u64;
        }
        let end = pad(offset, alignment);
        w.write_all(&zeros[..(end - offset) as usize])
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = self.write_to(&mut out);
        out
    }
}

/// Rounds up to the (validated, at most 65536) alignment; sizes of in-memory data
/// cannot come near overflow.
fn pad(value: u64, alignment: u64) -> u64 {
    align_up(value, alignment).unwrap_or(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::parse;

    #[test]
    fn rejects_what_the_reader_would() {
        let mut w = GgufWriter::new();
        w.add("a", Value::U8(1)).unwrap();
        assert!(matches!(
            w.add("a", Value::U8(2)),
            Err(GgufError::DuplicateKey { .. })
        ));
        assert!(matches!(
            w.add("general.alignment", Value::I32(32)),
            Err(GgufError::WrongType { .. })
        ));
        assert!(matches!(
            w.set_alignment(48),
            Err(GgufError::BadAlignment { .. })
        ));
        assert!(matches!(
            w.add("x".repeat(70_000), Value::U8(0)),
            Err(GgufError::StringTooLong { .. })
        ));
        assert!(matches!(
            w.add_tensor("t", &[32], GgmlType::Q8_0, vec![0u8; 33]),
            Err(GgufError::TensorSizeMismatch {
                expected: 34,
                actual: 33,
                ..
            })
        ));
        assert!(matches!(
            w.add_tensor("t", &[16], GgmlType::Q8_0, vec![]),
            Err(GgufError::RowNotBlockMultiple { .. })
        ));
        w.add_tensor("t", &[2], GgmlType::F32, vec![0u8; 8])
            .unwrap();
        assert!(matches!(
            w.add_tensor("t", &[2], GgmlType::F32, vec![0u8; 8]),
            Err(GgufError::DuplicateTensor { .. })
        ));
    }

    #[test]
    fn set_alignment_replaces_and_pads() {
        let mut w = GgufWriter::new();
        w.set_alignment(64).unwrap().set_alignment(128).unwrap();
        w.add_tensor("a", &[3], GgmlType::F32, vec![1u8; 12])
            .unwrap();
        w.add_tensor("b", &[1], GgmlType::F32, vec![2u8; 4])
            .unwrap();
        let bytes = w.to_bytes();
        assert_eq!(bytes.len() % 128, 0);
        let h = parse(&bytes).unwrap();
        assert_eq!(h.alignment, 128);
        assert_eq!(h.metadata().len(), 1);
        assert_eq!(h.data_offset % 128, 0);
        assert_eq!(h.tensor("b").unwrap().offset, 128);
    }
}
