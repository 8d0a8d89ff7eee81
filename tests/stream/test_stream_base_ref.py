"""A stream whose first record names the base model by hash: same frames, fewer bytes, and a
mismatching base refused in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from adasr.errors import ModelError
from adasr.stream.codec import DeltaError, ModelState, encode_base_ref, encode_full, read_record, record_kind
from adasr.stream.container import StreamFile
from adasr.stream.reader import StreamReader, decode_stream
from tests.cli.test_cli import run_cli

CLIP = ("--max-frames", "10", "--crop", "128x64", "--tau", "0.2", "--steps", "2", "--batch", "2", "--patch", "16",
        "--threads", "1", "--quiet", "--device", "cpu")


def _generic():
    from adasr.modelfile import load_model
    from adasr.paths import bundled_model

    model, spec = load_model(bundled_model(2))
    return model, {"arch": spec.arch, "args": spec.args, "scale": spec.scale}


@pytest.mark.slow
def test_base_ref_record_rebuilds_the_full_records_model():
    model, spec = _generic()
    full, ref = encode_full(model, spec), encode_base_ref(model, spec)
    assert record_kind(ref) == "ref" and record_kind(full) == "full" and record_kind(b"junk") is None
    assert len(ref) < 300 < 20 * 300 < len(full)
    a, b = ModelState.from_full(full), ModelState.from_base(ref, model, spec)
    assert a.base_hash == b.base_hash == read_record(ref)[0].base_hash
    assert torch.equal(a.vector, b.vector)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the caller's model is not touched (the state builds its own)
    assert b.model is not model
    # a full record's decoder refuses a reference with a hint, and the other way round
    with pytest.raises(DeltaError, match="--base"):
        ModelState.from_full(ref)
    with pytest.raises(DeltaError, match="expected a base reference"):
        ModelState.from_base(full, model, spec)
    damaged = bytearray(ref)
    damaged[-20] ^= 0x01
    with pytest.raises(DeltaError, match="damaged"):
        ModelState.from_base(bytes(damaged), model, spec)


def test_base_ref_refuses_another_model():
    model, spec = _generic()
    ref = encode_base_ref(model, spec)
    other = _generic()[0]
    with torch.no_grad():
        next(other.parameters()).view(-1)[0] += 0.01  # one weight differs
    with pytest.raises(DeltaError, match="does not match") as err:
        ModelState.from_base(ref, other, spec)
    assert "\n" not in str(err.value)
    from adasr.nn.registry import build_model

    srvc = build_model("srvc", scale=2)
    with pytest.raises(DeltaError, match="does not match"):
        ModelState.from_base(ref, srvc, {"arch": "srvc", "args": {"scale": 2}, "scale": 2})


@pytest.fixture(scope="module")
def pair(tmp_path_factory, data_root):
    """The same 10 frames encoded twice: with the full first model, and naming it by hash."""
    from dataclasses import replace

    from adasr.stream.adapt import AdaptConfig
    from adasr.stream.encoder import EncodeSettings, encode_video

    tmp = tmp_path_factory.mktemp("byhash")
    video = data_root / "video" / "bikes_640x272.mp4"
    settings = EncodeSettings(tau=0.2, device="cpu", adapt=AdaptConfig(steps=2, batch=2, patch=16))
    full, hashed = tmp / "full.adasrs", tmp / "hashed.adasrs"
    mf = encode_video(video, full, settings, max_frames=10, crop_hw=(64, 128))
    mh = encode_video(video, hashed, replace(settings, base_by_hash=True), max_frames=10, crop_hw=(64, 128))
    return full, hashed, mf, mh


@pytest.mark.slow
def test_by_hash_stream_decodes_to_the_same_frames_and_is_smaller(pair, tmp_path):
    from adasr.video import read_frames

    full, hashed, mf, mh = pair
    assert "base_by_hash" not in mf["model"] and len(mh["model"]["base_by_hash"]) == 32
    ff, fh = StreamFile(full), StreamFile(hashed)
    for seg in mf["segments"]:  # the deltas are the same bytes
        assert ff.blob(seg["record"]) == fh.blob(seg["record"])
    init_full, init_ref = ff.blob("model/init.bin"), fh.blob("model/init.bin")
    assert record_kind(init_ref) == "ref" and len(init_ref) < len(init_full) / 50
    saved = full.stat().st_size - hashed.stat().st_size
    assert abs(saved - (len(init_full) - len(init_ref))) < 256  # smaller by the first model, bar manifest bytes
    assert mh["bits"]["model_init"] == 8 * len(init_ref) and mh["bits"]["model_deltas"] == mf["bits"]["model_deltas"]
    decode_stream(full, tmp_path / "full.mp4", crf=0)
    decode_stream(hashed, tmp_path / "hashed.mp4", crf=0, base="generic")
    a = np.stack(list(read_frames(tmp_path / "full.mp4")))
    b = np.stack(list(read_frames(tmp_path / "hashed.mp4")))
    assert a.shape == (10, 64, 128, 3) and np.array_equal(a, b)
    ra, rb = StreamReader(full), StreamReader(hashed, base="generic")
    list(ra.frames())
    list(rb.frames())
    assert torch.equal(ra.state.vector, rb.state.vector) and rb.state.next_segment == 2
    # an old (full-record) stream still decodes, and ignores a --base it does not need
    assert torch.equal(StreamReader(full, base="srvc").state.vector, ModelState.from_full(init_full).vector)


@pytest.mark.slow
def test_by_hash_stream_needs_the_right_base(pair, tmp_path):
    _, hashed, _, _ = pair
    with pytest.raises(ModelError, match="give that model with --base"):
        StreamReader(hashed)
    with pytest.raises(DeltaError, match="does not match"):
        StreamReader(hashed, base="srvc")


@pytest.mark.slow
def test_cli_base_by_hash_encode_decode_play_and_refusals(monkeypatch, capsys, tmp_path, data_root):
    from adasr.modelfile import ModelSpec, load_model, save_model
    from adasr.paths import bundled_model

    video = data_root / "video" / "bikes_640x272.mp4"
    stream = tmp_path / "s.adasrs"
    code, out, err = run_cli(monkeypatch, capsys, "encode", video, stream, *CLIP, "--base-by-hash")
    assert code == 0, err
    assert "named by hash" in out
    model, spec = load_model(bundled_model(2))
    with torch.no_grad():
        next(model.parameters()).view(-1)[3] -= 0.02
    wrong = tmp_path / "wrong.safetensors"
    save_model(wrong, model, ModelSpec(spec.arch, spec.args, spec.scale))
    for args, words in [((), ("--base",)), (("--base", wrong), ("does not match",)),
                        (("--base", tmp_path / "none.safetensors"), ("not found",))]:
        code, _, err = run_cli(monkeypatch, capsys, "decode", stream, tmp_path / "o.mp4", "--quiet", *args)
        assert code != 0 and "Traceback" not in err and err.strip().count("\n") == 0, err
        assert all(w in err for w in words), err
        assert not (tmp_path / "o.mp4").exists()
    code, _, err = run_cli(monkeypatch, capsys, "play", stream, "--quiet", "--target-fps", "1000", "--base", wrong)
    assert code != 0 and "does not match" in err and err.strip().count("\n") == 0, err
    code, out, err = run_cli(monkeypatch, capsys, "decode", stream, tmp_path / "o.mp4", "--quiet",
                             "--base", "generic")
    assert code == 0 and "2 model updates applied" in out, err
    code, out, err = run_cli(monkeypatch, capsys, "play", stream, "--quiet", "--target-fps", "1000",
                             "--base", bundled_model(2))
    assert code == 0 and "2 segments applied" in out, err
    # the base can be named only when it is sent unchanged
    code, _, err = run_cli(monkeypatch, capsys, "encode", video, tmp_path / "t.adasrs", *CLIP, "--base-by-hash",
                           "--init-steps", "2")
    assert code != 0 and "--init-steps" in err and not (tmp_path / "t.adasrs").exists()


@pytest.mark.slow
def test_cli_encode_sends_only_the_updates_that_pay(monkeypatch, capsys, tmp_path, data_root):
    from adasr.stream.reader import StreamReader

    video = data_root / "video" / "bikes_640x272.mp4"
    stream = tmp_path / "s.adasrs"
    code, out, err = run_cli(monkeypatch, capsys, "encode", video, stream, *CLIP, "--base-by-hash", "--updates", "rd",
                             "--values", "int8")
    assert code == 0, err
    assert "updates that pay:" in out and "the content's slope" in out
    manifest = StreamReader(stream, base="generic").manifest
    rd = manifest["rate_distortion"]  # the slope from the second encode at CRF + 2: fewer bits, more error
    assert rd["crf2"] == rd["crf"] + 2 and rd["bits2"] < rd["bits"] and rd["sse2"] > rd["sse"]
    assert rd["lambda"] == manifest["settings"]["rd_lambda"] > 0
    sent = [s["sent"] for s in manifest["segments"]]
    assert len(sent) == 2 and f"{sum(sent)} of 2 sent" in out
    code, out, err = run_cli(monkeypatch, capsys, "decode", stream, tmp_path / "o.mp4", "--quiet", "--base", "generic")
    assert code == 0, err
    # a bad rule or rate is one line
    for args, word in ((("--updates", "often"), "update rule"), (("--updates", "rd", "--rd-lambda", "-1"), "rd-lambda"),
                       (("--values", "int3"), "--values")):
        code, _, err = run_cli(monkeypatch, capsys, "encode", video, tmp_path / "u.adasrs", *CLIP, *args)
        assert code != 0 and word in err and err.strip().count("\n") == 0, err
        assert not (tmp_path / "u.adasrs").exists()
