"""`adasr bench reuse`: RECL model reuse against its foils on emulated concurrent sessions.

Sessions are made from real content: segments of the shared clips (vtest, bikes, megamind,
bigbuckbunny) and slow pans over SunHays80 photos, played back to back; every kind of scene appears
in `recur` segments (default two), in other sessions and at other times where the plan allows
(scenes recur, as driving routes do in the thesis), but never the same segment twice. All sessions
run concurrently, window by window; in each window every session sends its labelled frames (the
first half of the window's span) to one `adasr.reuse.Controller`, and the client's model is scored
on held-out frames from the second half (the frames it would really play). Every scheme gets the
same compute per window: `budget` micro-windows per session (each `steps` sparse Adam steps), shared
among the sessions' jobs.

Schemes (same frames, same budget, one process):

* ``none`` - the generic model (the bundled package level), no adaptation;
* ``retrain`` - retrain-only, no zoo, round-robin sharing (AMS);
* ``exhaustive`` - the zoo with every expert tested by the safety checker (oracle selection;
  its selection cost is reported, not charged);
* ``autoencoder`` - the zoo with ODIN's autoencoder-embedding selector (nearest expert);
* ``recl`` - the zoo with the gating network's top-K, safety checker, Algorithm 4;
* ``retrain-inband`` / ``retrain-outofband`` - retrain-only under Algorithm 4 and under Ekya-style
  profiling (the scheduler comparison, against ``retrain``'s round robin).

Time is counted in micro-windows (one micro-window = one second of the server's compute): a
window lasts `budget * sessions` micro-windows, the client's model may change after each (when a
job's model beats it on the labelled frames), and its PSNR is integrated over the window.
Reported: mean PSNR gain over the generic model; responsiveness after a scene change (micro-windows
until the held-out PSNR is within 0.1 dB of what the window finally reaches); gating quality
(best of the top-K vs the zoo's true best, as K grows); zoo size and reuse rate over time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adasr.errors import ConfigError, InputError
from adasr.timing import provenance

__all__ = ["CLIPS", "PHOTOS", "ReuseBenchConfig", "SCHEMES", "SchemeResult", "Window", "build_sessions", "plot",
           "run_reuse_bench", "run_scheme", "session_plan", "summary_lines"]

SCHEMES = ("none", "retrain", "exhaustive", "autoencoder", "recl", "retrain-inband", "retrain-outofband")
CLIPS = ("vtest_768x576.avi", "bikes_640x272.mp4", "megamind_720x528.avi", "bigbuckbunny_720p.mp4")
PHOTOS = ("abbey_sun_asztnlqhlrvirneh.jpg", "badlands_sun_bvwwfrhtvupdxldb.jpg",
          "aqueduct_sun_ancegghzusmmvzjn.jpg", "barn_sun_btulbiaoilnxcseh.jpg")


@dataclass(frozen=True)
class ReuseBenchConfig:
    sessions: int = 3
    windows: int = 12  # per session
    scene_windows: int = 3  # windows per segment (a scene lasts this long)
    recur: int = 2  # segments each kind of scene plays (its first and recur - 1 recurrences)
    span: int = 12  # source frames per window: labelled from the first half, held-out from the second
    labelled: int = 3
    heldout: int = 3
    lr_w: int = 160
    lr_h: int = 90
    level: int = 2  # package level the experts serve
    budget: int = 3  # micro-windows per session per window
    k: int = 5
    steps: int = 4
    lr: float = 5e-4
    sparse: float = 0.05
    alpha: float = 0.05
    gamma: int = 2
    eta: int = 1
    q: int = 24
    memory: int = 32
    pan_px: int = 4  # HR pixels a photo pan moves per frame
    topk_max: int = 10
    profile: int = 1  # Ekya-style profiling micro-windows per job
    schemes: tuple[str, ...] = SCHEMES
    seed: int = 0
    # LR as streams carry it: each window's frames (a moving clip) through one codec setting,
    # e.g. "h264:crf=28,kernel=area" (adasr.data.degrade); None: clean MATLAB-bicubic LR
    degradation: str | None = None

    def __post_init__(self) -> None:
        self.setting()  # a bad --degradation is refused here, before any content is read
        if not 2 <= self.sessions <= 8:
            raise ConfigError(f"--sessions must be in [2, 8], got {self.sessions}")
        if not 1 <= self.scene_windows <= self.windows <= 200 or self.windows % self.scene_windows:
            raise ConfigError("--windows must be a multiple of --scene-windows, at most 200")
        if self.labelled < 1 or self.heldout < 1 or 2 * max(self.labelled, self.heldout) > self.span:
            raise ConfigError("labelled and held-out frames must each fit in half a window's span")
        if not 16 <= self.lr_w <= 640 or not 16 <= self.lr_h <= 360:
            raise ConfigError("LR frames must be between 16x16 and 640x360")
        if not 1 <= self.budget <= 100:
            raise ConfigError(f"--budget must be in [1, 100], got {self.budget}")
        if not 2 <= self.recur <= 6:
            raise ConfigError(f"--recur must be in [2, 6], got {self.recur}")
        kinds = -(-self.sessions * (self.windows // self.scene_windows) // self.recur)
        if kinds > len(CLIPS) + len(PHOTOS):
            raise ConfigError(f"{self.sessions} sessions of {self.windows // self.scene_windows} segments need {kinds} "
                              f"kinds of scene at --recur {self.recur}; there are {len(CLIPS) + len(PHOTOS)}: use "
                              "fewer windows or sessions, or a higher --recur")
        for s in self.schemes:
            if s not in SCHEMES:
                raise ConfigError(f"unknown scheme {s!r}; choose from {', '.join(SCHEMES)}")
            _controller_config(self, s)  # the controller's own checks, before any content is read

    def setting(self):
        """The one codec setting of `degradation` (`adasr.data.degrade.Setting`), None for clean LR."""
        if self.degradation is None:
            return None
        from adasr.data.degrade import Degradation

        points = Degradation.parse(self.degradation).settings()
        if len(points) != 1:
            raise ConfigError(f"--degradation must name one setting (one codec, one CRF, one kernel), got "
                              f"{self.degradation!r}")
        return points[0]


@dataclass
class Window:
    kind: str
    segment: str
    new_scene: bool
    lr: np.ndarray  # labelled
    hr: np.ndarray
    lr_eval: np.ndarray  # held-out
    hr_eval: np.ndarray


@dataclass
class SchemeResult:
    name: str
    gain_db: float = 0.0  # mean over session-windows of the time-averaged held-out gain
    per_window_gain: list[list[float]] = field(default_factory=list)  # [window][session]
    respond: list[float] = field(default_factory=list)  # micro-windows, windows starting a scene
    final_gain_db: float = 0.0
    zoo: list[int] = field(default_factory=list)  # zoo size after each window
    reuse_rate: list[float] = field(default_factory=list)  # cumulative, after each window
    topk: dict[str, float] = field(default_factory=dict)  # K -> mean (best of top-K - zoo best), dB
    topk_hit: dict[str, float] = field(default_factory=dict)  # K -> share of selections with the best in top-K
    stats: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# -- content ------------------------------------------------------------------------------------

def _crop_hr(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    y0, x0 = (frame.shape[0] - h) // 2, (frame.shape[1] - w) // 2
    return frame[y0:y0 + h, x0:x0 + w]


def _clip_frames(path: Path, starts: Sequence[int], length: int, w: int, h: int) -> list[np.ndarray]:
    from adasr.video import read_frames

    want = {s + i for s in starts for i in range(length)}
    frames = {}
    for i, f in enumerate(read_frames(path, max_frames=max(want) + 1)):
        if i in want:
            frames[i] = np.ascontiguousarray(_crop_hr(f, w, h))
    if len(frames) != len(want):
        raise InputError(f"{path}: has fewer than {max(want) + 1} frames")
    return [np.stack([frames[s + i] for i in range(length)]) for s in starts]


def _pan_frames(img: np.ndarray, row: float, length: int, w: int, h: int, px: int, x_start: float) -> np.ndarray:
    H, W = img.shape[:2]
    if W < w + px * length or H < h:
        raise InputError(f"photo of {W}x{H} is too small for a {length}-frame pan of {w}x{h}")
    y = int(row * (H - h))
    x0 = int(x_start * (W - w - px * length))
    return np.stack([img[y:y + h, x0 + i * px:x0 + i * px + w] for i in range(length)])


def _windows_of(kind: str, seg_name: str, frames: np.ndarray, cfg: ReuseBenchConfig, scale: int) -> list[Window]:
    from adasr.data.datasets import make_lr
    from adasr.data.degrade import degrade_clip

    out = []
    half = cfg.span // 2
    lab = np.linspace(0, half - 1, cfg.labelled).round().astype(int)
    ev = half + np.linspace(0, half - 1, cfg.heldout).round().astype(int)
    setting = cfg.setting()
    for w in range(cfg.scene_windows):
        chunk = frames[w * cfg.span:(w + 1) * cfg.span]
        hr, hr_eval = chunk[lab], chunk[ev]
        if setting is None:
            lr = np.stack([make_lr(f, scale) for f in hr])
            lr_eval = np.stack([make_lr(f, scale) for f in hr_eval])
        else:  # the whole window is one clip through the codec (P/B frames), then the same frames are kept
            lr_all = degrade_clip(list(chunk), scale, setting)
            lr, lr_eval = lr_all[lab], lr_all[ev]
        out.append(Window(kind, seg_name, w == 0, lr, hr, lr_eval, hr_eval))
    return out


def session_plan(sessions: int, slots: int, recur: int = 2) -> list[list[int]]:
    """Kind index of each session's segment slots: every kind `recur` times (the last kinds fewer
    when the positions do not divide), at other sessions and times where possible.

    Positions p = session * slots + slot; with n = ceil(P / recur) kinds, the first n positions play
    kinds 0..n-1 and each further run of n replays them cyclically shifted by a multiple of one
    shift: the shift that puts the most pairs of a kind's appearances in another session *and*
    another slot (recur 2: the plan of the runs on the results page)."""
    total = sessions * slots
    n = -(-total // recur)

    def place(shift: int) -> list[int]:
        return [(p % n + (p // n) * shift) % n for p in range(total)]

    def good(kinds: list[int]) -> int:
        seen: dict[int, list[int]] = {}
        for p, k in enumerate(kinds):
            seen.setdefault(k, []).append(p)
        return sum(1 for ps in seen.values() for i, a in enumerate(ps) for b in ps[i + 1:]
                   if a // slots != b // slots and a % slots != b % slots)

    best = max(range(n), key=lambda sh: (good(place(sh)), -sh))
    kinds = place(best)
    return [kinds[s * slots:(s + 1) * slots] for s in range(sessions)]


def build_sessions(cfg: ReuseBenchConfig, data: Path, scale: int = 2,
                   on_progress: Callable[[str], None] | None = None) -> tuple[list[list[Window]], list[dict]]:
    """Sessions (lists of windows), each kind of scene in `recur` segments, never a segment twice."""
    from adasr.images import read_image

    w, h = cfg.lr_w * scale, cfg.lr_h * scale
    slots = cfg.windows // cfg.scene_windows
    seg_len = cfg.span * cfg.scene_windows
    kinds = [("clip", c) for c in CLIPS] + [("photo", p) for p in PHOTOS]
    plan = [[kinds[i] for i in row] for row in session_plan(cfg.sessions, slots, cfg.recur)]
    uses: dict[tuple[str, str], int] = {}
    for row in plan:
        for k in row:
            uses[k] = uses.get(k, 0) + 1
    segments: dict[tuple[str, str], list[np.ndarray]] = {}
    for (typ, name), n in uses.items():
        if on_progress:
            on_progress(f"content: {n} segment(s) of {name}")
        if typ == "clip":
            from adasr.video import probe

            path = data / "video" / name
            if not path.is_file():
                raise InputError(f"clip not found: {path}")
            total = probe(path).frame_count or 0
            room = total // seg_len
            if room < n:
                raise InputError(f"{name}: {total} frames hold {room} segments of {seg_len}; {n} needed")
            starts = [int(i * (room // n)) * seg_len for i in range(n)]  # spread over the clip
            segments[(typ, name)] = _clip_frames(path, starts, seg_len, w, h)
        else:
            path = data / "train" / "SunHays80" / name
            if not path.is_file():
                raise InputError(f"photo not found: {path}")
            img = read_image(path).rgb
            segments[(typ, name)] = [_pan_frames(img, (i + 0.5) / n, seg_len, w, h, cfg.pan_px, i / max(1, n - 1))
                                     for i in range(n)]
    taken: dict[tuple[str, str], int] = {}
    sessions, layout = [], []
    for s, row in enumerate(plan):
        wins = []
        for j, k in enumerate(row):
            i = taken.get(k, 0)
            taken[k] = i + 1
            seg = f"{Path(k[1]).stem}#{i}"
            wins.extend(_windows_of(Path(k[1]).stem, seg, segments[k][i], cfg, scale))
            layout.append({"session": s, "slot": j, "segment": seg})
        sessions.append(wins)
    return sessions, layout


# -- one scheme ---------------------------------------------------------------------------------

def _controller_config(cfg: ReuseBenchConfig, scheme: str):
    from adasr.reuse.controller import ReuseConfig

    common = dict(level=cfg.level, k=cfg.k, profile=cfg.profile, alpha=cfg.alpha, gamma=cfg.gamma, eta=cfg.eta, q=cfg.q,
                  memory=cfg.memory, sparse=cfg.sparse, steps=cfg.steps, lr=cfg.lr, seed=cfg.seed)
    table = {
        "none": dict(reuse=False, retrain=False),
        "retrain": dict(reuse=False, scheduler="roundrobin"),
        "retrain-inband": dict(reuse=False, scheduler="inband"),
        "retrain-outofband": dict(reuse=False, scheduler="outofband"),
        "exhaustive": dict(selector="exhaustive", k=1000),
        "autoencoder": dict(selector="autoencoder"),
        "recl": dict(selector="gating"),
    }
    return ReuseConfig(**{**common, **table[scheme]})


def _respond(curve: Sequence[float], tol: float = 0.1) -> int:
    final = curve[-1]
    return next(i for i, v in enumerate(curve) if v >= final - tol)


def run_scheme(scheme: str, sessions: list[list[Window]], cfg: ReuseBenchConfig, base,
               on_progress: Callable[[str], None] | None = None) -> SchemeResult:
    from adasr.reuse.controller import Controller
    from adasr.reuse.quality import ExpertEvaluator, to_tensor

    started = time.process_time()
    ctl = Controller(_controller_config(cfg, scheme), base)
    judge = ExpertEvaluator(base, ctl.levels)  # held-out scoring, not charged to any scheme
    res = SchemeResult(scheme)
    names = [f"s{i}" for i in range(len(sessions))]
    steps = cfg.budget * len(sessions)
    gaps: dict[int, list[float]] = {k: [] for k in range(1, cfg.topk_max + 1)}
    hits: dict[int, list[float]] = {k: [] for k in range(1, cfg.topk_max + 1)}
    for w in range(cfg.windows):
        evals = {}
        curves: dict[str, list[float]] = {}
        base_psnr = {}
        for name, wins in zip(names, sessions):
            win = wins[w]
            x, y = to_tensor(win.lr_eval), to_tensor(win.hr_eval)
            evals[name] = (x, y)
            base_psnr[name] = float(judge.psnr(base.vector, x, y).mean())
            d = ctl.on_window(name, win.lr, win.hr, now=float(w))
            if scheme == "recl" and len(ctl.zoo) and d.verdict is not None:
                true = {e.id: float(judge.psnr(e.vector(base), to_tensor(win.lr), to_tensor(win.hr)).mean())
                        for e in ctl.zoo}
                best = max(true.values())
                ranked = ctl.selector.select(win.lr, cfg.topk_max)
                for k in gaps:
                    top = ranked[:k]
                    gaps[k].append(max(true[e] for e in top) - best)
                    hits[k].append(float(max(true, key=true.get) in top))
            curves[name] = [float(judge.psnr(d.vector, x, y).mean())] * (steps + 1)

        def on_update(channel: str, t: int, vector: torch.Tensor, evals=evals, curves=curves) -> None:
            x, y = evals[channel]
            v = float(judge.psnr(vector, x, y).mean())
            c = curves[channel]
            c[t + 1:] = [v] * (len(c) - t - 1)

        if ctl.cfg.retrain:
            ctl.retrain(steps, on_update)
        row = []
        for name, wins in zip(names, sessions):
            c = np.array(curves[name]) - base_psnr[name]
            row.append(float(c[:-1].mean()))  # the model held during each micro-window
            if wins[w].new_scene and w > 0:
                res.respond.append(float(_respond(curves[name])))
        res.per_window_gain.append(row)
        st = ctl.stats()
        res.zoo.append(st["zoo"])
        res.reuse_rate.append(st["reuse_rate"])
        if on_progress:
            on_progress(f"{scheme}: window {w + 1}/{cfg.windows}, gain {np.mean(row):+.3f} dB, zoo {st['zoo']}, "
                        f"reuse {st['reuse_rate']:.2f}")
    allg = np.array(res.per_window_gain)
    res.gain_db = float(allg.mean())
    res.final_gain_db = float(allg[-cfg.scene_windows:].mean())
    res.topk = {str(k): float(np.mean(v)) for k, v in gaps.items() if v}
    res.topk_hit = {str(k): float(np.mean(v)) for k, v in hits.items() if v}
    res.stats = ctl.stats()
    res.stats.pop("channels", None)
    res.seconds = time.process_time() - started
    return res


def run_reuse_bench(cfg: ReuseBenchConfig, data: Path, on_progress: Callable[[str], None] | None = None,
                    on_scheme: Callable[[dict], None] | None = None) -> dict:
    """Every scheme of `cfg` on the same sessions; `on_scheme(partial result)` after each one."""
    from adasr.reuse.zoo import BaseModel

    torch.manual_seed(cfg.seed)
    base = BaseModel.from_package()
    sessions, layout = build_sessions(cfg, data, base.scale, on_progress)
    results = {}
    for scheme in cfg.schemes:
        results[scheme] = run_scheme(scheme, sessions, replace(cfg), base, on_progress)
        if on_scheme:
            on_scheme(_result(cfg, base, layout, results))
    return _result(cfg, base, layout, results)


def _result(cfg: ReuseBenchConfig, base, layout: list, results: dict) -> dict:
    out = {"config": asdict(cfg), "level": base.levels[cfg.level].id, "base": base.name,
           "micro_windows_per_window": cfg.budget * cfg.sessions, "layout": layout,
           "schemes": {k: asdict(v) for k, v in results.items()}, "provenance": provenance()}
    for v in out["schemes"].values():
        r = np.array(v["respond"]) if v["respond"] else np.zeros(0)
        v["respond_mean"] = float(r.mean()) if r.size else None
        v["respond_p90"] = float(np.percentile(r, 90)) if r.size else None
    return out


def summary_lines(result: dict) -> list[str]:
    cfg = result["config"]
    lines = [f"{cfg['sessions']} sessions x {cfg['windows']} windows, level {result['level']}, "
             f"{result['micro_windows_per_window']} micro-windows ({cfg['steps']} steps each) per window",
             f"{'scheme':<18} {'gain dB':>8} {'last scene':>10} {'respond':>8} {'p90':>5} {'zoo':>4} "
             f"{'reuse':>6} {'cpu s':>6}"]
    for name, v in result["schemes"].items():
        rm = "-" if v["respond_mean"] is None else f"{v['respond_mean']:.2f}"
        rp = "-" if v["respond_p90"] is None else f"{v['respond_p90']:.1f}"
        lines.append(f"{name:<18} {v['gain_db']:>+8.3f} {v['final_gain_db']:>+10.3f} {rm:>8} {rp:>5} "
                     f"{v['stats'].get('zoo', 0):>4} {v['stats'].get('reuse_rate', 0):>6.2f} {v['seconds']:>6.0f}")
    recl = result["schemes"].get("recl")
    if recl and recl["topk"]:
        ks = sorted(recl["topk"], key=int)
        lines.append("gating top-K, best of top-K minus the zoo's best (dB): "
                     + ", ".join(f"K={k}: {recl['topk'][k]:+.3f} (hit {recl['topk_hit'][k]:.2f})" for k in ks))
    return lines


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from adasr._atomic import atomic_path

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, v in result["schemes"].items():
        g = np.array(v["per_window_gain"]).mean(1)
        axes[0].plot(range(1, len(g) + 1), g, "o-", ms=3, label=name)
        if v["respond"]:
            r = np.sort(v["respond"])
            axes[1].step(r, np.arange(1, len(r) + 1) / len(r), where="post", label=name)
        if v["stats"].get("zoo") or name in ("recl", "exhaustive", "autoencoder"):
            axes[2].plot(range(1, len(v["zoo"]) + 1), v["zoo"], "o-", ms=3, label=f"{name} zoo")
    axes[0].set(xlabel="window", ylabel="PSNR gain over generic (dB)", title="gain per window (mean of sessions)")
    axes[1].set(xlabel="micro-windows after a scene change", ylabel="CDF", title="time to within 0.1 dB of final")
    axes[2].set(xlabel="window", ylabel="experts", title="zoo size")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a panel with nothing to show (no scene change answered) has none
            ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)
