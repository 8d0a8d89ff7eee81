"""Channel sets: i.i.d. Gaussian, Kronecker with exponential correlation, 3GPP TR 38.901 UMa
from Sionna, and cached sets on disk.

A channel set is complex tensor H of shape (T, F, Nr, Nt): T time steps, F subcarriers. The
synthetic models have no physical time/frequency axis; `rho_t` / `rho_f` give them first-order
Gauss-Markov correlation along T and F (0 = independent draws), so that online training with a
warm start can be exercised on them too. Every model keeps E||H[:, k]||^2 = 1 per user (columns
CN(0, I/Nr) for i.i.d.).

On disk a set is one safetensors file (tensors h_real, h_imag) whose metadata holds the JSON
description (model, sizes, seed, parameters); a readable copy is written beside it as .json.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adasr._atomic import atomic_path
from adasr._jsonfile import loads
from adasr.errors import ConfigError, InputError
from adasr.mimo.problem import MAX_CHANNEL_VALUES, check_channels, check_size

__all__ = ["ChannelSet", "KINDS", "SCHEMA", "correlation", "exp_corr", "load", "make", "save", "synthetic", "uma"]

SCHEMA = "adasr-mimo-channels/1"
KINDS = ("iid", "corr", "uma")


@dataclass
class ChannelSet:
    h: torch.Tensor                 # (T, F, Nr, Nt) complex64
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def antennas(self) -> int:
        return self.h.shape[-2]

    @property
    def users(self) -> int:
        return self.h.shape[-1]

    def flat(self) -> torch.Tensor:
        return self.h.reshape(-1, self.antennas, self.users)


def _cn(shape, generator, scale: float) -> torch.Tensor:
    re = torch.randn(shape, generator=generator)
    im = torch.randn(shape, generator=generator)
    return torch.complex(re, im) * math.sqrt(scale / 2)


def exp_corr(n: int, rho: float) -> torch.Tensor:
    """Exponential correlation matrix R[i, j] = rho^|i-j| (real, 0 <= rho < 1)."""
    idx = torch.arange(n)
    return torch.as_tensor(rho, dtype=torch.float64) ** (idx[:, None] - idx[None, :]).abs().to(torch.float64)


def _sqrtm(r: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(r)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def _markov(steps: int, carriers: int, draw, rho_t: float, rho_f: float) -> torch.Tensor:
    rows = []
    prev_first = None
    for _ in range(steps):
        first = draw() if prev_first is None else rho_t * prev_first + math.sqrt(1 - rho_t ** 2) * draw()
        prev_first = first
        row = [first]
        for _ in range(carriers - 1):
            row.append(rho_f * row[-1] + math.sqrt(1 - rho_f ** 2) * draw())
        rows.append(torch.stack(row))
    return torch.stack(rows)


def synthetic(kind: str, users: int, antennas: int, steps: int = 1, carriers: int = 1, seed: int = 0,
              rho: float = 0.7, rho_tx: float | None = None, rho_t: float = 0.0, rho_f: float = 0.0) -> ChannelSet:
    """'iid': columns CN(0, I/Nr). 'corr': Kronecker R_r^1/2 G R_t^1/2 with exponential
    correlation rho at the receiver (rho_tx at the users, default 0 = uncorrelated users)."""
    check_size(users, antennas)
    if kind not in ("iid", "corr"):
        raise ConfigError(f"unknown synthetic channel {kind!r}; choose iid or corr")
    for name, v in (("rho", rho), ("rho-t", rho_t), ("rho-f", rho_f), ("rho-tx", rho_tx or 0.0)):
        if not 0 <= v < 1:
            raise ConfigError(f"--{name} must be at least 0 and below 1, got {v:g}")
    check_size(users, antennas, steps, carriers)
    g = torch.Generator().manual_seed(seed)
    draw = lambda: _cn((antennas, users), g, 1.0 / antennas)  # noqa: E731
    h = _markov(steps, carriers, draw, rho_t, rho_f)
    meta: dict[str, Any] = dict(model=kind, seed=seed, rho_t=rho_t, rho_f=rho_f)
    if kind == "corr":
        rr = _sqrtm(exp_corr(antennas, rho)).to(torch.complex64)
        rt = _sqrtm(exp_corr(users, rho_tx or 0.0)).to(torch.complex64)
        h = rr @ h @ rt
        meta.update(rho=rho, rho_tx=rho_tx or 0.0)
    meta.update(users=users, antennas=antennas, steps=steps, carriers=carriers)
    return ChannelSet(h.to(torch.complex64), meta)


# -- 3GPP TR 38.901 UMa NLOS (Sionna) ------------------------------------------------------------

def uma(*args: Any, **kwargs: Any) -> ChannelSet:
    """`_uma` with the caller's global torch random state left as it was (Sionna reseeds it)."""
    with torch.random.fork_rng(devices=[]):
        return _uma(*args, **kwargs)


def _uma(users: int, steps: int = 10, carriers: int = 256, seed: int = 0, carrier_frequency: float = 2.53e9,
        bandwidth: float = 20e6, fft_size: int = 1024, speed: float = 1.0, radius: float = 500.0,
        stride: int = 4, offset: int = 0, drops: int = 1, device: str = "cpu") -> ChannelSet:
    """The thesis's set-up as far as Sionna's UMa model allows: one 120-degree sector of radius
    `radius` m (guard 10 m, BS at 25 m), a 64-port BS (8 x 4 cross-polarised 38.901 panel),
    single-antenna omni users, all outdoor and NLOS, moving at `speed` m/s; channel sampled every
    lambda/4 of travel for `steps` steps, OFDM with `fft_size` subcarriers over `bandwidth` of
    which every `stride`-th from `offset` is kept up to `carriers` (stride 4: the thesis's data
    set of F = 256; stride 1: every subcarrier, as Algorithm 1 walks them); perfect power control
    (per drop, user and time step, the mean over kept subcarriers of ||H[f, :, k]||^2 is 1).
    `drops` independent user drops are stacked along the time axis (T = drops x steps)."""
    try:
        from sionna.phy import config as sn_config
        from sionna.phy.channel import cir_to_ofdm_channel, subcarrier_frequencies
        from sionna.phy.channel.tr38901 import PanelArray, UMa
        from sionna.phy.channel.utils import gen_single_sector_topology
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(f"the uma channel needs Sionna (pip install sionna-no-rt): {exc}") from None
    if users < 1 or users > 64:
        raise ConfigError(f"uma channels serve 1 to 64 users with the 64-port base station, got {users}")
    if not 1 <= stride <= fft_size or not 0 <= offset < fft_size:
        raise ConfigError(f"--stride must be 1 to {fft_size} and --offset 0 to {fft_size - 1}, "
                          f"got {stride} and {offset}")
    most = len(range(offset, fft_size, stride))
    if carriers < 1 or carriers > most:
        raise ConfigError(f"--carriers must be 1 to {most} (every {stride}th of {fft_size} from {offset}), "
                          f"got {carriers}")
    if steps < 1 or not 1 <= drops <= 64:
        raise ConfigError(f"--steps must be at least 1 and --drops 1 to 64, got {steps} and {drops}")
    sn_config.seed = seed
    bs = PanelArray(num_rows_per_panel=4, num_cols_per_panel=8, polarization="dual", polarization_type="cross",
                    antenna_pattern="38.901", carrier_frequency=carrier_frequency, device=device)
    ut = PanelArray(num_rows_per_panel=1, num_cols_per_panel=1, polarization="single", polarization_type="V",
                    antenna_pattern="omni", carrier_frequency=carrier_frequency, device=device)
    model = UMa(carrier_frequency=carrier_frequency, o2i_model="low", ut_array=ut, bs_array=bs,
                direction="uplink", enable_pathloss=True, enable_shadow_fading=True, device=device)
    isd = radius * math.sqrt(3)  # a hexagonal sector of this inter-site distance has radius `radius`
    topo = gen_single_sector_topology(batch_size=drops, num_ut=users, scenario="uma", min_bs_ut_dist=10.0, isd=isd,
                                      bs_height=25.0, indoor_probability=0.0, min_ut_velocity=speed,
                                      max_ut_velocity=speed, device=device)
    model.set_topology(*topo, los=False)
    wavelength = 299_792_458.0 / carrier_frequency
    dt = wavelength / 4 / speed
    a, tau = model(num_time_samples=steps, sampling_frequency=1.0 / dt)
    freqs = subcarrier_frequencies(fft_size, bandwidth / fft_size, device=device)[offset::stride][:carriers]
    hf = cir_to_ofdm_channel(freqs, a, tau, normalize=False)  # [drops, 1, 64, users, 1, T, F]
    h = hf[:, 0, :, :, 0].permute(0, 3, 4, 1, 2)              # (drops, T, F, 64, users)
    h = h.reshape(drops * steps, carriers, *h.shape[-2:]).contiguous()
    power = h.abs().pow(2).sum(-2).mean(1, keepdim=True)       # (T, 1, users)
    h = h / power.clamp_min(1e-30).sqrt().unsqueeze(-2)
    meta = dict(model="uma", seed=seed, users=users, antennas=h.shape[-2], steps=drops * steps, carriers=carriers,
                drops=drops, steps_per_drop=steps,
                scenario="UMa NLOS (TR 38.901, Sionna)", carrier_frequency=carrier_frequency, bandwidth=bandwidth,
                fft_size=fft_size, subcarrier_stride=stride, subcarrier_offset=offset,
                subcarrier_spacing_hz=bandwidth / fft_size * stride, speed=speed, radius=radius, time_step_s=dt,
                bs_array="8x4 cross-polarised 38.901 panel (64 ports)",
                power_control="per drop, user and time step")
    return ChannelSet(h.to(torch.complex64).cpu(), meta)


# -- cache ---------------------------------------------------------------------------------------

def save(cs: ChannelSet, path: str | Path) -> Path:
    """Write `cs` atomically as safetensors (+ a readable .json beside it)."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ConfigError(f"a channel set is saved as .safetensors, got {path.name}")
    meta = dict(cs.meta, schema=SCHEMA, shape=list(cs.h.shape))
    text = json.dumps(meta, sort_keys=True)
    tensors = {"h_real": cs.h.real.contiguous(), "h_imag": cs.h.imag.contiguous()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"adasr_mimo": text})
    side = path.with_suffix(".json")
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return path


def load(path: str | Path) -> ChannelSet:
    """Read a set written by `save`; InputError if it is missing or is not one."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"channel set not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta_text = (f.metadata() or {}).get("adasr_mimo")
            shape = f.get_slice("h_real").get_shape()
            if math.prod(shape) > MAX_CHANNEL_VALUES:  # checked before a byte of it is read
                raise InputError(f"{path}: a channel set of shape {tuple(shape)} holds more than the "
                                 f"{MAX_CHANNEL_VALUES:,} entries allowed")
            re, im = f.get_tensor("h_real"), f.get_tensor("h_imag")
        meta = loads(meta_text, f"{path}: header", InputError) if meta_text else None
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any damage is the same one-line answer
        raise InputError(f"{path} is not a readable adasr channel set ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise InputError(f"{path} is not an adasr channel set (schema {SCHEMA} missing)")
    if re.shape != im.shape or re.dim() != 4 or not torch.isfinite(re).all() or not torch.isfinite(im).all():
        raise InputError(f"{path}: channel tensors must be finite and of shape (T, F, Nr, Nt)")
    h = torch.complex(re.float(), im.float())
    check_channels(h, str(path))
    return ChannelSet(h, meta)


def make(kind: str, users: int, antennas: int, *, steps: int = 1, carriers: int = 1, seed: int = 0,
         rho: float = 0.7, rho_t: float = 0.0, rho_f: float = 0.0, file: str | Path | None = None,
         stride: int = 4, offset: int = 0, drops: int = 1, device: str = "cpu") -> ChannelSet:
    """A channel set by source name: iid, corr, uma or file (`file` names a cached set)."""
    if kind == "file":
        if file is None:
            raise ConfigError("--channel file needs --channels PATH.safetensors")
        cs = load(file)
        if (cs.users, cs.antennas) != (users, antennas):
            raise ConfigError(f"{file} holds {cs.users} users x {cs.antennas} antennas, not {users} x {antennas}")
        return cs
    if kind in ("iid", "corr"):
        return synthetic(kind, users, antennas, steps=steps, carriers=carriers, seed=seed, rho=rho,
                         rho_t=rho_t, rho_f=rho_f)
    if kind == "uma":
        if antennas != 64:
            raise ConfigError(f"uma channels have 64 base-station antennas, got --antennas {antennas}")
        check_size(users, antennas, steps * drops, carriers)
        return uma(users, steps=steps, carriers=carriers, seed=seed, stride=stride, offset=offset, drops=drops,
                   device=device)
    raise ConfigError(f"unknown channel {kind!r}; choose one of iid, corr, uma, file")


def correlation(h: torch.Tensor, max_lag: int = 64) -> dict[str, Any]:
    """Channel locality as in the thesis's Fig. 3-10: for each distance d (in subcarriers of the
    set, and in time steps), the mean over all pairs (H1, H2) d apart of the normalised inner
    product |<H1, H2>| / (||H1||_F ||H2||_F), with <A, B> = sum conj(A) B. 'real' is the same with
    the real part instead of the magnitude (it also sees a common phase rotation). Complex h
    (T, F, Nr, Nt); lags up to min(max_lag, F - 1) and T - 1."""
    h = h.to(torch.complex128)
    norm = h.abs().pow(2).sum((-2, -1)).sqrt()                            # (T, F)

    def along(dim: int) -> tuple[list[float], list[float]]:
        size = h.shape[dim]
        mags, reals = [], []
        for d in range(min(max_lag, size - 1) + 1):
            a, b = h.narrow(dim, 0, size - d), h.narrow(dim, d, size - d)
            na, nb = norm.narrow(dim, 0, size - d), norm.narrow(dim, d, size - d)
            ip = (a.conj() * b).sum((-2, -1)) / (na * nb).clamp_min(1e-30)
            mags.append(float(ip.abs().mean()))
            reals.append(float(ip.real.mean()))
        return mags, reals

    f_mag, f_real = along(1)
    t_mag, t_real = along(0)
    return dict(frequency=f_mag, frequency_real=f_real, time=t_mag, time_real=t_real,
                definition="mean of |<H1, H2>| / (||H1||_F ||H2||_F) over pairs d apart (real: Re instead of |.|)")
