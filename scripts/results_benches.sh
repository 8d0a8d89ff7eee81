#!/usr/bin/env bash
# Re-run the benches behind docs/RESULTS.md with short settings (each meant to take about 2 minutes on an idle 2-core
# CPU; far longer on a shared one) and store their JSON in docs/results/; then `adasr bench report` (or `make results`)
# regenerates docs/RESULTS.md from those files. Run from the repository root:
#
#   scripts/results_benches.sh             # every bench
#   scripts/results_benches.sh peers mimo  # only these (names: protocol memory peers streaming
#                                          #   adaptivity backends codec codec-low live adapt reuse mimo mimo-online estimate setup browser)
#
# PEERS_SCALES picks the peers scales (default: 2 3 4). ADASR names the command (default: adasr); OUT the scratch folder for the benches' PNGs and
# extra files (default: out/results). The commands run under `nice`: on a shared machine the
# JSON's provenance.machine.loadavg_1m says how loaded the machine was.
set -euo pipefail

ADASR=${ADASR:-adasr}
OUT=${OUT:-out/results}
RESULTS=docs/results
CLIPS=${CLIPS:-../shared/data/video}
mkdir -p "$OUT" "$RESULTS"
read -r -a A <<<"$ADASR"

run() {  # run NAME: time one bench
  local name=$1
  shift
  local start=$SECONDS
  echo "== $name: $*" >&2
  nice -n 10 "$@"
  echo "== $name: $((SECONDS - start)) s" >&2
}

protocol() { run protocol "${A[@]}" bench protocol --threads 1 --json "$RESULTS/protocol.json"; }

memory() { run memory "${A[@]}" bench memory --space lite-x2 --json "$RESULTS/memory.json"; }

peers() {
  for s in ${PEERS_SCALES:-2 3 4}; do
    local model=()
    [ -f "adasr/models/default_x$s.safetensors" ] && model=(--model "adasr/models/default_x$s.safetensors")
    run "peers-x$s" "${A[@]}" bench peers "adasr/models/sr_x$s.adasr" "${model[@]}" --no-acnet --rounds 5 \
      --repeats 5 --threads 1 --out "$OUT/peers-x$s"
    cp "$OUT/peers-x$s/peers.json" "$RESULTS/peers-x$s.json"
  done
}

adaptivity() {
  run adaptivity "${A[@]}" bench adaptivity adasr/models/sr_x2.adasr --video "$CLIPS/bigbuckbunny_720p.mp4" \
    --trace bursty --seconds 20 --out "$OUT/adaptivity"
  cp "$OUT/adaptivity/adaptivity.json" "$RESULTS/adaptivity.json"
}

backends() {
  run backends "${A[@]}" bench backends adasr/models/sr_x2.adasr --threads 1 --lr-size 320x180 --rounds 1 \
    --repeats 3 --levels 0,4,8 --max-images 5 --out "$OUT/backends"
  cp "$OUT/backends/backends.json" "$RESULTS/backends.json"
}

codec() {  # about 20 + 30 + 40 minutes, one run per clip, on a quiet 2-core machine (HR encodes at preset slow, SR of
  # every frame); the runs use one core each and may run side by side (journal 34)
  local C=(--hr-crfs 32,37,42,47 --lr-crfs 24,29,34,39 --no-sweeps --oneshot-steps 100 --ssim-every 10 --threads 1
           --device cpu --tau 5)
  local U=(--eta 0.05 --steps 150 --values int4)
  run codec-bikes "${A[@]}" bench codec "$CLIPS/bikes_640x272.mp4" --max-frames 800 "${C[@]}" "${U[@]}" \
    --out "$OUT/codec-bikes"
  cp "$OUT/codec-bikes/codec.json" "$RESULTS/codec-bikes.json"
  run codec-bbb "${A[@]}" bench codec "$CLIPS/bigbuckbunny_720p.mp4" --max-frames 800 "${C[@]}" "${U[@]}" \
    --out "$OUT/codec-bbb"
  cp "$OUT/codec-bbb/codec.json" "$RESULTS/codec-bbb.json"
  # vtest keeps journal 31's updates (eta 1 %, 60 steps, int8): with the ones above, its run (on a
  # shared machine) had not finished the first of its four rates after 52 minutes (journal 34)
  run codec-vtest "${A[@]}" bench codec "$CLIPS/vtest_768x576.avi" --max-frames 400 "${C[@]}" --eta 0.01 --steps 60 \
    --values int8 --rd-lookahead 2 --out "$OUT/codec-vtest"
  cp "$OUT/codec-vtest/codec.json" "$RESULTS/codec-vtest.json"
}

codec-low() {  # the same streams on a lower CRF grid: the bits per pixel of the seed's own figures (journal 36)
  local C=(--hr-crfs 40,44,48,51 --lr-crfs 34,38,42,46 --no-sweeps --tau 5)
  local U=(--eta 0.05 --steps 150 --values int4 --oneshot-steps 100 --ssim-every 10 --threads 1 --device cpu)
  run codec-bikes-low "${A[@]}" bench codec "$CLIPS/bikes_640x272.mp4" --max-frames 800 "${C[@]}" "${U[@]}" \
    --out "$OUT/codec-bikes-low"
  cp "$OUT/codec-bikes-low/codec.json" "$RESULTS/codec-bikes-low.json"
  run codec-bbb-low "${A[@]}" bench codec "$CLIPS/bigbuckbunny_720p.mp4" --max-frames 800 "${C[@]}" "${U[@]}" \
    --out "$OUT/codec-bbb-low"
  cp "$OUT/codec-bbb-low/codec.json" "$RESULTS/codec-bbb-low.json"
  run codec-vtest-low "${A[@]}" bench codec "$CLIPS/vtest_768x576.avi" --max-frames 400 "${C[@]}" --eta 0.01 \
    --steps 60 --values int8 --rd-lookahead 2 --oneshot-steps 100 --ssim-every 10 --threads 1 --device cpu \
    --out "$OUT/codec-vtest-low"  # the page's vtest updates (see codec)
  cp "$OUT/codec-vtest-low/codec.json" "$RESULTS/codec-vtest-low.json"
}

reuse() {  # at a real size on codec LR; RECL at budget 3, then retraining alone at 6 and 9 (the compute to match)
  local c=(--sessions 2 --windows 12 --scene-windows 2 --lr-size 320x180 --q 8 --degradation h264:crf=28,kernel=area
    --threads 1)
  run reuse "${A[@]}" bench reuse "${c[@]}" --budget 3 --schemes recl,retrain-inband,none --out "$OUT/reuse"
  cp "$OUT/reuse/reuse.json" "$RESULTS/reuse.json"
  for b in 6 9; do
    run reuse-b$b "${A[@]}" bench reuse "${c[@]}" --budget $b --schemes retrain-inband --out "$OUT/reuse-b$b"
    cp "$OUT/reuse-b$b/reuse.json" "$RESULTS/reuse-b$b.json"
  done
}

mimo() {
  run mimo "${A[@]}" mimo bench --channel iid --users 8 --antennas 32 --mod qam4 --snr 0:8:2 \
    --detectors mmse,vblast,amp,kbest,sphere,mmnet-iid --steps 4 --samples 200 --iid-steps 200 --threads 1 \
    --device cpu --json "$OUT/mimo.json"
  cp "$OUT/mimo.json" "$RESULTS/mimo.json"
}

mimo-online() {  # thesis Fig. 3-11 on 64 adjacent subcarriers of a 3GPP UMa drop (tens of minutes on one thread)
  run uma64 "${A[@]}" mimo channels --channel uma --users 16 --antennas 64 --stride 1 --carriers 64 --steps 1 \
    --seed 0 --out "$OUT/uma64.safetensors" --png "$OUT/fig3-10.png"
  run mimo-online "${A[@]}" mimo sweep-phi --channel file --channels "$OUT/uma64.safetensors" --users 16 \
    --antennas 64 --mod qam16 --snr 18 --train-snr 14,22 --phi 1,2,4,8,16 --first 1000 --baselines mmse,oampnet \
    --fresh-every 16 --reset-adam --next-lr 2e-2 --threads 1 --json "$RESULTS/mimo-online.json" --png "$OUT/fig3-11.png"
}

streaming() {  # every level of both families on codec-compressed and clean LR of the held-out clips
  run streaming-x2 "${A[@]}" eval adasr/models/sr_x2-codec.adasr adasr/models/sr_x2.adasr \
    --degradation "h264:crf=23-33,kernel=area+bicubic" --degradation "clean:kernel=bicubic" --frames 4 \
    --levels 0,3,4,-1 --threads 1 --json "$RESULTS/streaming-x2.json" --png docs/figures/streaming_x2.png
  run streaming-x3 "${A[@]}" eval adasr/models/sr_x3-codec.adasr adasr/models/sr_x3.adasr \
    --degradation "h264:crf=23-33,kernel=area" --frames 4 --levels 0,2,-1 --threads 1 \
    --json "$RESULTS/streaming-x3.json" --png docs/figures/streaming_x3.png
  run streaming-x4 "${A[@]}" eval adasr/models/sr_x4-codec.adasr adasr/models/sr_x4.adasr \
    --degradation "h264:crf=23-33,kernel=area" --frames 4 --levels 0,3,-1 --threads 1 \
    --json "$RESULTS/streaming-x4.json" --png docs/figures/streaming_x4.png
}

live() {  # a quiet machine: the server must keep real time (runs below 0.95 of it are marked invalid)
  run live "${A[@]}" bench live --schemes none,one_time,jit,ams --seconds 60 --crop 640x360 --out "$OUT/live"
  cp "$OUT/live/live.json" "$RESULTS/live.json"
  # about 3.5 minutes a session: the rest in a second run (the same session, defaults and machine)
  run live-tuned "${A[@]}" bench live --schemes ams_asr_atr --seconds 60 --crop 640x360 \
    --row "ams:k=40,t_horizon=4,lr=0.003,on_cut=reset,eta=0.1" --out "$OUT/live-tuned"
  cp "$OUT/live-tuned/live.json" "$RESULTS/live-tuned.json"
  # the setting that pays most within 20 kbps (int4 updates of a quarter of the parameters, 60 bf16 steps on
  # 48-px crops, segments held back 4 s), with the client upscaling every frame (in bf16) on the server's two cores
  run live-hold "${A[@]}" bench live --schemes "" --seconds 60 --crop 640x360 --client-precision bf16 \
    --row "ams:k=60,t_horizon=4,lr=0.002,on_cut=reset,eta=0.25,patch=48,rate=25,hold=4,delta_dtype=int4,precision=bf16" \
    --out "$OUT/live-hold"
  cp "$OUT/live-hold/live.json" "$RESULTS/live-hold.json"
  # the same held back 2, 3 and 4 s, with the clients upscaling on devices of their own after the session, so the
  # server's worker trains on both cores
  local rows=()
  for h in 2 3 4; do
    rows+=(--row "ams:k=60,t_horizon=4,lr=0.002,on_cut=reset,eta=0.25,patch=48,rate=25,hold=$h,delta_dtype=int4,precision=bf16")
  done
  run live-after "${A[@]}" bench live --schemes "" --seconds 60 --crop 640x360 --client-sr after --train-threads 2 \
    "${rows[@]}" --out "$OUT/live-after"
  cp "$OUT/live-after/live.json" "$RESULTS/live-after.json"
  # the largest size the shared clips have (bigbuckbunny is 1280x720): does the 2-core server keep real time?
  run live-720p "${A[@]}" bench live --schemes ams --seconds 60 --crop 1280x720 \
    --video "$CLIPS/bigbuckbunny_720p.mp4" --channels "" --out "$OUT/live720"
  cp "$OUT/live720/live.json" "$RESULTS/live-720p.json"
}

estimate() {  # a quiet machine: the bench adds its own steady load (half of every core)
  run estimate "${A[@]}" bench estimate --frames 24 --load 0.5 --json "$RESULTS/estimate.json"
}

adapt() {  # the ablation (about 4 CPU-minutes per row; deterministic, so a shared machine only slows it)
  local rows=()   # Table 4.1's schemes and the settings that paid, combined (int8 updates: eta 10 % fits 20 kbps)
  for r in none one_time jit ams ams:k=40,t_horizon=4,lr=0.003,on_cut=reset,eta=0.07 \
    ams:k=40,t_horizon=4,lr=0.003,on_cut=reset,eta=0.1 ams:k=40,t_horizon=4,lr=0.003,on_cut=reset,eta=0.15; do
    rows+=(--row "$r"); done
  run adapt "${A[@]}" bench adapt "${rows[@]}" --seconds 60 --crop 640x360 --out "$OUT/adapt"
  cp "$OUT/adapt/adapt.json" "$RESULTS/adapt.json"
  rows=()   # AMS with one setting changed at a time
  for r in ams_asr_atr ams:k=60 ams:lr=0.003 ams:eta=0.25 ams:eta=1 ams:t_horizon=4 ams:t_horizon=60 \
    ams:on_cut=reset ams:on_cut=base ams:eta=1,lr=0.003,on_cut=reset; do rows+=(--row "$r"); done
  run adapt-ablation "${A[@]}" bench adapt "${rows[@]}" --seconds 60 --crop 640x360 --out "$OUT/adapt2"
  cp "$OUT/adapt2/adapt.json" "$RESULTS/adapt-ablation.json"
  rows=()   # segments held back (hold=N) and every frame in the buffer (rate=25): updates trained on what they apply to
  for r in ams:k=15,t_update=1,t_horizon=1,lr=0.003,on_cut=reset,eta=1,rate=25,hold=1 \
    ams:k=15,t_update=1,t_horizon=1,lr=0.003,on_cut=reset,eta=0.1,rate=25,hold=1 \
    ams:k=30,t_update=2,t_horizon=2,lr=0.003,on_cut=reset,eta=0.1,rate=25,hold=2 \
    ams:k=40,t_horizon=4,lr=0.003,on_cut=reset,eta=0.1,rate=25,hold=2; do rows+=(--row "$r"); done
  run adapt-hold "${A[@]}" bench adapt "${rows[@]}" --seconds 60 --crop 640x360 --out "$OUT/adapt-hold"
  cp "$OUT/adapt-hold/adapt.json" "$RESULTS/adapt-hold.json"
  rows=()   # the training steps in bf16 (autocast) against fp32 on the same setting, then the steps bf16 frees
  for r in ams:k=40,t_horizon=4,lr=0.002,on_cut=reset,eta=0.25,patch=48,rate=25,hold=2,delta_dtype=int4,precision=fp32 \
    ams:k=40,t_horizon=4,lr=0.002,on_cut=reset,eta=0.25,patch=48,rate=25,hold=2,delta_dtype=int4,precision=bf16 \
    ams:k=60,t_horizon=4,lr=0.002,on_cut=reset,eta=0.25,patch=48,rate=25,hold=2,delta_dtype=int4,precision=bf16 \
    ams:k=80,t_horizon=4,lr=0.002,on_cut=reset,eta=0.25,patch=48,rate=25,hold=2,delta_dtype=int4,precision=bf16 \
    ams:k=60,t_horizon=4,lr=0.002,on_cut=reset,eta=0.25,patch=48,rate=25,hold=3,delta_dtype=int4,precision=bf16; do
    rows+=(--row "$r"); done
  run adapt-bf16 "${A[@]}" bench adapt "${rows[@]}" --seconds 60 --crop 640x360 --out "$OUT/adapt-bf16"
  cp "$OUT/adapt-bf16/adapt.json" "$RESULTS/adapt-bf16.json"
  # the ceiling: every parameter trained on each segment before it is scored (about 25 CPU-minutes)
  run adapt-ceiling "${A[@]}" bench adapt --row none --ceiling-steps 60,300 --seconds 60 --crop 640x360 \
    --out "$OUT/adapt-ceiling"
  cp "$OUT/adapt-ceiling/adapt.json" "$RESULTS/adapt-ceiling.json"
}

browser() {  # headless Chromium (make js; apt-get install chromium): the export variants, then five playbacks
  run browser "${A[@]}" bench browser --levels all,d6-w16 --repeats 5 --seconds 12 --quality-frames 6 --out "$OUT/browser"
  cp "$OUT/browser/browser.json" "$RESULTS/browser.json"
  # the playbacks again on the 10-fps surveillance clip (the neural levels that hold 10 fps switch under the load)
  run browser-vtest "${A[@]}" bench browser --video "$CLIPS/vtest_768x576.avi" --levels all --threads 2 \
    --variants plain,int8 --repeats 3 --seconds 20 --quality-frames 2 --out "$OUT/browser-vtest"
  cp "$OUT/browser-vtest/browser.json" "$RESULTS/browser-vtest.json"
}

setup() {  # the core set-up (make run) against the full one (make test), each from nothing; fetches from the index
  run setup "${A[@]}" bench setup --json "$RESULTS/setup.json"
}

ALL=(protocol memory peers streaming adaptivity backends codec codec-low live adapt reuse mimo mimo-online estimate setup browser)
for name in "${@:-${ALL[@]}}"; do
  case " ${ALL[*]} " in
    *" $name "*) "$name" ;;
    *) echo "unknown bench $name (one of: ${ALL[*]})" >&2; exit 2 ;;
  esac
done
