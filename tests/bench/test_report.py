"""docs/RESULTS.md is generated from docs/results/*.json: the page in the repository is what the
report makes of the stored JSON, every stored JSON carries its provenance, and a missing or bad
file is said, not filled in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adasr.bench.report import SECTIONS, Section, render_results
from adasr.errors import InputError
from adasr.timing import provenance

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"


def test_the_results_page_is_the_report_of_the_stored_json():
    page = render_results(RESULTS)
    assert (ROOT / "docs" / "RESULTS.md").read_text(encoding="utf-8") == page, \
        "docs/RESULTS.md is stale: run `adasr bench report` (make results)"
    assert page.count("\n") <= 445  # seventeen claims, about 26 lines each: a page, not a log


def test_every_stored_result_is_read_by_a_section_and_carries_its_provenance():
    read = {name for s in SECTIONS for name in s.files}
    stored = {p.name for p in RESULTS.glob("*.json")}
    assert stored <= read, f"results no section renders: {sorted(stored - read)}"
    for name in stored:
        p = json.loads((RESULTS / name).read_text())["provenance"]
        assert p["command"].startswith("adasr ") and p["date"][:2] == "20", name
        assert {"cpu", "cores", "torch_threads", "device_key"} <= set(p["machine"]), name


def test_missing_and_bad_files_are_said_not_filled_in(tmp_path):
    rows = [{"set": "Set5", "scale": 2, "images": 5, "psnr": 33.70, "ssim": 0.93, "published_psnr": 33.66,
             "published_ssim": 0.9299, "psnr_diff": 0.04}]
    (tmp_path / "protocol.json").write_text(json.dumps({"rows": rows, "provenance": provenance(["adasr", "x"])}))
    page = render_results(tmp_path, SECTIONS[:2])
    assert "| Set5 | x2 | 33.700 | 33.66 | +0.040 |" in page and "`adasr x` on " in page
    assert "Not measured in this regeneration: no peers-x2.json" in page
    (tmp_path / "protocol.json").write_text("{broken")
    with pytest.raises(InputError, match="protocol.json"):
        render_results(tmp_path, SECTIONS[:1])
    (tmp_path / "protocol.json").write_text(json.dumps({"rows": [{"set": "Set5"}]}))
    with pytest.raises(InputError, match="not a result this report knows"):
        render_results(tmp_path, SECTIONS[:1])
    with pytest.raises(InputError, match="no results folder"):
        render_results(tmp_path / "none")


def test_a_result_from_a_loaded_machine_is_marked(tmp_path):
    from adasr.bench.report import LOADED_PER_CORE, _provenance

    p = provenance(["adasr", "x"])
    cores = p["machine"]["cores"]
    p["machine"]["loadavg_1m"] = LOADED_PER_CORE * cores + 1.0
    assert "loaded machine" in _provenance("x.json", {"provenance": p})
    p["machine"]["loadavg_1m"] = float(cores)  # a bench's own threads: not marked
    assert "loaded machine" not in _provenance("x.json", {"provenance": p})
    # the stored results were all measured on a quiet enough machine
    assert "loaded machine" not in (ROOT / "docs" / "RESULTS.md").read_text(encoding="utf-8")


def test_a_table_is_one_renderer(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"n": 3}))
    extra = Section("Extra", "One number.", ("x.json",), lambda data: (["n"], [[str(data[0]["n"])]], []), "x")
    page = render_results(tmp_path, (extra,))
    assert "## Extra" in page and "| n |\n|---|\n| 3 |" in page and "no provenance recorded" in page
