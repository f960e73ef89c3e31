//! hearth's CPU dequantizers against an independent decoder: gguf-py's NumPy
//! `gguf.quants.dequantize`, run by `scripts/gen-quant-fixtures.py` over random blocks.
//! Both compute in f32 in the same order, so results should agree bit for bit; the bound
//! only allows for a last-bit difference in how a product is rounded.

use hearth::quant::{dequantize_to_vec, GgmlType};
use std::path::PathBuf;

const TYPES: [&str; 15] = [
    "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
    "IQ4_NL", "IQ4_XS", "MXFP4",
];

/// Relative bound: about 8 ulp of f32, far below any layout mistake (which moves values
/// by whole quant steps).
const REL_TOL: f32 = 1e-6;

fn fixture(name: &str) -> Vec<u8> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        "quant",
        name,
    ]
    .iter()
    .collect();
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with scripts/gen-quant-fixtures.py)",
            path.display()
        )
    })
}

fn check(name: &str) -> Result<(), String> {
    let ty = GgmlType::from_name(name).ok_or(format!("unknown type {name}"))?;
    let raw = fixture(&format!("{name}.raw"));
    let want: Vec<f32> = fixture(&format!("{name}.f32"))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let got = dequantize_to_vec(ty, &raw).map_err(|e| format!("{name}: {e}"))?;
    if got.len() != want.len() {
        return Err(format!(
            "{name}: {} values, gguf-py gave {}",
            got.len(),
            want.len()
        ));
    }
    // The element with the largest relative error, for the failure message.
    let mut worst = (0usize, 0.0f32);
    let mut exact = 0usize;
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        let rel = (g - w).abs() / w.abs().max(f32::MIN_POSITIVE);
        if g.to_bits() == w.to_bits() {
            exact += 1;
        } else if rel > worst.1 || rel.is_nan() {
            worst = (i, rel);
        }
    }
    let (i, rel) = worst;
    if rel > REL_TOL || rel.is_nan() {
        let be = ty.block_elems();
        return Err(format!(
            "{name}: element {i} (block {}, index {}) is {} but gguf-py says {} \
             (relative error {rel:.2e}; {exact}/{} exact)",
            i / be,
            i % be,
            got[i],
            want[i],
            got.len()
        ));
    }
    Ok(())
}

#[test]
fn every_type_matches_gguf_py() {
    let failures: Vec<String> = TYPES.iter().filter_map(|t| check(t).err()).collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn fixtures_cover_every_block_type_gguf_py_decodes() {
    // Q8_K and F32 are the only types without a fixture: gguf-py has no Q8_K decoder and
    // F32 is a plain copy.
    for ty in GgmlType::ALL {
        let covered = TYPES.contains(&ty.name());
        assert_eq!(
            covered,
            !matches!(ty, GgmlType::F32 | GgmlType::Q8_K),
            "{ty}"
        );
    }
}
