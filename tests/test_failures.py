"""Hostile input and faults (issue 12, items 6-12): every class of failure is one line on stderr,
the exit code of its class (2 input, 3 output, 4 model, 5 option, 130 interrupted) and no
leftover output; nothing falls into the exit-70 "internal error" catch-all."""

from __future__ import annotations

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adasr._cli.common import RANGES, Range, check_options, parse_hw, parse_shares, range_for
from adasr.errors import ConfigError, ModelError
from adasr.modelfile import ModelSpec, load_model, save_model
from adasr.nn.registry import build_model
from tests.cli.test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=25, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _one_line(code: int, err: str, want: int, *words: str) -> None:
    assert code == want, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, (w, err)


def _tiny_model(path: Path) -> Path:
    net = build_model("fsrcnn", scale=2, d=8, s=4, m=1)
    save_model(path, net, ModelSpec("fsrcnn", {"scale": 2, "d": 8, "s": 4, "m": 1}, 2))
    return path


def _cli_tree():
    """(command name for RANGES, argv prefix, click command) of every leaf command."""
    from typer.main import get_command

    from adasr._cli.main import app

    def walk(cmd, path):
        if getattr(cmd, "commands", None) is not None:
            for name, sub in cmd.commands.items():
                yield from walk(sub, (*path, name))
        else:
            yield path[-1], list(path), cmd

    return list(walk(get_command(app), ()))


def _numeric(param) -> bool:
    ann = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return ann in (int, float, list[int], list[float])


def _required_args(cmd) -> list[str]:
    """Placeholder values for a command's required arguments and options (never reached)."""
    args: list[str] = []
    for p in cmd.params:
        if not p.required:
            continue
        value = "1" if _numeric(p) else "placeholder"
        args += [value] if p.param_type_name == "argument" else [p.opts[0], value]
    return args


NUMERIC = [(name, argv, cmd, p) for name, argv, cmd in _cli_tree() for p in cmd.params if _numeric(p)]


def _outside(r: Range, integer: bool):
    """Values just and far outside `r`, plus NaN and infinities for floats."""
    below = st.integers(max_value=int(r.lo) - (0 if r.lo_open else 1)) if integer else \
        st.floats(max_value=r.lo, exclude_max=not r.lo_open, allow_nan=False)
    above = st.integers(min_value=int(r.hi) + (0 if r.hi_open else 1)) if integer else \
        st.floats(min_value=r.hi, exclude_min=not r.hi_open, allow_nan=False)
    extra = st.sampled_from([math.nan, math.inf, -math.inf]) if not integer else st.nothing()
    return below | above | extra


class TestOptionRanges:
    """Item 6: every numeric option has a range, checked before its command runs."""

    def test_every_numeric_option_has_a_range(self):
        missing = [f"{' '.join(argv)} {p.opts[0]}" for name, argv, cmd, p in NUMERIC if range_for(name, p.name) is None]
        assert not missing, missing
        assert len(NUMERIC) > 60  # the walk really saw the whole CLI

    @pytest.mark.slow
    @FUZZ
    @given(data=st.data())
    def test_out_of_range_values_are_one_line_option_errors(self, monkeypatch, capsys, data):
        name, argv, cmd, param = data.draw(st.sampled_from(NUMERIC), label="option")
        integer = param.type_descriptor.annotation in (int, list[int])
        value = data.draw(_outside(range_for(name, param.name), integer), label="value")
        text = str(value) if integer else repr(value)
        code, _, err = run_cli(monkeypatch, capsys, *argv, *_required_args(cmd), param.opts[0], text)
        _one_line(code, err, 5, param.opts[0])

    @FUZZ
    @given(name=st.sampled_from(sorted(RANGES)), where=st.floats(0, 1))
    def test_values_inside_the_range_pass(self, name, where):
        r = RANGES[name]
        value = r.lo + where * (min(r.hi, 1e9) - r.lo)
        if value not in r:  # an open end
            value = (r.lo + min(r.hi, 1e9)) / 2
        command, _, option = name.rpartition(":")
        check_options(command or "any", {option: value})  # no ConfigError

    def test_huge_thread_count_is_refused_not_a_crash(self, monkeypatch, capsys, tmp_path):
        code, _, err = run_cli(monkeypatch, capsys, "upscale", tmp_path / "a.png", tmp_path / "b.png",
                               "--threads", str(10**9))
        _one_line(code, err, 5, "--threads", "at most 256")

    @FUZZ
    @given(w=st.integers(-10, 10**6), h=st.integers(-10, 10**6))
    def test_sizes_and_shares_are_bounded(self, w, h):
        try:
            assert parse_hw(f"{w}x{h}", "--size") == (h, w)  # WxH in, (H, W) out
            assert 8 <= w <= 16384 and 8 <= h <= 16384
        except ConfigError as exc:
            assert "--size" in str(exc) and not (8 <= w <= 16384 and 8 <= h <= 16384)
        with pytest.raises(ConfigError, match="--loads"):
            parse_shares("0,1.5")
        with pytest.raises(ConfigError, match="1 to 16"):
            parse_shares(",".join(["0.1"] * 17))


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory, data_root):
    from adasr.images import read_image, write_image

    folder = tmp_path_factory.mktemp("hr")
    for p in sorted((data_root / "benchmarks" / "Set5").glob("*.png"))[:2]:
        write_image(folder / p.name, read_image(p).rgb[:64, :64].copy())
    return folder


def _train_args(out: Path, hr: Path, *extra: str) -> list[str]:
    return ["train", "--out", out, "--data", hr, "--val", "none", "--steps", "4", "--batch-size", "2", "--patch", "16",
            "--arg", "d=8", "--arg", "s=4", "--arg", "m=1", "--ckpt-every", "2", "--quiet", *extra]


class TestCheckpointsAndNonFinite:
    """Item 7: checkpoint digests, a diverging run stops, NaN models are refused."""

    @staticmethod
    def _trainer(tmp_path, small_pairs, **kw):
        from adasr.train import TrainConfig, Trainer

        cfg = TrainConfig(arch="fsrcnn", scale=2, train_data=("unused",), arch_args={"d": 8, "s": 4, "m": 1},
                          patch=16, batch_size=2, steps=4, ckpt_every=2, val_every=100, seed=3)
        return cfg, lambda **more: Trainer(cfg, tmp_path / "run", train_pairs=small_pairs, **{**kw, **more})

    def test_flipped_byte_in_a_checkpoint_is_refused(self, tmp_path, small_pairs, monkeypatch, capsys, hr_folder):
        from adasr.train.loop import CHECKPOINT

        cfg, make = self._trainer(tmp_path, small_pairs)
        make().run()
        ckpt = tmp_path / "run" / CHECKPOINT
        data = bytearray(ckpt.read_bytes())
        data[-5] ^= 0x10  # inside the last tensor's bytes, far from the JSON header
        ckpt.write_bytes(bytes(data))
        with pytest.raises(ModelError, match="checksum"):
            make(resume=True)
        code, _, err = run_cli(monkeypatch, capsys, "train", "--out", tmp_path / "run", "--resume", "--quiet")
        _one_line(code, err, 4, "checksum")

    def test_nan_in_a_checkpoint_is_refused_even_with_a_matching_digest(self, tmp_path, small_pairs):
        from safetensors import safe_open
        from safetensors.torch import save_file

        from adasr.package import tensors_sha256
        from adasr.train.loop import _META, CHECKPOINT

        _, make = self._trainer(tmp_path, small_pairs)
        make().run()
        ckpt = tmp_path / "run" / CHECKPOINT
        with safe_open(str(ckpt), framework="pt") as f:
            meta = json.loads(f.metadata()[_META])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        name = next(k for k in tensors if k.startswith("model."))
        tensors[name][0] = float("nan")
        meta["tensors_sha256"] = tensors_sha256(tensors)
        save_file(tensors, str(ckpt), metadata={_META: json.dumps(meta)})
        with pytest.raises(ModelError, match="NaN"):
            make(resume=True)

    def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(self, tmp_path, small_pairs):
        from adasr.train.loop import MODEL, TrainingDiverged

        _, make = self._trainer(tmp_path, small_pairs)
        trainer = make()
        real = trainer.train_step

        def step(i):
            loss = real(i)
            if i == 2:  # the third step diverges: poison the weights as a real blow-up does
                with torch.no_grad():
                    next(trainer.model.parameters()).fill_(float("nan"))
                return math.nan
            return loss

        trainer.train_step = step
        with pytest.raises(TrainingDiverged, match="step 3.*checkpoint of step 2"):
            trainer.run()
        assert not (tmp_path / "run" / MODEL).exists()
        resumed = make(resume=True)  # the checkpoint on disk is the finite one of step 2
        assert resumed.state.step == 2

    def test_nan_model_is_refused_by_upscale_eval_and_info(self, tmp_path, monkeypatch, capsys, data_root):
        net = build_model("fsrcnn", scale=2, d=8, s=4, m=1)
        with torch.no_grad():
            next(net.parameters())[0] = float("nan")
        path = tmp_path / "nan.safetensors"
        save_model(path, net, ModelSpec("fsrcnn", {"scale": 2, "d": 8, "s": 4, "m": 1}, 2))
        with pytest.raises(ModelError, match="NaN"):
            load_model(path)
        image = data_root / "benchmarks" / "Set5" / "baby.png"
        for args in (("upscale", image, tmp_path / "o.png", "--model", path), ("eval", path, "--data", "Set5"),
                     ("info", path)):
            code, _, err = run_cli(monkeypatch, capsys, *args)
            _one_line(code, err, 4, "NaN")
        assert not list(tmp_path.glob("o*")) and not list(tmp_path.glob(".o*"))

    def test_evaluate_refuses_non_finite_outputs(self, small_pairs):
        from adasr.evaluation import evaluate

        class Blows(torch.nn.Module):
            def forward(self, x):
                return torch.full((x.shape[0], 3, x.shape[2] * 2, x.shape[3] * 2), float("inf"))

        with pytest.raises(ModelError, match="NaN or infinity"):
            evaluate(Blows(), small_pairs[:1], 2)


class TestResumeTakesTheCheckpointsSettings:
    """Item 8: `train --out DIR --resume` continues with the checkpoint's settings."""

    def test_resume_with_only_out_matches_an_uninterrupted_run(self, tmp_path, monkeypatch, capsys, hr_folder):
        full, cut = tmp_path / "full", tmp_path / "cut"
        code, _, err = run_cli(monkeypatch, capsys, *_train_args(full, hr_folder))
        assert code == 0, err
        # stop after the first step (the training-time budget), then continue with --out and --resume only
        code, _, err = run_cli(monkeypatch, capsys, *_train_args(cut, hr_folder, "--max-minutes", "0.000001"))
        assert code == 0, err
        code, out, err = run_cli(monkeypatch, capsys, "train", "--out", cut, "--resume", "--quiet")
        assert code == 0 and "trained 4 steps" in out, err
        a, _ = load_model(full / "model.safetensors")
        b, _ = load_model(cut / "model.safetensors")
        for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert ka == kb and torch.equal(va, vb), ka

    def test_only_options_that_really_conflict_are_refused(self, tmp_path, monkeypatch, capsys, hr_folder):
        run = tmp_path / "run"
        code, _, err = run_cli(monkeypatch, capsys, *_train_args(run, hr_folder, "--max-minutes", "0.000001"))
        assert code == 0, err
        before = (run / "checkpoint.safetensors").read_bytes()
        code, _, err = run_cli(monkeypatch, capsys, "train", "--out", run, "--resume", "--steps", "9", "--lr", "0.5",
                               "--seed", "0", "--quiet")
        _one_line(code, err, 5, "--steps 9", "--lr 0.5")
        assert "--seed" not in err  # the same as the checkpoint's: no conflict
        assert (run / "checkpoint.safetensors").read_bytes() == before
        code, out, err = run_cli(monkeypatch, capsys, "train", "--out", run, "--resume", "--steps", "4", "--data",
                                 hr_folder, "--patch", "16", "--quiet")
        assert code == 0 and "trained 4 steps" in out, err


def _package(path: Path):
    from adasr.package import save_package
    from adasr.search.family_search import search_family
    from adasr.search.latency import MacsCostModel
    from adasr.space import SearchSpace
    from tests.helpers import make_net

    class Score:
        def score(self, cfg) -> float:
            return 30.0

    space = SearchSpace.named("tiny")
    family = search_family(None, space, Score(), MacsCostModel((16, 16)), "dysr", seed=0, per_depth=2, bins=2,
                           per_bin=1)
    return save_package(path, make_net(space).eval(), family)


@pytest.fixture(scope="module")
def stream(tmp_path_factory, data_root):
    """A 6-frame single-model stream (single file)."""
    from adasr.stream.adapt import AdaptConfig
    from adasr.stream.encoder import EncodeSettings, encode_video

    path = tmp_path_factory.mktemp("stream") / "clip.adasrs"
    settings = EncodeSettings(tau=0.2, codec="h264", device="cpu", adapt=AdaptConfig(steps=1, batch=2, patch=16))
    encode_video(data_root / "video" / "bikes_640x272.mp4", path, settings, max_frames=6, crop_hw=(32, 64))
    return path


class TestFailuresHaveTheirClass:
    """Item 9: what used to end as exit 70 "internal error"."""

    def test_empty_family_in_a_package(self, tmp_path, monkeypatch, capsys):
        pkg = _package(tmp_path / "pkg")
        levels = json.loads((pkg.path / "levels.json").read_text())
        levels["levels"] = []
        (pkg.path / "levels.json").write_text(json.dumps(levels))
        code, _, err = run_cli(monkeypatch, capsys, "info", pkg.path)
        _one_line(code, err, 4, "no levels")

    @pytest.mark.slow
    @FUZZ
    @given(name=st.sampled_from(["d", "s", "m"]), value=st.integers(-10**6, -1))
    def test_negative_model_arguments(self, tmp_path, monkeypatch, capsys, name, value):
        with pytest.raises(ModelError, match="negative"):
            build_model("fsrcnn", scale=2, **{name: value})
        code, _, err = run_cli(monkeypatch, capsys, "train", "--out", tmp_path / "neg", "--arg", f"{name}={value}",
                               "--val", "none", "--quiet")
        _one_line(code, err, 5, "--arg", "negative")
        assert not (tmp_path / "neg").exists()

    def test_train_out_naming_a_file(self, tmp_path, monkeypatch, capsys, hr_folder):
        target = tmp_path / "notes.txt"
        target.write_text("mine")
        code, _, err = run_cli(monkeypatch, capsys, *_train_args(target, hr_folder))
        _one_line(code, err, 3, "is a file")
        assert target.read_text() == "mine"

    def test_full_disk_during_train(self, tmp_path, monkeypatch, capsys, hr_folder):
        import adasr.train.loop as loop

        def full(path, data):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))

        monkeypatch.setattr(loop, "write_bytes_atomic", full)
        code, _, err = run_cli(monkeypatch, capsys, *_train_args(tmp_path / "run", hr_folder))
        _one_line(code, err, 3, "No space left on device")

    def test_full_disk_during_encode(self, tmp_path, monkeypatch, capsys, data_root):
        import builtins

        import adasr.stream.container as container

        class Full:
            def __init__(self, fh):
                self.fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

        def fake_open(path, mode="r", *a, **k):
            fh = builtins.open(path, mode, *a, **k)
            return Full(fh) if "w" in mode else fh

        monkeypatch.setattr(container, "open", fake_open, raising=False)
        code, _, err = run_cli(monkeypatch, capsys, "encode", data_root / "video" / "bikes_640x272.mp4",
                               tmp_path / "s.adasrs", "--codec", "h264", "--max-frames", "3", "--crop", "64x32",
                               "--steps", "1", "--batch", "1", "--patch", "16", "--device", "cpu", "--quiet")
        _one_line(code, err, 3, "No space left on device")
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # no stream, no .part

    @pytest.mark.slow
    @FUZZ
    @given(length=st.integers(10**6, 2**64 - 1))
    def test_stream_header_claiming_an_absurd_length(self, tmp_path, monkeypatch, capsys, stream, length):
        import struct

        data = bytearray(stream.read_bytes())
        data[12:20] = struct.pack("<Q", length)
        bad = tmp_path / "bad.adasrs"
        bad.write_bytes(bytes(data))
        code, _, err = run_cli(monkeypatch, capsys, "decode", bad, tmp_path / "o.mp4")
        _one_line(code, err, 4, "header claims")  # a damaged stream: a model error, as in tests/hostile/test_hostile.py


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


class TestCtrlC:
    """Item 10: Ctrl-C is exit 130 with one line; no worker tracebacks; no leftovers; stale ones cleaned."""

    @pytest.mark.integration
    def test_sigint_during_play_with_a_background_load(self, tmp_path, data_root):
        shm = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(os.environ.get("TMPDIR", "/tmp"))
        env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
        out = tmp_path / "p.mp4"
        # the longest shared clip (795 frames): the play must still be running when the signal comes, also on a
        # loaded machine where the load workers start late
        cmd = [sys.executable, "-m", "adasr", "play", str(data_root / "video" / "vtest_768x576.avi"), "--trace",
               "stable", "--quiet", "--lr-size", "64x32", "--target-fps", "5", "--out", str(out)]
        # a session of its own: SIGINT to the group is what a terminal's Ctrl-C does
        # SIGINT back to its default in the child: a test run started in the background (nohup make test &)
        # ignores SIGINT, the child would inherit that, and Python then never raises KeyboardInterrupt
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 120
            mine = f"adasr-cpuload-{proc.pid}-"
            while not any(p.name.startswith(mine) for p in shm.iterdir()):
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.1)
            time.sleep(0.5)  # workers are running
            os.killpg(proc.pid, signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        text = err.decode()
        assert proc.returncode == 130, text
        assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
        assert text.strip().count("\n") == 0 and "interrupted" in text, text
        assert not [p for p in shm.iterdir() if p.name.startswith(mine)]
        assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither the video nor a .part

    def test_stale_load_state_files_are_removed_and_nothing_else(self, tmp_path):
        from adasr.cpuload import remove_stale_state

        dead, old = _dead_pid(), time.time() - 3600
        stale = tmp_path / f"adasr-cpuload-{dead}-abc123.bin"
        live = tmp_path / f"adasr-cpuload-{os.getppid()}-abc123.bin"
        foreign = tmp_path / f"adasr-cpuload-{dead}.txt"
        fresh = tmp_path / f"adasr-cpuload-{dead}-new999.bin"
        for p in (stale, live, foreign, fresh):
            p.write_bytes(b"x")
        for p in (stale, live, foreign):
            os.utime(p, (old, old))  # fresh: newer than this process, left alone
        assert remove_stale_state(tmp_path) == [stale]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (live, foreign, fresh))

    def test_stale_part_files_are_removed_at_the_next_write(self, tmp_path):
        from adasr._atomic import write_bytes_atomic

        dead, old = _dead_pid(), time.time() - 3600
        stale = tmp_path / f".out.{dead}-abcd1234.part.json"
        stale_dir = tmp_path / f".out.{dead}-efgh5678.part.json"
        other = tmp_path / f".other.{dead}-abcd1234.part.json"
        legacy = tmp_path / ".out.abcd1234.part.json"  # no pid: cannot tell whose; kept
        stale.write_bytes(b"x")
        stale_dir.mkdir()
        for p in (other, legacy):
            p.write_bytes(b"x")
        for p in (stale, stale_dir, other, legacy):
            os.utime(p, (old, old))
        write_bytes_atomic(tmp_path / "out.json", b"{}")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", other.name, legacy.name])

    def test_load_workers_ignore_sigint(self):
        from adasr.cpuload import CpuLoad

        with CpuLoad(0.2, workers=1) as load:
            pid = load.pids[0]
            assert os.getpgid(pid) != os.getpgid(0)  # not in the terminal's process group
            os.kill(pid, signal.SIGINT)
            time.sleep(0.3)
            assert load.running  # ignored; the parent stops it
        assert not load.running


class TestIgnoredOptionsAreRefused:
    """Item 11: options that do not apply are refused, not silently ignored."""

    def test_play_on_a_stream(self, tmp_path, monkeypatch, capsys, stream):
        for extra, words in [(("--model", tmp_path / "x.adasr"), ("--model",)), (("--scale", "4"), ("--scale",)),
                             (("--trace", "bursty"), ("--trace",)), (("--lr-size", "32x16"), ("--lr-size",)),
                             (("--scale", "2", "--lr-size", "32x16"), ("--scale", "--lr-size"))]:
            code, _, err = run_cli(monkeypatch, capsys, "play", stream, "--quiet", *extra)
            _one_line(code, err, 5, *words, "model stream")

    def test_decode_level_on_a_single_model_stream(self, tmp_path, monkeypatch, capsys, stream):
        code, _, err = run_cli(monkeypatch, capsys, "decode", stream, tmp_path / "o.mp4", "--level", "0", "--quiet")
        _one_line(code, err, 5, "--level", "single model")
        assert not list(tmp_path.iterdir())

    def test_eval_subnet_without_a_supernet(self, tmp_path, monkeypatch, capsys):
        model = _tiny_model(tmp_path / "m.safetensors")
        code, _, err = run_cli(monkeypatch, capsys, "eval", model, "--subnet", "anything")
        _one_line(code, err, 5, "--subnet")


class TestSmallOnes:
    """Item 12: folder modes, no empty folders after a refusal, honest texts, early refusals, usage errors."""

    def test_package_folders_follow_the_umask(self, tmp_path):
        old = os.umask(0o022)
        try:
            pkg = _package(tmp_path / "pkg")
        finally:
            os.umask(old)
        assert pkg.path.stat().st_mode & 0o777 == 0o755

    def test_refused_demo_and_train_leave_no_folder(self, tmp_path, monkeypatch, capsys, hr_folder):
        for args in (("demo", "--out", tmp_path / "d", "--trace", "bogus", "--quiet"),
                     ("demo", "--out", tmp_path / "d", "--target-fps", "-1"),
                     _train_args(tmp_path / "t", hr_folder, "--patch", "512"),  # larger than the images
                     _train_args(tmp_path / "t", hr_folder, "--arch", "nosuch")):
            code, _, err = run_cli(monkeypatch, capsys, *args)
            assert code in (2, 4, 5) and "Traceback" not in err, err
        assert sorted(p.name for p in tmp_path.iterdir()) == []

    def test_texts_name_the_right_things(self, tmp_path, monkeypatch, capsys):
        import adasr.paths as paths

        code, _, err = run_cli(monkeypatch, capsys, "search", tmp_path / "none.safetensors", "--out", tmp_path / "p",
                               "--param", "bins")
        _one_line(code, err, 5, "--param wants NAME=VALUE")
        monkeypatch.setattr(paths, "MODELS_DIR", tmp_path)  # no bundled package at all
        code, _, err = run_cli(monkeypatch, capsys, "demo", "--out", tmp_path / "d")
        _one_line(code, err, 2, "bundled")
        assert "--model" not in err.replace("with --model", "")

    def test_eval_on_a_package_evaluates_its_levels(self, tmp_path, monkeypatch, capsys, hr_folder):
        pkg = _package(tmp_path / "pkg")
        code, out, err = run_cli(monkeypatch, capsys, "eval", pkg.path, "--data", hr_folder, "--json",
                                 tmp_path / "e.json")
        assert code == 0, err
        rows = json.loads((tmp_path / "e.json").read_text())
        assert [r["model"] for r in rows] == [f"pkg:L{i}" for i in range(len(pkg.family))]

    def test_search_strategy_refused_before_any_work(self, tmp_path, monkeypatch, capsys):
        import adasr.modelfile as modelfile

        def never(*a, **k):
            raise AssertionError("the model was loaded before the options were checked")

        monkeypatch.setattr(modelfile, "load_model", never)
        for extra, word in ((("--strategy", "bogus"), "strategy"), (("--cost", "bogus"), "--cost"),
                            (("--param", "nosuch=1"), "nosuch")):
            code, _, err = run_cli(monkeypatch, capsys, "search", tmp_path / "m.safetensors", "--out", tmp_path / "p",
                                   *extra)
            _one_line(code, err, 5, word)

    @pytest.mark.parametrize("args", [("train", "--bogus"), ("upscale",), ("upscale", "a", "b", "--crf", "abc"),
                                      ("nosuchcommand",), ("bench", "memory", "--levels")])
    def test_usage_errors_are_one_line_option_errors(self, monkeypatch, capsys, args):
        code, _, err = run_cli(monkeypatch, capsys, *args)
        _one_line(code, err, 5, "--help")
