"""The streaming degradation pipeline: spec parsing, real codec round trips, determinism, cache bound."""

from __future__ import annotations

import numpy as np
import pytest

from adasr.data.degrade import Degradation, Setting, degrade_clip, degraded_pairs, downscale, prune_cache
from adasr.errors import ConfigError, InputError


def _clip(frames: int = 3, h: int = 96, w: int = 128) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h // 8, w // 8 + frames, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return [np.ascontiguousarray(base[:, t * 2:t * 2 + w]) for t in range(frames)]


def test_spec_round_trips_and_bad_specs_are_one_line_config_errors():
    deg = Degradation.parse("h264+h265:crf=18-36,kernel=area+bicubic,clean=0.1")
    assert deg.codecs == ("h264", "h265") and deg.crf == (18, 36) and deg.clean == 0.1
    assert Degradation.parse(deg.spec) == deg
    assert Degradation.parse("clean:kernel=bicubic").settings() == [Setting("bicubic", None, 0)]
    assert Degradation.parse("h264:crf=28,kernel=area").settings() == [Setting("area", "h264", 28)]
    for bad in ("", "vp9:crf=28", "h264:crf=60", "h264:crf=x", "h264:kernel=nearest", "h264:frames=0",
                "h264:bogus=1", "h264:crf", "h264:clean=2", "x" * 400):
        with pytest.raises(ConfigError):
            Degradation.parse(bad)


@pytest.mark.parametrize("codec", ["h264", "h265", "av1"])
def test_codec_round_trip_is_lossy_deterministic_and_keeps_the_shape(codec):
    clip = _clip()
    clean = degrade_clip(clip, 2, Setting("area", None, 0))
    coded = degrade_clip(clip, 2, Setting("area", codec, 36))
    again = degrade_clip(clip, 2, Setting("area", codec, 36))
    assert coded.shape == clean.shape == (3, 48, 64, 3) and coded.dtype == np.uint8
    assert np.array_equal(coded, again)  # same encoder, same settings, one thread: the same bytes
    assert np.abs(coded.astype(int) - clean).mean() > 0.5  # the codec really ran


def test_area_downscale_is_the_block_mean():
    hr = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    lr = downscale(hr, 2, "area")
    assert lr.shape == (2, 2, 3)
    assert lr[0, 0, 0] == round(hr[:2, :2, 0].mean())


def test_pairs_are_a_pure_function_of_the_seed_and_the_cache_returns_the_same(tmp_path, monkeypatch, data_root):
    images = tmp_path / "imgs"
    images.mkdir()
    from adasr.images import read_image, write_image

    for name in ("baby", "bird"):
        rgb = read_image(data_root / "benchmarks" / "Set5" / f"{name}.png").rgb[:160, :200]
        write_image(images / f"{name}.png", np.ascontiguousarray(rgb))
    deg = Degradation.parse("h264+h265:crf=20-34,kernel=area+bicubic,clean=0.2,frames=3,variants=2")
    monkeypatch.setenv("ADASR_CACHE", str(tmp_path / "c1"))
    first = degraded_pairs([images], 2, deg, seed=3)
    cached = degraded_pairs([images], 2, deg, seed=3)
    monkeypatch.setenv("ADASR_CACHE", str(tmp_path / "c2"))
    fresh = degraded_pairs([images], 2, deg, seed=3, use_cache=False)
    other = degraded_pairs([images], 2, deg, seed=4, use_cache=False)
    assert len(first) == 2 * 2 * 3
    for a, b, c in zip(first, cached, fresh, strict=True):
        assert a.name == b.name == c.name
        assert np.array_equal(a.lr, b.lr) and np.array_equal(a.lr, c.lr) and np.array_equal(a.hr, c.hr)
        assert a.hr.shape[0] == 2 * a.lr.shape[0] and a.hr.shape[1] == 2 * a.lr.shape[1]
    assert [p.name for p in other] != [p.name for p in first] or any(
        not np.array_equal(a.lr, b.lr) for a, b in zip(other, first, strict=True))
    assert len(list((tmp_path / "c1" / "degraded").glob("*.npy"))) == 4  # one entry per clip


def test_cache_respects_its_bound(tmp_path):
    folder = tmp_path / "degraded"
    folder.mkdir()
    for i in range(5):
        np.save(folder / f"{i}.npy", np.zeros(1000, np.uint8))
    removed = prune_cache(folder, 2500)
    left = list(folder.glob("*.npy"))
    assert sum(p.stat().st_size for p in left) <= 2500 and removed > 0 and len(left) == 2


def test_an_av1_round_trip_leaves_the_thread_scheduling_as_it_was():
    # SVT-AV1 puts the thread that drives it on real-time SCHED_FIFO when it may (root): the
    # pipeline must hand the thread back as it found it, or a trainer would starve the machine
    import os

    if not hasattr(os, "sched_getscheduler"):
        pytest.skip("no POSIX scheduling interface on this platform")
    before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
    degrade_clip(_clip(2), 2, Setting("area", "av1", 30))
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before


def test_area_downscale_is_the_rounded_block_mean_bit_for_bit():
    """The integer area kernel (live server, SRVC encoder, degradations) against the float mean it
    replaced, np.rint(mean) in float32: equal on random frames, on frames full of exact halves
    (values multiples of 64 make many block sums a half), for every factor the CLI takes, and for
    a batch of frames at once."""
    from adasr.data.imresize import area_downscale

    def float_mean(hr, k):
        h, w, c = hr.shape
        block = hr.reshape(h // k, k, w // k, k, c).astype(np.float32).mean(axis=(1, 3))
        return np.clip(np.rint(block), 0, 255).astype(np.uint8)

    rng = np.random.default_rng(0)
    for k in (2, 3, 4):
        for coarse in (False, True):
            hr = rng.integers(0, 256, (12 * k, 10 * k, 3), dtype=np.uint8)
            if coarse:
                hr = hr // 64 * 64 + (hr % 2)  # block sums land on halves and near them
            assert np.array_equal(area_downscale(hr, k), float_mean(hr, k)), k
    batch = rng.integers(0, 256, (3, 8, 12, 3), dtype=np.uint8)
    assert np.array_equal(area_downscale(batch, 2)[1], float_mean(batch[1], 2))
    with pytest.raises(InputError, match="multiple"):
        area_downscale(batch[0, :7], 2)
