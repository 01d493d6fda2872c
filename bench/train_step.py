"""Training-step time: `small` vs `default` mode, with and without precomputed latents, on one model, in one run.

    python -m bench.train_step --preset sd15 --resolution 256 --steps 4      # real SD1.5 shapes (CPU: slow)
    python -m bench.train_step --preset tiny --resolution 64 --steps 20      # the tiny test model

Each configuration trains `--steps` optimizer steps through the real loop (train/loop.py); the median of the step
durations after the first (warm-up) is reported, with the ratio to the default mode without precomputation.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import record
from cnet.tiny import save_tiny_models
from shapes.data import write_dataset
from train.config import TrainConfig
from train.loop import train

CONFIGS = [("default", False), ("small", False), ("default", True), ("small", True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("tiny", "sd15"), default="tiny")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--base-model", help="an existing diffusers folder instead of building one")
    parser.add_argument("--mixed-precision", default="no")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnet-bench-train-"))
    base = args.base_model or str(save_tiny_models(work / "model", preset=args.preset)[0])
    data = write_dataset(work / "data", max(16, args.batch_size * (args.steps + 2)), seed=0)
    rows, reference = [], None
    for mode, precompute in CONFIGS:
        stamps: list[float] = []
        config = TrainConfig(base_model=base, dataset=str(data), output_dir=str(work / f"{mode}-{precompute}"),
                             resolution=args.resolution, batch_size=args.batch_size, max_steps=args.steps,
                             mode=mode, precompute=precompute, checkpoint_every=10**6, validate_every=0,
                             log_every=10**6, mixed_precision=args.mixed_precision,
                             gradient_checkpointing=args.gradient_checkpointing)
        def stamp(event: str, info: dict, stamps: list[float] = stamps) -> None:
            if event in ("start", "step"):
                stamps.append(time.perf_counter())

        train(config, callback=stamp)
        durations = [b - a for a, b in zip(stamps[1:], stamps[2:])]  # step 2 onwards: step 1 warms up
        median = statistics.median(durations)
        reference = reference or median
        rows.append([mode, "yes" if precompute else "no", f"{median:.3f}", f"{reference / median:.2f}x"])
    record(f"Training step, {args.preset} model at {args.resolution}x{args.resolution}, batch {args.batch_size}",
           ["mode", "precomputed latents", "median s/step", "speed vs default"], rows,
           f"{args.steps} steps per configuration through train/loop.py, median after the first step; "
           f"mixed precision {args.mixed_precision}, gradient checkpointing {args.gradient_checkpointing}.")


if __name__ == "__main__":
    main()
