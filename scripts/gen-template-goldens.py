#!/usr/bin/env python3
"""Render llama.cpp's collection of real chat templates the way Hugging Face does.

Writes tests/fixtures/template_goldens.json, the reference tests/chat_templates.rs
compares hearth's renderer against. For every `*.jinja` file in the templates folder it
renders a fixed set of conversations in an environment built like the one transformers
uses for `apply_chat_template`: an ImmutableSandboxedEnvironment with trim_blocks and
lstrip_blocks, loop controls, a no-op `{% generation %}` block, `raise_exception`,
`strftime_now` (pinned to 25 Nov 2026 so the output is stable), and a `tojson` filter
that is `json.dumps` with ensure_ascii off. `tools` is None except in the conversation that offers tools; `documents` is None.
A conversation a template refuses (it raises) records `{"error": message}`.

The templates themselves are not committed; the JSON keeps each file's sha256 so the
test notices when it reads a different version.

Rerun (needs `jinja2`, e.g. the venv scripts/setup.sh makes):

    scripts/fetch-llama-src.sh          # prints DIR; its templates/ holds the .jinja files
    python3 scripts/gen-template-goldens.py DIR/templates

With no argument it uses $HEARTH_LLAMA_MODELS/templates, then
~/.cache/hearth/llama-models-0.3.36/templates.
"""

import datetime
import hashlib
import json
import os
import sys
from pathlib import Path

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime.datetime(2026, 11, 25, 0, 0, 0)
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "template_goldens.json"

SYSTEM = "You are a helpful assistant."
CONVERSATIONS = {
    "user": {
        "add_generation_prompt": True,
        "messages": [{"role": "user", "content": "Hello!"}],
    },
    "system_user": {
        "add_generation_prompt": True,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is 2+2?"},
        ],
    },
    "multi_turn": {
        "add_generation_prompt": True,
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Tell me a joke."},
        ],
    },
    "full_no_generation_prompt": {
        "add_generation_prompt": False,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Name a colour."},
            {"role": "assistant", "content": "Blue."},
            {"role": "user", "content": "Another one?"},
            {"role": "assistant", "content": "Green."},
        ],
    },
    "unicode_newlines": {
        "add_generation_prompt": True,
        "messages": [
            {"role": "user", "content": "Grüße, 世界! 🌍\nLine two\n\n  indented"},
            {"role": "assistant", "content": 'Ça va — très bien.\n"quoted" <tag> & stuff'},
            {"role": "user", "content": "¿Y tú?  "},
        ],
    },
    "reasoning_history": {
        "add_generation_prompt": True,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "What is 6*7?"},
            {
                "role": "assistant",
                "content": "<think>\nSix sevens.\n</think>\n\n  The answer is 42.  ",
            },
            {"role": "user", "content": "And 6*8? {{ not a tag }} {% raw %}"},
        ],
    },
    # Tools offered, a call, its result, then the answer is due (hearth renders tools
    # through the template's own `tools`, in transformers' message shapes).
    "tools_round_trip": {
        "add_generation_prompt": True,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather in a city",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "description": "The city"},
                            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                        },
                        "required": ["city"],
                    },
                },
            }
        ],
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": "",
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
                    }
                ],
            },
            {"role": "tool", "content": "18 C and clear", "tool_call_id": "call_1", "name": "get_weather"},
        ],
    },
}

# (substring of the file name, bos_token, eos_token); first match wins.
SPECIAL_TOKENS = [
    ("llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("Llama-3", "<|begin_of_text|>", "<|eot_id|>"),
    ("firefunction", "<|begin_of_text|>", "<|eot_id|>"),
    ("functionary", "<|begin_of_text|>", "<|eot_id|>"),
    ("deepseek", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("DeepSeek", "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    ("gemma", "<bos>", "<eos>"),
    ("Qwen", "", "<|im_end|>"),
    ("Phi-3", "<s>", "<|endoftext|>"),
    ("Cohere", "<BOS_TOKEN>", "<|END_OF_TURN_TOKEN|>"),
    ("LFM", "<|startoftext|>", "<|im_end|>"),
]


def special_tokens(name):
    for key, bos, eos in SPECIAL_TOKENS:
        if key in name:
            return bos, eos
    return "<s>", "</s>"


class GenerationBlock(Extension):
    """`{% generation %}...{% endgeneration %}` renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def strftime_now(fmt):
    return FIXED_NOW.strftime(fmt)


def environment():
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationBlock, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, conv, bos, eos):
    try:
        template = env.from_string(source)
        return template.render(
            messages=conv["messages"],
            tools=conv.get("tools"),
            documents=None,
            add_generation_prompt=conv["add_generation_prompt"],
            bos_token=bos,
            eos_token=eos,
        )
    except Exception as e:  # noqa: BLE001 - any failure is a recorded outcome
        return {"error": f"{type(e).__name__}: {e}"}


def templates_dir():
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    if os.environ.get("HEARTH_LLAMA_MODELS"):
        return Path(os.environ["HEARTH_LLAMA_MODELS"]) / "templates"
    return Path.home() / ".cache/hearth/llama-models-0.3.36/templates"


def main():
    folder = templates_dir()
    files = sorted(folder.glob("*.jinja"))
    if not files:
        sys.exit(f"no .jinja files in {folder}")
    env = environment()
    templates = {}
    for path in files:
        data = path.read_bytes()
        source = data.decode("utf-8")
        bos, eos = special_tokens(path.name)
        renders = {
            name: render(env, source, conv, bos, eos) for name, conv in CONVERSATIONS.items()
        }
        templates[path.name] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bos_token": bos,
            "eos_token": eos,
            "renders": renders,
        }
    doc = {
        "generated_by": "scripts/gen-template-goldens.py",
        "jinja2": jinja2.__version__,
        "date": FIXED_NOW.strftime("%d %b %Y"),
        "conversations": CONVERSATIONS,
        "templates": templates,
    }
    OUT.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    errors = sum(isinstance(r, dict) for t in templates.values() for r in t["renders"].values())
    print(f"{len(templates)} templates, {errors} recorded errors -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
