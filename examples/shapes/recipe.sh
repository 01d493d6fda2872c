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
# 4. More samples per step from there (what the accumulation experiment showed: larger steps kept climbing):
#    batch 32 x 4 accumulated, a lower learning rate, 800 steps, started from stage 3's ControlNet.
python -u -m train --base-model "$base" --dataset "$work/data" --output-dir "$work/controlnet-accum" \
  --init-controlnet "$work/controlnet-run/controlnet" --resolution 64 --batch-size 32 --grad-accum 4 --lr 5e-4 \
  --max-steps "${ACCUM_STEPS:-800}" --empty-prompt-prob 0.5 --checkpoint-every 100 --validate-every 100 \
  --validation-dataset "$work/heldout" --num-validation 16 --validation-steps 20 --validation-guidance 5.0 \
  --fidelity shapes --log-every 25 --seed 0 --preset none
t4=$(date +%s); echo "{\"stage\": \"controlnet-accum\", \"wall_seconds\": $((t4 - t3))}"
rm -rf shapes/model/controlnet && mkdir shapes/model/controlnet
cp "$work/controlnet-accum/controlnet/"{config.json,diffusion_pytorch_model.safetensors,README.md} shapes/model/controlnet/
# 5. The demo's own evaluation (32 held-out circles, CFG 5 and 9, with and without the ControlNet).
CNET_DTYPE=float32 python -m shapes eval --json docs/demo-eval.json
