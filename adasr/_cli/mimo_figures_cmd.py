"""`adasr mimo sweep-phi` and `adasr mimo complexity`: the commands behind the thesis's Figures 3-11
and 3-12 (docs/MIMO.md), on the `adasr mimo` group of mimo_cmd."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import console, out
from adasr._cli.common import set_threads as _threads
from adasr._cli.mimo_cmd import (
    AntennasOpt,
    CarriersOpt,
    ChannelOpt,
    DeviceOpt,
    FileOpt,
    ModOpt,
    RhoFOpt,
    RhoOpt,
    RhoTOpt,
    SeedOpt,
    StepsOpt,
    ThreadsOpt,
    UsersOpt,
    _channels,
    mimo_app,
)
from adasr.errors import ConfigError

__all__ = ["complexity_cmd", "sweep_phi_cmd"]


def _int_list(text: str, option: str, lo: int, hi: int, most: int = 64) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} wants integers like 2,4,8, got {text!r}") from None
    if not 1 <= len(values) <= most:
        raise ConfigError(f"{option} wants 1 to {most} values, got {len(values)}")
    for v in values:
        if not lo <= v <= hi:
            raise ConfigError(f"{option} values must lie in {lo}..{hi}, got {v}")
    return list(dict.fromkeys(values))


@mimo_app.command("sweep-phi")
def sweep_phi_cmd(
    channel: ChannelOpt = "corr",
    users: UsersOpt = 8,
    antennas: AntennasOpt = 32,
    mod: ModOpt = "qam16",
    snr: Annotated[float, typer.Option("--snr", help="Test SNR in dB (thesis: 18).")] = 18.0,
    train_snr: Annotated[Optional[str], typer.Option("--train-snr", help="MMNet training SNR interval LOW,HIGH in dB (default: --snr -4 to +4).")] = None,
    phi: Annotated[str, typer.Option("--phi", help="Comma list of Phi values (iterations on each next subcarrier).")] = "2,4,8,16,32",
    first: Annotated[int, typer.Option("--first", help="Psi: iterations on the first subcarrier (thesis: 1000).")] = 1000,
    time_iters: Annotated[Optional[int], typer.Option("--time-iters", help="Iterations on the first subcarrier of later time steps (default --first).")] = None,
    baselines: Annotated[str, typer.Option("--baselines", help="Comma list of detectors measured on the same data: classic ones (mmse, kbest, ...) and oampnet (trained offline on the set's channels).")] = "mmse",
    band: Annotated[int, typer.Option("--band", help="Also report SER per band of this many adjacent subcarriers.")] = 16,
    fresh_every: Annotated[int, typer.Option("--fresh-every", help="Train a fresh network (Psi iterations) on every K-th subcarrier too: the per-channel bound (0: off).")] = 0,
    oamp_steps: Annotated[int, typer.Option("--oamp-steps", help="oampnet baseline: offline training steps on the set's channels.")] = 300,
    kbest_k: Annotated[int, typer.Option("--kbest-k", help="kbest: survivors per tree level K (a large K is the near-ML stand-in where exact ML is out of reach).")] = 32,

    steps: StepsOpt = 1,
    carriers: CarriersOpt = 16,
    rho: RhoOpt = 0.7,
    rho_t: RhoTOpt = 0.0,
    rho_f: RhoFOpt = 0.0,
    file: FileOpt = None,
    samples: Annotated[int, typer.Option("--samples", help="Transmitted vectors per channel.")] = 500,
    init: Annotated[str, typer.Option("--init", help="MMNet initial weights: random (Algorithm 1) or mf.")] = "random",
    next_lr: Annotated[Optional[float], typer.Option("--next-lr", help="Adam step size after the first channel (default --lr).")] = None,
    transport: Annotated[bool, typer.Option("--transport/--no-transport", help="MMNet online: map each layer's A to the next channel (A H_prev H^+, so A H is kept) before its training; not in the thesis.")] = False,
    reset_adam: Annotated[bool, typer.Option("--reset-adam/--keep-adam", help="MMNet online: start Adam's moments afresh on every channel after the first, so its first steps have the full --next-lr size (the carried moments of the first channel's large early gradients shrink them 20-60x on 3GPP channels); not in the thesis.")] = False,
    layers: Annotated[int, typer.Option("--layers", help="MMNet layers.")] = 10,
    batch: Annotated[int, typer.Option("--batch", help="MMNet training batch.")] = 500,
    lr: Annotated[float, typer.Option("--lr", help="MMNet Adam learning rate.")] = 1e-3,
    seed: SeedOpt = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report here (default: mimo-sweep-phi.json).")] = None,
    png_out: Annotated[Optional[Path], typer.Option("--png", help="Write the SER-vs-Phi plot here (default: beside --json).")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """SER vs Phi with Psi fixed (Fig. 3-11): MMNet trained online once per Phi over one channel set."""
    from adasr._atomic import check_not_input, check_writable
    from adasr.mimo import bench as B
    from adasr.mimo.problem import constellation, parse_snrs

    _threads(threads)
    modc = constellation(mod)
    snr_db = parse_snrs(f"{snr}")[0]
    lo_hi = parse_snrs(train_snr) if train_snr is not None else [snr_db - 4, snr_db + 4]
    if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
        raise ConfigError(f"--train-snr wants the interval LOW,HIGH with LOW <= HIGH, got {train_snr!r}")
    phis = _int_list(phi, "--phi", 0, 1_000_000)
    names = [n.strip().lower() for n in baselines.split(",") if n.strip()]
    if init not in ("random", "mf"):
        raise ConfigError(f"--init must be random or mf, got {init!r}")
    dev = B.resolve_device(device)
    json_path = json_out or Path("mimo-sweep-phi.json")
    png_path = png_out or json_path.with_suffix(".png")
    for p, suffix in ((json_path, ".json"), (png_path, ".png")):
        if p.suffix != suffix:
            raise ConfigError(f"{p} should end in {suffix}")
        check_writable(p)
    check_not_input([json_path, png_path], [file])
    cs = _channels(channel, users, antennas, steps, carriers, seed, rho, rho_t, rho_f, file, "cpu")
    if cs.h.shape[1] < 2:
        raise ConfigError("SER vs Phi needs at least 2 subcarriers (--carriers)")
    report = B.sweep_phi(cs, modc, snr_db, phis, baselines=names, train_snr=(lo_hi[0], lo_hi[1]), first=first,
                         time_iters=time_iters, samples=samples, seed=seed, device=dev, batch=batch, lr=lr,
                         layers=layers, init=init, next_lr=next_lr, band=band, fresh_every=fresh_every,
                         oamp_steps=oamp_steps, kbest_k=kbest_k, transport=transport, reset_adam=reset_adam, log=lambda m: console.print(m, highlight=False))
    from adasr.timing import provenance

    report.setdefault("provenance", provenance())  # command, machine, date (docs/RESULTS.md prints it)
    B.write_json(report, json_path)
    B.plot_sweep(report, png_path)
    from rich.table import Table

    table = Table(title=f"SER vs Phi, Psi={first}, {users}x{antennas} {modc.name.upper()}, {cs.meta.get('model')} "
                        f"channels, {snr_db:g} dB ({report['channels']} channels x {samples} vectors)")
    table.add_column("detector")
    table.add_column("iterations/channel", justify="right")
    table.add_column("SER", justify="right")
    table.add_column("95% interval", justify="right")
    for name, b in report["baselines"].items():
        table.add_row(name, "-", f"{b['ser']:.2e}", f"{b['ci95'][0]:.1e}-{b['ci95'][1]:.1e}")
    for r in report["mmnet"]:
        label = "mmnet frozen copy (phi=0)" if r["phi"] == 0 else f"mmnet phi={r['phi']}"
        table.add_row(label, f"{r['iterations_per_channel']:.1f}", f"{r['ser']:.2e}",
                      f"{r['ci95'][0]:.1e}-{r['ci95'][1]:.1e}")
    fr = report.get("fresh")
    if fr:
        table.add_row(f"mmnet fresh per channel ({len(fr['channels'])} channels)", f"{fr['iterations']}",
                      f"{fr['ser']:.2e}", "-")
    out.print(table)
    for r in report["mmnet"][1:]:
        note = ""
        if "ratio_to_fresh" in r:
            note = (f", {r['ratio_to_fresh']:.2f}x the fresh networks' SER on their channels"
                    if r["ratio_to_fresh"] is not None else
                    f", SER {r['ser_on_fresh_channels']:.2e} on channels where the fresh networks made no error")
        below = "at or below" if r["not_above_frozen_in_every_band"] else "NOT at or below"
        out.print(f"phi={r['phi']}: {below} the frozen copy in every band of {report['band']} subcarriers{note}")
    out.print(f"wrote {json_path} and {png_path}")


@mimo_app.command("complexity")
def complexity_cmd(
    users: Annotated[str, typer.Option("--users", help="Comma list of user counts Nt (thesis: 16,32).")] = "16,32",
    antennas: AntennasOpt = 64,
    mod: ModOpt = "qam16",
    detectors: Annotated[str, typer.Option("--detectors", help="Comma list of detectors to count.")] = "mmse,amp,detnet,oampnet,mmnet",
    train_iters: Annotated[float, typer.Option("--train-iters", help="MMNet's online training iterations per channel (thesis: 9; a sweep-phi JSON's iterations_per_channel).")] = 9.0,
    coherence: Annotated[int, typer.Option("--coherence", help="Vectors per coherence interval that share the per-channel work (thesis: about 100).")] = 100,
    layers: Annotated[int, typer.Option("--layers", help="Layers of the learned detectors.")] = 10,
    batch: Annotated[int, typer.Option("--batch", help="MMNet training batch.")] = 500,
    kbest_k: Annotated[int, typer.Option("--kbest-k", help="kbest: survivors per level.")] = 32,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the counts here (default: mimo-complexity.json).")] = None,
    png_out: Annotated[Optional[Path], typer.Option("--png", help="Write the bar chart here (default: beside --json).")] = None,
) -> None:
    """Multiplications per detected vector for each detector and system size (Fig. 3-12), counted
    analytically (adasr.mimo.complexity); writes JSON and a PNG."""
    import json

    from adasr._atomic import check_writable, write_bytes_atomic
    from adasr.mimo import complexity as X
    from adasr.mimo.bench import plot_complexity
    from adasr.mimo.problem import check_size, constellation

    modc = constellation(mod)
    sizes = _int_list(users, "--users", 1, 1024, most=8)
    for u in sizes:
        check_size(u, antennas)
    names = [n.strip().lower() for n in detectors.split(",") if n.strip()]
    for n in names:
        if n not in X.COUNTED:
            raise ConfigError(f"no multiplication count for {n!r}; choose from {', '.join(X.COUNTED)}")
    if not names:
        raise ConfigError("--detectors wants a comma-separated list, e.g. mmse,amp,mmnet")
    if not 0 <= train_iters <= 1_000_000:
        raise ConfigError(f"--train-iters must lie in 0..1000000, got {train_iters:g}")
    json_path = json_out or Path("mimo-complexity.json")
    png_path = png_out or json_path.with_suffix(".png")
    for p, suffix in ((json_path, ".json"), (png_path, ".png")):
        if p.suffix != suffix:
            raise ConfigError(f"{p} should end in {suffix}")
        check_writable(p)
    counts = {}
    for u in sizes:
        counts[f"{u}x{antennas}"] = {n: X.count(n, u, antennas, modc.order, vectors=coherence, layers=layers,
                                                batch=batch, k=kbest_k, train_iters=train_iters)
                                     for n in names}
    report = dict(modulation=modc.name, antennas=antennas, users=sizes, train_iters=train_iters,
                  vectors_per_channel=coherence, layers=layers, batch=batch, counts=counts,
                  counted="real multiplications per detected vector, channel work shared by vectors_per_channel "
                          "vectors; MMNet includes its online training (adasr.mimo.complexity)")
    write_bytes_atomic(json_path, (json.dumps(report, indent=2) + "\n").encode())
    plot_complexity(report, png_path)
    from rich.table import Table

    table = Table(title=f"multiplications per detected vector, {modc.name.upper()}, {coherence} vectors per channel, "
                        f"MMNet with {train_iters:g} training iterations per channel")
    table.add_column("Nt x Nr")
    for n in names:
        table.add_column(n, justify="right")
    for size, row in counts.items():
        table.add_row(size, *["-" if row[n]["total"] is None else f"{row[n]['total']:.3g}" for n in names])
    out.print(table)
    out.print(f"wrote {json_path} and {png_path}")
