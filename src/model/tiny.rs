//! Tiny random-weight GGUF models of every architecture, for tests: full upstream
//! metadata, a minimal SentencePiece-style vocabulary and every tensor
//! [`expected_tensors`] lists, with weights scaled so activations stay O(1) through the
//! layers (matrices ~ N(0, 1/cols), norm weights ~ 1). The file is built in memory, so
//! tests run without any download.

use super::config::ModelConfig;
use super::tensors::expected_tensors;
use super::Arch;
use crate::gguf::{parse, Array, GgufWriter, Value};
use crate::quant::{quantize, GgmlType, Rng};

/// The shape of a tiny model and how its weights are stored.
#[derive(Clone, Debug, PartialEq)]
pub struct TinySpec {
    /// Architecture family.
    pub arch: Arch,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Embedding width.
    pub hidden: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (divides `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Feed-forward inner width.
    pub ffn: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Context length written to the metadata.
    pub context: usize,
    /// Sliding window of local layers (written by architectures that have one).
    pub sliding_window: Option<usize>,
    /// RoPE frequency base.
    pub rope_base: f32,
    /// Type of the big matrices (embeddings and projections); norms and biases are F32.
    pub weight_type: GgmlType,
    /// Seed of the weights.
    pub seed: u64,
    /// Leave out `output.weight`, so the head reuses `token_embd`.
    pub tied_output: bool,
    /// Write `rope_freqs.weight` (RoPE frequency divisors), which any architecture may carry.
    pub rope_freqs: bool,
}

/// Tokens and llama.cpp token types of a tiny SentencePiece vocabulary of `n` tokens:
/// `<unk>`, `<s>`, `</s>`, then (when `n` leaves room) the 256 `<0xNN>` byte tokens, `▁`,
/// lowercase letters, digits and a little punctuation, so any text tokenizes; the rest
/// are inert `<tokN>` pieces.
fn tiny_vocab(n: usize) -> (Vec<String>, Vec<i32>) {
    // 1 = normal, 2 = unknown, 3 = control, 6 = byte (llama.cpp's token types).
    let mut tokens: Vec<String> = vec!["<unk>".into(), "<s>".into(), "</s>".into()];
    let mut types = vec![2, 3, 3];
    if n >= tokens.len() + 256 {
        tokens.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
        types.extend([6; 256]);
        let pieces = std::iter::once('\u{2581}')
            .chain('a'..='z')
            .chain('0'..='9');
        for c in pieces.chain(".,!?".chars()) {
            tokens.push(c.to_string());
            types.push(1);
        }
    }
    tokens.truncate(n);
    types.truncate(n);
    for i in tokens.len()..n {
        tokens.push(format!("<tok{i}>"));
        types.push(1);
    }
    (tokens, types)
}

/// One tensor of a tiny model, ready for [`GgufWriter::add_tensor`].
#[derive(Clone, Debug)]
pub struct TinyTensor {
    /// Upstream name.
    pub name: String,
    /// GGUF dims (dim 0 fastest).
    pub dims: Vec<u64>,
    /// Storage type.
    pub ty: GgmlType,
    /// Raw data, `ty.bytes_for(elements)` bytes.
    pub data: Vec<u8>,
}

impl TinySpec {
    /// Small defaults with GQA (4 query heads on 2 KV heads) and Q8_0 matrices, then
    /// the architecture's own (Gemma 3: 6 layers and a window of 8, so 5 sliding layers
    /// and one global (`il % 6 == 5`) are exercised by any test longer than 8 tokens).
    pub fn new(arch: Arch) -> Self {
        let mut s = Self {
            arch,
            n_layers: 2,
            hidden: 64,
            n_heads: 4,
            n_kv_heads: 2,
            head_dim: 16,
            ffn: 128,
            vocab: 300,
            context: 1024,
            sliding_window: None,
            rope_base: 1e4,
            weight_type: GgmlType::Q8_0,
            seed: 1,
            tied_output: false,
            rope_freqs: false,
        };
        (arch.def().tiny)(&mut s);
        s
    }

    /// Sets the matrix type and, for 256-element block types (K-quants), widens the
    /// dimensions that are row lengths (hidden, q_dim, ffn) to 256.
    pub fn with_weight_type(mut self, ty: GgmlType) -> Self {
        self.weight_type = ty;
        if ty.block_elems() > 32 {
            self.hidden = self.hidden.max(256);
            self.head_dim = self.head_dim.max(256 / self.n_heads);
            self.ffn = self.ffn.max(256);
        }
        self
    }

    /// The metadata of the file: `general.*`, `{arch}.*` and `tokenizer.ggml.*` keys.
    pub fn metadata(&self) -> Vec<(String, Value)> {
        let a = self.arch.name();
        let u = |v: usize| Value::U32(v as u32);
        let mut m = vec![
            ("general.architecture".into(), Value::String(a.into())),
            ("general.name".into(), Value::String(format!("tiny {a}"))),
            (format!("{a}.block_count"), u(self.n_layers)),
            (format!("{a}.context_length"), u(self.context)),
            (format!("{a}.embedding_length"), u(self.hidden)),
            (format!("{a}.feed_forward_length"), u(self.ffn)),
            (format!("{a}.attention.head_count"), u(self.n_heads)),
            (format!("{a}.attention.head_count_kv"), u(self.n_kv_heads)),
            (format!("{a}.attention.key_length"), u(self.head_dim)),
            (format!("{a}.attention.value_length"), u(self.head_dim)),
            (format!("{a}.rope.dimension_count"), u(self.head_dim)),
            (
                format!("{a}.attention.layer_norm_rms_epsilon"),
                Value::F32(1e-6),
            ),
        ];
        m.push((format!("{a}.rope.freq_base"), Value::F32(self.rope_base)));
        (self.arch.def().tiny_metadata)(self, &mut m);
        let (bos, eos) = (1usize, 2usize);
        let (tokens, types) = tiny_vocab(self.vocab);
        let scores = (0..self.vocab).map(|i| -(i as f32)).collect();
        m.extend([
            ("tokenizer.ggml.model".into(), Value::String("llama".into())),
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array(Array::String(tokens)),
            ),
            (
                "tokenizer.ggml.scores".into(),
                Value::Array(Array::F32(scores)),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(Array::I32(types)),
            ),
            ("tokenizer.ggml.bos_token_id".into(), u(bos)),
            ("tokenizer.ggml.eos_token_id".into(), u(eos)),
        ]);
        m
    }

    /// The configuration hearth reads back from this spec's metadata.
    ///
    /// # Panics
    /// When the spec is not a valid model (e.g. `n_heads` not a multiple of `n_kv_heads`):
    /// a bug in the test that wrote it.
    pub fn config(&self) -> ModelConfig {
        let mut w = GgufWriter::new();
        for (k, v) in self.metadata() {
            w.add(k, v).expect("tiny metadata is well-formed");
        }
        // The vocabulary size comes from token_embd's shape, so give the header one.
        let dims = [self.hidden as u64, self.vocab as u64];
        let zeros = vec![0u8; self.hidden * self.vocab * 4];
        w.add_tensor("token_embd.weight", &dims, GgmlType::F32, zeros)
            .expect("tiny token_embd is well-formed");
        let h = parse(&w.to_bytes()).expect("tiny header parses");
        ModelConfig::from_gguf(&h).expect("tiny spec is a valid model")
    }

    /// Every tensor of the model with random weights.
    ///
    /// # Panics
    /// When a matrix row (hidden, q_dim or ffn) is not whole blocks of `weight_type`, or
    /// `weight_type` has no quantizer: see [`TinySpec::with_weight_type`].
    pub fn tensors(&self) -> Vec<TinyTensor> {
        let cfg = self.config();
        let mut rng = Rng::new(self.seed);
        let mut out = Vec::new();
        for s in expected_tensors(&cfg) {
            // Optional tensors: an untied head, RoPE factors when asked for, and always
            // the biases and token types BERT-style files carry.
            let include = s.required
                || (s.name == "output.weight" && !self.tied_output)
                || (s.name == "rope_freqs.weight" && self.rope_freqs)
                || s.name.ends_with(".bias")
                || s.name == "token_types.weight";
            if !include {
                continue;
            }
            let n: u64 = s.dims.iter().product();
            let vals: Vec<f32> = if s.name == "rope_freqs.weight" {
                // Divisors of the rotation frequencies, as Llama 3.1's long-context scaling.
                (0..n).map(|_| rng.uniform(1.0, 8.0)).collect()
            } else if s.name.ends_with("norm.weight") {
                (0..n).map(|_| 1.0 + 0.1 * rng.normal()).collect()
            } else if s.name.ends_with(".bias") {
                (0..n).map(|_| 0.1 * rng.normal()).collect()
            } else {
                // N(0, 1/cols): a normalized input gives outputs of RMS ~1.
                let std = 1.0 / (s.dims[0] as f32).sqrt();
                (0..n).map(|_| std * rng.normal()).collect()
            };
            let ty = if s.float_only {
                GgmlType::F32
            } else {
                self.weight_type
            };
            let mut data = Vec::new();
            quantize(ty, &vals, &mut data).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            out.push(TinyTensor {
                name: s.name,
                dims: s.dims,
                ty,
                data,
            });
        }
        out
    }

    /// The whole GGUF file.
    pub fn build(&self) -> Vec<u8> {
        assemble(self.metadata(), self.tensors())
    }
}

/// Writes metadata and tensors into GGUF bytes (tests use it to build broken variants).
///
/// # Panics
/// On duplicate keys or names, or data of the wrong size: a bug in the caller.
pub fn assemble(metadata: Vec<(String, Value)>, tensors: Vec<TinyTensor>) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in metadata {
        w.add(k, v).expect("metadata is well-formed");
    }
    for t in tensors {
        w.add_tensor(t.name, &t.dims, t.ty, t.data)
            .expect("tensor data matches its shape");
    }
    w.to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;
    use crate::model::tensors::check_tensors;

    #[test]
    fn every_architecture_builds_and_passes_the_tensor_check() {
        for arch in Arch::ALL {
            for ty in [GgmlType::F32, GgmlType::Q8_0, GgmlType::Q4_K] {
                let spec = TinySpec::new(arch).with_weight_type(ty);
                let f = GgufFile::from_bytes(spec.build()).unwrap();
                let cfg = ModelConfig::from_gguf(f.header()).unwrap();
                assert_eq!(cfg, spec.config());
                assert_eq!(cfg.vocab, spec.vocab);
                check_tensors(&cfg, f.header()).unwrap();
                assert_eq!(f.tensor("output.weight").is_some(), !spec.tied_output);
            }
        }
    }

    #[test]
    fn tiny_vocabulary_tokenizes_any_text() {
        let f = GgufFile::from_bytes(TinySpec::new(Arch::Llama).build()).unwrap();
        let tok = crate::tokenizer::Tokenizer::from_gguf(f.header()).unwrap();
        assert_eq!(tok.vocab_size(), 300);
        let text = "hello, world 42! Ünïcode 😀";
        let ids = tok.encode(text, true, false).unwrap();
        assert_eq!(ids[0], 1);
        assert!(ids.iter().all(|&i| (i as usize) < 300));
        assert_eq!(tok.decode(&ids[1..], false), text);
    }
}
