"""MMNet-iid (Eq. 3.11-3.12) and MMNet (Eq. 3.13-3.15), with offline training and the online
training of Algorithm 1 (warm start across subcarriers and time steps).

Each layer t: z_t = x_t + A_t (y - H x_t), x_{t+1} = eta(z_t; tau_t^2) with the Gaussian
denoiser of Eq. 3.5 per real coordinate. MMNet-iid: A_t = theta1_t H^T with a scalar theta2_t;
MMNet: A_t a free complex Nt x Nr matrix (stored as its real and imaginary parts, acting as
[[Re, -Im], [Im, Re]] on the real model) and a vector theta2_t of 2Nt scales, so a layer has
2 Nt (Nr + 1) parameters as in the thesis.

The denoiser's noise variance per real coordinate is
tau_t^2 = theta2_t / (2Nt) * (||I - A_t H||_F^2 / ||H||_F^2 * [||y - H x_t||^2 - Nr sigma^2]_+
                                 + ||A_t||_F^2 sigma^2 / 2),
Eq. 3.12/3.14 in the real model; the second term uses the noise variance per real coordinate
sigma^2 / 2 directly (the thesis divides it by ||H||_F^2 as well; theta2 absorbs either scale).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from adasr._atomic import atomic_path
from adasr._jsonfile import loads
from adasr.errors import ConfigError, InputError, ModelError
from adasr.mimo.problem import (
    Constellation,
    apply,
    apply_t,
    constellation,
    gaussian_denoiser,
    noise_var,
    to_real_matrix,
)

__all__ = ["DetNet", "KINDS", "MMNet", "OAMPNet", "OnlineResult", "SCHEMA", "build", "detect", "load", "loss_fn",
           "save", "train_offline", "train_online"]

SCHEMA = "adasr-mimo-mmnet/1"
KINDS = ("mmnet-iid", "mmnet", "oampnet", "detnet")


class MMNet(nn.Module):
    def __init__(self, kind: str, users: int, antennas: int, layers: int = 10, init_std: float = 0.01,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if kind not in KINDS[:2]:
            raise ConfigError(f"unknown MMNet kind {kind!r}; choose mmnet-iid, mmnet or oampnet")
        if not 1 <= layers <= 100:
            raise ConfigError(f"--layers must be 1 to 100, got {layers}")
        self.kind, self.users, self.antennas, self.layers = kind, users, antennas, layers
        if kind == "mmnet-iid":
            self.theta1 = nn.Parameter(torch.ones(layers))
            self.theta2 = nn.Parameter(torch.ones(layers, 1))
        else:
            shape = (layers, users, antennas)
            self.a_re = nn.Parameter(torch.randn(shape, generator=generator) * init_std)
            self.a_im = nn.Parameter(torch.randn(shape, generator=generator) * init_std)
            self.theta2 = nn.Parameter(torch.ones(layers, 2 * users))

    def config(self) -> dict[str, Any]:
        return dict(kind=self.kind, users=self.users, antennas=self.antennas, layers=self.layers)

    def _a(self, t: int, hr: torch.Tensor) -> torch.Tensor:
        if self.kind == "mmnet-iid":
            return self.theta1[t] * hr.transpose(-2, -1)
        re, im = self.a_re[t], self.a_im[t]
        return torch.cat([torch.cat([re, -im], -1), torch.cat([im, re], -1)], -2)

    def forward(self, y: torch.Tensor, hr: torch.Tensor, sigma2: torch.Tensor,
                mod: Constellation) -> list[torch.Tensor]:
        """Soft estimates x_1..x_T (each (B, 2Nt)) for y (B, 2Nr) over hr (2Nr, 2Nt) or (B, 2Nr, 2Nt)."""
        nr2, nt2 = hr.shape[-2], hr.shape[-1]
        if (nt2 // 2, nr2 // 2) != (self.users, self.antennas):
            raise ModelError(f"this MMNet is for {self.users} users x {self.antennas} antennas, "
                             f"not {nt2 // 2} x {nr2 // 2}")
        x = torch.zeros(y.shape[0], nt2, dtype=y.dtype, device=y.device)
        h_fro = hr.pow(2).sum((-2, -1))
        eye = torch.eye(nt2, dtype=y.dtype, device=y.device)
        s = (sigma2 / 2).unsqueeze(-1)                                  # (B, 1) per real coordinate
        outs = []
        iid = self.kind == "mmnet-iid"
        gram = hr.transpose(-2, -1) @ hr if iid else None               # H^T H, shared by the layers
        for t in range(self.layers):
            r = y - apply(hr, x)
            if iid:  # A_t = theta1_t H^T: no per-layer matrix products
                th = self.theta1[t]
                z = x + th * apply_t(hr, r)
                leak = (eye - th * gram).pow(2).sum((-2, -1)) / h_fro
                amp = th.pow(2) * h_fro
            else:
                a = self._a(t, hr)
                z = x + (r @ a.T if hr.dim() == 2 else torch.einsum("ij,bj->bi", a, r))
                leak = (eye - a @ hr).pow(2).sum((-2, -1)) / h_fro      # () or (B,)
                amp = a.pow(2).sum((-2, -1))
            resid = (r.pow(2).sum(-1, keepdim=True) - nr2 * s).clamp_min(0)
            tau2 = self.theta2[t] / nt2 * (leak.reshape(-1, 1) * resid + amp.reshape(-1, 1) * s)
            x, _ = gaussian_denoiser(z, tau2.clamp_min(1e-9), mod)
            outs.append(x)
        return outs


class OAMPNet(nn.Module):
    """OAMPNet (He et al., Eq. 3.10): OAMP's LMMSE-like linear step with a learned step gain
    gamma_t and a learned scale theta_t of the denoiser variance, 2 parameters a layer.
    Per layer and vector: v_t^2 = [||y - H x||^2 - Nr sigma^2]_+ / tr(H^T H) (floored),
    W_t = 2Nt / tr(W^ H) * W^, W^ = v^2 H^T (v^2 H H^T + sigma^2/2 I)^-1, z = x + gamma W (y - H x),
    tau^2 = tr(C C^T) v^2 / (2Nt) + theta^2 tr(W W^T) sigma^2/2 / (2Nt) with C = I - gamma W H.

    Computed exactly but without a matrix inverse per layer and vector: with H^T H = U diag(lam) U^T
    (one eigendecomposition per channel), W^ = U diag(v^2 / (v^2 lam + s)) U^T H^T (push-through
    identity, s = sigma^2 / 2), so tr(W^ H), ||C||_F^2 and ||W||_F^2 are sums over the eigenvalues.
    The multiplication count of Fig. 3-12 (`adasr.mimo.complexity`) is that of OAMPNet as defined,
    with its inverse per layer and vector."""

    def __init__(self, kind: str, users: int, antennas: int, layers: int = 10, **_: Any) -> None:
        super().__init__()
        if not 1 <= layers <= 100:
            raise ConfigError(f"--layers must be 1 to 100, got {layers}")
        self.kind, self.users, self.antennas, self.layers = "oampnet", users, antennas, layers
        self.gamma = nn.Parameter(torch.ones(layers))
        self.theta = nn.Parameter(torch.ones(layers))

    def config(self) -> dict[str, Any]:
        return dict(kind=self.kind, users=self.users, antennas=self.antennas, layers=self.layers)

    def forward(self, y, hr, sigma2, mod):
        nr2, nt2 = hr.shape[-2], hr.shape[-1]
        if (nt2 // 2, nr2 // 2) != (self.users, self.antennas):
            raise ModelError(f"this OAMPNet is for {self.users} users x {self.antennas} antennas, "
                             f"not {nt2 // 2} x {nr2 // 2}")
        b = y.shape[0]
        with torch.no_grad():  # the channel is data: its eigendecomposition needs no gradient
            lam, u = torch.linalg.eigh((hr.transpose(-2, -1) @ hr).double())
            lam, u = lam.clamp_min(0).to(y.dtype), u.to(y.dtype)      # (n,) / (n, n) or batched
        lam = lam.expand(b, nt2) if lam.dim() == 1 else lam
        tr_hth = lam.sum(-1)                                           # (B,)
        s = (sigma2 / 2).view(-1, 1)                                   # (B, 1)
        x = torch.zeros(b, nt2, dtype=y.dtype, device=y.device)
        outs = []
        for t in range(self.layers):
            r = y - apply(hr, x)
            v2 = ((r.pow(2).sum(-1) - nr2 * s.view(-1)) / tr_hth).clamp_min(1e-9).view(-1, 1)
            d = v2 / (v2 * lam + s)                                    # (B, n) eigenvalues of W^ H / lam
            c = nt2 / (d * lam).sum(-1, keepdim=True)                  # 2Nt / tr(W^ H)
            proj = apply_t(hr, r)                                      # H^T r
            coef = (proj @ u if u.dim() == 2 else torch.einsum("bij,bi->bj", u, proj)) * (c * d)
            z = x + self.gamma[t] * (coef @ u.T if u.dim() == 2 else torch.einsum("bij,bj->bi", u, coef))
            cc = (1 - self.gamma[t] * c * d * lam).pow(2).sum(-1)      # ||I - gamma W H||_F^2
            ww = (c.pow(2) * d.pow(2) * lam).sum(-1)                   # ||W||_F^2
            tau2 = (cc * v2.view(-1) + self.theta[t].pow(2) * ww * s.view(-1)) / nt2
            x, _ = gaussian_denoiser(z, tau2.view(-1, 1).clamp_min(1e-9), mod)
            outs.append(x)
        return outs


class DetNet(nn.Module):
    """DetNet (Samuel et al.), offline-trained, in the real model (n = 2Nt). Each layer
    q = x - d1 H^T y + d2 H^T H x, z = relu(W1 [H^T y; q; v] + b1), per real coordinate logits over
    the m PAM levels W2 z + b2 whose softmax gives the soft estimate (the one-hot output of DetNet's
    QAM version), v = W3 z + b3; x and v are mixed with the previous layer's as a residual
    (alpha = 0.9). Hidden sizes: z 8n, v 2n. Trained with the loss of Eq. 3.15 (the mean over
    layers of ||x_t - x||^2) rather than DetNet's log-weighted one."""

    alpha = 0.9

    def __init__(self, kind: str, users: int, antennas: int, layers: int = 10, levels: int = 4,
                 generator: torch.Generator | None = None, **_: Any) -> None:
        super().__init__()
        if not 1 <= layers <= 100:
            raise ConfigError(f"--layers must be 1 to 100, got {layers}")
        if levels not in (2, 4, 8):
            raise ConfigError(f"DetNet wants 2, 4 or 8 PAM levels, got {levels}")
        self.kind, self.users, self.antennas, self.layers, self.levels = "detnet", users, antennas, layers, levels
        n = 2 * users
        zdim, vdim = 8 * n, 2 * n
        self.d1 = nn.Parameter(torch.zeros(layers))
        self.d2 = nn.Parameter(torch.zeros(layers))
        self.w1 = nn.ModuleList(nn.Linear(2 * n + vdim, zdim) for _ in range(layers))
        self.w2 = nn.ModuleList(nn.Linear(zdim, n * levels) for _ in range(layers))
        self.w3 = nn.ModuleList(nn.Linear(zdim, vdim) for _ in range(layers))
        with torch.no_grad():
            self.d1.fill_(1.0)
            self.d2.fill_(1.0)

    def config(self) -> dict[str, Any]:
        return dict(kind=self.kind, users=self.users, antennas=self.antennas, layers=self.layers,
                    levels=self.levels)

    def forward(self, y, hr, sigma2, mod):
        nr2, nt2 = hr.shape[-2], hr.shape[-1]
        if (nt2 // 2, nr2 // 2) != (self.users, self.antennas) or len(mod.levels) != self.levels:
            raise ModelError(f"this DetNet is for {self.users} users x {self.antennas} antennas and "
                             f"{self.levels} PAM levels, not {nt2 // 2} x {nr2 // 2} and {len(mod.levels)}")
        b = y.shape[0]
        levels = mod.levels.to(y.device, y.dtype)
        hty = apply_t(hr, y)
        x = torch.zeros(b, nt2, dtype=y.dtype, device=y.device)
        v = torch.zeros(b, 2 * nt2, dtype=y.dtype, device=y.device)
        outs = []
        for t in range(self.layers):
            q = x - self.d1[t] * hty + self.d2[t] * apply_t(hr, apply(hr, x))
            z = torch.relu(self.w1[t](torch.cat([hty, q, v], -1)))
            logits = self.w2[t](z).view(b, nt2, self.levels)
            x_new = (torch.softmax(logits, -1) * levels).sum(-1)
            x = self.alpha * x_new + (1 - self.alpha) * x
            v = self.alpha * self.w3[t](z) + (1 - self.alpha) * v
            outs.append(x)
        return outs


def build(kind: str, users: int, antennas: int, layers: int = 10, generator=None, levels: int = 4) -> nn.Module:
    if kind == "oampnet":
        return OAMPNet(kind, users, antennas, layers)
    if kind == "detnet":
        return DetNet(kind, users, antennas, layers, levels=levels)
    return MMNet(kind, users, antennas, layers, generator=generator)


def loss_fn(outs: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Eq. 3.15: the mean over layers of ||x_t - x||^2 (averaged over the batch)."""
    return torch.stack([(o - x).pow(2).sum(-1).mean() for o in outs]).mean()


def detect(model: nn.Module, y, hr, sigma2, mod) -> torch.Tensor:
    with torch.no_grad():
        return mod.quantize(model(y, hr, sigma2, mod)[-1])


def _batch(hr: torch.Tensor, mod: Constellation, batch: int, snr_lo: float, snr_hi: float,
           generator: torch.Generator):
    """One training batch on channel(s) hr, SNR (dB) uniform in [snr_lo, snr_hi] per sample."""
    device, dtype = hr.device, hr.dtype
    snr = snr_lo + (snr_hi - snr_lo) * torch.rand(batch, generator=generator).to(device, dtype)
    x = mod.sample((batch, hr.shape[-1]), generator=generator).to(device, dtype)
    sigma2 = noise_var(hr, snr)
    n = torch.randn((batch, hr.shape[-2]), generator=generator).to(device, dtype)
    y = apply(hr, x) + n * (sigma2 / 2).sqrt().unsqueeze(-1)
    return x, y, sigma2


def _check_snr_range(snr_lo: float, snr_hi: float) -> None:
    if not (math.isfinite(snr_lo) and math.isfinite(snr_hi)) or snr_lo > snr_hi:
        raise ConfigError(f"training SNR range must be LOW <= HIGH (dB), got {snr_lo:g}..{snr_hi:g}")


def train_offline(model: nn.Module, mod: Constellation, snr_lo: float, snr_hi: float, steps: int, batch: int = 500,
                  lr: float = 1e-3, seed: int = 0, device: str = "cpu", channel: str = "iid",
                  pool: torch.Tensor | None = None, progress=None) -> list[float]:
    """Train on a fresh i.i.d. channel per sample every step (the thesis's MMNet-iid recipe), or
    on channels drawn from `pool` (complex (N, Nr, Nt)) when given. Returns the loss per step."""
    from adasr.mimo.channels import _cn

    _check_snr_range(snr_lo, snr_hi)
    g = torch.Generator().manual_seed(seed)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        if pool is not None:
            idx = torch.randint(pool.shape[0], (batch,), generator=g)
            h = pool[idx]
        else:
            h = _cn((batch, model.antennas, model.users), g, 1.0 / model.antennas)
        hr = to_real_matrix(h).to(device)
        x, y, sigma2 = _batch(hr, mod, batch, snr_lo, snr_hi, g)
        loss = loss_fn(model(y, hr, sigma2, mod), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step + 1, steps, losses[-1])
    return losses


@dataclass
class OnlineResult:
    iterations: list[int] = field(default_factory=list)          # training iterations per channel
    first_loss: list[float] = field(default_factory=list)        # loss of the first batch per channel
    last_loss: list[float] = field(default_factory=list)
    states: list[dict[str, torch.Tensor]] = field(default_factory=list)  # M_n[f], if kept
    index: list[tuple[int, int]] = field(default_factory=list)   # (n, f) of each channel
    first_state: dict[str, Any] | None = None  # weights, Adam and sample generator after channel (0, 0)


def train_online(h: torch.Tensor, mod: Constellation, snr_lo: float, snr_hi: float, *, first: int = 1000,
                 next_iters: int = 8, time_iters: int | None = None, batch: int = 500, lr: float = 1e-3,
                 layers: int = 10, warm: bool = True, seed: int = 0, device: str = "cpu", keep_states: bool = True,
                 on_channel=None, model: MMNet | None = None, init: str = "random",
                 next_lr: float | None = None, first_state: dict[str, Any] | None = None,
                 transport: bool = False, reset_adam: bool = False) -> tuple[MMNet, OnlineResult]:
    """Algorithm 1 over channels h (T, F, Nr, Nt) complex: for each time step n and subcarrier f,
    train `first` (Psi) iterations at f = 0 (`time_iters` instead for n > 0 if given) and
    `next_iters` (Phi) at each next f, starting from the weights of the previous channel
    (warm=False re-initialises the network for every channel, as the public MMNet code does).
    `next_lr` (default `lr`) is Adam's step size on every channel after the first (warm start).
    `on_channel(n, f, model, hr)` runs after each channel's training (e.g. to measure SER).

    The result's `first_state` holds the weights, Adam's state and the sample generator's state
    after the first channel; passed back as `first_state` (same `h[0, 0]`, `first`, `lr`, `seed`)
    it replaces that channel's training, so runs that differ only after the first channel (a
    sweep over Phi) share its Psi iterations and give the same result as running from scratch.

    `transport=True` (not in the thesis) maps the warm start to each new channel before its
    training: every layer's A becomes A H_prev H^+ (complex, H^+ the Nt x Nr pseudo-inverse), the
    smallest A' with A' H = A H_prev (H of full column rank): the layer acts on the signal part of
    the new channel's residual as it did on the previous channel, and only its action on the
    noise changes. One pseudo-inverse per channel, no change to detection.

    `reset_adam=True` (not in the thesis) starts Adam's moments afresh on every channel after the
    first (after the transport, if any): the first of its Phi steps then moves each weight by the
    full step size whatever the scale of the gradients seen on earlier channels."""
    _check_snr_range(snr_lo, snr_hi)
    if h.dim() != 4:
        raise ConfigError("online training wants channels of shape (T, F, Nr, Nt)")
    steps, carriers, nr, nt = h.shape
    g = torch.Generator().manual_seed(seed)
    init_g = torch.Generator().manual_seed(seed + 1)
    if init not in ("random", "mf"):
        raise ConfigError(f"unknown MMNet initialisation {init!r}; choose random or mf")
    if model is None:
        model = MMNet("mmnet", nt, nr, layers, generator=init_g)
        if init == "mf":  # every layer starts as the matched filter H^H of the first channel
            with torch.no_grad():
                model.a_re.copy_(h[0, 0].real.T.expand(layers, nt, nr))
                model.a_im.copy_(-h[0, 0].imag.T.expand(layers, nt, nr))
    model = model.to(device)
    initial = copy.deepcopy(model.state_dict())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    result = OnlineResult()
    if transport and model.kind != "mmnet":
        raise ConfigError("transport applies to MMNet's free matrices A_t (kind mmnet)")
    prev = None
    for n in range(steps):
        for f in range(carriers):
            if not warm and (n, f) != (0, 0):
                model.load_state_dict(initial)
                opt = torch.optim.Adam(model.parameters(), lr=lr)
            if transport and warm and prev is not None:
                _transport(model, prev, h[n, f].to(device))
            if reset_adam and warm and (n, f) != (0, 0):
                opt = torch.optim.Adam(model.parameters(), lr=lr)
            prev = h[n, f].to(device)
            if f == 0:
                iters = first if (n == 0 or time_iters is None or not warm) else time_iters
            else:
                iters = next_iters if warm else first
            step = lr if (n, f) == (0, 0) or not warm or next_lr is None else next_lr
            for group in opt.param_groups:
                group["lr"] = step
            hr = to_real_matrix(h[n, f]).to(device)
            losses = []
            if (n, f) == (0, 0) and first_state is not None:
                model.load_state_dict(first_state["model"])
                opt.load_state_dict(copy.deepcopy(first_state["adam"]))  # Adam updates its state in place
                g.set_state(first_state["generator"])
                losses, iters = list(first_state["losses"]), len(first_state["losses"])
            for _ in range(iters - len(losses)):
                x, y, sigma2 = _batch(hr, mod, batch, snr_lo, snr_hi, g)
                loss = loss_fn(model(y, hr, sigma2, mod), x)
                opt.zero_grad()
                loss.backward()
                opt.step()
                losses.append(float(loss.detach()))
            if (n, f) == (0, 0):
                result.first_state = dict(model=copy.deepcopy(model.state_dict()),
                                          adam=copy.deepcopy(opt.state_dict()), generator=g.get_state(),
                                          losses=list(losses))
            result.iterations.append(iters)
            result.first_loss.append(losses[0] if losses else float("nan"))
            result.last_loss.append(losses[-1] if losses else float("nan"))
            result.index.append((n, f))
            if keep_states:
                result.states.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            if on_channel is not None:
                on_channel(n, f, model, hr)
    return model, result


def _transport(model: MMNet, h_prev: torch.Tensor, h_new: torch.Tensor) -> None:
    """A <- A H_prev H_new^+ for every layer (complex), in place: A' H_new = A H_prev, and A' has
    no part outside the range of H_new (such a part would only pass noise)."""
    with torch.no_grad():
        a = torch.complex(model.a_re, model.a_im).to(torch.complex128)   # (L, Nt, Nr)
        move = h_prev.to(torch.complex128) @ torch.linalg.pinv(h_new.to(torch.complex128))  # (Nr, Nr)
        a = a @ move
        model.a_re.copy_(a.real.to(model.a_re.dtype))
        model.a_im.copy_(a.imag.to(model.a_im.dtype))


# -- checkpoints -----------------------------------------------------------------------------------

def save(model: MMNet, path: str | Path, mod: Constellation, extra: dict[str, Any] | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"an MMNet checkpoint is a .safetensors file, got {path.name}")
    meta = dict(model.config(), schema=SCHEMA, modulation=mod.name, **(extra or {}))
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"adasr_mimo": json.dumps(meta, sort_keys=True)})
    return path


def load(path: str | Path, device: str = "cpu") -> tuple[MMNet, dict[str, Any]]:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"MMNet checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = loads((f.metadata() or {}).get("adasr_mimo", "null"), "header", ModelError)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path} is not a readable MMNet checkpoint ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise ModelError(f"{path} is not an adasr MMNet checkpoint (schema {SCHEMA} missing)")
    try:
        model = build(meta["kind"], int(meta["users"]), int(meta["antennas"]), int(meta["layers"]),
                      levels=int(meta.get("levels", 4)))
        model.load_state_dict(tensors)
        constellation(meta["modulation"])
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError) as exc:
        raise ModelError(f"{path}: the checkpoint does not match its description ({exc})") from None
    return model.to(device), meta
