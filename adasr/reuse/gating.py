"""Model selection: the gating network (RECL section 6.3.1/6.3.3) and its foils.

* `GatingNet` - a small CNN on an LR frame with one output per zoo expert: the predicted PSNR
  gain (dB) of that expert over the base on the frame. The head grows when experts are added:
  the new output rows are drawn from the mean and standard deviation of the existing rows (per
  weight), and the old rows are left as they were, so old experts' outputs do not change.
* `FrameMemory` - the labelled frames the selector learns from: LR/HR frames plus the measured
  gain of every expert on each (new frames are labelled by every expert, old frames by the new
  experts); capped, old frames sub-sampled to make room for new ones.
* Selectors, all `select(lr_frames, k) -> [expert id]` and `update(memory, zoo, new)`:
  `GatingSelector` (RECL: top-K by the mean predicted gain over the window's frames),
  `ExhaustiveSelector` (every expert: the safety checker tests the whole zoo),
  `EmbeddingSelector` (ODIN: an autoencoder's embedding, nearest expert by L2).
"""

from __future__ import annotations

import hashlib
import os
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from adasr._atomic import ensure_dir, write_bytes_atomic
from adasr._jsonfile import read_json, write_json
from adasr.errors import ConfigError, ModelError
from adasr.reuse.quality import ExpertEvaluator, to_tensor

__all__ = ["EmbeddingSelector", "ExhaustiveSelector", "FrameMemory", "GATE_HW", "GatingNet", "GatingSelector",
           "SELECTORS", "gate_input", "make_selector"]

SELECTORS = ("gating", "exhaustive", "autoencoder")
GATE_FORMAT = "adasr-gate"
GATE_SCHEMA_VERSION = 1
GATE_JSON = "gate.json"
MAX_GATE_OUTPUTS = 10_000
GATE_HW = (48, 80)  # LR frames are resized (area) to this before the selectors see them


def gate_input(lr: np.ndarray | torch.Tensor, hw: tuple[int, int] = GATE_HW) -> torch.Tensor:
    """(N, 3, h, w) float input of the selectors from uint8 (N, H, W, 3) frames or a float tensor."""
    x = to_tensor(lr) if isinstance(lr, np.ndarray) else lr
    return F.interpolate(x, size=hw, mode="area") if tuple(x.shape[2:]) != hw else x


def _features(width: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(inplace=True),
        nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(inplace=True),
        nn.Conv2d(2 * width, 2 * width, 3, 2, 1), nn.ReLU(inplace=True),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )


class GatingNet(nn.Module):
    """LR frame (N, 3, h, w) -> (N, experts) predicted PSNR gain over the base, in dB."""

    def __init__(self, width: int = 16, seed: int = 0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng():
            torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
            self.features = _features(width)
        self.dim = 2 * width
        self.weight = nn.Parameter(torch.zeros(0, self.dim))
        self.bias = nn.Parameter(torch.zeros(0))
        self.ids: list[str] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # an elementwise product and a per-output sum rather than one matmul: BLAS may block a
        # matmul differently when the head grows, and old outputs must stay bit-identical
        f = self.features(x)
        return (f[:, None, :] * self.weight[None]).sum(-1) + self.bias

    def grow(self, ids: Sequence[str], gen: torch.Generator) -> None:
        """Add one output per id: rows ~ N(mean, std) of the existing rows, old rows untouched."""
        n = len(ids)
        if not n:
            return
        w, b = self.weight.detach(), self.bias.detach()
        if w.shape[0] >= 2:
            wm, ws = w.mean(0), w.std(0)
            bm, bs = b.mean(), b.std()
        elif w.shape[0] == 1:  # one row has no spread: take the spread of its entries
            wm, ws = w[0], w[0].std().expand(self.dim) * 0.5
            bm, bs = b[0], torch.tensor(0.0)
        else:  # the first experts: a fan-in scaled start around a zero gain
            wm, ws = torch.zeros(self.dim), torch.full((self.dim,), self.dim ** -0.5)
            bm, bs = torch.tensor(0.0), torch.tensor(0.0)
        new_w = wm + ws * torch.randn(n, self.dim, generator=gen)
        new_b = bm + bs * torch.randn(n, generator=gen)
        self.weight = nn.Parameter(torch.cat([w, new_w]))
        self.bias = nn.Parameter(torch.cat([b, new_b]))
        self.ids = self.ids + list(ids)

    def keep(self, ids: Sequence[str]) -> None:
        """Drop the outputs of every expert not in `ids` (pruning); the others stay as they were."""
        rows = [i for i, e in enumerate(self.ids) if e in set(ids)]
        self.weight = nn.Parameter(self.weight.detach()[rows].clone())
        self.bias = nn.Parameter(self.bias.detach()[rows].clone())
        self.ids = [self.ids[i] for i in rows]


class FrameMemory:
    """Labelled frames for the selectors: gate inputs, LR/HR tensors and the gain table.

    `gains[expert][i]`: PSNR of the expert minus PSNR of the base on frame i (dB)."""

    def __init__(self, capacity: int = 64, seed: int = 0) -> None:
        if not 1 <= capacity <= 10_000:
            raise ConfigError(f"frame memory capacity must be in [1, 10000], got {capacity}")
        self.capacity = capacity
        self.rng = random.Random(seed)
        self.lr: list[torch.Tensor] = []
        self.hr: list[torch.Tensor] = []
        self.base_psnr: list[float] = []
        self.gains: dict[str, list[float]] = {}

    def __len__(self) -> int:
        return len(self.lr)

    def add(self, lr: np.ndarray, hr: np.ndarray, evaluator: ExpertEvaluator, experts: dict[str, torch.Tensor],
            new: dict[str, torch.Tensor]) -> None:
        """Label frames (lr, hr) with every expert, label the kept old frames with the `new` ones.

        `experts`: id -> vector of the zoo as it will be (old and new)."""
        x, y = to_tensor(lr), to_tensor(hr)
        room = self.capacity - x.shape[0]
        if room < len(self.lr):  # sub-sample the old frames to keep the memory's size
            keep = sorted(self.rng.sample(range(len(self.lr)), max(0, room)))
            self.lr = [self.lr[i] for i in keep]
            self.hr = [self.hr[i] for i in keep]
            self.base_psnr = [self.base_psnr[i] for i in keep]
            self.gains = {k: [v[i] for i in keep] for k, v in self.gains.items()}
        x, y = x[:self.capacity], y[:self.capacity]
        for eid in list(self.gains):
            if eid not in experts:
                del self.gains[eid]
        if self.lr and new:  # old frames, new experts (frames of one size at a time: streams differ)
            base = torch.tensor(self.base_psnr, dtype=torch.float64)
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, t in enumerate(self.lr):
                groups.setdefault(tuple(t.shape), []).append(i)
            for eid, vec in new.items():
                g = torch.empty(len(self.lr), dtype=torch.float64)
                for rows in groups.values():
                    ox = torch.stack([self.lr[i] for i in rows])
                    oy = torch.stack([self.hr[i] for i in rows])
                    g[rows] = evaluator.psnr(vec, ox, oy).to(torch.float64) - base[rows]
                self.gains[eid] = g.tolist()
        base_new = evaluator.psnr(evaluator.base.vector, x, y)
        for eid, vec in experts.items():  # new frames, every expert
            g = (evaluator.psnr(vec, x, y) - base_new).tolist()
            self.gains.setdefault(eid, []).extend(g)
        self.lr.extend(x.unbind(0))
        self.hr.extend(y.unbind(0))
        self.base_psnr.extend(base_new.tolist())

    def table(self, ids: Sequence[str]) -> torch.Tensor:
        """(frames, len(ids)) gains, columns in `ids` order."""
        return torch.tensor([self.gains[e] for e in ids], dtype=torch.float32).T.reshape(len(self), len(ids))


class GatingSelector:
    """RECL: a `GatingNet` trained on the memory's gain table; top-K by mean predicted gain."""

    name = "gating"

    def __init__(self, width: int = 16, steps: int = 60, batch: int = 16, lr: float = 3e-3, seed: int = 0) -> None:
        self.net = GatingNet(width, seed)
        self.steps, self.batch, self.lr = steps, batch, lr
        self.gen = torch.Generator().manual_seed(seed + 1)
        self.updates = 0

    @torch.inference_mode()
    def scores(self, lr: np.ndarray) -> dict[str, float]:
        """Mean predicted gain of each expert over the frames."""
        if not self.net.ids:
            return {}
        s = self.net.eval()(gate_input(lr)).mean(0).tolist()
        return dict(zip(self.net.ids, s))

    def select(self, lr: np.ndarray, k: int) -> list[str]:
        s = self.scores(lr)
        return sorted(s, key=lambda e: -s[e])[:k]

    def update(self, memory: FrameMemory, ids: Sequence[str], new: Sequence[str]) -> None:
        """Follow the zoo (`ids`, in zoo order; `new` just added): prune, grow, train."""
        self.net.keep([e for e in self.net.ids if e in set(ids)])
        self.net.grow([e for e in new if e not in self.net.ids], self.gen)
        if not self.net.ids or not len(memory):
            return
        x = torch.stack([gate_input(t[None])[0] for t in memory.lr])
        y = memory.table(self.net.ids)
        opt = torch.optim.Adam(self.net.parameters(), lr=self.lr)
        self.net.train()
        for _ in range(self.steps):
            idx = torch.randint(0, x.shape[0], (min(self.batch, x.shape[0]),), generator=self.gen)
            loss = F.mse_loss(self.net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.net.eval()
        self.updates += 1

    # -- persistence (next to a zoo: gate.json + gate-<sha12>.safetensors, never pickle) --

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write the net's weights and expert ids into `folder`; returns the gate.json path."""
        from safetensors.torch import save

        folder = ensure_dir(folder)
        if not self.net.ids:  # no outputs yet: nothing worth keeping (a fresh gate is the same)
            (folder / GATE_JSON).unlink(missing_ok=True)
            for old in folder.glob("gate-*.safetensors"):
                old.unlink(missing_ok=True)
            return folder / GATE_JSON
        tensors = {k: v.detach().contiguous().clone() for k, v in self.net.state_dict().items()}
        data = save(tensors, metadata={"format": GATE_FORMAT})
        digest = hashlib.sha256(data).hexdigest()
        name = f"gate-{digest[:12]}.safetensors"
        write_bytes_atomic(folder / name, data)
        write_json(folder / GATE_JSON, {"format": GATE_FORMAT, "schema_version": GATE_SCHEMA_VERSION,
                                        "width": self.net.dim // 2, "ids": list(self.net.ids),
                                        "updates": self.updates, "tensors": {"file": name, "sha256": digest}})
        for old in folder.glob("gate-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)
        return folder / GATE_JSON

    def load(self, folder: str | os.PathLike[str]) -> bool:
        """Take the weights saved by `save` in `folder`; False if there are none (a fresh gate stays).

        A damaged gate (bad JSON, checksum, shapes, non-finite weights) is refused with one
        ModelError line; the net is only replaced once everything has been checked."""


        folder = Path(folder)
        if not (folder / GATE_JSON).is_file():
            return False
        doc = read_json(folder / GATE_JSON, "gating network")
        where = f"{folder}: damaged gating network"
        try:
            if doc["format"] != GATE_FORMAT or doc["schema_version"] != GATE_SCHEMA_VERSION:
                raise ModelError(f"{where}: format {str(doc['format'])[:40]!r}, schema {doc['schema_version']!r} "
                                 f"(this adasr reads {GATE_FORMAT} schema {GATE_SCHEMA_VERSION})")
            width, ids = int(doc["width"]), [str(i) for i in doc["ids"]]
            updates = int(doc.get("updates", 0))
            name, digest = str(doc["tensors"]["file"]), str(doc["tensors"]["sha256"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where}: gate.json lacks or mangles {exc}") from None
        if not 1 <= width <= 256 or len(ids) > MAX_GATE_OUTPUTS or len(set(ids)) != len(ids):
            raise ModelError(f"{where}: width {width} or {len(ids)} expert ids out of bounds or repeated")
        from adasr.reuse.zoo import read_checked_tensors

        tensors = read_checked_tensors(folder, name, digest, "gate", 64 << 20, "gating network tensors", where)
        net = GatingNet(width)
        net.weight = nn.Parameter(torch.zeros(len(ids), net.dim))
        net.bias = nn.Parameter(torch.zeros(len(ids)))
        want = net.state_dict()
        if set(tensors) != set(want) or any(tensors[k].shape != want[k].shape or tensors[k].dtype != want[k].dtype
                                            for k in want):
            raise ModelError(f"{where}: its tensors do not fit a gating network of width {width} "
                             f"with {len(ids)} outputs")
        if not all(bool(torch.isfinite(t).all()) for t in tensors.values()):
            raise ModelError(f"{where}: non-finite weights")
        net.load_state_dict(tensors)
        net.ids = ids
        self.net = net.eval()
        self.updates = max(0, min(updates, 1 << 40))
        return True


class ExhaustiveSelector:
    """The oracle's selector: every expert goes to the safety checker (cost grows with the zoo)."""

    name = "exhaustive"

    def __init__(self) -> None:
        self.ids: list[str] = []

    def select(self, lr: np.ndarray, k: int) -> list[str]:
        return list(self.ids)

    def update(self, memory: FrameMemory, ids: Sequence[str], new: Sequence[str]) -> None:
        self.ids = list(ids)


class _AutoEncoder(nn.Module):
    def __init__(self, width: int, dim: int) -> None:
        super().__init__()
        self.enc = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, dim, 3, 2, 1))
        self.dec = nn.Sequential(
            nn.ConvTranspose2d(dim, 2 * width, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1), nn.ReLU(inplace=True),
            nn.ConvTranspose2d(width, 3, 4, 2, 1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.enc(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


class EmbeddingSelector:
    """ODIN's selector: autoencoder embeddings; the expert whose training frames' mean embedding
    is nearest (L2) to the window's mean embedding. The autoencoder is retrained on the memory's
    frames whenever the zoo changes (it learns what frames look like, not which expert fits)."""

    name = "autoencoder"

    def __init__(self, width: int = 16, dim: int = 32, steps: int = 60, batch: int = 16, lr: float = 3e-3,
                 seed: int = 0) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.ae = _AutoEncoder(width, dim)
        self.steps, self.batch, self.lr = steps, batch, lr
        self.gen = torch.Generator().manual_seed(seed + 2)
        self.frames: dict[str, torch.Tensor] = {}  # expert -> its training frames' gate inputs
        self.centres: dict[str, torch.Tensor] = {}

    def add_frames(self, expert_id: str, lr: np.ndarray) -> None:
        self.frames[expert_id] = gate_input(lr)

    @torch.inference_mode()
    def select(self, lr: np.ndarray, k: int) -> list[str]:
        if not self.centres:
            return []
        e = self.ae.eval().embed(gate_input(lr)).mean(0)
        d = {i: float(((c - e) ** 2).sum()) for i, c in self.centres.items()}
        return sorted(d, key=d.get)[:1]  # ODIN returns the nearest expert only

    def update(self, memory: FrameMemory, ids: Sequence[str], new: Sequence[str]) -> None:
        self.frames = {i: f for i, f in self.frames.items() if i in set(ids)}
        if len(memory):
            x = torch.stack([gate_input(t[None])[0] for t in memory.lr])
            opt = torch.optim.Adam(self.ae.parameters(), lr=self.lr)
            self.ae.train()
            for _ in range(self.steps):
                idx = torch.randint(0, x.shape[0], (min(self.batch, x.shape[0]),), generator=self.gen)
                loss = F.mse_loss(self.ae(x[idx]), x[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.ae.eval()
        with torch.inference_mode():
            self.centres = {i: self.ae.embed(f).mean(0) for i, f in self.frames.items()}


def make_selector(name: str, seed: int = 0, steps: int = 60):
    if name == "gating":
        return GatingSelector(steps=steps, seed=seed)
    if name == "exhaustive":
        return ExhaustiveSelector()
    if name == "autoencoder":
        return EmbeddingSelector(steps=steps, seed=seed)
    raise ConfigError(f"unknown selector {name!r}; choose one of {', '.join(SELECTORS)}")
