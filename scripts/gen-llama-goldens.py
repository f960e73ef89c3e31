#!/usr/bin/env python3
"""Golden logits (and token ids) from llama.cpp for hearth's agreement tests on real models.

For each fixed prompt: llama.cpp's greedy 32-token continuation (decoded one token at a
time, recording the top-2 gap at each step), then the whole sequence (prompt +
continuation) evaluated at once with logits for every position. Per position it keeps
the top-20 ids and logits and the logits of a fixed random set of 128 probe ids: enough
for top-k agreement and an NMSE over a representative sample, small enough to commit.

Two prompt sets (`--prompts`):
- `gemma` (default): raw text, plus one prompt typed with Gemma's turn markers, for
  Gemma 3 270M base -> tests/fixtures/llama_goldens.json.
- `chat`: raw text, plus user messages rendered through the model's own chat template
  (`tokenizer.chat_template`, by llama-cpp-python's Jinja2 formatter) and tokenized with
  special-token parsing, as `hearth run` and the chat APIs do; and, under "tokenize",
  llama.cpp's ids for the strings of scripts/gen-tokenizer-goldens.py and a few ChatML
  ones (with BOS and special tokens, and without either). For SmolLM2-135M-Instruct ->
  tests/fixtures/llama_goldens_smollm2.json.

Rerun (builds llama.cpp's CPU backend from the PyPI source distribution, 10-20 min on two
cores; AMX kernels crash in some VMs, hence the flags):
    python3 -m venv .cache/llama-venv
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_AVX512=ON -DGGML_AMX_TILE=OFF \
        -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
        .cache/llama-venv/bin/pip install --no-binary llama-cpp-python \
        llama-cpp-python==0.3.36 numpy
    .cache/llama-venv/bin/python scripts/gen-llama-goldens.py "$(scripts/fetch-model.sh)" \
        tests/fixtures/llama_goldens.json
    .cache/llama-venv/bin/python scripts/gen-llama-goldens.py --prompts chat \
        "$(scripts/fetch-model.sh smollm2)" tests/fixtures/llama_goldens_smollm2.json
For the Vulkan backend, build with CMAKE_ARGS="-DGGML_VULKAN=on" and add `99` (layers to
offload) after the output path.
"""
import argparse
import hashlib
import importlib.util
import json
import os
import sys

import llama_cpp
import numpy as np

PROMPTS = [
    "The capital of France is",
    "Question: What is the capital of France?\nAnswer:",
    "def fibonacci(n):\n",
    "Once upon a time, in a small village",
    "The quick brown fox jumps over",
    "1, 2, 3, 4, 5,",
    "In 1969, Neil Armstrong",
]
# Typed raw with Gemma's turn markers: tokenized with special-token parsing, as
# `hearth run --raw` and llama.cpp do, so <start_of_turn> becomes its control token.
SPECIAL_PROMPTS = [
    "<start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n",
]
# The chat model's set: raw completions, and user messages through its chat template
# (which adds its default system message). The first is the README's chat example.
CHAT_RAW_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n",
    "1, 2, 3, 4, 5,",
    "Once upon a time, in a small village",
]
CHAT_MESSAGES = [
    "What is the capital of France?",
    "Why is local AI important?",
    "Write a haiku about the sea.",
]
# Extra strings for the tokenizer check: ChatML's control tokens typed in text.
CHAT_TOKENIZE = [
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start|> spaced <|im_end|> ",
    "<not_a_token> <|im_start",
    "I'm sure they'll say it's 12345678 -- isn't it?",
]
CONTINUATION = 32
TOP = 20
PROBES = 128


def top(logits, k):
    idx = np.argsort(-logits, kind="stable")[:k]
    return [int(i) for i in idx], [round(float(logits[i]), 4) for i in idx]


def tokenizer_strings():
    """The strings of scripts/gen-tokenizer-goldens.py (one list for both scripts)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen-tokenizer-goldens.py")
    spec = importlib.util.spec_from_file_location("gen_tokenizer_goldens", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.STRINGS


def chat_prompts(llm):
    """User messages rendered by the model's own template, with the generation prompt."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter
    template = llm.metadata["tokenizer.chat_template"]
    piece = lambda i: llm.detokenize([i], special=True).decode()
    fmt = Jinja2ChatFormatter(template, eos_token=piece(llm.token_eos()),
                              bos_token=piece(llm.token_bos()), add_generation_prompt=True)
    return [fmt(messages=[{"role": "user", "content": m}]).prompt for m in CHAT_MESSAGES]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("gpu_layers", nargs="?", type=int, default=0,
                    help="layers to offload (99 = all, with a Vulkan build)")
    ap.add_argument("--prompts", choices=["gemma", "chat"], default="gemma")
    args = ap.parse_args()
    model_path, out_path, gpu_layers = args.model, args.out, args.gpu_layers
    with open(model_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=256, n_batch=256, logits_all=True,
                          n_threads=2, n_gpu_layers=gpu_layers, verbose=False)
    if args.prompts == "gemma":
        cases = [(t, False) for t in PROMPTS] + [(t, True) for t in SPECIAL_PROMPTS]
    else:
        cases = [(t, False) for t in CHAT_RAW_PROMPTS] + [(t, True) for t in chat_prompts(llm)]
    vocab = llm.n_vocab()
    probes = sorted(np.random.default_rng(2024).choice(vocab, PROBES, replace=False).tolist())
    prompts = []
    for text, special in cases:
        ids = llm.tokenize(text.encode(), add_bos=True, special=special)
        # Free-running greedy, one token at a time (as a user would run it).
        llm.reset()
        llm.eval(ids)
        cont, gaps = [], []
        for _ in range(CONTINUATION):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            order = np.argsort(-logits, kind="stable")
            gaps.append(round(float(logits[order[0]] - logits[order[1]]), 4))
            cont.append(int(order[0]))
            llm.eval([int(order[0])])
        # Teacher-forced: the whole sequence at once, logits at every position.
        seq = ids + cont
        llm.reset()
        llm.eval(seq)
        positions = []
        for i in range(len(seq)):
            logits = np.array(llm.scores[i], dtype=np.float32)
            top_ids, top_logits = top(logits, TOP)
            positions.append({
                "top_ids": top_ids,
                "top_logits": top_logits,
                "probe_logits": [round(float(logits[p]), 4) for p in probes],
            })
        prompts.append({"text": text, "special": special, "ids": ids, "continuation": cont, "free_gaps": gaps,
                        "positions": positions})
        print(f"{text!r}: {len(ids)} prompt tokens, continuation {cont[:8]}...", file=sys.stderr)
    out = {
        "generator": f"llama-cpp-python {llama_cpp.__version__}, "
                     + ("Vulkan backend" if gpu_layers > 0 else "CPU backend"),
        "model_sha256": sha,
        "probe_ids": probes,
        "prompts": prompts,
    }
    if args.prompts == "chat":
        out["tokenize"] = [
            {"text": t,
             "special": llm.tokenize(t.encode(), add_bos=True, special=True),
             "plain": llm.tokenize(t.encode(), add_bos=False, special=False)}
            for t in tokenizer_strings() + CHAT_TOKENIZE
        ]
    with open(out_path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
