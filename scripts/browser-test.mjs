// Drives the demo page in headless Chromium (WebGPU on SwiftShader or the system's
// Vulkan) through its own controls: load a model by URL, complete a raw prompt greedily,
// and check the token ids against the native build's. Run by scripts/test-browser.sh.
//
// env: HEARTH_PAGE (page URL), HEARTH_CASES (JSON list of {model, prompt, n, expect}),
//      CHROMIUM (executable), PLAYWRIGHT_DIR, HEARTH_LOCAL_FILE (optional: the first
//      case's model as a local path, loaded through the file input too),
//      HEARTH_SCREENSHOT (optional PNG path).
import { createRequire } from "node:module";

const require = createRequire(process.env.PLAYWRIGHT_DIR + "/");
const { chromium } = require("playwright-core");

const page_url = process.env.HEARTH_PAGE;
const cases = JSON.parse(process.env.HEARTH_CASES);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=native",
  ],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  // WebGPU validation errors (a shader the browser's compiler rejects, a pipeline or
  // command buffer invalid because of one) only reach the console: each fails the test.
  const gpuErrors = [];
  page.on("console", (m) => {
    console.log(`  [page ${m.type()}] ${m.text()}`);
    if (/Error while parsing WGSL|Invalid ShaderModule|Invalid ComputePipeline|Invalid CommandBuffer/.test(m.text())) {
      gpuErrors.push(m.text().split("\n")[0]);
    }
  });
  page.on("pageerror", (e) => console.log(`  [page error] ${e.message}`));
  await page.goto(page_url);
  await page.waitForFunction(() => window.hearthDemo?.ready || document.querySelector("#adapter.error"),
    null, { timeout: 60_000 });
  const adapter = await page.evaluate(() => window.hearthDemo.adapter);
  if (!adapter) throw new Error("no WebGPU adapter: " + (await page.textContent("#adapter")));
  console.log(`adapter: ${adapter.name} (${adapter.backend}, ${adapter.device_type}; largest binding ${adapter.max_binding} bytes, ` +
    `shader-f16 ${adapter.shader_f16}, subgroups ${adapter.subgroups})`);
  const loaded = async (timeout) => {
    await page.waitForFunction(() => {
      const s = document.querySelector("#status");
      return s.classList.contains("error") || / loaded in /.test(s.textContent);
    }, null, { timeout });
    const status = await page.textContent("#status");
    if (await page.$("#status.error")) throw new Error("load failed: " + status);
    return status;
  };
  // The other sources: a File from the file input (read as a stream) and bytes given to
  // the API (a Uint8Array).
  if (process.env.HEARTH_LOCAL_FILE) {
    await page.setInputFiles("#file", process.env.HEARTH_LOCAL_FILE);
    console.log(`file input: ${await loaded(60_000)}`);
    const arch = await page.evaluate(async (url) => {
      const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
      return (await window.hearthDemo.hearth.load(bytes, { context: 64 })).arch;
    }, cases[0].model);
    console.log(`Uint8Array: loaded ${arch}`);
  }
  for (const c of cases) {
    console.log(`== ${c.model}: ${c.n} greedy tokens after ${JSON.stringify(c.prompt)}`);
    const t0 = Date.now();
    await page.fill("#url", c.model);
    await page.click("#load-url");
    const status = await loaded(c.load_timeout_ms || 300_000);
    console.log(`loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${status}`);
    await page.check("input[value=complete]");
    await page.fill("#temperature", "0");
    await page.fill("#max-tokens", String(c.n));
    await page.fill("#prompt", c.prompt);
    await page.evaluate(() => { window.hearthDemo.last = null; });
    await page.click("#send");
    await page.waitForFunction(() => window.hearthDemo.last || document.querySelector("#status.error"),
      null, { timeout: c.generate_timeout_ms || 300_000 });
    const last = await page.evaluate(() => window.hearthDemo.last);
    if (!last) throw new Error("generation failed: " + (await page.textContent("#status")));
    console.log(`browser: ${last.generated} tokens, ${last.tokens_per_s.toFixed(2)} tokens/s ` +
      `(prompt ${last.prompt_tokens} tokens at ${last.prompt_tokens_per_s.toFixed(1)}/s)`);
    console.log(`browser ids: ${JSON.stringify(last.ids)}`);
    console.log(`native ids:  ${JSON.stringify(c.expect.ids)} (${c.expect.tokens_per_s.toFixed(2)} tokens/s on ${c.expect.adapter})`);
    console.log(`browser text: ${JSON.stringify(last.text)}`);
    if (JSON.stringify(last.ids) !== JSON.stringify(c.expect.ids)) {
      console.log("FAIL: the browser's tokens differ from the native build's");
      failed = true;
    } else {
      console.log("ok: same tokens as native");
    }
  }
  // The API around generation: chat messages go through the template, cancel() stops
  // after the current token, bad options are refused with a message naming them.
  const api = await page.evaluate(async () => {
    const h = window.hearthDemo.hearth;
    let n = 0;
    const cancelled = await h.generate("abc", { raw: true, temperature: 0, num_predict: 500 },
      () => { if (++n === 2) h.cancel(); });
    const chat = await h.generate([{ role: "user", content: "hi" }], { temperature: 0, num_predict: 3 });
    let refused = "";
    try { await h.generate("abc", { temprature: 0 }); } catch (e) { refused = e.message; }
    // Constrained output in the browser (llguidance compiled to wasm): a regex and a
    // GBNF grammar hold at temperature 1.
    const rx = await h.generate("Code:", { raw: true, temperature: 1, seed: 3, num_predict: 12,
      regex: "[A-F]{3}-[0-9]{2}" });
    const gb = await h.generate("Answer:", { raw: true, temperature: 1, seed: 4, num_predict: 12,
      grammar: 'root ::= ("yes" | "no") "!"' });
    const constrained = /^[A-F]{3}-[0-9]{2}$/.test(rx.text) && /^(yes|no)!$/.test(gb.text);
    return { reason: cancelled.finish_reason, generated: cancelled.generated, refused,
             constrained: constrained ? "ok" : `${JSON.stringify(rx.text)} ${JSON.stringify(gb.text)}`,
             chat: chat.prompt_tokens > 2 && chat.generated + (chat.finish_reason === "stop") > 0 };
  });
  console.log(`api: cancel -> ${api.reason} after ${api.generated} tokens; chat ok ${api.chat}; ` +
    `bad option -> ${api.refused}; regex and grammar -> ${api.constrained}`);
  if (api.reason !== "cancelled" || api.generated !== 2 || !api.chat || api.constrained !== "ok" ||
      !/unknown generate option 'temprature'/.test(api.refused)) {
    console.log("FAIL: cancel(), chat messages or option checking misbehave");
    failed = true;
  }
  // The profile report: with timestamp-query, every dispatch is timed; without it the
  // call must refuse and say why.
  const prof = await page.evaluate(async () => {
    const h = window.hearthDemo.hearth;
    try {
      const r = await h.profile({ prompt_tokens: 8, n_gen: 2 });
      const phases = r.runs[0].phases;
      return { ok: true, timing: r.runs[0].timing, phases: phases.map(p => p.phase),
               rows: phases.map(p => p.kernels.length), steps: phases.map(p => p.steps) };
    } catch (e) { return { ok: false, error: e.message }; }
  });
  console.log(`profile: ${JSON.stringify(prof)}`);
  if (prof.ok ? !(prof.rows.length === 2 && prof.rows.every(n => n > 3))
              : !/timestamp/i.test(prof.error)) {
    console.log("FAIL: profile() gave neither a report nor a timestamp-query refusal");
    failed = true;
  }
  if (gpuErrors.length > 0) {
    console.log(`FAIL: ${gpuErrors.length} WebGPU validation error(s), first: ${gpuErrors[0]}`);
    failed = true;
  }
  if (process.env.HEARTH_SCREENSHOT) {
    await page.screenshot({ path: process.env.HEARTH_SCREENSHOT, fullPage: true });
    console.log(`screenshot: ${process.env.HEARTH_SCREENSHOT}`);
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
