#!/usr/bin/env bash
# How the bundled packages (adasr/models/sr_x2|x3|x4.adasr) are made: the project's own commands
# on ../shared/data/train/SunHays80 (or --data with your DIV2K folder), CPU, reproducible from the
# seed. Numbers, minutes and the ablation behind the recipe: docs/journal/09-*.md. Run from the
# repository root; the stages run in order and take hours on a 2-core CPU (on a GPU add
# --device cuda, the default when present, and raise --steps and --patch).
#
#   scripts/make_packages.sh          # every stage
#   scripts/make_packages.sh x3       # one package: x2, x4, x3, baselines or int8
#
# ADASR names the command (default: adasr).
set -euo pipefail

read -r -a A <<<"${ADASR:-adasr}"
adasr() { "${A[@]}" "$@"; }

x2() {
  # x2: one-shot supernet (recipe "lite": largest + smallest + one random sub-network per step, L1,
  # EMA), anchored on the package's levels (the Dynamic-OFA family search picked them from an
  # earlier supernet; the bundled run had the ten levels of the package before), with 3 extra
  # updates per step of the small sub-networks on 16x16 patches for the first 55 % of the run
  # (--small-steps, --small-until), 65 min on two cores; then the levels
  # re-scored (--levels-from keeps them, --keep-profiles their timings, and levels another one now
  # beats on PSNR and every timing are dropped), 9 min more at LR patch 48, and the int8 measurements
  adasr train --supernet lite-x2 --scale 2 --recipe lite --anchors adasr/models/sr_x2.adasr --small-steps 3 \
    --small-patch 16 --small-until 0.55 --out runs/x2n/lite-x2t --steps 12500 --batch-size 16 --patch 32 --lr 1e-3 \
    --grad-clip 0.5 --hfen-weight 0 --ema 0.999 --threads 1 --nproc 2
  adasr search runs/x2n/lite-x2t/model.safetensors --levels-from adasr/models/sr_x2.adasr --keep-profiles \
    --cost macs --out runs/x2n/sr_x2t.adasr    # or a fresh search: --strategy ofa --loads 0,0.5 --param max_levels=14
  adasr train --supernet lite-x2 --scale 2 --recipe lite --anchors runs/x2n/sr_x2t.adasr \
    --init-from runs/x2n/lite-x2t/model.safetensors --out runs/x2n/lite-x2u --steps 950 --batch-size 16 --patch 48 \
    --lr 2e-4 --grad-clip 0.5 --hfen-weight 0 --ema 0.999 --threads 1 --nproc 2
  adasr search runs/x2n/lite-x2u/model.safetensors --levels-from runs/x2n/sr_x2t.adasr --keep-profiles \
    --cost macs --out adasr/models/sr_x2.adasr
}

x4() {
  # x4: warm-started from the previous x2 supernet (runs/x2n/lite-x2s: the same x2 command without
  # --anchors and --small-until, 12000 steps), anchored, the small steps for the first 55 % of the
  # run, half the rate, 51 min on two cores; then 18 min more at LR patch 32 and a third of the rate
  adasr train --supernet lite-x4 --scale 4 --recipe lite --init-from runs/x2n/lite-x2s/model.safetensors \
    --anchors adasr/models/sr_x4.adasr --small-steps 3 --small-patch 16 --small-until 0.55 --out runs/x4n/lite-x4t \
    --steps 12500 --batch-size 16 --patch 24 --lr 5e-4 --grad-clip 0.5 --hfen-weight 0 --ema 0.999 --threads 1 --nproc 2
  adasr train --supernet lite-x4 --scale 4 --recipe lite --anchors adasr/models/sr_x4.adasr \
    --init-from runs/x4n/lite-x4t/model.safetensors --out runs/x4n/lite-x4u --steps 4000 --batch-size 16 --patch 32 \
    --lr 3e-4 --grad-clip 0.5 --hfen-weight 0 --ema 0.999 --threads 1 --nproc 2
  adasr search runs/x4n/lite-x4u/model.safetensors --levels-from adasr/models/sr_x4.adasr --keep-profiles \
    --cost macs --out adasr/models/sr_x4.adasr    # re-run after bench backends' timings: 10 levels
}

x3() {
  # x3: warm-started from the bundled x2 package (it holds the supernet's tensors), anchored from
  # the first step, no small steps, 56 min on two cores (the bundled run added --max-minutes 56,
  # which stopped it at step 11222 of 12000); then 13 min more at LR patch 48
  adasr train --supernet lite-x3 --scale 3 --recipe lite --init-from adasr/models/sr_x2.adasr \
    --anchors adasr/models/sr_x3.adasr --out runs/x3g/lite-x3g --steps 12000 --batch-size 16 --patch 32 --lr 1e-3 \
    --hfen-weight 0 --ema 0.999 --threads 1 --nproc 2
  adasr search runs/x3g/lite-x3g/model.safetensors --levels-from adasr/models/sr_x3.adasr --keep-profiles \
    --cost macs --out runs/x3g/sr_x3g.adasr
  adasr train --supernet lite-x3 --scale 3 --recipe lite --init-from runs/x3g/lite-x3g/model.safetensors \
    --anchors runs/x3g/sr_x3g.adasr --out runs/x3g/lite-x3h --steps 1300 --batch-size 16 --patch 48 --lr 3e-4 \
    --hfen-weight 0 --ema 0.999 --threads 1 --nproc 2
  adasr search runs/x3g/lite-x3h/model.safetensors --levels-from runs/x3g/sr_x3g.adasr --keep-profiles \
    --cost macs --out runs/x3g/sr_x3h.adasr
  # then the d3-w12 sub-network trained alone (12 min on one core) added as a level with its own
  # weights (the supernet's width-12 sub-networks are barely trained), re-profiled here in
  # interleaved rounds; the levels it beats on PSNR and speed are dropped
  adasr train --arch subnet --arg 'config=x3-d3-w12-e1-k3-s1-b:r,r,r-up:bic' --scale 3 --steps 42000 \
    --max-minutes 12 --batch-size 16 --patch 16 --lr 1e-3 --hfen-weight 0 --ema 0.999 --threads 1 --val none \
    --seed 0 --out runs/x3p/x3-d3-w12
  adasr search runs/x3g/sr_x3h.adasr --levels-from runs/x3g/sr_x3h.adasr \
    --add-level runs/x3p/x3-d3-w12/model.safetensors --cost table --threads 2 --rounds 5 --repeats 12 \
    --out adasr/models/sr_x3.adasr
}

baselines() {
  adasr bench peers adasr/models/sr_x2.adasr --out out/peers-x2     # the levels against OpenCV, Anime4K, bicubic
  # and against adasr's own baselines trained with the levels' recipe: each --model is judged
  # against the best level at least as fast (BENCHMARKS section 9, "adasr's own baselines")
  adasr train --arch imdn --arg channels=16 --arg blocks=2 --scale 2 --batch-size 16 --patch 16 --lr 1e-3 \
    --hfen-weight 0 --ema 0.999 --threads 1 --val none --seed 0 --steps 48000 --out runs/base/imdn-x2
  adasr bench peers adasr/models/sr_x2.adasr --model runs/base/imdn-x2/model.safetensors --out out/peers-base-x2
}

int8() {
  # int8: measure each level in both precisions on this machine (quiet, the profile's thread
  # count), store the measurements in the profile and make "auto" the package's precision
  adasr bench backends adasr/models/sr_x2.adasr --threads 2 --lr-size 320x180 --save-profile --set-precision auto
}

runtime() {  # the graphs the torch-free runtime plays each package with (adasr/models/sr_x<s>.onnx/)
  for s in 2 3 4; do
    "${A[@]}" export "adasr/models/sr_x$s.adasr" --format runtime
  done
}

ALL=(x2 x4 x3 baselines int8 runtime)
for stage in "${@:-${ALL[@]}}"; do
  case " ${ALL[*]} " in
    *" $stage "*) "$stage" ;;
    *) echo "unknown stage $stage (one of: ${ALL[*]})" >&2; exit 2 ;;
  esac
done
