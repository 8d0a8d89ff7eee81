"""Headless Chromium driven by playwright-core (``adasr/serve/webdrive.mjs``, run with Node):
what the browser tests and `adasr bench browser` use to open the player and read its stats.

`drive(url, body, args)` runs `body` (the text of an async JS function of ``page``, ``args``,
``sleep``) in Node against a page opened at `url` and returns its JSON result. Only loopback URLs
are accepted. Chromium: $ADASR_CHROMIUM, else ``chromium`` on the PATH (Debian's package).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from adasr.errors import ConfigError, InputError

__all__ = ["CHROMIUM_ARGS", "chromium", "drive"]

DRIVER = Path(__file__).with_name("webdrive.mjs")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
                 "--autoplay-policy=no-user-gesture-required"]


def chromium() -> str:
    path = os.environ.get("ADASR_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise InputError("chromium is not installed (apt-get install chromium) and ADASR_CHROMIUM is not set")
    return path


def drive(url: str, body: str, args: dict[str, Any] | None = None, *, timeout_s: float = 120.0,
          screenshot: Path | None = None, extra_args: list[str] | None = None) -> Any:
    """The result of `body` run against the page at `url` (RuntimeError with the driver's error
    and the page's console if it fails)."""
    from adasr.serve.web import node_modules

    host = urlparse(url).hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        raise ConfigError(f"the browser driver opens loopback URLs only, not {url}")
    nm = node_modules()
    node = shutil.which("node")
    if nm is None or node is None or not (nm / "playwright-core").is_dir():
        raise InputError("playwright-core is not installed: run `make js` (npm ci) in the adasr checkout")
    import tempfile

    fd, out_path = tempfile.mkstemp(prefix="adasr-drive-", suffix=".json")
    os.close(fd)
    job = {"out": out_path, "url": url, "body": body, "args": args or {}, "timeout_ms": int(timeout_s * 1000),
           "executable": chromium(), "chromium_args": CHROMIUM_ARGS + list(extra_args or []),
           "screenshot": None if screenshot is None else str(screenshot), "node_modules": str(nm)}
    # the driver and the Chromium it starts run in a session of their own, which is killed whole when
    # the driver is done: a Chromium that outlives its driver (a close that hung under load, a timeout)
    # would otherwise keep the page's workers spinning on the machine's cores
    proc = subprocess.Popen([node, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        try:
            _, stderr = proc.communicate(json.dumps(job), timeout=timeout_s + 30)
        except subprocess.TimeoutExpired:
            stderr = "the driver did not finish in time"
        text = Path(out_path).read_text()
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        Path(out_path).unlink(missing_ok=True)
    try:
        out = json.loads(text)
    except json.JSONDecodeError:
        raise RuntimeError(f"browser driver failed (exit {proc.returncode}): {stderr[-2000:]}") from None
    if not out.get("ok"):
        raise RuntimeError(f"browser driver: {out.get('error')}\npage console:\n" + "\n".join(out.get("console", [])))
    return out["result"]
