"""Hostile input, round 3 (issue 34): the command line, one table of argument lists.

Each row of `CASES` is a command line with hostile values, the exit code of its class (2 input,
3 output, 4 model, 5 option) and words of the one-line error. Nothing may end as exit 70
(internal error), print a traceback, or leave output behind. A new command or option gets rows
here (the Hypothesis walk over every numeric option stays in tests/test_failures.py).
Classes: 4, 5, 9, 10, 11, 20, and the live service's --host/--token/URLs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from tests.cli.test_cli import run_cli


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    from adasr.mimo.channels import ChannelSet, save

    root = tmp_path_factory.mktemp("hostile-cli")
    zero = root / "zero.safetensors"
    save(ChannelSet(torch.zeros(1, 2, 8, 4, dtype=torch.complex64), {"model": "iid"}), zero)
    half = root / "half.safetensors"
    h = torch.randn(1, 2, 8, 4, dtype=torch.complex64)
    h[0, 1] = 0
    save(ChannelSet(h, {"model": "iid"}), half)
    os.mkfifo(root / "fifo.json")
    return {"root": root, "zero": zero, "half": half, "fifo": root / "fifo.json"}


MIMO = ["mimo", "bench", "--detectors", "mmse", "--samples", "10"]

# name -> (argv with {root}/{zero}/... filled in, exit code, words of the error)
CASES = {
    # 9: the --snr range's size is known before any list is built
    "snr range of 6e10 values": ([*MIMO, "--snr", "0:60:1e-9"], 5, ["--snr", "at most 200"]),
    "snr range NaN": ([*MIMO, "--snr", "0:nan:1"], 5, ["--snr"]),
    "snr range inf": ([*MIMO, "--snr", "0:inf:1"], 5, ["--snr"]),
    # 10: the channel set's total size is bounded, not each dimension alone
    "mimo 1024 x 4096 x 4096": ([*MIMO, "--users", "1024", "--antennas", "4096", "--carriers", "4096"], 5,
                                ["entries", "allowed"]),
    "mimo channels 64 x 4096 x 4096": (["mimo", "channels", "--out", "{root}/c.safetensors", "--users", "64",
                                        "--antennas", "4096", "--carriers", "4096"], 5, ["entries"]),
    # 11: a zero channel has no SNR
    "all-zero channel set": ([*MIMO, "--channel", "file", "--channels", "{zero}", "--users", "4", "--antennas", "8"],
                             2, ["all zero"]),
    "partly zero channel set": ([*MIMO, "--channel", "file", "--channels", "{half}", "--users", "4", "--antennas",
                                 "8"], 2, ["1 of 2", "all zero"]),
    # 4: genotypes through the bounded reader
    "genotype /dev/zero": (["train", "--out", "{root}/r1", "--arch", "dlsr", "--arg", "genotype=/dev/zero"], 2,
                           ["not a regular file"]),
    "genotype FIFO": (["train", "--out", "{root}/r2", "--arch", "dlsr", "--arg", "genotype={fifo}"], 2,
                      ["not a regular file"]),
    "training config FIFO": (["train", "--out", "{root}/r3", "--config", "{fifo}"], 2, ["not a regular file"]),
    # 20: an empty path is refused, not taken as "."
    "genotype empty": (["train", "--out", "{root}/r4", "--arch", "dlsr", "--arg", "genotype="], 5, ["empty path"]),
    "info empty": (["info", ""], 5, ["empty path"]),
    "decode --base empty": (["decode", "{root}/none.adasr-stream", "{root}/o.mp4", "--base", ""], 5,
                            ["--base", "empty path"]),
    "decode output empty": (["decode", "{root}/none.adasr-stream", ""], 5, ["empty path"]),
    "play empty": (["play", ""], 5, ["empty path"]),
    "play --json empty": (["play", "x.mp4", "--json", " "], 5, ["--json", "empty path"]),
    "upscale empty input": (["upscale", "", "{root}/o.png"], 5, ["empty path"]),
    # serving a real network: the URLs play takes and refuses, serve's token rules
    "play a URL with credentials": (["play", "http://u:p@127.0.0.1:9/channel/c"], 5, ["credentials", "--token"]),
    "play a URL with a query": (["play", "http://127.0.0.1:9/channel/c?x=1"], 5, ["channel URL"]),
    "play --token for a file": (["play", "x.mp4", "--token", "abc"], 5, ["--token", "live channel"]),
    "serve a short token": (["serve", "{zero}", "--host", "127.0.0.1", "--token", "short"], 5, ["token"]),
}


class TestCommandLine:
    @pytest.mark.parametrize("case", sorted(CASES))
    def test_case(self, case, files, monkeypatch, capsys):
        argv, want, words = CASES[case]
        argv = [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]
        before = sorted(p.name for p in files["root"].iterdir())
        code, _, err = run_cli(monkeypatch, capsys, *argv)
        assert code == want, (case, code, err)
        assert "Traceback" not in err and "internal error" not in err and err.strip().count("\n") == 0, err
        for w in words:
            assert w in err, (case, w, err)
        assert sorted(p.name for p in files["root"].iterdir()) == before, case  # nothing left behind


class TestServeToken:
    def test_a_token_is_made_and_printed_once_for_a_real_address(self, capsys):
        from adasr._cli.serve_cmd import _access_token

        token = _access_token("0.0.0.0", None)
        cap = capsys.readouterr()
        assert len(token) >= 16 and cap.out.count(token) == 1 and token not in cap.err
        assert cap.err.strip().count("\n") == 0 and "warning" in cap.err and "0.0.0.0" in cap.err
        assert _access_token("10.0.0.1", "given-token-0123456789") == "given-token-0123456789"
        assert "given-token" not in capsys.readouterr().out  # a given token is not echoed
        assert _access_token("127.0.0.1", None) is None  # loopback: no token unless asked
