"""The page's adaptation (adasr/serve/web/adapt.js) run in Node on synthetic frame times: the
switcher leaves a level on its first missed frame (straight to the floor when level 0 is predicted
to miss too), probes level 0 from the floor without showing it, waits after a probe that overran,
comes back and steps up when the load goes; the lowered display rate starts from level 0's time
and follows the lower quartile of its recent times."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from adasr.serve.web import WEB_DIR

pytestmark = pytest.mark.integration  # runs Node in a subprocess

SCRIPT = """
const { Switcher, Rate } = await import(process.argv[2]);
const levels = [{ macs: 100 }, { macs: 150 }, { macs: 400 }];
const base = [40, 60, 160]; // ms a frame per level, calm
const ready = () => true;
// 100 ms frames; load x1 for 20 frames, x2.5 for 30, x1 for 40
const load = [...Array(20).fill(1), ...Array(30).fill(2.5), ...Array(40).fill(1)];
const sw = new Switcher(levels, 100, false, 0, true);
const trace = [];
for (const f of load) {
  const k = sw.cur;
  const ms = k < 0 ? 1 : base[k] * f;
  sw.observe(k, ms, ready);
  let probe = null;
  if (sw.probeDue) { probe = base[0] * f; sw.probed(probe); }
  trace.push({ k, ms, late: ms > 100, probe, next: sw.cur });
}
// a probe of over two periods: the next probe turn is skipped
const g = new Switcher(levels, 100, false, 0, true);
g.observe(0, 300, ready);
const turns = [];
for (let i = 0; i < 16; i++) {
  g.observe(-1, 1, ready);
  turns.push(g.probeDue);
  if (g.probeDue) g.probed(250);
}
const rates = {};
for (const ms of [15, 30, 44, 70, 500]) { const r = new Rate(40, true); r.start(ms); rates[ms] = r.div; }
const off = new Rate(40, false); off.start(500);
const r = new Rate(40, true); r.start(44);
const steps = [];
for (let i = 0; i < 12; i++) { r.observe(0, 150); steps.push(r.div); }
for (let i = 0; i < 30; i++) { r.observe(0, 18); steps.push(r.div); }
console.log(JSON.stringify({ trace, turns, rates, off: off.div, steps }));
"""


def test_switcher_and_rate(tmp_path):
    node = shutil.which("node")
    assert node, "node is not installed (Node.js 20+ runs the page's adaptation here)"
    script = tmp_path / "run.mjs"
    script.write_text(SCRIPT)
    proc = subprocess.run([node, str(script), (WEB_DIR / "adapt.js").as_uri()], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    t = out["trace"]
    # calm: level 0, then up to level 1 (predicted 60 < 0.8 x 90) and not to level 2 (160)
    assert [x["k"] for x in t[:8]] == [0] * 8 and t[19]["k"] == 1
    assert all(x["k"] < 2 for x in t)
    # the load comes (frame 20): the first slow frame at level 1 is the only late one; level 0 would miss
    # too (150 ms predicted), so the next frame is at the floor
    assert t[20]["late"] and t[20]["next"] == -1
    assert sum(x["late"] for x in t) == 1
    # under the load the probes of level 0 fail (100 ms) and nothing is shown at level 0
    under = t[21:50]
    assert any(x["probe"] for x in under) and all(x["k"] == -1 for x in under)
    # the load goes (frame 50): a probe within 4 floor frames brings level 0 back, then level 1
    back = next(i for i, x in enumerate(t) if i >= 50 and x["k"] == 0)
    assert back <= 55 and any(x["k"] == 1 for x in t[back:])
    # after a probe of 250 ms (over two 100 ms periods) one probe turn is skipped (250 x 0.8 = 200)
    assert out["turns"][:8] == [False, False, False, True, False, False, False, False]
    assert out["turns"].count(True) == 2
    # the rate: 2 x level 0's time per shown frame, at most 1 in 4; off: stays 1
    assert out["rates"] == {"15": 1, "30": 2, "44": 3, "70": 4, "500": 4} and out["off"] == 1
    # level 0 at 150 ms (over 90 % of 120 ms): down to 1 in 4 after 6 samples; at 18 ms back up, step by step
    steps = out["steps"]
    assert steps[4] == 3 and steps[5] == 4 and steps[11] == 4
    assert steps[-1] == 1 and steps[12:] == sorted(steps[12:], reverse=True)
