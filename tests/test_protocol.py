"""The SR evaluation protocol: MATLAB imresize, Y-channel PSNR/SSIM, Bjontegaard deltas.

The benchmark tests reproduce the published bicubic numbers on Set5 / Set14 (data under
``../shared/data`` beside the checkout, or ``$ADASR_DATA``, via conftest's `data_root`).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from adasr.data.imresize import imresize, imresize_torch, modcrop, resize_weights
from adasr.errors import ConfigError, InputError
from adasr.metrics import (
    bd_psnr,
    bd_rate,
    bicubic_benchmark,
    bits_per_pixel,
    psnr,
    psnr_y,
    rgb_to_ycbcr_y,
    ssim,
    ssim_y,
)

# Published bicubic baselines (mean over the set), e.g. SRCNN / VDSR tables.
PUBLISHED_PSNR = {("Set5", 2): 33.66, ("Set5", 3): 30.39, ("Set5", 4): 28.42,
                  ("Set14", 2): 30.24, ("Set14", 3): 27.55, ("Set14", 4): 26.00}
PUBLISHED_SSIM = {("Set5", 2): 0.9299, ("Set5", 3): 0.8682, ("Set5", 4): 0.8104,
                  ("Set14", 2): 0.8688, ("Set14", 3): 0.7742, ("Set14", 4): 0.7027}

_results: dict[tuple[str, int], tuple[float, float]] = {}


def _load(path: Path) -> np.ndarray:
    """RGB uint8, except grayscale files (Set14 'bridge') stay HxW: their values are the luma."""
    with Image.open(path) as im:
        return np.asarray(im) if im.mode == "L" else np.asarray(im.convert("RGB"))


def _benchmark(data_root: Path, name: str, scale: int) -> tuple[float, float]:
    if (name, scale) not in _results:
        files = sorted((data_root / "benchmarks" / name).glob("*.png"))
        assert files, f"no images in {data_root / 'benchmarks' / name}"
        scores = [bicubic_benchmark(_load(f), scale) for f in files]
        _results[name, scale] = (float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores])))
    return _results[name, scale]


# --------------------------------------------------------------------------- benchmark numbers


@pytest.mark.parametrize("name,scale", sorted(PUBLISHED_PSNR))
def test_bicubic_psnr_matches_published(data_root, name, scale):
    mean_psnr, _ = _benchmark(data_root, name, scale)
    assert abs(mean_psnr - PUBLISHED_PSNR[name, scale]) <= 0.03, (name, scale, mean_psnr)


def test_bicubic_ssim_matches_published_set5_x2(data_root):
    _, mean_ssim = _benchmark(data_root, "Set5", 2)
    assert abs(mean_ssim - PUBLISHED_SSIM["Set5", 2]) <= 0.002, mean_ssim


# --------------------------------------------------------------------------- imresize


def _matlab_contributions(in_len: int, out_len: int, scale: float) -> np.ndarray:
    """MATLAB's ``contributions`` written out literally with loops (1-based), as a dense matrix."""
    def cubic(x):
        ax = abs(x)
        if ax <= 1:
            return 1.5 * ax**3 - 2.5 * ax**2 + 1
        if ax <= 2:
            return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
        return 0.0

    width = 4.0 / scale if scale < 1 else 4.0
    m = np.zeros((out_len, in_len))
    aux = list(range(1, in_len + 1)) + list(range(in_len, 0, -1))
    for x in range(1, out_len + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + p for p in range(math.ceil(width) + 2)]
        w = [scale * cubic(scale * (u - j)) if scale < 1 else cubic(u - j) for j in taps]
        total = sum(w)
        for j, wj in zip(taps, w):
            m[x - 1, aux[(j - 1) % len(aux)] - 1] += wj / total
    return m


@pytest.mark.parametrize("in_len,out_len,scale", [(16, 8, 0.5), (9, 3, 1 / 3), (12, 3, 0.25), (5, 10, 2.0),
                                                  (4, 12, 3.0), (7, 28, 4.0), (10, 7, 0.7), (3, 1, 1 / 3)])
def test_weights_match_literal_matlab_formula(in_len, out_len, scale):
    np.testing.assert_allclose(resize_weights(in_len, out_len, scale),
                               _matlab_contributions(in_len, out_len, scale), atol=1e-14)


def test_downscale_x2_hand_computed():
    # Length-16 ramp 0, 10, ..., 150 halved. Output 1 samples u = 1.5 with taps j = -2..5 and
    # weights cubic((1.5 - j) / 2) / 2 = [-3, -9, 29, 111, 111, 29, -9, -3] / 256; taps below 1 fold
    # back symmetrically (j = 0, -1, -2 -> 1, 2, 3), giving values [20, 10, 0, 0, 10, 20, 30, 40].
    ramp = np.arange(16, dtype=np.float64) * 10
    out = imresize(ramp[:, None], output_shape=(8, 1))[:, 0]
    weights = np.array([-3, -9, 29, 111, 111, 29, -9, -3]) / 256
    assert out[0] == pytest.approx(float(weights @ [20, 10, 0, 0, 10, 20, 30, 40]), abs=1e-12)
    assert out[0] == pytest.approx(4.4921875, abs=1e-12)
    # Away from the borders cubic convolution reproduces a ramp: output x samples u = 2x - 0.5.
    np.testing.assert_allclose(out[2:6], 10 * (2 * np.arange(3, 7) - 0.5 - 1), atol=1e-12)
    assert out[-1] == pytest.approx(150 - 4.4921875, abs=1e-12)  # mirror image of out[0]


def test_upscale_constant_stays_constant():
    for dtype, value in ((np.uint8, 200), (np.uint16, 51234), (np.float32, 0.3), (np.float64, -7.5)):
        img = np.full((7, 9, 3), value, dtype=dtype)
        for scale in (2, 3, 4, 0.5, 1 / 3):
            out = imresize(img, scale)
            assert out.dtype == dtype
            assert out.shape == (math.ceil(7 * scale - 1e-9), math.ceil(9 * scale - 1e-9), 3)
            np.testing.assert_allclose(out.astype(np.float64), float(np.asarray(value, dtype)), rtol=1e-6)


def test_output_sizes_and_gray():
    img = np.zeros((10, 15), dtype=np.uint8)
    assert imresize(img, 0.5).shape == (5, 8)  # MATLAB: ceil
    assert imresize(img, 3).shape == (30, 45)
    assert imresize(img, output_shape=(4, 20)).shape == (4, 20)
    assert imresize(np.zeros((10, 15, 1), np.float32), 2).shape == (20, 30, 1)


def test_uint8_rounds_and_clips_float_does_not():
    img = np.zeros((1, 8), dtype=np.uint8)
    img[0, ::2] = 255
    # Only the width changes (height scale 1 is skipped), so one rounding step: out = round(clip(float)).
    f = imresize(img.astype(np.float64), output_shape=(1, 24))
    u = imresize(img, output_shape=(1, 24))
    assert u.dtype == np.uint8 and f.dtype == np.float64
    assert f.min() < 0 and f.max() > 255  # cubic overshoot is kept for float
    np.testing.assert_array_equal(u, np.clip(np.floor(f + 0.5), 0, 255).astype(np.uint8))
    f32 = imresize(img.astype(np.float32) / 255, 2)
    assert f32.dtype == np.float32 and f32.max() > 1.0


def test_uint8_rounds_half_away_from_zero():
    # x2 upscaling weights are dyadic, so exact .5 results occur; MATLAB rounds them up (numpy's
    # round-half-even would give 108 for the 108.5 here).
    img = np.array([[100, 219, 141, 8]], dtype=np.uint8)
    f = imresize(img.astype(np.float64), output_shape=(1, 8))
    np.testing.assert_allclose(f[0], [88.84375, 126, 200.3125, 214.640625, 168.984375, 108.5, 33.1875, -4.46875])
    np.testing.assert_array_equal(imresize(img, output_shape=(1, 8))[0], [89, 126, 200, 215, 169, 109, 33, 0])


def test_smaller_scale_dimension_first_with_intermediate_rounding():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    out = imresize(img, output_shape=(24, 5))  # width scale 0.5 < height scale 2: width first
    mw, mh = resize_weights(10, 5, 0.5), resize_weights(12, 24, 2.0)
    step = np.clip(np.floor(np.einsum("ow,hwc->hoc", mw, img.astype(np.float64)) + 0.5), 0, 255)
    ref = np.clip(np.floor(np.einsum("oh,hwc->owc", mh, step) + 0.5), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, ref)


def test_imresize_rejects_bad_arguments():
    img = np.zeros((8, 8), np.uint8)
    with pytest.raises(ConfigError):
        imresize(img)
    with pytest.raises(ConfigError):
        imresize(img, 2, output_shape=(16, 16))
    with pytest.raises(ConfigError):
        imresize(img, -2)
    with pytest.raises(InputError):
        imresize(img.astype(np.int32), 2)
    with pytest.raises(InputError):
        imresize(np.zeros((2, 8, 8, 3), np.uint8), 2)


def test_modcrop():
    img = np.arange(7 * 10 * 3).reshape(7, 10, 3)
    assert modcrop(img, 3).shape == (6, 9, 3)
    np.testing.assert_array_equal(modcrop(img, 3), img[:6, :9])
    assert modcrop(img[:, :, 0], 4).shape == (4, 8)
    assert modcrop(img, 1).shape == img.shape
    with pytest.raises(ConfigError):
        modcrop(img, 0)


@pytest.mark.parametrize("scale", [2.0, 3.0, 4.0, 0.5])
def test_imresize_torch_matches_numpy(scale):
    x = torch.rand(2, 3, 13, 17, generator=torch.Generator().manual_seed(0))
    out = imresize_torch(x, scale)
    assert out.shape == (2, 3, math.ceil(13 * scale), math.ceil(17 * scale)) and out.dtype == torch.float32
    for b in range(2):
        ref = imresize(x[b].permute(1, 2, 0).numpy().astype(np.float64), scale)
        np.testing.assert_allclose(out[b].permute(1, 2, 0).numpy(), ref, atol=1e-5)


@pytest.mark.slow
def test_imresize_torch_is_differentiable():
    x = torch.rand(1, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    imresize_torch(x, 2.0).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert torch.autograd.gradcheck(lambda t: imresize_torch(t, 3.0), (x,))
    with pytest.raises(InputError):
        imresize_torch(torch.zeros(3, 6, 5), 2.0)


# --------------------------------------------------------------------------- metrics


def test_rgb_to_ycbcr_y():
    img = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 200, 30]]], dtype=np.uint8)
    y = rgb_to_ycbcr_y(img)
    assert y.dtype == np.float64 and y.shape == (1, 4)
    np.testing.assert_allclose(y[0], [16.0, 235.0, 16 + 65.481, 16 + (65.481 * 10 + 128.553 * 200 + 24.966 * 30) / 255])
    np.testing.assert_allclose(rgb_to_ycbcr_y(img.astype(np.float32) / 255), y, atol=1e-4)
    gray = np.array([[0, 128, 255]], dtype=np.uint8)  # grayscale: already luma, not squeezed
    np.testing.assert_array_equal(rgb_to_ycbcr_y(gray), [[0.0, 128.0, 255.0]])
    np.testing.assert_array_equal(rgb_to_ycbcr_y(gray[:, :, None]), [[0.0, 128.0, 255.0]])
    with pytest.raises(InputError):
        rgb_to_ycbcr_y(np.zeros((4, 4, 2), np.uint8))


def test_psnr_and_border():
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert psnr_y(hr, hr, border=2) == math.inf
    sr = hr.copy()
    sr[0, :, :] = 255 - sr[0, :, :]  # damage only the first row: cropped away by border >= 1
    assert psnr_y(sr, hr, border=1) == math.inf
    assert psnr_y(sr, hr, border=0) < 40
    a = np.zeros((4, 4))
    b = np.full((4, 4), 0.1)
    assert psnr(a, b, 1.0) == pytest.approx(20.0)
    assert psnr(torch.zeros(2, 3), torch.full((2, 3), 25.5), 255) == pytest.approx(20.0)
    assert psnr(np.zeros(5, np.uint8), np.full(5, 255, np.uint8), 255) == pytest.approx(0.0)


def test_ssim_reference_and_properties():
    rng = np.random.default_rng(2)
    x = rng.random((16, 18)) * 255
    y = np.clip(x + rng.normal(0, 20, x.shape), 0, 255)
    assert ssim(x, x) == pytest.approx(1.0)
    # Brute force: Gaussian 11x11 window (sigma 1.5), every 'valid' position.
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for i in range(16 - 10):
        for j in range(18 - 10):
            px, py = x[i:i + 11, j:j + 11], y[i:i + 11, j:j + 11]
            mx, my = (win * px).sum(), (win * py).sum()
            vx = (win * px * px).sum() - mx * mx
            vy = (win * py * py).sum() - my * my
            cxy = (win * px * py).sum() - mx * my
            vals.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    assert ssim(x, y) == pytest.approx(float(np.mean(vals)), abs=1e-12)
    img = np.stack([x, y, x], axis=-1).astype(np.uint8)
    assert ssim_y(img, img, border=2) == pytest.approx(1.0)


def test_shape_mismatch_is_config_error():
    a = np.zeros((16, 16, 3), np.uint8)
    b = np.zeros((16, 18, 3), np.uint8)
    for fn in (lambda: psnr_y(a, b, border=2), lambda: ssim_y(a, b, border=2), lambda: psnr(a, b, 255)):
        with pytest.raises(ConfigError, match="shapes differ"):
            fn()


def test_bits_per_pixel():
    assert bits_per_pixel(8 * 1920 * 1080 * 10, 1920, 1080, 10) == pytest.approx(8.0)
    assert bits_per_pixel(100, 10, 10) == pytest.approx(1.0)
    with pytest.raises(ConfigError):
        bits_per_pixel(100, 0, 10, 1)


RATES = [100.0, 230.0, 480.0, 1000.0, 2100.0]
PSNRS = [30.1, 32.4, 34.2, 36.0, 37.5]


def test_bd_rate_halved_rates_is_minus_50_percent():
    assert bd_rate(RATES, PSNRS, [r / 2 for r in RATES], PSNRS) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, [r * 1.25 for r in RATES], PSNRS) == pytest.approx(25.0, abs=1e-9)
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_partial_overlap():
    # log(rate) = 0.2 * PSNR for a and 0.2 * PSNR - 0.1 for b, on PSNR ranges that only overlap on
    # [32, 36]: the difference is -0.1 everywhere, so BD-rate = exp(-0.1) - 1.
    pa = np.array([28.0, 30.0, 32.0, 34.0, 36.0])
    pb = np.array([32.0, 34.0, 36.0, 38.0, 40.0])
    ra, rb = np.exp(0.2 * pa), np.exp(0.2 * pb - 0.1)
    assert bd_rate(ra, pa, rb, pb) == pytest.approx((math.exp(-0.1) - 1) * 100, abs=1e-9)


def test_bd_psnr():
    assert bd_psnr(RATES, PSNRS, RATES, [p + 0.75 for p in PSNRS]) == pytest.approx(0.75, abs=1e-9)
    # Halving the rates of a curve PSNR = 3 * ln(rate) shifts it up by 3 ln 2 dB.
    r = np.array([50.0, 100.0, 200.0, 400.0, 800.0])
    p = 3 * np.log(r)
    assert bd_psnr(r, p, r / 2, p) == pytest.approx(3 * math.log(2), abs=1e-9)


def test_bd_errors():
    with pytest.raises(ConfigError):
        bd_rate(RATES[:3], PSNRS[:3], RATES[:3], PSNRS[:3])  # cubic fit needs 4 points
    with pytest.raises(ConfigError):
        bd_rate(RATES, PSNRS[:4], RATES, PSNRS)
    with pytest.raises(ConfigError):
        bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS])  # no overlap
    with pytest.raises(ConfigError):
        bd_psnr([0.0] + RATES[1:], PSNRS, RATES, PSNRS)
