"""The player's routes without a browser: the HLS playlist plays in FFmpeg (PyAV), the MP4
remux holds the segment's frames, the re-packed model records carry the same model, a level's
ONNX fed from the stream's vector computes the model, reports are bounded, files are confined,
and every /play response is cross-origin isolated."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import av
import numpy as np
import pytest
import torch

from adasr.serve.media import decode_segment
from adasr.serve.web import ISOLATION, browser_record
from adasr.stream.codec import ModelState, record_kind
from tests.serve.test_serve_http import make_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_play_routes(data_root):
    with make_server(data_root, frames=12) as srv:
        assert srv.wait(60)
        ch = srv.hub.channels["bikes"]
        u = f"{srv.url}/play/bikes"
        status, page, headers = _get(u)
        assert status == 200 and b"player.js" in page
        assert all(headers.get(k) == v for k, v in ISOLATION.items())
        # HLS: FFmpeg's HLS demuxer plays every segment from the playlist
        status, m3u8, _ = _get(f"{u}/index.m3u8")
        assert status == 200 and m3u8.startswith(b"#EXTM3U") and b"#EXT-X-ENDLIST" in m3u8
        with av.open(f"{u}/index.m3u8", timeout=10.0) as c:
            n_hls = sum(1 for _ in c.decode(video=0))
        kept = ch.manifest()["segments"]
        assert n_hls == sum(s["frames"] for s in kept)
        # the MP4 remux: the same frames as the MPEG-TS segment (same packets, no re-encode)
        status, mp4, headers = _get(f"{u}/segment/0.mp4")
        assert status == 200 and headers["Content-Type"] == "video/mp4"
        with av.open(__import__("io").BytesIO(mp4)) as c:
            frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        ts = decode_segment(ch.segment(0).data)
        assert len(frames) == len(ts) and all(np.array_equal(a, b[: a.shape[0], : a.shape[1]])
                                              for a, b in zip(frames, ts))
        # records: the same model and updates, whatever the compression
        init = _get(f"{u}/model/init")[1]
        assert record_kind(init) == "full" and init[6] != 2  # never LZMA2 on /play
        state, ref = ModelState.from_full(init), ModelState.from_full(ch.init_record)
        assert state.hash == ref.hash
        for i in range(ch.manifest()["n_updates"]):
            rec = _get(f"{u}/model/{i}.bin")[1]
            assert rec[6] != 2
            state.apply(rec)
            ref.apply(ch.update(i))
            assert state.hash == ref.hash
            assert browser_record(ch.update(i)) == rec
        # a level as ONNX, weights fed from the stream's vector, computes the model (a non-package model: one level)
        levels = json.loads(_get(f"{u}/levels.json")[1])
        assert levels["lr_width"] == 32 and len(levels["levels"]) == 1
        graph = _get(f"{u}/level/0.onnx")[1]
        import onnxruntime as ort

        sess = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
        vec = state.vector.numpy()
        feeds = {t["name"]: vec[t["offset"]:t["offset"] + t["count"]].reshape(t["shape"])
                 for t in levels["weights"]["tensors"]}
        x = np.random.default_rng(0).random((1, 3, 32, 32), dtype=np.float32)
        got = sess.run(None, {"x": x, **{i.name: feeds[i.name] for i in sess.get_inputs() if i.name != "x"}})[0]
        with torch.no_grad():
            want = state.model(torch.from_numpy(x)).numpy()
        assert float(np.abs(got - want).max()) <= 2e-4  # fp32 in two kernels: reordered sums only
        # variants: a model without bic levels offers frozen and int8, not residual; int8 is close to float32
        assert levels["variants"] == ["plain", "frozen", "int8"]
        for bad in ("residual", "nope", "int8%00"):
            assert _get(f"{u}/level/0.onnx?variant={bad}")[0] == 400, bad
        status, q, _ = _get(f"{u}/level/0.onnx?variant=int8")
        sess = ort.InferenceSession(q, providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == ["x"]  # the weights are inside the int8 graph
        lr = decode_segment(ch.segment(0).data)[-1][:32, :32]
        x = np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
        with torch.no_grad():
            want = np.clip(ch.trainer.base(torch.from_numpy(x)).numpy(), 0, 1)
        got = np.clip(sess.run(None, {"x": x})[0], 0, 1)
        assert 10 * np.log10(1 / float(np.mean((got - want) ** 2))) >= 40  # as tests/test_export.py's int8 bound
        # reports: shown in the status; malformed ones refused
        ok = _get(f"{u}/report?client=t1&frames=10&on_time=9&level=0&fps=24.5&levels=0:10&model=abcd&backend=wasm")
        assert ok[0] == 204
        assert srv.hub.status()["players"][0]["client"] == "t1"
        assert _get(f"{srv.url}/")[1].count(b'id="players"') == 1
        assert _get(f"{u}/report?client=t2&frames=8&level=-1&levels=-1:3,0:5")[0] == 204  # the bicubic floor
        for bad in ("client=t1&frames=-1", "client=t1&level=-2", "client=t1&frames=1e99",
                    "client=t1&levels=%3Cscript%3E", "client=../x",
                    "frames=1"):
            assert _get(f"{u}/report?{bad}")[0] == 400, bad
        # files: only the page's own and the pinned libraries, by plain names
        assert _get(f"{srv.url}/play/static/player.js")[0] == 200
        assert _get(f"{srv.url}/play/lib/ort/ort.wasm.min.mjs")[0] == 200
        for bad in ("/play/static/..%2Fweb.py", "/play/static/player.js.x", "/play/static/webdrive.mjs",
                    "/play/lib/other/x.js", "/play/lib/ort/..%2F..%2Fpackage.json", "/play/nope",
                    "/play/bikes/level/9.onnx"):
            assert _get(f"{srv.url}{bad}")[0] in (400, 404), bad
