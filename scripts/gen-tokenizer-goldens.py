#!/usr/bin/env python3
"""Golden token ids from llama.cpp for hearth's Gemma 3 tokenizer test.

For each string below: llama.cpp's ids with BOS and special-token parsing
(`tokenize(text, add_bos=True, special=True)`) and without either (`add_bos=False,
special=False`), plus the bytes llama.cpp detokenizes a few single ids to
(`detokenize([id], special=True/False)`). Only the vocabulary is loaded (`vocab_only=True`), so
this runs in a second. Strings are stored as given; bytes as lists of integers.

With two more arguments it also writes random strings (seeded, mixing scripts, emoji,
whitespace runs and special-token spellings) tokenized both ways by every
`ggml-vocab-*.gguf` of llama.cpp's test suite that llama.cpp loads, keyed by vocab name,
and each vocabulary's BOS/EOS ids and flags, end-of-generation ids and control tokens.

Rerun (any llama-cpp-python; the CPU build from the PyPI sdist is enough):
    python3 -m venv .cache/llama-venv
    .cache/llama-venv/bin/pip install llama-cpp-python
    .cache/llama-venv/bin/python scripts/gen-tokenizer-goldens.py \
        "$(scripts/fetch-model.sh)" tests/fixtures/gemma3_tokens.json \
        "$(scripts/fetch-llama-src.sh)" tests/fixtures/vocab_fuzz.json
"""
import glob
import os
import random
import json
import sys

import llama_cpp

STRINGS = [
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\t\t x",
    "\n",
    "\n\n\n",
    " \n \n",
    "Hello",
    " Hello",
    "Hello ",
    "  Hello  world  ",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "for (int i = 0; i < 10; ++i) { printf(\"%d\\n\", i); }",
    "1234567",
    "3.14159 + 2.71828 = 5.85987",
    "1,000,000 and 1.000.000 and 10^6",
    "Café, naïve, façade, résumé, Ångström",
    "Straße über Öl",
    "日本語のテキストです。",
    "中文测试：你好，世界！",
    "한국어 텍스트",
    "Привет, мир!",
    "😀",
    "👨‍👩‍👧‍👦 family",
    "🏳️‍🌈 and 👍🏽",
    "مرحبا بالعالم",
    "שלום עולם",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\n",
    "<bos>",
    "<bos>Hello",
    "<end_of_turn>",
    "<eos>",
    "<pad> <unk> <mask>",
    "<start_of_turn> spaced <end_of_turn> ",
    "<div class=\"x\"><p>Hello &amp; <b>bye</b></p></div>",
    "<not_a_token> <start_of_turn",
    "Supercalifragilisticexpialidocious" * 4,
    "a" * 100,
    "!!!???...,,,;;;",
    "   leading and trailing   ",
    "tab\tseparated\tvalues\n1\t2\t3",
    "\u00a0non-breaking\u2003em space",
    "mixed 日本 and English 123 😀!",
    "\r\nwindows\r\nlines",
    "x\u0301\u0302 combining",
]

# Ids whose detokenized bytes the test checks (with special=True and False).
PIECE_TEXTS = ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>", "<0x0A>", "<0xF0>", "▁Hello", "\n\n"]


def main(model_path, out_path):
    llm = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)
    cases = []
    for s in STRINGS:
        b = s.encode("utf-8")
        cases.append({
            "text": s,
            "special": llm.tokenize(b, add_bos=True, special=True),
            "plain": llm.tokenize(b, add_bos=False, special=False),
        })
    vocab = llm._model.vocab
    pieces = []
    n_vocab = llm.n_vocab()
    by_text = {}
    for i in range(n_vocab):
        t = llama_cpp.llama_vocab_get_text(vocab, i).decode("utf-8", "replace")
        if t in PIECE_TEXTS and t not in by_text:
            by_text[t] = i
    ids = sorted(set(by_text.values()) | {0, 1, 2, 3, 100, 1000, 10000, 100000, 200000, n_vocab - 1})
    for i in ids:
        pieces.append({
            "id": i,
            "special": list(llm.detokenize([i], special=True)),
            "plain": list(llm.detokenize([i], special=False)),
        })
    out = {
        "model": model_path.split("/")[-1],
        "llama_cpp_python": llama_cpp.__version__,
        "n_vocab": n_vocab,
        "cases": cases,
        "pieces": pieces,
    }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases and {len(pieces)} pieces to {out_path}")


FUZZ_POOL = (
    list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") * 3
    + list("      \t\n\n\r.,;:!?'\"()[]{}<>/\\|@#$%^&*-_=+~`") * 2
    + list("éèàüöäßçñÅøœ日本語中文测试한국어Приветمرحبا")
    + ["😀", "👍🏽", "👨\u200d👩\u200d👧", "\u0301", "\u00a0", "\u2003", "\u200b", "’", "“", "…",
       "—", "１２３", "ﬁ", "Ǆ", "ǅ", " the", " and", "'s", "'ll", "'VE", "123456", "  ", "\n\n",
       "\t\t", "▁", "<0x0A>", "<s>", "</s>", "<|endoftext|>", "<|im_start|>", "<|im_end|>",
       "<|eot_id|>", "<|begin_of_text|>", "<start_of_turn>", "<end_of_turn>", "<bos>", "<unk>",
       "<|user|>", "<|assistant|>", "<|end|>", "<mask>"]
)


def fuzz(models_dir, out_path, n=40):
    rng = random.Random(7)
    strings = ["".join(rng.choice(FUZZ_POOL) for _ in range(rng.randint(0, 25))) for _ in range(n)]
    out = {"strings": strings, "vocabs": {}, "meta": {}}
    for p in sorted(glob.glob(os.path.join(models_dir, "ggml-vocab-*.gguf"))):
        name = os.path.basename(p)[len("ggml-vocab-"):-len(".gguf")]
        try:
            llm = llama_cpp.Llama(model_path=p, vocab_only=True, verbose=False)
        except Exception as e:  # llama.cpp cannot load some of its own test vocabs
            print(f"skip {name}: {e}", file=sys.stderr)
            continue
        out["vocabs"][name] = [
            {"plain": llm.tokenize(s.encode(), add_bos=False, special=False),
             "special": llm.tokenize(s.encode(), add_bos=True, special=True)}
            for s in strings
        ]
        v = llm._model.vocab
        ids = range(llm.n_vocab())
        control = [i for i in ids if llama_cpp.llama_vocab_is_control(v, i)]
        out["meta"][name] = {
            "bos": llama_cpp.llama_vocab_bos(v),
            "eos": llama_cpp.llama_vocab_eos(v),
            "add_bos": llama_cpp.llama_vocab_get_add_bos(v),
            "add_eos": llama_cpp.llama_vocab_get_add_eos(v),
            "eog": [i for i in ids if llama_cpp.llama_vocab_is_eog(v, i)],
            "n_control": len(control),
            "control_id_sum": sum(control),
        }
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {n} strings for {len(out['vocabs'])} vocabularies to {out_path}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    if len(sys.argv) > 4:
        fuzz(sys.argv[3], sys.argv[4])
