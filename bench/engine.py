"""Engine benchmarks: overhead against a direct diffusers call, the skipped-ControlNet saving, model switching.

    python -m bench.engine --preset tiny --resolution 64 --steps 20 --repeats 5
    python -m bench.engine --preset sd15 --resolution 256 --steps 4 --repeats 3     # real SD1.5 shapes

Ratios come from one run with interleaved repetitions (medians), so a busy machine shifts both sides alike.
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


def interleaved(fns: dict, repeats: int) -> dict[str, float]:
    for fn in fns.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


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

    engine = Engine(str(base), device="cpu")
    plain = Engine(str(base), device="cpu", skip_inactive_controlnet=False)

    def request(end: float = 1.0) -> GenerationRequest:
        return GenerationRequest(units=[ControlUnit(cond, controlnet=str(net_a), end=end)],
                                 num_inference_steps=args.steps, seed=0)

    pipe = engine.pipeline(request().units)
    direct = StableDiffusionControlNetPipeline(**{k: v for k, v in pipe.components.items()})
    direct.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    direct.set_progress_bar_config(disable=True)
    engine.load_base()
    plain.load_base()

    def run_direct() -> None:
        direct("a professional, detailed, high-quality image", image=cond, num_inference_steps=args.steps,
               guidance_scale=9.0, negative_prompt="", generator=[torch.Generator().manual_seed(0)])

    t = interleaved({"cnet": lambda: engine.generate(request()), "diffusers": run_direct}, args.repeats)
    half = interleaved({"skip": lambda: engine.generate(request(0.5)), "no skip": lambda: plain.generate(request(0.5))},
                       args.repeats)
    rows = [["cnet Engine.generate vs direct StableDiffusionControlNetPipeline call", f"{t['cnet']:.3f}",
             f"{t['diffusers']:.3f}", f"{t['cnet'] / t['diffusers']:.3f}"],
            ["control end 0.5: ControlNet skipped when inactive vs always run", f"{half['skip']:.3f}",
             f"{half['no skip']:.3f}", f"{half['skip'] / half['no skip']:.3f}"]]

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
    rows.append(["switch ControlNet (engine keeps the base) vs load a fresh pipeline", f"{switch_s:.3f}",
                 f"{fresh_s:.3f}", f"{switch_s / fresh_s:.3f}"])
    rows.append(["resident memory added by the switch vs by a fresh pipeline (MB)", f"{switch_mb:.0f}",
                 f"{fresh_mb:.0f}", f"{switch_mb / fresh_mb:.3f}" if fresh_mb > 0 else "n/a"])
    record(f"Engine, {args.preset} model at {args.resolution}x{args.resolution}, {args.steps} DDIM steps, CFG 9",
           ["measurement", "ours (s)", "reference (s)", "ratio"], rows,
           f"Medians of {args.repeats} interleaved runs after a warm-up; CPU fp32.")


if __name__ == "__main__":
    main()
