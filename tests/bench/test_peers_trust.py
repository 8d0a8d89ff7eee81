"""`bench peers` trusts a timing only with enough samples and a small spread, and compares nothing at equal
speed otherwise (the PSNR verdict, levels against peers, does not depend on the timings)."""

from __future__ import annotations

from adasr.bench.peers import TRUSTED_SAMPLES, timing_spread, timing_trusted


def test_timing_trust():
    steady = [0.010 + 0.0001 * (i % 3) for i in range(TRUSTED_SAMPLES)]
    assert timing_trusted(steady) and timing_spread(steady) < 0.05
    assert not timing_trusted(steady[:2])  # too few samples (rounds 1 x repeats 2)
    noisy = [0.010, 0.030, 0.011, 0.028, 0.012, 0.033, 0.010, 0.029, 0.011, 0.031]
    assert timing_spread(noisy) > 0.2 and not timing_trusted(noisy)


def test_noisy_timings_withhold_the_verdict(monkeypatch, tmp_path):
    import numpy as np

    from adasr.bench import peers

    class Up:
        def __init__(self, name, kind):
            self.name, self.kind, self.params = name, kind, None

        def fn(self, frame):
            return frame

    ups = [Up("bicubic", "bicubic"), Up("adasr level 0", "adasr-level")]
    monkeypatch.setattr(peers, "package_upscalers", lambda package: (2, ups[1:]))
    monkeypatch.setattr(peers, "bicubic_upscaler", lambda scale: ups[0])
    monkeypatch.setattr(peers, "opencv_upscalers", lambda scale, d: ([], []))
    monkeypatch.setattr(peers, "score", lambda u, pairs, scale: {"psnr": 30.0 + (u.kind != "bicubic"), "ssim": 0.9})
    monkeypatch.setattr(peers, "_frame", lambda video, hw: np.zeros((4, 4, 3), np.uint8))
    monkeypatch.setattr("adasr.data.datasets.load_pairs", lambda *a, **k: [])
    few = peers.run_peers("x", sets=("Set5",), rounds=1, repeats=2, acnet=False)
    assert "no comparison at equal speed" in few["verdict_withheld"]
    assert few["verdict"]["Set5"]["every_level_above_every_peer"] and "models" not in few["verdict"]["Set5"]
    assert all(r["timing_trusted"] is False and r["timing_samples"] == 2 for r in few["rows"])
    png = tmp_path / "p.png"
    peers.pareto_png(few, png)
    assert png.stat().st_size > 0
