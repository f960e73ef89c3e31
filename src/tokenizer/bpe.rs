//! Byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`): GPT-2's byte-to-character
//! map, ranked merges from `tokenizer.ggml.merges`, and the pre-tokenizer regexes that
//! llama.cpp selects by `tokenizer.ggml.pre`.

use super::vocab::Vocab;
use super::TokenizerError;
use std::collections::HashSet;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab as HfVocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

/// GPT-2's word regex as llama.cpp applies it.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
/// Llama 3's word regex, with the case-insensitive contractions spelled out.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 2: Llama 3's regex with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen 3.5: combining marks join letters.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Mistral's Tekken.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// How one `tokenizer.ggml.pre` value pre-tokenizes and what it implies.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PreTokenizer {
    /// Applied in order; each splits every piece the previous ones left, keeping both
    /// the matches and the text between them.
    pub regexes: &'static [&'static str],
    /// A word that is itself a token is not merged (Llama 3, Tekken).
    pub ignore_merges: bool,
    /// llama.cpp's default for `add_bos_token` with this pre-tokenizer.
    pub add_bos: bool,
    /// Tokens spell bytes as GPT-2's printable characters; otherwise (Gemma 4) as
    /// UTF-8 with `▁` for spaces and `<0xNN>` byte fallback.
    pub byte_level: bool,
}

impl PreTokenizer {
    const fn new(regexes: &'static [&'static str]) -> Self {
        Self {
            regexes,
            ignore_merges: false,
            add_bos: false,
            byte_level: true,
        }
    }

    /// The pre-tokenizer llama.cpp uses for `name`; `None` for names hearth lacks.
    pub fn for_name(name: &str) -> Option<Self> {
        Some(match name {
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" => Self {
                ignore_merges: true,
                add_bos: true,
                ..Self::new(&[LLAMA3])
            },
            "dbrx" | "smaug-bpe" => Self::new(&[LLAMA3]),
            "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "hunyuan" => Self::new(&[QWEN2]),
            "qwen35" => Self::new(&[QWEN35]),
            "tekken" => Self {
                ignore_merges: true,
                ..Self::new(&[TEKKEN])
            },
            "starcoder" | "refact" | "command-r" | "smollm" | "codeshell" | "exaone"
            | "minerva" => Self::new(&[r"\p{N}", GPT2]),
            "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "jina-v2-es" | "jina-v2-de" | "mpt"
            | "olmo" | "jais" | "trillion" | "gigachat" | "mellum" | "a.x-4.0" | "modern-bert" => {
                Self::new(&[GPT2])
            }
            "falcon" => Self::new(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"]),
            "deepseek-coder" => Self::new(&[
                r"[\r\n]",
                r"\s?\p{L}+",
                r"\s?\p{P}+",
                "[\u{4e00}-\u{9fa5}\u{0800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
                r"\p{N}",
            ]),
            // DeepSeek LLM's letter class is the cased letters (Lu, Ll, Lt).
            "deepseek-llm" => Self::new(&[
                r"[\r\n]",
                r"\s?[\p{Lu}\p{Ll}\p{Lt}]+",
                "\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+",
                r"\s+$",
                "[\u{4e00}-\u{9fa5}\u{0800}-\u{4e00}\u{ac00}-\u{d7ff}]+",
                r"\p{N}+",
            ]),
            "gemma4" => Self {
                add_bos: true,
                byte_level: false,
                ..Self::new(&["[^\n]+|[\n]+"])
            },
            "default" => Self::new(&[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"]),
            _ => return None,
        })
    }
}

/// GPT-2's map from bytes to printable characters: printable Latin-1 bytes stand for
/// themselves, the others take the code points from U+0100 up, in byte order.
pub(crate) fn byte_chars() -> [char; 256] {
    let mut out = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in out.iter_mut().enumerate() {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let cp = if printable {
            b as u32
        } else {
            next += 1;
            next - 1
        };
        *slot = char::from_u32(cp).expect("code points below 0x200 are chars");
    }
    out
}

fn build_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build(e.to_string())
}

/// The `tokenizer.ggml.merges` entries as pairs, first occurrence wins. Entries whose
/// parts or result are not tokens can never apply in llama.cpp either and are dropped.
fn merges(v: &Vocab) -> Vec<(String, String)> {
    let mut seen = HashSet::with_capacity(v.merges.len());
    let mut out = Vec::with_capacity(v.merges.len());
    for m in &v.merges {
        // The separator is the first space after the first byte (a part may be " ").
        let Some(p) = m.as_bytes().iter().skip(1).position(|&b| b == b' ') else {
            continue;
        };
        let (a, b) = (&m[..p + 1], &m[p + 2..]);
        let known = |s: &str| v.text_to_id.contains_key(s);
        if !(known(a) && known(b) && known(&format!("{a}{b}"))) {
            continue;
        }
        if seen.insert((a, b)) {
            out.push((a.to_owned(), b.to_owned()));
        }
    }
    out
}

/// The HF tokenizer for a byte-level BPE vocabulary with pre-tokenizer `pre`.
pub(crate) fn build(
    v: &Vocab,
    pre: &PreTokenizer,
) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let hf_vocab: HfVocab = v.text_to_id.clone();
    let model = BPE::builder()
        .vocab_and_merges(hf_vocab, merges(v))
        .ignore_merges(pre.ignore_merges)
        .byte_fallback(!pre.byte_level)
        .build()
        .map_err(build_err)?;
    let mut steps = Vec::with_capacity(pre.regexes.len() + 1);
    for r in pre.regexes {
        let split = Split::new(
            SplitPattern::Regex((*r).to_owned()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(build_err)?;
        steps.push(PreTokenizerWrapper::Split(split));
    }
    let mut tk = tokenizers::Tokenizer::new(model);
    if pre.byte_level {
        steps.push(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
            false, false, false,
        )));
        tk.with_decoder(Some(ByteLevelDecoder::default()));
    } else {
        super::spm::space_as_piece(&mut tk)?;
    }
    tk.with_pre_tokenizer(Some(Sequence::new(steps)));
    Ok(tk)
}
