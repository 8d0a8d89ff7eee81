// Drives headless Chromium (Debian's /usr/bin/chromium) with playwright-core for the browser
// tests and `adasr bench browser` (adasr.serve.webdrive runs it). Reads one JSON job on stdin:
//   {url, body, args, timeout_ms, executable, chromium_args, screenshot, viewport, node_modules, out}
// opens url, runs `body` as an async function of (page, args, sleep) in Node, and writes
// {ok, result, console, error} as JSON to the file `out`. Talks only to the URL it is given.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const job = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const require = createRequire(job.node_modules.replace(/\/?$/, '/'));
const { chromium } = require('playwright-core');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const out = { ok: false, result: null, console: [], error: null };
let browser, proc, profile;
const killer = setTimeout(() => { out.error = `timed out after ${job.timeout_ms} ms`; finish(3); }, job.timeout_ms);
let written = false;
function emit() { // once, synchronously, to the file the job names
  if (!written) writeFileSync(job.out, JSON.stringify(out));
  written = true;
}
async function finish(code) {
  clearTimeout(killer);
  setTimeout(() => { emit(); process.exit(code); }, 10000).unref();
  try { if (browser) await browser.close(); } catch { /* closing after a failure */ }
  try { if (proc) proc.kill('SIGKILL'); } catch { /* gone already */ }
  try { if (profile) rmSync(profile, { recursive: true, force: true }); } catch { /* best effort */ }
  emit();
  process.exit(code);
}
try {
  // Chromium started here with a DevTools port on 127.0.0.1 and connected over CDP (playwright's own
  // launch, through a pipe, does not come up with Debian's chromium wrapper on these machines)
  profile = mkdtempSync(join(tmpdir(), 'adasr-chromium-'));
  proc = spawn(job.executable, ['--headless=new', '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0',
    `--user-data-dir=${profile}`, ...(job.chromium_args || []), 'about:blank'], { stdio: ['ignore', 'ignore', 'pipe'] });
  const ws = await new Promise((resolve, reject) => {
    let buf = '';
    proc.stderr.on('data', (d) => {
      buf = (buf + d).slice(-20000);
      const m = buf.match(/DevTools listening on (ws:\/\/127\.0\.0\.1:\d+\/\S+)/);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (code) => reject(new Error(`chromium exited (${code}): ${buf.slice(-1000)}`)));
  });
  browser = await chromium.connectOverCDP(ws);
  const page = await browser.contexts()[0].newPage();
  await page.setViewportSize(job.viewport || { width: 1000, height: 760 });
  page.on('console', (m) => { if (out.console.length < 200) out.console.push(`${m.type()}: ${m.text()}`.slice(0, 500)); });
  page.on('pageerror', (e) => { if (out.console.length < 200) out.console.push(`pageerror: ${e.message}`.slice(0, 500)); });
  await page.goto(job.url, { waitUntil: 'load' });
  const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor;
  out.result = await new AsyncFunction('page', 'args', 'sleep', job.body)(page, job.args || {}, sleep);
  if (job.screenshot) await page.screenshot({ path: job.screenshot });
  out.ok = true;
  await finish(0);
} catch (e) {
  out.error = String(e && e.stack ? e.stack : e).slice(0, 4000);
  await finish(1);
}
