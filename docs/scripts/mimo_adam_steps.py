"""How far Adam moves MMNet's weights on the first warm-started channel: the measurement behind
docs/MIMO.md's cause 1 (carried moments shrink the warm steps).

    python docs/scripts/mimo_adam_steps.py SET.safetensors

Psi = 1000 iterations from Algorithm 1's random start on subcarrier 0 of the set's first time step
(QAM16, 14-22 dB, batch 500, Adam 1e-3, seed 0), then 8 steps on subcarrier 1 at a step size of
1e-3 and 2e-2, with Adam's moments carried from subcarrier 0 or started afresh. Prints the mean
|change| of A's entries per step, their RMS move over the 8 steps, the gradient's RMS and the RMS
of sqrt(v) (Adam's second moment) at the end.
"""

from __future__ import annotations

import copy
import sys

import torch

from adasr.mimo import channels as C
from adasr.mimo import mmnet as M
from adasr.mimo.problem import constellation, to_real_matrix


def main(path: str) -> None:
    torch.set_num_threads(1)
    cs = C.load(path)
    mod = constellation("qam16")
    _, res = M.train_online(cs.h[:1, :1], mod, 14.0, 22.0, first=1000, keep_states=False)
    first = res.first_state
    hr = to_real_matrix(cs.h[0, 1])
    for lr in (1e-3, 2e-2):
        for reset in (False, True):
            model = M.MMNet("mmnet", cs.users, cs.antennas, 10)
            model.load_state_dict(first["model"])
            opt = torch.optim.Adam(model.parameters(), lr)
            if not reset:
                opt.load_state_dict(copy.deepcopy(first["adam"]))
                for group in opt.param_groups:
                    group["lr"] = lr
            g = torch.Generator()
            g.set_state(first["generator"])
            start = model.a_re.detach().clone()
            steps = []
            for _ in range(8):
                before = model.a_re.detach().clone()
                x, y, s2 = M._batch(hr, mod, 500, 14.0, 22.0, g)
                loss = M.loss_fn(model(y, hr, s2, mod), x)
                opt.zero_grad()
                loss.backward()
                grad = model.a_re.grad.detach().clone()
                opt.step()
                steps.append(float((model.a_re.detach() - before).abs().mean()))
            v = opt.state[model.a_re]["exp_avg_sq"]
            move = float((model.a_re.detach() - start).pow(2).mean().sqrt())
            print(f"step size {lr:g}, moments {'afresh' if reset else 'carried'}: mean |step| {sum(steps) / 8:.2e} "
                  f"(first {steps[0]:.2e}), move over 8 steps {move:.2e} RMS, gradient {grad.pow(2).mean().sqrt():.2e} "
                  f"RMS, sqrt(v) {v.mean().sqrt():.2e} RMS")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
