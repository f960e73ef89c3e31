"""Drives a running `hearth serve` with the official ollama and openai Python clients and
with raw HTTP: generate and chat (streamed and not), bad requests, a bounded load test
(every response complete, the queue limit answers 503, server memory flat across rounds)
and client disconnects while queued, in prefill and while streaming.

Usage: test-clients.py BASE_URL MODEL SERVER_PID [--bench]
With --bench it only measures total generated tokens/s for 1, 4, 8 and 16 clients;
with --prefill-delay, how long a 2,000-token prompt stalls 4 streaming clients.
"""

import http.client
import itertools
import json
import os
import socket
import sys
import threading
import time
import urllib.parse

import jsonschema
import ollama
import openai

BASE, MODEL, PID = sys.argv[1], sys.argv[2], int(sys.argv[3])
HOST = urllib.parse.urlparse(BASE)
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def rss_mb():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def conn(timeout=300):
    return http.client.HTTPConnection(HOST.hostname, HOST.port, timeout=timeout)


def raw(method, path, body=None):
    c = conn()
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    c.request(method, path, body=data, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    out = r.status, r.read().decode()
    c.close()
    return out


def metric(name):
    _, text = raw("GET", "/metrics")
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_metric(name, value, secs):
    t = time.time()
    while time.time() - t < secs:
        if metric(name) == value:
            return True
        time.sleep(0.1)
    return False


OPTS = {"num_predict": 8, "temperature": 0}


def basics():
    cl = ollama.Client(host=BASE)
    r = cl.generate(model=MODEL, prompt="Local AI matters because", options=OPTS)
    check(r.done and r.done_reason in ("stop", "length") and len(r.response) > 0,
          f"ollama generate: {r.response!r} ({r.eval_count} tokens)")
    check(r.eval_duration > 0 and r.prompt_eval_count > 0, "ollama generate timings and counts")
    parts = list(cl.generate(model=MODEL, prompt="Local AI matters because", options=OPTS, stream=True))
    check(parts[-1].done and "".join(p.response for p in parts) == r.response,
          f"ollama generate streamed: {len(parts)} chunks, same text")
    msgs = [{"role": "user", "content": "Why is the sky blue?"}]
    c = cl.chat(model=MODEL, messages=msgs, options=OPTS)
    check(c.done and c.message.role == "assistant" and len(c.message.content) > 0,
          f"ollama chat: {c.message.content!r}")
    parts = list(cl.chat(model=MODEL, messages=msgs, options=OPTS, stream=True))
    check(parts[-1].done and "".join(p.message.content for p in parts) == c.message.content,
          "ollama chat streamed, same text")
    names = [m.model for m in cl.list().models]
    check(MODEL in names, f"ollama list: {names}")
    check(cl.show(MODEL).details.family == "gemma3", "ollama show")
    check(any(m.model == MODEL for m in cl.ps().models), "ollama ps")

    oa = openai.OpenAI(base_url=BASE + "/v1", api_key="unused")
    cc = oa.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8, temperature=0)
    check(cc.choices[0].message.content and cc.usage.completion_tokens > 0,
          f"openai chat: {cc.choices[0].message.content!r} usage {cc.usage.total_tokens}")
    chunks = list(oa.chat.completions.create(model=MODEL, messages=msgs, max_tokens=8, temperature=0,
                                             stream=True, stream_options={"include_usage": True}))
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    check(text == cc.choices[0].message.content and chunks[-1].usage is not None,
          "openai chat streamed with usage, same text")
    co = oa.completions.create(model=MODEL, prompt="Local AI matters because", max_tokens=8, temperature=0)
    check(co.choices[0].text == r.response and co.usage.prompt_tokens > 0,
          f"openai completion matches ollama generate: {co.choices[0].text!r}")
    text = "".join(ch.choices[0].text for ch in oa.completions.create(
        model=MODEL, prompt="Local AI matters because", max_tokens=8, temperature=0, stream=True))
    check(text == r.response, "openai completion streamed")
    check(MODEL in [m.id for m in oa.models.list().data], "openai models")


def json_mode():
    """format "json" through both clients: one JSON object, closed by the model."""
    cl = ollama.Client(host=BASE)
    prompt = 'A person as JSON: {"name": "Ada", "age": 36}. Another person as JSON:'
    r = cl.generate(model=MODEL, prompt=prompt, format="json", options={"num_predict": 40, "temperature": 0})
    try:
        ok = isinstance(json.loads(r.response), dict) and r.done_reason == "stop"
    except ValueError:
        ok = False
    check(ok, f"ollama format json: {r.response!r} ({r.done_reason})")
    oa = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0)
    cc = oa.chat.completions.create(model=MODEL, max_tokens=40, temperature=0,
                                    response_format={"type": "json_object"},
                                    messages=[{"role": "user", "content": prompt}])
    text, reason = cc.choices[0].message.content, cc.choices[0].finish_reason
    try:
        ok = isinstance(json.loads(text), dict) if reason == "stop" else text.lstrip().startswith("{")
    except ValueError:
        ok = False
    check(ok, f"openai json_object: {text!r} ({reason})")


CHAT_MODEL = os.environ.get("HEARTH_CHAT_MODEL_NAME", "")
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "role": {"enum": ["engineer", "artist", "doctor", "teacher"]},
        "skills": {"type": "array", "items": {"type": "string", "maxLength": 16},
                   "minItems": 1, "maxItems": 3},
        "address": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20},
                           "country": {"enum": ["FR", "DE", "JP", "US"]}},
            "required": ["city", "country"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "age", "role", "skills", "address"],
    "additionalProperties": False,
}
WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "maxLength": 30},
        "unit": {"enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "unit"], "additionalProperties": False}}}]


def structured_outputs(samples=20):
    """A strict JSON schema (nested object, array, enums, required fields) through both
    clients on the chat model: every seeded sample at temperature 1 validates."""
    oa = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0)
    cl = ollama.Client(host=BASE)
    msgs = [{"role": "user", "content": "Invent a person and describe them as JSON."}]

    def via_openai(seed):
        cc = oa.chat.completions.create(
            model=CHAT_MODEL, messages=msgs, temperature=1, seed=seed, max_tokens=200,
            response_format={"type": "json_schema",
                             "json_schema": {"name": "person", "strict": True, "schema": PERSON}})
        return cc.choices[0].message.content

    def via_ollama(seed):
        r = cl.chat(model=CHAT_MODEL, messages=msgs, format=PERSON,
                    options={"temperature": 1, "seed": seed, "num_predict": 200})
        return r.message.content

    for name, fn in (("openai json_schema", via_openai), ("ollama format schema", via_ollama)):
        results = [None] * samples

        def worker(i):
            try:
                results[i] = fn(1000 + i)
            except Exception as e:  # noqa: BLE001 - reported as a failed sample
                results[i] = e

        # Four at a time: the server's --parallel (more would meet its queue limit).
        for start in range(0, samples, 4):
            threads = [threading.Thread(target=worker, args=(i,))
                       for i in range(start, min(start + 4, samples))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        valid = 0
        for text in results:
            try:
                jsonschema.validate(json.loads(text), PERSON)
                valid += 1
            except Exception as e:  # noqa: BLE001
                print(f"     invalid: {text!r}: {e}", flush=True)
        check(valid == samples, f"{name}: {valid} of {samples} samples at temperature 1 validate "
                                f"(e.g. {results[0]!r})")


def tool_round_trip():
    """A tool call, its result and the final answer through both clients, streamed and
    not, on the chat model (its template knows no tools: hearth's generic format)."""
    oa = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": "What is the weather in Paris right now?"}]
    for stream in (False, True):
        kw = dict(model=CHAT_MODEL, messages=msgs, tools=WEATHER, tool_choice="required",
                  temperature=0, max_tokens=120)
        if stream:
            calls = {}
            reason = None
            for chunk in oa.chat.completions.create(stream=True, **kw):
                ch = chunk.choices[0]
                reason = ch.finish_reason or reason
                for d in ch.delta.tool_calls or []:
                    c = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
                    c["id"] += d.id or ""
                    c["name"] += d.function.name or ""
                    c["arguments"] += d.function.arguments or ""
            call = calls.get(0)
        else:
            cc = oa.chat.completions.create(**kw)
            reason = cc.choices[0].finish_reason
            tc = (cc.choices[0].message.tool_calls or [None])[0]
            call = tc and {"id": tc.id, "name": tc.function.name, "arguments": tc.function.arguments}
        ok = reason == "tool_calls" and call and call["name"] == "get_weather"
        try:
            args = json.loads(call["arguments"]) if ok else None
            jsonschema.validate(args, WEATHER[0]["function"]["parameters"])
        except Exception:  # noqa: BLE001
            ok = False
        check(ok, f"openai tool call ({'streamed' if stream else 'whole'}): {call} ({reason})")
        if not ok:
            continue
        back = msgs + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call["id"], "type": "function",
                 "function": {"name": call["name"], "arguments": call["arguments"]}}]},
            {"role": "tool", "tool_call_id": call["id"], "content": '{"temperature": 18, "sky": "clear"}'},
        ]
        cc = oa.chat.completions.create(model=CHAT_MODEL, messages=back, tools=WEATHER,
                                        temperature=0, max_tokens=120)
        m = cc.choices[0].message
        check(bool(m.content) or bool(m.tool_calls),
              f"openai answer after the tool result: {m.content!r} {m.tool_calls}")
    cl = ollama.Client(host=BASE)
    r = cl.chat(model=CHAT_MODEL, messages=msgs, tools=WEATHER, options={"temperature": 0, "num_predict": 120})
    calls = r.message.tool_calls or []
    ok = bool(calls) and calls[0].function.name == "get_weather"
    try:
        jsonschema.validate(dict(calls[0].function.arguments), WEATHER[0]["function"]["parameters"])
    except Exception:  # noqa: BLE001
        ok = False
    check(ok, f"ollama tool call: {r.message}")
    streamed = [c for part in cl.chat(model=CHAT_MODEL, messages=msgs, tools=WEATHER, stream=True,
                                      options={"temperature": 0, "num_predict": 120})
                for c in (part.message.tool_calls or [])]
    check(bool(streamed) and [c.function.name for c in streamed] == [c.function.name for c in calls],
          f"ollama tool call streamed: {streamed}")
    if ok:
        back = msgs + [r.message, {"role": "tool", "content": "18 degrees, clear", "tool_name": "get_weather"}]
        r2 = cl.chat(model=CHAT_MODEL, messages=back, tools=WEATHER, options={"temperature": 0, "num_predict": 120})
        check(bool(r2.message.content) or bool(r2.message.tool_calls), f"ollama answer after the tool result: {r2.message}")


def embeddings():
    """Embeddings through both clients on the chat model (a decoder, mean pooling): one
    vector per input, all of the model's width, unit length; `dimensions` cuts them."""
    texts = ["The cat sat on the mat.", "A feline rested on the rug.", "Stock prices fell."]
    oa = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0)
    r = oa.embeddings.create(model=CHAT_MODEL, input=texts)
    vecs = [d.embedding for d in r.data]
    norms = [sum(x * x for x in v) ** 0.5 for v in vecs]
    width = len(vecs[0]) if vecs else 0
    check(len(vecs) == 3 and all(len(v) == width > 0 for v in vecs)
          and all(abs(n - 1) < 1e-3 for n in norms) and r.usage.prompt_tokens > 0,
          f"openai embeddings: {len(vecs)} x {width}, norms {[round(n, 4) for n in norms]}")
    cos = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731 - unit vectors
    check(cos(vecs[0], vecs[1]) > cos(vecs[0], vecs[2]),
          f"related sentences are closer: {cos(vecs[0], vecs[1]):.3f} vs {cos(vecs[0], vecs[2]):.3f}")
    # The client asks for base64 by default and decodes it: that path is checked too.
    r = oa.embeddings.create(model=CHAT_MODEL, input="short", dimensions=64)
    v = r.data[0].embedding
    check(len(v) == 64 and abs(sum(x * x for x in v) - 1) < 1e-3, f"openai dimensions 64: {len(v)}")
    cl = ollama.Client(host=BASE)
    e = cl.embed(model=CHAT_MODEL, input=texts)
    same = all(max(abs(x - y) for x, y in zip(a, b)) < 1e-3 for a, b in zip(e.embeddings, vecs))
    check(len(e.embeddings) == 3 and same, f"ollama embed: {len(e.embeddings)} vectors, same as openai {same}")


def bad_requests():
    cl = ollama.Client(host=BASE)
    for kwargs, status, what in [
        ({"model": "nope:1", "prompt": "x"}, 404, "unknown model"),
        ({"model": "../../etc/passwd", "prompt": "x"}, 400, "path as model"),
        ({"model": MODEL, "prompt": "x", "options": {"temperature": -1}}, 400, "temperature < 0"),
        ({"model": MODEL, "prompt": "x", "options": {"top_p": 1.5}}, 400, "top_p > 1"),
        ({"model": MODEL, "prompt": "x " * 5000}, 400, "prompt longer than the context"),
        ({"model": MODEL, "prompt": "x", "format": {"type": "frobnicate"}}, 400, "format with a bad schema"),
    ]:
        try:
            cl.generate(**kwargs)
            check(False, f"ollama {what}: no error")
        except ollama.ResponseError as e:
            check(e.status_code == status, f"ollama {what}: {e.status_code} {e.error[:80]}")
    oa = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0)
    msgs = [{"role": "user", "content": "x"}]
    for kwargs, exc, what in [
        ({"model": "nope"}, openai.NotFoundError, "unknown model"),
        ({"model": MODEL, "temperature": 5}, openai.BadRequestError, "temperature 5"),
        ({"model": MODEL, "max_tokens": 0}, openai.BadRequestError, "max_tokens 0"),
    ]:
        try:
            oa.chat.completions.create(messages=msgs, **kwargs)
            check(False, f"openai {what}: no error")
        except exc as e:
            check(True, f"openai {what}: {e.status_code}")
    for body, what in [(b"{", "truncated JSON"), (b'{"model": 5}', "wrong type"), (b"", "empty body")]:
        s, t = raw("POST", "/api/chat", body)
        check(s == 400 and "error" in json.loads(t), f"raw {what}: {s}")


def load_test(clients=int(os.environ.get("HEARTH_LOAD_CLIENTS", 8)), rounds=3,
              secs=float(os.environ.get("HEARTH_LOAD_SECS", 10))):
    """Concurrent clients in rounds; every response must complete; RSS must stay flat."""
    rss = []
    for rnd in range(rounds):
        done, bad = [0], []
        stop = time.time() + secs

        def worker(i):
            cl = ollama.Client(host=BASE)
            oa = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0)
            while time.time() < stop:
                try:
                    if i % 2:
                        r = cl.generate(model=MODEL, prompt=f"Story {i}:", options={"num_predict": 6})
                        ok = r.done and r.done_reason in ("stop", "length")
                    else:
                        r = oa.chat.completions.create(model=MODEL, max_tokens=6,
                                                       messages=[{"role": "user", "content": f"Hi {i}"}])
                        ok = r.choices[0].finish_reason in ("stop", "length")
                    done[0] += 1 if ok else 0
                    if not ok:
                        bad.append(repr(r))
                except Exception as e:  # noqa: BLE001 - any failure is a test failure
                    bad.append(repr(e))
        ts = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        rss.append(rss_mb())
        check(not bad and done[0] > 0,
              f"load round {rnd + 1}: {clients} clients, {done[0]} complete, {len(bad)} failed {bad[:2]}; RSS {rss[-1]:.0f} MB")
    check(rss[-1] - rss[0] < 64, f"server RSS flat across rounds: {[round(x) for x in rss]} MB")


def queue_limit(n=24):
    """More concurrent requests than parallel + queue: the rest get 503 at once."""
    codes = []
    lock = threading.Lock()

    def one():
        s, t = raw("POST", "/api/generate", {"model": MODEL, "prompt": "Hello", "stream": False,
                                             "options": {"num_predict": 4}})
        ok = s == 200 and json.loads(t)["done"] or s == 503 and "busy" in json.loads(t)["error"]
        with lock:
            codes.append(s if ok else -s)
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    n503, n200 = codes.count(503), codes.count(200)
    check(n503 > 0 and n200 > 0 and n503 + n200 == n,
          f"queue limit: {n} at once -> {n200} complete, {n503} answered 503")
    check(wait_metric("hearth_queue_depth", 0, 30), "queue empty afterwards")


def open_stream(body):
    c = conn()
    c.request("POST", "/api/generate", body=json.dumps(body), headers={"Content-Type": "application/json"})
    return c


def hang_up(c):
    """Closes the connection for real (the response object holds the socket too)."""
    try:
        c.sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    c.close()


def disconnects(parallel):
    long = {"model": MODEL, "prompt": "Once upon a time", "options": {"num_predict": 100000}}
    # While streaming.
    c = open_stream(long)
    r = c.getresponse()
    r.readline()
    check(metric("hearth_active_requests") == 1, "streaming request holds a slot")
    hang_up(c)
    check(wait_metric("hearth_active_requests", 0, 30), "disconnect while streaming frees the slot")
    # While queued: fill every slot, queue one more, drop it.
    holders = []
    for _ in range(parallel):
        c = open_stream(long)
        r = c.getresponse()
        r.readline()
        holders.append(c)
    q = open_stream(long)
    check(wait_metric("hearth_queue_depth", 1, 10), "one request queued")
    hang_up(q)
    check(wait_metric("hearth_queue_depth", 0, 10), "disconnect while queued leaves the queue")
    for c in holders:
        hang_up(c)
    check(wait_metric("hearth_active_requests", 0, 30), "all slots free again")
    # In prefill: a long prompt, gone before the first token.
    c = open_stream({"model": MODEL, "prompt": "word " * 1500, "options": {"num_predict": 100000}})
    time.sleep(1)
    check(metric("hearth_active_requests") == 1, "long prompt in prefill")
    t = time.time()
    hang_up(c)
    check(wait_metric("hearth_active_requests", 0, 60),
          f"disconnect in prefill frees the slot ({time.time() - t:.1f} s)")
    s, t = raw("POST", "/api/generate", {"model": MODEL, "prompt": "Hi", "stream": False, "options": OPTS})
    check(s == 200 and json.loads(t)["done"], "server still answers")


def bench():
    """Every client loops 16-token generations of one prompt (the prefix cache then
    holds all of it but the last token); with HEARTH_BENCH_DISTINCT=1 each request's
    prompt is its own (a count in front), so the cache shares nothing."""
    secs = float(os.environ.get("HEARTH_BENCH_SECS", 40))
    distinct = os.environ.get("HEARTH_BENCH_DISTINCT") == "1"
    for clients in (1, 4, 8, 16):
        tokens, stop = [0], time.time() + secs
        lock = threading.Lock()
        count = itertools.count()

        def worker():
            cl = ollama.Client(host=BASE)
            while time.time() < stop:
                prompt = "The history of the printing press"
                if distinct:
                    prompt = f"{next(count)}. {prompt}"
                r = cl.generate(model=MODEL, prompt=prompt,
                                options={"num_predict": 16, "temperature": 0})
                with lock:
                    tokens[0] += r.eval_count
        t0 = time.time()
        ts = [threading.Thread(target=worker) for _ in range(clients)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.time() - t0
        print(f"{clients:2} clients: {tokens[0]} tokens in {wall:.1f} s = {tokens[0] / wall:.2f} tokens/s", flush=True)


def prefill_delay(streams=4, prompt_tokens=2000):
    """While `streams` clients stream tokens, a prompt of about `prompt_tokens` tokens
    arrives: the largest gap between two tokens of a streaming client while it is
    prefilled, against the time of one prefill chunk (its prompt time over its chunks)."""
    stamps = [[] for _ in range(streams)]
    stop = [False]

    def streamer(i):
        cl = ollama.Client(host=BASE)
        while not stop[0]:
            for part in cl.generate(model=MODEL, prompt=f"Story number {i}:", stream=True,
                                    options={"num_predict": 64, "temperature": 0}):
                stamps[i].append(time.time())
                if stop[0]:
                    break
    ts = [threading.Thread(target=streamer, args=(i,)) for i in range(streams)]
    for t in ts:
        t.start()
    time.sleep(10)
    words = " ".join(f"w{i % 97}" for i in range(prompt_tokens // 2))
    t0 = time.time()
    r = ollama.Client(host=BASE).generate(model=MODEL, prompt=words,
                                          options={"num_predict": 1, "temperature": 0,
                                                   "num_ctx": 4096})
    t1 = time.time()
    stop[0] = True
    for t in ts:
        t.join()
    n = r.prompt_eval_count
    chunk = int(os.environ.get("HEARTH_SERVE_BATCH", 256))
    chunks = max(1, -(-n // chunk))
    per_chunk = (r.prompt_eval_duration / 1e9) / chunks
    gaps = []
    for s in stamps:
        inside = [x for x in s if t0 <= x <= t1]
        before = [x for x in s if x < t0][-1:]
        seq = before + inside
        gaps += [b - a for a, b in zip(seq, seq[1:])]
    worst = max(gaps) if gaps else float("nan")
    print(f"a {n}-token prompt ({chunks} chunks of {chunk}, {per_chunk:.2f} s each) took "
          f"{t1 - t0:.1f} s; the {streams} streaming clients' largest gap between tokens "
          f"meanwhile: {worst:.2f} s = {worst / per_chunk:.2f} chunks", flush=True)


if __name__ == "__main__":
    if "--bench" in sys.argv:
        bench()
        sys.exit(0)
    if "--prefill-delay" in sys.argv:
        prefill_delay()
        sys.exit(0)
    parallel = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    steps = [basics, json_mode, bad_requests, load_test, queue_limit, lambda: disconnects(parallel)]
    if CHAT_MODEL:
        steps[2:2] = [structured_outputs, tool_round_trip, embeddings]
    for step in steps:
        t = time.time()
        step()
        print(f"-- {getattr(step, '__name__', 'step')} took {time.time() - t:.0f} s", flush=True)
    print("FAILED: " + "; ".join(FAILS) if FAILS else "all client checks passed")
    sys.exit(1 if FAILS else 0)
