"""The online loop against per-channel training on a few subcarriers, with more symbols than a
sweep gives each channel: the runs behind docs/MIMO.md's per-channel bound.

    python docs/scripts/mimo_fresh_bound.py SET.safetensors OUT.json [VECTORS] [SUBCARRIERS]

MMNet online over the set's first time step (Algorithm 1's random start, Psi = 1000 at lr 1e-3,
Phi = 8 with Adam's moments afresh per channel and a step of 2e-2; QAM16, 14-22 dB, batch 500,
seed 0), the weights kept per channel; on each of SUBCARRIERS (default 16,32,48) a fresh network
trained for that channel alone with 1000 iterations from the random start and from the matched
filter; all of them and MMSE detect the same VECTORS (default 5000) vectors per subcarrier at 18 dB.
"""

from __future__ import annotations

import json
import sys

import torch

from adasr.mimo import channels as C
from adasr.mimo import detectors as D
from adasr.mimo import mmnet as M
from adasr.mimo.problem import constellation, symbol_errors, to_real_matrix, transmit


def main(path: str, out_path: str, vectors: int = 5000, subcarriers: str = "16,32,48") -> None:
    torch.set_num_threads(1)
    mod = constellation("qam16")
    cs = C.load(path)
    h = cs.h[:1]
    fs = [int(f) for f in subcarriers.split(",")]
    _, res = M.train_online(h, mod, 14.0, 22.0, first=1000, next_iters=8, next_lr=2e-2, reset_adam=True, seed=0)
    out: dict = dict(set=path, vectors=vectors, snr=18.0, subcarriers={})
    for f in fs:
        hr = to_real_matrix(h[0, f])
        x, y, s2 = transmit(hr, mod, vectors, 18.0, generator=torch.Generator().manual_seed(77_000 + f))
        online = M.MMNet("mmnet", cs.users, cs.antennas, 10)
        online.load_state_dict(res.states[f])
        row = {"symbols": vectors * cs.users,
               "mmse": int(symbol_errors(D.mmse(y, hr, s2, mod), x, mod).sum()),
               "online": int(symbol_errors(M.detect(online, y, hr, s2, mod), x, mod).sum())}
        for init in ("random", "mf"):
            fresh, _ = M.train_online(h[:, f:f + 1], mod, 14.0, 22.0, first=1000, seed=0, init=init, keep_states=False)
            row[f"fresh_{init}"] = int(symbol_errors(M.detect(fresh, y, hr, s2, mod), x, mod).sum())
        out["subcarriers"][f] = row
        print(f, row, flush=True)
        with open(out_path, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:4]), *sys.argv[4:5])
