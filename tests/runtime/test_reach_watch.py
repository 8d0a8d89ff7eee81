"""`ReachWatch`: one warning when the fastest level still misses the target; none when it holds."""

from __future__ import annotations

from dataclasses import dataclass

from adasr.runtime.player import ReachWatch


@dataclass
class Rec:
    index: int
    level: int
    ready_time: float
    missed: bool


def _feed(watch: ReachWatch, fps: float, seconds: float, level: int = 0) -> None:
    n = int(fps * seconds)
    for i in range(n):
        watch.on_frame(Rec(i, level, (i + 1) / fps, fps < watch.target))


def test_warns_once_when_the_fastest_level_falls_behind():
    lines: list[str] = []
    watch = ReachWatch(15.0, lines.append)
    _feed(watch, 9.0, 8.0)  # 9 FPS on level 0 against 15
    assert len(lines) == 1 and "15 FPS is out of reach" in lines[0] and "about 9.0 FPS" in lines[0]


def test_quiet_when_the_target_holds_or_a_bigger_level_runs():
    lines: list[str] = []
    _feed(ReachWatch(15.0, lines.append), 15.0, 8.0)          # on target
    _feed(ReachWatch(15.0, lines.append), 9.0, 8.0, level=3)  # slow, but not at the fastest level yet
    _feed(ReachWatch(15.0, lines.append), 9.0, 1.0)           # too early to judge
    assert lines == []
