"""`adasr search`: from a trained supernet file to a deployable, profiled package.

The workflow above the search, the package and the runtime's profiler (it uses all three, so it
sits above them; `adasr.search` itself never writes a package).

Steps (each reported through `on_progress`): a fast evaluator on validation crops; a latency
look-up table timed on this device (or an analytic MAC model); the family search (DySR or
Dynamic-OFA); the package written; every level measured at each load (real background
load); the look-up table's prediction error against those measurements; optionally a quality
predictor trained and ranked (Kendall tau) on held-out configs; a PSNR-vs-FPS picture with the
baselines measured the same way.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adasr._options import check_hw, options_or_default
from adasr.errors import ConfigError
from adasr.family import load_name
from adasr.search.protocols import Progress

if TYPE_CHECKING:
    from adasr.family import Family
    from adasr.nn.supernet import SuperNet
    from adasr.package import Package

__all__ = ["SearchOptions", "run_search"]


def _baseline_points(paths: Sequence[Path], evaluator, lr_hw, scale: int, repeats: int,
                     threads: int | None) -> list[dict]:
    from adasr.modelfile import load_model
    from adasr.nn.registry import build_model
    from adasr.timing import measure_latency

    models = [("bicubic", build_model("bicubic", scale=scale))]
    for path in paths:
        model, spec = load_model(path)
        if spec.scale != scale:
            raise ConfigError(f"baseline {path} is x{spec.scale}, the supernet is x{scale}")
        models.append((spec.arch if path.stem == "model" else path.stem, model))
    points = []
    for label, model in models:
        sample = measure_latency(model, None, lr_hw, repeats=repeats, threads=threads)
        points.append({"label": label, "fps": sample.fps, "psnr": evaluator.score_module(model),
                       "seconds": sample.median_s})
    return points


@dataclass(frozen=True)
class SearchOptions:
    """What `run_search` does (see the module doc for the steps).

    strategy: "ofa" | "dysr" (`params`: its NAME=VALUE settings). val: the validation set of the
    fast evaluator (`crops` crops). cost: "table" (a latency look-up table timed here), "macs" or
    "measured". lr_hw: (H, W) the levels are timed and profiled at. loads: the background CPU
    load shares every level is measured under. repeats / threads: frames per measurement
    (median) and torch threads. predictor_samples: train the quality predictor on N configs and
    report its Kendall tau (0: skip). baselines / plot: model files placed on a PSNR-vs-FPS PNG.
    floor_bicubic: keep only levels above bicubic. trim: ship only the ops the levels use.
    profiles_from: a package whose device profiles the new one carries over instead of profiling
    here (same configs, so the same latencies). own: config id -> `SubNet` with that config's own
    weights (a sub-network trained alone, or a level of the `--levels-from` package that has
    them): scored with those weights, and shipped as a level with its own weights where kept.
    """

    strategy: str = "ofa"
    val: str = "Set5"
    cost: str = "table"
    lr_hw: tuple[int, int] = (180, 320)
    loads: tuple[float, ...] = (0.0, 0.5)
    repeats: int = 20
    rounds: int = 1
    threads: int | None = None
    seed: int = 0
    crops: int = 8
    predictor_samples: int = 0
    baselines: tuple[Path, ...] = ()
    plot: Path | None = None
    params: dict[str, Any] | None = None
    floor_bicubic: bool = True
    trim: bool = True
    profiles_from: Package | None = None
    own: Mapping[str, Any] | None = None
    # Score levels on streaming input: the validation images through this adasr.data.degrade spec
    # (e.g. "h264:crf=28,kernel=area+bicubic,variants=2,frames=2"); None = the clean protocol.
    degradation: str | None = None
    # Drop a level whose score is less than this many dB above the next faster level kept (0: keep
    # every level no other level dominates): a ladder whose every step is a real step in quality.
    min_step: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.min_step, (int, float)) and 0.0 <= self.min_step <= 10.0):
            raise ConfigError(f"min_step must be between 0 and 10 dB, got {self.min_step!r}")
        if self.degradation is not None:
            from adasr.data.degrade import Degradation

            object.__setattr__(self, "degradation", Degradation.parse(self.degradation).spec)
        if self.cost not in ("table", "macs", "measured"):
            raise ConfigError(f"--cost must be table, macs or measured, got {self.cost!r}")
        object.__setattr__(self, "lr_hw", check_hw(self.lr_hw, "lr_hw"))
        object.__setattr__(self, "loads", tuple(self.loads))
        object.__setattr__(self, "baselines", tuple(Path(b) for b in self.baselines))


def run_search(model_path: Path, out: Path, options: SearchOptions | None = None, *,
               on_progress: Progress | None = None) -> dict[str, Any]:
    """Search, package and profile (see the module doc). Returns the report (JSON-ready)."""
    opts = options_or_default(SearchOptions, options, "run_search")
    strategy, val, cost, lr_hw, loads = opts.strategy, opts.val, opts.cost, opts.lr_hw, opts.loads
    repeats, threads, seed, crops, predictor_samples = opts.repeats, opts.threads, opts.seed, opts.crops, \
        opts.predictor_samples
    baselines, plot, params, floor_bicubic, trim = opts.baselines, opts.plot, opts.params, opts.floor_bicubic, \
        opts.trim
    profiles_from = opts.profiles_from
    from adasr.data.datasets import load_image_pairs
    from adasr.modelfile import load_model
    from adasr.package import save_package
    from adasr.paths import benchmark_dir
    from adasr.search.family_search import check_strategy, search_family
    from adasr.search.latency import MacsCostModel, MeasuredCostModel, build_latency_table, median_abs_error
    from adasr.search.quality import FastEvaluator
    from adasr.timing import torch_threads

    check_strategy(strategy, params or {})  # before seconds of loading and timing
    progress = on_progress or (lambda stage, done, total: None)
    from adasr.package import is_package_path, load_package

    if is_package_path(model_path):  # a package: its supernet (its own-weights levels come via `own`)
        net = load_package(model_path).supernet
    else:
        net, spec = load_model(model_path)
        if not hasattr(net, "space"):
            raise ConfigError(f"{model_path} is a {spec.arch!r} model, not a supernet (train one with --supernet)")
    space = net.space
    own = dict(opts.own or {})
    for cid, module in own.items():
        if getattr(module, "config", None) is None or module.config.id != cid:
            raise ConfigError(f"own weights for {cid} are not a sub-network of that config")
        space.validate(module.config)
    report: dict[str, Any] = {"model": str(model_path), "strategy": strategy, "cost": cost, "lr_hw": list(lr_hw)}
    started = time.perf_counter()
    with torch_threads(threads):
        if opts.degradation is None:
            val_pairs = load_image_pairs(benchmark_dir(val), space.scale)
        else:
            from adasr.data.degrade import Degradation, degraded_pairs

            val_pairs = degraded_pairs([benchmark_dir(val)], space.scale, Degradation.parse(opts.degradation),
                                       seed=seed)
            report["degradation"] = opts.degradation
        evaluator = FastEvaluator(net, val_pairs, space.scale, crops=crops, seed=seed, own=own)
        table = None
        if cost == "table":
            table = build_latency_table(supernet=net, lr_hw=lr_hw, repeats=5, threads=threads, on_progress=progress)
            cost_model = table.cost_model(lr_hw, 0.0)
        elif cost == "macs":
            cost_model = MacsCostModel(lr_hw)
        elif cost == "measured":
            cost_model = MeasuredCostModel(net, lr_hw)
        else:
            raise ConfigError(f"--cost must be table, macs or measured, got {cost!r}")
        report["table_seconds"] = round(time.perf_counter() - started, 1)
        search_started = time.perf_counter()
        family = search_family(net, space, evaluator, cost_model, strategy, seed=seed, lr_hw=lr_hw,
                               on_progress=progress, **(params or {}))
        report["search_seconds"] = round(time.perf_counter() - search_started, 1)
        report["evaluations"] = evaluator.evaluations
        if floor_bicubic:
            family = _above_bicubic(family, evaluator, report)
        if profiles_from is not None:  # same configs, same latencies: the source's predictions, and so its order
            family = _same_latencies(family, profiles_from)
        from adasr.nn.supernet import trim_supernet

        def shipped(fam: Family) -> SuperNet:  # the supernet the package holds: only the ops its levels use
            return trim_supernet(net, fam.configs) if trim else net

        package = save_package(out, shipped(family), family, info={"source_model": Path(model_path).name,
                                                                    "strategy": strategy, "cost": cost,
                                                                    "trimmed": trim}, overwrite=True,
                               own=_own_of(own, family))
        if profiles_from is not None:  # same configs, so the same latencies: no profiling here
            key = _copy_profiles(profiles_from, package, lr_hw, threads)
            package = _drop_dominated(package, out, shipped, report, key, opts.min_step)
        else:
            package, key = _profile_here(package, out, shipped, report, loads=loads, repeats=repeats, threads=threads,
                                         lr_hw=lr_hw, progress=progress, rounds=opts.rounds, min_step=opts.min_step)
        family = package.family_for(key)
        report["device"] = key
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
        idle = load_name(0.0)
        measured = {lv.config.id: lv.seconds(idle) for lv in family}
        if table is not None:
            report["table_median_abs_error_s"] = median_abs_error(cost_model, family.configs, measured)
            report["table_median_rel_error"] = median_abs_error(cost_model, family.configs, measured, relative=True)
        if predictor_samples:
            report["predictor"] = _predictor_tau(evaluator, space, predictor_samples, seed, progress)
        points = (_baseline_points(list(baselines), evaluator, lr_hw, space.scale, repeats, threads)
                  if plot or baselines else [])
    report["baselines"] = points
    report["levels"] = [{"config": lv.config.id, "psnr": lv.psnr, "params": lv.params, "macs": lv.macs,
                         "own_weights": package.has_own(lv),
                         "fps": {name: 1.0 / s for name, s in (lv.measured_s or {}).items()},
                         "predicted_fps_idle": 1.0 / lv.latency_s[idle] if idle in lv.latency_s else None}
                        for lv in family]
    if plot is not None:
        from adasr.search.plot import plot_family

        plot_family(plot, family, points, title=f"{Path(out).name}: PSNR on {val} crops vs FPS at "
                    f"{lr_hw[1]}x{lr_hw[0]} LR ({key})")
    return report


def _profile_here(package, out, shipped, report, *, loads, repeats, threads, lr_hw, progress, rounds=1,
                  min_step=0.0):
    """Profile the package's levels on this device, drop levels measured as dominated, store the
    profile; the package (rewritten if levels were dropped) and the device key."""
    from adasr.runtime.profile import profile_package

    profile = profile_package(package, loads=loads, repeats=repeats, threads=threads, on_progress=progress,
                              lr_hw=lr_hw, table=False, rounds=rounds)
    key = profile["device"]
    package.add_profile(key, profile)
    return _drop_dominated(package, out, shipped, report, key, min_step), key


def _drop_dominated(package, out, shipped, report, key: str, min_step: float = 0.0):
    """Drop the levels another level beats on PSNR and speed by every timing of profile `key`
    (`_timings`; after re-scoring, a level can fall below a faster one), then, with `min_step`, the
    levels less than `min_step` dB above the next faster level kept; the package, rewritten with every
    profile (its measurements and int8 entries) cut to the levels kept, if any were dropped."""
    from dataclasses import replace

    from adasr.package import save_package

    dominated = _dominated(package.family, _timings(package.profiles[key], [lv.config.id for lv in package.family]))
    small = _small_steps(package.family, dominated, min_step) if min_step else set()
    if small:
        report["dropped_small_step"] = sorted(small)
    dominated |= small
    if not dominated:
        return package
    report["dropped_dominated"] = sorted(dominated - small)
    family = replace(package.family, levels=tuple(lv for lv in package.family if lv.config.id not in dominated))
    kept = {lv.config.id for lv in family}
    profiles = {name: _cut_profile(profile, kept) for name, profile in package.profiles.items()}
    package = save_package(out, shipped(family), family, info=package.manifest.get("info"), overwrite=True,
                           own=_own_of(package.own, family))
    for name, profile in sorted(profiles.items()):
        package.add_profile(name, profile)
    return package


def _own_of(own: Mapping[str, Any], family) -> dict[str, Any]:
    """The own-weights modules of the levels `family` keeps."""
    kept = {lv.config.id for lv in family}
    return {cid: m for cid, m in own.items() if cid in kept}


def _same_latencies(family, source):
    """`family` with each level's predicted latencies taken from the level of the same config in
    `source` (a package): a re-scored family keeps the source's order, not one re-drawn from a new
    (noisy) latency table."""
    from dataclasses import replace

    theirs = {lv.config.id: lv.latency_s for lv in source.family}
    return replace(family, levels=tuple(replace(lv, latency_s=dict(theirs.get(lv.config.id, lv.latency_s)))
                                        for lv in family))


def _copy_profiles(source, package, lr_hw: tuple[int, int], threads: int | None) -> str:
    """Give `package` the device profiles of `source` (a package with the same level configs):
    latency depends on the configs and the device, not on the weights. The key of this device's
    profile where there is one, else the first."""
    from adasr.timing import device_key

    ids = {lv.config.id for lv in package.family}
    if not source.profiles:
        raise ConfigError("the package given for its profiles has none; profile it first (adasr profile)")
    if tuple(source.family.lr_hw) != tuple(lr_hw):
        raise ConfigError(f"the package given for its profiles was profiled at {source.family.lr_hw}, not {lr_hw}")
    for key, profile in sorted(source.profiles.items()):
        for entry in profile["levels"].values():
            missing = ids - set(entry["measured"])
            if missing:
                raise ConfigError(f"the profile {key} of the source package lacks level(s) "
                                  f"{', '.join(sorted(missing))}")
        package.add_profile(key, _cut_profile(profile, ids))
    here = device_key(threads=threads)
    return here if here in package.profiles else sorted(package.profiles)[0]


def _cut_profile(profile: dict[str, Any], ids: set[str]) -> dict[str, Any]:
    """A copy of a device profile with its measurements and int8 entries cut to the levels `ids`."""
    profile = copy.deepcopy(profile)
    for entry in profile["levels"].values():
        entry["measured"] = {c: v for c, v in entry["measured"].items() if c in ids}
    int8 = profile.get("int8")
    if isinstance(int8, dict) and isinstance(int8.get("levels"), dict):
        int8["levels"] = {c: v for c, v in int8["levels"].items() if c in ids}
    return profile


def _measured(profile: dict[str, Any]) -> dict[str, dict[str, float]]:
    return {name: {cid: sample["median_s"] for cid, sample in entry["measured"].items()}
            for name, entry in profile["levels"].items()}


def _timings(profile: dict[str, Any], ids) -> list[dict[str, float]]:
    """Every per-level timing a profile holds (s/frame by config id): the idle measurement (or,
    in a profile without one, that of the lightest load) and, where its int8 section covers every
    level, that section's float32 and int8 times."""
    measured = _measured(profile)
    idle = load_name(0.0)
    timings = [measured[idle] if idle in measured else measured[min(measured, key=float)]]
    int8 = (profile.get("int8") or {}).get("levels") or {}
    if set(ids) <= set(int8):
        timings += [{c: int8[c]["fp32_s"] for c in ids}, {c: int8[c]["int8_s"] for c in ids}]
    return timings


def _dominated(family, timings: Sequence[dict[str, float]]) -> set[str]:
    """Levels another level beats on PSNR and is at least as fast as by every timing (a single
    noisy measurement does not drop a level; never the fastest)."""
    ids = [lv.config.id for lv in family]
    psnr = {lv.config.id: lv.psnr for lv in family}

    def beats(b: str, a: str) -> bool:
        as_fast = all(t[b] <= t[a] for t in timings)
        return as_fast and psnr[b] >= psnr[a] and (psnr[b] > psnr[a] or any(t[b] < t[a] for t in timings))

    return {a for a in ids if any(beats(b, a) for b in ids if b != a)}


def _small_steps(family, dropped: set[str], min_step: float) -> set[str]:
    """Walking the levels fastest first (the family's order), those whose PSNR is less than
    `min_step` above the last level kept; the fastest level is always kept."""
    out, last = set(), None
    for lv in family:
        if lv.config.id in dropped:
            continue
        if last is not None and lv.psnr < last + min_step:
            out.add(lv.config.id)
            continue
        last = lv.psnr
    return out


def _above_bicubic(family, evaluator, report: dict[str, Any]):
    """Drop levels that do not beat bicubic on the evaluator's crops: such a level costs compute
    and gives less than the free interpolation the player can always fall back to."""
    from dataclasses import replace

    from adasr.nn.registry import build_model

    floor = evaluator.score_module(build_model("bicubic", scale=family.scale))
    kept = [lv for lv in family if lv.psnr > floor]
    report["bicubic_psnr"] = floor
    report["dropped_below_bicubic"] = [lv.config.id for lv in family if lv.psnr <= floor]
    if not kept:
        raise ConfigError("no level of the family beats bicubic; train the supernet longer")
    return replace(family, levels=tuple(kept))


def _predictor_tau(evaluator, space, n: int, seed: int, progress: Progress) -> dict[str, Any]:
    """Train the quality predictor on 80% of `n` sampled configs, Kendall tau on the other 20%."""
    from adasr.search.quality import QualityPredictor, sample_quality_data

    cfgs, psnrs = sample_quality_data(evaluator, space, n, seed=seed + 1, on_progress=progress)
    cut = max(2, int(len(cfgs) * 0.8))
    predictor = QualityPredictor(space, seed=seed)
    predictor.fit(cfgs[:cut], psnrs[:cut], seed=seed)
    return {"train": cut, "held_out": len(cfgs) - cut, "kendall_tau": predictor.tau(cfgs[cut:], psnrs[cut:])}
