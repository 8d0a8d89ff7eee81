"""The int8 entry of a codec package's profile: PSNR changes measured with its own weights, timings
from the clean package it was cut from.

`adasr search --levels-from CLEAN --keep-profiles` copies CLEAN's profiles, whose int8 entry holds
the int8 and float32 times of each level (they depend on the level's config, which is the same)
and the int8 PSNR change (which depends on the weights, which are not). This re-measures the PSNR
change of every level with the codec package's weights (`adasr.bench.backends`, Set5, the shared
clip for calibration) and keeps the carried-over times, so a loaded machine's timings do not
replace the quiet reference machine's. Then it sets the package's precision to auto.

    .venv/bin/python scripts/codec_int8.py adasr/models/sr_x2-codec.adasr adasr/models/sr_x2.adasr
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from adasr.bench.backends import run_backends
from adasr.package import load_package
from adasr.paths import data_root
from adasr.runtime.precision import section_from_bench


def main(codec_path: str, clean_path: str) -> None:
    torch.set_num_threads(1)
    codec, clean = load_package(codec_path), load_package(clean_path)
    video = data_root() / "video" / "bigbuckbunny_720p.mp4"
    result = run_backends(codec_path, calib_video=video, time_video=None, lr_sizes=((36, 64),), rounds=1,
                          repeats=1, on_progress=lambda m: print(m, flush=True))
    measured = section_from_bench(result, "Set5")
    for key, profile in codec.profiles.items():
        carried = clean.profiles[key]["int8"]
        levels = {cid: {**carried["levels"][cid], "psnr_change_db": measured["levels"][cid]["psnr_change_db"]}
                  for cid in measured["levels"]}
        codec.add_profile(key, {**profile, "int8": {**carried, "levels": levels}})
        for cid, entry in levels.items():
            print(f"{key} {cid}: int8 {entry['int8_s'] * 1e3:.1f} ms, fp32 {entry['fp32_s'] * 1e3:.1f} ms (carried), "
                  f"PSNR change {entry['psnr_change_db']:+.3f} dB (measured)")
    load_package(codec_path).set_precision("auto")
    print(f"{Path(codec_path)}: precision auto")


if __name__ == "__main__":
    main(*sys.argv[1:])
