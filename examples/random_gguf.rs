//! Writes a random-weight GGUF of a real model's shape, for measuring speed where real
//! weights are out of reach (a lent GPU machine has no network). The metadata is the
//! tiny Llama's with the real dimensions; matrices get Q4_K_M's mix of types (Q6_K for
//! the head and for `attn_v`/`ffn_down` in llama.cpp's "more bits" layers, Q4_K
//! elsewhere) filled with random blocks (finite scales, every quant bit random), norms
//! are ~1. The text such a model writes is noise; its speed is the real model's.
//!
//! With a third argument, `f16`, `bf16` or `f32`, every matrix is of that float type
//! instead (values uniform in [-1, 1]): an unquantized model's speed.
//!
//! `cargo run --release --example random_gguf -- OUT.gguf
//! llama-1b|llama-3b|llama-8b|smollm2-135m [f16|bf16|f32]`

use anyhow::{bail, Context};
use hearth::gguf::GgufWriter;
use hearth::model::{expected_tensors, Arch, TinySpec};
use hearth::quant::{random_blocks, GgmlType, Rng};

/// llama.cpp's rule for which layers get more bits in Q4_K_M (`use_more_bits`).
fn more_bits(il: usize, n: usize) -> bool {
    il < n / 8 || il >= 7 * n / 8 || (il - n / 8) % 3 == 2
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage =
        "usage: random_gguf OUT.gguf llama-1b|llama-3b|llama-8b|smollm2-135m [f16|bf16|f32]";
    let out = args.next().context(usage)?;
    let mut spec = TinySpec::new(Arch::Llama);
    // (layers, hidden, heads, kv heads, ffn, tied head, vocab) of the Llama 3 family and
    // SmolLM2-135M (a llama too).
    let (layers, hidden, heads, kv, ffn, tied, vocab) = match args.next().as_deref() {
        Some("llama-1b") => (16, 2048, 32, 8, 8192, true, 128_256),
        Some("llama-3b") => (28, 3072, 24, 8, 8192, true, 128_256),
        Some("llama-8b") => (32, 4096, 32, 8, 14336, false, 128_256),
        Some("smollm2-135m") => (30, 576, 9, 3, 1536, true, 49_152),
        _ => bail!(usage),
    };
    let float = match args.next().as_deref() {
        None => None,
        Some("f16") => Some((GgmlType::F16, 1)),
        Some("bf16") => Some((GgmlType::BF16, 32)),
        Some("f32") => Some((GgmlType::F32, 0)),
        Some(_) => bail!(usage),
    };
    spec.n_layers = layers;
    spec.hidden = hidden;
    spec.n_heads = heads;
    spec.n_kv_heads = kv;
    spec.head_dim = hidden / heads;
    spec.ffn = ffn;
    spec.vocab = vocab;
    spec.context = 8192;
    spec.rope_base = 500_000.0;
    spec.tied_output = tied;
    let cfg = spec.config();
    let mut w = GgufWriter::new();
    for (k, v) in spec.metadata() {
        w.add(k, v)?;
    }
    // llama.cpp's file types: Q4_K_M 15, F16 1, BF16 32, F32 0.
    let file_type = float.map_or(15, |(_, ft)| ft);
    w.add("general.file_type", hearth::gguf::Value::U32(file_type))?;
    let mut rng = Rng::new(7);
    for (i, t) in expected_tensors(&cfg).into_iter().enumerate() {
        let untied_head = t.name == "output.weight" && !tied;
        if !t.required && !untied_head {
            continue;
        }
        let n: u64 = t.dims.iter().product();
        if t.float_only {
            let v: Vec<u8> = (0..n)
                .flat_map(|_| (1.0 + 0.1 * rng.normal()).to_le_bytes())
                .collect();
            w.add_tensor(t.name, &t.dims, GgmlType::F32, v)?;
            continue;
        }
        let il = t
            .name
            .strip_prefix("blk.")
            .and_then(|s| s.split('.').next())
            .and_then(|s| s.parse::<usize>().ok());
        let head = t.name == "output.weight" || (tied && t.name == "token_embd.weight");
        let six = head
            || (il.is_some_and(|il| more_bits(il, layers))
                && (t.name.ends_with("attn_v.weight") || t.name.ends_with("ffn_down.weight")));
        let ty = match float {
            Some((ty, _)) => ty,
            None if six => GgmlType::Q6_K,
            None => GgmlType::Q4_K,
        };
        let blocks = (n as usize) / ty.block_elems();
        w.add_tensor(t.name, &t.dims, ty, random_blocks(ty, blocks, i as u64))?;
    }
    let file = std::fs::File::create(&out).with_context(|| format!("creating {out}"))?;
    w.write_to(std::io::BufWriter::new(file))
        .with_context(|| format!("writing {out}"))?;
    eprintln!("wrote {out}");
    Ok(())
}
