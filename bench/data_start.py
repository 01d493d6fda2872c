"""Time to train two steps on a folder dataset of 2,000 rows and of 40,000 rows (the tiny model, 64 px): the start
must not grow with the number of rows (issue 29: within 1.2x).

    python -m bench.data_start [--rows 2000 40000] [--repeats 5]

Both folders hold a `metadata.jsonl` whose rows point at the same eight 64 px images (in the system's file cache
after the first run), so what differs is only the number of rows. The runs are whole `python -m train` processes
(imports, the tiny model, the data, two steps, the result saved), the sizes alternated in each round.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import record


def write_folder(folder: Path, rows: int) -> Path:
    """A metadata.jsonl folder of `rows` rows over eight small images (coloured squares and their edges)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(8):
        image = Image.new("RGB", (64, 64), (30 * i, 200 - 20 * i, 90))
        ImageDraw.Draw(image).rectangle((8 + i, 8 + i, 40 + i, 40 + i), fill=(250, 250, 250))
        image.save(folder / f"image-{i}.png")
        condition = Image.new("RGB", (64, 64))
        ImageDraw.Draw(condition).rectangle((8 + i, 8 + i, 40 + i, 40 + i), outline=(255, 255, 255))
        condition.save(folder / f"condition-{i}.png")
    with open(folder / "metadata.jsonl", "w") as f:
        for n in range(rows):
            f.write(json.dumps({"image": f"image-{n % 8}.png", "conditioning_image": f"condition-{n % 8}.png",
                                "text": f"a square, number {n}"}) + "\n")
    return folder


def two_steps(base: Path, dataset: Path, out: Path) -> float:
    """Wall time of a whole `python -m train` process that trains two steps."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "train", "--base-model", str(base), "--dataset", str(dataset),
                           "--output-dir", str(out), "--resolution", "64", "--batch-size", "2", "--max-steps", "2",
                           "--validate-every", "0", "--checkpoint-every", "100", "--preset", "none"],
                          capture_output=True, text=True, env={**os.environ, "CNET_DTYPE": "float32"})
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return elapsed


def main() -> None:
    from cnet.tiny import save_tiny_models

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[2_000, 40_000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cnet-data-start-"))
    base = save_tiny_models(work / "model")[0]
    folders = {rows: write_folder(work / f"rows-{rows}", rows) for rows in args.rows}
    for rows, folder in folders.items():  # untimed: the file cache warmed, as for the timed rounds
        two_steps(base, folder, work / f"warm-{rows}")
    times: dict[int, list[float]] = {rows: [] for rows in args.rows}
    loads = []
    for round_number in range(args.repeats):
        for rows, folder in folders.items():
            times[rows].append(two_steps(base, folder, work / f"run-{rows}-{round_number}"))
        loads.append(os.getloadavg()[0])
    smallest = statistics.median(times[args.rows[0]])
    table = [[f"{rows:,}", f"{statistics.median(t):.2f}", f"{min(t):.2f}", f"{max(t):.2f}",
              f"{statistics.median(t) / smallest:.2f}x"] for rows, t in times.items()]
    record("Folder dataset: a two-step run's time against the number of rows",
           ["rows", "median (s)", "min (s)", "max (s)", "median vs the first"], table,
           f"Whole `python -m train` processes (tiny model, 64 px, batch 2, 2 steps), sizes alternated, "
           f"{args.repeats} rounds; rows point at the same eight images. Load average (1 min) seen: "
           f"{min(loads):.1f}-{max(loads):.1f}.")


if __name__ == "__main__":
    main()
