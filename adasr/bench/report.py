"""docs/RESULTS.md, generated from the JSON the benches write (`adasr bench report`, `make results`).

`SECTIONS` is the registry: one `Section` per claim, naming the JSON files it reads (under the
results folder, docs/results/ in the repository) and the renderer that turns them into a
markdown table. Adding a table is adding one renderer and one entry. Every bench stamps its JSON
with ``provenance`` (`adasr.timing.provenance`: command, machine, date), which each section
prints under its table; a missing file is said as such, never filled in.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adasr.errors import InputError

__all__ = ["SECTIONS", "Section", "render_results"]

MAX_JSON_BYTES = 64 << 20
Rows = list[list[str]]


@dataclass(frozen=True)
class Section:
    """One claim: its heading, one sentence of what the table shows, the JSON files it reads and
    the renderer: ``render(data) -> (header, rows, notes)`` with `data` one dict per file."""

    title: str
    claim: str
    files: tuple[str, ...]
    render: Callable[[list[dict[str, Any]]], tuple[list[str], Rows, list[str]]]
    bench: str  # the name scripts/results_benches.sh takes to regenerate the files


def _f(value: Any, fmt: str, missing: str = "-") -> str:
    return missing if value is None else format(value, fmt)


def _protocol(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    rows = [[r["set"], f"x{r['scale']}", f"{r['psnr']:.3f}", _f(r["published_psnr"], ".2f"),
             _f(r["psnr_diff"], "+.3f"), f"{r['ssim']:.4f}", _f(r["published_ssim"], ".4f")]
            for r in data[0]["rows"]]
    worst = max(abs(r["psnr_diff"]) for r in data[0]["rows"] if r["psnr_diff"] is not None)
    return (["set", "scale", "PSNR (adasr)", "PSNR (published)", "difference", "SSIM (adasr)", "SSIM (published)"],
            rows, [f"Largest PSNR difference: {worst:.3f} dB."])


def _peers(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    rows, notes = [], []
    for d in data:
        sets = d["sets"]
        levels = [r for r in d["rows"] if r["kind"] == "adasr-level"]
        others = [r for r in d["rows"] if r["kind"] != "adasr-level"]
        shown = others + ([levels[0], levels[-1]] if len(levels) > 1 else levels)
        for r in shown:
            name = r["name"] + (" (fastest level)" if r is levels[0] else " (best level)" if r is levels[-1] else "")
            rows.append([f"x{d['scale']}", name, _f(r["params"], ",d"),
                         *[f"{r[s]['psnr']:.2f} / {r[s]['ssim']:.4f}" for s in sets], f"{r['fps']:.1f}"])
        for s, v in d["verdict"].items():
            word = "above" if v["every_level_above_every_peer"] else "NOT above"
            notes.append(f"x{d['scale']} {s}: every level {word} every peer (worst level {v['worst_level_psnr']:.2f} "
                         f"dB, best peer {v['best_peer']} {v['best_peer_psnr']:.2f} dB).")
        if d.get("verdict_withheld"):
            notes.append(f"x{d['scale']}: {d['verdict_withheld']}.")
        notes.extend(f"x{d['scale']}: not run: {n}" for n in d["notes"])
    notes.append("bicubic here is torch's interpolation (the levels' own skip connection), not the protocol's "
                 "MATLAB bicubic of the protocol table; FPS is one frame of the default clip at the LR size, on "
                 "the machine and load each file names below.")
    sets = data[0]["sets"]
    h, w = data[0]["lr_hw"]
    return ["scale", "upscaler", "params", *[f"{s} PSNR / SSIM" for s in sets], f"FPS at {w}x{h}"], rows, notes


def _memory(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    d = data[0]
    rows = [["supernet (every level)", f"{d['supernet_bytes'] / 1e6:.3f}"],
            [f"assembled ({len(d['levels'])} levels held separately)", f"{d['assembled_bytes'] / 1e6:.3f}"],
            ["largest level alone", f"{d['largest_bytes'] / 1e6:.3f}"]]
    return ["weights", "MB"], rows, [f"Space {d['space']}, {len(d['levels'])} sub-networks spread from its smallest "
                                     f"to its largest: weight sharing saves {d['saving'] * 100:.1f} % against "
                                     f"Assembled."]


def _adaptivity(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    from adasr.bench.adaptivity import summary_rows

    d = data[0]
    table = summary_rows(d)
    header = list(table[0])
    rows = [[_f(v, ".4g") if isinstance(v, float) else str(v) for v in r.values()] for r in table]
    note = (f"Trace {d['trace']['name']}, target {d['target_fps']:.1f} FPS ({d['target_fps_source']}), policy "
            f"{d['policy']}, adasr in {d['precision']}, {d['seconds']:g} s per runner, LR {d['lr_size'][0]}x"
            f"{d['lr_size'][1]}.")
    return header, rows, [note]


def _backends(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    d = data[0]
    set_name = next((k for lv in d["levels"] for k, v in lv.items() if isinstance(v, dict)), None)
    score = {(lv["index"], b): s for lv in d["levels"] for b, s in (lv.get(set_name) or {}).items()}
    rows = []
    for size in d["sizes"]:
        h, w = size["lr_hw"]
        for r in size["rows"]:
            rows.append([f"{w}x{h}", f"L{r['level']}", r["backend"], f"{r['ms']:.1f}", f"{r['speedup']:.2f}",
                         _f(r["psnr_vs_fp32"], ".1f"), _f(score.get((r["level"], r["backend"])), ".2f")])
        for p, entry in zip(size.get("peers", []), d["peers"]):
            rows.append([f"{w}x{h}", "peer", p["name"], f"{p['ms']:.1f}", "", "", _f(entry.get(set_name), ".2f")])
    notes = [f"{d['threads']} thread(s), {d['clock']} time; PSNR against float32 on the timed frame; "
             f"{set_name or 'no set'} PSNR-Y against HR."] + [f"not run: {n}" for n in d["notes"]]
    return ["LR", "level", "backend", "ms/frame", "x fp32", "PSNR vs fp32", f"{set_name} PSNR-Y"], rows, notes


def _codec(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    rows, notes = [], []
    clips = [clip for d in data for clip in d["clips"]]
    for clip in clips:
        name = Path(clip["video"]).name
        for curve, points in clip["curves"].items():
            bd = clip["bd_psnr"].get(curve)
            pts = ", ".join(f"{p['kbps']:.0f} / {p['psnr']:.2f}" for p in points)
            rate = "anchor" if bd is None else _f(bd.get("bd_rate"), "+.1f")
            gain = "anchor" if bd is None else _f(bd.get("bd_psnr"), "+.2f")
            rows.append([name, curve, pts, rate, gain])
        why = {bd["note"] for bd in clip["bd_psnr"].values() if bd.get("bd_rate") is None and bd.get("note")}
        notes.extend(f"{name}: no BD figure: {w}." for w in sorted(why))
        s, u = clip["default_stream"], clip.get("defaults", {})
        lr = f", lr {u['lr']:g}, {u['patch']}-px crops" if "lr" in u else ""
        lr += f", {u['precision']} steps" if "precision" in u else ""
        notes.append(f"{name}: {clip['frames']} frames {clip['width']}x{clip['height']}, x{clip['scale']}; updates of "
                     f"eta {u.get('eta', 0):g}, {u.get('steps')} steps{lr}, {u.get('values')} values every "
                     f"{u.get('tau')} s; model stream {s['model_kbps_mean']:.1f} kbps (base by hash "
                     f"{s['model_kbps_base_by_hash_mean']:.1f}); encode {s['realtime_factor_cpu_mean']:.2f}x real time "
                     "in CPU time.")
        # adasr.bench.codec.RD_GATED, spelled out: that module imports torch and the report runs without it
        gated = clip["curves"].get("LR H.265 + adasr stream, base by hash, updates that pay")
        if gated:
            notes.append(f"{name}: updates that pay: " + ", ".join(
                f"{p['sent']} of {p['segments']} sent at LR CRF {p['crf']} (lambda {p['rd']['lambda']:.0f})"
                for p in gated) + "; a segment whose update does not pay gets an empty record.")
    done = {Path(clip["video"]).name for clip in clips}
    left = sorted({Path(v).name for d in data for v in d.get("videos", [])} - done)
    if left:
        notes.append(f"Not finished when the JSON was written (a run writes it after every clip): {', '.join(left)}.")
    for d in data:  # a run stopped early whose clip another file measured
        own = {Path(clip["video"]).name for clip in d["clips"]}
        later = sorted({Path(v).name for v in d.get("videos", [])} - own - set(left))
        if later:
            notes.append(f"A run of {', '.join(sorted(own))} was stopped before {', '.join(later)}, "
                         "measured by another run below.")
    return ["clip", "curve", "points: kbps / PSNR dB", "BD-rate % vs anchor", "BD-PSNR dB"], rows, notes


def _codec_low(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    """The model streams on a lower CRF grid: one row per clip, the rates in bits per HR pixel (the unit of
    the seed's figures) and the BD-rate of each LR curve against HR H.265 slow."""
    curves = ("LR H.265 + adasr stream, base by hash, updates that pay", "LR H.265 + adasr stream, base by hash",
              "LR H.265 + generic SR", "LR H.265 + bicubic")
    rows, notes = [], []
    for d in data:
        for clip in d["clips"]:
            def bpp(curve: str, clip: dict[str, Any] = clip) -> str:  # bench codec's bits per HR pixel of each point
                b = [p["bpp"] for p in clip["curves"].get(curve, [])]
                return f"{min(b):.4f}-{max(b):.4f}" if b else "-"

            rates = [_f((clip["bd_psnr"].get(c) or {}).get("bd_rate"), "+.1f") for c in curves]
            lr_crfs = ",".join(str(p["crf"]) for p in clip["curves"].get(curves[0], []) if "crf" in p)
            rows.append([Path(clip["video"]).name, bpp("HR H.265 slow"), bpp(curves[0]), lr_crfs or "-", *rates])
    for d in data:
        for clip in d["clips"]:
            u = clip.get("defaults", {})
            notes.append(f"{Path(clip['video']).name}: {clip['frames']} frames {clip['width']}x{clip['height']}, "
                         f"HR CRFs {','.join(str(c) for c in d['config'].get('hr_crfs', []))}; updates of eta "
                         f"{u.get('eta', 0):g}, {u.get('steps')} steps, {u.get('values')} values every {u.get('tau')} s"
                         + (f", {u['precision']} steps" if "precision" in u else "") + ".")
    notes.append("Bits per pixel: a stream's bits over the HR pixels it carries. The seed's own rate figures span "
                 "about 0.0015-0.006 bits per pixel.")
    return ["clip", "HR H.265 bits/px", "adasr bits/px", "LR CRFs", "updates that pay %", "by hash %",
            "generic SR %", "bicubic %"], rows, [" ".join(notes)]


def _reuse(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    """One group of rows per plan (sessions, windows, how often scenes recur, LR): RECL's run and the
    retrain-only budgets beside it, and the compute that retraining alone needs to match RECL."""
    rows, notes = [], []
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for d in data:
        c = d["config"]
        key = (c["sessions"], c["windows"], c["scene_windows"], c.get("recur", 2), c["lr_w"], c["lr_h"],
               c.get("degradation"), d["level"])
        groups.setdefault(key, []).append(d)
    for group in groups.values():
        curve: dict[int, float] = {}  # retrain-only (Algorithm 4) gain by budget
        recl: tuple[int, float] | None = None
        for d in group:
            cfg = d["config"]
            for name, v in d["schemes"].items():
                rows.append([str(cfg.get("recur", 2)), name, str(cfg["budget"]), f"{v['gain_db']:+.3f}",
                             f"{v['final_gain_db']:+.3f}", _f(v["respond_mean"], ".2f"), str(v["stats"].get("zoo", 0)),
                             f"{v['stats'].get('reuse_rate', 0):.2f}", f"{v['seconds']:.0f}"])
                if name == "retrain-inband":
                    curve[int(cfg["budget"])] = float(v["gain_db"])
                if name == "recl" and recl is None:
                    recl = (int(cfg["budget"]), float(v["gain_db"]))
        cfg = group[0]["config"]
        lr = "clean bicubic LR" if not cfg.get("degradation") else f"LR through {cfg['degradation']}"
        text = (f"Scenes recurring {cfg.get('recur', 2)} times: {cfg['sessions']} sessions x {cfg['windows']} windows "
                f"of {cfg['lr_w']}x{cfg['lr_h']} {lr}, {cfg['scene_windows']} windows a scene, level "
                f"{group[0]['level']} of {group[0]['base']}; budget: micro-windows ({cfg['steps']} steps each) per "
                "session per window.")
        match = _compute_to_match(curve, recl)
        notes.append(text + (" " + match if match else ""))
    return ["scenes recur", "scheme", "budget", "gain dB", "last scene dB", "respond (windows)", "zoo", "reuse rate",
            "CPU s"], rows, notes


def _compute_to_match(curve: dict[int, float], recl: tuple[int, float] | None) -> str:
    """Where retraining alone (gain against budget, straight lines between the measured budgets)
    reaches RECL's gain, as a multiple of RECL's budget."""
    if recl is None or len(curve) < 2:
        return ""
    budget, gain = recl
    pts = sorted(curve.items())
    if gain <= pts[0][1]:
        return (f"Compute to match: retraining alone gains {pts[0][1]:+.3f} dB at budget {pts[0][0]}, already at "
                f"or above RECL's {gain:+.3f} dB at budget {budget} (a ratio of at most {pts[0][0] / budget:.2f}x).")
    for (b0, g0), (b1, g1) in zip(pts, pts[1:]):
        if g0 < gain <= g1:
            at = b0 + (gain - g0) / (g1 - g0) * (b1 - b0)
            return (f"Compute to match: retraining alone reaches RECL's {gain:+.3f} dB at a budget of about {at:.1f} "
                    f"(straight line between {b0} and {b1}), {at / budget:.2f}x RECL's budget of {budget} "
                    "(the thesis: 3.2x).")
    return (f"Compute to match: retraining alone stays below RECL's {gain:+.3f} dB up to budget {pts[-1][0]} "
            f"({pts[-1][1]:+.3f} dB): more than {pts[-1][0] / budget:.1f}x RECL's budget.")


def _mimo(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    d = data[0]
    snrs = d["snr_db"]
    rows = [[name, *[f"{s:.1e}" for s in r["ser"]], _f(r.get("snr_at_1e-3"), ".1f"), _f(r.get("gap_to_ml_db"), "+.1f"),
             _f(r.get("multiplications_per_vector"), ".2e")] for name, r in d["results"].items()]
    note = (f"{d['users']}x{d['antennas']} {d['modulation']}, {d['channels']} channels x "
            f"{d['samples_per_channel_per_snr']} vectors ({d['symbols_per_snr']} symbols per SNR).")
    return ["detector", *[f"SER @ {s:g} dB" for s in snrs], "SNR at SER 1e-3", "gap to ML dB", "mults / vector"], \
        rows, [note]


def _mimo_online(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    d = data[0]
    base = d["baselines"]
    mmse = base["mmse"]["ser"]
    rows = [[name.upper() if name == "mmse" else "OAMPNet", "-", f"{b['ser']:.2e}", "-", "-"]
            for name, b in base.items()]
    for m in d["mmnet"]:
        name = "MMNet, frozen first-subcarrier copy" if m["phi"] == 0 else f"MMNet online, Phi = {m['phi']}"
        lo, hi = m["ci95"]
        rows.append([name, f"{m['iterations_per_channel']:.1f}", f"{m['ser']:.2e}", f"{lo:.2e} - {hi:.2e}",
                     f"{mmse / m['ser']:.3g}x" if m["ser"] else "-"])
    fresh = d.get("fresh")
    notes = [f"{d['users']}x{d['antennas']} {d['modulation']} at {d['snr_db']:g} dB on {d['channels']} stride-1 3GPP "
             f"UMa channels ({d['subcarriers']} adjacent subcarriers, {d['time_steps']} time step(s)), "
             f"{d['symbols']} symbols a point; Psi = {d['psi']} on the first subcarrier, then Phi steps per next "
             f"subcarrier (lr {d['lr']:g}, warm steps {d['next_lr']:g}, Adam's moments "
             f"{'afresh on every channel' if d.get('reset_adam') else 'carried'})."]
    if fresh:
        notes.append(f"Fresh per-channel training ({fresh['iterations']} iterations) on subcarriers "
                     f"{fresh['channels']}: SER {fresh['ser']:.2e}.")
    return ["detector", "iterations per channel", "SER", "95 % interval", "below MMSE"], rows, [" ".join(notes)]


def _streaming(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    grid = list(dict.fromkeys(g for d in data for g in d["grid"]))  # every point any file scored
    rows, notes = [], []
    for d in data:
        cell = {(r["upscaler"], r["setting"]): r for r in d["rows"]}
        for name in dict.fromkeys(r["upscaler"] for r in d["rows"]):
            first = cell[(name, d["grid"][0])]
            values = ["-" if (name, g) not in cell else f"{cell[(name, g)]['psnr']:.2f}" if name == "bicubic" else
                      f"{cell[(name, g)]['gain_bicubic']:+.2f}" for g in grid]
            ms = [cell[(name, g)]["ms"] for g in d["grid"]]
            rows.append([f"x{d['scale']}", name, _f(first["params"], ",d"), *values, f"{sum(ms) / len(ms):.1f}"])
        sources = ", ".join(s["name"] for s in d["sources"])
        notes.append(f"x{d['scale']}: {d['frames']} frames per source ({sources}); clips centre-cropped to at most "
                     f"{d['max_hr'][1]}x{d['max_hr'][0]} HR; x264 preset {d['preset']}. The bicubic row is its "
                     "PSNR-Y (dB); every other row its gain over bicubic on the same decoded LR (dB).")
    return ["scale", "upscaler", "params", *grid, "ms / frame"], rows, notes


def _live(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    rows, notes = [], []
    for d in data:
        cfg = d["config"]
        h, w = cfg["crop_hw"]
        for s in d["schemes"]:
            c = s["channels"][0]
            cdf = c["gain_cdf"]
            valid = s.get("valid")
            rows.append([f"{w}x{h}", s["scheme"], cfg.get("client_sr", "inline"),
                         _f(c["psnr_gain_db"], "+.3f") if valid else "invalid",
                         *[_f(cdf[q], "+.2f") for q in ("p10", "p50", "p90")], _f(c["model_kbps"], ".1f"),
                         _f(c["down_kbps"], ".0f"), str(c["updates"]), f"{s['server_cpu_per_video_s']:.2f}",
                         _f(s.get("real_time_fraction"), ".3f")])
        over = ", ".join(f"{k}={v}" for k, v in cfg.get("overrides") or []) or "defaults"
        text = (f"{w}x{h} HR ({w // 2}x{h // 2} LR): one live session per scheme, "
                f"{', '.join(Path(v).stem for v in cfg['videos'])} back to back, {cfg['seconds']:g} s, "
                f"{cfg['clients']} client(s) on loopback, client SR {cfg.get('client_sr', 'inline')}"
                + f"; trainer settings {over}")
        precisions = sorted({s["precision"] for s in d["schemes"] if "precision" in s})
        if precisions:
            text += f"; training steps in {' / '.join(precisions)}"
        if cfg.get("train_threads", 1) > 1:  # the worker's other torch threads are not in its thread CPU
            text += (f"; the server's worker ran {cfg['train_threads']} torch threads, so its CPU column counts "
                     "one of them: the whole process used " + ", ".join(
                         _f(s.get("process_cpu_per_video_s"), ".2f") for s in d["schemes"]) + " CPU-s/s")
        text += "."
        if text not in notes:  # runs of the same session say it once
            notes.append(text)
        missing = [n for n in cfg.get("schemes", []) if n not in {s["scheme"] for s in d["schemes"]}]
        if missing:  # the JSON is written after every session: a run stopped early keeps what it has
            elsewhere = {s["scheme"] for e in data if e is not d for s in e["schemes"]}
            notes.append(f"A run was stopped before these sessions: {', '.join(missing)}"
                         + ("; they ran in a run of their own." if set(missing) <= elsewhere else "."))
    notes.append("Gain: PSNR-Y of the client's mean MSE minus the base model's on the same decoded frames; "
                 "p10/p50/p90 of per-frame gains. A session whose server fell below 0.95 of real time is marked "
                 "invalid and its gain not given.")
    notes.append("Client SR: inline, the client upscales each frame as it plays, on the server's two cores; after, "
                 "it plays live without upscaling and its frames are upscaled after the session with the model it "
                 "held (a client with a device of its own).")
    return ["HR size", "scheme", "client SR", "gain dB", "p10", "p50", "p90", "model kbps", "down kbps", "updates",
            "server CPU s/s", "real time"], rows, [" ".join(notes)]


def _estimate(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    d = data[0]
    rows = [[r["input"], f"{r['lr_size'][0]}x{r['lr_size'][1]}", str(r["level"]), _f(r.get("prior_estimate_s"), ".1f"),
             f"{r['estimated_s']:.1f}", f"{r['actual_s']:.1f}", f"{r['ratio']:.2f}", "yes" if r["within"] else "no",
             _f(r.get("revised_s"), ".1f")] for r in d["rows"]]
    notes = [f"{d['frames']} frames of each input at level {d['level']} of the bundled x2 package, while a "
             f"background process kept {100 * d['load_share']:.0f} % of each of {d['load_workers']} cores busy; "
             f"within 30 % on {d['met']} of {d['inputs']} inputs. Estimate: what the run announced (a run expected to "
             "take 10 s or more says it from its own first frames, at least 2 and 1.5 s of them; a shorter one from a "
             "timing before its first frame); before the run: the figure timed before the first frame; revised: the "
             "figure it said once during the run when the two differed by a third."]
    return ["input", "LR size", "level", "before the run s", "estimate s", "took s", "took / estimate", "within 30 %",
            "revised s"], rows, notes


def _setup(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    d = data[0]
    goal = d.get("goal", {})
    rows = [[r["setup"], f"`{r['requirements']}`", f"{r['bytes'] / 1e6:.0f}", f"{r['seconds']:.0f}",
             str(r["distributions"]), "yes" if r["torch"] else "no"] for r in d["rows"]]
    notes = ["Each set-up made from nothing: a new venv, its requirements installed by pip with the cache off, "
             "then adasr (editable). The core runs the bundled packages with ONNX Runtime (`make run`, `adasr "
             "play`, `adasr upscale`); torch comes with the full set-up or `pip install 'adasr[torch]'`."]
    core = next((r for r in d["rows"] if r["setup"] == "core"), None)
    if core is not None and goal:
        met = core["bytes"] < goal["bytes"] and core["seconds"] < goal["seconds"]
        notes.append(f"Goal for the core: under {goal['bytes'] / 1e6:.0f} MB and {goal['seconds']:.0f} s: "
                     f"{'met' if met else 'missed'}.")
    if d.get("core_over_full"):
        notes[-1] += (f" Core / full: {d['core_over_full']['bytes']:.2f} of the bytes, "
                      f"{d['core_over_full']['seconds']:.2f} of the time.")
    return ["set-up", "requirements", "MB", "seconds", "distributions", "torch"], rows, notes


def _adapt(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    clips = list(dict.fromkeys(c["clip"] for d in data for c in d["clips"]))
    rows, notes = [], []
    for d in data:
        for r in d["rows"]:
            per: dict[str, Any] = {}
            for c in r["per_clip"]:  # a looping session scores a clip twice: the first pass is what is shown
                per.setdefault(c["clip"], c["gain_db"])
            rows.append([r["row"], _f(r["gain_db"], "+.3f"), *[_f(per.get(c), "+.2f") for c in clips],
                         _f(r["model_kbps"], ".1f"), str(r["updates"]), f"{r['train_cpu_per_video_s']:.2f}",
                         "yes" if r["feasible"] else "no"])
    cfg = data[0]["config"]
    h, w = cfg["crop_hw"]
    notes.append(f"The live trainer on a simulated clock (no training delay: an upper bound on the live run), {w}x{h} "
                 f"HR / {w // 2}x{h // 2} LR, {cfg['seconds']:g} s, {cfg['codec']} CRF {cfg['crf']}, base model "
                 f"{cfg['model']}" + (f"; {len(data)} runs on the same session, the same base scores." if len(data) > 1
                                      else "."))
    bf16 = [r["row"] for d in data for r in d["rows"]
            if r.get("precision") == "bf16" and "precision=" not in r["row"]]  # auto, resolved to bf16
    if bf16:  # rows from before the precision setting trained in float32
        notes.append("Training steps in bf16 (precision auto; float32 weights and updates) for: " + ", ".join(bf16)
                     + "; rows that name no precision and are not listed here ran fp32.")
    notes.append("Per-clip columns: the gain on that clip's first pass. `live`: training CPU within "
                 f"{data[0]['config']['cpu_budget']:g} core-second per video second.")
    if any(r.get("scheme") == "ceiling" for d in data for r in d["rows"]):
        notes.append("`ceiling:steps=N` is not a scheme: every parameter is trained for N steps on each segment "
                     "before that same segment is scored (not causal, nothing sent): the most content adaptation "
                     "of this model gives at that training per segment.")
    return ["setting", "gain dB", *[f"{c} dB" for c in clips], "model kbps", "updates", "train CPU s/s", "live"], \
        rows, notes


def _plays(d: dict[str, Any]) -> list[str]:
    plays = []
    for name, run in d["playback"].items():
        rate = (f", 1 frame in {'/'.join(map(str, run['rate_divs']))} shown, {run['thinned']} of {run['due']} left out"
                if any(d > 1 for d in run.get("rate_divs", [])) else "")
        plays.append(f"{name} {100 * run['deadlines_met']:.1f} % ({run['frames']} shown, {run['dropped']} dropped, "
                     f"levels {run['levels']}, {run.get('switches', 0)} switches{rate})")
    return plays


def _browser(data: list[dict[str, Any]]) -> tuple[list[str], Rows, list[str]]:
    d = data[0]
    pt = d["play_threads"]
    rows = []
    for t, per in (d.get("variants_by_threads") or {str(pt): d["variants"]}).items():
        for name, v in per.items():
            agree = v.get("page_vs_python") or {}
            rows.append([f"{name}, {t} thread(s)", *[f"{f:.1f} (x{r:.2f})" for f, r in
                                                    zip(v["fps"], v.get("speedup_over_plain", [1.0] * len(v["fps"])))],
                         " / ".join(f"{a['psnr_db']:.1f}" for a in agree.values()),
                         " / ".join(str(a["max_steps"]) for a in agree.values())])
    for t, ms_list in d["python_torch"].items():
        rows.append([f"torch float32 native, {t} thread(s)", *[f"{1000 / ms:.1f}" for ms in ms_list], "", ""])
    w, h = d["lr_size"]
    notes = [f"FPS per level at {w}x{h} -> {w * d['scale']}x{h * d['scale']} in headless Chromium (onnxruntime-web, "
             f"WASM), median of the timed frames, the variants interleaved in one page; (xN): speed over the plain "
             f"export in the same page. PSNR / max "
             f"steps: the page's output against the Python level's (float32, exact bicubic), smallest / largest "
             f"level. residual: the graph outputs the learned residual, the page adds the exact bicubic (JS); "
             f"-canvas: the canvas upscale instead; frozen: weights inside the graphs; int8: those quantized."]
    q = d.get("int8_quality")
    if q:
        notes.append(f"int8 PSNR loss against float32 (RGB PSNR against HR, {q['frames']} frames of the clip): "
                     + ", ".join(f"L{i} {x:.3f} dB" for i, x in enumerate(q["int8_loss_db"])) + ".")
    plays = _plays(d)
    notes.append(f"Deadlines met at {d['fps']:.0f} fps under a bursty in-page load ({d['load']['burstMs']} ms on / "
                 f"off, {pt} WASM threads; fastest variant: {d.get('fastest_variant')}): " + "; ".join(plays) + ".")
    for other in data[1:]:  # the same playbacks on another clip, at its own frame rate
        notes.append(f"The same on {Path(str(other['video'])).name} at its own {other['fps']:g} fps "
                     f"({other['lr_size'][0]}x{other['lr_size'][1]} LR, fastest variant: "
                     f"{other.get('fastest_variant')}): " + "; ".join(_plays(other)) + ".")
    levels = [f"L{i} ({p / 1000:.1f}K)" for i, p in enumerate(d["params"])]
    return ["export", *levels, "page vs Python dB", "max steps"], rows, notes


SECTIONS: tuple[Section, ...] = (
    Section("Protocol parity", "Bicubic through adasr's SR protocol (PSNR / SSIM on Y, border = scale) against "
            "the published bicubic rows: the protocol every other PSNR here is measured with.",
            ("protocol.json",), _protocol, "protocol"),
    Section("The bundled levels against the peers (clean)", "Each bundled package's fastest and best level "
            "against OpenCV's dnn_superres models, bicubic and adasr's own single models, on the same frames "
            "and threads.", ("peers-x2.json", "peers-x3.json", "peers-x4.json"), _peers, "peers"),
    Section("The bundled levels on codec-compressed input", "Each level of the codec-trained family (`-codec`) "
            "and of the clean family on LR that went through a real codec (x264 CRF 23 / 28 / 33 after an area or "
            "bicubic downscale) and on clean bicubic LR, against bicubic, Lanczos and OpenCV's peers on the same "
            "decoded frames of held-out clips (`adasr eval --degradation`).",
            ("streaming-x2.json", "streaming-x3.json", "streaming-x4.json"), _streaming, "streaming"),
    Section("Adaptivity", "adasr (one resident supernet, level switches) against Static (one level, reload on "
            "switch) and Assembled (every level resident) under the same background-load trace.",
            ("adaptivity.json",), _adaptivity, "adaptivity"),
    Section("Weight sharing", "The bytes of one supernet against the same sub-networks held as separate models.",
            ("memory.json",), _memory, "memory"),
    Section("int8 and backends", "Levels of the bundled x2 package through torch float32 / int8, the torch-free "
            "runtime of the core set-up (`runtime-onnx`) and ONNX Runtime float32 / int8 exports, with OpenCV's "
            "peers as points.", ("backends.json",), _backends, "backends"),
    Section("Model streaming", "SRVC-style model streaming (LR content + sparse model updates) against HR "
            "H.264 / H.265: rate and PSNR per CRF, and BD-rate against HR H.265 (negative: fewer bits at equal "
            "quality).", ("codec-bikes.json", "codec-bbb.json", "codec-vtest.json"), _codec, "codec"),
    Section("Model streaming at low rates", "The same streams on a lower CRF grid (LR 34-46, HR 40-51), toward the "
            "rates of SRVC's own figures: BD-rate against HR H.265 slow over that range (negative: fewer bits at "
            "equal quality), with the generic model and bicubic on the same LR stream for the share of content "
            "adaptation.", ("codec-bikes-low.json", "codec-bbb-low.json", "codec-vtest-low.json"), _codec_low,
            "codec-low"),
    Section("Live content adaptation (AMS)", "Thesis Table 4.1 in SR form at a real size: a live server and "
            "its client on loopback, each scheme's gain over the codec-trained generic model it starts from.",
            ("live.json", "live-tuned.json", "live-hold.json", "live-after.json", "live-720p.json"), _live, "live"),
    Section("What makes adaptation pay (ablation)", "The live trainer's schemes and settings on the same session, "
            "one change at a time, then the changes that paid combined, segments held back (`hold`), the "
            "training steps in bf16 and the ceiling (`adasr bench adapt`).",
            ("adapt.json", "adapt-ablation.json", "adapt-hold.json", "adapt-bf16.json", "adapt-ceiling.json"),
            _adapt, "adapt"),
    Section("Model reuse", "RECL (gating top-K + safety checker + the retraining scheduler) against no "
            "adaptation and retraining alone, on the same frames and compute, and the budget retraining alone needs "
            "to match RECL.", ("reuse.json", "reuse-b6.json", "reuse-b9.json"), _reuse, "reuse"),
    Section("MMNet (massive-MIMO detection)", "Symbol error rate of the classic detectors, exact ML (sphere "
            "decoder) and MMNet against SNR on i.i.d. Gaussian channels.", ("mimo.json",), _mimo, "mimo"),
    Section("MMNet online on 3GPP channels (thesis Fig. 3-11)", "MMNet trained online across adjacent subcarriers "
            "(Algorithm 1) against MMSE and OAMPNet on the same symbols, SER against the training iterations per "
            "channel.", ("mimo-online.json",), _mimo_online, "mimo-online"),
    Section("Honest time estimates", "`adasr upscale`'s announced estimate against the time the run took, under "
            "a steady background load (`adasr bench estimate`).", ("estimate.json",), _estimate, "estimate"),
    Section("The set-ups", "What `make run` installs (the core, torch-free) against what `make test` installs, "
            "each made from nothing on the same machine (`adasr bench setup`).", ("setup.json",), _setup, "setup"),
    Section("The browser as the edge device", "The bundled x2 levels in headless Chromium's WASM backend "
            "(onnxruntime-web) as the plain export and its speed variants (residual-only graphs with the upscale in "
            "the page, frozen weights, int8), side by side with torch on the same machine, and the page's deadlines "
            "under a bursty in-page load.", ("browser.json", "browser-vtest.json"), _browser, "browser"),
)


def _load(path: Path) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise InputError(f"{path} is larger than {MAX_JSON_BYTES >> 20} MiB")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: a bench result is a JSON object")
    return data


def _table(header: Sequence[str], rows: Rows) -> list[str]:
    cells = [list(header), *rows]
    lines = ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in cells]
    lines.insert(1, "|" + "---|" * len(header))
    return lines


#: A result whose provenance shows a 1-minute load average above this many runnable tasks per core is
#: marked on the page: a bench's own threads and load workers stay below it; a machine running several
#: benches at once does not (results once came from load averages of 20-28 on 2 cores).
LOADED_PER_CORE = 3


def _provenance(name: str, data: dict[str, Any]) -> str:
    p = data.get("provenance")
    if not isinstance(p, dict):
        return f"- `{name}`: no provenance recorded (written before benches stamped their JSON)."
    m = p.get("machine", {})
    load = m.get("loadavg_1m")
    where = (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('torch_threads', '?')} torch thread(s), "
             f"torch {m.get('torch', '?')}" + ("" if load is None else f", 1-minute load average {load:g}"))
    cores = m.get("cores")
    loaded = (isinstance(load, (int, float)) and isinstance(cores, int) and cores > 0
              and load > LOADED_PER_CORE * cores)
    warn = (f" **Measured on a loaded machine** (load average above {LOADED_PER_CORE} per core): its timings "
            "and anything paced by them are not those of a quiet machine; rerun it." if loaded else "")
    return f"- `{name}`: `{p.get('command', '?')}` on {where}; {p.get('date', '?')}.{warn}"


def _section(section: Section, folder: Path) -> list[str]:
    lines = [f"## {section.title}", "", section.claim, ""]
    present = [(name, folder / name) for name in section.files if (folder / name).is_file()]
    missing = [name for name in section.files if not (folder / name).is_file()]
    if not present:
        return lines + [f"Not measured in this regeneration: no {', '.join(section.files)} "
                        f"(`scripts/results_benches.sh {section.bench}` writes it).", ""]
    data = [_load(path) for _, path in present]
    try:
        header, rows, notes = section.render(data)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InputError(f"{', '.join(n for n, _ in present)}: not a result this report knows ({exc!r})") from None
    lines += _table(header, rows) + [""]
    lines += [f"{n}" for n in notes] + ([""] if notes else [])
    if missing:
        lines += [f"Not measured in this regeneration: {', '.join(missing)}.", ""]
    lines += ["Command, machine and date:"] + [_provenance(name, d) for (name, _), d in zip(present, data)] + [""]
    return lines


HEAD = """# Results

Every headline figure of adasr, one table per claim, generated by `adasr bench report` (or
`make results`) from the JSON the benches wrote, stored in docs/results/. Do not edit this file:
rerun a bench (`scripts/results_benches.sh NAME` runs each with the short settings used here)
and regenerate. The history of how each figure was reached, with the longer runs, is in
docs/journal/.

Protocol, stated once: PSNR and SSIM on Y (BT.601), border = scale, uint8 output, LR by MATLAB
bicubic (`imresize`), Set5 / Set14 as published. Speeds are wall-clock or CPU time on the machine
each section names; a load average above the core count means the machine was shared while the
bench ran, so compare speeds within one table (the competitors ran side by side), not across
tables or machines.
"""


def render_results(folder: str | os.PathLike[str], sections: Sequence[Section] = SECTIONS) -> str:
    """The results page (markdown) from the JSON files in `folder`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"no results folder {folder}")
    lines = [HEAD]
    for section in sections:
        lines += _section(section, folder)
    return "\n".join(lines).rstrip("\n") + "\n"
