"""`adasr mimo ...`: massive-MIMO detection (channels, bench, train; the figure commands sweep-phi and
complexity are in mimo_figures_cmd); thin wrappers over adasr.mimo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from adasr._cli.common import RANGES, Range, console, out
from adasr._cli.common import set_threads as _threads
from adasr.errors import ConfigError

__all__ = ["AntennasOpt", "CarriersOpt", "ChannelOpt", "DeviceOpt", "FileOpt", "ModOpt", "RhoFOpt", "RhoOpt", "RhoTOpt",
           "SeedOpt", "StepsOpt", "ThreadsOpt", "UsersOpt", "bench_cmd", "channels_cmd", "mimo_app", "register", "train_cmd"]

mimo_app = typer.Typer(help="Massive-MIMO signal detection: classic detectors and MMNet with online training.",
                       no_args_is_help=True)

_BIG = 10_000_000
RANGES.update({
    "users": Range(1, 1024),
    "antennas": Range(1, 4096),
    "carriers": Range(1, 4096),
    "samples": Range(1, 1_000_000),
    "layers": Range(1, 100),
    "first": Range(0, 1_000_000),
    "next_iters": Range(0, 1_000_000),
    "time_iters": Range(0, 1_000_000),
    "iid_steps": Range(0, 1_000_000),
    "csi_error": Range(0, 10),
    "max_nodes": Range(1, 100_000_000),
    "coherence": Range(1, 1_000_000),
    "kbest_k": Range(1, 4096),
    "band": Range(1, 4096),
    "fresh_every": Range(0, 4096),
    "oamp_steps": Range(0, 1_000_000),
    "stride": Range(1, 1024),
    "offset": Range(0, 1023),
    "drops": Range(1, 64),
    "sweep-phi:snr": Range(-30, 60),
    "next_lr": Range(0, 10, lo_open=True),
    "rho": Range(0, 1, hi_open=True),
    "rho_t": Range(0, 1, hi_open=True),
    "rho_f": Range(0, 1, hi_open=True),
})

ChannelOpt = Annotated[str, typer.Option("--channel", help="iid, corr (Kronecker, exponential), uma (3GPP TR 38.901 via Sionna) or file.")]
UsersOpt = Annotated[int, typer.Option("--users", help="Single-antenna users Nt.")]
AntennasOpt = Annotated[int, typer.Option("--antennas", help="Base-station antennas Nr.")]
ModOpt = Annotated[str, typer.Option("--mod", help="qam4, qam16 or qam64.")]
StepsOpt = Annotated[int, typer.Option("--steps", help="Time steps T of the channel set.")]
CarriersOpt = Annotated[int, typer.Option("--carriers", help="Subcarriers F of the channel set (uma: every 4th of 1024, at most 256).")]
RhoOpt = Annotated[float, typer.Option("--rho", help="corr: exponential correlation between neighbouring receive antennas.")]
RhoTOpt = Annotated[float, typer.Option("--rho-t", help="iid/corr: Gauss-Markov correlation between consecutive time steps.")]
RhoFOpt = Annotated[float, typer.Option("--rho-f", help="iid/corr: Gauss-Markov correlation between neighbouring subcarriers.")]
FileOpt = Annotated[Optional[Path], typer.Option("--channels", help="--channel file: a set written by `adasr mimo channels`.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of channels, symbols, noise and initial weights.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda[:N].")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="CPU threads for torch.")]


def _channels(channel, users, antennas, steps, carriers, seed, rho, rho_t, rho_f, file, device):
    from adasr.mimo.channels import make
    from adasr.mimo.problem import check_size

    check_size(users, antennas, steps, carriers)
    if channel != "file" and file is not None:
        raise ConfigError("--channels PATH goes with --channel file")
    return make(channel, users, antennas, steps=steps, carriers=carriers, seed=seed, rho=rho, rho_t=rho_t,
                rho_f=rho_f, file=file, device=device)


@mimo_app.command("channels")
def channels_cmd(
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Channel set to write (.safetensors; a .json description beside it).")],
    channel: ChannelOpt = "iid",
    users: UsersOpt = 16,
    antennas: AntennasOpt = 64,
    steps: StepsOpt = 1,
    carriers: CarriersOpt = 1,
    rho: RhoOpt = 0.7,
    rho_t: RhoTOpt = 0.0,
    rho_f: RhoFOpt = 0.0,
    stride: Annotated[int, typer.Option("--stride", help="uma: keep every STRIDE-th of the 1024 subcarriers (4: the thesis's data set; 1: every subcarrier, as Algorithm 1).")] = 4,
    offset: Annotated[int, typer.Option("--offset", help="uma: index of the first kept subcarrier.")] = 0,
    drops: Annotated[int, typer.Option("--drops", help="uma: independent user drops, stacked along time (T = drops x steps).")] = 1,
    png_out: Annotated[Optional[Path], typer.Option("--png", help="Also plot the correlation against distance in subcarriers and time steps (Fig. 3-10).")] = None,
    seed: SeedOpt = 0,
    threads: ThreadsOpt = None,
) -> None:
    """Generate a channel set (T x F channels of Nr x Nt), measure its correlation against distance
    in frequency and time (stored in the description) and cache it on disk with its seed."""
    from adasr._atomic import check_writable
    from adasr.mimo.channels import correlation, save

    _threads(threads)
    if channel == "file":
        raise ConfigError("`mimo channels` generates sets; --channel must be iid, corr or uma")
    if out_path.suffix != ".safetensors":
        raise ConfigError(f"--out must end in .safetensors, got {out_path.name}")
    if png_out is not None and png_out.suffix != ".png":
        raise ConfigError(f"--png must end in .png, got {png_out.name}")
    if channel != "uma" and (stride, offset, drops) != (4, 0, 1):
        raise ConfigError("--stride, --offset and --drops go with --channel uma")
    for p in (out_path, out_path.with_suffix(".json"), png_out):
        if p is not None:
            check_writable(p)
    from adasr.mimo.channels import make
    from adasr.mimo.problem import check_size

    check_size(users, antennas)
    cs = make(channel, users, antennas, steps=steps, carriers=carriers, seed=seed, rho=rho, rho_t=rho_t, rho_f=rho_f,
              stride=stride, offset=offset, drops=drops)
    loc = correlation(cs.h)
    steps_per_drop = int(cs.meta.get("steps_per_drop", cs.h.shape[0]))
    if cs.meta.get("drops", 1) > 1:  # time lags only within a drop
        loc_t = correlation(cs.h[:steps_per_drop])
        loc.update(time=loc_t["time"], time_real=loc_t["time_real"])
    cs.meta["locality"] = loc
    save(cs, out_path)
    if png_out is not None:
        from adasr.mimo.bench import plot_locality

        plot_locality(cs.meta, png_out)
    f = loc["frequency"]
    near = ", ".join(f"{d}: {f[d]:.3f}" for d in (1, 4, 8, 16, 32, 64) if d < len(f))
    out.print(f"wrote {out_path}: {cs.h.shape[0]} x {cs.h.shape[1]} channels of {cs.antennas} x {cs.users} "
              f"({channel}, seed {seed})")
    if near:
        out.print(f"correlation at a distance of d subcarriers (d: |<H1,H2>|/norms): {near}")
    if len(loc["time"]) > 1:
        out.print(f"correlation one time step apart: {loc['time'][1]:.3f}")


@mimo_app.command("bench")
def bench_cmd(
    channel: ChannelOpt = "iid",
    users: UsersOpt = 16,
    antennas: AntennasOpt = 64,
    mod: ModOpt = "qam16",
    snr: Annotated[str, typer.Option("--snr", help="SNRs in dB: 8,10,12 or START:STOP:STEP.")] = "8,10,12",
    detectors: Annotated[str, typer.Option("--detectors", help="Comma list of zf, mmse, vblast, amp, kbest, ep (Sionna), ml (exact, exhaustive, Sionna; tiny systems), sphere (exact sphere decoder), oampnet, detnet, mmnet-iid, mmnet.")] = "zf,mmse,vblast,amp",
    steps: StepsOpt = 4,
    carriers: CarriersOpt = 1,
    rho: RhoOpt = 0.7,
    rho_t: RhoTOpt = 0.0,
    rho_f: RhoFOpt = 0.0,
    file: FileOpt = None,
    samples: Annotated[int, typer.Option("--samples", help="Transmitted vectors per channel per SNR.")] = 500,
    csi_error: Annotated[float, typer.Option("--csi-error", help="Channel-estimation error variance sigma_c^2 per entry (0 = perfect CSI).")] = 0.0,
    first: Annotated[int, typer.Option("--first", help="MMNet online: training iterations on the first subcarrier (Psi).")] = 1000,
    next_iters: Annotated[int, typer.Option("--next", help="MMNet online: iterations on each next subcarrier (Phi).")] = 8,
    time_iters: Annotated[Optional[int], typer.Option("--time-iters", help="MMNet online: iterations on the first subcarrier of later time steps (default: --first, as Algorithm 1).")] = None,
    warm: Annotated[bool, typer.Option("--warm/--cold", help="MMNet online: start each channel from the previous one's weights (--cold re-initialises).")] = True,
    init: Annotated[str, typer.Option("--init", help="MMNet initial weights: random (Algorithm 1) or mf (matched filter of the first channel).")] = "random",
    next_lr: Annotated[Optional[float], typer.Option("--next-lr", help="MMNet online: Adam step size after the first channel (default --lr).")] = None,
    transport: Annotated[bool, typer.Option("--transport/--no-transport", help="MMNet online: map each layer's A to the next channel (A H_prev H^+, so A H is kept) before its training; not in the thesis.")] = False,
    reset_adam: Annotated[bool, typer.Option("--reset-adam/--keep-adam", help="MMNet online: start Adam's moments afresh on every channel after the first, so its first steps have the full --next-lr size (the carried moments of the first channel's large early gradients shrink them 20-60x on 3GPP channels); not in the thesis.")] = False,
    iid_steps: Annotated[int, typer.Option("--iid-steps", help="MMNet-iid, OAMPNet and DetNet: offline training steps (OAMPNet and DetNet on a non-iid set train on the set's channels).")] = 1000,
    iid_model: Annotated[Optional[Path], typer.Option("--iid-model", help="MMNet-iid checkpoint from `adasr mimo train` instead of training here.")] = None,
    max_nodes: Annotated[int, typer.Option("--max-nodes", help="sphere: bound on visited tree nodes per vector (a vector that hits it keeps its best leaf; counted in the report).")] = 100_000,
    kbest_k: Annotated[int, typer.Option("--kbest-k", help="kbest: survivors per tree level K (a large K is the near-ML stand-in where exact ML is out of reach).")] = 32,
    coherence: Annotated[int, typer.Option("--coherence", help="Vectors per coherence interval that share a detector's per-channel work in the multiplication counts (thesis: about 100).")] = 100,
    layers: Annotated[int, typer.Option("--layers", help="MMNet layers.")] = 10,
    batch: Annotated[int, typer.Option("--batch", help="MMNet training batch.")] = 500,
    lr: Annotated[float, typer.Option("--lr", help="MMNet Adam learning rate.")] = 1e-3,
    seed: SeedOpt = 0,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report here (default: mimo-bench.json).")] = None,
    png_out: Annotated[Optional[Path], typer.Option("--png", help="Write the SER-vs-SNR plot here (default: beside --json).")] = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """SER vs SNR of each detector on one channel set; prints a table, writes JSON and a PNG."""
    from adasr._atomic import check_not_input, check_writable
    from adasr.mimo import bench as B
    from adasr.mimo import mmnet as M
    from adasr.mimo.problem import constellation, parse_snrs

    _threads(threads)
    modc = constellation(mod)
    snrs = parse_snrs(snr)
    names = B.parse_detectors(detectors)
    dev = B.resolve_device(device)
    json_path = json_out or Path("mimo-bench.json")
    png_path = png_out or json_path.with_suffix(".png")
    for p, suffix in ((json_path, ".json"), (png_path, ".png")):
        if p.suffix != suffix:
            raise ConfigError(f"{p} should end in {suffix}")
        check_writable(p)
    check_not_input([json_path, png_path], [file, iid_model])
    if init not in ("random", "mf"):
        raise ConfigError(f"--init must be random or mf, got {init!r}")
    net = None
    if iid_model is not None:
        net, meta = M.load(iid_model)
        if meta["kind"] != "mmnet-iid" or (net.users, net.antennas) != (users, antennas):
            raise ConfigError(f"{iid_model} is a {meta['kind']} for {net.users} x {net.antennas}, "
                              f"not an mmnet-iid for {users} x {antennas}")
    cs = _channels(channel, users, antennas, steps, carriers, seed, rho, rho_t, rho_f, file, "cpu")
    report = B.run(cs, modc, snrs, names, samples=samples, seed=seed, device=dev, csi_error=csi_error, first=first,
                   next_iters=next_iters, time_iters=time_iters, batch=batch, lr=lr, layers=layers, warm=warm,
                   init=init, next_lr=next_lr, iid_steps=iid_steps, iid_model=net, max_nodes=max_nodes, coherence=coherence,
                   kbest_k=kbest_k, transport=transport, reset_adam=reset_adam, log=lambda m: console.print(m, highlight=False))
    from adasr.timing import provenance

    report.setdefault("provenance", provenance())  # command, machine, date (docs/RESULTS.md prints it)
    B.write_json(report, json_path)
    B.plot(report, png_path)
    from rich.table import Table

    table = Table(title=f"SER, {users}x{antennas} {modc.name.upper()}, {cs.meta.get('model')} channels "
                        f"({report['channels']} channels x {samples} vectors per SNR)")
    table.add_column("detector")
    for s in snrs:
        table.add_column(f"{s:g} dB", justify="right")
    table.add_column("SNR@1e-3", justify="right")
    has_ml = any("gap_to_ml_db" in r for r in report["results"].values())
    if has_ml:
        table.add_column("gap to ML", justify="right")
    table.add_column("mults/vector", justify="right")
    for name, r in report["results"].items():
        at, gap, mults = r["snr_at_1e-3"], r.get("gap_to_ml_db"), r.get("multiplications_per_vector")
        cells = [f"{v:.2e}" for v in r["ser"]] + ["-" if at is None else f"{at:.1f}"]
        if has_ml:
            cells.append("-" if gap is None else f"{gap:+.1f} dB")
        cells.append("-" if mults is None else f"{mults:.3g}")
        table.add_row(name, *cells)
    out.print(table)
    sd = report.get("sphere")
    if sd:
        note = (f"; {sd['bounded']} vectors hit --max-nodes {sd['max_nodes']} (not proven ML)" if sd["bounded"]
                else "; none hit the node bound (exact ML)")
        out.print(f"sphere decoder: {sd['nodes_per_vector']:.1f} nodes per vector on average, "
                  f"at most {sd['max_nodes_seen']}{note}")
    out.print(f"wrote {json_path} and {png_path}")


@mimo_app.command("train")
def train_cmd(
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint to write (.safetensors; a .json training log beside it).")],
    kind: Annotated[str, typer.Option("--kind", help="mmnet-iid, oampnet or detnet (offline) or mmnet (online over a channel set, Algorithm 1).")] = "mmnet-iid",
    channel: ChannelOpt = "iid",
    users: UsersOpt = 16,
    antennas: AntennasOpt = 64,
    mod: ModOpt = "qam16",
    snr: Annotated[str, typer.Option("--snr", help="Training SNR interval LOW,HIGH in dB (sampled uniformly per vector).")] = "8,12",
    steps: Annotated[int, typer.Option("--steps", help="mmnet-iid/oampnet/detnet: training steps; mmnet: time steps T of a generated channel set.")] = 1000,
    carriers: CarriersOpt = 1,
    rho: RhoOpt = 0.7,
    rho_t: RhoTOpt = 0.0,
    rho_f: RhoFOpt = 0.0,
    file: FileOpt = None,
    first: Annotated[int, typer.Option("--first", help="mmnet: iterations on the first subcarrier (Psi).")] = 1000,
    next_iters: Annotated[int, typer.Option("--next", help="mmnet: iterations on each next subcarrier (Phi).")] = 8,
    time_iters: Annotated[Optional[int], typer.Option("--time-iters", help="mmnet: iterations on the first subcarrier of later time steps (default --first).")] = None,
    warm: Annotated[bool, typer.Option("--warm/--cold", help="mmnet: warm start from the previous channel's weights.")] = True,
    init: Annotated[str, typer.Option("--init", help="mmnet initial weights: random or mf.")] = "random",
    next_lr: Annotated[Optional[float], typer.Option("--next-lr", help="MMNet online: Adam step size after the first channel (default --lr).")] = None,
    transport: Annotated[bool, typer.Option("--transport/--no-transport", help="MMNet online: map each layer's A to the next channel (A H_prev H^+, so A H is kept) before its training; not in the thesis.")] = False,
    reset_adam: Annotated[bool, typer.Option("--reset-adam/--keep-adam", help="MMNet online: start Adam's moments afresh on every channel after the first, so its first steps have the full --next-lr size (the carried moments of the first channel's large early gradients shrink them 20-60x on 3GPP channels); not in the thesis.")] = False,
    layers: Annotated[int, typer.Option("--layers", help="Layers.")] = 10,
    batch: Annotated[int, typer.Option("--batch", help="Training batch (thesis: 500).")] = 500,
    lr: Annotated[float, typer.Option("--lr", help="Adam learning rate (thesis: 1e-3).")] = 1e-3,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """Train MMNet-iid offline or MMNet online; writes the final weights as safetensors."""
    import json

    from adasr._atomic import check_not_input, check_writable, write_bytes_atomic
    from adasr.mimo import bench as B
    from adasr.mimo import mmnet as M
    from adasr.mimo.problem import check_size, constellation, parse_snrs

    _threads(threads)
    modc = constellation(mod)
    check_size(users, antennas)
    lo_hi = parse_snrs(snr)
    if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
        raise ConfigError(f"--snr wants the interval LOW,HIGH with LOW <= HIGH, got {snr!r}")
    if kind not in M.KINDS:
        raise ConfigError(f"--kind must be mmnet-iid, oampnet, detnet or mmnet, got {kind!r}")
    if init not in ("random", "mf"):
        raise ConfigError(f"--init must be random or mf, got {init!r}")
    if out_path.suffix != ".safetensors":
        raise ConfigError(f"--out must end in .safetensors, got {out_path.name}")
    log_path = out_path.with_suffix(".json")
    check_writable(out_path)
    check_writable(log_path)
    check_not_input([out_path, log_path], [file])
    dev = B.resolve_device(device)
    if kind in ("mmnet-iid", "oampnet", "detnet"):
        if kind == "mmnet-iid" and (channel != "iid" or file is not None):
            raise ConfigError("mmnet-iid trains on fresh i.i.d. channels; drop --channel/--channels")
        pool = None
        if channel != "iid" or file is not None:  # oampnet/detnet on a set: draw its channels
            cs = _channels(channel, users, antennas, 1, carriers, seed, rho, rho_t, rho_f,
                           file, "cpu")
            pool = cs.flat()
        net = M.build(kind, users, antennas, layers, levels=len(modc.levels))
        losses = M.train_offline(net, modc, lo_hi[0], lo_hi[1], steps, batch=batch, lr=lr, seed=seed, device=dev,
                                 pool=pool)
        log = dict(kind=kind, steps=steps, batch=batch, lr=lr, snr=lo_hi, first_loss=losses[0], last_loss=losses[-1],
                   losses=losses[:: max(1, len(losses) // 200)])
    else:
        cs = _channels(channel, users, antennas, steps, carriers, seed, rho, rho_t, rho_f, file, "cpu")
        net, res = M.train_online(cs.h, modc, lo_hi[0], lo_hi[1], first=first, next_iters=next_iters,
                                  time_iters=time_iters, batch=batch, lr=lr, layers=layers, warm=warm, seed=seed,
                                  device=dev, keep_states=False, init=init, next_lr=next_lr, transport=transport,
                                  reset_adam=reset_adam)
        log = dict(kind=kind, channel=cs.meta, first=first, next=next_iters, next_lr=next_lr, time_iters=time_iters,
                   warm=warm, transport=transport, reset_adam=reset_adam,
                   init=init, batch=batch, lr=lr, snr=lo_hi, iterations=res.iterations, first_loss=res.first_loss,
                   last_loss=res.last_loss, index=res.index)
    M.save(net, out_path, modc, extra=dict(snr=lo_hi, seed=seed))
    write_bytes_atomic(log_path, (json.dumps(log, indent=2) + "\n").encode())
    last = log["last_loss"] if kind != "mmnet" else log["last_loss"][-1]
    out.print(f"wrote {out_path} (final loss {last:.4f}) and {log_path}")


def register(app: typer.Typer) -> None:
    app.add_typer(mimo_app, name="mimo")
