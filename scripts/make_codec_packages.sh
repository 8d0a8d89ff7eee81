#!/usr/bin/env bash
# The bundled codec-trained families (adasr/models/sr_x{2,3,4}-codec.adasr) and the generic streaming
# models (adasr/models/default_x{2,3,4}.safetensors), as they were made: each supernet is warm-started
# from the clean bundled package's supernet and fine-tuned on SunHays80 LR that went through real
# codec round trips (H.264, H.265, AV1 at CRF 18-36 on the x264 scale, area and bicubic downscale,
# 10 % clean), anchored on the clean package's levels; then its levels are re-scored on
# compressed input (x264 CRF 28, area and bicubic) and packaged with the clean package's profiles
# (the same configs, so the same latencies). Every step resumes: `adasr train --out DIR --resume`.
#
#   scripts/make_codec_packages.sh [2 3 4]      # 1 CPU thread per run; minutes are on the 2-core machine
set -euo pipefail
cd "$(dirname "$0")/.."
ADASR=${ADASR:-.venv/bin/adasr}
DEG="h264+h265+av1:crf=18-36,kernel=area+bicubic,clean=0.1"
SCORE="h264:crf=28,kernel=area+bicubic,variants=2,frames=2"
mkdir -p runs/codec
for s in "${@:-2 3 4}"; do
  steps=$([ "$s" = 2 ] && echo 6000 || echo 4000)
  if [ -f "runs/codec/x$s/checkpoint.safetensors" ]; then   # continue where it stopped, with its stored settings
    $ADASR train --out "runs/codec/x$s" --resume --threads 1 --max-minutes 75
  else
    $ADASR train --supernet "lite-x$s" --scale "$s" --recipe lite --anchors "adasr/models/sr_x$s.adasr" \
      --init-from "adasr/models/sr_x$s.adasr" --degrade "$DEG" --out "runs/codec/x$s" --steps "$steps" \
      --batch-size 16 --patch 32 --lr 5e-4 --grad-clip 0.5 --hfen-weight 0 --ema 0.999 --threads 1 \
      --val-every 500 --max-minutes 75
  fi
  $ADASR search "runs/codec/x$s/model.safetensors" --levels-from "adasr/models/sr_x$s.adasr" --keep-profiles \
    --shared-only --cost macs --degradation "$SCORE" --crops 16 --out "adasr/models/sr_x$s-codec.adasr"
done

# Stage 2 (what ships for x2, x3 and x4): each stage-1 supernet trained on with larger LR patches (48, for more of the
# codec's block structure per patch), H.264 and H.265 only (the codecs of live segments and of most files), more
# clips per image, a lower learning rate; then searched and packaged as above, with the ladder rule (--min-step:
# every kept level gains at least 0.02 dB over the next faster one on the compressed crops), and the int8 entry
# re-measured with the package's own weights. The x2 run was stopped at step 2510 of 4000 when Set5 (CRF 28)
# validation had been flat for 1000 steps (29.84 / 29.32 dB largest / smallest); `--resume` continues it.
if [ "${STAGE2:-1}" = 1 ]; then
  DEG2="h264+h265:crf=20-36,kernel=area+bicubic,clean=0.05"
  for s in "${@:-2 3 4}"; do
    variants=$([ "$s" = 2 ] && echo 6 || echo 4)
    steps=$([ "$s" = 2 ] && echo 4000 || echo 2000)
    if [ -f "runs/codec2/x$s/checkpoint.safetensors" ]; then
      $ADASR train --out "runs/codec2/x$s" --resume --threads 1
    else
      $ADASR train --supernet "lite-x$s" --scale "$s" --recipe lite --anchors "adasr/models/sr_x$s.adasr" \
        --init-from "runs/codec/x$s/model.safetensors" --degrade "$DEG2,variants=$variants" --out "runs/codec2/x$s" \
        --steps "$steps" --batch-size 16 --patch 48 --lr 2e-4 --grad-clip 0.5 --hfen-weight 0 --ema 0.999 --threads 1 \
        --val-every 500
    fi
    $ADASR search "runs/codec2/x$s/model.safetensors" --levels-from "adasr/models/sr_x$s.adasr" --keep-profiles \
      --shared-only --cost macs --degradation "$SCORE" --crops 32 --min-step 0.02 --out "adasr/models/sr_x$s-codec.adasr"
    .venv/bin/python scripts/codec_int8.py "adasr/models/sr_x$s-codec.adasr" "adasr/models/sr_x$s.adasr"
  done
fi

# Stage 3 (what ships): one level per scale trained alone with its own weights from the stage-2 supernet's level
# (`adasr train --arch subnet`, 3000 steps at patch 48, Adam 5e-4 cosine): the generic x2 level x2-d5-w16 (also
# default_x2.safetensors, the model streaming's base), and the largest level of at most 60K parameters at x3 and x4.
# Then each package is searched again with it (`--add-level`; the ladder rule drops what it no longer beats).
# Own weights for the smallest x2 level (+0.03 dB) and the largest (+0.02 dB on the search's crops) were tried
# and not shipped: a second copy of the level for that little.
if [ "${STAGE3:-1}" = 1 ]; then
  DEG3="h264+h265:crf=20-36,kernel=area+bicubic,clean=0.05"
  declare -A OWN=([2]="x2-d5-w16-e1-k3-s1-b:r,r,r,r,r-up:bic" [3]="x3-d5-w16-e1-k3-s1-b:r,r,r,r,r-up:bic"
                  [4]="x4-d4-w24-e1-k3-s1-b:r,r,r,r-up:bic")
  for s in "${@:-2 3 4}"; do
    cfg=${OWN[$s]}
    variants=$([ "$s" = 2 ] && echo 6 || echo 4)
    cp "adasr/models/sr_x$s-codec.adasr" "runs/codec2/sr_x$s-codec-shared.adasr"
    if [ -f "runs/codec2/own-x$s/checkpoint.safetensors" ]; then
      $ADASR train --out "runs/codec2/own-x$s" --resume --threads 1
    else
      .venv/bin/python scripts/export_generic.py "runs/codec2/sr_x$s-codec-shared.adasr" "$cfg" "runs/codec2/own-x$s-init.safetensors"
      $ADASR train --arch subnet --arg "config=\"$cfg\"" --scale "$s" --init-from "runs/codec2/own-x$s-init.safetensors" \
        --degrade "$DEG3,variants=$variants" --out "runs/codec2/own-x$s" --steps 3000 --batch-size 16 --patch 48 --lr 5e-4 \
        --grad-clip 0.5 --hfen-weight 0 --ema 0.999 --threads 1 --val-every 1000
    fi
    $ADASR search "runs/codec2/sr_x$s-codec-shared.adasr" --levels-from "runs/codec2/sr_x$s-codec-shared.adasr" --keep-profiles \
      --cost macs --degradation "$SCORE" --crops 32 --min-step 0.02 --add-level "runs/codec2/own-x$s/model.safetensors" \
      --out "adasr/models/sr_x$s-codec.adasr"
    .venv/bin/python scripts/codec_int8.py "adasr/models/sr_x$s-codec.adasr" "adasr/models/sr_x$s.adasr"
    [ "$s" = 2 ] && .venv/bin/python scripts/export_generic.py "adasr/models/sr_x2-codec.adasr" "$cfg" adasr/models/default_x2.safetensors
  done
fi

# The graphs the torch-free runtime (make run's set-up) plays each package with, beside it as
# adasr/models/sr_x<s>-codec.onnx/ (no weights inside: written again whenever a package's levels change).
for s in 2 3 4; do
  $ADASR export "adasr/models/sr_x$s-codec.adasr" --format runtime
done
