#!/usr/bin/env python3
"""Tiny random-weight embedding GGUFs with llama.cpp's pooled embeddings as goldens.

Models, written with the metadata keys and tensor names of llama.cpp's converter and the
helpers of scripts/gen-arch-goldens.py (same Builder, same 300-token SentencePiece
vocabulary):
  qwen3-last        `qwen3` with qwen3.pooling_type = LAST and add_eos (Qwen3-Embedding's
                    layout: the embedding is the final-normed state of the closing EOS)
  llama-mean        `llama` without a pooling key, embedded with mean pooling (what hearth
                    and ollama do for a plain decoder)
  gemma-embedding   EmbeddingGemma: Gemma 3 blocks, non-causal attention, a symmetric
                    sliding window (8: |i - j| <= 4) on layers 0 and 2 of 3
                    (sliding_window_pattern 2), mean pooling, and the sentence-transformers
                    dense layers dense_2 (64 -> 96) and dense_3 (96 -> 64)
  bert-cls          `bert`: absolute positions, token types, post-norm LayerNorms with bias,
                    biased q/k/v/output and ungated GELU FFN, [CLS] pooling; a WordPiece
                    vocabulary laid out like bert-base-uncased's
  nomic-bert        `nomic-bert`: BERT's encoder with fused attn_qkv (no bias), NeoX RoPE
                    (base 1000), SwiGLU FFN, mean pooling; the same WordPiece vocabulary
For each, llama.cpp (llama-cpp-python 0.3.36, CPU backend, n_threads=1, F32 weights,
n_batch = n_ubatch = 256) embeds four texts one at a time with
`Llama(embedding=True, pooling_type=...).embed(text, normalize=False)`; the tokens it fed
and the raw pooled vectors go to tests/fixtures/embed/<name>.json.

Rerun (the venv of scripts/gen-arch-goldens.py):
    .cache/llama-venv/bin/python scripts/gen-embed-goldens.py
Output is deterministic (seeded numpy RNG).
"""
import hashlib
import importlib.util
import json
import os
import sys

import numpy as np
import gguf
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("arch_goldens", os.path.join(HERE, "gen-arch-goldens.py"))
ag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ag)

OUT_DIR = os.path.join(HERE, "..", "tests", "fixtures", "embed")
H, NH, NKV, HD, FFN, VOCAB, N_CTX = ag.HIDDEN, ag.N_HEAD, ag.N_HEAD_KV, ag.HEAD_DIM, ag.FFN, ag.VOCAB, ag.N_CTX
TEXTS = [
    "hello world",
    "the quick brown fox jumps over the lazy dog",
    "a",
    "embeddings pool every token of the input into one vector, then normalize it.",
]


def blocks(b, n_layer, qk_norm, sandwich):
    for i in range(n_layer):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", H)
        b.mat(p + "attn_q.weight", H, NH * HD)
        b.mat(p + "attn_k.weight", H, NKV * HD)
        b.mat(p + "attn_v.weight", H, NKV * HD)
        if qk_norm:
            b.norm(p + "attn_q_norm.weight", HD)
            b.norm(p + "attn_k_norm.weight", HD)
        b.mat(p + "attn_output.weight", NH * HD, H)
        if sandwich:
            b.norm(p + "post_attention_norm.weight", H)
        b.norm(p + "ffn_norm.weight", H)
        b.mat(p + "ffn_gate.weight", H, FFN)
        b.mat(p + "ffn_up.weight", H, FFN)
        b.mat(p + "ffn_down.weight", FFN, H)
        if sandwich:
            b.norm(p + "post_ffw_norm.weight", H)


def common_meta(w, n_layer):
    w.add_block_count(n_layer)
    w.add_context_length(N_CTX)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FFN)
    w.add_head_count(NH)
    w.add_head_count_kv(NKV)


def qwen3_last(b):
    def meta(w):
        common_meta(w, ag.N_LAYER)
        w.add_rope_freq_base(1e6)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_key_length(HD)
        w.add_value_length(HD)
        w.add_pooling_type(gguf.PoolingType.LAST)

    b.mat("token_embd.weight", H, VOCAB)
    b.norm("output_norm.weight", H)
    b.mat("output.weight", H, VOCAB)
    blocks(b, ag.N_LAYER, qk_norm=True, sandwich=False)
    return "qwen3", meta, dict(add_bos=False, add_eos=True, pooling=llama_cpp.LLAMA_POOLING_TYPE_LAST)


def llama_mean(b):
    def meta(w):
        common_meta(w, ag.N_LAYER)
        w.add_rope_freq_base(10000.0)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_dimension_count(HD)

    b.mat("token_embd.weight", H, VOCAB)
    b.norm("output_norm.weight", H)
    blocks(b, ag.N_LAYER, qk_norm=False, sandwich=False)
    return "llama", meta, dict(add_bos=True, add_eos=False, pooling=llama_cpp.LLAMA_POOLING_TYPE_MEAN)


DENSE = 96


def gemma_embedding(b):
    n_layer = 3

    def meta(w):
        # conversion/gemma.py Gemma3Model then EmbeddingGemma.set_gguf_parameters
        common_meta(w, n_layer)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_key_length(HD)
        w.add_value_length(HD)
        w.add_rope_freq_base(1e6)
        w.add_sliding_window(ag.SWA)
        w.add_sliding_window_pattern(2)
        w.add_add_space_prefix(False)
        w.add_dense_features_dims("dense_2", H, DENSE)
        w.add_dense_features_dims("dense_3", DENSE, H)
        w.add_pooling_type(gguf.PoolingType.MEAN)

    b.mat("token_embd.weight", H, VOCAB)
    b.norm("output_norm.weight", H)
    blocks(b, n_layer, qk_norm=True, sandwich=True)
    b.mat("dense_2.weight", H, DENSE)
    b.mat("dense_3.weight", DENSE, H)
    return "gemma-embedding", meta, dict(add_bos=True, add_eos=True, pooling=llama_cpp.LLAMA_POOLING_TYPE_MEAN)


# BERT-style encoders: multi-head attention (no GQA), a WordPiece vocabulary laid out like
# bert-base-uncased's (special tokens at 0 and 100..103), two token types, 256 positions.
BERT_LAYERS = 2
BERT_EXTRA_TEXTS = ["Hello, World! Naive CAFÉ costs 42 dollars; unknown: zebra."]


def wpm_vocab():
    """[PAD], [unused1..99], [UNK] [CLS] [SEP] [MASK], then words (▁word, as the converter's
    phantom space writes them) and ##pieces (written without ##), up to VOCAB tokens."""
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(1, 100)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    types = [3] + [1] * 99 + [3, 3, 3, 3]
    words = ("the quick brown fox jump over lazy dog hello world a token of input into one vector then it "
             "pool every normal embed cost dollar naive cafe unknown").split()
    pieces = ["s", "ed", "ing", "ings", "ding", "dings", "ize", "er", "ly"]
    punct = list(".,!?;:'")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789")
    for t in ["\u2581" + w for w in words + punct + letters] + pieces + letters:
        if t not in tokens:
            tokens.append(t)
            types.append(1)
    assert len(tokens) <= VOCAB, len(tokens)
    for i in range(len(tokens), VOCAB):
        tokens.append(f"[unused{i}]")
        types.append(1)
    return tokens, types


def bert_tokenizer(w):
    # conversion/bert.py BertModel.set_vocab, then gguf.SpecialVocab's ids and flags
    tokens, types = wpm_vocab()
    w.add_token_type_count(2)
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_unk_token_id(100)
    w.add_sep_token_id(102)
    w.add_pad_token_id(0)
    w.add_mask_token_id(103)
    w.add_add_bos_token(True)
    w.add_add_sep_token(True)


def bert_common(w, n_layer):
    # conversion/bert.py BertModel.set_gguf_parameters (TextModel's keys, then causal and pooling)
    w.add_context_length(N_CTX)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FFN)
    w.add_head_count(NH)
    w.add_block_count(n_layer)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)


def bert_layer_norms(b, p):
    for n in ("attn_output_norm", "layer_output_norm"):
        b.norm(p + n + ".weight", H)
        b.vec(p + n + ".bias", H)


def bert(b):
    def meta(w):
        bert_common(w, BERT_LAYERS)
        w.add_pooling_type(gguf.PoolingType.CLS)

    b.mat("token_embd.weight", H, VOCAB)
    b.mat("token_types.weight", H, 2)
    b.mat("position_embd.weight", H, N_CTX)
    b.norm("token_embd_norm.weight", H)
    b.vec("token_embd_norm.bias", H)
    for i in range(BERT_LAYERS):
        p = f"blk.{i}."
        for x in "qkv":
            b.mat(p + f"attn_{x}.weight", H, H)
            b.vec(p + f"attn_{x}.bias", H)
        b.mat(p + "attn_output.weight", H, H)
        b.vec(p + "attn_output.bias", H)
        b.mat(p + "ffn_up.weight", H, FFN)
        b.vec(p + "ffn_up.bias", FFN)
        b.mat(p + "ffn_down.weight", FFN, H)
        b.vec(p + "ffn_down.bias", H)
        bert_layer_norms(b, p)
    return "bert", meta, dict(pooling=llama_cpp.LLAMA_POOLING_TYPE_CLS, wpm=True)


def nomic_bert(b):
    def meta(w):
        bert_common(w, BERT_LAYERS)
        w.add_rope_freq_base(1000.0)
        w.add_pooling_type(gguf.PoolingType.MEAN)

    b.mat("token_embd.weight", H, VOCAB)
    b.mat("token_types.weight", H, 2)
    b.norm("token_embd_norm.weight", H)
    b.vec("token_embd_norm.bias", H)
    for i in range(BERT_LAYERS):
        p = f"blk.{i}."
        b.mat(p + "attn_qkv.weight", H, 3 * H)
        b.mat(p + "attn_output.weight", H, H)
        b.mat(p + "ffn_up.weight", H, FFN)
        b.mat(p + "ffn_gate.weight", H, FFN)
        b.mat(p + "ffn_down.weight", FFN, H)
        bert_layer_norms(b, p)
    return "nomic-bert", meta, dict(pooling=llama_cpp.LLAMA_POOLING_TYPE_MEAN, wpm=True)


MODELS = {
    "qwen3-last": (qwen3_last, 11),
    "llama-mean": (llama_mean, 12),
    "gemma-embedding": (gemma_embedding, 13),
    "bert-cls": (bert, 14),
    "nomic-bert": (nomic_bert, 15),
}


def write(path, arch, meta, b, add_bos, add_eos):
    w = gguf.GGUFWriter(path, arch)
    w.add_name("tiny random embedding")
    meta(w)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    ag.write_tokenizer(w, add_bos)
    for name, arr, _ in b.tensors:
        w.add_tensor(name, arr)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    names = sys.argv[1:] or list(MODELS)
    for name in names:
        fn, seed = MODELS[name]
        b = ag.Builder(seed)
        arch, meta, info = fn(b)
        path = os.path.join(OUT_DIR, name + ".gguf")
        orig = ag.write_tokenizer

        def tok(w, add_bos, _eos=info.get("add_eos")):
            if info.get("wpm"):
                return bert_tokenizer(w)
            tokens, types = ag.tiny_vocab(VOCAB)
            w.add_tokenizer_model("llama")
            w.add_tokenizer_pre("default")
            w.add_token_list(tokens)
            w.add_token_scores([-float(i) for i in range(VOCAB)])
            w.add_token_types(types)
            w.add_bos_token_id(ag.BOS)
            w.add_eos_token_id(ag.EOS)
            w.add_unk_token_id(ag.UNK)
            w.add_add_bos_token(add_bos)
            w.add_add_eos_token(_eos)

        ag.write_tokenizer = tok
        try:
            write(path, arch, meta, b, info.get("add_bos"), info.get("add_eos"))
        finally:
            ag.write_tokenizer = orig
        with open(path, "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        llm = llama_cpp.Llama(model_path=path, embedding=True, pooling_type=info["pooling"],
                              n_ctx=N_CTX, n_batch=256, n_ubatch=256, n_threads=1,
                              n_threads_batch=1, n_gpu_layers=0, verbose=False)
        inputs = []
        for text in TEXTS + (BERT_EXTRA_TEXTS if info.get("wpm") else []):
            tokens = llm.tokenize(text.encode("utf-8"))
            vec = llm.embed([text], normalize=False)[0]
            inputs.append({"text": text, "tokens": [int(t) for t in tokens],
                           "embedding": [round(float(x), 7) for x in vec]})
        del llm
        out = {
            "gguf": name + ".gguf",
            "sha256": sha,
            "arch": arch,
            "pooling": {1: "mean", 2: "cls", 3: "last"}[info["pooling"]],
            "llama_cpp": llama_cpp.__version__,
            "settings": "CPU backend, n_threads=1, n_batch=n_ubatch=256, embed(normalize=False)",
            "inputs": inputs,
        }
        jpath = os.path.join(OUT_DIR, name + ".json")
        with open(jpath, "w") as f:
            json.dump(out, f, separators=(",", ":"))
            f.write("\n")
        print(f"{name}: {os.path.getsize(path)} B gguf, dims {len(inputs[0]['embedding'])}, "
              f"tokens {[len(i['tokens']) for i in inputs]}", file=sys.stderr)


if __name__ == "__main__":
    main()
