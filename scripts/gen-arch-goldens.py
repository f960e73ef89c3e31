#!/usr/bin/env python3
"""Tiny random-weight GGUFs of five llama.cpp architectures, with llama.cpp's logits as goldens.

For each architecture (gemma2, phi3, mistral3, qwen3moe, gpt-oss) this writes a small model
with the metadata keys, tensor names, shapes and types that llama.cpp's converter
(convert_hf_to_gguf.py / conversion/*.py) writes for that architecture, seeded random
weights, and a SentencePiece ("llama") vocabulary of 320 tokens laid out like
src/model/tiny.rs's. Then llama.cpp (llama-cpp-python 0.3.36, CPU backend) evaluates three
fixed token sequences, each in one batch, and the logits at every position are stored next to
the model as tests/fixtures/arch/<arch>-<variant>.json. As a self-check the longest sequence
is also decoded one token at a time; the largest difference to the one-batch logits is
printed and stored as decode_check_max_diff.

llama.cpp settings of every golden: n_threads=1, n_batch=n_ubatch=256, flash attention OFF,
KV cache in F32 (type_k = type_v = F32, so no f16 rounding of K/V), the n_ctx recorded in the
JSON (llama.cpp pads n_ctx to a multiple of 256). Note that on the CPU backend llama.cpp
quantizes the activations to Q8_0 for its Q8_0 and MXFP4 matrix products, and GELU reads a
f16 table; F32 matrices multiply in F32.

Variants: `f32` (every tensor F32) and a quantized one: `q8_0` (every tensor of two or more
dims whose name ends in .weight, except ffn_gate_inp and norms, as the converter does with
--outtype q8_0) or, for gpt-oss, `mxfp4` (the expert tensors ffn_{gate,up,down}_exps in
MXFP4 as the converter repacks them from the released checkpoint, everything else F32).
Quantized with gguf-py's own gguf.quants, so the bytes are what llama.cpp expects.

Rerun (needs the llama-cpp-python venv of scripts/gen-llama-goldens.py and the gguf-py that
ships inside its source distribution, scripts/fetch-llama-src.sh --sdist):
    tar xzf "$(scripts/fetch-llama-src.sh --sdist)" -C /tmp
    .cache/llama-venv/bin/pip install /tmp/llama_cpp_python-0.3.36/vendor/llama.cpp/gguf-py
    .cache/llama-venv/bin/python scripts/gen-arch-goldens.py            # all architectures
    .cache/llama-venv/bin/python scripts/gen-arch-goldens.py gemma2 phi3  # some
Output is deterministic (seeded numpy RNG), so a rerun reproduces the committed files.
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q
from gguf.quants import quantize

import llama_cpp

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "arch")

VOCAB = 300
HIDDEN = 64
N_HEAD = 4
N_HEAD_KV = 2
HEAD_DIM = 16
FFN = 96
N_LAYER = 4
N_LAYER_MOE = 2  # keeps the F32 MoE files near 650 KB (8 experts x 3 x 64 x 32 F32 = 196 KB a layer)
N_EXPERT = 8
N_EXPERT_USED = 2
FFN_EXP = 32
SWA = 8
SEQ_LENS = [16, 28, 40]
N_CTX = 256
BOS, EOS, UNK = 1, 2, 0


def tiny_vocab(n):
    """tiny.rs's vocabulary: <unk> <s> </s>, 256 <0xNN> byte tokens, ▁ a-z 0-9 .,!? then <tokN>."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [2, 3, 3]  # unknown, control, control
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [6] * 256  # byte
    for c in ["\u2581"] + [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789") + list(".,!?"):
        tokens.append(c)
        types.append(1)
    for i in range(len(tokens), n):
        tokens.append(f"<tok{i}>")
        types.append(1)
    return tokens[:n], types[:n]


class Builder:
    """Collects one model's tensors (F32 numpy arrays in GGUF order: numpy shape is ggml ne reversed)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.tensors = []  # (name, array, quantizable)

    def mat(self, name, *ne, scale=1.0, quant=True):
        """A weight with ggml dims ne (ne[0] = row length = input width), ~N(0, scale^2/ne[0])."""
        a = self.rng.standard_normal(tuple(reversed(ne))).astype(np.float32) * np.float32(scale / math.sqrt(ne[0]))
        self.tensors.append((name, a, quant))

    def norm(self, name, n):
        a = (1.0 + 0.1 * self.rng.standard_normal(n)).astype(np.float32)
        self.tensors.append((name, a, False))

    def vec(self, name, *ne, scale=0.05):
        a = (scale * self.rng.standard_normal(tuple(reversed(ne)))).astype(np.float32)
        self.tensors.append((name, a, False))

    def raw(self, name, a):
        self.tensors.append((name, np.asarray(a, dtype=np.float32), False))


def write_tokenizer(w, add_bos):
    tokens, types = tiny_vocab(VOCAB)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores([-float(i) for i in range(VOCAB)])
    w.add_token_types(types)
    w.add_bos_token_id(BOS)
    w.add_eos_token_id(EOS)
    w.add_unk_token_id(UNK)
    w.add_add_bos_token(add_bos)
    w.add_add_eos_token(False)


# ---------------------------------------------------------------------------------------------
# Architectures: each returns (metadata writer callback, Builder, dict of facts for the JSON).
# Metadata mirrors conversion/<model>.py's set_gguf_parameters (and base.py's TextModel one
# where the class calls super()), in the same order.


def gemma2(b: Builder, variant):
    head_dim = 32  # q width 128 != hidden 64, as in Gemma 2 (2B: 8 x 256 vs 2304)
    cfg = dict(head_dim=head_dim, attn_softcap=2.0, final_softcap=3.0)

    def meta(w):
        # conversion/gemma.py Gemma2Model.set_gguf_parameters (does not call super(): no rope keys)
        w.add_context_length(N_CTX)
        w.add_embedding_length(HIDDEN)
        w.add_block_count(N_LAYER)
        w.add_feed_forward_length(FFN)
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_HEAD_KV)
        w.add_layer_norm_rms_eps(1e-6)
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
        w.add_attn_logit_softcapping(cfg["attn_softcap"])
        w.add_final_logit_softcapping(cfg["final_softcap"])
        w.add_sliding_window(SWA)
        # Gemma2Model.set_vocab: sentencepiece + add_space_prefix False
        w.add_add_space_prefix(False)

    b.mat("token_embd.weight", HIDDEN, VOCAB)
    b.norm("output_norm.weight", HIDDEN)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", HIDDEN)
        b.mat(p + "attn_q.weight", HIDDEN, N_HEAD * head_dim)
        b.mat(p + "attn_k.weight", HIDDEN, N_HEAD_KV * head_dim)
        b.mat(p + "attn_v.weight", HIDDEN, N_HEAD_KV * head_dim)
        b.mat(p + "attn_output.weight", N_HEAD * head_dim, HIDDEN)
        b.norm(p + "post_attention_norm.weight", HIDDEN)
        b.norm(p + "ffn_norm.weight", HIDDEN)
        b.mat(p + "ffn_gate.weight", HIDDEN, FFN)
        b.mat(p + "ffn_up.weight", HIDDEN, FFN)
        b.mat(p + "ffn_down.weight", FFN, HIDDEN)
        b.norm(p + "post_ffw_norm.weight", HIDDEN)
    # tied output: no output.weight (llama.cpp reuses token_embd)
    return meta, dict(add_bos=True, runs=[("", N_CTX)], facts=cfg)


def phi3(b: Builder, variant):
    orig_ctx, max_pos = 256, 1024  # n_ctx 512 > 256 -> long factors; n_ctx 256 -> short factors
    scale = max_pos / orig_ctx
    attn_factor = math.sqrt(1 + math.log(scale) / math.log(orig_ctx))  # conversion/phi.py, longrope
    rope_dims = HIDDEN // N_HEAD
    cfg = dict(original_context_length=orig_ctx, context_length=max_pos, attn_factor=attn_factor,
               sliding_window_written_but_ignored=262144)

    def meta(w):
        # conversion/phi.py Phi3MiniModel.set_gguf_parameters (does not call super())
        w.add_context_length(max_pos)
        w.add_rope_scaling_orig_ctx_len(orig_ctx)
        w.add_embedding_length(HIDDEN)
        w.add_feed_forward_length(FFN)
        w.add_block_count(N_LAYER)
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_HEAD_KV)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_dimension_count(rope_dims)
        w.add_rope_freq_base(10000.0)
        # Phi-3-mini-128k / Phi-3.5-mini carry sliding_window 262144; llama.cpp disables Phi SWA
        w.add_sliding_window(cfg["sliding_window_written_but_ignored"])
        # generate_extra_tensors
        w.add_rope_scaling_attn_factors(attn_factor)

    # generate_extra_tensors yields long then short (global tensors, no blk. prefix)
    long_f = np.geomspace(1.0, 24.0, rope_dims // 2) * (1 + 0.05 * b.rng.standard_normal(rope_dims // 2))
    short_f = 1.0 + 0.15 * np.abs(b.rng.standard_normal(rope_dims // 2))
    b.raw("rope_factors_long.weight", long_f)
    b.raw("rope_factors_short.weight", short_f)
    b.mat("token_embd.weight", HIDDEN, VOCAB)
    b.norm("output_norm.weight", HIDDEN)
    b.mat("output.weight", HIDDEN, VOCAB)
    qkv = HIDDEN + 2 * N_HEAD_KV * HEAD_DIM
    for i in range(N_LAYER):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", HIDDEN)
        b.mat(p + "attn_qkv.weight", HIDDEN, qkv)  # rows: Q (64), K (32), V (32)
        b.mat(p + "attn_output.weight", HIDDEN, HIDDEN)
        b.norm(p + "ffn_norm.weight", HIDDEN)
        b.mat(p + "ffn_up.weight", HIDDEN, 2 * FFN)  # rows: gate (96) then up (96)
        b.mat(p + "ffn_down.weight", FFN, HIDDEN)
    cfg["rope_factors_long"] = [float(x) for x in np.float32(long_f)]
    cfg["rope_factors_short"] = [float(x) for x in np.float32(short_f)]
    return meta, dict(add_bos=True, runs=[("", 2 * orig_ctx), ("-short", orig_ctx)] if variant == "f32" else [("", 2 * orig_ctx)], facts=cfg)


def mistral3(b: Builder, variant):
    cfg = dict(rope_type="yarn", factor=16.0, original_context_length=16, context_length=256,
               beta_fast=8.0, beta_slow=0.5, freq_base=10000.0, yarn_log_multiplier=1.0,
               temperature_scale=0.1)

    def meta(w):
        # base.py TextModel.set_gguf_parameters, then llama.py LlamaModel, then mistral3.py Ministral3Model
        w.add_block_count(N_LAYER)
        w.add_context_length(cfg["context_length"])
        w.add_embedding_length(HIDDEN)
        w.add_feed_forward_length(FFN)
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_HEAD_KV)
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(cfg["factor"])
        w.add_rope_scaling_orig_ctx_len(cfg["original_context_length"])
        w.add_rope_scaling_yarn_beta_fast(cfg["beta_fast"])
        w.add_rope_scaling_yarn_beta_slow(cfg["beta_slow"])
        w.add_rope_freq_base(cfg["freq_base"])
        w.add_layer_norm_rms_eps(1e-5)
        w.add_key_length(HEAD_DIM)
        w.add_value_length(HEAD_DIM)
        w.add_vocab_size(VOCAB)
        w.add_rope_dimension_count(HEAD_DIM)
        w.add_rope_scaling_yarn_log_mul(cfg["yarn_log_multiplier"])
        w.add_attn_temperature_scale(cfg["temperature_scale"])

    b.mat("token_embd.weight", HIDDEN, VOCAB)
    b.norm("output_norm.weight", HIDDEN)
    b.mat("output.weight", HIDDEN, VOCAB)
    for i in range(N_LAYER):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", HIDDEN)
        b.mat(p + "attn_q.weight", HIDDEN, N_HEAD * HEAD_DIM)
        b.mat(p + "attn_k.weight", HIDDEN, N_HEAD_KV * HEAD_DIM)
        b.mat(p + "attn_v.weight", HIDDEN, N_HEAD_KV * HEAD_DIM)
        b.mat(p + "attn_output.weight", N_HEAD * HEAD_DIM, HIDDEN)
        b.norm(p + "ffn_norm.weight", HIDDEN)
        b.mat(p + "ffn_gate.weight", HIDDEN, FFN)
        b.mat(p + "ffn_up.weight", HIDDEN, FFN)
        b.mat(p + "ffn_down.weight", FFN, HIDDEN)
    return meta, dict(add_bos=True, runs=[("", N_CTX)], facts=cfg)


def qwen3moe(b: Builder, variant):
    cfg = dict(freq_base=1e6, router_scale=3.0)

    def meta(w):
        # base.py TextModel.set_gguf_parameters, then qwen.py Qwen2MoeModel
        w.add_block_count(N_LAYER_MOE)
        w.add_context_length(N_CTX)
        w.add_embedding_length(HIDDEN)
        w.add_feed_forward_length(FFN)
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_HEAD_KV)
        w.add_rope_freq_base(cfg["freq_base"])
        w.add_layer_norm_rms_eps(1e-6)
        w.add_expert_count(N_EXPERT)
        w.add_expert_used_count(N_EXPERT_USED)
        w.add_key_length(HEAD_DIM)
        w.add_value_length(HEAD_DIM)
        w.add_expert_feed_forward_length(FFN_EXP)

    b.mat("token_embd.weight", HIDDEN, VOCAB)
    b.norm("output_norm.weight", HIDDEN)
    b.mat("output.weight", HIDDEN, VOCAB)
    for i in range(N_LAYER_MOE):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", HIDDEN)
        b.mat(p + "attn_q.weight", HIDDEN, N_HEAD * HEAD_DIM)
        b.mat(p + "attn_k.weight", HIDDEN, N_HEAD_KV * HEAD_DIM)
        b.mat(p + "attn_v.weight", HIDDEN, N_HEAD_KV * HEAD_DIM)
        b.mat(p + "attn_output.weight", N_HEAD * HEAD_DIM, HIDDEN)
        b.norm(p + "attn_q_norm.weight", HEAD_DIM)
        b.norm(p + "attn_k_norm.weight", HEAD_DIM)
        b.norm(p + "ffn_norm.weight", HIDDEN)
        # router: larger weights so the top-2 choice is rarely a near tie
        b.mat(p + "ffn_gate_inp.weight", HIDDEN, N_EXPERT, scale=cfg["router_scale"], quant=False)
        b.mat(p + "ffn_gate_exps.weight", HIDDEN, FFN_EXP, N_EXPERT)
        b.mat(p + "ffn_up_exps.weight", HIDDEN, FFN_EXP, N_EXPERT)
        b.mat(p + "ffn_down_exps.weight", FFN_EXP, HIDDEN, N_EXPERT)
    return meta, dict(add_bos=False, runs=[("", N_CTX)], facts=cfg)


def qwen2moe(b: Builder, variant):
    cfg = dict(freq_base=1e6, router_scale=3.0, shared_ffn=64)

    def meta(w):
        # base.py TextModel.set_gguf_parameters, then qwen.py Qwen2MoeModel
        w.add_block_count(N_LAYER_MOE)
        w.add_context_length(N_CTX)
        w.add_embedding_length(HIDDEN)
        w.add_feed_forward_length(FFN)
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_HEAD_KV)
        w.add_rope_freq_base(cfg["freq_base"])
        w.add_layer_norm_rms_eps(1e-6)
        w.add_expert_count(N_EXPERT)
        w.add_expert_used_count(N_EXPERT_USED)
        w.add_expert_feed_forward_length(FFN_EXP)
        w.add_expert_shared_feed_forward_length(cfg["shared_ffn"])

    b.mat("token_embd.weight", HIDDEN, VOCAB)
    b.norm("output_norm.weight", HIDDEN)
    b.mat("output.weight", HIDDEN, VOCAB)
    for i in range(N_LAYER_MOE):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", HIDDEN)
        b.mat(p + "attn_q.weight", HIDDEN, HIDDEN)
        b.vec(p + "attn_q.bias", HIDDEN)
        b.mat(p + "attn_k.weight", HIDDEN, N_HEAD_KV * (HIDDEN // N_HEAD))
        b.vec(p + "attn_k.bias", N_HEAD_KV * (HIDDEN // N_HEAD))
        b.mat(p + "attn_v.weight", HIDDEN, N_HEAD_KV * (HIDDEN // N_HEAD))
        b.vec(p + "attn_v.bias", N_HEAD_KV * (HIDDEN // N_HEAD))
        b.mat(p + "attn_output.weight", HIDDEN, HIDDEN)
        b.norm(p + "ffn_norm.weight", HIDDEN)
        b.mat(p + "ffn_gate_inp.weight", HIDDEN, N_EXPERT, scale=cfg["router_scale"], quant=False)
        b.mat(p + "ffn_gate_exps.weight", HIDDEN, FFN_EXP, N_EXPERT)
        b.mat(p + "ffn_up_exps.weight", HIDDEN, FFN_EXP, N_EXPERT)
        b.mat(p + "ffn_down_exps.weight", FFN_EXP, HIDDEN, N_EXPERT)
        # the shared expert and its sigmoid gate (a [n_embd] row, kept F32 like a norm)
        b.vec(p + "ffn_gate_inp_shexp.weight", HIDDEN, scale=0.5)
        b.mat(p + "ffn_gate_shexp.weight", HIDDEN, cfg["shared_ffn"])
        b.mat(p + "ffn_up_shexp.weight", HIDDEN, cfg["shared_ffn"])
        b.mat(p + "ffn_down_shexp.weight", cfg["shared_ffn"], HIDDEN)
    return meta, dict(add_bos=False, runs=[("", N_CTX)], facts=cfg)


def gpt_oss(b: Builder, variant):
    cfg = dict(rope_type="yarn", factor=16.0, original_context_length=16, context_length=256,
               beta_fast=32.0, beta_slow=1.0, freq_base=150000.0, router_scale=3.0, expert_gate_up_scale=3.0)

    def meta(w):
        # base.py TextModel.set_gguf_parameters, then gpt_oss.py GptOssModel
        w.add_block_count(N_LAYER_MOE)
        w.add_context_length(cfg["context_length"])
        w.add_embedding_length(HIDDEN)
        w.add_feed_forward_length(FFN_EXP)  # HF intermediate_size is the expert width
        w.add_head_count(N_HEAD)
        w.add_head_count_kv(N_HEAD_KV)
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(cfg["factor"])
        w.add_rope_scaling_orig_ctx_len(cfg["original_context_length"])
        w.add_rope_scaling_yarn_beta_fast(cfg["beta_fast"])
        w.add_rope_scaling_yarn_beta_slow(cfg["beta_slow"])
        w.add_rope_freq_base(cfg["freq_base"])
        w.add_layer_norm_rms_eps(1e-5)
        w.add_expert_count(N_EXPERT)
        w.add_expert_used_count(N_EXPERT_USED)
        w.add_key_length(HEAD_DIM)
        w.add_value_length(HEAD_DIM)
        w.add_sliding_window(SWA)
        w.add_expert_feed_forward_length(FFN_EXP)

    b.mat("token_embd.weight", HIDDEN, VOCAB)
    b.norm("output_norm.weight", HIDDEN)
    b.mat("output.weight", HIDDEN, VOCAB)
    for i in range(N_LAYER_MOE):
        p = f"blk.{i}."
        b.norm(p + "attn_norm.weight", HIDDEN)
        b.mat(p + "attn_q.weight", HIDDEN, N_HEAD * HEAD_DIM)
        b.vec(p + "attn_q.bias", N_HEAD * HEAD_DIM)
        b.mat(p + "attn_k.weight", HIDDEN, N_HEAD_KV * HEAD_DIM)
        b.vec(p + "attn_k.bias", N_HEAD_KV * HEAD_DIM)
        b.mat(p + "attn_v.weight", HIDDEN, N_HEAD_KV * HEAD_DIM)
        b.vec(p + "attn_v.bias", N_HEAD_KV * HEAD_DIM)
        b.mat(p + "attn_output.weight", N_HEAD * HEAD_DIM, HIDDEN)
        b.vec(p + "attn_output.bias", HIDDEN)
        b.raw(p + "attn_sinks.weight", b.rng.standard_normal(N_HEAD))
        b.norm(p + "post_attention_norm.weight", HIDDEN)
        b.mat(p + "ffn_gate_inp.weight", HIDDEN, N_EXPERT, scale=cfg["router_scale"], quant=False)
        b.vec(p + "ffn_gate_inp.bias", N_EXPERT, scale=0.5)
        # gate/up larger than N(0, 1/n) so SwiGLU's clamp at 7 is reached
        b.mat(p + "ffn_gate_exps.weight", HIDDEN, FFN_EXP, N_EXPERT, scale=cfg["expert_gate_up_scale"])
        b.vec(p + "ffn_gate_exps.bias", FFN_EXP, N_EXPERT, scale=0.5)
        b.mat(p + "ffn_up_exps.weight", HIDDEN, FFN_EXP, N_EXPERT, scale=cfg["expert_gate_up_scale"])
        b.vec(p + "ffn_up_exps.bias", FFN_EXP, N_EXPERT, scale=0.5)
        b.mat(p + "ffn_down_exps.weight", FFN_EXP, HIDDEN, N_EXPERT, scale=0.3)
        b.vec(p + "ffn_down_exps.bias", HIDDEN, N_EXPERT)
    return meta, dict(add_bos=False, runs=[("", N_CTX)], facts=cfg)


ARCHS = {
    "gemma2": (gemma2, ["f32", "q8_0"], 1),
    "phi3": (phi3, ["f32", "q8_0"], 2),
    "mistral3": (mistral3, ["f32", "q8_0"], 3),
    "qwen3moe": (qwen3moe, ["f32", "q8_0"], 4),
    "gpt-oss": (gpt_oss, ["f32", "mxfp4"], 5),
    "qwen2moe": (qwen2moe, ["f32", "q8_0"], 6),
}


def tensor_type(name, arr, quant, variant):
    if variant == "f32" or arr.ndim < 2 or not quant or not name.endswith(".weight"):
        return Q.F32
    if variant == "q8_0":
        return Q.Q8_0
    if variant == "mxfp4":
        return Q.MXFP4 if name.endswith("_exps.weight") else Q.F32
    raise ValueError(variant)


def write_gguf(path, arch, variant, meta, b, add_bos):
    w = gguf.GGUFWriter(path, arch)
    # No architecture in the name: llama.cpp's vocab loader looks for "phi3" in general.name
    # and then wants Phi-3's <|endoftext|> token (llama-vocab.cpp, per-model token attributes).
    w.add_name(f"tiny random {variant}")
    meta(w)
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "mxfp4": gguf.LlamaFileType.MOSTLY_MXFP4_MOE}[variant]
    w.add_file_type(ftype)
    write_tokenizer(w, add_bos)
    types = []
    for name, arr, quant in b.tensors:
        qt = tensor_type(name, arr, quant, variant)
        if qt == Q.F32:
            w.add_tensor(name, arr)
        else:
            w.add_tensor(name, quantize(arr, qt), raw_dtype=qt)
        types.append((name, list(reversed(arr.shape)), qt.name))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return types


def sequences(seed, add_bos):
    rng = np.random.default_rng(seed)
    out = []
    for n in SEQ_LENS:
        ids = rng.integers(3, VOCAB, size=n).tolist()  # no control tokens
        if add_bos:
            ids[0] = BOS
        out.append([int(i) for i in ids])
    return out


def run_llama(path, n_ctx, seqs):
    # yarn_beta_fast/slow -1: the file's values, as llama.cpp's own tools take them
    # (llama-cpp-python would otherwise pass its defaults 32 / 1 over them).
    llm = llama_cpp.Llama(model_path=path, n_ctx=n_ctx, n_batch=256, n_ubatch=256, logits_all=True,
                          n_threads=1, n_threads_batch=1, flash_attn=False,
                          yarn_beta_fast=-1.0, yarn_beta_slow=-1.0,
                          type_k=int(Q.F32), type_v=int(Q.F32), n_gpu_layers=0, verbose=False)
    results = []
    for ids in seqs:
        llm.reset()
        llm.eval(ids)
        results.append(np.array(llm.scores[: len(ids)], dtype=np.float32))
    # decode self-check: the longest sequence one token at a time
    ids = seqs[-1]
    llm.reset()
    dec = []
    for t in ids:
        llm.eval([t])
        dec.append(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
    diff = float(np.max(np.abs(np.stack(dec) - results[-1])))
    del llm
    return results, diff


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("archs", nargs="*", default=list(ARCHS))
    args = ap.parse_args()
    os.makedirs(OUT_DIR, exist_ok=True)
    for arch in args.archs:
        fn, variants, seed = ARCHS[arch]
        f32_logits = None
        for variant in variants:
            b = Builder(seed)  # same weights for every variant of an architecture
            meta, info = fn(b, variant)
            name = f"{arch}-{variant}"
            path = os.path.join(OUT_DIR, name + ".gguf")
            types = write_gguf(path, arch, variant, meta, b, info["add_bos"])
            with open(path, "rb") as f:
                sha = hashlib.sha256(f.read()).hexdigest()
            seqs = sequences(1000 + seed, info["add_bos"])
            for suffix, n_ctx in info["runs"]:
                logits, diff = run_llama(path, n_ctx, seqs)
                vs_f32 = None
                if suffix == "" and variant == "f32":
                    f32_logits = logits
                elif suffix == "" and f32_logits is not None:
                    # how far quantization moves the logits (same weights before quantizing)
                    vs_f32 = float(max(np.abs(a - b).max() for a, b in zip(logits, f32_logits)))
                out = {
                    "gguf": name + ".gguf",
                    "sha256": sha,
                    "arch": arch,
                    "variant": variant,
                    "n_ctx": n_ctx,
                    "llama_cpp": llama_cpp.__version__,
                    "settings": "CPU backend, n_threads=1, n_batch=n_ubatch=256, flash_attn off, KV cache F32",
                    "bos_included": info["add_bos"],
                    "facts": info["facts"],
                    "tensors": [{"name": n, "ne": s, "type": t} for n, s, t in types],
                    "sequences": [
                        {"tokens": ids, "logits": [[round(float(x), 5) for x in row] for row in lg]}
                        for ids, lg in zip(seqs, logits)
                    ],
                    "decode_check_max_diff": diff,
                }
                if vs_f32 is not None:
                    out["max_abs_diff_vs_f32"] = vs_f32
                jpath = os.path.join(OUT_DIR, name + suffix + ".json")
                with open(jpath, "w") as f:
                    json.dump(out, f, separators=(",", ":"))
                    f.write("\n")
                amax = max(float(np.abs(lg).max()) for lg in logits)
                print(f"{name}{suffix}: n_ctx {n_ctx}, {os.path.getsize(path)} B gguf, "
                      f"{os.path.getsize(jpath)} B json, max|logit| {amax:.3f}, "
                      f"decode vs prefill max diff {diff:.2e}"
                      + (f", vs f32 {vs_f32:.3f}" if vs_f32 is not None else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
