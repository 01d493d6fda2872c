"""The Train tab's Quick start over several seeds: the held-out circle IoU curve of each, and its spread.

    python -m bench.quick_start [--seeds 0 1 2] [--workspace runs/quick-start] [--steps N]

Each seed is the command the tab's *Quick start* button launches (`DEMO_RECIPES["quick"]` through the Train tab's
own `TrainingManager.demo_settings` and `command`, memory preset "auto"), with `--seed N` added: the seed fixes the
data order, the noise, the timesteps and the empty-prompt draws. The runs go one after another, each with the whole
machine; the load is printed before each. The table gives, at each validation step, the median IoU over the seeds
and the lowest and highest. `--steps N` trains each run to N steps instead of the recipe's; a run already in the
workspace goes on from its newest checkpoint (resuming is exact: the same weights as one uninterrupted run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from bench.common import record


def run_seed(workspace: Path, seed: int, steps: int | None = None) -> tuple[list[dict], float]:
    """Train the quick recipe with `seed` under `workspace/runs/` (to `steps`, when given; a run already there goes
    on from its newest checkpoint); (validation records, wall seconds)."""
    from common.runs import complete_checkpoints
    from webui.settings import AppSettings
    from webui.training import TrainingManager

    manager = TrainingManager(AppSettings(), workspace=workspace)
    name, settings = manager.demo_settings("quick")
    settings = {**settings, "seed": seed, "preset": "auto", **({"max_steps": steps} if steps else {})}
    run = f"{name}-seed{seed}"
    out, command = manager.command(run, settings, resume=bool(complete_checkpoints(manager.run_dir(run))))
    print(f"seed {seed}: load {os.getloadavg()[0]:.2f}; {' '.join(command)}", flush=True)
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "a") as log:  # where the tab writes it: its Log box shows the run
        subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)
    seconds = time.perf_counter() - start
    lines = (out / "validation.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workspace", default="runs/quick-start")
    parser.add_argument("--steps", type=int, help="train to this many steps (default: the recipe's)")
    args = parser.parse_args()
    workspace = Path(args.workspace).resolve()
    curves: dict[int, dict[int, float]] = {}
    walls = []
    for seed in args.seeds:
        records, seconds = run_seed(workspace, seed, args.steps)
        curves[seed] = {r["step"]: r["fidelity"] for r in records if r.get("fidelity") is not None}
        walls.append(seconds)
        print(f"seed {seed}: {seconds:.0f} s; " + ", ".join(f"{s}: {v:.3f}" for s, v in curves[seed].items()),
              flush=True)
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))
    rows = []
    for step in steps:
        values = [curves[seed][step] for seed in args.seeds]
        rows.append([step, *(f"{v:.3f}" for v in values), f"{statistics.median(values):.3f}",
                     f"{min(values):.3f}-{max(values):.3f}"])
    record("Quick start (Train tab) over seeds: held-out circle IoU (16 circles)",
           ["step", *(f"seed {s}" for s in args.seeds), "median", "range"], rows,
           notes=f"This invocation's wall time per run, validations included (a run already in the workspace only went "
                 f"on from its newest checkpoint): {', '.join(f'{w:.0f} s' for w in walls)}.")


if __name__ == "__main__":
    main()
