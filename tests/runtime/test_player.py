"""The player (`adasr play`, adaptive `adasr upscale`): real files in, QoS out, nothing half-written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adasr.errors import ConfigError
from adasr.family import Family, Level
from adasr.nn.supernet import SuperNet
from adasr.package import load_package, save_package
from adasr.runtime.engine import Engine
from adasr.runtime.player import PlayOptions, play, write_timeline
from adasr.space import SearchSpace
from adasr.video import probe, read_frames
from tests.cli.test_cli import _one_line_error, run_cli
from tests.helpers import make_net
from tests.video.test_video import audio_packets, make_clip_with_audio

TINY = SearchSpace.named("tiny")


def _family(net: SuperNet, with_latency: bool = True) -> Family:
    cfgs = (TINY.smallest(), TINY.largest())
    levels = []
    for i, cfg in enumerate(cfgs):
        lat = {"0.00": 1e-4 * (i + 1), "0.50": 2e-4 * (i + 1)} if with_latency else {}
        levels.append(Level(cfg, 30.0 + i, *net.cost(cfg, lr_hw=(16, 16)), lat, None))
    return Family(tuple(levels), TINY.scale, (16, 16))


@pytest.fixture(scope="module")
def package_path(tmp_path_factory):
    net = make_net(TINY).eval()
    path = tmp_path_factory.mktemp("pkg") / "tiny.adasr"
    save_package(path, net, _family(net))
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_clip_with_audio(tmp_path_factory.mktemp("clip") / "in.mp4", frames=12, size=(32, 24))


def test_play_writes_video_with_audio_and_counts_every_frame(package_path, clip, tmp_path):
    engine = Engine.load(str(package_path))
    dst = tmp_path / "out.mp4"
    result = play(engine, clip, PlayOptions(target_fps=500.0, out=dst))
    s = result.summary()
    assert s["frames"] == 12 and sum(s["level_histogram"].values()) == 12
    assert s["out_size"] == [64, 48] and 0.0 <= s["deadlines_met"] <= 1.0
    info = probe(dst)
    assert (info.width, info.height, info.frame_count) == (64, 48, 12) and info.has_audio
    assert len(audio_packets(dst)[1]) == len(audio_packets(clip)[1])
    json.dumps(s)
    png = write_timeline(result, tmp_path / "t.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_play_fixed_level_equals_the_extracted_level(package_path, clip):
    pkg = load_package(package_path)
    engine = Engine(pkg)
    outputs = []
    import adasr.runtime.player as player

    result = play(engine, clip, PlayOptions(policy="fixed", level=1, target_fps=1000.0, pace=False, max_frames=3))
    assert result.summary()["switches"] == 0 and result.summary()["level_histogram"] == {"1": 3}
    ref = pkg.supernet.extract(pkg.family[1].config).eval()
    frame = next(read_frames(clip))
    with torch.inference_mode():
        x = torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255
        outputs.append(ref(x))
    engine.switch(1)
    got = engine.process_tensor(x)
    assert torch.allclose(got, outputs[0], atol=1e-5)
    assert player.POLICY_NAMES == ("lookup", "reactive", "fixed")


def test_play_reference_psnr_and_resize(package_path, clip):
    engine = Engine.load(str(package_path))
    result = play(engine, clip, PlayOptions(lr_hw=(12, 16), reference_every=3, target_fps=500.0))
    s = result.summary()
    assert s["lr_size"] == [16, 12] and s["out_size"] == [32, 24]
    assert s["psnr"]["frames"] == 4 and np.isfinite(s["psnr"]["sr"]) and np.isfinite(s["psnr"]["bicubic"])
    with pytest.raises(ConfigError):
        play(engine, clip, PlayOptions(reference_every=2))  # needs lr_size


def test_interrupted_play_leaves_no_output(package_path, clip, tmp_path):
    engine = Engine.load(str(package_path))
    dst = tmp_path / "cut.mp4"

    def stop(record, state):
        if record.index == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        play(engine, clip, PlayOptions(target_fps=500.0, out=dst, on_frame=stop))
    assert not dst.exists() and list(tmp_path.iterdir()) == []


def test_engine_tiles_large_frames_without_seams(package_path):
    engine = Engine.load(str(package_path), tile=16, overlap=12)
    engine.switch(0)  # the smallest level: its receptive field fits in the margin
    x = torch.rand(1, 3, 40, 36, generator=torch.Generator().manual_seed(0))
    tiled = engine.process_tensor(x)
    engine.tile = None
    whole = engine.process_tensor(x)
    assert tiled.shape == whole.shape == (1, 3, 80, 72)
    assert float((tiled - whole).abs().max()) < 1e-5


@pytest.mark.slow
def test_resolve_family_profiles_once_then_uses_the_cache(tmp_path, monkeypatch):
    from adasr.runtime.profile import profile_cache_path, resolve_family

    monkeypatch.setenv("ADASR_CACHE", str(tmp_path / "cache"))
    net = make_net(TINY).eval()
    pkg = save_package(tmp_path / "p.adasr", net, _family(net, with_latency=False))
    family, source = resolve_family(pkg, "cpu-test-1t", profile_if_missing=False)
    assert source == "predicted" and family is pkg.family
    pkg.family = Family(pkg.family.levels, pkg.family.scale, (8, 8))  # small frames: a fast profile
    family, source = resolve_family(pkg, repeats=1)
    assert source == "measured" and all(lv.measured_s for lv in family)
    key = next(iter(pkg.profiles))
    again = load_package(tmp_path / "p.adasr")
    again.family = pkg.family
    family2, source2 = resolve_family(again, key)
    assert source2 == "cache" and [lv.measured_s for lv in family2] == [lv.measured_s for lv in family]
    assert load_package(tmp_path / "p.adasr").profiles == {}  # the package file is untouched
    profile_cache_path(again, key).write_text("{not json")
    again.profiles.clear()
    assert resolve_family(again, key, profile_if_missing=False)[1] == "predicted"  # damaged cache ignored


@pytest.mark.slow
def test_cli_play_and_adaptive_upscale(monkeypatch, capsys, package_path, clip, tmp_path):
    code, out, err = run_cli(monkeypatch, capsys, "play", clip, "--model", package_path, "--quiet",
                             "--json", tmp_path / "p.json", "--timeline", tmp_path / "p.png", "--target-fps", "500")
    assert code == 0, err
    summary = json.loads((tmp_path / "p.json").read_text())
    assert summary["frames"] == 12 and summary["profile_source"] in ("measured", "cache")  # no profile shipped
    assert (tmp_path / "p.png").is_file()

    code, out, err = run_cli(monkeypatch, capsys, "upscale", clip, tmp_path / "u.mp4", "--model", package_path,
                             "--json", "--quiet", "--target-fps", "500")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["frames"] == 12 and summary["mode"] == "realtime" and probe(tmp_path / "u.mp4").width == 64
    code, out, err = run_cli(monkeypatch, capsys, "upscale", clip, tmp_path / "f.mp4", "--model", package_path,
                             "--json", "--quiet", "--level", "best")
    assert code == 0, err
    assert json.loads(out)["level_histogram"] == {"1": 12}

    code, _, err = run_cli(monkeypatch, capsys, "upscale", clip, tmp_path / "bad.mp4", "--model", package_path,
                           "--level", "7", "--quiet")
    _one_line_error(code, err, "levels 0..1")
    assert not (tmp_path / "bad.mp4").exists()
    code, _, err = run_cli(monkeypatch, capsys, "play", clip, "--model", package_path, "--scale", "4", "--quiet")
    _one_line_error(code, err, "x2 package")
    code, _, err = run_cli(monkeypatch, capsys, "play", clip, "--model", package_path, "--policy", "magic")
    _one_line_error(code, err, "--policy")
    code, _, err = run_cli(monkeypatch, capsys, "play", tmp_path / "p.json", "--model", package_path, "--quiet")
    assert code != 0 and "Traceback" not in err


@pytest.mark.slow
def test_workloads_run_together_in_every_mode(package_path):
    from adasr.runtime.multi import MODES, Workload, run_workloads

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in range(3)]
    for mode in MODES:
        engines = [Engine.load(str(package_path), level=1) for _ in range(2)]
        work = [Workload(e, (frames[i % 3] for i in range(10)), fps) for e, fps in zip(engines, (400.0, 300.0))]
        manager_kw = {"cooldown": 0, "min_samples": 1} if mode != "fixed" else None
        stats = run_workloads(work, mode=mode, manager_kw=manager_kw)
        assert [len(s.frames) for s in stats] == [10, 10]
        if mode == "fixed":
            assert all(not s.switches for s in stats)
    with pytest.raises(ConfigError):
        run_workloads(work, mode="psychic")

    class Broken:
        levels, level, switch_latencies = engines[0].levels, 0, []

        def process(self, frame):
            raise RuntimeError("model fell over")

        def switch(self, level):
            return 0

    with pytest.raises(RuntimeError, match="fell over"):
        run_workloads([Workload(Broken(), iter(frames), 100.0), Workload(engines[1], iter(frames), 100.0)],
                      mode="fixed")


@pytest.mark.slow
def test_adaptive_upscale_bad_inputs(monkeypatch, capsys, package_path, tmp_path, data_root):
    import av

    from adasr.images import read_image, write_image
    from tests.video.test_video import write_clip

    good = tmp_path / "good.mp4"
    write_clip(good, n=30)
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) - (len(data) - data.find(b"mdat")) // 3])
    code, _, err = run_cli(monkeypatch, capsys, "upscale", cut, tmp_path / "cut_x2.mp4", "--model", package_path,
                           "--quiet", "--level", "0")
    _one_line_error(code, err, "cut.mp4", "decoded", "upscaled to")
    kept = probe(tmp_path / "cut_x2.mp4")  # what decoded is kept, as a complete file
    assert 0 < kept.frame_count < 30

    empty = tmp_path / "empty.mp4"
    with av.open(str(empty), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        c.start_encoding()
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    for src in (empty, text):
        code, _, err = run_cli(monkeypatch, capsys, "upscale", src, tmp_path / "o.mp4", "--model", package_path,
                               "--quiet")
        _one_line_error(code, err, src.name)
    code, _, err = run_cli(monkeypatch, capsys, "upscale", good, tmp_path / "nodir" / "o.mp4", "--model",
                           package_path, "--quiet")
    _one_line_error(code, err, "does not exist")
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".*part*"))

    rng = np.random.default_rng(0)
    write_image(tmp_path / "a.png", rng.integers(0, 256, (9, 7, 3), dtype=np.uint8),
                alpha=rng.integers(0, 256, (9, 7), dtype=np.uint8))
    code, out, err = run_cli(monkeypatch, capsys, "upscale", tmp_path / "a.png", tmp_path / "a_x2.png", "--model",
                             package_path, "--level", "0")
    assert code == 0, err
    img = read_image(tmp_path / "a_x2.png")
    assert img.rgb.shape == (18, 14, 3) and img.alpha is not None
