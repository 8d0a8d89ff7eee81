"""adasr.images: modes, bit depths, formats, EXIF orientation, broken inputs, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageOps, features

import adasr.images as images
from adasr.errors import InputError, OutputError
from adasr.images import Image, float_to_uint, is_image_path, read_image, write_image


def rnd(shape, dtype=np.uint8, seed=0) -> np.ndarray:
    top = 65536 if dtype == np.uint16 else 256
    return np.random.default_rng(seed).integers(0, top, shape, dtype=dtype)


def smooth(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) * 3 % 256], -1).astype(np.uint8)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# reading what Pillow writes


def test_rgb_png_odd_size(tmp_path):
    rgb = rnd((13, 17, 3))
    PILImage.fromarray(rgb).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.rgb.dtype == np.uint8 and img.rgb.shape == (13, 17, 3) and (img.rgb == rgb).all()
    assert (img.mode, img.bit_depth, img.gray, img.alpha) == ("RGB", 8, False, None)
    assert (img.height, img.width) == (13, 17)


def test_gray_l_and_la(tmp_path):
    g = rnd((13, 17))
    a = rnd((13, 17), seed=1)
    PILImage.fromarray(g, "L").save(tmp_path / "l.png")
    PILImage.fromarray(np.dstack([g, a]), "LA").save(tmp_path / "la.png")
    img = read_image(tmp_path / "l.png")
    assert img.gray and img.mode == "L" and img.alpha is None
    assert all((img.rgb[..., c] == g).all() for c in range(3))
    img = read_image(tmp_path / "la.png")
    assert img.gray and img.mode == "LA" and (img.rgb[..., 1] == g).all() and (img.alpha == a).all()


def test_rgba(tmp_path):
    rgba = rnd((13, 17, 4))
    PILImage.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.mode == "RGBA" and (img.rgb == rgba[..., :3]).all() and (img.alpha == rgba[..., 3]).all()


def test_palette_with_and_without_transparency(tmp_path):
    rgb = rnd((13, 17, 3)) // 64 * 64  # few colours, so the palette is exact
    p = PILImage.fromarray(rgb).quantize(colors=64, method=PILImage.Quantize.MAXCOVERAGE)
    p.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.mode == "P" and img.alpha is None and not img.gray
    assert (img.rgb == np.asarray(p.convert("RGB"))).all()
    p.save(tmp_path / "pt.png", transparency=0)
    img = read_image(tmp_path / "pt.png")
    assert img.alpha is not None and set(np.unique(img.alpha)) <= {0, 255}
    assert (img.alpha == 0).sum() == (np.asarray(p) == 0).sum()


def test_16bit_gray_png_from_pillow(tmp_path):
    g = rnd((13, 17), np.uint16)
    PILImage.fromarray(g).save(tmp_path / "g16.png")  # mode I;16
    img = read_image(tmp_path / "g16.png")
    assert img.mode == "I;16" and img.bit_depth == 16 and img.gray and img.rgb.dtype == np.uint16
    assert (img.rgb[..., 2] == g).all()


def test_mode_i_with_16bit_content_and_too_wide(tmp_path):
    g = rnd((5, 6), np.uint16).astype(np.int32)
    PILImage.fromarray(g, "I").save(tmp_path / "i.tif")
    img = read_image(tmp_path / "i.tif")
    assert img.bit_depth == 16 and (img.rgb[..., 0] == g).all()
    PILImage.fromarray(g * 100, "I").save(tmp_path / "wide.tif")
    with pytest.raises(InputError, match="wide.tif"):
        read_image(tmp_path / "wide.tif")


def test_float_mode_and_multiframe_refused(tmp_path):
    PILImage.fromarray(np.zeros((4, 4), np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(InputError, match="'F'"):
        read_image(tmp_path / "f.tif")
    frames = [PILImage.fromarray(rnd((8, 8, 3), seed=s)) for s in range(3)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="multi-frame"):
        read_image(tmp_path / "anim.gif")
    frames[0].save(tmp_path / "camera.jpg", format="MPO", save_all=True, append_images=frames[1:2])
    assert read_image(tmp_path / "camera.jpg").rgb.shape == (8, 8, 3)  # MPO: the primary picture


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    PILImage.fromarray(smooth(16, 16)).convert("CMYK").save(tmp_path / "c.jpg")
    img = read_image(tmp_path / "c.jpg")
    assert img.mode == "CMYK" and img.rgb.shape == (16, 16, 3) and not img.gray


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path, orientation):
    base = PILImage.fromarray(smooth(6, 10))
    exif = base.getexif()
    exif[0x0112] = orientation
    base.save(tmp_path / "o.jpg", exif=exif, quality=95)
    img = read_image(tmp_path / "o.jpg")
    with PILImage.open(tmp_path / "o.jpg") as ref:
        expected = np.asarray(ImageOps.exif_transpose(ref).convert("RGB"))
    assert img.rgb.shape == expected.shape and (img.rgb == expected).all()
    assert img.rgb.shape[:2] == ((10, 6) if orientation >= 5 else (6, 10))


def test_real_set5_and_gray_set14(tmp_path, data_root):
    img = read_image(data_root / "benchmarks" / "Set5" / "baby.png")
    assert img.rgb.shape == (512, 512, 3) and img.rgb.dtype == np.uint8 and not img.gray
    write_image(tmp_path / "baby.png", img)
    assert (read_image(tmp_path / "baby.png").rgb == img.rgb).all()
    bridge = read_image(data_root / "benchmarks" / "Set14" / "bridge.png")
    assert bridge.gray and bridge.mode == "L" and (bridge.rgb[..., 0] == bridge.rgb[..., 1]).all()
    write_image(tmp_path / "bridge.png", bridge)
    with PILImage.open(tmp_path / "bridge.png") as im:
        assert im.mode == "L"
    assert (read_image(tmp_path / "bridge.png").rgb == bridge.rgb).all()


# ---------------------------------------------------------------------------------------------
# write -> read round trips


@pytest.mark.parametrize("depth", [8, 16])
@pytest.mark.parametrize("kind", ["rgb", "rgba", "l", "la"])
def test_png_round_trip_exact(tmp_path, kind, depth):
    dtype = np.uint16 if depth == 16 else np.uint8
    rgb = rnd((13, 17, 3), dtype)
    gray = kind in ("l", "la")
    if gray:
        rgb = np.repeat(rgb[..., :1], 3, axis=2)
    alpha = rnd((13, 17), dtype, seed=3) if kind.endswith("a") else None
    path = write_image(tmp_path / f"{kind}{depth}.png", rgb, alpha=alpha, gray=gray)
    img = read_image(path)
    assert img.bit_depth == depth and img.rgb.dtype == dtype and img.gray == gray
    assert (img.rgb == rgb).all()
    assert (img.alpha is None) == (alpha is None)
    if alpha is not None:
        assert (img.alpha == alpha).all()
    with PILImage.open(path) as im:  # a valid PNG for other readers too
        im.load()
        if depth == 16 and kind == "rgb":
            assert (np.asarray(im) == (rgb >> 8)).all()  # Pillow's 8-bit view: the high bytes


def test_gray_write_uses_rounded_mean(tmp_path):
    rgb = np.array([[[10, 11, 11], [0, 0, 2], [255, 254, 255]]], np.uint8)
    write_image(tmp_path / "g.png", rgb, gray=True)
    with PILImage.open(tmp_path / "g.png") as im:
        assert im.mode == "L" and np.asarray(im).tolist() == [[11, 1, 255]]
    write_image(tmp_path / "g2.png", rgb[..., 0])  # a 2-D array is gray
    assert read_image(tmp_path / "g2.png").gray


def test_bit_depth_conversion(tmp_path):
    rgb8 = rnd((5, 7, 3))
    write_image(tmp_path / "up.png", rgb8, bit_depth=16)
    img = read_image(tmp_path / "up.png")
    assert img.bit_depth == 16 and (img.rgb == rgb8.astype(np.uint16) * 257).all()
    write_image(tmp_path / "down.png", img.rgb, bit_depth=8)
    assert (read_image(tmp_path / "down.png").rgb == rgb8).all()
    write_image(tmp_path / "j16.jpg", img.rgb)  # JPEG is 8-bit: rounded down
    assert read_image(tmp_path / "j16.jpg").bit_depth == 8


def test_jpeg_round_trip_close(tmp_path):
    rgb = smooth(13, 17)
    write_image(tmp_path / "a.jpg", rgb, quality=95)
    img = read_image(tmp_path / "a.jpg")
    assert img.rgb.shape == rgb.shape
    assert np.abs(img.rgb.astype(int) - rgb).mean() < 3.0


def test_jpeg_refuses_alpha(tmp_path):
    with pytest.raises(OutputError, match=r"alpha.*\.png"):
        write_image(tmp_path / "a.jpg", rnd((4, 4, 3)), alpha=rnd((4, 4)))
    assert names(tmp_path) == []


@pytest.mark.parametrize("suffix", [".bmp", ".tiff", ".webp"])
def test_other_formats_lossless(tmp_path, suffix):
    if suffix == ".webp" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    rgb, alpha = rnd((13, 17, 3)), rnd((13, 17), seed=2)
    if suffix == ".bmp":
        with pytest.raises(OutputError, match="alpha"):
            write_image(tmp_path / "a.bmp", rgb, alpha=alpha)
        alpha = None
    write_image(tmp_path / f"a{suffix}", rgb, alpha=alpha, quality=100)
    img = read_image(tmp_path / f"a{suffix}")
    assert (img.rgb == rgb).all()
    assert (img.alpha is None) if alpha is None else (img.alpha == alpha).all()
    if suffix != ".bmp":
        ga = rnd((13, 17), seed=4)
        write_image(tmp_path / f"ga{suffix}", rgb, alpha=ga, gray=True, quality=100)
        img = read_image(tmp_path / f"ga{suffix}")
        assert (img.alpha == ga).all()
    g = np.repeat(rgb[..., :1], 3, axis=2)
    write_image(tmp_path / f"g{suffix}", g, gray=True, quality=100)
    assert (read_image(tmp_path / f"g{suffix}").rgb == g).all()


def test_tiff_16bit_gray(tmp_path):
    g = np.repeat(rnd((5, 7, 1), np.uint16), 3, axis=2)
    write_image(tmp_path / "g.tif", g, gray=True)
    img = read_image(tmp_path / "g.tif")
    assert img.bit_depth == 16 and (img.rgb == g).all()


def test_icc_profile_kept(tmp_path):
    icc = b"not-a-real-profile" * 8
    for depth in (8, 16):
        write_image(tmp_path / f"c{depth}.png", rnd((4, 4, 3)), bit_depth=depth, icc_profile=icc)
        assert read_image(tmp_path / f"c{depth}.png").icc_profile == icc


def test_float_helpers():
    img = Image(rgb=np.array([[[0, 255, 51]]], np.uint8), alpha=np.array([[255]], np.uint8))
    f = img.to_float()
    assert f.dtype == np.float32 and np.allclose(f, [[[0.0, 1.0, 0.2]]])
    assert img.alpha_to_float().tolist() == [[1.0]]
    assert (float_to_uint(f) == img.rgb).all()
    assert float_to_uint(np.array([-1.0, 0.5, 2.0]), 16).tolist() == [0, 32768, 65535]


def test_is_image_path():
    assert is_image_path("x/Y.PNG") and is_image_path("a.jpeg") and not is_image_path("a.mp4")


# ---------------------------------------------------------------------------------------------
# broken inputs


def test_truncated_real_png(tmp_path, data_root):
    data = (data_root / "benchmarks" / "Set5" / "bird.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_corrupt_png_data(tmp_path):
    write_image(tmp_path / "a.png", rnd((32, 32, 3)))
    data = bytearray((tmp_path / "a.png").read_bytes())
    start = data.find(b"IDAT") + 20
    data[start:start + 64] = bytes(64)
    (tmp_path / "bad.png").write_bytes(bytes(data))
    with pytest.raises(InputError, match="bad.png"):
        read_image(tmp_path / "bad.png")


def test_not_an_image_missing_and_directory(tmp_path):
    (tmp_path / "text.png").write_text("hello, I am not a PNG\n")
    with pytest.raises(InputError, match="text.png"):
        read_image(tmp_path / "text.png")
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(InputError, match="directory"):
        read_image(tmp_path)


def test_decompression_bomb_guard(tmp_path):
    write_image(tmp_path / "a.png", rnd((13, 17, 3)))
    with pytest.raises(InputError, match="too large"):
        read_image(tmp_path / "a.png", max_pixels=100)
    assert read_image(tmp_path / "a.png", max_pixels=None).width == 17


def test_unreadable_file(tmp_path, monkeypatch):
    write_image(tmp_path / "a.png", rnd((4, 4, 3)))
    (tmp_path / "a.png").chmod(0)
    if os.geteuid() == 0:  # root reads anything: make the open itself fail as it would for a user
        import PIL.Image

        def refuse(*args, **kwargs):
            raise PermissionError(13, "Permission denied", str(tmp_path / "a.png"))

        monkeypatch.setattr(PIL.Image, "open", refuse)
    with pytest.raises(InputError, match="a.png"):
        read_image(tmp_path / "a.png")


# ---------------------------------------------------------------------------------------------
# writes are atomic


def test_unwritable_targets(tmp_path):
    rgb = rnd((4, 4, 3))
    with pytest.raises(OutputError, match="does not exist"):
        write_image(tmp_path / "nowhere" / "a.png", rgb)
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        write_image(tmp_path / "file" / "a.png", rgb)
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(OutputError, match="directory"):
        write_image(tmp_path / "dir.png", rgb)
    with pytest.raises(OutputError, match="suffix"):
        write_image(tmp_path / "a.xyz", rgb)
    assert names(tmp_path) == ["dir.png", "file"]


def test_read_only_folder(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    if os.geteuid() == 0:  # root may write anywhere: make the permission check see a locked folder
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    try:
        with pytest.raises(OutputError, match="not writable"):
            write_image(locked / "a.png", rnd((4, 4, 3)))
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_no_file(tmp_path, monkeypatch, exc):
    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half a file")
        raise exc

    monkeypatch.setattr(PILImage.Image, "save", broken_save)
    expected = OutputError if isinstance(exc, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        write_image(tmp_path / "a.png", rnd((4, 4, 3)))
    assert names(tmp_path) == []


def test_failed_16bit_write_leaves_no_file(tmp_path, monkeypatch):
    def broken(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "_encode_png16", broken)
    with pytest.raises(KeyboardInterrupt):
        write_image(tmp_path / "a.png", rnd((4, 4, 3), np.uint16))
    assert names(tmp_path) == []


def test_existing_file_untouched_on_failure(tmp_path, monkeypatch):
    write_image(tmp_path / "a.png", rnd((4, 4, 3)))
    before = (tmp_path / "a.png").read_bytes()
    monkeypatch.setattr(PILImage.Image, "save", lambda *a, **k: (_ for _ in ()).throw(OSError("no space")))
    with pytest.raises(OutputError, match="a.png"):
        write_image(tmp_path / "a.png", rnd((4, 4, 3), seed=5))
    assert (tmp_path / "a.png").read_bytes() == before and names(tmp_path) == ["a.png"]
