"""Training-step time: `small` vs `default` mode, and where the latents come from, on one model, in one run.

Data sources (`--configs mode:source`): `no` (the folder's images, encoded every step), `yes` (precompute: every
latent in RAM), `stream` (the rows as parquet shards, read with --streaming, encoded every step), `cache` (the latent
cache on disk, `python -m train cache`, read memory-mapped; built once before the timing, its build time printed).

    python -m bench.train_step --preset sd15 --resolution 128 --steps 5 --rounds 3   # real SD1.5 shapes (CPU: slow)
    python -m bench.train_step --preset tiny --resolution 64 --steps 20 --rounds 3   # the tiny test model

Each configuration trains `--steps` optimizer steps through the real loop (train/loop.py), in `--rounds` rounds whose
order flips every round (A B C D, D C B A, ...), so a busy machine shifts every configuration alike. Step durations
after each run's first (warm-up) step are pooled per configuration: min / median / max. The end-to-end time of a run
(setup, the up-front encode of precomputation, every step) is reported too: what a user waits for.
"""

from __future__ import annotations

import argparse
import os
import shutil
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


SOURCES = {"no": "images, encoded per step", "yes": "precomputed in RAM", "stream": "parquet stream, encoded per step",
           "cache": "latent cache on disk (mmap)"}


def run_once(base: str, data: dict[str, Path], out: Path, mode: str, source: str, args: argparse.Namespace
             ) -> tuple[list[float], float]:
    """One training run: its step durations after the first, and its whole time."""
    stamps: list[float] = []
    where = {"no": {"dataset": str(data["folder"])}, "yes": {"dataset": str(data["folder"]), "precompute": True},
             "stream": {"dataset": str(data["shards"]), "streaming": True},
             "cache": {"dataset": "", "latent_cache": str(data["cache"])}}[source]
    config = TrainConfig(base_model=base, output_dir=str(out), resolution=args.resolution, **where,
                         batch_size=args.batch_size, max_steps=args.steps, mode=mode,
                         checkpoint_every=10**6, validate_every=0, log_every=10**6,
                         mixed_precision=args.mixed_precision, gradient_checkpointing=args.gradient_checkpointing)

    def stamp(event: str, info: dict) -> None:
        if event in ("start", "step"):
            stamps.append(time.perf_counter())

    begin = time.perf_counter()
    train(config, callback=stamp)
    seconds = time.perf_counter() - begin
    shutil.rmtree(out, ignore_errors=True)  # an SD1.5 run leaves ~4 GB (weights, optimizer state): not kept
    return [b - a for a, b in zip(stamps[1:], stamps[2:])], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("tiny", "sd15"), default="tiny")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--configs", default="default:no,small:no,default:yes,small:yes",
                        help=f"mode:source pairs to compare; sources: {', '.join(SOURCES)}")
    parser.add_argument("--base-model", help="an existing diffusers folder instead of building one")
    parser.add_argument("--mixed-precision", default="no")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    args = parser.parse_args()
    configs = [tuple(c.split(":")) for c in args.configs.split(",")]
    unknown = sorted({s for _, s in configs} - set(SOURCES))
    if unknown:
        parser.error(f"unknown data source(s) {unknown}; choose from {list(SOURCES)}")
    work = Path(tempfile.mkdtemp(prefix="cnet-bench-train-"))
    base = args.base_model or str(save_tiny_models(work / "model", preset=args.preset)[0])
    folder = write_dataset(work / "data", max(16, args.batch_size * (args.steps + 2)), seed=0)
    data = {"folder": folder, "shards": work / "shards", "cache": work / "cache"}
    if any(s == "stream" for _, s in configs):
        from train.shards import write_shards

        write_shards(str(folder), data["shards"], rows_per_shard=64)
    if any(s == "cache" for _, s in configs):
        from train.latent_cache import build_cache

        begin = time.perf_counter()
        build_cache(str(folder), base, data["cache"], resolution=args.resolution, batch_size=args.batch_size)
        print(f"latent cache of {folder} built in {time.perf_counter() - begin:.1f} s", flush=True)
    steps: dict = {c: [] for c in configs}
    totals: dict = {c: [] for c in configs}
    load_before = os.getloadavg()[0]
    for round_ in range(args.rounds):
        for mode, source in (configs if round_ % 2 == 0 else configs[::-1]):
            durations, total = run_once(base, data, work / f"{mode}-{source}-{round_}", mode, source, args)
            steps[mode, source] += durations
            totals[mode, source].append(total)
    load_after = os.getloadavg()[0]
    reference = statistics.median(steps[configs[0]])
    rows = []
    for mode, source in configs:
        times = steps[mode, source]
        rows.append([mode, SOURCES[source],
                     f"{min(times):.3f} / {statistics.median(times):.3f} / {max(times):.3f}",
                     f"{args.batch_size / statistics.median(times):.1f}",
                     f"{reference / statistics.median(times):.2f}x",
                     f"{statistics.median(totals[mode, source]):.1f}"])
    shutil.rmtree(work, ignore_errors=True)
    record(f"Training step, {args.preset} model at {args.resolution}x{args.resolution}, batch {args.batch_size}",
           ["mode", "data / latents", "s/step min / median / max", "images/s (median)", "speed vs first row (medians)",
            f"whole run of {args.steps} steps (s, median)"], rows,
           f"{args.rounds} rounds of {args.steps} steps per configuration through train/loop.py, the order flipping "
           f"every round; {len(steps[configs[0]])} step times pooled per row (each run's first step left out). "
           f"Mixed precision {args.mixed_precision}, gradient checkpointing {args.gradient_checkpointing}; load "
           f"average {load_before:.2f} before, {load_after:.2f} after.")


if __name__ == "__main__":
    main()
