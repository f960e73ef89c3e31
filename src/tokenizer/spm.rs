//! SentencePiece-style vocabularies (`tokenizer.ggml.model = "llama"`) as a BPE model.
//!
//! llama.cpp tokenizes these by starting from single characters and repeatedly merging
//! the adjacent pair whose concatenation is a piece with the highest score. A BPE model
//! whose merges are every split (a, b) of every piece into two pieces, ranked by the
//! score of the whole piece, performs the same merges; characters that are no piece
//! fall back to their `<0xNN>` byte tokens.

use super::vocab::{attr, Vocab};
use super::TokenizerError;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::{Vocab as HfVocab, BPE};
use tokenizers::normalizers::Replace;
use tokenizers::DecoderWrapper;

/// SentencePiece's visible space.
pub(crate) const SPACE: &str = "\u{2581}";

fn build_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build(e.to_string())
}

/// Every split of every piece into two pieces, best merged score first.
fn derived_merges(v: &Vocab) -> Vec<(String, String)> {
    // (score of the whole piece, its id, byte offset of the split)
    let mut cands: Vec<(f32, u32, u32)> = Vec::with_capacity(v.tokens.len() * 4);
    for (text, &id) in &v.text_to_id {
        for (pos, _) in text.char_indices().skip(1) {
            let (a, b) = text.split_at(pos);
            if v.text_to_id.contains_key(a) && v.text_to_id.contains_key(b) {
                cands.push((v.scores[id as usize], id, pos as u32));
            }
        }
    }
    // Equal scores: llama.cpp prefers the leftmost pair, which a static rank cannot
    // express; ties are rare in real vocabularies (scores are usually distinct).
    cands.sort_unstable_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    cands
        .into_iter()
        .map(|(_, id, pos)| {
            let (a, b) = v.tokens[id as usize].split_at(pos as usize);
            (a.to_owned(), b.to_owned())
        })
        .collect()
}

/// The HF tokenizer for an SPM vocabulary: spaces become `▁`, then BPE over the whole
/// fragment (no pre-tokenization), with byte fallback.
pub(crate) fn build(v: &Vocab) -> Result<tokenizers::Tokenizer, TokenizerError> {
    let hf_vocab: HfVocab = v.text_to_id.clone();
    let mut builder = BPE::builder()
        .vocab_and_merges(hf_vocab, derived_merges(v))
        .byte_fallback(true);
    let unk = v
        .attrs
        .iter()
        .position(|a| a & attr::UNKNOWN != 0)
        .map(|i| v.tokens[i].clone());
    if let Some(unk) = unk {
        builder = builder.unk_token(unk);
    }
    let model = builder.build().map_err(build_err)?;
    let mut tk = tokenizers::Tokenizer::new(model);
    space_as_piece(&mut tk)?;
    Ok(tk)
}

/// Spaces become `▁` before the model and `▁` and `<0xNN>` pieces text after it.
pub(crate) fn space_as_piece(tk: &mut tokenizers::Tokenizer) -> Result<(), TokenizerError> {
    tk.with_normalizer(Some(Replace::new(" ", SPACE).map_err(build_err)?))
        .map_err(build_err)?;
    tk.with_decoder(Some(DecoderSequence::new(vec![
        DecoderWrapper::Replace(Replace::new(SPACE, " ").map_err(build_err)?),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ])));
    Ok(())
}
