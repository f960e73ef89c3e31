#!/usr/bin/env python3
"""Golden logits from llama.cpp for hearth's agreement test on Gemma 3 270M (base, Q4_K_M).

For each fixed prompt: llama.cpp's greedy 32-token continuation (decoded one token at a
time, recording the top-2 gap at each step), then the whole sequence (prompt +
continuation) evaluated at once with logits for every position. Per position it keeps
the top-20 ids and logits and the logits of a fixed random set of 128 probe ids: enough
for top-k agreement and an NMSE over a representative sample, small enough to commit.

Rerun (builds llama.cpp's CPU backend from the PyPI source distribution, ~5 min):
    python3 -m venv .cache/llama-venv
    .cache/llama-venv/bin/pip install llama-cpp-python numpy
    .cache/llama-venv/bin/python scripts/gen-llama-goldens.py "$(scripts/fetch-model.sh)" \
        tests/fixtures/llama_goldens.json
For the Vulkan backend, build with CMAKE_ARGS="-DGGML_VULKAN=on" and add `99` (layers to
offload) after the output path.
"""
import hashlib
import json
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
CONTINUATION = 32
TOP = 20
PROBES = 128


def top(logits, k):
    idx = np.argsort(-logits, kind="stable")[:k]
    return [int(i) for i in idx], [round(float(logits[i]), 4) for i in idx]


def main():
    model_path, out_path = sys.argv[1], sys.argv[2]
    # Optional third argument: layers to offload (99 = all, with a Vulkan build).
    gpu_layers = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    with open(model_path, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    llm = llama_cpp.Llama(model_path=model_path, n_ctx=256, n_batch=256, logits_all=True,
                          n_threads=2, n_gpu_layers=gpu_layers, verbose=False)
    vocab = llm.n_vocab()
    probes = sorted(np.random.default_rng(2024).choice(vocab, PROBES, replace=False).tolist())
    prompts = []
    for text, special in [(t, False) for t in PROMPTS] + [(t, True) for t in SPECIAL_PROMPTS]:
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
    with open(out_path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
