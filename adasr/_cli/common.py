"""What every CLI module shares: the two consoles and the --threads option."""

from __future__ import annotations

from rich.console import Console

from adasr.errors import ConfigError

console = Console(stderr=True)  # progress, live views, errors
out = Console()                 # results


def set_threads(threads: int | None) -> None:
    """Apply --threads (None: leave torch's default)."""
    if threads is not None:
        import torch

        if threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def parse_size(text: str, option: str, minimum: int = 8) -> tuple[int, int]:
    """'320x180' -> (320, 180) as (W, H); ConfigError naming `option` otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{option} must look like 320x180, got {text!r}") from None
    if w < minimum or h < minimum:
        raise ConfigError(f"{option} too small: {text} (at least {minimum}x{minimum})")
    return w, h
