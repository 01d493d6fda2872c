"""Engine benchmarks: overhead against a direct diffusers call, the skipped-ControlNet saving, model switching.

    python -m bench.engine --preset tiny --resolution 64 --steps 20 --repeats 5
    python -m bench.engine --preset sd15 --resolution 256 --steps 4 --repeats 3     # real SD1.5 shapes

Ratios come from one run with interleaved repetitions whose order alternates (A B, then B A, ...), so a busy
machine and warm caches shift both sides alike; min, median and max are reported with the load average. The
diffusers reference is built from the saved folders with its own modules: it never shares the engine's patched
ControlNet (the skip-inactive fast path), so it is the plain library.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from bench.common import record


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return float("nan")


def interleaved(fns: dict, repeats: int) -> dict[str, list[float]]:
    """Every function's times over `repeats` rounds after one warm-up each; the order flips every round."""
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for round_ in range(repeats):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            gc.collect()
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def spread(times: list[float]) -> str:
    return f"{min(times):.3f} / {statistics.median(times):.3f} / {max(times):.3f}"


def ratio(a: list[float], b: list[float]) -> str:
    """Median ratio and the ratio of the minima (the least disturbed runs)."""
    return f"{statistics.median(a) / statistics.median(b):.3f} (min {min(a) / min(b):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=("tiny", "sd15"), default="tiny")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import torch
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline

    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest
    from cnet.tiny import build_sd15_components, build_tiny_components, save_tiny_models

    work = Path(tempfile.mkdtemp(prefix="cnet-bench-engine-"))
    base, net_a = save_tiny_models(work / "a", preset=args.preset)
    builder = build_sd15_components if args.preset == "sd15" else build_tiny_components
    net_b = work / "b-controlnet"
    builder(seed=1)["controlnet"].save_pretrained(net_b)
    cond = Image.fromarray((np.random.default_rng(0).random((args.resolution, args.resolution, 3)) > 0.9)
                           .astype(np.uint8) * 255)

    # float32, as the diffusers reference it is compared with (a CPU with AMX would pick bfloat16 by itself).
    engine = Engine(str(base), device="cpu", dtype="float32")
    plain = Engine(str(base), device="cpu", dtype="float32", skip_inactive_controlnet=False)

    def request(end: float = 1.0) -> GenerationRequest:
        return GenerationRequest(units=[ControlUnit(cond, controlnet=str(net_a), end=end)],
                                 num_inference_steps=args.steps, seed=0)

    # The reference: diffusers from the saved folders, its own modules (unpatched), the engine's settings.
    direct = StableDiffusionControlNetPipeline.from_pretrained(
        base, controlnet=ControlNetModel.from_pretrained(net_a), safety_checker=None, requires_safety_checker=False)
    direct.scheduler = DDIMScheduler.from_config(direct.scheduler.config)
    direct.set_progress_bar_config(disable=True)
    engine.load_base()
    plain.load_base()

    def run_direct() -> None:
        direct("a professional, detailed, high-quality image", image=cond, num_inference_steps=args.steps,
               guidance_scale=9.0, negative_prompt="", generator=[torch.Generator().manual_seed(0)])

    ours = np.asarray(engine.generate(request()).images[0])
    run_direct()
    same = np.array_equal(ours, np.asarray(direct("a professional, detailed, high-quality image", image=cond,
                                                  num_inference_steps=args.steps, guidance_scale=9.0,
                                                  negative_prompt="",
                                                  generator=[torch.Generator().manual_seed(0)]).images[0]))
    skipped = np.asarray(engine.generate(request(0.5)).images[0])
    same_skip = np.array_equal(skipped, np.asarray(plain.generate(request(0.5)).images[0]))
    load_before = os.getloadavg()[0]
    t = interleaved({"cnet": lambda: engine.generate(request()), "diffusers": run_direct}, args.repeats)
    half = interleaved({"skip": lambda: engine.generate(request(0.5)), "no skip": lambda: plain.generate(request(0.5))},
                       args.repeats)
    load_after = os.getloadavg()[0]
    rows = [["cnet Engine.generate vs direct StableDiffusionControlNetPipeline call", spread(t["cnet"]),
             spread(t["diffusers"]), ratio(t["cnet"], t["diffusers"]), "yes" if same else "NO"],
            ["control end 0.5: ControlNet skipped when inactive vs always run", spread(half["skip"]),
             spread(half["no skip"]), ratio(half["skip"], half["no skip"]), "yes" if same_skip else "NO"]]

    # Switching: a second ControlNet in the running engine vs a fresh pipeline from disk.
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    engine.pipeline([ControlUnit(cond, controlnet=str(net_b))])
    switch_s, switch_mb = time.perf_counter() - start, rss_mb() - before
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    fresh = StableDiffusionControlNetPipeline.from_pretrained(base, controlnet=ControlNetModel.from_pretrained(net_b))
    fresh_s, fresh_mb = time.perf_counter() - start, rss_mb() - before
    del fresh
    rows.append(["switch ControlNet (engine keeps the base) vs load a fresh pipeline (one run)", f"{switch_s:.3f}",
                 f"{fresh_s:.3f}", f"{switch_s / fresh_s:.3f}", ""])
    rows.append(["resident memory added by the switch vs by a fresh pipeline (MB)", f"{switch_mb:.0f}",
                 f"{fresh_mb:.0f}", f"{switch_mb / fresh_mb:.3f}" if fresh_mb > 0 else "n/a", ""])
    record(f"Engine, {args.preset} model at {args.resolution}x{args.resolution}, {args.steps} DDIM steps, CFG 9",
           ["measurement", "ours (s) min / median / max", "reference (s) min / median / max", "ratio", "same pixels"],
           rows, f"{args.repeats} rounds after a warm-up, the order flipping every round, gc between runs; CPU fp32, "
           f"torch threads {torch.get_num_threads()}; load average {load_before:.2f} before, {load_after:.2f} after. "
           "The reference is diffusers from the saved folders with its own, unpatched modules.")


if __name__ == "__main__":
    main()
