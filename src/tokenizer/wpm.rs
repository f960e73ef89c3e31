//! WordPiece vocabularies (`tokenizer.ggml.model = "bert"`), as llama.cpp's WPM
//! tokenizer reads them.
//!
//! llama.cpp's converted BERT vocabularies mark the *start* of a word with `▁` instead
//! of marking continuations with `##`: "hello" is `▁hello`, "##ing" is `ing`. The text
//! is normalized like BERT's (accents stripped through a one-code-point NFD, lowercased,
//! control characters dropped), split at whitespace, and every punctuation character,
//! ASCII symbol and CJK ideograph becomes a word of its own. Each word, prefixed with
//! `▁`, is then cut greedily into the longest tokens from the left; a word with any
//! part that no token covers becomes the unknown token as a whole. Unlike HF's
//! WordPiece there is no limit on the length of a word.
//!
//! The Unicode data (categories, lowercase, decomposition) is llama.cpp's own, in
//! [`super::wpm_unicode`], so that both agree on every code point.

use super::vocab::Vocab;
use super::wpm_unicode::{CLASSES, LOWER, NFD};
use super::TokenizerError;
use crate::gguf::GgufHeader;

/// The class of `c` in [`CLASSES`].
mod class {
    pub const MARK: u8 = 1;
    pub const PUNCT: u8 = 2;
    pub const CONTROL: u8 = 3;
    pub const ASCII_SYMBOL: u8 = 4;
}

fn class_of(c: u32) -> u8 {
    let i = CLASSES.partition_point(|&(start, _)| start <= c);
    // CLASSES starts at 0, so i >= 1.
    CLASSES[i.saturating_sub(1)].1
}

/// llama.cpp's NFD: the first code point of `c`'s canonical decomposition.
fn nfd_base(c: char) -> char {
    let cp = c as u32;
    let i = NFD.partition_point(|&(first, _, _)| first <= cp);
    match i.checked_sub(1).map(|i| NFD[i]) {
        Some((_, last, base)) if cp <= last => char::from_u32(base).unwrap_or(c),
        _ => c,
    }
}

/// The simple (one code point) lowercase of `c`, from llama.cpp's table.
fn lower(c: char) -> char {
    let cp = c as u32;
    let i = LOWER.partition_point(|&(first, _, _, _)| first <= cp);
    match i.checked_sub(1).map(|i| LOWER[i]) {
        Some((first, last, delta, stride)) if cp <= last && (cp - first).is_multiple_of(stride) => {
            char::from_u32(cp.wrapping_add_signed(delta)).unwrap_or(c)
        }
        _ => c,
    }
}

/// The CJK ideograph blocks BERT splits into single-character words (with the range
/// HF's Rust code uses for Extension E, which llama.cpp copies).
fn is_cjk(c: u32) -> bool {
    matches!(c,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B920..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

/// A WordPiece tokenizer over a [`Vocab`].
pub(crate) struct Wpm {
    lowercase: bool,
    strip_accents: bool,
    /// The longest token, in bytes: no match is tried beyond it.
    max_token_len: usize,
    unk: u32,
}

impl Wpm {
    /// Reads the normalizer options (`tokenizer.ggml.normalizer.*`, both on by default).
    pub fn new(v: &Vocab, h: &GgufHeader) -> Result<Self, TokenizerError> {
        let lowercase = h
            .get_bool("tokenizer.ggml.normalizer.lowercase")?
            .unwrap_or(true);
        let strip_accents = h
            .get_bool("tokenizer.ggml.normalizer.strip_accents")?
            .unwrap_or(lowercase);
        let unk = v.unk.ok_or(TokenizerError::Missing {
            key: "tokenizer.ggml.unknown_token_id",
        })?;
        Ok(Self {
            lowercase,
            strip_accents,
            max_token_len: v.tokens.iter().map(String::len).max().unwrap_or(0),
            unk,
        })
    }

    /// Appends the tokens of `text` (no special tokens in it) to `out`.
    pub fn encode(&self, v: &Vocab, text: &str, out: &mut Vec<u32>) {
        let mut word = String::from(super::spm::SPACE);
        let prefix = word.len();
        for c in text.chars() {
            let c = if self.strip_accents { nfd_base(c) } else { c };
            if c.is_whitespace() {
                self.word(v, &mut word, prefix, out);
                continue;
            }
            let cls = class_of(c as u32);
            if c == '\0' || c == '\u{FFFD}' || cls == class::CONTROL {
                continue;
            }
            if self.strip_accents && cls == class::MARK {
                continue;
            }
            let lc = if self.lowercase { lower(c) } else { c };
            if cls == class::PUNCT || cls == class::ASCII_SYMBOL || is_cjk(c as u32) {
                self.word(v, &mut word, prefix, out);
                word.push(lc);
                self.word(v, &mut word, prefix, out);
            } else {
                word.push(lc);
            }
        }
        self.word(v, &mut word, prefix, out);
    }

    /// Tokenizes the word in `word[prefix..]` (after its `▁`), if any, and empties it.
    fn word(&self, v: &Vocab, word: &mut String, prefix: usize, out: &mut Vec<u32>) {
        if word.len() == prefix {
            return;
        }
        let start = out.len();
        let n = word.len();
        let mut i = 0;
        while i < n {
            let hi = n.min(i + self.max_token_len);
            let found = (i + 1..=hi).rev().find_map(|j| {
                let piece = word.get(i..j)?;
                v.text_to_id.get(piece).map(|&id| (j, id))
            });
            match found {
                Some((j, id)) => {
                    out.push(id);
                    i = j;
                }
                None => {
                    out.truncate(start);
                    break;
                }
            }
        }
        if out.len() == start {
            out.push(self.unk);
        }
        word.truncate(prefix);
    }
}

/// llama.cpp's `clean_up_tokenization_spaces` for detokenized WordPiece text: no space
/// before `?!.,`, none around a lone `'`, none before `'s`, `'m`, `'re` and `'ve`.
pub(crate) fn clean_spaces(text: &[u8]) -> Vec<u8> {
    let mut a: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            a.pop();
        }
        a.push(x);
    }
    // The space after a lone apostrophe is blanked in place, so it cannot also count as
    // the space before a following one.
    let mut b: Vec<u8> = Vec::with_capacity(a.len());
    let mut i = 0;
    while i < a.len() {
        let x = a[i];
        if x == b'\'' && i > 0 && i + 1 < a.len() && a[i - 1] == b' ' && a[i + 1] == b' ' {
            b.pop();
            b.push(x);
            a[i + 1] = 0;
            i += 2;
            continue;
        }
        b.push(x);
        i += 1;
    }
    let mut c: Vec<u8> = Vec::with_capacity(b.len());
    for (i, &x) in b.iter().enumerate() {
        if i > 0 && b[i - 1] == b' ' && x == b'\'' {
            let next = &b[i + 1..];
            if next.starts_with(b"s")
                || next.starts_with(b"m")
                || next.starts_with(b"re")
                || next.starts_with(b"ve")
            {
                c.pop();
            }
        }
        c.push(x);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_tables() {
        assert_eq!(lower('A'), 'a');
        assert_eq!(lower('Ä'), 'ä');
        assert_eq!(lower('\u{130}'), 'i');
        assert_eq!(lower('Σ'), 'σ');
        assert_eq!(lower('a'), 'a');
        assert_eq!(nfd_base('é'), 'e');
        assert_eq!(nfd_base('Å'), 'A');
        // Hangul syllables keep their leading jamo only, as in llama.cpp.
        assert_eq!(nfd_base('한'), '\u{1112}');
        assert_eq!(class_of(b'!' as u32), class::PUNCT);
        assert_eq!(class_of(b'$' as u32), class::ASCII_SYMBOL);
        assert_eq!(class_of(0x301), class::MARK);
        assert_eq!(class_of(0x200B), class::CONTROL);
        assert_eq!(class_of(b'a' as u32), 0);
        assert_eq!(class_of(0x10FFFF), class_of(0x10FFFE));
    }

    #[test]
    fn clean_spaces_like_llama_cpp() {
        let c = |s: &str| String::from_utf8(clean_spaces(s.as_bytes())).unwrap();
        assert_eq!(c("hello , world !"), "hello, world!");
        assert_eq!(c("it ' s"), "it's");
        assert_eq!(c("we 're here"), "we're here");
        assert_eq!(c("don 't"), "don 't");
        assert_eq!(c(""), "");
        assert_eq!(c(" ."), ".");
        assert_eq!(c("a ' ' b"), "a'' b");
    }
}
