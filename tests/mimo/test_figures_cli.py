"""`adasr mimo complexity` (Fig. 3-12) and `adasr mimo channels`' locality output (Fig. 3-10)."""

from __future__ import annotations

import json

import pytest

from adasr.mimo import channels as C
from adasr.mimo import complexity as X
from tests.cli.test_cli import run_cli


def test_complexity_writes_the_counts_as_json_and_png(monkeypatch, capsys, tmp_path):
    out = tmp_path / "c.json"
    code, text, err = run_cli(monkeypatch, capsys, "mimo", "complexity", "--users", "2,4", "--antennas", "8",
                              "--mod", "qam4", "--detectors", "mmse,amp,mmnet", "--train-iters", "5",
                              "--json", str(out))
    assert code == 0, err
    report = json.loads(out.read_text())
    assert list(report["counts"]) == ["2x8", "4x8"]
    want = X.count("mmnet", 4, 8, 4, vectors=100, train_iters=5)["total"]
    assert report["counts"]["4x8"]["mmnet"]["total"] == pytest.approx(want)
    assert report["counts"]["2x8"]["mmse"]["total"] < report["counts"]["4x8"]["mmse"]["total"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "mmnet" in text


@pytest.mark.parametrize("args,word", [
    (["complexity", "--detectors", "sdr"], "sdr"),
    (["complexity", "--users", "80", "--antennas", "64"], "80 users"),
    (["complexity", "--json", "c.txt"], ".json"),
    (["channels", "--channel", "iid", "--stride", "1", "--out", "s.safetensors"], "--channel uma"),
    (["channels", "--channel", "iid", "--out", "s.safetensors", "--png", "s.jpg"], ".png"),
])
def test_bad_figure_options_are_one_line_errors(monkeypatch, capsys, tmp_path, args, word):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "mimo", *args)
    assert code == 5 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    assert word in err
    assert list(tmp_path.iterdir()) == []


def test_channels_stores_and_plots_the_locality(monkeypatch, capsys, tmp_path):
    path = tmp_path / "s.safetensors"
    code, text, err = run_cli(monkeypatch, capsys, "mimo", "channels", "--channel", "corr", "--users", "2",
                              "--antennas", "8", "--steps", "3", "--carriers", "6", "--rho-f", "0.9",
                              "--out", str(path), "--png", str(tmp_path / "loc.png"))
    assert code == 0, err
    loc = C.load(path).meta["locality"]
    assert len(loc["frequency"]) == 6 and loc["frequency"][0] == pytest.approx(1.0)
    assert loc["frequency"][1] > loc["frequency"][5]
    assert (tmp_path / "loc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "correlation at a distance" in text


@pytest.mark.slow
def test_sweep_phi_passes_reset_adam_to_the_online_loop(monkeypatch, capsys, tmp_path):
    reports = {}
    for flag in ("--reset-adam", "--keep-adam"):
        out = tmp_path / f"{flag[2:]}.json"
        code, _, err = run_cli(monkeypatch, capsys, "mimo", "sweep-phi", "--channel", "corr", "--users", "2",
                               "--antennas", "8", "--mod", "qam4", "--carriers", "3", "--rho-f", "0.9", "--phi", "3",
                               "--first", "20", "--batch", "20", "--samples", "20", "--layers", "2", "--lr", "1e-2",
                               "--next-lr", "2e-2", flag, "--device", "cpu", "--json", str(out))
        assert code == 0, err
        reports[flag] = json.loads(out.read_text())
    assert reports["--reset-adam"]["reset_adam"] is True and reports["--keep-adam"]["reset_adam"] is False
    reset, keep = (reports[f]["mmnet"] for f in ("--reset-adam", "--keep-adam"))
    assert reset[0]["ser_per_channel"] == keep[0]["ser_per_channel"]  # the frozen copy trains no warm channel
    assert reset[1]["last_loss"] != keep[1]["last_loss"]              # the warm channels' training differs
