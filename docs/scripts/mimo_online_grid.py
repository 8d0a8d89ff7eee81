"""Variants of MMNet's online loop (Algorithm 1) on one channel set, sharing the first stage: the
runs behind docs/MIMO.md's "Closing the gap" table.

    python docs/scripts/mimo_online_grid.py SET.safetensors OUT.json VARIANT [VARIANT ...]

A VARIANT is NAME:KEY=VALUE,... with the keys psi (default 1000), init (random|mf, default mf),
phi (8), next_lr (default 1e-3, Adam's step after the first channel), transport (0|1), reset
(0|1: Adam's state afresh on every channel after the first), time_iters (first subcarrier of
later time steps; default psi), steps and carriers (the set's first time steps and subcarriers
used; default all). QAM16, tested at 18 dB and trained on 14-22 dB, batch 500, Adam 1e-3 on the
first channel, seed 0; every channel is detected with 500 vectors drawn as `adasr mimo sweep-phi`
draws them (same symbols and noise as its runs with --seed 0 --samples 500), and MMSE sees the same
symbols. Variants with the same psi, init and set share the Psi iterations (as sweep-phi does).
The JSON is rewritten after every variant.
"""

from __future__ import annotations

import json
import sys
import time

import torch

from adasr.mimo import channels as C
from adasr.mimo import detectors as D
from adasr.mimo import mmnet as M
from adasr.mimo.problem import constellation, symbol_errors, to_real_matrix, transmit

LO, HI, SNR, SAMPLES, BATCH, SEED = 14.0, 22.0, 18.0, 500, 500, 0
DEFAULTS = dict(psi=1000, init="mf", phi=8, next_lr=1e-3, transport=0, reset=0, time_iters=None, steps=None,
                carriers=None)


def parse(spec: str) -> tuple[str, dict]:
    name, _, rest = spec.partition(":")
    cfg = dict(DEFAULTS)
    for item in filter(None, rest.split(",")):
        key, _, val = item.partition("=")
        if key not in DEFAULTS:
            raise SystemExit(f"unknown key {key!r} in {spec!r}")
        cfg[key] = val if key == "init" else (float(val) if key == "next_lr" else int(val))
    return name, cfg


def main(path: str, out_path: str, specs: list[str]) -> None:
    torch.set_num_threads(1)
    mod = constellation("qam16")
    cs = C.load(path)
    out: dict = dict(set=path, snr=SNR, train_snr=[LO, HI], samples=SAMPLES, batch=BATCH, seed=SEED, runs={})
    firsts: dict = {}
    mmse_cache: dict = {}
    t0 = time.time()
    for spec in specs:
        name, cfg = parse(spec)
        h = cs.h[:cfg["steps"], :cfg["carriers"]]
        steps, carriers = h.shape[:2]
        flat = to_real_matrix(h.reshape(-1, *h.shape[2:]))
        full_carriers = cs.h.shape[1]

        def data(n, f, flat=flat, carriers=carriers, full_carriers=full_carriers):
            ci = n * full_carriers + f  # sweep-phi's draw for channel (n, f) of the full set
            g = torch.Generator().manual_seed((SEED * 1_000_003 + ci * 1009) % (2**63))
            return transmit(flat[n * carriers + f], mod, SAMPLES, SNR, generator=g)

        key = (steps, carriers)
        if key not in mmse_cache:
            errs = []
            for n in range(steps):
                for f in range(carriers):
                    x, y, s2 = data(n, f)
                    errs.append(int(symbol_errors(D.mmse(y, flat[n * carriers + f], s2, mod), x, mod).sum()))
            mmse_cache[key] = errs
        err = [0] * (steps * carriers)

        def on_channel(n, f, model, hr, err=err, carriers=carriers, data=data):
            x, y, s2 = data(n, f)
            err[n * carriers + f] = int(symbol_errors(M.detect(model, y, hr, s2, mod), x, mod).sum())

        fkey = (cfg["psi"], cfg["init"])
        _, res = M.train_online(h, mod, LO, HI, first=cfg["psi"], next_iters=cfg["phi"], time_iters=cfg["time_iters"],
                                batch=BATCH, seed=SEED, keep_states=False, on_channel=on_channel, init=cfg["init"],
                                next_lr=cfg["next_lr"], first_state=firsts.get(fkey), transport=bool(cfg["transport"]),
                                reset_adam=bool(cfg["reset"]))
        firsts.setdefault(fkey, res.first_state)
        per = SAMPLES * cs.users
        bands = [err[b:b + 16] for b in range(0, len(err), 16)]
        mm = mmse_cache[key]
        run = dict(cfg, ser=sum(err) / (len(err) * per), errors=sum(err), symbols=len(err) * per,
                   ser_per_band=[sum(b) / (len(b) * per) for b in bands],
                   mmse=sum(mm) / (len(mm) * per), errors_per_channel=err,
                   iterations_per_channel=sum(res.iterations) / len(res.iterations),
                   first_stage_loss=res.first_state["losses"][-1] if res.first_state else None,
                   last_loss=res.last_loss, seconds=time.time() - t0)
        out["runs"][name] = run
        print(f"{name}: SER {run['ser']:.3e} (MMSE {run['mmse']:.3e}) bands "
              + " ".join(f"{b:.1e}" for b in run["ser_per_band"]) + f"  t={run['seconds']:.0f}s", flush=True)
        with open(out_path, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
