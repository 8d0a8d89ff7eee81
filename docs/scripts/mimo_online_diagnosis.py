"""Why MMNet's online loop (Algorithm 1) drifts: the runs behind docs/MIMO.md's diagnosis.

    python docs/scripts/mimo_online_diagnosis.py SET.safetensors [SUBCARRIERS] [PSI] [OUT.json]

SET is a 16 x 64 stride-1 set from `adasr mimo channels --channel uma --stride 1 ...`; its first
time step's first SUBCARRIERS (default 64) subcarriers are used, QAM16, tested at 18 dB with 500
vectors per channel (seeded per subcarrier), MMNet trained on 14-22 dB, batch 500, Adam 1e-3.

1. How fast the right linear detector moves: the MMSE filter W[f] at 18 dB, its change between
   subcarriers d apart (relative, and RMS per real entry), against what Phi Adam steps of size lr
   can move an entry (at most about Phi x lr).
2. Psi iterations on the first subcarrier (random start, Algorithm 1); the frozen copy of that
   model on every subcarrier; then, from the same weights, Adam state and sample stream:
   online with Phi = 8 at stride 1 and at stride 4 (every 4th subcarrier of the same set),
   with a warm step of 5e-3 at both strides, and with Adam's state reset on every subcarrier;
   finally a fresh network trained with Psi iterations on the middle subcarrier alone.
The JSON (default mimo-online-diagnosis.json) is rewritten after every stage.
"""

from __future__ import annotations

import copy
import json
import sys
import time

import torch

from adasr.mimo import channels as C
from adasr.mimo import detectors as D
from adasr.mimo import mmnet as M
from adasr.mimo.problem import constellation, symbol_errors, to_real_matrix, transmit

LO, HI, SNR, SAMPLES, BATCH = 14.0, 22.0, 18.0, 500, 500


def filter_rates(h: torch.Tensor, snr_db: float = SNR) -> dict:
    """Change of the MMSE filter (Nt x Nr) between subcarriers d apart, h (F, Nr, Nt) complex."""
    h = h.to(torch.complex128)
    nr, nt = h.shape[-2:]
    s2 = h.abs().pow(2).sum((-2, -1)) / (nr * 10 ** (snr_db / 10))
    hh = h.conj().transpose(-2, -1)
    w = torch.linalg.solve(hh @ h + s2[:, None, None] * torch.eye(nt, dtype=h.dtype), hh)
    rms = float(torch.cat([w.real, w.imag], -1).pow(2).mean().sqrt())
    out = {"rms_entry": rms}
    for d in (1, 4, 8):
        dw = w[d:] - w[:-d]
        rel = (dw.abs().pow(2).sum((-2, -1)) / w[:-d].abs().pow(2).sum((-2, -1))).sqrt()
        out[d] = {"relative": float(rel.mean()), "rms_entry_change": float(torch.cat([dw.real, dw.imag], -1)
                                                                           .pow(2).mean().sqrt())}
    return out


def main(path: str, nf: int = 64, psi: int = 1000, out_path: str = "mimo-online-diagnosis.json") -> None:
    torch.set_num_threads(1)
    mod = constellation("qam16")
    cs = C.load(path)
    h = cs.h[0, :nf]
    hrs = [to_real_matrix(h[f]) for f in range(nf)]
    out: dict = dict(set=cs.meta.get("subcarrier_stride"), subcarriers=nf, psi=psi, snr=SNR, train_snr=[LO, HI],
                     samples=SAMPLES, filter_rates=filter_rates(h))

    def dump() -> None:
        with open(out_path, "w") as fh:
            json.dump(out, fh, indent=1)

    def data(f):
        return transmit(hrs[f], mod, SAMPLES, SNR, generator=torch.Generator().manual_seed(1000 + f))

    def ser(model, f) -> float:
        x, y, s2 = data(f)
        return float(symbol_errors(M.detect(model, y, hrs[f], s2, mod), x, mod).mean())

    out["mmse"] = []
    for f in range(nf):
        x, y, s2 = data(f)
        out["mmse"].append(float(symbol_errors(D.mmse(y, hrs[f], s2, mod), x, mod).mean()))

    def train(model, opt, f, iters, g):
        losses = []
        for _ in range(iters):
            x, y, s2 = M._batch(hrs[f], mod, BATCH, LO, HI, g)
            loss = M.loss_fn(model(y, hrs[f], s2, mod), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        return losses

    def fresh():
        m = M.MMNet("mmnet", cs.users, cs.antennas, 10, generator=torch.Generator().manual_seed(1))
        return m, torch.optim.Adam(m.parameters(), 1e-3)

    t0 = time.time()
    m0, o0 = fresh()
    g0 = torch.Generator().manual_seed(0)
    l0 = train(m0, o0, 0, psi, g0)
    out["psi_loss"] = [l0[0], sum(l0[-20:]) / 20]
    start = (copy.deepcopy(m0.state_dict()), copy.deepcopy(o0.state_dict()), g0.get_state())
    out["frozen"] = [ser(m0, f) for f in range(nf)]
    print("psi done", time.time() - t0, flush=True)
    dump()

    def online(fs, phi, lr=1e-3, reset=False, key=None):
        m, o = fresh()
        m.load_state_dict(start[0])
        o.load_state_dict(copy.deepcopy(start[1]))  # Adam updates its state in place
        g = torch.Generator()
        g.set_state(start[2])
        sers, losses = {0: out["frozen"][0]}, {}
        for f in fs[1:]:
            if reset:
                o = torch.optim.Adam(m.parameters(), lr)
            for group in o.param_groups:
                group["lr"] = lr
            ls = train(m, o, f, phi, g)
            sers[f] = ser(m, f)
            losses[f] = (ls[0], ls[-1])
        out[key] = dict(ser=sers, loss=losses)
        print(key, "mean SER", sum(sers.values()) / len(sers), "t", time.time() - t0, flush=True)
        dump()

    every = list(range(nf))
    online(every, 8, key="online_s1_phi8")
    online(every[::4], 8, key="online_s4_phi8")
    online(every, 8, lr=5e-3, key="online_s1_phi8_lr5e-3")
    online(every, 8, reset=True, key="online_s1_phi8_adamreset")
    online(every[::4], 8, lr=5e-3, key="online_s4_phi8_lr5e-3")
    f = nf // 2
    m, o = fresh()
    train(m, o, f, psi, torch.Generator().manual_seed(0))
    out["fresh"] = {f: ser(m, f)}
    print("fresh", f, out["fresh"][f], "frozen", out["frozen"][f], "mmse", out["mmse"][f], time.time() - t0, flush=True)
    dump()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], *(int(a) for a in args[1:3]), *args[3:4])
