"""Resumable video upscales (`adasr upscale --resume`): the output is encoded in GOP-aligned chunks.

With `--resume`, the upscaled video is encoded in chunks of `CHUNK_FRAMES` frames, each a complete
file (a fresh encoder, so it starts with a keyframe: a closed GOP) written atomically into a work
folder beside the output, ``.<output name>.adasr-partial/``, with a manifest (`MANIFEST`) that
records the source (path, size, modification time), the options that shape the output, the level
and the chunks done. When every frame is done the chunks' packets are joined, unchanged, into the
output with the source's audio, subtitle and attachment streams (as `VideoWriter` copies them),
and the work folder is removed. Interrupted (Ctrl-C, a crash), the completed chunks stay; the same
command with `--resume` decodes past the frames they hold and upscales and encodes the rest
only. The frames of a chunk, the encoder and its settings are the same either way, so the result
is byte-identical to an uninterrupted `--resume` run (given the same SR output: the same level,
precision and torch thread count). Kept work from another source or other options is refused in
one line, naming the folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from adasr.errors import ConfigError, OutputError
from adasr.video import VideoWriter, _one_line

__all__ = ["CHUNK_FRAMES", "MANIFEST", "ChunkedWriter", "WorkFolder", "work_folder_of"]

CHUNK_FRAMES = 240
MANIFEST = "resume.json"
KIND = "adasr-resume"
MAX_CHUNKS = 1_000_000


def work_folder_of(dst: str | os.PathLike[str]) -> Path:
    dst = Path(dst)
    return dst.parent / f".{dst.name}.adasr-partial"


def _identity(src: Path) -> dict[str, Any]:
    st = src.stat()
    return {"path": str(src.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class WorkFolder:
    """The work folder of one output: its manifest, the chunks done, the level and time origin."""

    def __init__(self, dst: Path, src: Path, key: dict[str, Any]) -> None:
        self.dst, self.src, self.key = Path(dst), Path(src), dict(key)
        self.folder = work_folder_of(dst)
        self.chunks: list[dict[str, Any]] = []
        self.level: int | None = None
        self.t0: float | None = None
        self.resumed = False
        identity = _identity(self.src)
        manifest = self.folder / MANIFEST
        if self.folder.exists():
            if not manifest.is_file():
                raise OutputError(f"{self.folder} exists and is not adasr's kept work (no {MANIFEST}); move it away")
            from adasr._jsonfile import read_json

            data = read_json(manifest, "resume manifest")
            if not isinstance(data, dict) or data.get("kind") != KIND:
                raise OutputError(f"{manifest} is not an adasr resume manifest; move {self.folder} away")
            if data.get("source") != identity or data.get("key") != self.key:
                what = "another source (or the source changed)" if data.get("source") != identity else \
                    "other options"
                raise ConfigError(f"the work kept in {self.folder} was made from {what}; run the same command "
                                  f"as before, or remove that folder to start over")
            chunks = data.get("chunks") or []
            for c in chunks[:MAX_CHUNKS]:  # the prefix whose files are all there
                if not (isinstance(c, dict) and isinstance(c.get("file"), str) and isinstance(c.get("frames"), int)
                        and "/" not in c["file"] and (self.folder / c["file"]).is_file()):
                    break
                self.chunks.append({"file": c["file"], "frames": int(c["frames"])})
            level = data.get("level")
            self.level = level if isinstance(level, int) and not isinstance(level, bool) else None
            t0 = data.get("t0")
            self.t0 = float(t0) if isinstance(t0, (int, float)) and not isinstance(t0, bool) else None
            self.resumed = bool(self.chunks)
        else:
            try:
                self.folder.mkdir()
            except OSError as e:
                raise OutputError(f"cannot create {self.folder}: {e.strerror or e}") from None
        self._identity = identity
        self.save()

    @property
    def frames_done(self) -> int:
        return sum(c["frames"] for c in self.chunks)

    def save(self) -> None:
        from adasr._jsonfile import write_json

        write_json(self.folder / MANIFEST, {"kind": KIND, "version": 1, "source": self._identity, "key": self.key,
                                            "level": self.level, "t0": self.t0, "chunks": self.chunks})

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


class ChunkedWriter:
    """A `VideoWriter` stand-in (``write(frame, time)``, a context manager) that encodes chunks of
    `chunk_frames` into `work`, and on a clean exit joins them into the output (see the module doc)."""

    def __init__(self, work: WorkFolder, width: int, height: int, fps: Any, *, chunk_frames: int = CHUNK_FRAMES,
                 audio_from: Path | None = None, trim: bool = False, rotation: int = 0, **video: Any) -> None:
        if not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ConfigError(f"chunk_frames must be a positive integer, got {chunk_frames!r}")
        self.work, self.width, self.height, self.fps = work, width, height, fps
        self.chunk_frames, self.audio_from, self.trim, self.rotation = chunk_frames, audio_from, trim, rotation
        self.video = video  # codec, crf, preset, pix_fmt, color, sar, time_base
        self.suffix = work.dst.suffix
        self.current: VideoWriter | None = None
        self.in_chunk = 0
        self.frames_written = 0

    def __enter__(self) -> ChunkedWriter:
        return self

    def write(self, frame: np.ndarray, time: float | None = None) -> None:
        if self.work.t0 is None:
            self.work.t0 = float(time) if time is not None else 0.0
            self.work.save()
        if self.current is None:
            name = f"chunk_{len(self.work.chunks):06d}{self.suffix}"
            self.current = VideoWriter(self.work.folder / name, self.width, self.height, self.fps,
                                       time_origin=self.work.t0, **self.video)
            self.current.__enter__()
            self.in_chunk = 0
        self.current.write(frame, time)
        self.in_chunk += 1
        self.frames_written += 1
        if self.in_chunk >= self.chunk_frames:
            self._finish_chunk()

    def _finish_chunk(self) -> None:
        writer, self.current = self.current, None
        if writer is None or self.in_chunk == 0:
            return
        writer.__exit__(None, None, None)
        self.work.chunks.append({"file": writer.path.name, "frames": self.in_chunk})
        self.work.save()
        self.in_chunk = 0

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        if exc_type is None:
            self.close()
        elif self.current is not None:
            writer, self.current = self.current, None
            writer.__exit__(exc_type, exc, tb)  # the chunk under way goes; the finished ones stay
        return False

    def close(self) -> None:
        self._finish_chunk()
        if not self.work.chunks:
            raise OutputError(f"no frames were written; nothing saved to {self.work.dst}")
        files = [self.work.folder / c["file"] for c in self.work.chunks]
        joiner = _Joiner(self.work.dst, files, self.width, self.height, self.fps, audio_from=self.audio_from,
                         trim=self.trim, rotation=self.rotation, time_origin=self.work.t0, **self.video)
        with joiner:
            joiner.join()
        self.work.remove()


class _Joiner(VideoWriter):
    """Copies the chunks' video packets, unchanged, into one output with the carried streams."""

    def __init__(self, dst: Path, chunks: list[Path], *args: Any, **kw: Any) -> None:
        super().__init__(dst, *args, **kw)
        self._chunks = chunks
        self._template: Any = None
        self._last_dts: int | None = None

    def _add_video_stream(self, fmt: str) -> Any:
        try:
            self._template = av.open(str(self._chunks[0]))
        except (av.FFmpegError, OSError) as e:
            raise OutputError(f"cannot read the kept chunk {self._chunks[0]}: {_one_line(e)}") from None
        src = self._template.streams.video[0]
        vs = self._out.add_stream_from_template(src, opaque=True)
        vs.time_base = src.time_base
        if self.encoder == "libx265" and fmt in ("mp4", "mov"):
            vs.codec_tag = "hvc1"
        if self.rotation and hasattr(vs, "set_display_rotation"):
            vs.set_display_rotation(self.rotation)
        return vs

    def _flush_video(self) -> Any:
        return []

    def join(self) -> None:
        for path in self._chunks:
            try:
                with av.open(str(path)) as c:
                    for pkt in c.demux(c.streams.video[0]):
                        if not pkt.size or pkt.pts is None:
                            continue
                        self._mux_copied(pkt)
            except av.FFmpegError as e:
                raise OutputError(f"cannot read the kept chunk {path}: {_one_line(e)}") from None

    def _mux_copied(self, pkt: Any) -> None:
        tb = pkt.time_base
        if pkt.dts is None:
            pkt.dts = pkt.pts
        out_tb = self._vstream.time_base or tb
        dts = round(Fraction(pkt.dts * tb) / out_tb)
        if self._last_dts is not None and dts <= self._last_dts:  # a chunk's first B-frame delay
            pkt.dts = int(np.ceil(Fraction(self._last_dts + 1) * out_tb / tb))
        pkt.stream = self._vstream
        try:
            self._out.mux(pkt)
        except (av.FFmpegError, OSError, ValueError) as e:
            raise OutputError(f"cannot write video {self.path}: {_one_line(e)}") from None
        self._last_dts = round(Fraction(pkt.dts * tb) / out_tb)
        self.frames_written += 1
        t = float(pkt.pts * tb)
        self._t_last = max(self._t_last, t)
        self._pump_audio(float(pkt.dts * tb) + float(1 / self.fps))

    def _abort(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._close_template()
        super()._abort(exc_type, exc, tb)

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._close_template()

    def _close_template(self) -> None:
        if self._template is not None:
            with contextlib.suppress(Exception):
                self._template.close()
            self._template = None
