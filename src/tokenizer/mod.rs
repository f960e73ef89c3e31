//! Tokenizers built from the vocabulary inside a GGUF file, exact against llama.cpp.
//!
//! [`Tokenizer::from_gguf`] reads `tokenizer.ggml.*` ([`vocab`]) and builds a HF
//! [`tokenizers::Tokenizer`]: a BPE model with merges derived from piece scores for
//! SentencePiece vocabularies ([`spm`]), or BPE with the merges of the file and the
//! pre-tokenizer regexes llama.cpp picks for `tokenizer.ggml.pre` ([`bpe`]): byte-level
//! for `gpt2` vocabularies, over UTF-8 with `▁` spaces and byte fallback for Gemma 4.
//! WordPiece (`bert`, [`wpm`]) and Unigram (`t5`, [`ugm`]) vocabularies follow
//! llama.cpp's own algorithms, written here, as HF's differ from them in details.
//! Special tokens are split out of the text here, before the HF tokenizer sees it, the
//! way llama.cpp does it: longest first, user-defined tokens always, control tokens only
//! when asked. Output text comes
//! from [`Tokenizer::token_bytes`]; [`StreamDecoder`] turns a token stream into whole
//! UTF-8 characters.

pub(crate) mod bpe;
mod spm;
mod stream;
pub mod template;
#[cfg(test)]
mod tests;
mod ugm;
mod vocab;
mod wpm;
mod wpm_unicode;

pub use stream::StreamDecoder;
pub use template::{ChatTemplate, Message, RenderOptions, TemplateError, TemplateOrigin, ToolCall};

use crate::gguf::{GgufError, GgufHeader};
use std::ops::Range;
use vocab::{attr, Kind, Vocab};

/// Why a vocabulary could not be loaded or a text not tokenized.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A tokenizer key has the wrong type or an out-of-range value.
    #[error("bad tokenizer metadata: {0}")]
    Gguf(#[from] GgufError),
    /// A key the vocabulary needs is absent.
    #[error("the GGUF file has no '{key}', which this vocabulary needs")]
    Missing { key: &'static str },
    /// `tokenizer.ggml.model` names an algorithm hearth does not implement.
    #[error("tokenizer model '{model}' is not supported (hearth reads 'llama' (SentencePiece), 'gpt2' (byte-level BPE), 'gemma4', 'bert' (WordPiece) and 't5' (Unigram) vocabularies)")]
    UnsupportedModel { model: String },
    /// `tokenizer.ggml.pre` names a pre-tokenizer hearth does not implement.
    #[error("pre-tokenizer '{pre}' (tokenizer.ggml.pre) is not supported")]
    UnsupportedPre { pre: String },
    /// A per-token array does not have one entry per token.
    #[error("'{key}' has {len} entries but the vocabulary has {n_tokens} tokens")]
    LengthMismatch {
        key: &'static str,
        len: usize,
        n_tokens: usize,
    },
    /// A token id key points outside the vocabulary.
    #[error("'{key}' = {id} is outside the vocabulary of {n_tokens} tokens")]
    IdOutOfRange {
        key: &'static str,
        id: u64,
        n_tokens: usize,
    },
    /// The token list is empty or absurdly long.
    #[error("the vocabulary has {n_tokens} tokens")]
    BadVocabSize { n_tokens: usize },
    /// The HF tokenizer could not be built from the vocabulary.
    #[error("building the tokenizer: {0}")]
    Build(String),
    /// The HF tokenizer failed on a text.
    #[error("tokenizing: {0}")]
    Encode(String),
}

/// A piece of input after special tokens are split out.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Fragment {
    Text(Range<usize>),
    Token(u32),
}

/// C's `isspace`, which llama.cpp uses to strip around special tokens.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// What turns plain text into ids.
enum Engine {
    /// SentencePiece and BPE vocabularies, through the HF tokenizers crate.
    Hf(Box<tokenizers::Tokenizer>),
    /// WordPiece (`bert`).
    Wpm(wpm::Wpm),
    /// Unigram (`t5`).
    Ugm(ugm::Ugm),
}

/// A GGUF vocabulary's tokenizer and detokenizer.
pub struct Tokenizer {
    vocab: Vocab,
    engine: Engine,
    /// Byte-level BPE: the byte each mapped character stands for.
    byte_of_char: Option<std::collections::HashMap<char, u8>>,
    /// Gemma 4: a run of newlines that is itself a token is taken whole, unmerged.
    newline_runs: bool,
}

// Shared between server threads.
#[cfg(not(target_arch = "wasm32"))]
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tokenizer>();
};

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Tokenizer {
    /// Builds the tokenizer from a file's `tokenizer.ggml.*` metadata.
    pub fn from_gguf(h: &GgufHeader) -> Result<Self, TokenizerError> {
        let vocab = Vocab::from_gguf(h)?;
        let (engine, byte_of_char, newline_runs) = match &vocab.kind {
            Kind::Spm => (Engine::Hf(Box::new(spm::build(&vocab)?)), None, false),
            Kind::Wpm => (Engine::Wpm(wpm::Wpm::new(&vocab, h)?), None, false),
            Kind::Ugm => (Engine::Ugm(ugm::Ugm::new(&vocab, h)?), None, false),
            Kind::Bpe { pre } => {
                let p = bpe::PreTokenizer::for_name(pre)
                    .ok_or_else(|| TokenizerError::UnsupportedPre { pre: pre.clone() })?;
                let map = p.byte_level.then(|| {
                    bpe::byte_chars()
                        .iter()
                        .enumerate()
                        .map(|(b, &c)| (c, b as u8))
                        .collect()
                });
                (
                    Engine::Hf(Box::new(bpe::build(&vocab, &p)?)),
                    map,
                    !p.byte_level,
                )
            }
        };
        Ok(Self {
            vocab,
            engine,
            byte_of_char,
            newline_runs,
        })
    }

    /// Splits `text` around special tokens: each special token in turn (longest first)
    /// is cut out of every text fragment left so far.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let mut frags = vec![Fragment::Text(0..text.len())];
        if text.is_empty() {
            return frags;
        }
        let bytes = text.as_bytes();
        for &id in &self.vocab.specials {
            let a = self.vocab.attrs[id as usize];
            if !parse_special && a & (attr::CONTROL | attr::UNKNOWN) != 0 {
                continue;
            }
            let pat = self.vocab.tokens[id as usize].as_str();
            if !text.contains(pat) {
                continue;
            }
            let mut out = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let Fragment::Text(r) = f else {
                    out.push(f);
                    continue;
                };
                let (mut start, end) = (r.start, r.end);
                while let Some(m) = text[start..end].find(pat) {
                    let m = start + m;
                    let mut left_end = m;
                    if a & attr::LSTRIP != 0 {
                        while left_end > start && is_c_space(bytes[left_end - 1]) {
                            left_end -= 1;
                        }
                    }
                    if left_end > start {
                        out.push(Fragment::Text(start..left_end));
                    }
                    out.push(Fragment::Token(id));
                    start = m + pat.len();
                    if a & attr::RSTRIP != 0 {
                        while start < end && is_c_space(bytes[start]) {
                            start += 1;
                        }
                    }
                }
                if start < end {
                    out.push(Fragment::Text(start..end));
                }
            }
            frags = out;
        }
        frags
    }

    /// Runs the HF tokenizer on one plain-text fragment.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        if text.is_empty() {
            return Ok(());
        }
        if self.newline_runs {
            let mut rest = text;
            while !rest.is_empty() {
                let nl = rest.starts_with('\n');
                let end = rest.find(|c: char| (c == '\n') != nl).unwrap_or(rest.len());
                let (run, tail) = rest.split_at(end);
                match self.vocab.text_to_id.get(run) {
                    Some(&id) if nl => out.push(id),
                    _ => self.encode_hf(run, out)?,
                }
                rest = tail;
            }
            return Ok(());
        }
        self.encode_hf(text, out)
    }

    fn encode_hf(&self, text: &str, out: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let hf = match &self.engine {
            Engine::Hf(hf) => hf,
            Engine::Wpm(w) => {
                w.encode(&self.vocab, text, out);
                return Ok(());
            }
            Engine::Ugm(u) => {
                u.encode(&self.vocab, text, out);
                return Ok(());
            }
        };
        let enc = hf
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        out.extend_from_slice(enc.get_ids());
        Ok(())
    }

    /// add_special: prepend BOS / append EOS per the vocab's flags (WordPiece: [CLS] and
    /// [SEP]). parse_special: control-token spellings in `text` become those tokens.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let v = &self.vocab;
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special && v.add_bos {
            out.extend(v.bos);
        }
        let frags = if text.is_empty() {
            Vec::new()
        } else {
            self.partition(text, parse_special)
        };
        // SPM prefixes a space to the text at the start and after each special token.
        let space_prefix = v.kind == Kind::Spm && v.add_space_prefix;
        let mut after_special = true;
        let mut buf = String::new();
        for f in frags {
            match f {
                Fragment::Token(id) => {
                    out.push(id);
                    after_special = true;
                }
                Fragment::Text(r) if space_prefix && after_special => {
                    buf.clear();
                    buf.push(' ');
                    buf.push_str(&text[r]);
                    self.encode_plain(&buf, &mut out)?;
                    after_special = false;
                }
                Fragment::Text(r) => {
                    self.encode_plain(&text[r], &mut out)?;
                    after_special = false;
                }
            }
        }
        if add_special && v.kind == Kind::Wpm {
            // llama.cpp ends a WordPiece text with [SEP] and never with EOS.
            if v.add_sep {
                out.extend(v.sep);
            }
        } else if add_special && v.add_eos {
            out.extend(v.eos);
        }
        Ok(out)
    }

    /// The bytes a token stands for in output text (▁ -> space, <0x0A> -> 0x0A, byte-level BPE unmapped). Control tokens give their text only if `special` is true, else empty.
    pub fn token_bytes(&self, id: u32, special: bool) -> Vec<u8> {
        let v = &self.vocab;
        let (Some(text), Some(&a)) = (v.tokens.get(id as usize), v.attrs.get(id as usize)) else {
            return Vec::new();
        };
        if a & (attr::CONTROL | attr::UNKNOWN) != 0 {
            return if special {
                text.as_bytes().to_vec()
            } else {
                Vec::new()
            };
        }
        if a & attr::USER_DEFINED != 0 {
            return text.as_bytes().to_vec();
        }
        if a & attr::BYTE != 0 {
            let hex = text
                .strip_prefix("<0x")
                .and_then(|t| t.strip_suffix('>'))
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            return match hex {
                Some(b) => vec![b],
                None => text.as_bytes().to_vec(),
            };
        }
        if a & attr::NORMAL == 0 {
            return Vec::new();
        }
        match &self.byte_of_char {
            None => text.replace(spm::SPACE, " ").into_bytes(),
            Some(map) => {
                let mut out = Vec::with_capacity(text.len());
                for c in text.chars() {
                    match map.get(&c) {
                        Some(&b) => out.push(b),
                        None => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
                out
            }
        }
    }

    /// The text of `ids` (lossy UTF-8). Like llama.cpp's detokenizer, the space an SPM
    /// or Unigram vocabulary prefixes to the text is dropped from the first token.
    /// WordPiece text loses the space that starts its first word, and spaces before
    /// punctuation go as llama.cpp's `clean_up_tokenization_spaces` removes them.
    pub fn decode(&self, ids: &[u32], special: bool) -> String {
        let mut bytes = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.token_bytes(id, special);
            let strip = i == 0 && self.vocab.add_space_prefix && piece.first() == Some(&b' ');
            bytes.extend_from_slice(&piece[strip as usize..]);
        }
        if self.vocab.kind == Kind::Wpm {
            if bytes.first() == Some(&b' ') {
                bytes.remove(0);
            }
            bytes = wpm::clean_spaces(&bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The raw vocabulary string of `id`.
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.tokens.get(id as usize).map(String::as_str)
    }

    /// The id whose vocabulary string is exactly `text`.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.vocab.text_to_id.get(text).copied()
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab.tokens.len()
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }

    /// The unknown token, where the vocabulary has one.
    pub fn unk(&self) -> Option<u32> {
        self.vocab.unk
    }

    /// Whether `encode(.., add_special = true, ..)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// Whether `encode(.., add_special = true, ..)` appends EOS.
    pub fn add_eos(&self) -> bool {
        self.vocab.add_eos
    }

    /// End-of-generation: EOS, EOT and the usual end-of-turn tokens present in the vocab (<end_of_turn>, <|eot_id|>, <|im_end|>, <|end|>, <|endoftext|> ...).
    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }

    /// All end-of-generation ids, ascending.
    pub fn eog_ids(&self) -> Vec<u32> {
        self.vocab.eog.clone()
    }

    /// Whether `id` is a control token (BOS, EOS, turn markers, ...).
    pub fn is_control(&self, id: u32) -> bool {
        self.vocab
            .attrs
            .get(id as usize)
            .is_some_and(|a| a & attr::CONTROL != 0)
    }

    /// e.g. "SentencePiece (llama), 262144 tokens" / "byte-level BPE (gpt2, pre llama-bpe), 128256 tokens"
    pub fn describe(&self) -> String {
        let n = self.vocab_size();
        match &self.vocab.kind {
            Kind::Spm => format!("SentencePiece (llama), {n} tokens"),
            Kind::Bpe { pre } if self.byte_of_char.is_some() => {
                format!("byte-level BPE (gpt2, pre {pre}), {n} tokens")
            }
            Kind::Bpe { pre } => {
                format!("BPE over UTF-8 with \u{2581} spaces (pre {pre}), {n} tokens")
            }
            Kind::Wpm => format!("WordPiece (bert), {n} tokens"),
            Kind::Ugm => format!("Unigram (t5), {n} tokens"),
        }
    }

    /// The HF tokenizer for plain text (special tokens are not registered in it); `None`
    /// for WordPiece and Unigram vocabularies, which hearth tokenizes itself.
    pub fn inner(&self) -> Option<&tokenizers::Tokenizer> {
        match &self.engine {
            Engine::Hf(hf) => Some(hf),
            Engine::Wpm(_) | Engine::Ugm(_) => None,
        }
    }
}
