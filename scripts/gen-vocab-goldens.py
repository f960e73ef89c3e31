#!/usr/bin/env python3
"""llama.cpp's token ids for vocabularies of its test suite that ship without .inp/.out.

llama.cpp's models/ has ggml-vocab-nomic-bert-moe.gguf (a Unigram, "t5", vocabulary)
but no tests for it. This tokenizes every input of another vocabulary's .inp file (the
strings test-tokenizer-0 uses) with llama.cpp itself, without BOS/EOS and with special
tokens not parsed (`tokenize(text, add_bos=False, special=False)`, as test-tokenizer-0
calls it), and writes the ids in the .out format: one line per input, each id preceded
by a space. tests/tokenizer_suite.rs reads them from tests/fixtures/.

Rerun (any llama-cpp-python; only the vocabulary is loaded):
    .cache/llama-venv/bin/python scripts/gen-vocab-goldens.py "$(scripts/fetch-llama-src.sh)"
"""
import os
import sys

import llama_cpp

# (vocabulary, the vocabulary whose .inp it is tested on)
VOCABS = [("nomic-bert-moe", "bert-bge")]
SEP = "\n__ggml_vocab_test__\n"


def inputs(path):
    text = open(path, encoding="utf-8").read()
    parts = text.split(SEP)
    if parts and parts[-1] == "":  # the file ends with a separator
        parts.pop()
    return parts


def main(models_dir, out_dir):
    for name, inp_of in VOCABS:
        llm = llama_cpp.Llama(
            model_path=os.path.join(models_dir, f"ggml-vocab-{name}.gguf"),
            vocab_only=True,
            verbose=False,
        )
        strings = inputs(os.path.join(models_dir, f"ggml-vocab-{inp_of}.gguf.inp"))
        lines = []
        for s in strings:
            ids = llm.tokenize(s.encode("utf-8"), add_bos=False, special=False)
            lines.append("".join(f" {i}" for i in ids))
        out = os.path.join(out_dir, f"ggml-vocab-{name}.gguf.out")
        with open(out, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{name}: {len(strings)} strings of {inp_of}.inp -> {out} "
              f"(llama-cpp-python {llama_cpp.__version__})")


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else os.path.join(here, "..", "tests", "fixtures"))
