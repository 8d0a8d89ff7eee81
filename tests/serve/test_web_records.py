"""The page's record decoder (adasr/serve/web/records.js) run in Node against records Python
writes: every value type (float32, float16, int8, int4) and index coding (gap varints, bitmap) gives
the model Python's ModelState gives, bit for bit (same hash); damaged records are refused with
the model unchanged. Node's WebCrypto and DecompressionStream are the browser's APIs."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from adasr.serve.web import WEB_DIR, browser_record
from adasr.stream.codec import ModelState, encode_delta, encode_full, quantise, vector_hash
from tests.serve.test_serve import tiny_model

pytestmark = pytest.mark.integration  # runs Node in a subprocess

SCRIPT = """
const { ModelState } = await import(process.argv[2]);
const fs = await import('node:fs');
const job = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
const read = (p) => new Uint8Array(fs.readFileSync(p));
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
const state = await ModelState.fromFull(read(job.init));
const out = { start: hex(state.hash), steps: [] };
for (const p of job.records) {
  try { await state.apply(read(p)); out.steps.push({ ok: true, hash: hex(state.hash) }); }
  catch (e) { out.steps.push({ ok: false, reason: e.message, hash: hex(state.hash) }); }
}
console.log(JSON.stringify(out));
"""


def test_js_decoder_matches_python(tmp_path):
    node = shutil.which("node")
    assert node, "node is not installed (Node.js 20+ runs the page's record decoder here)"
    model, spec = tiny_model()
    init = encode_full(model, spec, "float16")
    py = ModelState.from_full(init)
    gen = torch.Generator().manual_seed(0)
    records, want = [], []
    cases = [("float32", 7), ("float16", 3), ("int8", 11), ("int4", 5),
             ("float16", 1), ("int8", 2), ("int4", 1)]  # strides 1 and 2: a bitmap
    for seg, (dtype, stride) in enumerate(cases):
        idx = torch.arange(seg % 3, py.vector.numel(), stride)
        raw, values = quantise(torch.randn(idx.numel(), generator=gen) * 0.01, dtype)
        new = py.vector.clone()
        new[idx] += values
        rec = encode_delta(idx, raw, dtype, seg, new.numel(), py.base_hash, py.hash, vector_hash(new))
        py.apply(rec)
        assert py.hash == vector_hash(new)
        records.append(browser_record(rec))
        want.append(py.hash.hex())
    # damaged: a flipped payload bit (checksum), then a replay of the last record (order)
    bad = bytearray(records[-1])
    bad[80] ^= 1
    records += [bytes(bad), records[-1]]
    paths = []
    for i, rec in enumerate(records):
        paths.append(tmp_path / f"r{i}.bin")
        paths[-1].write_bytes(rec)
    (tmp_path / "init.bin").write_bytes(browser_record(init))
    (tmp_path / "job.json").write_text(json.dumps({"init": str(tmp_path / "init.bin"),
                                                   "records": [str(p) for p in paths]}))
    (tmp_path / "run.mjs").write_text(SCRIPT)
    proc = subprocess.run([node, str(tmp_path / "run.mjs"), (WEB_DIR / "records.js").as_uri(),
                           str(tmp_path / "job.json")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["start"] == ModelState.from_full(init).hash.hex()
    steps = out["steps"]
    assert [s["hash"] for s in steps[: len(cases)]] == want and all(s["ok"] for s in steps[: len(cases)])
    assert not steps[-2]["ok"] and "checksum" in steps[-2]["reason"] and steps[-2]["hash"] == want[-1]
    assert not steps[-1]["ok"] and "out of order" in steps[-1]["reason"] and steps[-1]["hash"] == want[-1]
