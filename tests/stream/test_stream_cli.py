"""A short real clip encodes to a stream (folder and single file) and decodes end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adasr.stream.codec import DeltaError, ModelState
from adasr.stream.container import StreamFile
from adasr.stream.reader import StreamReader
from tests.cli.test_cli import run_cli

CLIP = ("--max-frames", "10", "--crop", "128x64", "--tau", "0.2", "--steps", "2", "--batch", "2", "--patch", "16",
        "--threads", "1", "--quiet", "--device", "cpu")


@pytest.fixture(scope="module")
def streams(tmp_path_factory, data_root):
    """The first 10 frames of a real clip (centre 128x64), as a single file and as a folder."""
    from adasr.stream.adapt import AdaptConfig
    from adasr.stream.encoder import EncodeSettings, encode_video

    tmp = tmp_path_factory.mktemp("stream")
    video = data_root / "video" / "bikes_640x272.mp4"
    settings = EncodeSettings(tau=0.2, device="cpu", adapt=AdaptConfig(steps=2, batch=2, patch=16))
    single, folder = tmp / "clip.adasrs", tmp / "clip"
    manifest = encode_video(video, single, settings, max_frames=10, crop_hw=(64, 128))
    encode_video(video, folder, settings, max_frames=10, crop_hw=(64, 128))
    return single, folder, manifest


@pytest.mark.slow
def test_manifest_accounts_bits_per_stream(streams):
    single, folder, m = streams
    assert m["frames"] == 10 and (m["width"], m["height"]) == (128, 64) and (m["lr_width"], m["lr_height"]) == (64, 32)
    assert len(m["segments"]) == 2  # 10 frames at 25 fps, tau 0.2 s = 5 frames per segment
    blobs = StreamFile(single).manifest["blobs"]
    assert m["bits"]["content"] == 8 * blobs["content.mp4"]["size"]
    assert m["bits"]["model_init"] == 8 * blobs["model/init.bin"]["size"]
    assert m["bits"]["model_deltas"] == 8 * sum(blobs[s["record"]]["size"] for s in m["segments"])
    assert m["bits"]["total"] == sum(v for k, v in m["bits"].items() if k != "total")
    assert json.loads((folder / "manifest.json").read_text())["segments"] == StreamFile(single).manifest["segments"]


@pytest.mark.slow
def test_reader_applies_every_delta_and_matches_both_layouts(streams):
    single, folder, _ = streams
    readers = [StreamReader(single), StreamReader(folder)]
    for r in readers:
        frames = list(r.frames())
        assert len(frames) == 10 and frames[0].lr.shape == (32, 64, 3)
        assert [f.segment for f in frames] == [0] * 5 + [1] * 5
        assert r.state.next_segment == 2
    a, b = readers
    assert torch.equal(a.state.vector, b.state.vector)  # same seeds, same content: same model bits
    assert not torch.equal(a.state.vector, ModelState.from_full(a.file.blob("model/init.bin")).vector)


@pytest.mark.slow
def test_damaged_stream_part_refused(streams, tmp_path):
    import shutil

    _, folder, _ = streams
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    rec = copy / "model" / "seg-00001.bin"
    data = bytearray(rec.read_bytes())
    data[-20] ^= 0xFF
    rec.write_bytes(bytes(data))
    reader = StreamReader(copy)
    with pytest.raises(Exception, match="damaged"):
        list(reader.frames())
    assert reader.state.next_segment == 1  # segment 0 applied, the damaged segment 1 refused
    # the record itself (not only the container's checksum) refuses the damage
    with pytest.raises(DeltaError):
        reader.state.apply(bytes(data))


@pytest.mark.slow
def test_cli_encode_decode_end_to_end(monkeypatch, capsys, tmp_path, data_root):
    from adasr.video import probe, read_frames

    video = data_root / "video" / "bikes_640x272.mp4"
    stream = tmp_path / "s.adasrs"
    code, out, err = run_cli(monkeypatch, capsys, "encode", video, stream, *CLIP)
    assert code == 0, err
    assert "2 segments" in out and "kbps" in out and "real time" in out
    sr = tmp_path / "sr.mp4"
    code, out, err = run_cli(monkeypatch, capsys, "decode", stream, sr, "--threads", "1", "--quiet")
    assert code == 0, err
    assert "2 model updates applied" in out
    info = probe(sr)
    assert (info.width, info.height, info.frame_count) == (128, 64, 10)
    # the decoded video is the super-resolved clip: closer to the source crop than a flat frame
    src = np.stack([f[104:168, 256:384] for f in read_frames(video, max_frames=10)]).astype(float)
    out_frames = np.stack(list(read_frames(sr))).astype(float)
    assert np.abs(out_frames - src).mean() < 0.5 * np.abs(src - src.mean()).mean()


@pytest.mark.slow
def test_cli_errors_are_one_line(monkeypatch, capsys, tmp_path, data_root):
    video = data_root / "video" / "bikes_640x272.mp4"
    for args, words, want in [
        (("encode", tmp_path / "none.mp4", tmp_path / "s"), ("video not found",), 2),
        (("encode", video, tmp_path / "s", "--strategy", "best"), ("strategy",), 5),
        (("encode", video, tmp_path / "s", "--eta", "0"), ("eta",), 5),
        (("encode", video, tmp_path / "s", "--tau", "abc"), ("--tau",), 5),
        (("encode", video, tmp_path / "s", "--crop", "96x64", "--max-frames", "2", "--quiet"), ("64 pixels wide",), 5),
        (("decode", tmp_path / "nothing", tmp_path / "o.mp4"), ("stream not found",), 2),
        (("decode", video, tmp_path / "o.mp4"), ("not an adasr stream",), 2),
    ]:
        code, _, err = run_cli(monkeypatch, capsys, *args)
        assert code == want, (args, code, err)
        assert "Traceback" not in err and err.strip().count("\n") == 0, err
        assert all(w in err for w in words), err
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_play_stream_applies_deltas_at_segment_boundaries(streams, tmp_path, monkeypatch, capsys):
    from adasr.stream.player import is_stream_path, play_stream
    from adasr.stream.reader import decode_stream
    from adasr.video import read_frames

    single, folder, manifest = streams
    assert is_stream_path(single) and is_stream_path(folder) and not is_stream_path(tmp_path)
    result, _ = play_stream(single, target_fps=1000.0, out=tmp_path / "play.mp4", crf=18)
    s = result.summary()
    assert s["frames"] == 10 and result.segments_applied == len(manifest["segments"])
    decode_stream(single, tmp_path / "dec.mp4", crf=18)
    played = np.stack(list(read_frames(tmp_path / "play.mp4")))
    decoded = np.stack(list(read_frames(tmp_path / "dec.mp4")))
    # every frame upscaled by its own segment's model; bit-exact, as both run the same model on the
    # same decoded frame in the same layout, and the encoder then sees the same frames
    assert np.array_equal(played, decoded)
    code, out, err = run_cli(monkeypatch, capsys, "play", folder, "--quiet", "--json", tmp_path / "p.json",
                             "--target-fps", "1000")
    assert code == 0, err
    assert json.loads((tmp_path / "p.json").read_text())["segments_applied"] == len(manifest["segments"])
