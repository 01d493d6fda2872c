#!/usr/bin/env bash
# The demo model, from nothing, on a CPU. Each stage prints JSON lines; seeds fix everything.
# Stages can be skipped: SKIP_VAE=1 reuses shapes/model/base/vae.
#   bash examples/shapes/recipe.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-runs/shapes}
mkdir -p "$work"
base=shapes/model/base
t0=$(date +%s)
# 1. VAE (16/32/64 channels, 64x64 -> 16x16x4), trained on circles drawn on the fly.
[ -n "${SKIP_VAE:-}" ] || python -u -m shapes pretrain vae --out "$base" --steps "${VAE_STEPS:-1200}" --seed 0
t1=$(date +%s); echo "{\"stage\": \"vae\", \"wall_seconds\": $((t1 - t0))}"
# 2. U-Net (32/64 channels) and a 2-layer CLIP text encoder with a word vocabulary, trained jointly (Min-SNR
#    loss weighting, gamma 5).
python -u -m shapes pretrain unet --out "$base" --steps "${UNET_STEPS:-4500}" --seed 0
t2=$(date +%s); echo "{\"stage\": \"unet\", \"wall_seconds\": $((t2 - t1))}"
# 3. The ControlNet, with our own trainer (the code users run): default mode, 50% empty prompts.
python -m shapes dataset "$work/data" --rows "${N_TRAIN:-10000}" --seed 1
python -m shapes dataset "$work/heldout" --rows 32 --seed 12345
python -u -m train --base-model "$base" --dataset "$work/data" --output-dir "$work/controlnet-run" \
  --resolution 64 --batch-size 32 --lr 1e-3 --max-steps "${CN_STEPS:-2000}" --empty-prompt-prob 0.5 \
  --checkpoint-every 200 --validate-every 200 --validation-dataset "$work/heldout" --num-validation 16 \
  --validation-steps 20 --validation-guidance 5.0 --fidelity shapes --log-every 25 --seed 0
t3=$(date +%s); echo "{\"stage\": \"controlnet\", \"wall_seconds\": $((t3 - t2))}"
rm -rf shapes/model/controlnet && cp -r "$work/controlnet-run/controlnet" shapes/model/controlnet
