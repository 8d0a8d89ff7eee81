"""The CLI: every bad input is one line on stderr, a non-zero exit, and no partial output."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from adasr._cli.main import main
from adasr.images import read_image, write_image
from adasr.modelfile import ModelSpec, save_model
from adasr.nn.registry import build_model


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["adasr", *map(str, args)])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def x2_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny_x2.safetensors"
    args = {"scale": 2, "d": 8, "s": 4, "m": 1}
    save_model(path, build_model("fsrcnn", **args), ModelSpec("fsrcnn", args, 2))
    return path


def _one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0
    assert "Traceback" not in err
    text = err.strip()
    assert text.count("\n") == 0, text
    for w in words:
        assert w in text, (w, text)


def test_upscale_image_modes(monkeypatch, capsys, tmp_path, x2_model):
    rng = np.random.default_rng(0)
    rgba = rng.integers(0, 256, (9, 7, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (9, 7), dtype=np.uint8)
    write_image(tmp_path / "a.png", rgba, alpha=alpha)
    write_image(tmp_path / "g.png", rgba[..., 0], gray=True)
    write_image(tmp_path / "d16.png", (rgba.astype(np.uint16) * 257))
    for name in ("a.png", "g.png", "d16.png"):
        code, out, err = run_cli(monkeypatch, capsys, "upscale", tmp_path / name, tmp_path / f"out_{name}",
                                 "--model", x2_model, "--quiet")
        assert code == 0, err
        src, dst = read_image(tmp_path / name), read_image(tmp_path / f"out_{name}")
        assert dst.rgb.shape == (18, 14, 3)
        assert (dst.alpha is None) == (src.alpha is None)
        assert dst.gray == src.gray and dst.bit_depth == src.bit_depth


@pytest.mark.slow
def test_bad_inputs(monkeypatch, capsys, tmp_path, x2_model, data_root):
    good = data_root / "benchmarks" / "Set5" / "baby.png"
    cases = []
    cases.append((("upscale", tmp_path / "missing.png", tmp_path / "o.png", "--model", x2_model), ("not found",)))
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:3000])
    cases.append((("upscale", corrupt, tmp_path / "o.png", "--model", x2_model), ("corrupt.png",)))
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    cases.append((("upscale", text, tmp_path / "o.mp4", "--model", x2_model), ("notes.mp4",)))
    cases.append((("upscale", good, tmp_path / "nodir" / "o.png", "--model", x2_model), ("does not exist",)))
    cases.append((("upscale", good, tmp_path / "o.png", "--model", x2_model, "--scale", "4"), ("x2 model",)))
    cases.append((("upscale", good, tmp_path / "o.png", "--model", tmp_path / "nomodel.safetensors"), ("not found",)))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((("train", "--out", tmp_path / "run", "--data", empty, "--val", "none", "--steps", "1"),
                  ("no images",)))
    cases.append((("train", "--out", tmp_path / "run", "--supernet", "tiny", "--small-until", "0.5", "--steps", "1"),
                  ("--small-until needs --small-steps",)))
    cases.append((("train", "--out", tmp_path / "run", "--supernet", "tiny", "--small-steps", "1", "--small-until", "0",
                   "--steps", "1"), ("--small-until",)))
    cases.append((("eval", x2_model, "--data", empty), ("no images",)))
    cases.append((("eval", x2_model, "--scale", "3"), ("scale",)))
    cases.append((("info", corrupt), ("damaged",)))
    for args, words in cases:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        _one_line_error(code, err, *words)
    assert not list(tmp_path.glob("o.*")) and not list(tmp_path.glob(".*part*"))


def test_unwritable_output_leaves_nothing(monkeypatch, capsys, tmp_path, x2_model, data_root):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permission bits; use a path under a file instead
            target = tmp_path / "file.png" / "o.png"
            (tmp_path / "file.png").write_bytes(b"x")
        else:
            target = locked / "o.png"
        code, _, err = run_cli(monkeypatch, capsys, "upscale", data_root / "benchmarks" / "Set5" / "baby.png",
                               target, "--model", x2_model)
        _one_line_error(code, err)
        assert not target.exists()
    finally:
        locked.chmod(0o700)


def test_upscale_video_keeps_fps_and_audio(monkeypatch, capsys, tmp_path, x2_model):
    from fractions import Fraction

    from adasr.video import probe
    from tests.video.test_video import make_clip_with_audio  # the I/O tests' clip maker

    src = make_clip_with_audio(tmp_path / "in.mp4", frames=6, size=(32, 24), fps=Fraction(25))
    code, out, err = run_cli(monkeypatch, capsys, "upscale", src, tmp_path / "out.mkv", "--model", x2_model, "--quiet")
    assert code == 0, err
    a, b = probe(src), probe(tmp_path / "out.mkv")
    assert (b.width, b.height) == (64, 48) and b.fps == a.fps and b.frame_count == a.frame_count
    assert b.has_audio and b.audio_codec == a.audio_codec


def test_eval_table_bicubic(monkeypatch, capsys):
    code, out, err = run_cli(monkeypatch, capsys, "eval", "--baseline", "bicubic", "--data", "Set5", "--scale", "2")
    assert code == 0, err
    assert "33.6" in out or "33.7" in out


def test_help_lists_commands(monkeypatch, capsys):
    code, out, _ = run_cli(monkeypatch, capsys, "--help")
    assert code == 0
    for cmd in ("train", "eval", "upscale", "info", "demo"):
        assert cmd in out


@pytest.mark.slow
def test_train_supernet_then_eval_levels(monkeypatch, capsys, tmp_path, data_root):
    folder = tmp_path / "hr"
    folder.mkdir()
    for p in sorted((data_root / "benchmarks" / "Set5").glob("*.png"))[:2]:
        write_image(folder / p.name, read_image(p).rgb[:96, :96])
    code, out, err = run_cli(monkeypatch, capsys, "train", "--supernet", "tiny", "--scale", "2", "--data", folder,
                             "--val", folder, "--steps", "2", "--patch", "16", "--batch-size", "2",
                             "--out", tmp_path / "run", "--quiet", "--recipe", "sandwich")
    assert code == 0, err
    model = tmp_path / "run" / "model.safetensors"
    code, out, err = run_cli(monkeypatch, capsys, "eval", model, "--data", folder, "--spread", "3",
                             "--json", tmp_path / "eval.json")
    assert code == 0, err
    import json

    rows = json.loads((tmp_path / "eval.json").read_text())
    assert len({r["model"] for r in rows}) == 3 and all(r["model"].startswith("run:x2-") for r in rows)
    assert rows[0]["macs_720p"] < rows[-1]["macs_720p"]
    code, out, err = run_cli(monkeypatch, capsys, "info", model)
    assert code == 0 and "search space" in out and "largest" in out
    code, _, err = run_cli(monkeypatch, capsys, "eval", model, "--data", folder, "--subnet", "x2-bogus")
    _one_line_error(code, err)

    # search -> package -> info -> profile, end to end on the tiny space
    pkg = tmp_path / "pkg"
    code, out, err = run_cli(monkeypatch, capsys, "search", model, "--out", pkg, "--val", folder, "--size", "24x16",
                             "--loads", "0", "--repeats", "2", "--strategy", "dysr", "--param", "per_depth=3",
                             "--plot", tmp_path / "p.png",
                             "--json", tmp_path / "search.json", "--quiet", "--threads", "1", "--no-above-bicubic")
    assert code == 0, err
    report = json.loads((tmp_path / "search.json").read_text())
    levels = report["levels"]
    assert levels and (tmp_path / "p.png").stat().st_size > 1000
    predicted = [lv["predicted_fps_idle"] for lv in levels]
    assert predicted == sorted(predicted, reverse=True)  # ordered by cost: fastest level first
    for a in levels:  # what is kept is not beaten on measured speed and PSNR by another level
        assert not any(b is not a and b["fps"]["0.00"] >= a["fps"]["0.00"] and b["psnr"] > a["psnr"] for b in levels)
    code, out, err = run_cli(monkeypatch, capsys, "info", pkg)
    assert code == 0 and "level 0" in out, err
    code, out, err = run_cli(monkeypatch, capsys, "profile", pkg, "--loads", "0", "--repeats", "2")
    assert code == 0 and "stored" in out, err
    # the same levels re-scored with (here: the same) weights, the profiles carried over
    again = tmp_path / "again"
    code, out, err = run_cli(monkeypatch, capsys, "search", model, "--out", again, "--val", folder, "--size", "24x16",
                             "--levels-from", pkg, "--keep-profiles", "--json", tmp_path / "again.json", "--quiet",
                             "--threads", "1", "--no-above-bicubic", "--cost", "macs")
    assert code == 0, err
    from adasr.package import load_package

    first, second = load_package(pkg), load_package(again)
    dropped = set(json.loads((tmp_path / "again.json").read_text()).get("dropped_dominated", []))
    assert [lv.config.id for lv in second.family] == [lv.config.id for lv in first.family
                                                       if lv.config.id not in dropped]
    if not dropped:
        assert second.profiles == first.profiles
    # carried-over timings still drop what they show dominated: three fixed levels (kept whatever
    # this machine's timings say), then every level timed the same: only the best-scoring one is
    # left, and the profiles keep only its measurements
    import adasr.build
    from adasr.modelfile import load_model
    from adasr.nn.supernet import spread_configs

    space = load_model(model)[0].space
    ids = list(dict.fromkeys(c.id for c in (space.smallest(), *spread_configs(space, 3), space.largest())))[:3]
    assert len(ids) == 3
    three = tmp_path / "three"
    with monkeypatch.context() as m:
        m.setattr(adasr.build, "_dominated", lambda family, timings: set())
        code, out, err = run_cli(monkeypatch, capsys, "search", model, "--out", three, "--val", folder,
                                 "--size", "24x16", "--loads", "0", "--repeats", "2", "--strategy", "fixed",
                                 "--param", "levels=" + json.dumps(ids), "--quiet", "--threads", "1",
                                 "--no-above-bicubic", "--cost", "macs")
    assert code == 0, err
    source = load_package(three)
    assert sorted(lv.config.id for lv in source.family) == sorted(ids)
    key = sorted(source.profiles)[0]
    flat = json.loads(json.dumps(source.profiles[key]))
    for entry in flat["levels"].values():
        entry["measured"] = {c: {**v, "median_s": 0.01} for c, v in entry["measured"].items()}
    source.add_profile(key, flat)
    flat_out = tmp_path / "flat"
    code, out, err = run_cli(monkeypatch, capsys, "search", model, "--out", flat_out, "--val", folder,
                             "--size", "24x16", "--levels-from", three, "--keep-profiles", "--threads", "1",
                             "--no-above-bicubic", "--cost", "macs")
    assert code == 0, err
    assert "dropped 2 level(s)" in out and "beats on measured speed and PSNR" in out
    kept = load_package(flat_out)
    best = max(source.family, key=lambda lv: lv.psnr)
    assert [lv.config.id for lv in kept.family] == [best.config.id]
    assert all(set(e["measured"]) == {best.config.id} for p in kept.profiles.values() for e in p["levels"].values())
    # a sub-network trained alone joins the family as a level with its own weights, scored with them
    import torch

    from adasr.data.datasets import load_image_pairs
    from adasr.search.quality import FastEvaluator

    supernet = load_model(model)[0]
    extra = next(c for c in spread_configs(space, 6) if c.id not in ids)
    alone = supernet.extract(extra).eval()
    with torch.no_grad():
        alone.tail.weight.mul_(0.5)  # other weights than the supernet's
    save_model(tmp_path / "alone.safetensors", alone, ModelSpec("subnet", {"config": extra.id}, 2))
    with_own = tmp_path / "own.adasr"
    with monkeypatch.context() as m:
        m.setattr(adasr.build, "_dominated", lambda family, timings: set())
        code, out, err = run_cli(monkeypatch, capsys, "search", three, "--out", with_own, "--val", folder,
                                 "--size", "24x16", "--loads", "0", "--repeats", "2", "--levels-from", three,
                                 "--add-level", tmp_path / "alone.safetensors", "--quiet", "--threads", "1",
                                 "--no-above-bicubic", "--cost", "macs", "--json", tmp_path / "own.json")
    assert code == 0, err
    grown = load_package(with_own)
    assert sorted(lv.config.id for lv in grown.family) == sorted([*ids, extra.id]) and sorted(grown.own) == [extra.id]
    rows = {r["config"]: r for r in json.loads((tmp_path / "own.json").read_text())["levels"]}
    evaluator = FastEvaluator(supernet, load_image_pairs(folder, 2), 2)
    assert rows[extra.id]["own_weights"] and rows[extra.id]["psnr"] == pytest.approx(evaluator.score_module(alone))
    assert rows[extra.id]["psnr"] != pytest.approx(evaluator.score(extra))
    index = [lv.config.id for lv in grown.family].index(extra.id)
    theirs, ours = grown.level_model(index).state_dict(), alone.state_dict()
    assert theirs.keys() == ours.keys() and all(torch.equal(theirs[k], ours[k]) for k in ours)
    code, out, err = run_cli(monkeypatch, capsys, "info", with_own)
    assert code == 0 and "(own weights)" in out, err
    # re-searching the package keeps its own-weights level (timings on a tiny frame are noise: no pruning)
    with monkeypatch.context() as m:
        m.setattr(adasr.build, "_dominated", lambda family, timings: set())
        code, out, err = run_cli(monkeypatch, capsys, "search", with_own, "--out", tmp_path / "own2.adasr", "--val",
                                 folder, "--size", "24x16", "--levels-from", with_own, "--keep-profiles", "--quiet",
                                 "--threads", "1", "--no-above-bicubic", "--cost", "macs")
    assert code == 0, err
    again_own = load_package(tmp_path / "own2.adasr")
    assert sorted(again_own.own) == [extra.id]
    assert [(lv.config.id, lv.psnr) for lv in again_own.family] == [(lv.config.id, lv.psnr) for lv in grown.family]
    code, _, err = run_cli(monkeypatch, capsys, "search", model, "--out", tmp_path / "x.adasr", "--add-level",
                           tmp_path / "alone.safetensors", "--quiet")
    _one_line_error(code, err, "--add-level")
    code, _, err = run_cli(monkeypatch, capsys, "search", model, "--out", tmp_path / "x.adasr", "--levels-from",
                           three, "--add-level", model, "--quiet")
    _one_line_error(code, err, "sub-network")
    code, _, err = run_cli(monkeypatch, capsys, "search", model, "--out", again, "--keep-profiles", "--quiet")
    _one_line_error(code, err, "--levels-from")
    (pkg / "manifest.json").write_text("{")
    code, _, err = run_cli(monkeypatch, capsys, "info", pkg)
    _one_line_error(code, err)
    code, _, err = run_cli(monkeypatch, capsys, "search", tmp_path / "missing.safetensors", "--out", tmp_path / "x")
    _one_line_error(code, err, "not found")


def test_bench_overhead_on_a_package(monkeypatch, capsys, tmp_path):
    import json

    from adasr.family import Family, Level
    from adasr.nn.supernet import SuperNet
    from adasr.package import save_package
    from adasr.space import SearchSpace

    space = SearchSpace.named("tiny")
    net = SuperNet(space)
    levels = [Level(cfg, 30.0 + i, *net.cost(cfg, lr_hw=(16, 16)), {"0.00": 0.001 * (i + 1)}, None)
              for i, cfg in enumerate((space.smallest(), space.largest()))]
    save_package(tmp_path / "pkg", net, Family(tuple(levels), space.scale, (16, 16)))
    code, out, err = run_cli(monkeypatch, capsys, "bench", "overhead", tmp_path / "pkg", "--rounds", "2",
                             "--repeats", "2", "--json", tmp_path / "o.json")
    assert code == 0, err
    result = json.loads((tmp_path / "o.json").read_text())
    assert len(result["levels"]) == 2 and all(r["ratio"] > 0 for r in result["levels"])


def test_train_progress_writes_lines_when_output_is_not_a_terminal():
    """A training run logged to a file shows its progress: lines every 5 % and at validation."""
    import io

    from rich.console import Console

    from adasr._cli.progress import TrainProgress

    buf = io.StringIO()
    with TrainProgress(True, Console(file=buf, force_terminal=False)) as progress:
        progress.event("start", {"step": 0, "steps": 40, "device": "cpu"})
        for step in range(1, 41):
            progress.event("step", {"step": step, "loss": 0.25})
            if step == 20:
                progress.event("val", {"step": step, "psnr": 30.5, "psnr_min": 29.25})
    text = buf.getvalue()
    assert "step 2/40: loss 0.2500" in text and "step 40/40" in text and "step 3/40" not in text
    assert "step 20/40: loss 0.2500, val PSNR 30.50 29.25 dB" in text
