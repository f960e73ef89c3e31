//! The one error type of the GGUF reader and writer. Every variant carries the context a
//! user needs to act on it: the byte offset in the file, the metadata key or tensor name,
//! and what was expected. Messages are one line and name the field at fault.

use std::path::PathBuf;

use crate::quant::GgmlType;

/// Everything that can go wrong reading, validating or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened or mapped.
    #[error("cannot read GGUF file '{}': {source}", path.display())]
    Io {
        /// The file we tried to read.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error("bad magic \"{}\" at offset 0: not a GGUF file (expected \"GGUF\")", found.escape_ascii())]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },

    /// A header version other than 2 or 3.
    #[error("GGUF version {version} is not supported: hearth reads versions 2 and 3{hint}")]
    UnsupportedVersion {
        /// The version field as read (little-endian).
        version: u32,
        /// Extra advice, e.g. that the file looks big-endian; empty when none applies.
        hint: &'static str,
    },

    /// The file ends in the middle of a field.
    #[error("{what} at offset {offset}: needs {needed} bytes but only {available} are left (file truncated?)")]
    Truncated {
        /// The field being read.
        what: String,
        /// Where the field starts.
        offset: u64,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },

    /// A count (tensors, metadata entries, array items) larger than the bytes left could hold.
    #[error("{what} at offset {offset} is {count}, but the {remaining} bytes left can hold at most {max}")]
    CountTooLarge {
        /// The count being read, e.g. "tensor count".
        what: String,
        /// Where the count is stored.
        offset: u64,
        /// The count as read.
        count: u64,
        /// The most the remaining bytes could hold.
        max: u64,
        /// Bytes left after the count.
        remaining: u64,
    },

    /// A string longer than hearth's limit for that field.
    #[error("{what} at offset {offset}: length {len} exceeds the limit of {limit} bytes")]
    StringTooLong {
        /// The string being read, e.g. "tensor name #3".
        what: String,
        /// Where the length is stored.
        offset: u64,
        /// The length as read.
        len: u64,
        /// The limit for this kind of string.
        limit: u64,
    },

    /// A string that is not valid UTF-8.
    #[error("{what} at offset {offset}: not valid UTF-8")]
    InvalidUtf8 {
        /// The string being read.
        what: String,
        /// Where the string's bytes start.
        offset: u64,
    },

    /// A boolean stored as a byte other than 0 or 1.
    #[error(
        "value of metadata key '{key}' at offset {offset}: bool byte is {byte}, expected 0 or 1"
    )]
    InvalidBool {
        /// The key whose value (or array item) is bad.
        key: String,
        /// Where the byte is.
        offset: u64,
        /// The byte found.
        byte: u8,
    },

    /// A metadata value type id outside the GGUF table (0..=12).
    #[error(
        "metadata key '{key}' at offset {offset}: unknown value type id {id} (known: 0 to 12)"
    )]
    UnknownValueType {
        /// The key whose value has the bad type.
        key: String,
        /// Where the type id is stored.
        offset: u64,
        /// The type id found.
        id: u32,
    },

    /// An array element type id outside the GGUF table.
    #[error("metadata key '{key}' at offset {offset}: unknown array element type id {id} (known: 0 to 12)")]
    UnknownArrayType {
        /// The key whose array has the bad element type.
        key: String,
        /// Where the element type id is stored.
        offset: u64,
        /// The element type id found.
        id: u32,
    },

    /// An array whose elements are arrays; no real model uses them, so hearth rejects them.
    #[error("metadata key '{key}' at offset {offset}: arrays nested in arrays are not supported")]
    NestedArray {
        /// The key holding the nested array.
        key: String,
        /// Where the element type id is stored.
        offset: u64,
    },

    /// The same metadata key twice.
    #[error("duplicate metadata key '{key}' at offset {offset}")]
    DuplicateKey {
        /// The repeated key.
        key: String,
        /// Where the second occurrence starts (0 in the writer).
        offset: u64,
    },

    /// The same tensor name twice.
    #[error("duplicate tensor name '{name}' at offset {offset}")]
    DuplicateTensor {
        /// The repeated name.
        name: String,
        /// Where the second occurrence starts (0 in the writer).
        offset: u64,
    },

    /// A metadata value of the wrong type for the key or for the getter used.
    #[error("metadata key '{key}': expected {expected}, found {found}")]
    WrongType {
        /// The key.
        key: String,
        /// The type the caller or the format requires.
        expected: &'static str,
        /// The type stored in the file.
        found: &'static str,
    },

    /// An integer value that does not fit the type asked for.
    #[error("metadata key '{key}': value {value} does not fit in {expected}")]
    OutOfRange {
        /// The key.
        key: String,
        /// The value as stored, printed.
        value: String,
        /// The type asked for.
        expected: &'static str,
    },

    /// A required tensor is absent.
    #[error("tensor '{name}' is missing")]
    MissingTensor {
        /// The tensor name.
        name: String,
    },

    /// A required metadata key is absent.
    #[error("metadata key '{key}' is missing")]
    MissingKey {
        /// The key.
        key: String,
    },

    /// `general.alignment` is 0, not a power of two, or above 65536.
    #[error("metadata key 'general.alignment': value {value} is invalid: {reason}")]
    BadAlignment {
        /// The alignment found.
        value: u64,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// A tensor with fewer than 1 or more than 4 dimensions.
    #[error("tensor '{tensor}' at offset {offset}: n_dims is {n_dims}, expected 1 to 4")]
    BadDimCount {
        /// The tensor name.
        tensor: String,
        /// Where n_dims is stored.
        offset: u64,
        /// The count found.
        n_dims: u32,
    },

    /// A tensor dimension that is 0 or too large (negative as a signed 64-bit value).
    #[error("tensor '{tensor}' at offset {offset}: dims[{index}] = {value} {reason}")]
    BadDim {
        /// The tensor name.
        tensor: String,
        /// Where the dimension is stored.
        offset: u64,
        /// Which dimension (0 is the fastest-varying).
        index: usize,
        /// The dimension as read.
        value: u64,
        /// Why it is rejected.
        reason: &'static str,
    },

    /// Size or offset arithmetic that does not fit in 64 bits (or in 63 for element counts).
    #[error("{what}: size arithmetic overflows")]
    Overflow {
        /// What was being computed, naming the tensor or field.
        what: String,
    },

    /// A tensor whose rows are not a whole number of blocks of its type.
    #[error("tensor '{tensor}': row length dims[0] = {row_len} is not a multiple of the {ty} block size {block}")]
    RowNotBlockMultiple {
        /// The tensor name.
        tensor: String,
        /// dims[0].
        row_len: u64,
        /// The tensor type.
        ty: GgmlType,
        /// Elements per block of that type.
        block: u64,
    },

    /// A tensor type id hearth does not know.
    #[error("tensor '{tensor}' at offset {offset}: unknown or unsupported tensor type id {id}")]
    UnknownTensorType {
        /// The tensor name.
        tensor: String,
        /// Where the type id is stored.
        offset: u64,
        /// The type id found.
        id: u32,
    },

    /// A tensor whose data starts at an offset that is not a multiple of the alignment.
    #[error(
        "tensor '{tensor}': data offset {offset} is not a multiple of the alignment {alignment}"
    )]
    TensorMisaligned {
        /// The tensor name.
        tensor: String,
        /// The offset relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },

    /// A tensor whose data runs past the end of the file.
    #[error("tensor '{tensor}': data [offset {offset}, {n_bytes} bytes] runs past end of file (size {file_size})")]
    TensorOutOfBounds {
        /// The tensor name.
        tensor: String,
        /// Absolute file offset where its data starts.
        offset: u64,
        /// Bytes of data.
        n_bytes: u64,
        /// The file size.
        file_size: u64,
    },

    /// Two tensors whose data ranges overlap.
    #[error("tensor '{second}' data at offset {second_start} overlaps tensor '{first}', whose data ends at {first_end}")]
    TensorOverlap {
        /// The tensor that starts first.
        first: String,
        /// End of the first tensor's data (relative to the data section).
        first_end: u64,
        /// The tensor that starts inside the first.
        second: String,
        /// Start of the second tensor's data (relative to the data section).
        second_start: u64,
    },

    /// Tensor bytes handed to the writer whose length does not match the shape and type.
    #[error(
        "tensor '{tensor}': {actual} bytes given, but {ty} with dims {dims:?} needs {expected}"
    )]
    TensorSizeMismatch {
        /// The tensor name.
        tensor: String,
        /// The tensor type.
        ty: GgmlType,
        /// The dims given.
        dims: Vec<u64>,
        /// Bytes the shape needs.
        expected: u64,
        /// Bytes given.
        actual: u64,
    },
}
