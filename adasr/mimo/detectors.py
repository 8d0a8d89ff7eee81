"""Classic detectors, batched on any torch device, in the real-valued model of
`adasr.mimo.problem`: each takes y (B, 2Nr), hr (2Nr, 2Nt) or (B, 2Nr, 2Nt), the complex noise
variance sigma2 (B,) and the constellation, and returns hard decisions x_hat (B, 2Nt).

ZF, MMSE, V-BLAST (ZF-SIC, strongest-first ordering) and AMP (Jeon et al.) are written here;
Sionna's K-best and EP detectors are wrapped (`sionna_kbest`, `sionna_ep`), fed with complex
tensors and mapped back to our constellation's points. Exact ML (Sionna's exhaustive detector and
a sphere decoder) lives in `adasr.mimo.ml` and is listed here as `ml` and `sphere`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from adasr.errors import ConfigError
from adasr.mimo.problem import (
    Constellation,
    apply,
    apply_t,
    gaussian_denoiser,
    to_complex_matrix,
    to_complex_vector,
    to_real_vector,
)

__all__ = ["CLASSIC", "Detector", "amp", "mmse", "mmse_estimate", "sionna_ep", "sionna_kbest", "vblast", "zf"]

Detector = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Constellation], torch.Tensor]


def _batched(hr: torch.Tensor, batch: int) -> torch.Tensor:
    return hr.expand(batch, *hr.shape) if hr.dim() == 2 else hr


def _check(hr: torch.Tensor, name: str) -> None:
    if hr.shape[-1] > hr.shape[-2]:
        raise ConfigError(f"{name} needs users <= antennas, got {hr.shape[-1] // 2} x {hr.shape[-2] // 2}")


def zf(y, hr, sigma2, mod):
    """Zero forcing: round H^+ y to the constellation."""
    _check(hr, "ZF")
    z = torch.linalg.lstsq(_batched(hr, y.shape[0]), y.unsqueeze(-1)).solution.squeeze(-1)
    return mod.quantize(z)


def mmse_estimate(y, hr, sigma2, unbiased: bool = True):
    """(H^T H + sigma^2 I)^-1 H^T y (unit symbol energy; real and complex forms agree), divided
    per coordinate by its gain diag((H^T H + sigma^2 I)^-1 H^T H) when `unbiased`: the plain LMMSE
    estimate shrinks towards 0, which moves the outer points of QAM16/64 across decision lines."""
    h = _batched(hr, y.shape[0])
    gram = h.transpose(-2, -1) @ h
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    rhs = torch.cat([apply_t(hr, y).unsqueeze(-1), gram], -1)
    sol = torch.linalg.solve(gram + sigma2.view(-1, 1, 1) * eye, rhs)
    z = sol[..., 0]
    if unbiased:
        z = z / torch.diagonal(sol[..., 1:], dim1=-2, dim2=-1).clamp_min(1e-12)
    return z


def mmse(y, hr, sigma2, mod):
    """Linear MMSE (bias removed per stream), then the nearest constellation point."""
    return mod.quantize(mmse_estimate(y, hr, sigma2))


def vblast(y, hr, sigma2, mod):
    """V-BLAST with ZF nulling: detect the user with the smallest noise enhancement (row norm of
    the pseudo-inverse), cancel it from y, repeat over the remaining users."""
    _check(hr, "V-BLAST")
    b = y.shape[0]
    h = to_complex_matrix(_batched(hr, b)).to(torch.complex128)
    r = to_complex_vector(y).to(torch.complex128)
    nt = h.shape[-1]
    active = torch.ones(b, nt, dtype=torch.bool, device=y.device)
    x_hat = torch.zeros(b, nt, dtype=torch.complex128, device=y.device)
    rows = torch.arange(b, device=y.device)
    points = mod.points.to(y.device, torch.complex128)
    for _ in range(nt):
        g = torch.linalg.pinv(h * active.unsqueeze(-2))           # (B, Nt, Nr)
        cost = g.abs().pow(2).sum(-1).masked_fill(~active, float("inf"))
        k = cost.argmin(-1)
        z = (g[rows, k] * r).sum(-1)
        s = points[(z.unsqueeze(-1) - points).abs().argmin(-1)]
        x_hat[rows, k] = s
        r = r - h[rows, :, k] * s.unsqueeze(-1)
        active[rows, k] = False
    return to_real_vector(x_hat).to(y.dtype)


def amp(y, hr, sigma2, mod, iterations: int = 50):
    """AMP for large MIMO (Jeon et al.), Eq. 3.7 in the real-valued model: matched filter step
    with the Onsager correction, the Gaussian denoiser of Eq. 3.5 with the state-evolution noise
    estimate tau^2 = sigma^2/2 + (Nt/Nr) * mean posterior variance."""
    _check(hr, "AMP")
    b = y.shape[0]
    nr2, nt2 = hr.shape[-2], hr.shape[-1]
    beta = nt2 / nr2
    x = torch.zeros(b, nt2, dtype=y.dtype, device=y.device)
    v = torch.full((b, 1), 0.5, dtype=y.dtype, device=y.device)  # prior variance per real coordinate
    noise = (sigma2 / 2).view(-1, 1)
    r = y.clone()
    tau2 = noise + beta * v
    for _ in range(iterations):
        z = x + apply_t(hr, r)
        x, var = gaussian_denoiser(z, tau2, mod)
        v_new = var.mean(-1, keepdim=True)
        r = y - apply(hr, x) + beta * (v_new / tau2) * r
        tau2 = noise + beta * v_new
    return mod.quantize(x)


# -- Sionna's detectors ---------------------------------------------------------------------------

def _sionna_constellation(mod: Constellation, device):
    from sionna.phy.mapping import Constellation as SnConstellation

    bits = int(mod.order).bit_length() - 1
    return SnConstellation("custom", bits, points=mod.points.to(device), device=str(device))


def _from_indices(idx: torch.Tensor, mod: Constellation, dtype) -> torch.Tensor:
    points = mod.points.to(idx.device)
    return to_real_vector(points[idx.long()]).to(dtype)


def _complex_inputs(y, hr, sigma2):
    b = y.shape[0]
    h = to_complex_matrix(_batched(hr, b)).to(torch.complex64).contiguous()
    yc = to_complex_vector(y).to(torch.complex64)
    eye = torch.eye(h.shape[-2], dtype=torch.complex64, device=y.device)
    s = sigma2.to(torch.float32).view(-1, 1, 1) * eye
    return yc, h, s


def _sionna_import():
    try:
        from sionna.phy.mimo import EPDetector, KBestDetector
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(f"Sionna's detectors need sionna-no-rt installed: {exc}") from None
    return EPDetector, KBestDetector


def sionna_kbest(y, hr, sigma2, mod, k: int = 32):
    """Sionna's K-best detector (a breadth-first tree search, near-ML for large K)."""
    _, KBestDetector = _sionna_import()
    _check(hr, "K-best")
    yc, h, s = _complex_inputs(y, hr, sigma2)
    det = KBestDetector("symbol", h.shape[-1], k, constellation=_sionna_constellation(mod, y.device),
                        hard_out=True, device=str(y.device))
    return _from_indices(det(yc, h, s), mod, y.dtype)


def sionna_ep(y, hr, sigma2, mod, iterations: int = 10):
    """Sionna's expectation-propagation detector (QAM only, Sionna's own Gray-labelled QAM)."""
    EPDetector, _ = _sionna_import()
    _check(hr, "EP")
    yc, h, s = _complex_inputs(y, hr, sigma2)
    bits = int(mod.order).bit_length() - 1
    det = EPDetector("symbol", bits, hard_out=True, l=iterations, device=str(y.device))
    from sionna.phy.mapping import Constellation as SnConstellation

    sn_points = SnConstellation("qam", bits, device=str(y.device)).points.to(torch.complex64)
    xs = sn_points[det(yc, h, s).long()]
    return mod.quantize(to_real_vector(xs).to(y.dtype))


def _ml(y, hr, sigma2, mod):
    from adasr.mimo.ml import sionna_ml

    return sionna_ml(y, hr, sigma2, mod)


def _sphere(y, hr, sigma2, mod):
    from adasr.mimo.ml import sphere_decode

    return sphere_decode(y, hr, sigma2, mod)


CLASSIC: dict[str, Detector] = {
    "zf": zf,
    "mmse": mmse,
    "vblast": vblast,
    "amp": amp,
    "kbest": sionna_kbest,
    "ep": sionna_ep,
    "ml": _ml,          # exact, exhaustive (Sionna), tiny systems only
    "sphere": _sphere,  # exact unless its node bound is hit (adasr.mimo.ml)
}
