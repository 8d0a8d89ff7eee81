"""`adasr bench browser`: the levels in headless Chromium (onnxruntime-web, WASM) against the
same levels in Python (torch) on the same machine, and the page's deadlines under a bursty
in-page load with levels switching against a fixed largest level.

One run serves one channel from `video` (centre crop of scale x the LR size, no training, so
the server takes no CPU from the page beyond sending segments) on 127.0.0.1, then:

1. per WASM thread count: the page loads every level in every variant (`BENCH_VARIANTS`:
   ``plain``; ``residual``, the graph outputs the learned residual and the page adds the exact
   bicubic in JS; ``residual-canvas``, the browser's canvas upscale instead; ``frozen``,
   ``frozen-residual``, float32 with the weights inside the graph; ``int8``, ``int8-residual``,
   those quantized by ONNX Runtime's static QDQ, calibrated on LR frames spread over the
   channel's kept segments) and times each on one decoded frame, playback paused, side by side
   (`benchVariants`: each repeat runs every level in every variant in turn, so a change of
   load falls on all alike; one warm-up, then the median of `repeats`). With `play_threads`
   threads every variant's output on the page's frame is also compared with the Python
   level's (float32 torch, exact bicubic): PSNR and the largest difference in uint8 steps,
   for the smallest and the largest level;
2. the same levels in torch, float32, with 1 and 2 threads, on the same LR frame size;
3. the int8 loss on real frames, natively (ONNX Runtime, the same quantizer and calibration
   frames as the server's): PSNR against HR on `quality_frames` frames spread over the
   video (area-downsampled, as the channel's LR), float32 torch vs int8, per level;
4. playbacks of `seconds` each, a busy Web Worker in the page spinning in alternate
   `burst_s` windows: adaptive (DySR-style switching from measured frame times) and fixed at
   the largest level with the plain export, adaptive with the fastest variant (the highest
   smallest-level FPS), and that again with the bicubic floor (``floor``: below level 0 the
   page shows the model's bicubic upscale alone when even level 0 misses). Deadline met: the
   frame's SR output was on the canvas by its display time (frame i due i+1 periods after
   the first); a frame more than a period late is dropped and counts as missed.

Returns a JSON-ready dict; `browser_png` draws the timeline and the FPS bars.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BENCH_VARIANTS", "browser_png", "run_browser_bench"]

# What the page runs: the server's graph variant (adasr.serve.web.VARIANTS) and, for the residual
# ones, the page's upscale (exact: the model's bicubic in JS; canvas: drawImage, 'high' quality).
BENCH_VARIANTS = {"plain": "variant=plain", "residual": "variant=residual&upscale=exact",
                  "residual-canvas": "variant=residual&upscale=canvas", "frozen": "variant=frozen",
                  "frozen-residual": "variant=frozen-residual&upscale=exact", "int8": "variant=int8",
                  "int8-residual": "variant=int8-residual&upscale=exact",
                  "int8-residual-canvas": "variant=int8-residual&upscale=canvas"}

LEVEL_TIMES = """
const until = async (pred, ms) => { const end = Date.now() + ms; let s = null;
  while (Date.now() < end) { s = await page.evaluate(() => (window.adasr ? window.adasr.stats() : null));
    if (s && (s.error || pred(s))) return s; await sleep(250); } return s; };
const s = await until((s) => s.state === 'paused', args.timeout_ms);
if (!s || s.state !== 'paused') return { error: s ? s.error || `state ${s.state}` : 'no player', stats: s };
const variants = await page.evaluate((a) => window.adasr.benchVariants(a.variants, a.repeats), args);
const probes = {};
if (args.probe.length) for (const v of args.variants) {
  probes[v] = [];
  for (const k of args.probe) probes[v].push(await page.evaluate((a) => window.adasr.probe(a.k, a.v), { k, v }));
}
return { variants, probes, stats: await page.evaluate(() => window.adasr.stats()) };
"""

PLAYBACK = """
const until = async (pred, ms) => { const end = Date.now() + ms; let s = null;
  while (Date.now() < end) { s = await page.evaluate(() => (window.adasr ? window.adasr.stats() : null));
    if (s && (s.error || pred(s))) return s; await sleep(250); } return s; };
// the window opens 1 s after every level is loaded (and warmed up: a large level's warm-up run holds the
// display loop for a frame or more, and the frames behind it are dropped): it measures switching, not loading
const s0 = await until((s) => s.frames >= 1 && s.levelsLoaded === s.nLevels, args.timeout_ms);
if (!s0 || s0.error || !s0.frames) return { error: s0 ? s0.error || 'no frame' : 'no player', stats: s0 };
await sleep(1000);
await page.evaluate((o) => window.adasr.startLoad(o), args.load);
const before = await page.evaluate(() => window.adasr.stats());
await sleep(args.seconds * 1000);
const after = await page.evaluate(() => window.adasr.stats());
await page.evaluate(() => window.adasr.stopLoad());
return { before, after };
"""


def _level(pkg: Any, cfg: Any) -> Any:
    """Level `cfg` of the channel (a family level or a sub-network of the supernet) as a static module."""
    import copy

    own = pkg.own.get(cfg.id)
    return copy.deepcopy(own).eval() if own is not None else pkg.supernet.extract(cfg).eval()


def _torch_times(package: Any, cfgs: list[Any], frame: np.ndarray, threads: int, repeats: int) -> list[float]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = torch.from_numpy(np.ascontiguousarray(frame.transpose(2, 0, 1)))[None].float() / 255.0
        out = []
        for cfg in cfgs:
            net = _level(package, cfg)
            with torch.inference_mode():
                net(x)
                times = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    net(x)
                    times.append(time.perf_counter() - t)
            out.append(1000 * statistics.median(times))
        return out
    finally:
        torch.set_num_threads(old)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 100.0 if mse == 0 else min(100.0, 10 * np.log10(255.0**2 / mse))


def _probe_agreement(pkg: Any, cfgs: list[Any], probes: list[dict[str, Any]], ks: list[int]) -> dict[str, Any]:
    """The page's SR of its frame against the Python level's (float32 torch) on the same frame."""
    import base64

    import torch

    out: dict[str, Any] = {}
    for k, p in zip(ks, probes):
        s = int(p["scale"])
        lr = np.frombuffer(base64.b64decode(p["lr"]), np.uint8).reshape(p["h"], p["w"], 4)[..., :3]
        got = np.frombuffer(base64.b64decode(p["sr"]), np.uint8).reshape(s * p["h"], s * p["w"], 4)[..., :3]
        x = torch.from_numpy(np.ascontiguousarray(lr.transpose(2, 0, 1)))[None].float() / 255.0
        with torch.inference_mode():
            y = _level(pkg, cfgs[k])(x)[0]
        want = (y.clamp(0, 1) * 255.0).round().byte().permute(1, 2, 0).numpy()
        out[str(k)] = {"psnr_db": _psnr(got, want), "max_steps": int(np.abs(got.astype(int) - want.astype(int)).max())}
    return out


def _int8_quality(pkg: Any, cfgs: list[Any], video: Path, lr_hw: tuple[int, int], xs: list[np.ndarray],
                  count: int) -> dict[str, Any]:
    """PSNR (RGB, against HR) of each level in float32 torch and as the int8 graph (ONNX Runtime,
    1 thread; calibrated on `xs`, the server's calibration inputs) on `count` frames of `video`
    spread over it (of every 10th frame, at most 400 read), LR area-downsampled."""
    import onnxruntime as ort
    import torch

    from adasr.export import frozen_level_onnx, quantize_level_onnx
    from adasr.serve.media import LiveSource, downsample

    h, w = lr_hw
    s = pkg.scale
    src = LiveSource(video, scale=s, crop_hw=(h * s, w * s), max_frames=400, loops=1)
    pool = [f for i, f in enumerate(src.frames()) if i % 10 == 5]
    hrs = [pool[round(j * (len(pool) - 1) / max(1, count - 1))] for j in range(min(count, len(pool)))]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    fp32, int8 = [], []
    for cfg in cfgs:
        net = _level(pkg, cfg)
        q = quantize_level_onnx(frozen_level_onnx(pkg.supernet.eval(), lr_hw, cfg), xs)
        sess = ort.InferenceSession(q, opts, providers=["CPUExecutionProvider"])
        a, b = [], []
        for hr in hrs:
            lr = downsample(hr, s)
            x = np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255.0)
            with torch.inference_mode():
                y = net(torch.from_numpy(x))[0].numpy()
            yq = sess.run(None, {"x": x})[0][0]
            for arr, acc in ((y, a), (yq, b)):
                img = (np.clip(arr, 0, 1) * 255.0).round().astype(np.uint8).transpose(1, 2, 0)
                acc.append(_psnr(img, hr))
        fp32.append(float(np.mean(a)))
        int8.append(float(np.mean(b)))
    return {"frames": len(hrs), "fp32_psnr_db": fp32, "int8_psnr_db": int8,
            "int8_loss_db": [a - b for a, b in zip(fp32, int8)]}


def _window(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What happened between two stats snapshots: frames, deadlines, levels, SR times.

    The denominator of `deadlines_met` is every frame of the page's timeline that fell due in the
    window (``due``: stream frames whose display time passed, on a clock that never restarts, so
    frames the network or decoder held back count), less those the lowered display rate left out by
    design (``thinned``, reported); shown-late, dropped, skipped and never-shown frames are missed.
    A page that stopped with an error keeps its error here."""
    frames = after["frames"] - before["frames"]
    dropped = after["dropped"] - before["dropped"]
    on_time = after["onTime"] - before["onTime"]
    due = after.get("due", 0) - before.get("due", 0)
    thinned = after.get("thinned", 0) - before.get("thinned", 0)
    skipped = after.get("skipped", 0) - before.get("skipped", 0)
    rows = after["timeline"][len(before["timeline"]):]
    hist: dict[str, int] = {}
    for row in rows:
        hist[str(row[1])] = hist.get(str(row[1]), 0) + 1
    seen = frames + dropped
    timeline = max(due - thinned, seen + skipped)
    divs = sorted({row[5] for row in rows if len(row) > 5})
    return {"frames": frames, "dropped": dropped, "on_time": on_time, "stalled": seen == 0, "due": due,
            "thinned": thinned, "skipped": skipped, "timeline_frames": timeline,
            "shown_share": frames / due if due else 0.0, "rate_divs": divs,
            "error": after.get("error"), "state": after.get("state"), "note": after.get("note", ""),
            "deadlines_met": on_time / timeline if timeline else 0.0, "levels": hist,
            "switches": after["switches"] - before["switches"],
            "median_sr_ms": statistics.median([r[2] for r in rows]) if rows else None,
            "fps_shown": frames / max(1e-9, (rows[-1][0] - rows[0][0]) / 1000) if len(rows) > 1 else 0.0,
            "timeline": rows}


def run_browser_bench(package_path: Path, video: Path, lr_hw: tuple[int, int], *, repeats: int = 8,
                      threads: tuple[int, ...] = (1, 2), play_threads: int = 2, seconds: float = 20.0,
                      burst_s: float = 2.0, fps: float | None = None, progress=None,
                      variants: tuple[str, ...] = ("plain", "residual", "residual-canvas", "frozen-residual", "int8",
                                                   "int8-residual"),
                      quality_frames: int = 4, floor: bool = True, lower_rate: bool = True,
                      levels_spec: str = "all") -> dict[str, Any]:
    from adasr.package import load_package
    from adasr.serve.channel import Channel, ChannelConfig, Hub, NamedModel
    from adasr.serve.config import TrainerConfig
    from adasr.serve.media import LiveSource
    from adasr.serve.server import LiveServer
    from adasr.serve.webdrive import drive

    say = progress or (lambda _msg: None)
    h, w = lr_hw
    pkg = load_package(package_path)
    scale = pkg.scale
    # one pass of the clip: the channel ends with every segment kept, and the pages loop over them (a
    # looping live source slides its kept window under a page that starts at the oldest segment)
    src = LiveSource(video, scale=scale, crop_hw=(h * scale, w * scale), max_frames=None, loops=1)
    if (src.height // scale, src.width // scale) != (h, w):
        from adasr.errors import ConfigError

        raise ConfigError(f"{video} is {src.width}x{src.height}: too small for {w}x{h} x{scale}")
    ch = Channel("bench", src, TrainerConfig(scheme="none"),
                 model_source=NamedModel(str(package_path), levels=levels_spec), config=ChannelConfig(segment_s=1.0))
    cfgs = list(ch.trainer.levels)
    levels = [cfg.id for cfg in cfgs]
    rate = float(fps or src.fps)
    timeout_ms = 600_000
    result: dict[str, Any] = {"kind": "adasr-bench-browser", "schema_version": 1, "package": str(package_path),
                              "video": str(video), "lr_size": [w, h], "scale": scale, "fps": rate,
                              "levels": levels, "params": [int(pkg.supernet.cost(cfg, (h, w))[0]) for cfg in cfgs],
                              "levels_spec": levels_spec}
    with LiveServer(Hub([ch]), duration_s=3600, train=True) as srv:
        t0 = time.monotonic()
        while ch.live_edge < 2 and time.monotonic() - t0 < 120:
            time.sleep(0.2)
        base = f"{srv.url}/play/bench?start=first&loop=1"
        # time to first frame: the first page load exports the levels (cold), the second finds them (warm)
        ttff = {}
        browser: dict[str, Any] = {}
        ks = [0, len(levels) - 1]
        by_threads: dict[str, Any] = {}
        counts = list(dict.fromkeys([*threads, play_threads]))
        for t in counts:
            say(f"browser: timing {len(levels)} levels x {len(variants)} variants side by side, {t} WASM thread(s)")
            r = drive(f"{base}&paused=1&threads={t}", LEVEL_TIMES,
                      {"repeats": repeats, "timeout_ms": timeout_ms, "variants": list(variants),
                       "probe": ks if t == play_threads else []}, timeout_s=timeout_ms / 1000 + 60)
            if r.get("error"):
                raise RuntimeError(f"browser bench: {r['error']}")
            ttff.setdefault("marks_first_load" if not ttff else "marks_later_load", r["stats"]["marks"])
            rows = {}
            for v, per in r["variants"].items():
                rows[v] = {"median_ms": [lv["median_ms"] for lv in per], "isolated": r["stats"]["isolated"],
                           "backend": r["stats"]["backend"], "threads": r["stats"]["threads"]}
                if v in r["probes"]:
                    rows[v]["page_vs_python"] = _probe_agreement(pkg, cfgs, r["probes"][v], ks)
            by_threads[str(t)] = rows
            if "plain" in rows and t in threads:
                browser[str(t)] = rows["plain"]
        var = by_threads[str(play_threads)]
        from adasr.export import calibration_inputs
        from adasr.serve.media import decode_segment

        first = decode_segment(ch.segment(0).data)
        lr = first[0][:h, :w]
        say("python: timing the same levels in torch")
        python = {str(t): _torch_times(pkg, cfgs, lr, t, repeats) for t in (1, 2)}
        quality = None
        if any(v.startswith("int8") for v in variants):
            say(f"python: int8 against float32 on {quality_frames} frames (PSNR against HR)")
            exp = srv.hub.web_players._exports["bench"]  # the calibration the page's int8 graphs got
            xs = exp._calibration or calibration_inputs(exp._frames(), (h, w))
            quality = _int8_quality(pkg, cfgs, video, (h, w), xs, quality_frames)
            quality["calibration_frames"] = len(xs)
        fastest = max(var, key=lambda v: 1000 / var[v]["median_ms"][0]) if var else None
        runs = {}
        load = {"workers": 1, "busyMs": 45, "idleMs": 5, "burstMs": int(burst_s * 1000)}
        plays = [("adaptive", "policy=adaptive&level=0"), ("fixed_largest", f"policy=fixed&level={len(levels) - 1}")]
        if fastest and fastest != "plain":
            plays.append(("adaptive_fastest", f"policy=adaptive&level=0&{BENCH_VARIANTS[fastest]}"))
        if fastest and floor:
            plays.append(("adaptive_fastest_floor", f"policy=adaptive&level=0&floor=bicubic&{BENCH_VARIANTS[fastest]}"))
        if fastest and lower_rate:
            plays.append(("adaptive_fastest_rate",
                          f"policy=adaptive&level=0&floor=canvas&rate=auto&{BENCH_VARIANTS[fastest]}"))
        for name, query in plays:
            say(f"browser: {seconds:.0f} s of playback, {name}, bursty in-page load")
            r = drive(f"{base}&threads={play_threads}&fps={rate}&{query}", PLAYBACK,
                      {"seconds": seconds, "load": load, "timeout_ms": timeout_ms}, timeout_s=timeout_ms / 1000 + 60)
            if r.get("error"):
                raise RuntimeError(f"browser bench ({name}): {r['error']}")
            runs[name] = _window(r["before"], r["after"])
            if runs[name]["error"]:
                say(f"browser: the {name} page stopped: {runs[name]['error']}")
            runs[name]["ttff_ms"] = r["after"]["ttffMs"]
            runs[name]["marks"] = r["after"]["marks"]
    for t, rows in by_threads.items():
        for row in rows.values():
            row["fps"] = [1000 / ms for ms in row["median_ms"]]
            if "plain" in rows:
                row["speedup_over_plain"] = [p / m for p, m in zip(rows["plain"]["median_ms"], row["median_ms"])]
            row["over_torch"] = [m / p for m, p in zip(row["median_ms"], python.get(t, python["1"]))]
    result.update({"browser_wasm": browser, "python_torch": python, "playback": runs, "load": load,
                   "play_threads": play_threads, "ttff": ttff, "variants": var, "variants_by_threads": by_threads,
                   "fastest_variant": fastest,
                   "int8_quality": quality,
                   "note": "shared 2-core machine: absolute times are noisy; compare within this run"})
    for b in browser.values():
        b["fps"] = [1000 / ms for ms in b["median_ms"]]
    result["python_torch_fps"] = {t: [1000 / ms for ms in v] for t, v in python.items()}
    result["browser_over_python"] = {t: [b / p for b, p in zip(browser[t]["median_ms"], python.get(t, python["1"]))]
                                     for t in browser}
    return result


def browser_png(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["playback"])
    fig, axes = plt.subplots(1 + len(names), 1, figsize=(10, 3.4 * (1 + len(names))))
    ax = axes[0]
    n = len(result["levels"])
    xs = np.arange(n)
    pt = result.get("play_threads")
    series = [(f"WASM {t}T plain", v["fps"]) for t, v in result["browser_wasm"].items() if int(t) != pt]
    series += [(f"WASM {pt}T {name}", v["fps"]) for name, v in (result.get("variants") or {}).items()]
    if not result.get("variants"):
        series += [(f"WASM {t}T plain", v["fps"]) for t, v in result["browser_wasm"].items() if int(t) == pt]
    series += [(f"torch {t}T", v) for t, v in result["python_torch_fps"].items()]
    width = 0.8 / len(series)
    for i, (label, fpsv) in enumerate(series):
        ax.bar(xs + i * width, fpsv, width, label=label)
    ax.axhline(result["fps"], color="k", lw=0.8, ls="--", label=f"{result['fps']:.0f} fps")
    ax.set_xticks(xs + 0.4 - width / 2, [f"L{i}\n{p / 1000:.0f}K" for i, p in enumerate(result["params"])])
    ax.set_ylabel("FPS (median)")
    w, h = result["lr_size"]
    ax.set_title(f"levels at {w}x{h} -> {w * result['scale']}x{h * result['scale']} (shared machine)")
    ax.legend(fontsize=7, ncol=2)
    for ax, name in zip(axes[1:], names):
        run = result["playback"][name]
        rows = run["timeline"]
        if rows:
            t0 = rows[0][0]
            t = np.array([(r[0] - t0) / 1000 for r in rows])
            ax.step(t, [r[1] for r in rows], where="post", label="level")
            ax2 = ax.twinx()
            ax2.plot(t, [r[2] for r in rows], ".", ms=3, color="tab:orange", label="SR ms")
            # the frame period: the stream's, times the lowered rate's divisor where the page lowered it
            ax2.step(t, [1000 / result["fps"] * (r[5] if len(r) > 5 else 1) for r in rows], where="post",
                     color="tab:red", lw=0.8, ls="--")
            ax2.set_ylabel("SR ms")
            late = [ti for ti, r in zip(t, rows) if not r[3]]
            ax.plot(late, [min(r[1] for r in rows) - 0.5] * len(late), "|", color="tab:red", label="late")
            burst = result["load"]["burstMs"]
            if burst:  # the busy worker spins in the even windows of the page clock
                for k in range(int(rows[0][0] // burst), int(rows[-1][0] // burst) + 1):
                    if k % 2 == 0:
                        ax.axvspan(max(0, (k * burst - t0) / 1000), ((k + 1) * burst - t0) / 1000, color="0.9")
        ax.set_ylabel("level")
        divs = [d for d in run.get("rate_divs", []) if d > 1]
        rate = f", 1 frame in {'/'.join(map(str, divs))} shown" if divs else ""
        ax.set_title(f"{name}: {100 * run['deadlines_met']:.0f}% of frames on time "
                     f"({run['frames']} shown, {run['dropped']} dropped{rate}), levels {run['levels']}")
        if rows:
            ax.legend(loc="upper left", fontsize=7)
    axes[-1].set_xlabel("seconds (bursty in-page load: a busy worker in alternate windows)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
