#!/usr/bin/env bash
# The seed's experiment: at equal compute (the same training samples), do fewer, larger steps (gradient
# accumulation) beat more small steps? Run after recipe.sh: its ControlNet stage is the "small steps" run (batch 32,
# 2000 steps = 64,000 samples). This adds batch 32 x 4 accumulated (128 per step) for 500 steps = 64,000 samples,
# scored on the same 16 held-out circles every 6,400 samples, and plots both against samples seen.
#   bash examples/shapes/accumulation.sh [WORK_DIR]     (~30 min on a 2-core CPU)
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${1:-runs/shapes}
python -u -m train --base-model shapes/model/base --dataset "$work/data" --output-dir "$work/accum-4" \
  --resolution 64 --batch-size 32 --grad-accum 4 --lr 1e-3 --max-steps 500 --empty-prompt-prob 0.5 \
  --checkpoint-every 100 --validate-every 50 --validation-dataset "$work/heldout" --num-validation 16 \
  --validation-steps 20 --validation-guidance 5.0 --fidelity shapes --log-every 10 --seed 0
pip install -q -r bench/requirements.txt
python bench/convergence.py "$work/controlnet-run" "$work/accum-4" --labels "batch 32, 2000 steps" \
  "batch 32 x 4 accumulated, 500 steps" --x samples --out docs/accumulation.png
