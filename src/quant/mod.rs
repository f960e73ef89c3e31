//! Block formats of GGUF tensors: the type table (ids, block sizes), `#[repr(C)]` block
//! structs with size asserts, CPU dequantizers for every supported type and quantizers
//! for the types tests and `quantize` need. The CPU code here is the reference twin of the
//! GPU decoders in `shaders/lib/`.

mod blocks;
mod dequant;
mod k_quantize;
mod k_quants;
mod legacy;
mod quantize;
mod random;
pub mod rng;

pub use blocks::*;
pub use dequant::{dequantize, dequantize_to_vec};
pub use legacy::widen_to_q8_0;
pub use quantize::{can_quantize, nmse, quantize};
pub use random::random_blocks;
pub use rng::Rng;

use thiserror::Error;

/// A GGUF tensor element type (ggml's `ggml_type`), restricted to the types hearth reads.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ4_NL,
    IQ4_XS,
    MXFP4,
}

/// (type, ggml id, name, elements per block, bytes per block)
const TABLE: [(GgmlType, u32, &str, usize, usize); 17] = [
    (GgmlType::F32, 0, "F32", 1, 4),
    (GgmlType::F16, 1, "F16", 1, 2),
    (GgmlType::BF16, 30, "BF16", 1, 2),
    (GgmlType::Q4_0, 2, "Q4_0", 32, 18),
    (GgmlType::Q4_1, 3, "Q4_1", 32, 20),
    (GgmlType::Q5_0, 6, "Q5_0", 32, 22),
    (GgmlType::Q5_1, 7, "Q5_1", 32, 24),
    (GgmlType::Q8_0, 8, "Q8_0", 32, 34),
    (GgmlType::Q2_K, 10, "Q2_K", 256, 84),
    (GgmlType::Q3_K, 11, "Q3_K", 256, 110),
    (GgmlType::Q4_K, 12, "Q4_K", 256, 144),
    (GgmlType::Q5_K, 13, "Q5_K", 256, 176),
    (GgmlType::Q6_K, 14, "Q6_K", 256, 210),
    (GgmlType::Q8_K, 15, "Q8_K", 256, 292),
    (GgmlType::IQ4_NL, 20, "IQ4_NL", 32, 18),
    (GgmlType::IQ4_XS, 23, "IQ4_XS", 256, 136),
    (GgmlType::MXFP4, 39, "MXFP4", 32, 17),
];

impl GgmlType {
    /// Every type hearth knows, in table order.
    pub const ALL: [GgmlType; 17] = {
        let mut all = [GgmlType::F32; 17];
        let mut i = 0;
        while i < 17 {
            all[i] = TABLE[i].0;
            i += 1;
        }
        all
    };

    fn row(self) -> &'static (GgmlType, u32, &'static str, usize, usize) {
        // The table is in enum order, so the discriminant indexes it.
        &TABLE[self as usize]
    }

    /// Looks a type up by its ggml id; `None` for ids hearth does not support.
    pub fn from_id(id: u32) -> Option<Self> {
        TABLE.iter().find(|r| r.1 == id).map(|r| r.0)
    }

    /// Looks a type up by its name (case-insensitive, e.g. `q4_k`).
    pub fn from_name(name: &str) -> Option<Self> {
        TABLE
            .iter()
            .find(|r| r.2.eq_ignore_ascii_case(name))
            .map(|r| r.0)
    }

    /// The ggml type id stored in GGUF tensor infos.
    pub fn id(self) -> u32 {
        self.row().1
    }

    /// The upstream name, e.g. `Q4_K`.
    pub fn name(self) -> &'static str {
        self.row().2
    }

    /// Elements per block (1 for the float types).
    pub fn block_elems(self) -> usize {
        self.row().3
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        self.row().4
    }

    /// Whether this is a plain float type (F32, F16, BF16).
    pub fn is_float(self) -> bool {
        self.block_elems() == 1
    }

    /// Bytes taken by `n` elements, or `None` when `n` is not a whole number of blocks
    /// or the size overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let be = self.block_elems() as u64;
        if !n.is_multiple_of(be) {
            return None;
        }
        (n / be).checked_mul(self.block_bytes() as u64)
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors from dequantizing or quantizing a buffer.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum QuantError {
    /// The input is not a whole number of blocks, or the output has the wrong length.
    #[error("{ty}: {what}")]
    BadLength { ty: GgmlType, what: String },
    /// No quantizer is implemented for this type.
    #[error("quantizing to {0} is not supported")]
    NoQuantizer(GgmlType),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order_and_ids_are_unique() {
        for (i, row) in TABLE.iter().enumerate() {
            assert_eq!(row.0 as usize, i);
            assert_eq!(GgmlType::from_id(row.1), Some(row.0));
            assert_eq!(GgmlType::from_name(row.2), Some(row.0));
        }
        assert_eq!(GgmlType::from_id(9), None);
        assert_eq!(GgmlType::Q4_K.bytes_for(512), Some(288));
        assert_eq!(GgmlType::Q4_K.bytes_for(100), None);
    }
}
