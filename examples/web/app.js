// The demo page: loads a GGUF into hearth (WebAssembly + WebGPU) and chats with it.
// `window.hearthDemo` exposes the last result for scripts/test-browser.sh.
import init, { Hearth } from "./pkg/hearth.js";

const $ = (id) => document.getElementById(id);
const state = { hearth: null, loaded: false, busy: false, history: [], last: null };
window.hearthDemo = state;

function setStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function refresh() {
  const idle = state.hearth && !state.busy;
  $("load-url").disabled = !idle;
  $("file").disabled = !idle;
  $("unload").disabled = !(idle && state.loaded);
  $("send").disabled = !(idle && state.loaded);
  $("reset").disabled = !(idle && state.loaded);
  $("stop").disabled = !state.busy;
}

const rate = (r) => r.toFixed(r < 10 ? 2 : 1);
const mib = (b) => (b / 1048576).toFixed(1) + " MiB";

async function load(source, label) {
  state.busy = true;
  state.loaded = false;
  refresh();
  setStatus(`Loading ${label}…`);
  const bar = $("progress");
  const t0 = performance.now();
  try {
    const info = await state.hearth.load(source, { context: Number($("context").value) }, (p) => {
      if (p.phase === "download") {
        bar.max = p.total || p.done || 1;
        bar.value = p.done;
        setStatus(`Reading ${label}: ${mib(p.done)}${p.total ? " of " + mib(p.total) : ""}`);
      } else if (p.phase === "parse") {
        setStatus(`Parsing ${label} and uploading the weights…`);
      } else {
        bar.max = p.total || 1;
        bar.value = p.done;
      }
    });
    bar.max = 1;
    bar.value = 1;
    state.loaded = true;
    state.history = [];
    state.model = info;
    $("log").textContent = "";
    $("stats").textContent = "";
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    setStatus(`${info.name || label}: ${info.arch}, ${(info.params / 1e6).toFixed(1)}M parameters, ${info.quant}, loaded in ${secs} s. ${info.memory}`);
    if (!info.has_template) document.querySelector("input[value=complete]").checked = true;
  } catch (e) {
    setStatus(String(e.message || e), true);
  } finally {
    state.busy = false;
    refresh();
  }
}

function bubble(kind, text) {
  const div = document.createElement("div");
  div.className = "msg " + kind;
  div.textContent = text;
  $("log").appendChild(div);
  return div;
}

async function send() {
  const text = $("prompt").value;
  if (!text) return;
  const chat = document.querySelector("input[name=mode]:checked").value === "chat";
  const params = {
    temperature: Number($("temperature").value),
    num_predict: Number($("max-tokens").value),
    raw: !chat,
  };
  if (params.temperature === 0) params.repeat_penalty = 1;
  let out;
  let input;
  if (chat) {
    state.history.push({ role: "user", content: text });
    bubble("user", text);
    out = bubble("assistant", "");
    input = state.history;
  } else {
    out = bubble("completion", "");
    const p = document.createElement("span");
    p.className = "prompt";
    p.textContent = text;
    out.appendChild(p);
    input = text;
  }
  $("prompt").value = "";
  state.busy = true;
  refresh();
  $("stats").textContent = "thinking…";
  try {
    const stats = await state.hearth.generate(input, params, (piece) => {
      out.append(piece);
      $("log").scrollTop = $("log").scrollHeight;
    });
    if (chat) state.history.push({ role: "assistant", content: stats.text });
    state.last = stats;
    $("stats").textContent =
      `${stats.generated} tokens, ${rate(stats.tokens_per_s)} tokens/s ` +
      `(prompt ${stats.prompt_tokens} tokens, ${rate(stats.prompt_tokens_per_s)}/s), ${stats.finish_reason}`;
  } catch (e) {
    if (chat) state.history.pop();
    $("stats").textContent = "";
    setStatus(String(e.message || e), true);
  } finally {
    state.busy = false;
    refresh();
  }
}

async function main() {
  try {
    await init();
    state.hearth = await Hearth.create();
    const a = state.hearth.adapter();
    state.adapter = a;
    if (!a.name && navigator.gpu) {
      // wgpu leaves the name empty on the web; the page may ask the browser itself.
      const info = (await navigator.gpu.requestAdapter())?.info;
      if (info) a.name = [info.vendor, info.architecture, info.description].filter(Boolean).join(" ");
    }
    const extras = [a.shader_f16 && "shader-f16", a.subgroups && "subgroups"].filter(Boolean);
    $("adapter").textContent =
      `Adapter: ${a.name || "unnamed"} (${a.backend}, ${a.device_type}); largest binding ${mib(a.max_binding)}` +
      (extras.length ? `; ${extras.join(", ")}` : "; no shader-f16, no subgroups");
  } catch (e) {
    $("adapter").textContent = String(e.message || e);
    $("adapter").classList.add("error");
    return;
  }
  refresh();
  $("load-url").onclick = () => $("url").value && load($("url").value, $("url").value.split("/").pop());
  $("file").onchange = () => $("file").files[0] && load($("file").files[0], $("file").files[0].name);
  $("unload").onclick = () => {
    state.hearth.unload();
    state.loaded = false;
    setStatus("No model loaded.");
    refresh();
  };
  $("send").onclick = send;
  $("stop").onclick = () => state.hearth.cancel();
  $("reset").onclick = () => {
    state.hearth.reset();
    state.history = [];
    $("log").textContent = "";
  };
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !$("send").disabled) {
      e.preventDefault();
      send();
    }
  });
  const model = new URLSearchParams(location.search).get("model");
  if (model) {
    $("url").value = model;
    load(model, model.split("/").pop());
  }
  state.ready = true;
}

main();
