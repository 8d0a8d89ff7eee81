"""Hostile input, round 3 (issue 34): what adasr reads from files and records.

Tables, one per mechanism; a new reader gets a row in each that applies:
* `JSON_READERS` x `HOSTILE_JSON`: every JSON file or record adasr reads goes through one
  bounded, recursion-safe, finite-only reader (classes 6 and 7);
* `FILE_READERS` x devices, FIFOs, folders and empty names: one bounded regular-file reader, and
  an empty path is refused instead of becoming "." (classes 4 and 20);
* non-finite weights in every kind of model record are refused by `ModelState` (class 1);
* one parameter bound at model construction, shared by train and load (class 5).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import pytest
import torch

from adasr.errors import AdasrError, ConfigError, InputError, ModelError
from tests.serve.test_serve import tiny_model

# -- classes 6 and 7: one JSON reader -------------------------------------------------------------

HOSTILE_JSON = {
    "deep": "[" * 100_000 + "]" * 100_000,
    "deep object": '{"a":' * 5000 + "1" + "}" * 5000,
    "just too deep": "[" * 65 + "]" * 65,
    "Infinity": '{"scale": Infinity, "width": Infinity, "chosen": Infinity, "params": Infinity}',
    "NaN": '{"scale": NaN}',
    "overflowing float": '{"scale": 1e999}',
    "huge integer": '{"scale": ' + "9" * 5000 + "}",
    "not JSON": "{'a': 1",
    "not UTF-8": b"\xff\xfe{}",
}


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def _stream_folder(tmp: Path, text) -> None:
    from adasr.stream.container import MANIFEST, StreamFile

    _write(tmp / "s" / MANIFEST, text)
    StreamFile(tmp / "s")


def _package(tmp: Path, text) -> None:
    from adasr.package import load_package

    _write(tmp / "p.adasr" / "manifest.json", text)
    _write(tmp / "p.adasr" / "levels.json", "{}")
    load_package(tmp / "p.adasr")


def _zoo(tmp: Path, text) -> None:
    """zoo.json and gate.json are read by `read_json` (`Zoo.load`, `GatingSelector.load`)."""
    from adasr._jsonfile import read_json
    from adasr.reuse.zoo import ZOO_JSON

    read_json(_write(tmp / "z" / ZOO_JSON, text), "model zoo")


def _model_header(tmp: Path, text) -> None:
    from adasr.modelfile import ModelSpec

    ModelSpec.from_json(text.decode("utf-8", "replace") if isinstance(text, bytes) else text, "model.safetensors")


def _genotype(tmp: Path, text) -> None:
    from adasr.nn.dlsr import read_genotype

    read_genotype(_write(tmp / "g.json", text))


def _family(tmp: Path, text) -> None:
    from adasr.family import Family

    Family.load(_write(tmp / "family.json", text))


def _space(tmp: Path, text) -> None:
    from adasr.space import SearchSpace

    SearchSpace.from_file(_write(tmp / "space.json", text))


def _live_manifest(tmp: Path, text) -> None:
    from adasr._jsonfile import loads
    from adasr.serve.client import check_manifest

    check_manifest(loads(text, "live channel manifest"), "live channel manifest")


def _base_ref_record(tmp: Path, text) -> None:
    """A stream's base-reference record whose JSON payload is the hostile text (checksum valid)."""
    from adasr.stream.codec import DTYPES, REF, _pack, read_record

    payload = text if isinstance(text, bytes) else text.encode()
    read_record(_pack(REF, DTYPES["float16"], 0, 10, b"\0" * 16, b"\0" * 16, b"\0" * 16,
                      struct.pack("<I", len(payload)) + payload))


def _arg_option(tmp: Path, text) -> None:
    from adasr._options import parse_assignments as _parse_args
    from adasr.nn.registry import resolve_args

    value = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    args = _parse_args([f"genotype={value}"])  # text that is not JSON stays text: a genotype file name
    resolve_args("dlsr", {**args, "scale": 2})


JSON_READERS = {
    "stream manifest": _stream_folder, "package manifest": _package, "model zoo, gate (read_json)": _zoo,
    "model file header": _model_header, "genotype": _genotype, "family": _family, "search space": _space,
    "live manifest": _live_manifest, "base reference record": _base_ref_record, "--arg value": _arg_option,
}


class TestOneJsonReader:
    """6 and 7: deeply nested JSON, Infinity/NaN and overflowing numbers are one-line errors of
    adasr's classes everywhere (before: RecursionError or OverflowError, exit 70)."""

    @pytest.mark.parametrize("reader", sorted(JSON_READERS))
    @pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
    def test_refused_in_one_line(self, reader, case, tmp_path):
        with pytest.raises(AdasrError) as info:
            JSON_READERS[reader](tmp_path, HOSTILE_JSON[case])
        assert "\n" not in str(info.value)

    def test_reader_itself(self):
        from adasr._jsonfile import MAX_JSON_DEPTH, loads

        assert loads("[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH, "x") is not None  # the deepest allowed
        assert loads('{"a": [1, 2.5, -3e2, "Infinity"]}', "x") == {"a": [1, 2.5, -300.0, "Infinity"]}
        for text, words in [("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1), "too deeply"),
                            ("-Infinity", "Infinity"), ("[1e400]", "out of range"), ("1" * 20, "digits")]:
            with pytest.raises(InputError, match=words):
                loads(text, "x")
        assert loads("not json", "x", text_fallback=True) == "not json"
        with pytest.raises(InputError, match="more than the 10 allowed"):
            loads("[1, 2, 3, 4, 5]", "x", max_bytes=10)


# -- classes 4 and 20: one bounded file reader; no empty path -----------------------------------

def _genotype_file(path):
    from adasr.nn.dlsr import read_genotype

    read_genotype(path)


def _genotype_arg(path):
    from adasr.nn.registry import resolve_args

    resolve_args("dlsr", {"genotype": str(path), "scale": 2})


def _space_file(path):
    from adasr.space import SearchSpace

    SearchSpace.from_file(path)


def _json_file(path):
    from adasr._jsonfile import read_json

    read_json(path, "family")


def _base(path):
    from adasr.stream.reader import resolve_base

    resolve_base(str(path), 2)


FILE_READERS = {"genotype file": _genotype_file, "--arg genotype=": _genotype_arg, "search space file": _space_file,
                "JSON file": _json_file, "--base": _base}


class TestOneFileReader:
    """4: /dev/zero, a FIFO and a folder are refused before anything is read (before: /dev/zero
    read until MemoryError, a FIFO waited for a writer forever)."""

    @pytest.mark.parametrize("reader", sorted(set(FILE_READERS) - {"--base"}))
    def test_devices_fifos_folders(self, reader, tmp_path):
        os.mkfifo(tmp_path / "fifo")
        for path in ("/dev/zero", tmp_path / "fifo", tmp_path):
            with pytest.raises(AdasrError) as info:
                FILE_READERS[reader](path)
            assert "not a regular file" in str(info.value) or "folder" in str(info.value), (reader, str(info.value))


class TestEmptyPaths:
    """20: an empty path is refused, not read as "." (the current folder)."""

    @pytest.mark.parametrize("reader", sorted(FILE_READERS))
    @pytest.mark.parametrize("empty", ["", "  "])
    def test_library(self, reader, empty):
        with pytest.raises(ConfigError, match="empty path"):
            FILE_READERS[reader](empty)


# -- class 1: non-finite weights in model records --------------------------------------------------

def _nan_model(value: float = float("nan")):
    model, spec = tiny_model()
    with torch.no_grad():
        next(model.parameters()).view(-1)[3] = value
    return model, spec


class TestFiniteModelState:
    """1: a first record, a snapshot, a base and an update that make a weight NaN or infinite are
    refused (before: accepted, and the output was black with exit 0)."""

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
    def test_first_record(self, value):
        from adasr.stream.codec import DeltaError, ModelState, encode_full

        model, spec = _nan_model(value)
        with pytest.raises(DeltaError, match="not finite"):
            ModelState.from_full(encode_full(model, spec, "float32"))

    def test_snapshot(self):
        from adasr.stream.codec import DeltaError, ModelState, encode_snapshot, model_vector, vector_hash

        model, spec = _nan_model()
        vec = model_vector(model)
        shapes = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
        with pytest.raises(DeltaError, match="not finite"):
            ModelState.from_full(encode_snapshot(vec, shapes, spec, 3, vector_hash(vec)))

    def test_base(self):
        from adasr.stream.codec import DeltaError, ModelState, encode_base_ref

        model, spec = _nan_model()
        with pytest.raises(DeltaError, match="not finite"):
            ModelState.from_base(encode_base_ref(model, spec), model, spec)

    @pytest.mark.parametrize("dtype,value", [("float32", float("nan")), ("float16", float("inf")),
                                             ("float32", 3e38)])  # 3e38 + 3e38 overflows float32
    def test_update(self, dtype, value):
        from adasr.stream.codec import DeltaError, ModelState, encode_delta, encode_full, quantise, vector_hash

        model, spec = tiny_model()
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = 3e38 if value == 3e38 else 0.1
        state = ModelState.from_full(encode_full(model, spec, "float32"))
        raw, vals = quantise(torch.tensor([value]), dtype)
        new = state.vector.clone()
        new[torch.tensor([0])] += vals
        record = encode_delta(torch.tensor([0]), raw, dtype, 0, state.vector.numel(), state.base_hash, state.hash,
                              vector_hash(new))
        before = state.vector.clone()
        with pytest.raises(DeltaError, match="not finite"):
            state.apply(record)
        assert torch.equal(state.vector, before) and state.next_segment == 0


# -- class 5: one parameter bound at model construction ---------------------------------------------

class TestBuildBound:
    """5: `build_model` (training) refuses what loading refuses, before allocating it."""

    @pytest.mark.parametrize("arch,args", [("espcn", {"f1": 4096, "f2": 4096}),
                                           ("fsrcnn", {"d": 4096, "s": 4096, "m": 4})])
    def test_oversized_is_refused_before_building(self, arch, args):
        import tracemalloc

        from adasr.nn.registry import MAX_VALUES, build_model

        tracemalloc.start()
        try:
            with pytest.raises(ModelError, match=f"{MAX_VALUES:,}"):
                build_model(arch, scale=2, **args)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 64 << 20, peak  # no tensor of the network was allocated

    def test_train_refuses_without_leaving_a_folder(self, tmp_path, monkeypatch, capsys):
        from tests.cli.test_cli import run_cli

        code, _, err = run_cli(monkeypatch, capsys, "train", "--out", tmp_path / "run", "--arch", "espcn",
                               "--arg", "f1=4096", "--arg", "f2=4096", "--steps", "1")
        assert code == 5 and err.strip().count("\n") == 0 and "64,000,000" in err, (code, err)
        assert not (tmp_path / "run").exists()

    def test_a_legal_model_builds_as_before(self):
        from adasr.nn.registry import build_model

        torch.manual_seed(0)
        a = build_model("espcn", scale=2, f1=8, f2=4)
        torch.manual_seed(0)
        b = build_model("espcn", scale=2, f1=8, f2=4)
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))

    def test_meta_build_leaves_the_random_stream_alone(self):
        from adasr.nn.registry import _build, build_model

        torch.manual_seed(1)
        a = build_model("espcn", scale=2, f1=8, f2=4)
        torch.manual_seed(1)
        b = _build("espcn", {"scale": 2, "f1": 8, "f2": 4})
        assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_json_table_covers_every_reader_kind():
    """A reminder for the next surface: every reader in the table is exercised with every case."""
    assert len(JSON_READERS) >= 10 and len(HOSTILE_JSON) >= 9
    json.dumps(sorted(JSON_READERS))
