//! The vocabulary as a GGUF file describes it: token strings, scores, llama.cpp token
//! types, special ids and flags, validated so that nothing later can index out of range.

use super::TokenizerError;
use crate::gguf::GgufHeader;

/// Token attributes, as llama.cpp derives them from `tokenizer.ggml.token_type`.
pub(crate) mod attr {
    pub const NORMAL: u16 = 1 << 0;
    pub const UNKNOWN: u16 = 1 << 1;
    pub const CONTROL: u16 = 1 << 2;
    pub const USER_DEFINED: u16 = 1 << 3;
    pub const UNUSED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const UNDEFINED: u16 = 1 << 6;
    /// Whitespace to the left of this special token is dropped when it is split out.
    pub const LSTRIP: u16 = 1 << 7;
    /// Whitespace to the right of this special token is dropped when it is split out.
    pub const RSTRIP: u16 = 1 << 8;

    /// The attribute of a GGUF token type (llama.cpp's `LLAMA_TOKEN_TYPE_*`).
    pub fn from_type(t: i32) -> u16 {
        match t {
            1 => NORMAL,
            2 => UNKNOWN,
            3 => CONTROL,
            4 => USER_DEFINED,
            5 => UNUSED,
            6 => BYTE,
            _ => UNDEFINED,
        }
    }
}

/// Which algorithm the vocabulary is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `tokenizer.ggml.model = "llama"`: SentencePiece pieces with scores and byte fallback.
    Spm,
    /// `tokenizer.ggml.model = "gpt2"`: byte-level BPE with ranked merges; `pre` names
    /// the pre-tokenizer (`tokenizer.ggml.pre`, "default" when absent).
    Bpe { pre: String },
    /// `tokenizer.ggml.model = "bert"`: WordPiece, words marked by a leading `▁`.
    Wpm,
    /// `tokenizer.ggml.model = "t5"`: Unigram with scores and a precompiled charsmap.
    Ugm,
}

/// Texts that mark the end of a turn or of generation in the vocabularies we know.
pub(crate) const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<|return|>",
    "<|call|>",
    "<｜end▁of▁sentence｜>",
    "</s>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
];

/// Texts that llama.cpp picks as the end-of-turn token when the file names none.
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Fill-in-the-middle tokens: the id key of each role, the spellings llama.cpp looks
/// for when the key is absent (the first one present is taken and made a control token),
/// and whether the role ends generation (padding, repository and file separators: a
/// code model that emits them has finished its file).
const FIM: &[(&str, &[&str], bool)] = &[
    (
        "tokenizer.ggml.fim_pre_token_id",
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_suf_token_id",
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_mid_token_id",
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
        false,
    ),
    (
        "tokenizer.ggml.fim_pad_token_id",
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
        true,
    ),
    (
        "tokenizer.ggml.fim_rep_token_id",
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
        true,
    ),
    ("tokenizer.ggml.fim_sep_token_id", &["<|file_sep|>"], true),
];

/// A validated vocabulary.
pub(crate) struct Vocab {
    pub kind: Kind,
    pub tokens: Vec<String>,
    pub scores: Vec<f32>,
    pub attrs: Vec<u16>,
    /// Text to id; where two ids share a text the later one wins, as in llama.cpp.
    pub text_to_id: tokenizers::models::bpe::Vocab,
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    /// The unknown token (`tokenizer.ggml.unknown_token_id`, or the model's default).
    pub unk: Option<u32>,
    /// WordPiece's separator (`[SEP]`), appended where `add_sep` says.
    pub sep: Option<u32>,
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub add_eos: bool,
    /// WordPiece: `encode(.., add_special = true, ..)` appends `sep`.
    pub add_sep: bool,
    pub add_space_prefix: bool,
    /// Control, user-defined and unknown tokens, longest text first: the order in which
    /// they are split out of the input.
    pub specials: Vec<u32>,
}

/// An optional id key: absent is `None`, out of range is an error.
fn id_key(h: &GgufHeader, key: &'static str, n: usize) -> Result<Option<u32>, TokenizerError> {
    match h.get_u32(key)? {
        Some(id) if id as usize >= n => Err(TokenizerError::IdOutOfRange {
            key,
            id: id as u64,
            n_tokens: n,
        }),
        other => Ok(other),
    }
}

impl Vocab {
    /// Reads and checks the `tokenizer.ggml.*` keys.
    pub fn from_gguf(h: &GgufHeader) -> Result<Self, TokenizerError> {
        let model = h
            .get_str("tokenizer.ggml.model")?
            .ok_or(TokenizerError::Missing {
                key: "tokenizer.ggml.model",
            })?;
        let kind = match model {
            "llama" => Kind::Spm,
            "gpt2" => Kind::Bpe {
                pre: h
                    .get_str("tokenizer.ggml.pre")?
                    .unwrap_or("default")
                    .to_owned(),
            },
            // BPE over UTF-8 with SentencePiece's visible space, always pre "gemma4".
            "gemma4" => Kind::Bpe {
                pre: "gemma4".to_owned(),
            },
            "bert" => Kind::Wpm,
            "t5" => Kind::Ugm,
            other => {
                return Err(TokenizerError::UnsupportedModel {
                    model: other.to_owned(),
                })
            }
        };
        let raw = h
            .get_str_array("tokenizer.ggml.tokens")?
            .ok_or(TokenizerError::Missing {
                key: "tokenizer.ggml.tokens",
            })?;
        let n = raw.len();
        if n == 0 || n > u32::MAX as usize / 2 {
            return Err(TokenizerError::BadVocabSize { n_tokens: n });
        }
        let check_len = |key: &'static str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(TokenizerError::LengthMismatch {
                    key,
                    len,
                    n_tokens: n,
                })
            }
        };

        // llama.cpp accepts float or integer scores.
        let scores: Vec<f32> = match h.get("tokenizer.ggml.scores") {
            None => vec![0.0; n],
            Some(_) => match h.get_f32_array("tokenizer.ggml.scores") {
                Ok(Some(s)) => s.to_vec(),
                _ => h
                    .require_i32_array("tokenizer.ggml.scores")?
                    .iter()
                    .map(|&s| s as f32)
                    .collect(),
            },
        };
        check_len("tokenizer.ggml.scores", scores.len())?;
        let mut attrs: Vec<u16> = match h.get_i32_array("tokenizer.ggml.token_type")? {
            None => vec![attr::NORMAL; n],
            Some(t) => t.iter().map(|&t| attr::from_type(t)).collect(),
        };
        check_len("tokenizer.ggml.token_type", attrs.len())?;
        let merges = match kind {
            Kind::Bpe { .. } => h
                .get_str_array("tokenizer.ggml.merges")?
                .ok_or(TokenizerError::Missing {
                    key: "tokenizer.ggml.merges",
                })?
                .to_vec(),
            Kind::Spm | Kind::Wpm | Kind::Ugm => Vec::new(),
        };

        // An empty piece could never be produced nor matched; llama.cpp renames it.
        let tokens: Vec<String> = raw
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if t.is_empty() {
                    format!("[EMPTY_{i}]")
                } else {
                    t.clone()
                }
            })
            .collect();
        let mut text_to_id = tokenizers::models::bpe::Vocab::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            text_to_id.insert(t.clone(), i as u32);
        }

        // Defaults per model type (llama.cpp's), then the file's keys.
        let in_range = |id: u32| (id as usize) < n;
        // (bos, eos, unk, sep, add_bos, add_eos)
        let (mut bos, mut eos, mut unk, mut sep, mut add_bos, add_eos_default) = match &kind {
            Kind::Spm => (Some(1), Some(2), Some(0), None, true, false),
            Kind::Bpe { .. } if model == "gemma4" => (None, None, None, None, true, false),
            Kind::Bpe { pre } => {
                let llama3 = super::bpe::PreTokenizer::for_name(pre).is_some_and(|p| p.add_bos);
                (Some(11), Some(11), None, None, llama3, false)
            }
            // BERT's [CLS] is the BOS; [SEP] ends the text.
            Kind::Wpm => (Some(101), None, Some(100), Some(102), true, false),
            Kind::Ugm => (None, Some(1), Some(2), None, false, true),
        };
        for id in [&mut bos, &mut eos, &mut unk, &mut sep] {
            *id = id.filter(|&i| in_range(i));
        }
        for (key, slot) in [
            ("tokenizer.ggml.bos_token_id", &mut bos),
            ("tokenizer.ggml.eos_token_id", &mut eos),
            ("tokenizer.ggml.unknown_token_id", &mut unk),
            ("tokenizer.ggml.seperator_token_id", &mut sep),
        ] {
            if let Some(id) = id_key(h, key, n)? {
                *slot = Some(id);
            }
        }
        // BERT's converters name [CLS] rather than a BOS; llama.cpp assumes id 101.
        let cls = id_key(h, "tokenizer.ggml.cls_token_id", n)?;
        if kind == Kind::Wpm && h.get("tokenizer.ggml.bos_token_id").is_none() {
            bos = cls.or(bos);
        }
        let mut eot = id_key(h, "tokenizer.ggml.eot_token_id", n)?;
        let eom = id_key(h, "tokenizer.ggml.eom_token_id", n)?;
        for key in [
            "tokenizer.ggml.padding_token_id",
            "tokenizer.ggml.mask_token_id",
        ] {
            // Checked for range only: a bad id here means a broken file.
            let _ = id_key(h, key, n)?;
        }
        if let Some(b) = h.get_bool("tokenizer.ggml.add_bos_token")? {
            add_bos = b;
        }
        // llama.cpp overrides a false add_bos_token for Gemma 4.
        add_bos |= kind
            == (Kind::Bpe {
                pre: "gemma4".into(),
            });
        let add_eos = h
            .get_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(add_eos_default);
        let add_sep = h
            .get_bool("tokenizer.ggml.add_sep_token")?
            .unwrap_or(kind == Kind::Wpm);
        let add_space_prefix = h
            .get_bool("tokenizer.ggml.add_space_prefix")?
            .unwrap_or(kind == Kind::Spm);
        if add_bos && bos.is_none() {
            return Err(TokenizerError::Missing {
                key: "tokenizer.ggml.bos_token_id",
            });
        }
        if add_eos && eos.is_none() {
            return Err(TokenizerError::Missing {
                key: "tokenizer.ggml.eos_token_id",
            });
        }
        if add_sep && sep.is_none() {
            return Err(TokenizerError::Missing {
                key: "tokenizer.ggml.seperator_token_id",
            });
        }

        // End of generation: the named tokens are control tokens whatever the file says.
        let mut eog = Vec::new();
        if eot.is_none() {
            eot = EOT_TEXTS.iter().find_map(|t| text_to_id.get(*t).copied());
        }
        for &(key, texts, ends) in FIM {
            let id = match id_key(h, key, n)? {
                Some(id) => Some(id),
                None => texts
                    .iter()
                    .find_map(|t| text_to_id.get(*t).copied())
                    .inspect(|&id| {
                        attrs[id as usize] |= attr::CONTROL;
                    }),
            };
            if ends {
                eog.extend(id);
            }
        }
        for t in EOG_TEXTS {
            if let Some(&id) = text_to_id.get(*t) {
                attrs[id as usize] |= attr::CONTROL;
                eog.push(id);
            }
        }
        // Where "<|tool_response>" ends turns, "</s>" is ordinary text (Gemma 4).
        if let (Some(&tr), Some(&s)) = (text_to_id.get("<|tool_response>"), text_to_id.get("</s>"))
        {
            if tr != s {
                eog.retain(|&i| i != s);
                attrs[s as usize] = attr::NORMAL;
            }
        }
        eog.extend([eos, eot, eom].into_iter().flatten());
        eog.sort_unstable();
        eog.dedup();

        let mut specials: Vec<u32> = (0..n as u32)
            .filter(|&i| {
                attrs[i as usize] & (attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN) != 0
            })
            .collect();
        specials.sort_by_key(|&i| std::cmp::Reverse(tokens[i as usize].len()));

        // Phi-3's special tokens swallow the whitespace after them (llama.cpp keys this
        // on the model name, as the GGUF has no per-token attributes).
        let name = h.get_str("general.name")?.unwrap_or("").to_lowercase();
        if name.contains("phi-3") || name.contains("phi3") {
            for &i in &specials {
                attrs[i as usize] |= attr::RSTRIP;
            }
            if let Some(&i) = text_to_id.get("</s>") {
                attrs[i as usize] |= attr::RSTRIP;
            }
            for t in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(&i) = text_to_id.get(t) {
                    attrs[i as usize] &= !attr::RSTRIP;
                }
            }
        }

        Ok(Self {
            kind,
            tokens,
            scores,
            attrs,
            text_to_id,
            merges,
            bos,
            eos,
            unk,
            sep,
            eog,
            add_bos,
            add_eos,
            add_sep,
            add_space_prefix,
            specials,
        })
    }
}
