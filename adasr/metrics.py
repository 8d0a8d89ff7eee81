"""Image-quality and rate metrics of the standard SR evaluation protocol.

* PSNR / SSIM on the BT.601 luma (Y of MATLAB's ``rgb2ycbcr``), `border` pixels cropped on each
  side (border = scale), data range 255 - the way published SR tables are computed.
* SSIM is Wang et al.'s ``ssim_index``: 11x11 Gaussian window (sigma 1.5), 'valid' filtering,
  K1 = 0.01, K2 = 0.03, mean of the SSIM map, no downsampling.
* Bjontegaard delta rate / delta PSNR for comparing rate-distortion curves.
* `bicubic_benchmark`: the protocol's bicubic baseline for one HR image.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from adasr.errors import ConfigError, InputError

__all__ = [
    "rgb_to_ycbcr_y", "psnr", "psnr_y", "ssim_y", "ssim", "bits_per_pixel", "bd_rate", "bd_psnr",
    "bicubic_benchmark", "PSNR_CAP", "psnr_of_mean_mse",
]

PSNR_CAP = 100.0  # dB: what `psnr_of_mean_mse` reports for frames reproduced exactly

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def rgb_to_ycbcr_y(img: np.ndarray) -> np.ndarray:
    """BT.601 luma on MATLAB's ``rgb2ycbcr`` scale: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.

    Args:
        img: (H, W, 3) RGB image, either uint8 (values 0..255) or float with values in [0, 1];
            or a grayscale (H, W) / (H, W, 1) image.

    Returns:
        (H, W) float64 Y in the [16, 235] range (for RGB input). Not rounded to integers.

    Grayscale input is taken to be luma already and returned unchanged on the 0..255 scale
    (uint8 as is, float [0, 1] times 255), *not* squeezed into [16, 235]. That is what the
    benchmark scripts do (``if size(im, 3) > 1, im = rgb2ycbcr(im); ...``) for Set14's grayscale
    'bridge', and it is what reproduces the published Set14 numbers. Note that a grayscale image
    expanded to three equal RGB channels is *not* grayscale here and gets the [16, 235] luma.
    """
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] != 3):
        raise InputError(f"expected an HxW, HxWx1 or HxWx3 image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        x = arr.astype(np.float64)
    elif np.issubdtype(arr.dtype, np.floating):
        x = arr.astype(np.float64) * 255.0
    else:
        raise InputError(f"expected a uint8 or float image, got {arr.dtype}")
    if x.ndim == 2:
        return x
    return 16.0 + (x @ _Y_WEIGHTS) / 255.0


def _check_pair(a: Any, b: Any, what: str) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ConfigError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def _crop(y: np.ndarray, border: int) -> np.ndarray:
    border = int(border)
    if border < 0:
        raise ConfigError(f"border must be >= 0, got {border}")
    if border == 0:
        return y
    if y.shape[0] <= 2 * border or y.shape[1] <= 2 * border:
        raise ConfigError(f"image of size {y.shape[0]}x{y.shape[1]} is too small for border {border}")
    return y[border:-border, border:-border]


def _psnr_from_mse(mse: float, data_range: float) -> float:
    if mse == 0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def psnr(a: Any, b: Any, data_range: float) -> float:
    """PSNR in dB of two same-shape numpy arrays or torch tensors (any shape), as a float.

    ``10 log10(data_range^2 / mean((a - b)^2))``, computed in float64; ``inf`` when identical.
    """
    _check_pair(a, b, "psnr")
    if data_range <= 0:
        raise ConfigError(f"data_range must be positive, got {data_range}")
    if hasattr(a, "detach") or hasattr(b, "detach"):
        import torch

        ta = torch.as_tensor(a).detach().to(torch.float64)
        tb = torch.as_tensor(b).detach().to(device=ta.device, dtype=torch.float64)
        mse = float(torch.mean((ta - tb) ** 2))
    else:
        mse = float(np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2))
    return _psnr_from_mse(mse, float(data_range))


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """PSNR (dB) on the Y channel (`rgb_to_ycbcr_y`), `border` pixels cropped per side, range 255.

    `sr` and `hr`: same-shape (H, W, 3) RGB (or grayscale) images, uint8 or float in [0, 1].
    """
    _check_pair(sr, hr, "psnr_y")
    ys, yh = _crop(rgb_to_ycbcr_y(sr), border), _crop(rgb_to_ycbcr_y(hr), border)
    return _psnr_from_mse(float(np.mean((ys - yh) ** 2)), 255.0)


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()  # fspecial('gaussian', 11, 1.5) is the outer product of this with itself


def _filter_valid(img: np.ndarray, g: np.ndarray) -> np.ndarray:
    """'valid' 2-D filtering of (H, W) `img` with the separable window outer(g, g)."""
    k = g.size
    rows = np.lib.stride_tricks.sliding_window_view(img, k, axis=0) @ g  # (H-k+1, W)
    return np.lib.stride_tricks.sliding_window_view(rows, k, axis=1) @ g  # (H-k+1, W-k+1)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255.0) -> float:
    """Mean SSIM of two same-shape 2-D arrays (Wang et al. ``ssim_index``: 11x11 Gaussian window,
    sigma 1.5, K1 = 0.01, K2 = 0.03, 'valid' filtering, no downsampling)."""
    _check_pair(a, b, "ssim")
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 2:
        raise InputError(f"ssim expects 2-D arrays, got shape {x.shape}")
    if x.shape[0] < 11 or x.shape[1] < 11:
        raise ConfigError(f"ssim needs at least 11x11 pixels, got {x.shape[0]}x{x.shape[1]}")
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    g = _gaussian_1d()
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    s_xx = _filter_valid(x * x, g) - mu_xx
    s_yy = _filter_valid(y * y, g) - mu_yy
    s_xy = _filter_valid(x * y, g) - mu_xy
    ssim_map = ((2 * mu_xy + c1) * (2 * s_xy + c2)) / ((mu_xx + mu_yy + c1) * (s_xx + s_yy + c2))
    return float(ssim_map.mean())


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int) -> float:
    """SSIM on the Y channel (`rgb_to_ycbcr_y`), `border` pixels cropped per side, range 255.

    `sr` and `hr`: same-shape (H, W, 3) RGB (or grayscale) images, uint8 or float in [0, 1].
    """
    _check_pair(sr, hr, "ssim_y")
    return ssim(_crop(rgb_to_ycbcr_y(sr), border), _crop(rgb_to_ycbcr_y(hr), border), 255.0)


def bits_per_pixel(num_bits: float, width: int, height: int, frames: int = 1) -> float:
    """Bits per pixel: ``num_bits / (width * height * frames)``."""
    pixels = int(width) * int(height) * int(frames)
    if pixels <= 0:
        raise ConfigError(f"width, height and frames must be positive, got {width}x{height}x{frames}")
    return float(num_bits) / pixels


def _rd_points(rates: Sequence[float], psnrs: Sequence[float], name: str) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(rates, dtype=np.float64).ravel()
    p = np.asarray(psnrs, dtype=np.float64).ravel()
    if r.size != p.size:
        raise ConfigError(f"curve {name}: {r.size} rates but {p.size} PSNR values")
    if r.size < 4:
        raise ConfigError(f"curve {name}: Bjontegaard needs at least 4 rate points, got {r.size}")
    if not (np.all(np.isfinite(r)) and np.all(np.isfinite(p))) or np.any(r <= 0):
        raise ConfigError(f"curve {name}: rates must be positive and all values finite")
    return np.log(r), p


def _poly_mean(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Mean over [lo, hi] of the cubic least-squares fit of y(x)."""
    poly = np.polynomial.Polynomial.fit(x, y, 3)  # fitted in a scaled domain: well conditioned
    integral = poly.integ()  # integ() accounts for the domain mapping
    return float((integral(hi) - integral(lo)) / (hi - lo))


def _overlap(a: np.ndarray, b: np.ndarray, what: str) -> tuple[float, float]:
    lo, hi = max(a.min(), b.min()), min(a.max(), b.max())
    if not hi > lo:
        raise ConfigError(f"the two curves' {what} ranges do not overlap")
    return float(lo), float(hi)


def bd_rate(rates_a: Sequence[float], psnr_a: Sequence[float],
            rates_b: Sequence[float], psnr_b: Sequence[float]) -> float:
    """Bjontegaard delta rate (%) of curve b against anchor a at equal quality.

    Cubic fit of log(rate) as a function of PSNR for each curve, averaged over the overlapping
    PSNR interval: ``(exp(mean_b - mean_a) - 1) * 100``. Negative means b needs fewer bits.
    """
    lra, pa = _rd_points(rates_a, psnr_a, "a")
    lrb, pb = _rd_points(rates_b, psnr_b, "b")
    lo, hi = _overlap(pa, pb, "PSNR")
    diff = _poly_mean(pb, lrb, lo, hi) - _poly_mean(pa, lra, lo, hi)
    return (math.exp(diff) - 1.0) * 100.0


def bd_psnr(rates_a: Sequence[float], psnr_a: Sequence[float],
            rates_b: Sequence[float], psnr_b: Sequence[float]) -> float:
    """Bjontegaard delta PSNR (dB) of curve b against anchor a at equal rate.

    Cubic fit of PSNR as a function of log(rate) for each curve, mean difference (b - a) over the
    overlapping log-rate interval. Positive means b has higher quality.
    """
    lra, pa = _rd_points(rates_a, psnr_a, "a")
    lrb, pb = _rd_points(rates_b, psnr_b, "b")
    lo, hi = _overlap(lra, lrb, "rate")
    return _poly_mean(lrb, pb, lo, hi) - _poly_mean(lra, pa, lo, hi)


def bicubic_benchmark(hr: np.ndarray, scale: int) -> tuple[float, float]:
    """(PSNR, SSIM) on Y of the bicubic baseline for one uint8 HR image, by the SR protocol.

    HR (H, W, 3) RGB or (H, W) grayscale uint8 -> modcrop(scale) -> LR = imresize(HR, 1/scale)
    (uint8) -> SR = imresize(LR, scale) (uint8) -> PSNR / SSIM on Y with border = scale.
    """
    from adasr.data.imresize import imresize, modcrop

    hr = np.asarray(hr)
    if hr.dtype != np.uint8:
        raise InputError(f"bicubic_benchmark expects a uint8 image, got {hr.dtype}")
    hr = modcrop(hr, scale)
    sr = imresize(imresize(hr, 1.0 / scale), float(scale))
    return psnr_y(sr, hr, border=scale), ssim_y(sr, hr, border=scale)


def psnr_of_mean_mse(frame_psnrs: Sequence[float], cap: float = PSNR_CAP) -> float:
    """The PSNR of a set of frames from their mean MSE (as video PSNR is reported), given each
    frame's PSNR (inf for an exact frame): one exact frame does not make it infinite, and a set
    whose every frame is exact reads `cap` dB. NaN for an empty set."""
    if len(frame_psnrs) == 0:
        return math.nan
    mse = float(np.mean([10.0 ** (-min(float(p), 1e6) / 10.0) for p in frame_psnrs]))  # relative to peak**2
    return cap if mse <= 10.0 ** (-cap / 10.0) else float(-10.0 * np.log10(mse))
