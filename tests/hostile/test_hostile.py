"""Hostile input and careless use (issue 12, items 1-5): one test class per defect class.

1. names read from a manifest stay inside their folder and are bounded regular files;
2. an existing folder is replaced only if adasr wrote it;
3. no command writes onto one of its inputs;
4. a crafted config is refused before anything of its size is built;
5. tiled SR streams into the integer output (no float buffer of the output's size).
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from adasr._atomic import atomic_folder, check_not_input
from adasr.errors import InputError, ModelError, OutputError
from adasr.modelfile import ModelSpec, load_model, save_model
from adasr.nn import registry
from adasr.nn.registry import build_model
from adasr.package import load_package, save_package
from adasr.safepath import confined_file, read_confined
from adasr.space import SearchSpace
from adasr.stream.container import MANIFEST, STREAM_KIND, STREAM_SCHEMA_VERSION, StreamFile, write_stream
from tests.cli.test_cli import _one_line_error, run_cli
from tests.helpers import assert_frames_close, make_net

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
TINY = SearchSpace.named("tiny")


# -- helpers --------------------------------------------------------------------------------------

def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _stream_manifest(blobs: dict[str, bytes], **extra) -> dict:
    table, offset = {}, 0
    for name, data in blobs.items():
        table[name] = {"size": len(data), "sha256": _sha(data), "offset": offset}
        offset += len(data)
    return {"kind": STREAM_KIND, "schema_version": STREAM_SCHEMA_VERSION, "blobs": table,
            "content": {"file": "content.mp4"}, "model": {"init": "model/init.bin"}, "segments": [],
            "scale": 2, "fps": "25", "frames": 1, "width": 16, "height": 16, "lr_width": 8, "lr_height": 8, **extra}


def _crafted_stream(folder: Path, table_blobs: dict[str, bytes], **extra) -> Path:
    """A stream folder whose manifest lists `table_blobs` (the files themselves are the test's)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(_stream_manifest(table_blobs, **extra)))
    return folder


def _own_stream(folder: Path) -> Path:
    """A small stream folder as adasr writes it."""
    write_stream(folder, {"content": {"file": "content.mp4"}}, {"content.mp4": b"video", "model/init.bin": b"m"})
    return folder


@pytest.fixture(scope="module")
def family():
    from tests.runtime.test_player import _family

    return _family(make_net(TINY))


@pytest.fixture()
def builds(monkeypatch):
    """Record the default device of every architecture build: 'meta' (shapes only) or 'cpu'."""
    registry._load_builtin()
    devices: list[str] = []
    for name, builder in list(registry._REGISTRY.items()):
        def wrapped(*a, _b=builder, **k):
            devices.append(torch.empty(0).device.type)
            return _b(*a, **k)

        wrapped.__signature__ = __import__("inspect").signature(builder)
        monkeypatch.setitem(registry._REGISTRY, name, wrapped)
    return devices


# -- 1. path traversal ----------------------------------------------------------------------------

class TestConfinedNames:
    def test_helper_refuses_each_escape(self, tmp_path):
        folder = tmp_path / "stream"
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "ok.bin").write_bytes(b"12345")
        (tmp_path / "secret").write_bytes(b"secret")
        os.symlink(tmp_path / "secret", folder / "link")
        os.symlink("/dev/zero", folder / "zero")
        os.mkfifo(folder / "fifo")
        assert read_confined(folder, "sub/ok.bin", 5) == b"12345"
        for name, words in [("/etc/passwd", "inside its folder"), ("../secret", "inside its folder"),
                            ("sub/../../secret", "inside its folder"), ("link", "outside the folder"),
                            ("zero", "outside the folder"), ("fifo", "not a regular file"), ("sub", "not a regular"),
                            ("sub/ok.bin\0", "plain relative"), ("missing.bin", "missing"), ("", "non-empty")]:
            with pytest.raises(ModelError, match=words):
                confined_file(folder, name, 100, error=ModelError)
        with pytest.raises(InputError, match="more than the 4 allowed"):
            read_confined(folder, "sub/ok.bin", 4)

    def test_user_named_files_are_regular_and_bounded(self, tmp_path):
        from adasr._jsonfile import read_json
        from adasr.runtime.traces import Trace

        os.mkfifo(tmp_path / "fifo.csv")
        for path in ("/dev/zero", tmp_path / "fifo.csv"):  # neither ends: refused, not read forever
            with pytest.raises(InputError, match="not a regular file"):
                Trace.from_csv(path)
            with pytest.raises(InputError, match="not a regular file"):
                read_json(path, "family")

    def test_fuzzed_names_never_leave_the_folder(self, tmp_path):
        folder = tmp_path / "s"
        (folder / "sub").mkdir(parents=True)
        data = b"payload"
        for p in (folder / "a", folder / "sub" / "a", tmp_path / "a"):
            p.write_bytes(data)
        os.symlink(tmp_path, folder / "up")
        root = folder.resolve()
        parts = st.sampled_from(["a", "sub", "up", "..", ".", "", "/", "\\", "~", "a\0", "/etc", "%2e%2e"])

        @FUZZ
        @given(st.lists(parts, min_size=1, max_size=5).map("/".join))
        def check(name):
            (folder / MANIFEST).write_text(json.dumps(_stream_manifest({name: data})))
            try:
                got = StreamFile(folder).blob(name)
            except ModelError:
                return
            assert got == data and (folder / name).resolve().is_relative_to(root), name

        check()

    def test_stream_folder_parts_are_confined(self, tmp_path):
        secret = tmp_path / "secret.bin"
        secret.write_bytes(b"x" * 10)
        for i, name in enumerate([str(secret), "../secret.bin", "model/../../secret.bin"]):
            folder = _crafted_stream(tmp_path / f"s{i}", {name: b"x" * 10})
            with pytest.raises(ModelError, match="inside its folder"):
                StreamFile(folder)
        folder = _crafted_stream(tmp_path / "link", {"content.mp4": b"x" * 10})
        os.symlink(secret, folder / "content.mp4")
        with pytest.raises(ModelError, match="outside the folder"):
            StreamFile(folder).blob("content.mp4")
        folder = _crafted_stream(tmp_path / "long", {"content.mp4": b"x" * 10})
        (folder / "content.mp4").write_bytes(b"x" * 11)
        with pytest.raises(ModelError, match="more than"):
            StreamFile(folder).blob("content.mp4")
        folder = tmp_path / "zero-manifest"
        folder.mkdir()
        os.symlink("/dev/zero", folder / MANIFEST)
        with pytest.raises(ModelError, match="outside the folder"):
            StreamFile(folder)

    def test_cli_decode_refuses_in_one_line(self, tmp_path, monkeypatch, capsys):
        folder = _crafted_stream(tmp_path / "s", {"/etc/hostname": b"x"})
        code, _, err = run_cli(monkeypatch, capsys, "decode", folder, tmp_path / "o.mp4")
        _one_line_error(code, err, "inside its folder")
        assert code == 4 and not (tmp_path / "o.mp4").exists()

    def test_container_header_lengths_are_bounded(self, tmp_path, monkeypatch, capsys):
        huge = tmp_path / "huge.adasrs"
        huge.write_bytes(struct.pack("<8sIQ", b"ADASRSTM", 1, 1 << 60) + b"{}")
        with pytest.raises(ModelError, match="claims a manifest"):
            StreamFile(huge)
        code, _, err = run_cli(monkeypatch, capsys, "decode", huge, tmp_path / "o.mp4")
        _one_line_error(code, err, "claims a manifest")
        assert code == 4
        # a part whose offset or size lies beyond the file
        text = json.dumps(_stream_manifest({"content.mp4": b"abc"})).replace('"size": 3', '"size": 1099511627776')
        bad = tmp_path / "bad.adasrs"
        bad.write_bytes(struct.pack("<8sIQ", b"ADASRSTM", 1, len(text)) + text.encode() + b"abc")
        with pytest.raises(ModelError, match="bad size or offset"):
            StreamFile(bad)

    def test_package_names_are_confined(self, tmp_path, family):
        net = make_net(TINY)
        other = save_package(tmp_path / "other", net, family).path
        for i, change in enumerate([{"file": str(other / "supernet.safetensors")},
                                    {"file": "../other/supernet.safetensors"}]):
            p = save_package(tmp_path / f"p{i}", net, family).path
            m = json.loads((p / "manifest.json").read_text())
            m["weights"].update(change)
            (p / "manifest.json").write_text(json.dumps(m))
            with pytest.raises(ModelError, match="inside its folder"):
                load_package(p)
        p = save_package(tmp_path / "zero", net, family).path
        (p / "levels.json").unlink()
        os.symlink("/dev/zero", p / "levels.json")
        with pytest.raises(ModelError, match="outside the folder"):
            load_package(p)
        p = save_package(tmp_path / "prof", net, family).path
        os.symlink("/dev/zero", p / "profiles" / "cpu-x-1t.json")
        with pytest.raises(ModelError, match="outside the folder"):
            load_package(p)


# -- 2. data loss when replacing folders ----------------------------------------------------------

class TestFolderReplace:
    def test_stream_replaces_only_its_own_folder(self, tmp_path):
        mine = tmp_path / "notes"
        mine.mkdir()
        (mine / "manifest.json").write_text('{"my": "own manifest"}')
        (mine / "thesis.tex").write_text("years of work")
        with pytest.raises(OutputError, match="not an adasr stream folder"):
            _own_stream(mine)
        assert (mine / "thesis.tex").read_text() == "years of work"
        stream = _own_stream(tmp_path / "stream")
        _own_stream(stream)  # an adasr stream is replaced
        (stream / "extra.txt").write_text("mine")
        with pytest.raises(OutputError, match="did not write.*extra.txt"):
            _own_stream(stream)
        assert (stream / "extra.txt").exists()
        assert not [p for p in tmp_path.iterdir() if ".part" in p.name or ".old" in p.name]

    def test_package_replaces_only_its_own_folder(self, tmp_path, family):
        net = make_net(TINY)
        stream = _own_stream(tmp_path / "stream")
        with pytest.raises(OutputError, match="not an adasr package"):
            save_package(stream, net, family, overwrite=True)
        assert (stream / "content.mp4").read_bytes() == b"video"
        pkg = save_package(tmp_path / "pkg", net, family).path
        save_package(pkg, net, family, overwrite=True)
        (pkg / "profiles" / "x.json").write_text("{}")  # profiles are the package's own
        (pkg / "README").write_text("mine")
        with pytest.raises(OutputError, match="did not write.*README"):
            save_package(pkg, net, family, overwrite=True)
        plain = tmp_path / "plain.adasr"
        plain.write_bytes(b"not a package")
        with pytest.raises(OutputError, match="not an adasr package file"):
            save_package(plain, net, family, overwrite=True)
        assert plain.read_bytes() == b"not a package"

    def test_failed_write_keeps_the_old_folder(self, tmp_path):
        stream = _own_stream(tmp_path / "stream")
        with pytest.raises(RuntimeError):
            with atomic_folder(stream, lambda p: None) as tmp:
                (tmp / "half").write_text("x")
                raise RuntimeError("crash")
        assert (stream / "content.mp4").read_bytes() == b"video" and len(list(tmp_path.iterdir())) == 1

    def test_cli_encode_and_search_refuse_before_work(self, tmp_path, monkeypatch, capsys, data_root):
        mine = tmp_path / "mine"
        mine.mkdir()
        (mine / "manifest.json").write_text("{}")
        (mine / "keep.txt").write_text("keep")
        video = data_root / "video" / "bikes_640x272.mp4"
        for args in (("encode", video, mine), ("search", tmp_path / "absent.safetensors", "--out", mine)):
            code, _, err = run_cli(monkeypatch, capsys, *args)
            _one_line_error(code, err, "refusing to replace")
            assert code == 3 and (mine / "keep.txt").read_text() == "keep"


# -- 3. outputs that are inputs -------------------------------------------------------------------

class TestOutputsNotInputs:
    def test_helper(self, tmp_path, monkeypatch):
        src = tmp_path / "in.mp4"
        src.write_bytes(b"video")
        folder = tmp_path / "stream"
        folder.mkdir()
        os.symlink(src, tmp_path / "alias.mp4")
        os.link(src, tmp_path / "hard.mp4")
        monkeypatch.chdir(tmp_path)
        for out, inputs, folders in [(src, [src], []), (Path("in.mp4"), [src], []),
                                     (tmp_path / "alias.mp4", [src], []), (tmp_path / "hard.mp4", [src], []),
                                     (folder / "content.mp4", [folder], []), (None, [src], [tmp_path])]:
            with pytest.raises(OutputError, match="the input"):
                check_not_input([out], inputs, folders=folders)
        check_not_input([tmp_path / "other.mp4", None], [src, folder, None])
        check_not_input([tmp_path / "x.json"], [src], folders=[tmp_path / "new"])
        with pytest.raises(OutputError, match="same path"):
            check_not_input([tmp_path / "a.json", Path("a.json")], [])

    @pytest.mark.slow
    def test_commands_refuse_to_overwrite_inputs(self, tmp_path, monkeypatch, capsys, data_root):
        video = tmp_path / "clip.mp4"
        shutil.copy(data_root / "video" / "bikes_640x272.mp4", video)
        image = tmp_path / "in.png"
        shutil.copy(data_root / "benchmarks" / "Set5" / "baby.png", image)
        os.symlink(image, tmp_path / "alias.png")
        model = tmp_path / "m.safetensors"
        args = {"scale": 2, "d": 8, "s": 4, "m": 1}
        save_model(model, build_model("fsrcnn", **args), ModelSpec("fsrcnn", args, 2))
        stream = _own_stream(tmp_path / "stream")
        holder = tmp_path / "holder"
        write_stream(holder, {}, {"content.mp4": video.read_bytes()})
        before = {p: p.read_bytes() for p in (video, image, model, stream / "content.mp4")}
        monkeypatch.chdir(tmp_path)
        cases = [("play", video, "--out", video), ("play", video, "--json", "clip.mp4"),
                 ("play", video, "--timeline", video), ("decode", stream, stream / "content.mp4"),
                 ("decode", stream, stream / "sub.mp4"), ("upscale", image, tmp_path / "alias.png", "--model", model),
                 ("upscale", "in.png", image, "--model", model), ("eval", model, "--json", model),
                 ("search", model, "--out", tmp_path / "pkg", "--plot", model),
                 ("encode", holder / "content.mp4", holder)]
        for args in cases:
            code, _, err = run_cli(monkeypatch, capsys, *args)
            _one_line_error(code, err, "the input")
            assert code == 3, (args, err)
        assert all(p.read_bytes() == data for p, data in before.items())
        assert (holder / "content.mp4").read_bytes() == video.read_bytes()


# -- 4. crafted model files and packages ----------------------------------------------------------

def _crafted_model_file(path: Path, args: dict, tensors: dict | None = None) -> Path:
    tensors = tensors if tensors is not None else {"w": torch.zeros(1)}
    spec = ModelSpec("fsrcnn", args, 2)
    save_file(tensors, str(path), metadata={"adasr": spec.to_json()})
    return path


class TestCraftedModels:
    def test_out_of_range_arguments_are_refused_before_building(self, tmp_path, builds):
        for i, args in enumerate([{"scale": 2, "d": 100000}, {"scale": 2, "s": -4}, {"scale": 2, "m": 1e300},
                                  {"scale": 2, "d": [1] * 5000}]):
            with pytest.raises(ModelError, match="out of range|entries"):
                load_model(_crafted_model_file(tmp_path / f"{i}.safetensors", args))
        assert builds == []

    def test_huge_network_is_refused_without_allocating(self, tmp_path, builds):
        path = _crafted_model_file(tmp_path / "huge.safetensors", {"scale": 2, "d": 4096, "s": 4096, "m": 64})
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with pytest.raises(ModelError, match="more than"):
            load_model(path)
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 200_000  # KiB: far below the 39 GB asked
        assert "cpu" not in builds

    def test_shapes_are_compared_before_the_real_build(self, tmp_path, builds):
        small = build_model("fsrcnn", scale=2, d=8, s=4, m=1)
        builds.clear()
        state = {k: v.contiguous() for k, v in small.state_dict().items()}
        path = _crafted_model_file(tmp_path / "shape.safetensors", {"scale": 2, "d": 1024, "s": 1024, "m": 4}, state)
        with pytest.raises(ModelError, match="shape"):
            load_model(path)
        assert builds == ["meta"]
        good = _crafted_model_file(tmp_path / "good.safetensors", {"scale": 2, "d": 8, "s": 4, "m": 1}, state)
        load_model(good)
        assert builds == ["meta", "meta", "cpu"]

    @pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
    def test_fuzzed_configs_only_load_when_they_fit(self, tmp_path):
        small = build_model("fsrcnn", scale=2, d=8, s=4, m=1)
        state = {k: v.contiguous() for k, v in small.state_dict().items()}
        ints = st.one_of(st.integers(-3, 64), st.integers(10**4, 10**12))

        @settings(max_examples=15, deadline=None)
        @given(st.fixed_dictionaries({"d": ints, "s": ints, "m": st.integers(-3, 200)}))
        def check(args):
            path = _crafted_model_file(tmp_path / "fuzz.safetensors", {"scale": 2, **args}, state)
            try:
                load_model(path)
            except ModelError:
                assert args != {"d": 8, "s": 4, "m": 1}
                return
            assert args == {"d": 8, "s": 4, "m": 1}

        check()

    def test_crafted_package_space_is_refused_before_building(self, tmp_path, family, builds):
        p = save_package(tmp_path / "pkg", make_net(TINY), family).path
        m = json.loads((p / "manifest.json").read_text())
        m["space"] = {**m["space"], "widths": [8, 16, 1024], "expansions": [1, 2, 8], "kernels": [3, 5, 7]}
        (p / "manifest.json").write_text(json.dumps(m))
        builds.clear()
        with pytest.raises(ModelError, match="damaged package.*more than"):
            load_package(p)
        assert "cpu" not in builds

    def test_crafted_stream_records_are_refused(self):
        from adasr.stream import codec

        model = build_model("fsrcnn", scale=2, d=8, s=4, m=1)
        record = codec.encode_full(model, {"arch": "fsrcnn", "args": {"scale": 2, "d": 100000}, "scale": 2})
        with pytest.raises(codec.DeltaError, match="out of range"):
            codec.ModelState.from_full(record)
        h = b"\0" * 16
        bomb = codec._pack(codec.DELTA, 0, 0, 10, h, h, h, b"\0" * (8 << 20))  # 8 MiB of zeros, 10 parameters
        assert len(bomb) < 100_000
        with pytest.raises(codec.DeltaError, match="decompresses to more"):
            codec.read_record(bomb)
        huge = codec._pack(codec.DELTA, 0, 0, 1 << 62, h, h, h, b"")
        with pytest.raises(codec.DeltaError, match="parameters"):
            codec.read_record(huge)


# -- 5. tiling memory -----------------------------------------------------------------------------

class _Recording(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner, self.largest = inner, 0

    def forward(self, x):
        y = self.inner(x)
        self.largest = max(self.largest, y.numel())
        return y


@torch.inference_mode()
def _old_sr_array(model, rgb, scale, tile, overlap):
    """The previous path: the whole float output assembled, then rounded."""
    from adasr.upscale import sr_tensor

    peak = 65535.0 if rgb.dtype == np.uint16 else 255.0
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float().div_(peak)
    y = sr_tensor(model, x, scale, tile=tile, overlap=overlap).clamp_(0, 1).mul_(peak).round_()
    return y[0].permute(1, 2, 0).numpy().astype(rgb.dtype)


class TestTiledOutput:
    def test_streamed_tiles_equal_the_previous_path(self, monkeypatch):
        from adasr.upscale import sr_array

        torch.manual_seed(0)
        model = _Recording(build_model("fsrcnn", scale=2, d=8, s=4, m=1).eval())
        rng = np.random.default_rng(0)
        for dtype, peak in ((np.uint8, 255), (np.uint16, 65535)):
            img = (rng.random((45, 70, 3)) * peak).astype(dtype)
            want = _old_sr_array(model, img, 2, 16, 4)
            sizes = []
            real_new_empty = torch.Tensor.new_empty
            monkeypatch.setattr(torch.Tensor, "new_empty",  # undone below, in this same iteration
                                lambda self, *a, **k: sizes.append(a) or real_new_empty(self, *a, **k))  # noqa: B023
            model.largest = 0
            got = sr_array(model, img, 2, tile=16, overlap=4)
            monkeypatch.undo()
            # the old path feeds the model slices of one float frame, the new one tiles cut from
            # the integer input: the same values in another memory layout, which may run other
            # conv kernels, so equal up to float rounding (at most 1 step of the dtype)
            assert_frames_close(got, want)
            assert sizes == []  # no whole-output float buffer
            assert model.largest <= 3 * 48 * 48 < got.size // 5  # one tile (with margins) at a time

    def test_numpy_peak_is_the_output_plus_a_tile(self):
        from adasr.upscale import sr_array

        model = build_model("bicubic", scale=4)
        img = np.random.default_rng(1).integers(0, 256, (96, 128, 3), dtype=np.uint8)
        sr_array(model, img[:20, :20], 4, tile=16, overlap=4)  # first use: imports and kernel caches
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            out = sr_array(model, img, 4, tile=16, overlap=4)
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        tile_bytes = (24 * 4) ** 2 * 3 * 4
        assert out.shape == (384, 512, 3) and peak < out.nbytes + 4 * tile_bytes < 4 * out.nbytes

    def test_engine_streams_large_frames(self, family):
        from adasr.runtime.engine import Engine, frame_to_tensor, tensor_to_frame

        engine = Engine(make_net(TINY).eval(), family, tile=16, overlap=12)
        frame = np.random.default_rng(2).integers(0, 256, (80, 72, 3), dtype=np.uint8)
        want = tensor_to_frame(engine.process_tensor(frame_to_tensor(frame, engine.channels_last)))
        inner = engine.supernet
        engine.supernet = _Recording(inner)
        got = engine.process(frame)
        # the same tiles as the whole-frame tensor path, rounded the same way, but oneDNN may pick
        # other conv kernels for them (seen on Intel AMX): equal up to float rounding
        assert_frames_close(got, want)
        assert engine.supernet.largest < got.size // 2

    def test_oversized_output_is_refused_with_its_size(self):
        from adasr.upscale import sr_array

        img = np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20000, 20000, 3))  # no memory behind it
        with pytest.raises(InputError, match=r"would need 17\.9 GiB"):
            sr_array(build_model("bicubic", scale=4), img, 4)
