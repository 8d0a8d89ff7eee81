"""`adasr serve`, `adasr play http://...` and their one-line errors."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_cli import run_cli

from .test_serve_http import make_server

BIKES = "video/bikes_640x272.mp4"


@pytest.mark.integration
def test_serve_runs_bounded_and_reports(monkeypatch, capsys, data_root):
    code, out, err = run_cli(monkeypatch, capsys, "serve", data_root / BIKES, "--port", "0", "--crop", "64x64",
                             "--seconds", "2", "--segment-s", "0.2", "--k", "1", "--quiet", "--name", "bikes",
                             "--values", "int4")
    assert code == 0, err
    assert "serving 1 channel(s) on http://127.0.0.1:" in out and "/channel/bikes" in out
    stopped = json.loads(out.split("stopped: ", 1)[1])
    assert stopped[0]["name"] == "bikes" and stopped[0]["segments"] >= 1


@pytest.mark.integration
def test_play_a_live_channel(monkeypatch, capsys, data_root, tmp_path):
    with make_server(data_root, frames=20) as srv:
        summary = tmp_path / "live.json"
        code, out, err = run_cli(monkeypatch, capsys, "play", f"{srv.url}/channel/bikes", "--quiet", "--policy",
                                 "fixed", "--json", summary)
        assert code == 0, err
    s = json.loads(summary.read_text())
    live = s["live"]  # a live viewer joins at the live edge: it may miss the first segments
    assert s["frames"] == 5 * live["segments"] and live["segments"] >= 2 and live["refused"] == 0
    assert "updates applied" in out


@pytest.mark.integration
def test_live_errors_are_one_line(monkeypatch, capsys, data_root, tmp_path):
    cases = [
        (["serve", tmp_path / "missing.mp4", "--port", "0"], "live source not found"),
        (["serve", data_root / BIKES, "--scheme", "magic", "--port", "0"], "--scheme must be one of"),
        (["serve", data_root / BIKES, "--values", "int3", "--port", "0"], "--values must be one of"),
        (["serve", data_root / BIKES, "--port", "70000"], "--port must be"),
        (["play", "http://user:pw@127.0.0.1:8000/channel/x"], "must not carry credentials"),
        (["play", "http://127.0.0.1:1/nochannel"], "looks like http(s)://HOST:PORT/channel/NAME"),
        (["play", "http://127.0.0.1:8000/channel/x", "--trace", "bursty"], "not for a live channel"),
        (["play", data_root / BIKES, "--base", "generic"], "--base applies to a live channel"),
    ]
    for args, message in cases:
        code, out, err = run_cli(monkeypatch, capsys, *args)
        assert code != 0 and message in err and "Traceback" not in err, (args, err)
