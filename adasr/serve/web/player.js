// adasr's browser player: LR segments from `adasr serve` (MP4 -> mp4box.js -> WebCodecs), each
// frame super-resolved by the current level with onnxruntime-web (WASM SIMD + threads when the
// page is cross-origin isolated; WebGPU where the browser has an adapter), the level picked from
// measured frame times to hold the stream's frame rate (DySR-style), and the channel's model
// updates applied between frames after the same checks as Python's ModelState.apply.
//
// URL options: ?fps=F (the rate to hold; default the channel's) &threads=N (WASM threads; default min(4, cores) when isolated, else 1)
// &ep=auto|wasm|webgpu &policy=adaptive|fixed &level=K (start / fixed level) &start=live|first|N
// &loop=1 (replay the kept segments once the channel has ended) &paused=1 (load, do not play)
// &ahead=N (frames upscaled ahead of their display slots, 0..8, default 3; see the display clock below)
// &model=init (start from the stream's first record and apply every update, not the newest snapshot)
// &floor=bicubic|canvas (adaptive: below level 0, the upscale alone when even level 0 misses the rate: the model's
// bicubic in JS, or the browser's smooth drawImage, faster) &rate=auto (adaptive: a lowered display rate, 1 frame
// in 2..4 shown, when even level 0 cannot hold the stream's rate; said on screen and in stats)
// &variant=plain|residual|frozen|frozen-residual|int8|int8-residual (the graphs the server exports; see
// docs/LIVE.md): residual
// graphs output the learned residual's s*s phases and this page adds the upscale itself: &upscale=exact
// (default: the model's own bicubic, PyTorch's A = -0.75 with clamped borders, computed here in JS) or
// &upscale=canvas (canvas drawImage with imageSmoothingQuality 'high': close to, not equal to, the model's
// bicubic); frozen and int8 graphs hold the base model's weights (int8: quantized), so the channel's model updates are not
// applied to them.
// Tests and benchmarks read window.adasr (stats(), probe(k), applyRecord(bytes), benchLevels(n),
// startLoad(opts), stopLoad()).
import { Rate, Switcher } from './adapt.js';
import { DeltaError, ModelState, hex } from './records.js';
import { DataStream, Endianness, MP4BoxBuffer, createFile } from '/play/lib/mp4box/mp4box.all.mjs';

const q = new URLSearchParams(location.search);
const NAME = decodeURIComponent(location.pathname.split('/')[2] || '');
const $ = (id) => document.getElementById(id);
const sleep = (ms) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const CLIENT = 'web-' + Math.random().toString(16).slice(2, 10);

const stats = {
  name: NAME, client: CLIENT, state: 'loading', error: null, note: '', backend: 'wasm', threads: 1,
  isolated: self.crossOriginIsolated, frames: 0, onTime: 0, late: 0, dropped: 0, levels: {}, level: 0,
  switches: 0, fps: 0, srMs: 0, updates: 0, refused: 0, refusedReasons: [], modelHash: '', modelSegment: 0,
  ttffMs: null, marks: {}, levelsLoaded: 0, nLevels: 0, segments: 0, timeline: [], bench: null, loadOn: false,
  producer: 'starting', queued: 0, skipped: 0, skippedSegments: 0, retries: 0, probes: 0, probesPassed: 0, thinned: 0, rateDiv: 1, displayFps: 0, level0Ms: null,
  variant: q.get('variant') || 'plain', upscale: q.get('upscale') === 'canvas' ? 'canvas' : 'exact', upscaleMs: 0,
};
const RESIDUAL = stats.variant.endsWith('residual');
const FROZEN = /^(int8|frozen)/.test(stats.variant); // weights inside the graphs: no model updates
const TIMELINE_MAX = 20000;

async function get(url, kind = 'json', timeoutMs = 30000) {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { 'X-Adasr-Client': CLIENT } });
  if (!r.ok) throw Object.assign(new Error(`${url}: HTTP ${r.status} ${(await r.text()).slice(0, 200)}`), { status: r.status });
  if (kind === 'json') return r.json();
  return { body: new Uint8Array(await r.arrayBuffer()), headers: r.headers };
}

// ---------------------------------------------------------------- onnxruntime-web and the levels
let ort, L, sessions = [], feeds = [], feedsOf = null, state;
let W, H, SW, SH, SCALE, FPS;

async function loadOrt() {
  let ep = q.get('ep') || 'auto';
  if (ep === 'auto') ep = navigator.gpu && (await navigator.gpu.requestAdapter().catch(() => null)) ? 'webgpu' : 'wasm';
  ort = await import(ep === 'webgpu' ? '/play/lib/ort/ort.webgpu.min.mjs' : '/play/lib/ort/ort.wasm.min.mjs');
  ort.env.wasm.wasmPaths = '/play/lib/ort/';
  const want = q.has('threads') ? Math.max(1, Math.min(16, +q.get('threads') || 1))
    : (self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1);
  ort.env.wasm.numThreads = self.crossOriginIsolated ? want : 1;
  stats.backend = ep;
  stats.threads = ort.env.wasm.numThreads;
}

async function loadLevel(k) {
  const { body } = await get(`/play/${NAME}/level/${k}.onnx?variant=${encodeURIComponent(stats.variant)}`, 'bytes', 300000);
  const sess = await ort.InferenceSession.create(body, {
    executionProviders: [stats.backend], graphOptimizationLevel: 'all',
  });
  // its first run allocates and pre-packs (several times a later run): done here, on a blank frame, so
  // that neither the first frame nor the first frame after a switch to it pays for it
  sessions[k] = sess;
  if (W) {
    const blank = new Uint8ClampedArray(4 * W * H);
    await sr(k, blank);
    if (k === 0 && q.get('rate') === 'auto') { // level 0's time on this device, before play: the lowered rate's start
      const t = performance.now();
      await sr(0, blank);
      stats.level0Ms = performance.now() - t;
    }
  }
  stats.levelsLoaded += 1;
}

// One ort.Tensor per weight of the layout: views of the model's vector (no copies); rebuilt
// when an update swaps in a new vector, between frames.
function weightTensors() {
  const t = {};
  for (const e of L.weights.tensors) t[e.name] = new ort.Tensor('float32', state.vector.subarray(e.offset, e.offset + e.count), e.shape);
  return t;
}
const feedOf = (s, t) => (s ? Object.fromEntries(s.inputNames.filter((n) => n !== 'x').map((n) => [n, t[n]])) : null);
function buildFeeds() {
  const t = weightTensors();
  feeds = sessions.map((s) => feedOf(s, t));
  feedsOf = state.vector;
  stats.modelHash = hex(state.hash);
  stats.modelSegment = state.nextSegment;
}

// one SR call at a time (the display loop, probes and benchLevels share the sessions and xBuf)
let srChain = Promise.resolve();
function sr(k, rgba, alt = null) {
  const run = srChain.then(() => srNow(k, rgba, alt));
  srChain = run.catch(() => {});
  return run;
}

const xBuf = { data: null };
// alt: another variant's sessions for benchVariants ({sessions, feeds, residual, upscale})
async function srNow(k, rgba, alt = null) {
  if (!alt && (feedsOf !== state.vector || !feeds[k])) buildFeeds(); // a model swap or a level loaded since
  const sess = alt ? alt.sessions[k] : sessions[k], feed = alt ? alt.feeds[k] : feeds[k];
  const residual = alt ? alt.residual : RESIDUAL, upscale = alt ? alt.upscale : stats.upscale;
  const n = W * H;
  if (!xBuf.data) xBuf.data = new Float32Array(3 * n);
  const x = xBuf.data;
  for (let i = 0; i < n; i++) { x[i] = rgba[4 * i] / 255; x[n + i] = rgba[4 * i + 1] / 255; x[2 * n + i] = rgba[4 * i + 2] / 255; }
  const out = await sess.run({ x: new ort.Tensor('float32', x, [1, 3, H, W]), ...feed });
  const y = out[sess.outputNames[0]].data;
  const m = SW * SH, img = new Uint8ClampedArray(4 * m);
  if (residual) return upscale === 'canvas' ? addCanvasUpscale(rgba, y, img) : addBicubic(rgba, y, img);
  for (let i = 0; i < m; i++) {
    img[4 * i] = Math.min(1, Math.max(0, y[i])) * 255;
    img[4 * i + 1] = Math.min(1, Math.max(0, y[m + i])) * 255;
    img[4 * i + 2] = Math.min(1, Math.max(0, y[2 * m + i])) * 255;
    img[4 * i + 3] = 255;
  }
  return img;
}

// A residual-only graph's output r (1, 3*s*s, H, W: channel c's phase (i, j) is plane c*s*s + i*s + j,
// before the pixel shuffle) plus an upscale of the LR frame, shuffled into RGBA in the same pass.

// The exact one: the model's bicubic skip (adasr.nn.upsample): output sub-pixel p of LR pixel x reads
// LR offsets -2..2 with fixed weights (PyTorch's cubic, A = -0.75, align_corners=False), borders
// clamped; separable, so a horizontal pass per column phase, then a vertical pass per row phase.
function phaseWeights(s) {
  const a = -0.75, near = (d) => ((a + 2) * d - (a + 3)) * d * d + 1, far = (d) => ((a * d - 5 * a) * d + 8 * a) * d - 4 * a;
  const rows = [];
  for (let p = 0; p < s; p++) {
    const src = (p + 0.5) / s - 0.5, base = Math.floor(src), t = src - base, row = [0, 0, 0, 0, 0];
    [far(t + 1), near(t), near(1 - t), far(2 - t)].forEach((w, k) => { row[base - 1 + k + 2] += w; });
    rows.push(row);
  }
  return rows;
}
const bic = { wts: null, h: null, planes: null };
function addBicubic(rgba, r, img) {
  const t = performance.now();
  const s = SCALE, n = W * H;
  if (!bic.wts) { bic.wts = phaseWeights(s); bic.h = new Float32Array(n); bic.planes = new Float32Array(3 * n); }
  const wts = bic.wts, hb = bic.h, lr = bic.planes, zero = r === null;
  for (let i = 0; i < n; i++) { lr[i] = rgba[4 * i] / 255; lr[n + i] = rgba[4 * i + 1] / 255; lr[2 * n + i] = rgba[4 * i + 2] / 255; }
  for (let c = 0; c < 3; c++) {
    const src = c * n;
    for (let j = 0; j < s; j++) {
      const wj = wts[j];
      for (let yy = 0; yy < H; yy++) { // horizontal pass, column phase j
        const row = src + yy * W;
        for (let xx = 0; xx < W; xx++) {
          let v = 0;
          for (let k = 0; k < 5; k++) if (wj[k]) v += wj[k] * lr[row + Math.min(W - 1, Math.max(0, xx + k - 2))];
          hb[yy * W + xx] = v;
        }
      }
      for (let i = 0; i < s; i++) { // vertical pass, row phase i, plus the residual, into RGBA
        const wi = wts[i], plane = (c * s * s + i * s + j) * n;
        const taps = [];
        for (let k = 0; k < 5; k++) if (wi[k]) taps.push(k);
        for (let yy = 0; yy < H; yy++) {
          let o = 4 * ((yy * s + i) * SW + j) + c;
          const offs = taps.map((k) => Math.min(H - 1, Math.max(0, yy + k - 2)) * W), ws = taps.map((k) => wi[k]);
          const [o0, o1, o2, o3] = [offs[0], offs[1], offs[2] ?? offs[0], offs[3] ?? offs[0]];
          const [w0, w1, w2, w3] = [ws[0], ws[1], ws[2] ?? 0, ws[3] ?? 0];
          for (let xx = 0, p = plane + yy * W; xx < W; xx++, o += 4 * s, p++) {
            const v = (zero ? 0 : r[p]) + w0 * hb[o0 + xx] + w1 * hb[o1 + xx] + w2 * hb[o2 + xx] + w3 * hb[o3 + xx];
            img[o] = 255 * Math.min(1, Math.max(0, v));
          }
        }
      }
    }
  }
  for (let o = 3; o < img.length; o += 4) img[o] = 255;
  stats.upscaleMs = performance.now() - t;
  return img;
}

// The floor of ?floor=bicubic: the LR frame through the model's bicubic alone, no network (in JS: about
// 12 ms a frame at 320x180). ?floor=canvas: the browser's own smooth upscale of the LR frame straight onto
// the view (drawImage, imageSmoothingQuality 'high'; about 1-2 ms; close to, not equal to, bicubic).
function bicubicOnly(rgba) {
  return addBicubic(rgba, null, new Uint8ClampedArray(4 * SW * SH));
}
const floorCanvas = { c: null, ctx: null };
function canvasFloor(rgba) {
  if (!floorCanvas.c) {
    floorCanvas.c = new OffscreenCanvas(W, H);
    floorCanvas.ctx = floorCanvas.c.getContext('2d');
  }
  floorCanvas.ctx.putImageData(new ImageData(rgba, W, H), 0, 0);
  view.ctx.imageSmoothingEnabled = true;
  view.ctx.imageSmoothingQuality = 'high';
  view.ctx.drawImage(floorCanvas.c, 0, 0, W, H, 0, 0, SW, SH);
}

// The browser's own: canvas drawImage with imageSmoothingQuality 'high' (fast, not the model's bicubic).
const up = { src: null, dst: null, sctx: null, dctx: null };
function addCanvasUpscale(rgba, r, img) {
  const t = performance.now();
  if (!up.src) {
    up.src = new OffscreenCanvas(W, H); up.dst = new OffscreenCanvas(SW, SH);
    up.sctx = up.src.getContext('2d'); up.dctx = up.dst.getContext('2d', { willReadFrequently: true });
    up.dctx.imageSmoothingEnabled = true; up.dctx.imageSmoothingQuality = 'high';
  }
  up.sctx.putImageData(new ImageData(new Uint8ClampedArray(rgba), W, H), 0, 0);
  up.dctx.drawImage(up.src, 0, 0, W, H, 0, 0, SW, SH);
  const b = up.dctx.getImageData(0, 0, SW, SH).data;
  const s = SCALE, n = W * H;
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < s; i++) {
      for (let j = 0; j < s; j++) {
        const plane = (c * s * s + i * s + j) * n;
        for (let yy = 0; yy < H; yy++) {
          let o = 4 * ((yy * s + i) * SW + j) + c;
          let p = plane + yy * W;
          for (let xx = 0; xx < W; xx++, o += 4 * s, p++) img[o] = b[o] + 255 * r[p];
        }
      }
    }
  }
  for (let o = 3; o < img.length; o += 4) img[o] = 255;
  stats.upscaleMs = performance.now() - t;
  return img;
}

// ---------------------------------------------------------------- model updates
let applying = Promise.resolve();
async function applyUpdate(bytes, what) {
  const run = applying.then(async () => {
    try {
      const info = await state.apply(bytes, what);
      stats.updates += 1;
      return { ok: true, segment: info.segment, hash: hex(state.hash) };
    } catch (e) {
      if (!(e instanceof DeltaError)) throw e;
      stats.refused += 1;
      if (stats.refusedReasons.length < 20) stats.refusedReasons.push(e.message);
      return { ok: false, reason: e.message, hash: hex(state.hash) };
    }
  });
  applying = run.catch(() => {});
  return run;
}

async function followUpdates() {
  while (stats.state !== 'ended' && stats.state !== 'error') {
    try {
      const m = await get(`/channel/${NAME}?updates_from=${state.nextSegment}`);
      for (const u of m.updates) {
        if (u.index < state.nextSegment) continue;
        const { body } = await get(`/play/${NAME}/model/${u.index}.bin`, 'bytes');
        const r = await applyUpdate(body, `update ${u.index}`);
        if (!r.ok) break; // a refused update: the next ones do not apply either; retry later
      }
      if (m.ended && state.nextSegment >= m.n_updates) return;
    } catch (e) { stats.note = `updates: ${e.message}`.slice(0, 200); }
    await sleep(1000);
  }
}

// ---------------------------------------------------------------- segments: MP4 -> WebCodecs
const queue = [];
let producerDone = false, lastLR = null;
const lrCanvas = new OffscreenCanvas(8, 8);
let lrCtx;

async function decodeSegment(idx) {
  const { body } = await get(`/play/${NAME}/segment/${idx}.mp4`, 'bytes');
  const file = createFile();
  let track = null;
  const samples = [];
  file.onError = (e) => { throw new Error(`mp4: ${e}`); };
  file.onReady = (info) => {
    track = info.videoTracks[0];
    file.setExtractionOptions(track.id, null, { nbSamples: 100000 });
    file.start();
  };
  file.onSamples = (_id, _user, s) => { samples.push(...s); };
  file.appendBuffer(MP4BoxBuffer.fromArrayBuffer(body.buffer, 0));
  file.flush();
  if (!track) throw new Error(`segment ${idx}: no video track`);
  let description;
  for (const entry of file.getTrackById(track.id).mdia.minf.stbl.stsd.entries) {
    const box = entry.avcC || entry.hvcC || entry.vpcC || entry.av1C;
    if (box) {
      const ds = new DataStream(undefined, 0, Endianness.BIG_ENDIAN);
      box.write(ds);
      description = new Uint8Array(ds.buffer, 8);
    }
  }
  const frames = [];
  let failure = null;
  const dec = new VideoDecoder({
    output: (frame) => {
      lrCtx.drawImage(frame, 0, 0, W, H);
      frames.push({ rgba: lrCtx.getImageData(0, 0, W, H).data, seg: idx });
      frame.close();
    },
    error: (e) => { failure = e; },
  });
  dec.configure({ codec: track.codec, codedWidth: track.video.width, codedHeight: track.video.height, description, optimizeForLatency: true });
  for (const s of samples) {
    dec.decode(new EncodedVideoChunk({ type: s.is_sync ? 'key' : 'delta', timestamp: (1e6 * s.cts) / s.timescale, duration: (1e6 * s.duration) / s.timescale, data: s.data }));
  }
  await dec.flush();
  dec.close();
  if (failure) throw failure;
  stats.segments += 1;
  if (!stats.marks.first_segment) stats.marks.first_segment = Math.round(performance.now());
  return frames;
}

// Segments the page could not have (evicted from the server's kept window before it fetched them):
// a marker in the queue, so the display loop counts their frames as missed, in stream order.
function skip(n, why) {
  if (n <= 0) return;
  queue.push({ skip: n });
  stats.skippedSegments += 1;
  stats.note = why.slice(0, 200);
}

// A failed request or decode is retried (up to MAX_RETRIES in a row, backing off to 2 s); a segment the
// server no longer has (404: evicted between the manifest and the fetch), or one that failed 3 times, is
// skipped, not fatal.
const MAX_RETRIES = 20;
async function produce(manifest) {
  const kept = manifest.segments.map((s) => s.index);
  const startOpt = q.get('start') || 'live';
  // live: one segment behind the newest, when the server still has it (a segment of playout buffer: the
  // display clock never waits, so without it every segment that arrives a little late would be late frames)
  let next = startOpt === 'first' ? kept[0] ?? 0
    : startOpt === 'live' ? Math.max(manifest.live_edge - (kept.includes(manifest.live_edge - 1) ? 1 : 0), 0) : +startOpt;
  const cap = Math.max(4, Math.round(2 * FPS * manifest.segment_s));
  const perSegment = Math.max(1, Math.round(FPS * manifest.segment_s));
  let failures = 0;
  const tries = {}; // failed fetches or decodes per segment: a segment that fails 3 times is skipped
  const failed = async (e) => {
    failures += 1;
    stats.retries += 1;
    if (failures > MAX_RETRIES) throw e;
    stats.note = `segments: ${e.message} (retry ${failures})`.slice(0, 200);
    await sleep(Math.min(2000, 50 * 2 ** failures));
  };
  while (stats.state !== 'error') {
    stats.queued = queue.length;
    if (queue.length >= cap) { stats.producer = 'full'; await sleep(20); continue; }
    stats.producer = `manifest ${next}`;
    let m;
    try { m = await get(`/channel/${NAME}?after=${next - 1}&wait=5`); } catch (e) { await failed(e); continue; }
    const have = m.segments.map((s) => s.index);
    if (have.includes(next)) {
      stats.producer = `segment ${next}`;
      try {
        queue.push(...(await decodeSegment(next)));
        failures = 0;
      } catch (e) {
        const entry = m.segments.find((s) => s.index === next);
        const frames = entry ? entry.frames : perSegment;
        if (e.status === 404) skip(frames, `segment ${next} was gone when fetched (evicted): skipped`);
        else if ((tries[next] = (tries[next] || 0) + 1) >= 3) skip(frames, `segment ${next} failed 3 times (${e.message}): skipped`.slice(0, 200));
        else { await failed(e); continue; }
      }
      delete tries[next];
      next += 1;
    } else if (have.length && next < have[0]) { // fell behind the kept window
      skip((have[0] - next) * perSegment, `fell behind the server's kept segments: skipped ${next}..${have[0] - 1}`);
      next = have[0];
    } else if (m.ended) {
      if (q.get('loop') === '1' && have.length) next = have[0];
      else break;
    }
  }
  producerDone = true;
  stats.producer = 'done';
}

// ---------------------------------------------------------------- level switching: adapt.js
// ---------------------------------------------------------------- the display loop
const view = { ctx: null, shown: [] };

function hud() {
  const seen = stats.frames + stats.dropped + stats.skipped;
  $('level').textContent = stats.level < 0 ? `${q.get('floor') === 'canvas' ? "browser's upscale" : 'bicubic'} only (level 0 too slow)`
    : `L${stats.level}${L ? ` (${L.levels[stats.level].params.toLocaleString()} params)` : ''}`;
  $('fps').textContent = `${stats.fps.toFixed(1)} / ${FPS ? FPS.toFixed(0) : '?'}${stats.rateDiv > 1 ? ` (1 frame in ${stats.rateDiv} shown: ${stats.displayFps.toFixed(1)} fps)` : ''}`;
  $('srms').textContent = `${stats.srMs.toFixed(0)} ms`;
  $('ontime').textContent = seen ? `${((100 * stats.onTime) / seen).toFixed(0)}%` : '-';
  $('model').textContent = `v${stats.modelSegment} ${stats.modelHash.slice(0, 12)}${stats.refused ? ` (${stats.refused} refused)` : ''}`;
  $('backend').textContent = `${stats.backend}, ${stats.threads} thread(s)${stats.isolated ? '' : ', not isolated'}, ${stats.variant}`
    + (FROZEN ? ' (weights in the graphs: model updates not applied)' : '') + (RESIDUAL ? ` (${stats.upscale} upscale in the page)` : '');
  $('state').textContent = stats.error ? `error: ${stats.error}` : `${stats.state}${stats.note ? ' - ' + stats.note : ''}`;
}

// The display clock: stream frame j (counted from the first frame played, skipped ones included) is due
// at t0 + (j + 1) * period, t0 when the first frame is ready, and shown from t0 + j * period (its slot).
// The clock never restarts: when the network or the decoder stalls, the frames behind the stall are late
// (dropped), and the frames of skipped segments count as missed. stats().due: the stream frames whose due
// time has passed.
//
// Frames are upscaled ahead of their slots, as a player decodes ahead: frame j may start up to `ahead`
// (?ahead=N, 0..8, default 3) periods before its slot, so the time a fast frame saves is banked for a slow
// one (a burst of load, a slow level's first frames) instead of being slept away. Finished frames wait in
// `shows` and are painted when their slot comes. This adds no latency (t0 is still the first frame's
// ready time); it costs `ahead` output frames of memory. ahead=0 is the frame-by-frame loop: frame j
// starts once frame j-1's slot has ended.
const clock = { t0: null, period: 0 };
const dueNow = () => (clock.t0 === null ? 0 : Math.max(0, Math.floor((performance.now() - clock.t0) / clock.period)));
const AHEAD = Math.max(0, Math.min(8, Math.floor(Number(q.get('ahead') ?? 3)) || 0));
const shows = []; // finished frames: { at (slot start), paint }

function paintDue(force = false) {
  while (shows.length && (force || shows[0].at <= performance.now())) {
    const s = shows.shift();
    s.paint();
    const t = performance.now();
    view.shown.push(t);
    while (view.shown.length && view.shown[0] < t - 1000) view.shown.shift();
    stats.fps = view.shown.length;
  }
}

// sleep until `t`, painting every finished frame whose slot comes meanwhile
async function waitUntil(t) {
  for (;;) {
    paintDue();
    const now = performance.now();
    if (now >= t) return;
    await sleep(Math.min(t, shows.length ? shows[0].at : t) - now);
  }
}

async function play(switcher, rate) {
  const base = 1000 / FPS;
  clock.period = base;
  let j = 0; // the next stream frame's index on the clock
  const floorKind = q.get('floor');
  stats.state = 'playing';
  stats.ahead = AHEAD;
  while (stats.state === 'playing') {
    paintDue();
    if (!queue.length) { // waiting for the network or the decoder: the clock runs on
      if (producerDone) break;
      await sleep(5);
      continue;
    }
    if (clock.t0 === null) {
      if (rate.on && stats.level0Ms) rate.start(stats.level0Ms);
      clock.t0 = performance.now();
    }
    const head = queue[0];
    if (head.skip) { // frames the server no longer had: missed; the clock moves past them as far as it has run
      queue.shift();
      j = Math.max(j, Math.min(j + head.skip, dueNow()));
      stats.skipped += head.skip;
      continue;
    }
    const due = clock.t0 + (j + 1) * base;
    if (j % rate.div !== 0) { // left out by the lowered display rate
      queue.shift();
      stats.thinned += 1;
      j += 1;
      continue;
    }
    if (performance.now() > due + base) { // already a whole frame behind: drop it to catch up
      queue.shift();
      stats.dropped += 1;
      j += 1;
      continue;
    }
    if (performance.now() < due - (AHEAD + 1) * base) { // far enough ahead: wait (painting meanwhile)
      await waitUntil(due - (AHEAD + 1) * base);
      continue;
    }
    const f = queue.shift();
    const k = switcher.cur;
    const start = performance.now();
    let paint;
    if (k < 0 && floorKind === 'canvas') paint = () => canvasFloor(f.rgba);
    else {
      const img = new ImageData(k < 0 ? bicubicOnly(f.rgba) : await sr(k, f.rgba), SW, SH);
      paint = () => view.ctx.putImageData(img, 0, 0);
    }
    const ms = performance.now() - start;
    lastLR = f.rgba;
    const done = performance.now();
    shows.push({ at: due - base, paint });
    paintDue();
    if (stats.ttffMs === null) stats.ttffMs = done;
    const onTime = done <= due;
    stats.frames += 1;
    stats.onTime += onTime ? 1 : 0;
    stats.late += onTime ? 0 : 1;
    stats.levels[k] = (stats.levels[k] || 0) + 1;
    stats.srMs = ms;
    if (stats.timeline.length < TIMELINE_MAX) {
      stats.timeline.push([Math.round(done), k, Math.round(ms * 10) / 10, onTime ? 1 : 0, stats.loadOn ? 1 : 0, rate.div]);
    }
    if (rate.observe(k, ms)) switcher.period = rate.period;
    stats.rateDiv = rate.div;
    stats.displayFps = FPS / rate.div;
    const nk = switcher.observe(k, ms, (i) => i >= 0 && i < sessions.length && !!sessions[i]);
    const slow = nk <= 0 && switcher.est[0] > 0.9 * switcher.period;
    stats.note = (rate.div > 1 ? `level 0 cannot hold ${FPS.toFixed(0)} fps here: showing 1 frame in ${rate.div} (${stats.displayFps.toFixed(1)} fps)` : '')
      + (slow ? `${rate.div > 1 ? '; ' : ''}even the smallest level misses the frame time now (${switcher.est[0].toFixed(0)} ms a frame)`
        + (nk < 0 ? `: showing the ${floorKind === 'canvas' ? "browser's smooth" : 'bicubic'} upscale alone` : '') : '');
    if (switcher.probeDue) { // from the floor: level 0 on the frame just done, in the time banked (not shown)
      const t = performance.now();
      await sr(0, f.rgba);
      const pms = performance.now() - t;
      stats.probes += 1;
      if (rate.observe(0, pms)) switcher.period = rate.period;
      switcher.probed(pms);
      if (switcher.cur === 0) stats.probesPassed += 1;
    }
    const nk2 = switcher.cur;
    if (nk2 !== k) stats.switches += 1;
    stats.level = nk2;
    if (stats.frames % 5 === 0) hud();
    j += 1;
  }
  while (shows.length) await waitUntil(shows[0].at); // the frames still waiting for their slots
  if (stats.state === 'playing') stats.state = 'ended';
  hud();
}

// ---------------------------------------------------------------- load workers (tests, bench)
let loaders = [];
function startLoad({ workers = 1, busyMs = 45, idleMs = 5, burstMs = 0 } = {}) {
  stopLoad();
  for (let w = 0; w < workers; w++) {
    const worker = new Worker('/play/static/load.js');
    worker.postMessage({ busyMs, idleMs, burstMs, t0: performance.timeOrigin });
    loaders.push(worker);
  }
  stats.loadOn = true;
}
function stopLoad() {
  for (const w of loaders) w.terminate();
  loaders = [];
  stats.loadOn = false;
}

function b64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

async function benchLevels(repeats = 8, only = null) {
  const frame = lastLR || queue[0]?.rgba;
  if (!frame) throw new Error('no decoded frame yet');
  const out = [];
  for (let k = 0; k < sessions.length; k++) {
    if (!sessions[k] || (only && !only.includes(k))) continue;
    await sr(k, frame); // warm-up
    const times = [];
    for (let r = 0; r < repeats; r++) {
      const t = performance.now();
      await sr(k, frame);
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    out.push({ level: k, id: L.levels[k].id, params: L.levels[k].params, median_ms: times[Math.floor(times.length / 2)], times_ms: times });
  }
  stats.bench = out;
  return out;
}

// The speed variants side by side in this one page (same frame, same threads, same moment): each
// name is a graph variant (plain, residual, int8, int8-residual) with '-canvas' for the canvas
// upscale; each repeat times every level in every variant in turn, so a change of load on a
// shared machine falls on all of them alike. Returns {name: [{level, median_ms, times_ms}]}.
const altCache = {};
async function variantSessions(name, only) {
  const graph = name.replace(/-canvas$/, '');
  if (!(L.variants || ['plain']).includes(graph)) throw new Error(`variant ${graph} not offered`);
  if (!altCache[graph]) altCache[graph] = [];
  const list = altCache[graph], t = weightTensors();
  for (const k of only) {
    if (list[k]) continue;
    const { body } = await get(`/play/${NAME}/level/${k}.onnx?variant=${encodeURIComponent(graph)}`, 'bytes', 300000);
    list[k] = await ort.InferenceSession.create(body, { executionProviders: [stats.backend], graphOptimizationLevel: 'all' });
  }
  return { sessions: list, feeds: list.map((s) => feedOf(s, t)), residual: graph.endsWith('residual'),
    upscale: name.endsWith('-canvas') ? 'canvas' : 'exact' };
}

async function benchVariants(names, repeats = 8, only = null) {
  const frame = lastLR || queue[0]?.rgba;
  if (!frame) throw new Error('no decoded frame yet');
  const levels = only || L.levels.map((_, k) => k);
  const alts = {};
  for (const name of names) alts[name] = await variantSessions(name, levels);
  const times = Object.fromEntries(names.map((v) => [v, levels.map(() => [])]));
  for (let r = -1; r < repeats; r++) { // r = -1: one warm-up of each
    for (const [i, k] of levels.entries()) {
      for (const name of names) {
        const t = performance.now();
        await sr(k, frame, alts[name]);
        if (r >= 0) times[name][i].push(performance.now() - t);
      }
    }
  }
  const out = {};
  for (const name of names) {
    out[name] = levels.map((k, i) => {
      const ts = times[name][i].slice().sort((a, b) => a - b);
      return { level: k, median_ms: ts[Math.floor(ts.length / 2)], times_ms: times[name][i] };
    });
  }
  return out;
}

async function report() {
  while (stats.state !== 'error') {
    const p = new URLSearchParams({
      client: CLIENT, frames: stats.frames, on_time: stats.onTime, late: stats.late, dropped: stats.dropped,
      level: stats.level, updates: stats.updates, refused: stats.refused, model_segment: stats.modelSegment,
      ttff_ms: Math.round(stats.ttffMs || 0), fps: stats.fps, sr_ms: stats.srMs.toFixed(1),
      levels: Object.entries(stats.levels).map(([k, v]) => `${k}:${v}`).join(',').slice(0, 200),
      model: stats.modelHash.slice(0, 32), backend: stats.backend,
    });
    fetch(`/play/${NAME}/report?${p}`, { signal: AbortSignal.timeout(5000) }).catch(() => {});
    if (stats.state === 'ended') return;
    await sleep(1000);
  }
}

async function main() {
  const mark = (what) => { stats.marks[what] = Math.round(performance.now()); };
  await loadOrt();
  mark('ort');
  const manifest = await get(`/channel/${NAME}`);
  L = await get(`/play/${NAME}/levels.json`);
  mark('levels');
  if (!(L.variants || ['plain']).includes(stats.variant)) throw new Error(`variant ${stats.variant} not offered (${(L.variants || ['plain']).join(', ')})`);
  W = L.lr_width; H = L.lr_height; SCALE = L.scale; SW = W * SCALE; SH = H * SCALE; FPS = Math.max(0.5, Math.min(240, +(q.get('fps') || 0) || L.fps));
  stats.nLevels = L.levels.length;
  lrCanvas.width = W; lrCanvas.height = H;
  lrCtx = lrCanvas.getContext('2d', { willReadFrequently: true });
  const canvas = $('view');
  canvas.width = SW; canvas.height = SH;
  if (SW < 640) canvas.style.width = '640px'; // small channels shown larger (the browser scales the SR output)
  view.ctx = canvas.getContext('2d');
  $('title').textContent = `${NAME}: ${W}x${H} -> ${SW}x${SH} at ${FPS.toFixed(0)} fps`;
  // segments are fetched and decoded while the model and the first level load
  const producing = produce(manifest).catch((e) => { stats.error = `segments: ${e.message}`; stats.state = 'error'; hud(); });
  // the model: the newest snapshot when there is one (a late joiner), else the stream's first record
  let rec = null;
  if (manifest.n_updates > 0 && q.get('model') !== 'init') rec = await get(`/play/${NAME}/model/latest`, 'bytes').catch(() => null);
  if (!rec) rec = await get(`/play/${NAME}/model/init`, 'bytes');
  state = await ModelState.fromFull(rec.body, 'the channel model');
  mark('model');
  const start = Math.max(0, Math.min(L.levels.length - 1, +(q.get('level') || 0)));
  await loadLevel(start); // the first level to play, then the others smallest first in the background
  mark('first_level');
  const loading = (async () => { for (let k = 0; k < L.levels.length; k++) if (k !== start) await loadLevel(k); })();
  stats.state = 'buffering';
  buildFeeds();
  if (!FROZEN) followUpdates();
  report();
  if (q.get('paused') === '1') {
    await loading;
    while (!queue.length && !producerDone) await sleep(20);
    stats.state = 'paused';
    lastLR = queue[0]?.rgba || null;
    hud();
    return;
  }
  const fixed = q.get('policy') === 'fixed';
  // the switcher only picks levels loaded so far
  const floor = ['bicubic', 'canvas'].includes(q.get('floor'));
  const sw = new Switcher(L.levels, 1000 / FPS, fixed, start, floor);
  const rate = new Rate(1000 / FPS, !fixed && q.get('rate') === 'auto');
  stats.level = start;
  const timer = setInterval(hud, 500);
  await play(sw, rate);
  clearInterval(timer);
  await producing;
}

window.adasr = {
  stats: () => JSON.parse(JSON.stringify({ ...stats, due: dueNow() })),
  probe: async (k, variant = null) => { // variant: a benchVariants name (default: the page's own)
    if (!lastLR) throw new Error('no frame shown yet');
    const lr = lastLR;
    const img = await sr(k, lr, variant ? await variantSessions(variant, [k]) : null);
    return { w: W, h: H, scale: SCALE, lr: b64(new Uint8Array(lr.buffer)), sr: b64(new Uint8Array(img.buffer)), model: hex(state.hash), segment: state.nextSegment };
  },
  applyRecord: async (bytes) => applyUpdate(new Uint8Array(bytes), 'record from the page'),
  fetchRecord: async (u) => Array.from((await get(`/play/${NAME}/model/${u}.bin`, 'bytes')).body),
  benchLevels,
  benchVariants,
  startLoad,
  stopLoad,
};
window.adasr.ready = main().catch((e) => { stats.error = String(e && e.message ? e.message : e); stats.state = 'error'; hud(); });
