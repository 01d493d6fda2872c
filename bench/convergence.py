"""Plot the "sudden convergence": fidelity (validation IoU) and loss against steps, for one or more runs.

    python -m bench.convergence runs/shapes/controlnet-run --out docs/convergence.png
    python -m bench.convergence RUN_A RUN_B --labels "batch 32" "batch 8 x 4 accumulation" --x samples --out cmp.png

Reads each run's metrics.jsonl and validation.jsonl (written by train/loop.py).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def rescore(run: Path, val: list[dict], config: dict) -> list[dict]:
    """Circle IoU recomputed from each saved [condition | image] grid and the dataset's first prompts."""

    import numpy as np
    from PIL import Image

    from shapes.data import circle_iou
    from train.data import load_rows

    rows = load_rows(config.get("validation_dataset") or config["dataset"]).rows
    side = config["resolution"]
    out = []
    for v in val:
        grid = Image.open(v["grid"])
        scores = []
        for i in range(grid.height // side):
            cond = grid.crop((0, i * side, side, (i + 1) * side))
            image = grid.crop((side, i * side, 2 * side, (i + 1) * side))
            scores.append(circle_iou(image, cond, rows[i].text))
        out.append({**v, "fidelity": float(np.nanmean(scores))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--labels", nargs="*")
    parser.add_argument("--x", choices=("steps", "samples"), default="steps",
                        help="samples = steps x batch x accumulation (equal compute on one axis)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the circle IoU from the saved grids with the current train/validate.py")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_fid, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    for i, run in enumerate(args.runs):
        run = Path(run)
        config = json.loads((run / "config.json").read_text())
        per_step = config["batch_size"] * config["grad_accum"] if args.x == "samples" else 1
        label = args.labels[i] if args.labels and i < len(args.labels) else run.name
        val = [v for v in read_jsonl(run / "validation.jsonl") if v.get("fidelity") is not None]
        if args.rescore:
            val = rescore(run, val, config)
        ax_fid.plot([v["step"] * per_step for v in val], [v["fidelity"] for v in val], marker="o", label=label)
        metrics = read_jsonl(run / "metrics.jsonl")
        ax_loss.plot([m["step"] * per_step for m in metrics], [m["loss"] for m in metrics], label=label, alpha=0.8)
    ax_fid.set(title="Validation fidelity (circle IoU, CFG 5)", xlabel=args.x, ylabel="mean IoU", ylim=(0, 1))
    ax_loss.set(title="Training loss", xlabel=args.x, ylabel="MSE (noise)")
    for ax in (ax_fid, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
