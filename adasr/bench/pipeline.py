"""Where `adasr upscale` loses time: decode, SR and encode alone against the whole pipeline.

`run_pipeline(package, videos, level=...)` measures, per clip at its own size and one fixed level:

- decode FPS: `read_frames` alone (the first `max_frames` frames, RGB conversion included);
- SR FPS: `Engine.process` on those decoded frames, one after another (after a warm-up);
- encode FPS: `VideoWriter` (the codec and CRF given) on the SR outputs;
- end-to-end FPS: `adasr.runtime.player.play` with the fixed level and no pacing, writing the
  video as `adasr upscale --level N` does (decode thread, SR loop, encoding sink thread);

and the ratio end-to-end / SR. Writes ``pipeline.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adasr._atomic import ensure_dir, write_bytes_atomic
from adasr._jsonfile import header
from adasr.errors import ConfigError
from adasr.timing import provenance

__all__ = ["run_pipeline"]


def run_pipeline(package_path: str | os.PathLike[str], videos: Sequence[str | os.PathLike[str]], *, level: int = 0,
                 max_frames: int = 30, codec: str = "h264", crf: int = 20,
                 out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    from adasr.runtime.engine import Engine
    from adasr.runtime.player import PlayOptions, play
    from adasr.video import VideoWriter, probe, read_frames

    if not videos:
        raise ConfigError("give at least one video")
    if not isinstance(max_frames, int) or max_frames < 2:
        raise ConfigError(f"max_frames must be an integer of at least 2, got {max_frames!r}")
    out = ensure_dir(out_dir)
    engine = Engine.load(str(package_path))
    if not isinstance(level, int) or not 0 <= level < len(engine.levels):
        raise ConfigError(f"level must be in [0, {len(engine.levels) - 1}], got {level!r}")
    rows = []
    for video in videos:
        info = probe(video)
        start = time.perf_counter()
        frames = list(read_frames(video, max_frames=max_frames))
        decode_s = time.perf_counter() - start
        engine.switch(level)
        engine.warmup(frames[0].shape[:2])
        outputs = []
        start = time.perf_counter()
        for f in frames:
            outputs.append(engine.process(f))
        sr_s = time.perf_counter() - start
        h, w = outputs[0].shape[:2]
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            start = time.perf_counter()
            with VideoWriter(Path(tmp) / "enc.mp4", w, h, info.fps or 25, codec=codec, crf=crf) as writer:
                for o in outputs:
                    writer.write(o)
            encode_s = time.perf_counter() - start
            del outputs
            start = time.perf_counter()
            result = play(engine, video, PlayOptions(policy="fixed", level=level, max_frames=len(frames), pace=False,
                                                     out=Path(tmp) / "e2e.mp4", codec=codec, crf=crf, info=info))
            e2e_s = time.perf_counter() - start
        n = len(frames)
        rows.append({"video": str(video), "lr_size": [info.width, info.height], "out_size": [w, h], "frames": n,
                     "decode_fps": n / decode_s, "sr_fps": n / sr_s, "encode_fps": n / encode_s,
                     "end_to_end_fps": len(result.stats.frames) / e2e_s,
                     "end_to_end_over_sr": (len(result.stats.frames) / e2e_s) / (n / sr_s)})
    result_json = {**header("adasr-bench-pipeline", 1), "package": str(package_path),
                   "level": level, "config": engine.levels[level].config.id, "codec": codec, "crf": crf,
                   "threads": __import__("torch").get_num_threads(), "machine": {"cores": os.cpu_count()},
                   "clips": rows, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "provenance": provenance()}
    write_bytes_atomic(out / "pipeline.json", json.dumps(result_json, indent=1).encode("utf-8"))
    return result_json
