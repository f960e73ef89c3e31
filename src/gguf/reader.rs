//! Parsing the GGUF header from untrusted bytes. A [`Cursor`] does every read with a
//! bounds check, and every count is checked against the bytes left before anything is
//! allocated for it, so a header claiming 2^64-1 tensors or a string of 2^64-1 bytes is
//! rejected from the file size alone. After the header come the layout checks: data
//! offsets aligned, inside the file, and not overlapping.

use std::collections::HashMap;

use super::error::GgufError;
use super::file::{check_shape, GgufHeader, TensorInfo};
use super::value::{type_id, Array, Value};
use super::{check_known_key, DEFAULT_ALIGNMENT, MAX_NAME_LEN, MAX_STRING_LEN};
use crate::quant::GgmlType;

type Result<T> = std::result::Result<T, GgufError>;

/// Smallest possible metadata entry: empty key (u64 length), type id, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: empty name, n_dims, one dim, type id, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// A read position over the file's bytes; every read is checked.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        self.buf.len().saturating_sub(self.pos) as u64
    }

    /// The next `n` bytes, or a `Truncated` error naming `what`.
    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let available = self.remaining();
        let truncated = || GgufError::Truncated {
            what: what(),
            offset: self.offset(),
            needed: n,
            available,
        };
        if n > available {
            return Err(truncated());
        }
        // n <= available, which came from a usize, so the cast is lossless.
        let end = self.pos + n as usize;
        let bytes = self.buf.get(self.pos..end).ok_or_else(truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn bytes<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N as u64, what)?);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    /// Reads a u64 count of items at least `min_size` bytes each, rejecting counts the
    /// remaining bytes cannot hold.
    fn count(&mut self, min_size: u64, what: &dyn Fn() -> String) -> Result<u64> {
        let offset = self.offset();
        let count = self.u64(what)?;
        let remaining = self.remaining();
        let max = remaining / min_size.max(1);
        if count > max {
            return Err(GgufError::CountTooLarge {
                what: what(),
                offset,
                count,
                max,
                remaining,
            });
        }
        Ok(count)
    }

    /// Reads a u64 length then that many UTF-8 bytes, at most `limit`.
    fn string(&mut self, limit: u64, what: &dyn Fn() -> String) -> Result<String> {
        let offset = self.offset();
        let len = self.u64(&|| format!("length of {}", what()))?;
        if len > limit {
            return Err(GgufError::StringTooLong {
                what: what(),
                offset,
                len,
                limit,
            });
        }
        let start = self.offset();
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 {
                what: what(),
                offset: start,
            }),
        }
    }

    fn bool(&mut self, key: &str) -> Result<bool> {
        let offset = self.offset();
        let [byte] = self.bytes(&|| format!("value of metadata key '{key}'"))?;
        match byte {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(GgufError::InvalidBool {
                key: key.to_owned(),
                offset,
                byte,
            }),
        }
    }

    /// Reads one value of type `ty` (whose id sits at `ty_offset`) for `key`.
    fn value(&mut self, ty: u32, key: &str, ty_offset: u64) -> Result<Value> {
        let what = || format!("value of metadata key '{key}'");
        Ok(match ty {
            type_id::U8 => Value::U8(u8::from_le_bytes(self.bytes(&what)?)),
            type_id::I8 => Value::I8(i8::from_le_bytes(self.bytes(&what)?)),
            type_id::U16 => Value::U16(u16::from_le_bytes(self.bytes(&what)?)),
            type_id::I16 => Value::I16(i16::from_le_bytes(self.bytes(&what)?)),
            type_id::U32 => Value::U32(u32::from_le_bytes(self.bytes(&what)?)),
            type_id::I32 => Value::I32(i32::from_le_bytes(self.bytes(&what)?)),
            type_id::F32 => Value::F32(f32::from_le_bytes(self.bytes(&what)?)),
            type_id::BOOL => Value::Bool(self.bool(key)?),
            type_id::STRING => Value::String(self.string(MAX_STRING_LEN, &what)?),
            type_id::ARRAY => Value::Array(self.array(key)?),
            type_id::U64 => Value::U64(u64::from_le_bytes(self.bytes(&what)?)),
            type_id::I64 => Value::I64(i64::from_le_bytes(self.bytes(&what)?)),
            type_id::F64 => Value::F64(f64::from_le_bytes(self.bytes(&what)?)),
            id => {
                return Err(GgufError::UnknownValueType {
                    key: key.to_owned(),
                    offset: ty_offset,
                    id,
                })
            }
        })
    }

    /// Reads an array's element type, count and elements for `key`.
    fn array(&mut self, key: &str) -> Result<Array> {
        let ty_offset = self.offset();
        let elem = self.u32(&|| format!("array element type of metadata key '{key}'"))?;
        let elem_size: u64 = match elem {
            type_id::U8 | type_id::I8 | type_id::BOOL => 1,
            type_id::U16 | type_id::I16 => 2,
            type_id::U32 | type_id::I32 | type_id::F32 => 4,
            type_id::U64 | type_id::I64 | type_id::F64 => 8,
            // Each string is at least its u64 length.
            type_id::STRING => 8,
            type_id::ARRAY => {
                return Err(GgufError::NestedArray {
                    key: key.to_owned(),
                    offset: ty_offset,
                })
            }
            id => {
                return Err(GgufError::UnknownArrayType {
                    key: key.to_owned(),
                    offset: ty_offset,
                    id,
                })
            }
        };
        let what = || format!("array of metadata key '{key}'");
        let count = self.count(elem_size, &|| format!("item count of {}", what()))?;
        if elem == type_id::STRING {
            // count <= remaining / 8, so this reserves at most 3 bytes of String per file
            // byte; every item is then read with its own checks.
            let mut items = Vec::with_capacity(count as usize);
            for i in 0..count {
                items.push(self.string(MAX_STRING_LEN, &|| format!("item {i} of {}", what()))?);
            }
            return Ok(Array::String(items));
        }
        // count * elem_size <= remaining, so the product cannot overflow and the data is
        // all present; `take` checks again.
        let data = self.take(count * elem_size, &what)?;
        Ok(match elem {
            type_id::U8 => Array::U8(data.to_vec()),
            type_id::I8 => Array::I8(decode(data, i8::from_le_bytes)),
            type_id::U16 => Array::U16(decode(data, u16::from_le_bytes)),
            type_id::I16 => Array::I16(decode(data, i16::from_le_bytes)),
            type_id::U32 => Array::U32(decode(data, u32::from_le_bytes)),
            type_id::I32 => Array::I32(decode(data, i32::from_le_bytes)),
            type_id::F32 => Array::F32(decode(data, f32::from_le_bytes)),
            type_id::U64 => Array::U64(decode(data, u64::from_le_bytes)),
            type_id::I64 => Array::I64(decode(data, i64::from_le_bytes)),
            type_id::F64 => Array::F64(decode(data, f64::from_le_bytes)),
            _ => {
                // Only BOOL is left (STRING and ARRAY were handled above).
                let mut items = Vec::with_capacity(data.len());
                for (i, &byte) in data.iter().enumerate() {
                    match byte {
                        0 | 1 => items.push(byte == 1),
                        _ => {
                            return Err(GgufError::InvalidBool {
                                key: key.to_owned(),
                                offset: ty_offset + 12 + i as u64,
                                byte,
                            })
                        }
                    }
                }
                Array::Bool(items)
            }
        })
    }
}

/// Decodes little-endian `N`-byte items; `data.len()` is a multiple of `N` by construction.
fn decode<T, const N: usize>(data: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            f(a)
        })
        .collect()
}

fn version_hint(version: u32) -> &'static str {
    match version {
        0 => "",
        1 => "; version 1 used 32-bit counts, reconvert the model with a current converter",
        v if matches!(v.swap_bytes(), 2 | 3) => {
            "; the file looks big-endian, and hearth reads little-endian GGUF only"
        }
        _ => "; a newer format may need a newer hearth",
    }
}

/// Parses and validates the header of a GGUF file held in `bytes`: metadata, tensor
/// infos and the layout of tensor data. Tensor data itself is not read.
pub fn parse(bytes: &[u8]) -> Result<GgufHeader> {
    let mut c = Cursor { buf: bytes, pos: 0 };
    let magic: [u8; 4] = c.bytes(&|| "magic".into())?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic });
    }
    let version = c.u32(&|| "version".into())?;
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion {
            version,
            hint: version_hint(version),
        });
    }
    let n_tensors = c.count(MIN_TENSOR_INFO_BYTES, &|| "tensor count".into())?;
    let n_kv = c.count(MIN_KV_BYTES, &|| "metadata kv count".into())?;

    // Vectors grow as entries are actually read, so memory follows the bytes present,
    // not the counts claimed.
    let mut metadata: Vec<(String, Value)> = Vec::new();
    let mut index = HashMap::new();
    for i in 0..n_kv {
        let key_offset = c.offset();
        let key = c.string(MAX_NAME_LEN, &|| format!("metadata key #{i}"))?;
        if index.contains_key(&key) {
            return Err(GgufError::DuplicateKey {
                key,
                offset: key_offset,
            });
        }
        let ty_offset = c.offset();
        let ty = c.u32(&|| format!("value type of metadata key '{key}'"))?;
        let value = c.value(ty, &key, ty_offset)?;
        check_known_key(&key, &value)?;
        index.insert(key.clone(), metadata.len());
        metadata.push((key, value));
    }
    let alignment = match index
        .get("general.alignment")
        .and_then(|&i| metadata.get(i))
    {
        Some((_, Value::U32(a))) => u64::from(*a),
        _ => DEFAULT_ALIGNMENT,
    };

    let mut tensors: Vec<TensorInfo> = Vec::new();
    let mut tensor_index = HashMap::new();
    for i in 0..n_tensors {
        let name_offset = c.offset();
        let name = c.string(MAX_NAME_LEN, &|| format!("tensor name #{i}"))?;
        if tensor_index.contains_key(&name) {
            return Err(GgufError::DuplicateTensor {
                name,
                offset: name_offset,
            });
        }
        let info = read_tensor_info(&mut c, name, alignment)?;
        tensor_index.insert(info.name.clone(), tensors.len());
        tensors.push(info);
    }

    let header_end = c.offset();
    let data_offset = align_up(header_end, alignment).ok_or_else(|| GgufError::Overflow {
        what: "data section offset (header end rounded up to the alignment)".into(),
    })?;
    let file_size = bytes.len() as u64;
    for t in &tensors {
        let start = data_offset
            .checked_add(t.offset)
            .filter(|s| s.checked_add(t.n_bytes).is_some())
            .ok_or_else(|| GgufError::Overflow {
                what: format!("tensor '{}': data offset {}", t.name, t.offset),
            })?;
        if start + t.n_bytes > file_size {
            return Err(GgufError::TensorOutOfBounds {
                tensor: t.name.clone(),
                offset: start,
                n_bytes: t.n_bytes,
                file_size,
            });
        }
    }
    check_overlaps(&tensors)?;

    Ok(GgufHeader {
        version,
        alignment,
        data_offset,
        metadata,
        index,
        tensors,
        tensor_index,
    })
}

/// Reads the rest of one tensor info (after its name) and validates its shape and offset.
fn read_tensor_info(c: &mut Cursor<'_>, name: String, alignment: u64) -> Result<TensorInfo> {
    let n_dims_offset = c.offset();
    let n_dims = c.u32(&|| format!("n_dims of tensor '{name}'"))?;
    if !(1..=4).contains(&n_dims) {
        return Err(GgufError::BadDimCount {
            tensor: name,
            offset: n_dims_offset,
            n_dims,
        });
    }
    let dims_offset = c.offset();
    let mut dims = Vec::with_capacity(4);
    for d in 0..n_dims {
        dims.push(c.u64(&|| format!("dims[{d}] of tensor '{name}'"))?);
    }
    let ty_offset = c.offset();
    let id = c.u32(&|| format!("type of tensor '{name}'"))?;
    let offset = c.u64(&|| format!("data offset of tensor '{name}'"))?;
    let ty = GgmlType::from_id(id).ok_or_else(|| GgufError::UnknownTensorType {
        tensor: name.clone(),
        offset: ty_offset,
        id,
    })?;
    let n_bytes = check_shape(&name, &dims, ty, dims_offset)?;
    if !offset.is_multiple_of(alignment) {
        return Err(GgufError::TensorMisaligned {
            tensor: name,
            offset,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        dims,
        ty,
        offset,
        n_bytes,
    })
}

/// `value` rounded up to a multiple of `alignment` (a power of two), or `None` on overflow.
pub(crate) fn align_up(value: u64, alignment: u64) -> Option<u64> {
    let mask = alignment.checked_sub(1)?;
    value.checked_add(mask).map(|v| v & !mask)
}

/// Rejects tensors whose data ranges overlap (ranges were checked to fit in the file).
fn check_overlaps(tensors: &[TensorInfo]) -> Result<()> {
    let mut sorted: Vec<&TensorInfo> = tensors.iter().collect();
    sorted.sort_by_key(|t| t.offset);
    for (a, b) in sorted.iter().zip(sorted.iter().skip(1)) {
        let a_end = a.offset.saturating_add(a.n_bytes);
        if b.offset < a_end {
            return Err(GgufError::TensorOverlap {
                first: a.name.clone(),
                first_end: a_end,
                second: b.name.clone(),
                second_start: b.offset,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(buf: &[u8]) -> Cursor<'_> {
        Cursor { buf, pos: 0 }
    }

    #[test]
    fn reads_are_checked() {
        let mut c = cursor(&[1, 0, 0, 0, 9]);
        assert_eq!(c.u32(&|| "x".into()).unwrap(), 1);
        let err = c.u32(&|| "field y".into()).unwrap_err();
        assert!(matches!(
            err,
            GgufError::Truncated {
                offset: 4,
                needed: 4,
                available: 1,
                ..
            }
        ));
        assert!(err.to_string().contains("field y"), "{err}");
    }

    #[test]
    fn counts_are_bounded_by_bytes_left() {
        let mut buf = u64::MAX.to_le_bytes().to_vec();
        buf.extend([0u8; 16]);
        let err = cursor(&buf).count(8, &|| "n".into()).unwrap_err();
        assert!(
            matches!(err, GgufError::CountTooLarge { max: 2, .. }),
            "{err}"
        );
        let mut buf = 2u64.to_le_bytes().to_vec();
        buf.extend([0u8; 16]);
        assert_eq!(cursor(&buf).count(8, &|| "n".into()).unwrap(), 2);
    }

    #[test]
    fn strings_check_limit_then_bytes() {
        let mut buf = 5u64.to_le_bytes().to_vec();
        buf.extend(b"hello");
        assert_eq!(cursor(&buf).string(5, &|| "s".into()).unwrap(), "hello");
        let err = cursor(&buf).string(4, &|| "s".into()).unwrap_err();
        assert!(matches!(err, GgufError::StringTooLong { len: 5, .. }));
        let err = cursor(&buf[..10]).string(5, &|| "s".into()).unwrap_err();
        assert!(matches!(err, GgufError::Truncated { offset: 8, .. }));
        buf[8] = 0xff;
        let err = cursor(&buf).string(5, &|| "s".into()).unwrap_err();
        assert!(matches!(err, GgufError::InvalidUtf8 { offset: 8, .. }));
    }

    #[test]
    fn align_up_cases() {
        assert_eq!(align_up(0, 32), Some(0));
        assert_eq!(align_up(1, 32), Some(32));
        assert_eq!(align_up(64, 32), Some(64));
        assert_eq!(align_up(u64::MAX, 32), None);
        assert_eq!(align_up(5, 0), None);
    }
}
