#!/usr/bin/env python3
"""A soak of `hearth serve` (robustness case 27), standard library only.

    scripts/soak.py BASE_URL MODEL SERVER_PID MINUTES [CLIENTS]

CLIENTS threads (default 16) loop until the time is up, each taking the next kind of
request in turn: ollama generate and chat, OpenAI chat and completions, each streamed and
whole; clients that hang up after the first streamed chunk; and bad requests (malformed
JSON, out-of-range options, unknown models) that must get a 4xx JSON error. Every
response is checked to the end: a streamed one must close with its final object (ollama
`done: true`, OpenAI a `finish_reason` then `data: [DONE]`), a whole one must carry its
text and reason. The server's resident memory is sampled every few seconds; after the
warm-up (a fifth of the run, at most 3 minutes) it must not grow more than 5% over the
level the warm-up ended at. Exit status 1 on any lost, truncated or malformed response,
or on memory growth; the figures are printed either way.
"""
import http.client
import json
import sys
import threading
import time
import urllib.parse

BASE, MODEL, PID = sys.argv[1], sys.argv[2], int(sys.argv[3])
MINUTES = float(sys.argv[4])
CLIENTS = int(sys.argv[5]) if len(sys.argv) > 5 else 16
HOST = urllib.parse.urlparse(BASE).netloc
TOKENS = 8  # per generation: keeps every kind of request cycling on a slow adapter


def rss_mb():
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Bad(Exception):
    pass


def request(path, body, raw=None):
    c = http.client.HTTPConnection(HOST, timeout=600)
    data = raw if raw is not None else json.dumps(body).encode()
    c.request("POST", path, data, {"Content-Type": "application/json"})
    return c, c.getresponse()


def whole(path, body):
    c, r = request(path, body)
    text = r.read().decode()
    c.close()
    if r.status != 200:
        raise Bad(f"{path}: HTTP {r.status} {text[:200]}")
    return json.loads(text)


def streamed_lines(path, body):
    c, r = request(path, body)
    if r.status != 200:
        raise Bad(f"{path}: HTTP {r.status} {r.read()[:200]!r}")
    lines = [l for l in r.read().decode().split("\n") if l.strip()]
    c.close()
    return lines


def opts():
    return {"num_predict": TOKENS, "temperature": 0.7, "seed": 1}


def ollama_generate(stream):
    body = {"model": MODEL, "prompt": "Tell me about local AI.", "stream": stream, "options": opts()}
    if not stream:
        o = whole("/api/generate", body)
        if not (o.get("done") and isinstance(o.get("response"), str) and o.get("done_reason")):
            raise Bad(f"generate: {o}")
        return o["eval_count"]
    objs = [json.loads(l) for l in streamed_lines("/api/generate", body)]
    if not objs or not objs[-1].get("done") or "error" in objs[-1]:
        raise Bad(f"generate stream truncated: {objs[-1:] }")
    if any(o.get("done") for o in objs[:-1]):
        raise Bad("generate stream: done before the end")
    return objs[-1]["eval_count"]


def ollama_chat(stream):
    body = {"model": MODEL, "stream": stream, "options": opts(),
            "messages": [{"role": "user", "content": "Why is local AI important?"}]}
    if not stream:
        o = whole("/api/chat", body)
        if not (o.get("done") and o.get("message", {}).get("role") == "assistant"):
            raise Bad(f"chat: {o}")
        return o["eval_count"]
    objs = [json.loads(l) for l in streamed_lines("/api/chat", body)]
    if not objs or not objs[-1].get("done") or "error" in objs[-1]:
        raise Bad(f"chat stream truncated: {objs[-1:]}")
    return objs[-1]["eval_count"]


def sse(path, body):
    events, done = [], False
    for l in streamed_lines(path, body):
        if not l.startswith("data: "):
            raise Bad(f"{path}: bad SSE line {l!r}")
        d = l[6:]
        if d == "[DONE]":
            done = True
        else:
            if done:
                raise Bad(f"{path}: data after [DONE]")
            events.append(json.loads(d))
    if not done:
        raise Bad(f"{path}: no [DONE]")
    if any("error" in e for e in events):
        raise Bad(f"{path}: error event {events[-1]}")
    if not any(c.get("finish_reason") for e in events for c in e.get("choices", [])):
        raise Bad(f"{path}: no finish_reason")
    return len(events)


def openai_chat(stream):
    body = {"model": MODEL, "stream": stream, "max_tokens": TOKENS, "seed": 1,
            "messages": [{"role": "user", "content": "Say hello."}]}
    if stream:
        return sse("/v1/chat/completions", body)
    o = whole("/v1/chat/completions", body)
    c = o["choices"][0]
    if not (isinstance(c["message"]["content"], str) and c["finish_reason"]):
        raise Bad(f"openai chat: {o}")
    return o["usage"]["completion_tokens"]


def openai_completion(stream):
    body = {"model": MODEL, "stream": stream, "max_tokens": TOKENS, "prompt": "Once upon a time"}
    if stream:
        return sse("/v1/completions", body)
    o = whole("/v1/completions", body)
    c = o["choices"][0]
    if not (isinstance(c["text"], str) and c["finish_reason"]):
        raise Bad(f"openai completion: {o}")
    return o["usage"]["completion_tokens"]


def hang_up(_):
    body = {"model": MODEL, "prompt": "Count to one hundred.", "options": {"num_predict": 200}}
    c, r = request("/api/generate", body)
    if r.status != 200:
        raise Bad(f"hang-up: HTTP {r.status}")
    r.readline()  # the chunk size line, then leave mid-stream
    c.close()
    return 0


BAD = [
    ("/api/generate", None, b"{not json"),
    ("/api/chat", {"model": MODEL, "messages": "nope"}, None),
    ("/api/generate", {"model": MODEL, "prompt": "x", "options": {"temperature": -1}}, None),
    ("/v1/chat/completions", {"model": MODEL, "messages": [], "max_tokens": 4}, None),
    ("/api/generate", {"model": "../../etc/passwd", "prompt": "x"}, None),
    ("/v1/completions", {"model": "no-such-model:1b", "prompt": "x"}, None),
]


def bad_request(i):
    path, body, raw = BAD[i % len(BAD)]
    c, r = request(path, body, raw)
    text = r.read().decode()
    c.close()
    if not 400 <= r.status < 500:
        raise Bad(f"bad request {path} got HTTP {r.status}: {text[:200]}")
    if "error" not in json.loads(text):
        raise Bad(f"bad request {path}: no error field: {text[:200]}")
    return 0


KINDS = [
    ("ollama generate stream", lambda i: ollama_generate(True)),
    ("ollama generate whole", lambda i: ollama_generate(False)),
    ("ollama chat stream", lambda i: ollama_chat(True)),
    ("ollama chat whole", lambda i: ollama_chat(False)),
    ("openai chat stream", lambda i: openai_chat(True)),
    ("openai chat whole", lambda i: openai_chat(False)),
    ("openai completion stream", lambda i: openai_completion(True)),
    ("openai completion whole", lambda i: openai_completion(False)),
    ("hang up", hang_up),
    ("bad request", bad_request),
]

lock = threading.Lock()
counts = {k: 0 for k, _ in KINDS}
failures = []
deadline = time.time() + MINUTES * 60


def client(n):
    i = n
    while time.time() < deadline:
        name, fn = KINDS[i % len(KINDS)]
        try:
            fn(i)
            with lock:
                counts[name] += 1
        except Exception as e:  # noqa: BLE001 - every failure is reported
            with lock:
                failures.append(f"{name}: {type(e).__name__}: {e}")
        i += 1


def main():
    # Load the model before the clock starts mattering.
    whole("/api/generate", {"model": MODEL, "prompt": "hi", "stream": False, "options": {"num_predict": 1}})
    start = time.time()
    warm = min(180.0, MINUTES * 60 / 5)
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    samples = []
    while any(t.is_alive() for t in threads):
        samples.append((time.time() - start, rss_mb()))
        elapsed = samples[-1][0]
        if int(elapsed) % 60 < 5:
            done = sum(counts.values())
            print(f"  {elapsed / 60:5.1f} min: {done} requests complete, {len(failures)} failed, RSS {samples[-1][1]:.0f} MB",
                  flush=True)
        time.sleep(5)
    for t in threads:
        t.join()
    after = [r for t, r in samples if t >= warm]
    base = next((r for t, r in samples if t >= warm), samples[-1][1])
    peak, last = max(after or [base]), samples[-1][1]
    growth = (peak - base) / base * 100
    total = sum(counts.values())
    print(f"soak: {MINUTES:g} min, {CLIENTS} clients, {total} requests complete, {len(failures)} failed")
    for k, v in counts.items():
        print(f"  {k:26s} {v}")
    print(f"RSS: {samples[0][1]:.0f} MB at start, {base:.0f} MB after the {warm:.0f} s warm-up, "
          f"peak {peak:.0f} MB after it, {last:.0f} MB at the end: growth {growth:+.1f}% (limit +5%)")
    for f in failures[:20]:
        print("FAIL", f)
    ok = not failures and growth <= 5.0 and total > 0
    print("soak: PASS" if ok else "soak: FAIL")
    sys.exit(0 if ok else 1)


main()
