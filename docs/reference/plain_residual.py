"""A plain PyTorch x2 residual network trained without adasr's trainer: the reference that
docs/BENCHMARKS.md section 9 ("The trainer against a plain PyTorch loop") checks the trainer
against. Only adasr's data (the protocol's MATLAB-bicubic LR patches) and evaluation are used.

    python docs/reference/plain_residual.py STEPS PATCH MINUTES [WIDTH BLOCKS [THREADS]]

e.g. ``43000 16 12.5`` trains width 16, two residual blocks (11,468 parameters): head conv,
blocks of conv-ReLU-conv plus identity, a conv to 3*s*s channels, pixel shuffle, plus the bicubic
upsampling of the input. Adam 1e-3 with a cosine schedule, L1, batch 16, EMA 0.999; prints the
EMA weights' Set5 PSNR-Y at the end. Run from the repository root with ../shared beside it.
"""

import math
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

from adasr.data.datasets import PatchSampler, load_image_pairs
from adasr.evaluation import evaluate
from adasr.nn.upsample import bicubic_up

SCALE = 2


class Plain(nn.Module):
    def __init__(self, width: int, blocks: int, scale: int = SCALE):
        super().__init__()
        self.scale = scale
        self.head = nn.Conv2d(3, width, 3, padding=1)
        self.body = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                          nn.Conv2d(width, width, 3, padding=1)) for _ in range(blocks))
        self.up = nn.Conv2d(width, 3 * scale * scale, 3, padding=1)

    def forward(self, x):
        y = self.head(x)
        for block in self.body:
            y = y + block(y)
        return F.pixel_shuffle(self.up(y), self.scale) + bicubic_up(x, self.scale)


def main(argv):
    steps, patch, minutes = int(argv[0]), int(argv[1]), float(argv[2])
    width, blocks = (int(argv[3]), int(argv[4])) if len(argv) > 4 else (16, 2)
    torch.set_num_threads(int(argv[5]) if len(argv) > 5 else 1)
    torch.manual_seed(0)
    net = Plain(width, blocks)
    ema = Plain(width, blocks)
    ema.load_state_dict(net.state_dict())
    print("parameters", sum(p.numel() for p in net.parameters()))
    sampler = PatchSampler(load_image_pairs("../shared/data/train/SunHays80", SCALE), SCALE, patch, 16)
    optim = torch.optim.Adam(net.parameters(), 1e-3)
    gen, start, step = torch.Generator(), time.time(), 0
    for step in range(steps):
        gen.manual_seed(step)
        lr, hr = sampler.batch(gen)
        for group in optim.param_groups:
            group["lr"] = 0.5e-3 * (1 + math.cos(math.pi * step / steps))
        loss = (net(lr) - hr).abs().mean()
        optim.zero_grad()
        loss.backward()
        optim.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for e, p in zip(ema.parameters(), net.parameters()):
                e.lerp_(p, 1 - decay)
        if time.time() - start > minutes * 60:
            break
    print(f"steps {step + 1}, {(time.time() - start) / 60:.1f} min")
    ema.eval()
    print("Set5", evaluate(ema, load_image_pairs("../shared/data/benchmarks/Set5", SCALE), SCALE, with_ssim=False).psnr)


if __name__ == "__main__":
    main(sys.argv[1:])
