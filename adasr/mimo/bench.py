"""`adasr mimo bench`: SER vs SNR of several detectors on one channel set.

Every detector sees the same transmitted symbols and noise: the samples of channel c at SNR s
come from a generator seeded by (seed, c, s). MMNet is trained online over the set's channels in
(time, subcarrier) order (Algorithm 1) and each channel is detected with the weights trained
for it; MMNet-iid is trained offline on fresh i.i.d. channels (or loaded from a checkpoint).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch

from adasr._atomic import atomic_path, write_bytes_atomic
from adasr.errors import ConfigError
from adasr.mimo import complexity as C
from adasr.mimo import detectors as D
from adasr.mimo import mmnet as M
from adasr.mimo.channels import ChannelSet
from adasr.mimo.ml import sphere_decode
from adasr.mimo.problem import Constellation, symbol_errors, to_real_matrix, transmit
from adasr.timing import provenance

__all__ = ["DETECTORS", "ML_REFERENCES", "TARGET_SER", "parse_detectors", "plot", "plot_complexity", "plot_locality",
           "plot_sweep", "resolve_device", "run", "snr_at", "sweep_phi", "write_json"]

DETECTORS = ("zf", "mmse", "vblast", "amp", "kbest", "ep", "ml", "sphere", "oampnet", "detnet", "mmnet-iid", "mmnet")
ML_REFERENCES = ("ml", "sphere")
TARGET_SER = 1e-3


def parse_detectors(text: str) -> list[str]:
    names = [n.strip().lower() for n in str(text).split(",") if n.strip()]
    if not names:
        raise ConfigError("--detectors wants a comma-separated list, e.g. zf,mmse,amp")
    for n in names:
        if n not in DETECTORS:
            raise ConfigError(f"unknown detector {n!r}; choose from {', '.join(DETECTORS)}")
    return list(dict.fromkeys(names))


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: this torch build or machine has no CUDA device")
        return device
    raise ConfigError(f"--device wants auto, cpu or cuda[:N], got {device!r}")


def snr_at(snrs: list[float], sers: list[float], target: float = TARGET_SER) -> float | None:
    """SNR (dB) where the curve crosses `target`, interpolated linearly in log10(SER); None if it
    does not cross inside the measured range."""
    pts = list(zip(snrs, sers))
    for (s0, e0), (s1, e1) in zip(pts, pts[1:]):
        if e0 >= target >= e1 and e0 > 0:
            if e1 <= 0:
                return s1
            l0, l1, lt = math.log10(e0), math.log10(e1), math.log10(target)
            return s0 + (s1 - s0) * ((l0 - lt) / (l0 - l1) if l0 != l1 else 0.0)
    if pts and pts[0][1] <= target:
        return None  # already below at the lowest SNR: the crossing lies lower
    return None


def _wilson(errors: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = errors / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def run(cs: ChannelSet, mod: Constellation, snrs: list[float], detectors: list[str], *, samples: int = 500,
        seed: int = 0, device: str = "cpu", csi_error: float = 0.0, first: int = 1000, next_iters: int = 8,
        time_iters: int | None = None, batch: int = 500, lr: float = 1e-3, layers: int = 10, warm: bool = True,
        init: str = "random", next_lr: float | None = None, iid_steps: int = 1000, iid_model: M.MMNet | None = None,
        max_nodes: int = 100_000, coherence: int = 100, kbest_k: int = 32, transport: bool = False,
        reset_adam: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Measure SER per detector per SNR over every channel of `cs`; returns the report dict."""
    log = log or (lambda _m: None)
    h_true = cs.h
    if csi_error > 0:  # least-squares channel estimate: H + CN(0, csi_error) per entry
        g = torch.Generator().manual_seed(seed + 7)
        noise = torch.complex(torch.randn(h_true.shape, generator=g), torch.randn(h_true.shape, generator=g))
        h_est = h_true + noise * math.sqrt(csi_error / 2)
    else:
        h_est = h_true
    steps, carriers = h_true.shape[:2]
    n_ch = steps * carriers
    errors = {d: [0] * len(snrs) for d in detectors}
    seconds = {d: 0.0 for d in detectors}
    lo, hi = min(snrs), max(snrs)

    def data(ci: int, si: int, hr: torch.Tensor):
        g = torch.Generator().manual_seed((seed * 1_000_003 + ci * 1009 + si) % (2**63))
        x, y, s2 = transmit(hr.cpu(), mod, samples, snrs[si], generator=g)
        return x.to(device), y.to(device), s2.to(device)

    def score(name: str, ci: int, hr_true: torch.Tensor, hr_est: torch.Tensor, fn) -> None:
        for si in range(len(snrs)):
            x, y, s2 = data(ci, si, hr_true)
            t0 = time.perf_counter()
            with torch.no_grad():
                x_hat = fn(y, hr_est, s2)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            seconds[name] += time.perf_counter() - t0
            errors[name][si] += int(symbol_errors(x_hat, x, mod).sum())

    flat_true = to_real_matrix(h_true.reshape(-1, *h_true.shape[2:])).to(device)
    flat_est = to_real_matrix(h_est.reshape(-1, *h_est.shape[2:])).to(device)
    classic = [d for d in detectors if d in D.CLASSIC]
    sphere_stats: dict[str, Any] = {}
    for name in classic:
        fn = _baseline(name, kbest_k)
        if name == "sphere":
            fn = partial(sphere_decode, max_nodes=max_nodes, stats=sphere_stats)
        for ci in range(n_ch):
            score(name, ci, flat_true[ci], flat_est[ci], lambda y, hr, s2, fn=fn: fn(y, hr, s2, mod))
        log(f"{name}: done")
    training: dict[str, Any] = {}
    if "mmnet-iid" in detectors:
        net = iid_model
        if net is None:
            net = M.MMNet("mmnet-iid", cs.users, cs.antennas, layers)
            t0 = time.perf_counter()
            losses = M.train_offline(net, mod, lo, hi, iid_steps, batch=batch, lr=lr, seed=seed, device=device)
            training["mmnet-iid"] = dict(steps=iid_steps, batch=batch, first_loss=losses[0] if losses else None,
                                         last_loss=losses[-1] if losses else None,
                                         seconds=time.perf_counter() - t0)
            log(f"mmnet-iid: trained {iid_steps} steps offline")
        net = net.to(device).eval()
        for ci in range(n_ch):
            score("mmnet-iid", ci, flat_true[ci], flat_est[ci],
                  lambda y, hr, s2: M.detect(net, y, hr, s2, mod))
    for kind in ("oampnet", "detnet"):
        if kind not in detectors:
            continue
        # offline: fresh i.i.d. channels for an i.i.d. set, else the set's own (estimated) channels,
        # as the thesis retrains OAMPNet on the realistic channels it is tested on
        onet = M.build(kind, cs.users, cs.antennas, layers, levels=len(mod.levels))
        pool = None if cs.meta.get("model") == "iid" else h_est.reshape(-1, *h_est.shape[2:])
        t0 = time.perf_counter()
        losses = M.train_offline(onet, mod, lo, hi, iid_steps, batch=batch, lr=lr, seed=seed, device=device, pool=pool)
        training[kind] = dict(steps=iid_steps, batch=batch, channels="iid" if pool is None else "the set",
                              parameters=sum(p.numel() for p in onet.parameters()),
                              first_loss=losses[0] if losses else None, last_loss=losses[-1] if losses else None,
                              seconds=time.perf_counter() - t0)
        log(f"{kind}: trained {iid_steps} steps offline")
        onet = onet.eval()
        for ci in range(n_ch):
            score(kind, ci, flat_true[ci], flat_est[ci], lambda y, hr, s2, net=onet: M.detect(net, y, hr, s2, mod))
    if "mmnet" in detectors:
        t0 = time.perf_counter()
        order = {}

        def on_channel(n, f, model, hr):
            ci = n * carriers + f
            order[ci] = True
            score("mmnet", ci, flat_true[ci], hr, lambda y, hr_, s2: M.detect(model, y, hr_, s2, mod))

        _, res = M.train_online(h_est, mod, lo, hi, first=first, next_iters=next_iters, time_iters=time_iters,
                                batch=batch, lr=lr, layers=layers, warm=warm, seed=seed, device=device,
                                keep_states=False, on_channel=on_channel, init=init, next_lr=next_lr,
                                transport=transport, reset_adam=reset_adam)
        training["mmnet"] = dict(first=first, next=next_iters, time_iters=time_iters, warm=warm, init=init,
                                 next_lr=next_lr, transport=transport, reset_adam=reset_adam,
                                 batch=batch, lr=lr, iterations_total=sum(res.iterations),
                                 iterations_per_channel=sum(res.iterations) / max(1, len(res.iterations)),
                                 last_loss=_losses(res.last_loss),
                                 seconds=time.perf_counter() - t0 - seconds["mmnet"])
        log(f"mmnet: trained online, {sum(res.iterations)} iterations over {n_ch} channels")
    symbols = n_ch * samples * cs.users
    results = {}
    for name in detectors:
        sers = [e / symbols for e in errors[name]]
        results[name] = {"ser": sers, "errors": errors[name], "ci95": [_wilson(e, symbols) for e in errors[name]],
                         "snr_at_1e-3": snr_at(snrs, sers), "detect_seconds": seconds[name]}
    ref = next((r for r in ML_REFERENCES if r in results), None)
    if ref is not None:  # gap to exact ML at SER 1e-3, where both curves cross it
        at_ml = results[ref]["snr_at_1e-3"]
        for r in results.values():
            r["gap_to_ml_db"] = None if at_ml is None or r["snr_at_1e-3"] is None else r["snr_at_1e-3"] - at_ml
    if sphere_stats:
        sphere_stats["max_nodes"] = max_nodes
        sphere_stats["nodes_per_vector"] = sphere_stats["nodes"] / max(1, sphere_stats["vectors"])
    for name, r in results.items():
        if name in C.COUNTED:
            c = C.count(name, cs.users, cs.antennas, mod.order, vectors=coherence, layers=layers, batch=batch,
                        k=kbest_k, train_iters=training.get("mmnet", {}).get("iterations_per_channel"),
                        nodes_per_vector=sphere_stats.get("nodes_per_vector"))
            r["multiplications_per_vector"] = c["total"]
            r["multiplications"] = c
    return dict(
        users=cs.users, antennas=cs.antennas, modulation=mod.name, snr_db=snrs, channel=cs.meta,
        channels=n_ch, samples_per_channel_per_snr=samples, symbols_per_snr=symbols, seed=seed,
        csi_error=csi_error, device=device, results=results, training=training, kbest_k=kbest_k,
        provenance=provenance(),
        sphere=sphere_stats or None,
        complexity=dict(vectors_per_channel=coherence, counted="real multiplications per detected vector, "
                        "channel work shared by vectors_per_channel vectors (adasr.mimo.complexity)"),
        snr_definition="E||Hx||^2 / E||n||^2 per channel (sigma^2 = ||H||_F^2 / (Nr SNR))",
        confidence="95% Wilson interval per SER over all symbols (symbols within a vector are not independent)")


def write_json(report: dict[str, Any], path: Path) -> None:
    write_bytes_atomic(path, (json.dumps(report, indent=2) + "\n").encode())


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    floor = 0.5 / max(1, report["symbols_per_snr"])
    for name, r in report["results"].items():
        ax.semilogy(report["snr_db"], [max(s, floor) for s in r["ser"]], marker="o", label=name)
    ax.axhline(TARGET_SER, color="grey", lw=0.8, ls="--")
    ch = report["channel"].get("model", "?")
    ax.set_title(f"{report['users']}x{report['antennas']} {report['modulation'].upper()}, {ch} channels")
    ax.set_xlabel("SNR (dB)")
    ax.set_ylabel("SER")
    _save_ser_plot(fig, ax, path)


def _losses(values: list[float]) -> list[float | None]:
    """Losses for the JSON report: None for a channel with no training iteration (NaN)."""
    return [None if math.isnan(v) else v for v in values]


def _baseline(name: str, kbest_k: int) -> Any:
    if name == "kbest":
        return partial(D.sionna_kbest, k=kbest_k)
    return D.CLASSIC[name]


def sweep_phi(cs: ChannelSet, mod: Constellation, snr_db: float, phis: list[int], *, baselines: list[str],
              train_snr: tuple[float, float], first: int = 1000, time_iters: int | None = None, samples: int = 500,
              seed: int = 0, device: str = "cpu", batch: int = 500, lr: float = 1e-3, layers: int = 10,
              init: str = "random", next_lr: float | None = None, band: int = 16, fresh_every: int = 0,
              oamp_steps: int = 300, kbest_k: int = 32, transport: bool = False,
              reset_adam: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """SER vs Phi with Psi fixed (the thesis's Fig. 3-11): for each Phi, MMNet is trained online over
    the set (Algorithm 1, warm start) and each channel is detected at `snr_db` with the weights
    trained for it; the `baselines` (classic detectors, `kbest` with K = `kbest_k`, `oampnet` trained
    offline for `oamp_steps` steps on the set's channels) see the same symbols and noise.

    Phi = 0 is always run: it is the frozen copy of the first-subcarrier model (no training after
    the first subcarrier of a time step; with `transport`, mapped to each channel), the bound the
    online steps must not fall below. The Psi
    iterations on the first channel are run once and shared by every Phi (same result as separate
    runs). SER is also reported per band of `band` adjacent subcarriers. With `fresh_every` K > 0,
    every K-th subcarrier of each time step also gets a fresh network trained for it alone (Psi
    iterations from the initial weights): the per-channel bound, compared on those channels."""
    log = log or (lambda _m: None)
    if not phis:
        raise ConfigError("--phi wants at least one value")
    if band < 1 or fresh_every < 0:
        raise ConfigError(f"--band must be at least 1 and --fresh-every at least 0, got {band} and {fresh_every}")
    for name in baselines:
        if name not in D.CLASSIC and name != "oampnet":
            raise ConfigError(f"--baselines takes classic detectors ({', '.join(D.CLASSIC)}) or oampnet, got {name!r}")
    phis = [0] + [p for p in phis if p != 0]
    steps, carriers = cs.h.shape[:2]
    n_ch = steps * carriers
    flat = to_real_matrix(cs.h.reshape(-1, *cs.h.shape[2:])).to(device)

    def data(ci: int):
        g = torch.Generator().manual_seed((seed * 1_000_003 + ci * 1009) % (2**63))
        x, y, s2 = transmit(flat[ci].cpu(), mod, samples, snr_db, generator=g)
        return x.to(device), y.to(device), s2.to(device)

    per_channel = samples * cs.users
    symbols = n_ch * per_channel
    bands = [list(range(b0, min(b0 + band, carriers))) for b0 in range(0, carriers, band)]

    def band_ser(err: list[int]) -> list[float]:
        return [sum(err[n * carriers + f] for n in range(steps) for f in fs) / (steps * len(fs) * per_channel)
                for fs in bands]

    base = {}
    for name in baselines:
        t0 = time.perf_counter()
        training = None
        if name == "oampnet":
            net = M.build("oampnet", cs.users, cs.antennas, layers)
            losses = M.train_offline(net, mod, train_snr[0], train_snr[1], oamp_steps, batch=batch, lr=lr, seed=seed,
                                     device=device, pool=cs.h.reshape(-1, *cs.h.shape[2:]))
            training = dict(steps=oamp_steps, batch=batch, channels="the set", first_loss=losses[0] if losses else None,
                            last_loss=losses[-1] if losses else None)
            net = net.eval()

            def fn(y, hr, s2, mod, net=net):
                return M.detect(net, y, hr, s2, mod)
        else:
            fn = _baseline(name, kbest_k)
        err = []
        for ci in range(n_ch):
            x, y, s2 = data(ci)
            with torch.no_grad():
                err.append(int(symbol_errors(fn(y, flat[ci], s2, mod), x, mod).sum()))
        total = sum(err)
        base[name] = dict(ser=total / symbols, errors=total, ci95=_wilson(total, symbols), ser_per_band=band_ser(err),
                          ser_per_channel=[e / per_channel for e in err], seconds=time.perf_counter() - t0)
        if training is not None:
            base[name]["training"] = training
        if name == "kbest":
            base[name]["k"] = kbest_k
        log(f"{name}: SER {total / symbols:.3e}")
    rows = []
    shared = None
    for phi in phis:
        err = [0] * n_ch

        def on_channel(n, f, model, hr, err=err):
            ci = n * carriers + f
            x, y, s2 = data(ci)
            err[ci] = int(symbol_errors(M.detect(model, y, hr, s2, mod), x, mod).sum())

        t0 = time.perf_counter()
        _, res = M.train_online(cs.h, mod, train_snr[0], train_snr[1], first=first, next_iters=phi,
                                time_iters=time_iters, batch=batch, lr=lr, layers=layers, warm=True, seed=seed,
                                device=device, keep_states=False, on_channel=on_channel, init=init, next_lr=next_lr,
                                first_state=shared, transport=transport, reset_adam=reset_adam)
        shared = shared or res.first_state
        total = sum(err)
        rows.append(dict(phi=phi, ser=total / symbols, errors=total, ci95=_wilson(total, symbols),
                         ser_per_band=band_ser(err), ser_per_channel=[e / per_channel for e in err],
                         iterations_total=sum(res.iterations),
                         iterations_per_channel=sum(res.iterations) / max(1, n_ch),
                         first_loss=_losses(res.first_loss), last_loss=_losses(res.last_loss),
                         seconds=time.perf_counter() - t0))
        log(f"phi {phi}{' (frozen copy)' if phi == 0 else ''}: SER {total / symbols:.3e} "
            f"({sum(res.iterations) / max(1, n_ch):.1f} iterations per channel)")
    fresh = None
    if fresh_every > 0:
        chans, errs = [], []
        t0 = time.perf_counter()
        for n in range(steps):
            for f in range(fresh_every, carriers, fresh_every):
                ci = n * carriers + f
                x, y, s2 = data(ci)
                model, _ = M.train_online(cs.h[n:n + 1, f:f + 1], mod, train_snr[0], train_snr[1], first=first,
                                          batch=batch, lr=lr, layers=layers, seed=seed, device=device,
                                          keep_states=False, init=init)
                chans.append(ci)
                errs.append(int(symbol_errors(M.detect(model, y, flat[ci], s2, mod), x, mod).sum()))
                log(f"fresh training on channel {ci}: SER {errs[-1] / per_channel:.3e}")
        fresh = dict(every=fresh_every, iterations=first, channels=chans, errors=errs,
                     ser=sum(errs) / max(1, len(chans) * per_channel), seconds=time.perf_counter() - t0)
    frozen = rows[0]
    for r in rows:
        r["not_above_frozen_in_every_band"] = all(a <= b for a, b in zip(r["ser_per_band"], frozen["ser_per_band"]))
        if fresh is not None and fresh["channels"]:
            on = sum(r["ser_per_channel"][ci] for ci in fresh["channels"]) / len(fresh["channels"])
            r["ser_on_fresh_channels"] = on
            # None where the fresh networks made no error but the online one did (no finite ratio)
            r["ratio_to_fresh"] = on / fresh["ser"] if fresh["ser"] > 0 else (1.0 if on == 0 else None)
    return dict(users=cs.users, antennas=cs.antennas, modulation=mod.name, snr_db=snr_db, train_snr=list(train_snr),
                psi=first, time_iters=time_iters, init=init, lr=lr, next_lr=next_lr, transport=transport,
                reset_adam=reset_adam, batch=batch, layers=layers,
                channel=cs.meta, channels=n_ch, time_steps=steps, subcarriers=carriers, band=band,
                samples_per_channel=samples, symbols=symbols, seed=seed, device=device, baselines=base, mmnet=rows,
                frozen=dict(ser=frozen["ser"], ser_per_band=frozen["ser_per_band"]), fresh=fresh,
                confidence="95% Wilson interval per SER over all symbols (symbols within a vector are not independent)")


def plot_sweep(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    floor = 0.5 / max(1, report["symbols"])
    fig, ax = plt.subplots(figsize=(6, 4.2))
    rows = [r for r in report["mmnet"] if r["phi"] > 0]
    ax.semilogy([r["phi"] for r in rows], [max(r["ser"], floor) for r in rows], marker="o",
                label=f"MMNet online (Psi={report['psi']})")
    ax.axhline(max(report["frozen"]["ser"], floor), color="C0", ls=":", label="frozen first-subcarrier copy")
    if report.get("fresh"):
        ax.axhline(max(report["fresh"]["ser"], floor), color="C0", ls="-.", lw=0.8,
                   label=f"fresh per channel ({report['fresh']['iterations']} it.)")
    for i, (name, b) in enumerate(report["baselines"].items()):
        ax.axhline(max(b["ser"], floor), color=f"C{i + 1}", ls="--", label=name)
    ax.axhline(TARGET_SER, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("Phi (training iterations per next subcarrier)")
    ax.set_ylabel("SER")
    ch = report["channel"].get("model", "?")
    ax.set_title(f"{report['users']}x{report['antennas']} {report['modulation'].upper()}, {ch}, "
                 f"{report['snr_db']:g} dB")
    _save_ser_plot(fig, ax, path)


def plot_locality(meta: dict[str, Any], path: Path) -> None:
    """Correlation against distance in subcarriers and in time steps (Fig. 3-10) from a set's
    description (`adasr.mimo.channels.correlation` under 'locality')."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loc = meta["locality"]
    stride = meta.get("subcarrier_stride", 1)
    fig, ax = plt.subplots(figsize=(6, 4.2))
    f = loc["frequency"]
    ax.plot([d * stride for d in range(len(f))], f, marker=".", label="frequency (distance in subcarriers of 1024)")
    if len(loc["time"]) > 1:
        ax.plot(range(len(loc["time"])), loc["time"], marker="o", label="time (distance in time steps)")
    ax.set_xlabel("distance")
    ax.set_ylabel("|<H1, H2>| / (||H1|| ||H2||)")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"channel locality, {meta.get('model', '?')} {meta.get('antennas', '?')}x{meta.get('users', '?')}")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_complexity(report: dict[str, Any], path: Path) -> None:
    """Bars of multiplications per detected vector, one group per system size (Fig. 3-12)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = list(report["counts"])
    names = list(report["counts"][sizes[0]])
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    width = 0.8 / max(1, len(names))
    for i, name in enumerate(names):
        vals = [report["counts"][s][name]["total"] or 0 for s in sizes]
        ax.bar([j + i * width for j in range(len(sizes))], vals, width, label=name)
    ax.set_yscale("log")
    ax.set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(sizes))], sizes)
    ax.set_ylabel("multiplications per detection")
    ax.set_title(f"{report['modulation'].upper()}, Nr = {report['antennas']}, MMNet with "
                 f"{report['train_iters']:g} training it./channel")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def _save_ser_plot(fig: Any, ax: Any, path: Path) -> None:
    """Grid, legend and an atomic PNG write: the common end of the SER plots."""
    import matplotlib.pyplot as plt

    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
