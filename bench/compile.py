"""torch.compile of the denoiser (cnet/compiled.py): compile time per shape, cold and from the on-disk cache,
recompiles on a size switch, and the time of an image compiled against uncompiled.

    python -m bench.compile [--models DIR] [--sizes 64x64,96x64] [--steps 4] [--repeats 5]

1. **Cold**: `python -m cnet warm-up` in a fresh process with an empty CNET_COMPILE_CACHE. It prints, for each size,
   batch 1 and guidance 9 then 1, the seconds and the graphs compiled.
2. **Restart**: the same command in a new process, on the cache the first one left (what an app restart pays).
3. **Runs**: in this process, an engine is warmed for every size (from the cache), then the compiled and uncompiled
   engines generate each size in turn, alternated, `--repeats` times. The table gives min and median seconds per
   image, and the graphs compiled during those runs (the goal is 0 within the buckets).

Without --models the tiny test model is used (the figures then show compile overheads, not speed-ups). The CPU
figures say what a CPU user pays; the GPU figures (CUDA graphs, max-autotune) are `bench/gpu.py`'s.
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


def warm_up_process(base: Path, net: Path, sizes: str, cache: Path) -> tuple[list[dict], float]:
    """Run `python -m cnet warm-up` in a fresh process; its per-shape rows and its whole wall time."""
    env = {**os.environ, "CNET_COMPILE_CACHE": str(cache), "CNET_CONTROLNET_CANNY": str(net)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cnet", "warm-up", "--sizes", sizes, "--base-model", str(base),
                           "--device", "cpu"], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"warm-up failed ({done.returncode}):\n{done.stderr[-3000:]}")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return rows, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="a folder with base/ and controlnet/ (e.g. `python -m cnet tiny-model DIR "
                        "--preset sd15`); default: the tiny test model")
    parser.add_argument("--sizes", default="64x64,96x64", help="the compile buckets, WIDTHxHEIGHT list")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per timed image")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    import numpy as np
    from PIL import Image

    from cnet.compiled import ShapeBuckets, compile_count
    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest
    from cnet.tiny import save_tiny_models

    work = Path(tempfile.mkdtemp(prefix="cnet-bench-compile-"))
    if args.models:
        base, net = Path(args.models) / "base", Path(args.models) / "controlnet"
    else:
        base, net = save_tiny_models(work / "tiny")
    cache = work / "inductor"
    cold, cold_wall = warm_up_process(base, net, args.sizes, cache)
    warm, warm_wall = warm_up_process(base, net, args.sizes, cache)
    rows = [[f"{c['width']}x{c['height']}", c["batch"], c["guidance"], c["graphs_compiled"], f"{c['seconds']:.1f}",
             f"{w['seconds']:.1f}"] for c, w in zip(cold, warm)]
    rows.append(["whole process (imports, load, all shapes)", "", "", "", f"{cold_wall:.1f}", f"{warm_wall:.1f}"])
    notes = ("Each row is one short run (2 steps) that compiles the shape: the U-Net, ControlNet and VAE decoder "
             "with CFG, then the U-Net and ControlNet at guidance 1. The restart reads inductor's FX-graph and "
             "autotune caches from CNET_COMPILE_CACHE; dynamo still traces each model again. Load 1-min avg: "
             f"{os.getloadavg()[0]:.2f}.")
    record("torch.compile: compile time per shape, cold and after a restart", [
        "size", "batch", "guidance", "graphs", "cold s", "restart (cache on disk) s"], rows, notes)

    os.environ["CNET_COMPILE_CACHE"] = str(cache)
    buckets = ShapeBuckets.parse(args.sizes)
    # float32, as its recorded figures (bench/RESULTS.md); bench/live.py measures compile in bfloat16.
    compiled = Engine(str(base), device="cpu", dtype="float32", compile=True, compile_buckets=buckets)
    plain = Engine(str(base), device="cpu", dtype="float32")
    compiled.warm_up(controlnet=str(net))
    rng = np.random.default_rng(0)
    times: dict[tuple[str, tuple[int, int]], list[float]] = {}
    graphs_before, load = compile_count(), os.getloadavg()[0]
    for _ in range(args.repeats):
        for size in buckets.sizes:  # a size switch on every run: each must find its graph already compiled
            cond = Image.fromarray(((rng.random((size[1], size[0], 3)) > 0.9) * 255).astype(np.uint8))
            request = GenerationRequest(units=[ControlUnit(cond, controlnet=str(net))], seed=0, width=size[0],
                                        height=size[1], num_inference_steps=args.steps)
            for name, engine in (("compiled", compiled), ("uncompiled", plain)):
                start = time.perf_counter()
                engine.generate(request)
                times.setdefault((name, size), []).append(time.perf_counter() - start)
    recompiles = compile_count() - graphs_before
    rows = []
    for size in buckets.sizes:
        eager, fast = times[("uncompiled", size)], times[("compiled", size)]
        rows.append([f"{size[0]}x{size[1]}", args.steps, f"{min(eager):.3f}", f"{statistics.median(eager):.3f}",
                     f"{min(fast):.3f}", f"{statistics.median(fast):.3f}",
                     f"{statistics.median(eager) / statistics.median(fast):.2f}x"])
    record("torch.compile: seconds per image, compiled against uncompiled (alternated)", [
        "size", "steps", "uncompiled min", "uncompiled median", "compiled min", "compiled median", "speed-up"],
        rows, f"{args.repeats} repeats, sizes and engines alternated; graphs compiled during these runs (size "
        f"switches included): {recompiles}. Load 1-min avg at the start: {load:.2f}.")


if __name__ == "__main__":
    main()
