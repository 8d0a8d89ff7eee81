"""Datasets: image folders and video frames go through the same pairing; LR is cached; patches
are a pure function of the generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adasr.data.datasets import PatchSampler, cache_dir, load_image_pairs, load_pairs, load_video_pairs, make_lr
from adasr.errors import InputError


def test_image_folder_pairs_and_cache(data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("ADASR_CACHE", str(tmp_path / "cache"))
    pairs = load_image_pairs(data_root / "benchmarks" / "Set5", 3)
    assert len(pairs) == 5
    for p in pairs:
        assert p.hr.shape[0] % 3 == 0 and p.hr.shape[1] % 3 == 0
        assert p.lr.shape == (p.hr.shape[0] // 3, p.hr.shape[1] // 3, 3)
        assert np.array_equal(p.lr, make_lr(p.hr, 3))
    cached = list((cache_dir() / "lr").glob("*.npy"))
    assert len(cached) == 5
    again = load_image_pairs(data_root / "benchmarks" / "Set5", 3)
    assert all(np.array_equal(a.lr, b.lr) for a, b in zip(pairs, again, strict=True))
    gray = load_image_pairs(data_root / "benchmarks" / "Set14", 2, limit=3)
    assert [p.gray for p in gray] == [False, False, True]  # baboon, barbara, bridge (grayscale)


def test_video_frames_pairs(data_root):
    clip = data_root / "video" / "bikes_640x272.mp4"
    pairs = load_video_pairs(clip, 2, every=5, max_frames=3)
    assert [p.name for p in pairs] == ["bikes_640x272-00000", "bikes_640x272-00005", "bikes_640x272-00010"]
    assert pairs[0].hr.shape == (272, 640, 3) and pairs[0].lr.shape == (136, 320, 3)
    assert len(load_pairs(clip, 2, every=100)) == 3  # 250 frames, every 100th


def test_patch_sampler_is_a_function_of_the_generator(small_pairs):
    sampler = PatchSampler(small_pairs, 2, patch=16, batch_size=4)
    a = sampler.batch(torch.Generator().manual_seed(5))
    b = sampler.batch(torch.Generator().manual_seed(5))
    c = sampler.batch(torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    assert a[0].shape == (4, 3, 16, 16) and a[1].shape == (4, 3, 32, 32)
    with pytest.raises(InputError, match="larger than"):
        PatchSampler(small_pairs, 2, patch=64, batch_size=1)


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(InputError, match="no images"):
        load_image_pairs(tmp_path, 2)
    with pytest.raises(InputError, match="not found"):
        load_image_pairs(tmp_path / "nope", 2)
