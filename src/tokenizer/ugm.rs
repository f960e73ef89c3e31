//! Unigram vocabularies (`tokenizer.ggml.model = "t5"`: T5, XLM-R and their kin), as
//! llama.cpp's UGM tokenizer reads them.
//!
//! The text is first normalized with SentencePiece's precompiled character map
//! (`tokenizer.ggml.precompiled_charsmap`: a double array that maps the longest matching
//! byte prefix to a replacement string, e.g. NFKC), spaces become `▁`, runs of spaces
//! merge (`remove_extra_whitespaces`) and a `▁` is prefixed (`add_space_prefix`). Then
//! Viterbi picks the segmentation with the highest sum of piece scores; a code point
//! that no piece covers costs the lowest score minus 10 and becomes the unknown token,
//! and neighbouring unknown tokens merge into one.
//!
//! HF's `Unigram` model and `Precompiled` normalizer are close but not the same (they
//! match control tokens, score unknowns differently and normalize whole graphemes), so
//! both steps are written here after llama.cpp.

use super::vocab::{attr, Vocab};
use super::TokenizerError;
use crate::gguf::{Array, GgufHeader, Value};
use std::collections::HashMap;

/// The score below the lowest piece's that an unknown code point costs.
const UNKNOWN_PENALTY: f64 = 10.0;

/// SentencePiece's precompiled normalization map: a XOR-compressed compact double
/// array over bytes whose leaves point into NUL-terminated replacement strings.
struct Charsmap {
    nodes: Vec<u32>,
    replacements: Vec<u8>,
}

impl Charsmap {
    /// Splits the GGUF blob: a little-endian u32 byte length, the array, the strings.
    fn parse(blob: &[u8]) -> Result<Self, TokenizerError> {
        let bad = |why: &str| TokenizerError::Build(format!("precompiled_charsmap: {why}"));
        let head: [u8; 4] = blob
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("shorter than its 4-byte header"))?;
        let size = u32::from_le_bytes(head) as usize;
        if size.checked_add(4).is_none_or(|end| end >= blob.len()) {
            return Err(bad("the double array runs past the end"));
        }
        let nodes = blob[4..4 + size]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(Self {
            nodes,
            replacements: blob[4 + size..].to_vec(),
        })
    }

    fn node(&self, i: u32) -> Option<u32> {
        self.nodes.get(i as usize).copied()
    }

    fn base(node: u32) -> u32 {
        (node >> 10) << ((node & (1 << 9)) >> 6)
    }

    /// The replacement for the longest prefix of `input` the map has, and that prefix's
    /// length. A damaged map (an index out of range, an unterminated string) matches
    /// nothing rather than failing.
    fn longest_prefix(&self, input: &[u8]) -> Option<(&[u8], usize)> {
        let mut best = None;
        let mut index = Self::base(self.node(0)?);
        for (k, &c) in input.iter().enumerate() {
            if c == 0 {
                break;
            }
            index ^= u32::from(c);
            let Some(node) = self.node(index) else { break };
            if node & ((1 << 31) | 0xff) != u32::from(c) {
                break;
            }
            let leaf = (node >> 8) & 1 == 1;
            index ^= Self::base(node);
            if leaf {
                let Some(value) = self.node(index) else { break };
                best = Some((value & ((1 << 31) - 1), k + 1));
            }
        }
        let (offset, len) = best?;
        let tail = self.replacements.get(offset as usize..)?;
        let end = tail.iter().position(|&b| b == 0)?;
        Some((&tail[..end], len))
    }
}

/// A Unigram tokenizer over a [`Vocab`].
pub(crate) struct Ugm {
    charsmap: Option<Charsmap>,
    /// Pieces Viterbi may use whose text maps to another id in `Vocab::text_to_id`
    /// (where a control token shares a normal token's text).
    shadowed: HashMap<String, u32>,
    /// The longest piece, in bytes.
    max_piece_len: usize,
    /// User-defined tokens are taken verbatim, before the character map.
    user_defined: HashMap<String, u32>,
    max_user_defined_len: usize,
    unk: u32,
    unk_score: f64,
    add_space_prefix: bool,
    remove_extra_whitespaces: bool,
}

/// Pieces Viterbi may use: normal, user-defined and unused tokens.
fn is_piece(a: u16) -> bool {
    a & (attr::NORMAL | attr::USER_DEFINED | attr::UNUSED) != 0
}

impl Ugm {
    /// Reads the character map and the whitespace options.
    pub fn new(v: &Vocab, h: &GgufHeader) -> Result<Self, TokenizerError> {
        let key = "tokenizer.ggml.precompiled_charsmap";
        let charsmap = match h.get(key) {
            None => None,
            Some(Value::Array(Array::U8(b))) => Some(Charsmap::parse(b)?),
            Some(Value::Array(Array::I8(b))) => {
                let b: Vec<u8> = b.iter().map(|&x| x as u8).collect();
                Some(Charsmap::parse(&b)?)
            }
            Some(other) => {
                return Err(TokenizerError::Gguf(crate::gguf::GgufError::WrongType {
                    key: key.to_owned(),
                    expected: "array<u8>",
                    found: other.type_name(),
                }))
            }
        };
        let unk = v.unk.ok_or(TokenizerError::Missing {
            key: "tokenizer.ggml.unknown_token_id",
        })?;
        let mut shadowed = HashMap::new();
        let mut user_defined = HashMap::new();
        let mut min_score = f32::MAX;
        let mut max_piece_len = 0;
        for (id, (text, &a)) in v.tokens.iter().zip(&v.attrs).enumerate() {
            let id = id as u32;
            if a & attr::NORMAL != 0 {
                min_score = min_score.min(v.scores[id as usize]);
            }
            if !is_piece(a) {
                continue;
            }
            max_piece_len = max_piece_len.max(text.len());
            if v.text_to_id.get(text) != Some(&id) {
                let winner = v.text_to_id.get(text).copied().unwrap_or(id);
                if !is_piece(v.attrs[winner as usize]) {
                    shadowed.insert(text.clone(), id);
                }
            }
            if a & attr::USER_DEFINED != 0 {
                user_defined.insert(text.clone(), id);
            }
        }
        Ok(Self {
            charsmap,
            shadowed,
            max_piece_len,
            max_user_defined_len: user_defined.keys().map(String::len).max().unwrap_or(0),
            user_defined,
            unk,
            unk_score: f64::from(min_score) - UNKNOWN_PENALTY,
            add_space_prefix: v.add_space_prefix,
            remove_extra_whitespaces: h
                .get_bool("tokenizer.ggml.remove_extra_whitespaces")?
                .unwrap_or(false),
        })
    }

    /// The piece whose text is `bytes`, if Viterbi may use one.
    fn piece(&self, v: &Vocab, bytes: &[u8]) -> Option<u32> {
        let s = std::str::from_utf8(bytes).ok()?;
        match v.text_to_id.get(s) {
            Some(&id) if is_piece(v.attrs[id as usize]) => Some(id),
            _ => self.shadowed.get(s).copied(),
        }
    }

    /// The normalized form of the longest prefix of `input` and the bytes it consumed.
    fn normalize_prefix<'a>(&'a self, input: &'a str) -> (&'a [u8], usize) {
        let longest = self.max_user_defined_len.min(input.len());
        for len in (1..=longest).rev() {
            if let Some(p) = input.get(..len) {
                if self.user_defined.contains_key(p) {
                    return (p.as_bytes(), len);
                }
            }
        }
        if let Some(m) = self
            .charsmap
            .as_ref()
            .and_then(|c| c.longest_prefix(input.as_bytes()))
        {
            return m;
        }
        let len = input.chars().next().map_or(1, char::len_utf8);
        (&input.as_bytes()[..len.min(input.len())], len)
    }

    /// Normalizes `text` into `out`: the character map, `▁` for spaces, merged spaces
    /// and the space prefix as the vocabulary asks.
    fn normalize(&self, text: &str, out: &mut Vec<u8>) {
        let space = super::spm::SPACE.as_bytes();
        let merge = self.remove_extra_whitespaces;
        let mut prefixed = false;
        let mut in_word = false;
        let mut pos = 0;
        while pos < text.len() {
            let (norm, consumed) = self.normalize_prefix(&text[pos..]);
            for &c in norm {
                if c != b' ' {
                    if !in_word {
                        in_word = true;
                        if (self.add_space_prefix && !prefixed) || merge {
                            out.extend_from_slice(space);
                            prefixed = true;
                        }
                    }
                    out.push(c);
                } else {
                    in_word = false;
                    if !merge {
                        out.extend_from_slice(space);
                    }
                }
            }
            pos += consumed.max(1);
            // A map entry could in theory end inside a character; resume at the next one.
            while !text.is_char_boundary(pos) {
                pos += 1;
            }
        }
    }

    /// Appends the tokens of `text` (no special tokens in it) to `out`.
    pub fn encode(&self, v: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut norm = Vec::with_capacity(text.len() * 3 + 3);
        self.normalize(text, &mut norm);
        let n = norm.len();
        if n == 0 {
            return;
        }
        // best[k]: the last piece, where it starts and the score of the best
        // segmentation of norm[..k].
        let mut best: Vec<(u32, usize, f64)> = vec![(self.unk, 0, f64::MIN); n + 1];
        best[0].2 = 0.0;
        let mut start = 0;
        while start < n {
            let char_len = utf8_len(norm[start]).min(n - start);
            let base = best[start].2;
            let mut whole_char = false;
            for end in start + 1..=n.min(start + self.max_piece_len) {
                let Some(id) = self.piece(v, &norm[start..end]) else {
                    continue;
                };
                if end - start == char_len {
                    whole_char = true;
                }
                let score = if v.attrs[id as usize] & attr::USER_DEFINED != 0 {
                    0.0
                } else {
                    f64::from(v.scores[id as usize])
                };
                if base + score > best[end].2 {
                    best[end] = (id, start, base + score);
                }
            }
            if !whole_char {
                let end = start + char_len;
                if base + self.unk_score > best[end].2 {
                    best[end] = (self.unk, start, base + self.unk_score);
                }
            }
            start += char_len;
        }
        let first = out.len();
        let mut k = n;
        let mut prev_unk = false;
        loop {
            let (id, from, _) = best[k];
            let is_unk = id == self.unk;
            if !(prev_unk && is_unk) {
                out.push(id);
            }
            if from == 0 || from >= k {
                break;
            }
            prev_unk = is_unk;
            k = from;
        }
        out[first..].reverse();
    }
}

/// The length of a UTF-8 sequence from its first byte (1 for a stray continuation byte).
fn utf8_len(b: u8) -> usize {
    match b >> 4 {
        0xC | 0xD => 2,
        0xE => 3,
        0xF => 4,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charsmap_rejects_truncated_blobs() {
        assert!(Charsmap::parse(&[]).is_err());
        assert!(Charsmap::parse(&[8, 0, 0, 0, 1, 2]).is_err());
        assert!(Charsmap::parse(&[0xff, 0xff, 0xff, 0xff, 1]).is_err());
        // A map whose root points nowhere matches nothing.
        let m = Charsmap::parse(&[4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0]).unwrap();
        assert_eq!(m.longest_prefix(b"abc"), None);
    }

    #[test]
    fn utf8_lengths() {
        assert_eq!(utf8_len(b'a'), 1);
        assert_eq!(utf8_len(0x80), 1);
        assert_eq!(utf8_len("é".as_bytes()[0]), 2);
        assert_eq!(utf8_len("日".as_bytes()[0]), 3);
        assert_eq!(utf8_len("😀".as_bytes()[0]), 4);
    }
}
