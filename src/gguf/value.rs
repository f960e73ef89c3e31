//! Metadata values: the thirteen GGUF value types, typed arrays of each scalar type, their
//! type ids and a short human-readable rendering for dumps and error messages.
//!
//! Arrays nested in arrays are allowed by the format but no real model uses them, so
//! [`Array`] has no variant for them and the reader rejects them with a clear error.

use std::fmt;

/// GGUF value type ids as stored in the file.
pub(crate) mod type_id {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// Type id 0.
    U8(u8),
    /// Type id 1.
    I8(i8),
    /// Type id 2.
    U16(u16),
    /// Type id 3.
    I16(i16),
    /// Type id 4.
    U32(u32),
    /// Type id 5.
    I32(i32),
    /// Type id 6.
    F32(f32),
    /// Type id 7, stored as one byte 0 or 1.
    Bool(bool),
    /// Type id 8: u64 length then UTF-8 bytes.
    String(String),
    /// Type id 9: element type id, u64 count, then the elements.
    Array(Array),
    /// Type id 10.
    U64(u64),
    /// Type id 11.
    I64(i64),
    /// Type id 12.
    F64(f64),
}

/// A metadata array; every element has the same scalar type.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    /// Elements of type id 0.
    U8(Vec<u8>),
    /// Elements of type id 1.
    I8(Vec<i8>),
    /// Elements of type id 2.
    U16(Vec<u16>),
    /// Elements of type id 3.
    I16(Vec<i16>),
    /// Elements of type id 4.
    U32(Vec<u32>),
    /// Elements of type id 5.
    I32(Vec<i32>),
    /// Elements of type id 6.
    F32(Vec<f32>),
    /// Elements of type id 7.
    Bool(Vec<bool>),
    /// Elements of type id 8.
    String(Vec<String>),
    /// Elements of type id 10.
    U64(Vec<u64>),
    /// Elements of type id 11.
    I64(Vec<i64>),
    /// Elements of type id 12.
    F64(Vec<f64>),
}

impl Value {
    /// The GGUF name of this value's type, e.g. `u32`, `string`, `array<f32>`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::U8(_) => "u8",
            Value::I8(_) => "i8",
            Value::U16(_) => "u16",
            Value::I16(_) => "i16",
            Value::U32(_) => "u32",
            Value::I32(_) => "i32",
            Value::F32(_) => "f32",
            Value::Bool(_) => "bool",
            Value::String(_) => "string",
            Value::Array(a) => a.type_name(),
            Value::U64(_) => "u64",
            Value::I64(_) => "i64",
            Value::F64(_) => "f64",
        }
    }

    /// The type id stored in the file.
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => type_id::U8,
            Value::I8(_) => type_id::I8,
            Value::U16(_) => type_id::U16,
            Value::I16(_) => type_id::I16,
            Value::U32(_) => type_id::U32,
            Value::I32(_) => type_id::I32,
            Value::F32(_) => type_id::F32,
            Value::Bool(_) => type_id::BOOL,
            Value::String(_) => type_id::STRING,
            Value::Array(_) => type_id::ARRAY,
            Value::U64(_) => type_id::U64,
            Value::I64(_) => type_id::I64,
            Value::F64(_) => type_id::F64,
        }
    }

    /// The value as an i128 when it is any integer type (not bool, not float).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }
}

impl Array {
    /// The GGUF name of this array's type, e.g. `array<string>`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Array::U8(_) => "array<u8>",
            Array::I8(_) => "array<i8>",
            Array::U16(_) => "array<u16>",
            Array::I16(_) => "array<i16>",
            Array::U32(_) => "array<u32>",
            Array::I32(_) => "array<i32>",
            Array::F32(_) => "array<f32>",
            Array::Bool(_) => "array<bool>",
            Array::String(_) => "array<string>",
            Array::U64(_) => "array<u64>",
            Array::I64(_) => "array<i64>",
            Array::F64(_) => "array<f64>",
        }
    }

    /// The element type id stored in the file.
    pub fn elem_type_id(&self) -> u32 {
        match self {
            Array::U8(_) => type_id::U8,
            Array::I8(_) => type_id::I8,
            Array::U16(_) => type_id::U16,
            Array::I16(_) => type_id::I16,
            Array::U32(_) => type_id::U32,
            Array::I32(_) => type_id::I32,
            Array::F32(_) => type_id::F32,
            Array::Bool(_) => type_id::BOOL,
            Array::String(_) => type_id::STRING,
            Array::U64(_) => type_id::U64,
            Array::I64(_) => type_id::I64,
            Array::F64(_) => type_id::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How many leading items `Display` shows for an array.
const SHOWN_ITEMS: usize = 5;

fn show_items<T>(
    f: &mut fmt::Formatter<'_>,
    items: &[T],
    one: impl Fn(&mut fmt::Formatter<'_>, &T) -> fmt::Result,
) -> fmt::Result {
    f.write_str("[")?;
    for (i, item) in items.iter().take(SHOWN_ITEMS).enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        one(f, item)?;
    }
    if items.len() > SHOWN_ITEMS {
        f.write_str(", ...")?;
    }
    f.write_str("]")
}

impl fmt::Display for Array {
    /// Renders as `array<T>[len] [first, few, items, ...]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] ", self.type_name(), self.len())?;
        match self {
            Array::U8(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::I8(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::U16(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::I16(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::U32(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::I32(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::F32(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::Bool(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::String(v) => show_items(f, v, |f, x| write!(f, "{x:?}")),
            Array::U64(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::I64(v) => show_items(f, v, |f, x| write!(f, "{x}")),
            Array::F64(v) => show_items(f, v, |f, x| write!(f, "{x}")),
        }
    }
}

impl fmt::Display for Value {
    /// Scalars print as themselves, strings quoted and escaped, arrays as
    /// `array<T>[len] [first, few, items, ...]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v:?}"),
            Value::Array(a) => write!(f, "{a}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_scalars_strings_and_arrays() {
        let cases: &[(Value, &str)] = &[
            (Value::U32(7), "7"),
            (Value::I8(-3), "-3"),
            (Value::F32(1.5), "1.5"),
            (Value::Bool(true), "true"),
            (Value::String("a\"b".into()), "\"a\\\"b\""),
            (Value::Array(Array::I32(vec![1, 2])), "array<i32>[2] [1, 2]"),
            (
                Value::Array(Array::String((0..7).map(|i| i.to_string()).collect())),
                "array<string>[7] [\"0\", \"1\", \"2\", \"3\", \"4\", ...]",
            ),
            (Value::Array(Array::F64(vec![])), "array<f64>[0] []"),
        ];
        for (v, want) in cases {
            assert_eq!(v.to_string(), *want, "{v:?}");
        }
    }

    #[test]
    fn type_names_and_ids() {
        assert_eq!(Value::U64(1).type_name(), "u64");
        assert_eq!(Value::U64(1).type_id(), 10);
        let a = Array::Bool(vec![true]);
        assert_eq!(a.type_name(), "array<bool>");
        assert_eq!(a.elem_type_id(), 7);
        assert_eq!(Value::Array(a).type_id(), 9);
        assert_eq!(Value::I64(-1).as_integer(), Some(-1));
        assert_eq!(Value::F32(1.0).as_integer(), None);
    }
}
