"""The status page in a real browser: headless Chromium (Debian's `chromium`; `.ci/run` installs
it) loads it from 127.0.0.1, dumps its DOM and screenshots it."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from .test_serve_http import make_server

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--disable-extensions", "--hide-scrollbars", "--window-size=1200,360"]


def _chromium(*args: str, tmp_path) -> subprocess.CompletedProcess:
    assert BROWSER, "chromium is not installed: apt-get install chromium (.ci/run does it)"
    return subprocess.run([BROWSER, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.mark.browser
def test_status_page_renders_in_headless_chromium(data_root, tmp_path):
    with make_server(data_root, frames=20, name="bikes-live") as srv:
        srv.wait(60)
        dom = _chromium("--dump-dom", f"{srv.url}/", tmp_path=tmp_path)
        assert dom.returncode == 0, dom.stderr[-2000:]
        assert "bikes-live" in dom.stdout and "<table" in dom.stdout and "PSNR gain dB" in dom.stdout
        png = tmp_path / "status.png"
        shot = _chromium(f"--screenshot={png}", f"{srv.url}/", tmp_path=tmp_path)
        assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape == (360, 1200, 3)
    header = np.all(np.abs(img.astype(int) - (0x2D, 0x5D, 0x8A)) < 12, axis=2)  # the table header's blue
    assert header.sum() > 2000, "the channel table's header is not on the page"
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20  # text rendered, not a blank page
