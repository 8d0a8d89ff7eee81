"""The detection problem of Eq. 3.1-3.2: y = Hx + n with QAM symbols, in its real-valued form.

Everything here works on batches in the real-valued equivalent model: a complex channel
H (Nr x Nt) becomes the (2Nr x 2Nt) matrix [[Re H, -Im H], [Im H, Re H]], a complex vector v
becomes [Re v; Im v]. Square QAM is then a product of two PAM alphabets, so every detector
and denoiser works per real coordinate over the PAM levels.

SNR follows the thesis: SNR = E||Hx||^2 / E||n||^2. With unit-energy symbols, E||Hx||^2 =
||H||_F^2 for a given channel, so the complex noise variance per receive antenna is
sigma^2 = ||H||_F^2 / (Nr * SNR) (per real coordinate: sigma^2 / 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from adasr.errors import ConfigError

__all__ = ["Constellation", "MODULATIONS", "apply", "apply_t", "check_size", "constellation", "gaussian_denoiser",
           "noise_var", "parse_snrs", "ser", "symbol_errors", "to_complex_matrix", "to_complex_vector",
           "to_real_matrix", "to_real_vector", "transmit"]

MODULATIONS = {"qam4": 4, "qam16": 16, "qam64": 64}


@dataclass(frozen=True)
class Constellation:
    """Square QAM with unit average energy, as the PAM levels of one real coordinate."""

    name: str
    order: int          # points of the complex constellation
    levels: torch.Tensor  # (sqrt(order),) real levels, mean square 1/2

    @property
    def points(self) -> torch.Tensor:
        """The complex points (order,), unit average energy."""
        re, im = torch.meshgrid(self.levels, self.levels, indexing="ij")
        return torch.complex(re.reshape(-1), im.reshape(-1))

    def to(self, device: torch.device | str) -> Constellation:
        return Constellation(self.name, self.order, self.levels.to(device))

    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest level of every real coordinate."""
        levels = self.levels.to(z.device, z.dtype)
        return levels[(z.unsqueeze(-1) - levels).abs().argmin(-1)]

    def indices(self, x: torch.Tensor) -> torch.Tensor:
        levels = self.levels.to(x.device, x.dtype)
        return (x.unsqueeze(-1) - levels).abs().argmin(-1)

    def sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """Uniform random real coordinates (each complex symbol uniform over the points)."""
        idx = torch.randint(len(self.levels), shape, generator=generator, device=device)
        return self.levels.to(device)[idx]


def constellation(name: str) -> Constellation:
    """QAM4, QAM16 or QAM64 with unit average energy; ConfigError for anything else."""
    key = str(name).lower()
    if key not in MODULATIONS:
        raise ConfigError(f"unknown modulation {name!r}; choose one of {', '.join(MODULATIONS)}")
    order = MODULATIONS[key]
    m = int(math.isqrt(order))
    pam = torch.arange(-(m - 1), m, 2, dtype=torch.float64)
    energy = 2 * (pam ** 2).mean()  # complex symbol energy = Re^2 + Im^2
    return Constellation(key, order, (pam / energy.sqrt()).to(torch.float32))


def to_real_matrix(h: torch.Tensor) -> torch.Tensor:
    """(..., Nr, Nt) complex -> (..., 2Nr, 2Nt) real."""
    re, im = h.real, h.imag
    return torch.cat([torch.cat([re, -im], -1), torch.cat([im, re], -1)], -2)


def to_real_vector(v: torch.Tensor) -> torch.Tensor:
    return torch.cat([v.real, v.imag], -1)


def to_complex_vector(v: torch.Tensor) -> torch.Tensor:
    n = v.shape[-1] // 2
    return torch.complex(v[..., :n], v[..., n:])


def to_complex_matrix(hr: torch.Tensor) -> torch.Tensor:
    nr, nt = hr.shape[-2] // 2, hr.shape[-1] // 2
    return torch.complex(hr[..., :nr, :nt], hr[..., nr:, :nt])


MAX_CHANNEL_VALUES = 1 << 24  # complex entries of one channel set (T x F x Nr x Nt): 128 MB as complex64
MAX_SNRS = 200


def check_size(users: int, antennas: int, steps: int = 1, carriers: int = 1) -> None:
    """ConfigError unless users <= antennas and the channel set's T x F x Nr x Nt entries stay
    within MAX_CHANNEL_VALUES (the total, not each dimension alone: its memory is their product)."""
    if users < 1 or antennas < 1:
        raise ConfigError(f"users and antennas must be at least 1, got {users} x {antennas}")
    if users > antennas:
        raise ConfigError(f"{users} users need at least as many receive antennas, got {antennas}")
    if steps < 1 or carriers < 1:
        raise ConfigError(f"a channel set needs at least one time step and one subcarrier, got {steps} x {carriers}")
    total = steps * carriers * antennas * users
    if total > MAX_CHANNEL_VALUES:
        raise ConfigError(f"a channel set of {steps} steps x {carriers} carriers x {antennas} antennas x {users} users "
                          f"holds {total:,} entries, more than the {MAX_CHANNEL_VALUES:,} allowed (about "
                          f"{8 * MAX_CHANNEL_VALUES >> 20} MB); make one of them smaller")


def check_channels(h: torch.Tensor, where: str) -> None:
    """InputError unless every channel matrix of `h` (..., Nr, Nt) is finite and not all zero: the
    SNR is set relative to ||H||, so a zero channel has no noise level and no detector answer."""
    from adasr.errors import InputError

    if not bool(torch.isfinite(torch.view_as_real(h) if h.is_complex() else h).all()):
        raise InputError(f"{where}: channel entries must be finite")
    norms = h.abs().pow(2).sum((-2, -1)).reshape(-1)
    zero = int((norms == 0).sum())
    if zero:
        raise InputError(f"{where}: {zero} of {norms.numel()} channel matrices are all zero (no signal: the SNR "
                         f"is relative to ||H||, so there is nothing to detect)")


def parse_snrs(text: str) -> list[float]:
    """'8,10,12' or '8:12:2' (start:stop:step, stop included) -> SNRs in dB."""
    text = str(text).strip()
    if len(text) > 4096:
        raise ConfigError(f"--snr is {len(text):,} characters long; give at most {MAX_SNRS} values")
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3 or not all(math.isfinite(p) for p in parts) or parts[2] <= 0 or parts[1] < parts[0]:
                raise ConfigError(f"--snr range wants START:STOP:STEP with STOP >= START and STEP > 0, got {text!r}")
            span = (parts[1] - parts[0]) / parts[2]  # the count, known before any list is built
            if span + 1 > MAX_SNRS:
                raise ConfigError(f"--snr {text} asks for about {span + 1:.3g} values; at most {MAX_SNRS}")
            count = int(math.floor(span + 1e-9)) + 1
            values = [parts[0] + i * parts[2] for i in range(count)]
        else:
            values = [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ConfigError(f"--snr wants numbers in dB like 8,10,12 or 8:12:2, got {text!r}") from None
    if not values or len(values) > MAX_SNRS:
        raise ConfigError(f"--snr wants 1 to {MAX_SNRS} values, got {len(values)}")
    for v in values:
        if not math.isfinite(v) or not -30 <= v <= 60:
            raise ConfigError(f"--snr values must lie in -30..60 dB, got {v:g}")
    return values


def noise_var(hr: torch.Tensor, snr_db: torch.Tensor | float) -> torch.Tensor:
    """Complex noise variance sigma^2 per receive antenna for real channels hr (..., 2Nr, 2Nt)
    at SNR snr_db: ||H||_F^2 / (Nr * SNR) (||Hr||_F^2 = 2 ||H||_F^2)."""
    nr = hr.shape[-2] // 2
    fro = hr.pow(2).sum((-2, -1)) / 2
    snr = 10.0 ** (torch.as_tensor(snr_db, dtype=hr.dtype, device=hr.device) / 10)
    return fro / (nr * snr)


def transmit(hr: torch.Tensor, mod: Constellation, batch: int, snr_db: torch.Tensor | float,
             generator: torch.Generator | None = None):
    """Draw x and n, return (x, y, sigma2): x (B, 2Nt), y (B, 2Nr), sigma2 (B,) complex variance.

    hr is one channel (2Nr, 2Nt) shared by the batch or one per sample (B, 2Nr, 2Nt); snr_db a
    number or (B,) tensor."""
    device = hr.device
    nt2 = hr.shape[-1]
    x = mod.sample((batch, nt2), generator=generator, device=device).to(hr.dtype)
    sigma2 = noise_var(hr, snr_db).expand(batch) if hr.dim() == 2 else noise_var(hr, snr_db)
    sigma2 = torch.broadcast_to(sigma2, (batch,))
    noise = torch.randn((batch, hr.shape[-2]), generator=generator, device=device, dtype=hr.dtype)
    y = apply(hr, x) + noise * (sigma2 / 2).sqrt().unsqueeze(-1)
    return x, y, sigma2


def apply(hr: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """H x for one channel (2Nr, 2Nt) or a batch of channels (B, 2Nr, 2Nt); x (B, 2Nt)."""
    if hr.dim() == 2:
        return x @ hr.T
    return torch.einsum("bij,bj->bi", hr, x)


def apply_t(hr: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """H^T r, same conventions as `apply`."""
    if hr.dim() == 2:
        return r @ hr
    return torch.einsum("bij,bi->bj", hr, r)


def symbol_errors(x_hat: torch.Tensor, x: torch.Tensor, mod: Constellation) -> torch.Tensor:
    """Per complex symbol: 1 where the decision (real or imaginary part) is wrong; (B, Nt)."""
    wrong = mod.indices(x_hat) != mod.indices(x)
    nt = x.shape[-1] // 2
    return (wrong[..., :nt] | wrong[..., nt:]).to(torch.float32)


def ser(x_hat: torch.Tensor, x: torch.Tensor, mod: Constellation) -> float:
    """Symbol error rate: the share of complex symbols decided wrongly."""
    return float(symbol_errors(x_hat, x, mod).mean())


def gaussian_denoiser(z: torch.Tensor, tau2: torch.Tensor, mod: Constellation):
    """Eq. 3.5 per real coordinate: posterior mean and variance of x given z = x + N(0, tau2)
    with x uniform over the PAM levels; tau2 broadcasts against z."""
    levels = mod.levels.to(z.device, z.dtype)
    tau2 = tau2.clamp_min(1e-9)
    logits = -(z.unsqueeze(-1) - levels).pow(2) / (2 * tau2.unsqueeze(-1))
    # softmax over the few levels, written out: torch.softmax over a last dimension of 2-8 is
    # about 2x slower on CPU, and this is the hot spot of MMNet's training
    e = (logits - logits.amax(-1, keepdim=True).detach()).exp()
    p = e / e.sum(-1, keepdim=True)
    mean = (p * levels).sum(-1)
    var = (p * levels.pow(2)).sum(-1) - mean.pow(2)
    return mean, var
