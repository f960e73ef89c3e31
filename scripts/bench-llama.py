#!/usr/bin/env python3
"""llama.cpp's timing of the same work as `cargo bench --bench forward`: a 64-token
prefill and single-token greedy decode steps, through llama-cpp-python. The speed peer
for hearth's numbers; run it on the same machine and adapter.

    PYTHON scripts/bench-llama.py MODEL.gguf [--gpu-layers 99] [--prompt 64] [--decode 32]

Use a llama-cpp-python built with CMAKE_ARGS="-DGGML_VULKAN=on" for its Vulkan backend
(--gpu-layers 99) or the default CPU build (--gpu-layers 0).
"""
import argparse
import statistics
import time

import llama_cpp
import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--gpu-layers", type=int, default=0)
    ap.add_argument("--prompt", type=int, default=64)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=a.prompt + a.decode + 8, n_batch=a.prompt,
                          n_gpu_layers=a.gpu_layers, n_threads=a.threads, logits_all=False,
                          verbose=False)
    prompt = [2 + (i * 7919) % 20000 for i in range(a.prompt)]
    vocab = llm.n_vocab()

    def last_argmax():
        # Without logits_all llama.cpp computes only the last token's logits.
        logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(vocab,))
        return int(np.argmax(logits))

    pp, tg = [], []
    for rep in range(a.reps + 1):
        llm.reset()
        t = time.perf_counter()
        llm.eval(prompt)
        nxt = last_argmax()
        prefill = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(a.decode):
            llm.eval([nxt])
            nxt = last_argmax()
        decode = (time.perf_counter() - t) / a.decode
        if rep > 0:
            pp.append(prefill)
            tg.append(decode)
    backend = "Vulkan" if a.gpu_layers > 0 else f"CPU ({a.threads} threads)"
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0
    print(f"llama.cpp {llama_cpp.__version__}, {backend}")
    print("| test | time | t/s |")
    print("|---|---|---|")
    print(f"| pp{a.prompt} | {statistics.mean(pp)*1e3:.1f} ± {sd(pp)*1e3:.1f} ms | {a.prompt/statistics.mean(pp):.1f} |")
    print(f"| tg{a.decode} | {statistics.mean(tg)*1e3:.1f} ± {sd(tg)*1e3:.1f} ms/token | {1/statistics.mean(tg):.1f} |")


if __name__ == "__main__":
    main()
