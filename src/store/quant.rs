//! The quantization label of a GGUF file, for `hearth list` and `hearth show`.

use crate::gguf::GgufFile;

/// The quantization label of a GGUF file: llama.cpp's name for `general.file_type` when
/// the file records one, else the type holding the most tensor bytes.
pub fn quantization(f: &GgufFile) -> String {
    if let Ok(Some(ft)) = f.get_u32("general.file_type") {
        if let Some(name) = file_type_name(ft) {
            return name.to_string();
        }
    }
    let mut by_type: Vec<(crate::quant::GgmlType, u64)> = Vec::new();
    for t in &f.tensors {
        match by_type.iter_mut().find(|(ty, _)| *ty == t.ty) {
            Some((_, n)) => *n += t.n_bytes,
            None => by_type.push((t.ty, t.n_bytes)),
        }
    }
    by_type
        .iter()
        .max_by_key(|(_, n)| *n)
        .map(|(ty, _)| ty.name().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// llama.cpp's `LLAMA_FTYPE_MOSTLY_*` names for `general.file_type`.
fn file_type_name(ft: u32) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_types() {
        assert_eq!(file_type_name(15), Some("Q4_K_M"));
        assert_eq!(file_type_name(4), None);
    }
}
