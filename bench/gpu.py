"""GPU benchmark (no internet needed, under 8 minutes on an H100): SD1.5 + ControlNet shapes with random weights.

    python -m bench.gpu                       # 512x512, 20 DDIM steps, CFG 9, batch 1 and 4, fp16, training presets
    python -m bench.gpu --tiny --device cpu   # the same code on the tiny model, to check it runs (CI does this)

Inference: seconds per image and peak memory for plain diffusers (fp16, SDPA) against our engine's fast path
(channels-last, skipped inactive ControlNet, optional torch.compile) and its low-VRAM mode (model CPU offload).
Training: samples/s and peak memory per memory preset, through the real loop. Prints the card and appends the
tables to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import functools
import gc
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import machine, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model (for a CPU smoke run)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile fast path")
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()
    import numpy as np
    import torch
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline
    from PIL import Image

    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest
    from cnet.tiny import save_tiny_models

    cuda = args.device.startswith("cuda")
    dtype = "float16" if cuda else "float32"
    resolution = args.resolution or (64 if args.tiny else 512)
    work = Path(tempfile.mkdtemp(prefix="cnet-bench-gpu-"))
    base, net = save_tiny_models(work / "m", preset="tiny" if args.tiny else "sd15")
    cond = Image.fromarray(((np.random.default_rng(0).random((resolution, resolution, 3)) > 0.9) * 255)
                           .astype(np.uint8))
    print(f"device: {machine() if cuda else args.device}", flush=True)

    def timed(fn) -> tuple[float, float]:
        fn()  # warm-up (and compile)
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        return statistics.median(times), peak

    rows = []
    torch_dtype = getattr(torch, dtype)
    batches = [int(b) for b in args.batches.split(",")]

    def plain_runner():
        pipe = StableDiffusionControlNetPipeline.from_pretrained(
            base, controlnet=ControlNetModel.from_pretrained(net, dtype=torch_dtype), dtype=torch_dtype,
            safety_checker=None, requires_safety_checker=False).to(args.device)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        return lambda batch: pipe("a professional, detailed, high-quality image", image=cond,
                                  num_inference_steps=args.steps, guidance_scale=9.0, num_images_per_prompt=batch,
                                  generator=[torch.Generator().manual_seed(i) for i in range(batch)])

    def engine_runner(**options):
        engine = Engine(str(base), device=args.device, dtype=dtype, **options)
        return lambda batch: engine.generate(GenerationRequest(
            units=[ControlUnit(cond, controlnet=str(net))], num_inference_steps=args.steps, num_images=batch, seed=0))

    variants = {"plain diffusers": plain_runner,
                "cnet fast path": lambda: engine_runner(channels_last=cuda),
                "cnet low-VRAM (offload=model)": lambda: engine_runner(offload="model")}
    if args.compile:
        variants["cnet fast path + torch.compile"] = lambda: engine_runner(channels_last=cuda, compile=True)
    # One variant in memory at a time, so that each peak counts its own weights only.
    for name, build in variants.items():
        runner = build()
        for batch in batches:
            seconds, peak = timed(functools.partial(runner, batch))
            rows.append([name, batch, f"{seconds / batch:.3f}", f"{peak:.2f}"])
            print(rows[-1], flush=True)
        runner = None
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    record(f"Inference, {'tiny' if args.tiny else 'SD1.5 + ControlNet'} at {resolution}x{resolution}, "
           f"{args.steps} DDIM steps, CFG 9, {dtype}", ["pipeline", "batch", "s / image", "peak GiB"], rows,
           f"Median of {args.repeats} runs after a warm-up; random weights with the published architectures.")
    if not args.skip_training:
        train_rows(args, base, work, resolution)


def train_rows(args, base: Path, work: Path, resolution: int) -> None:
    import torch

    from shapes.data import write_dataset
    from train.config import TrainConfig
    from train.loop import train
    from train.presets import PRESETS

    cuda = args.device.startswith("cuda")
    rows = []
    for name, preset in ({"cpu": {}} if not cuda else PRESETS).items():
        settings = dict(preset)
        if not cuda:
            settings.pop("mixed_precision", None)
        batch = settings.get("batch_size", 2)
        data = write_dataset(work / f"data-{name}", batch * (args.train_steps + 2) * settings.get("grad_accum", 1),
                             seed=0)
        stamps: list[float] = []
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        try:
            train(TrainConfig(**{**settings, "base_model": str(base), "dataset": str(data),
                                 "output_dir": str(work / f"run-{name}"), "resolution": resolution,
                                 "max_steps": args.train_steps, "checkpoint_every": 10**6, "validate_every": 0,
                                 "log_every": 10**6}),
                  callback=lambda e, i, stamps=stamps: stamps.append(time.perf_counter())
                  if e in ("start", "step") else None)
        except (ImportError, ValueError) as err:  # e.g. bitsandbytes missing for 8-bit Adam
            rows.append([name, batch, "n/a", "n/a", str(err)[:60]])
            continue
        per_step = statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:]))
        samples = batch * settings.get("grad_accum", 1)
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        rows.append([name, f"{batch} x {settings.get('grad_accum', 1)}", f"{samples / per_step:.2f}",
                     f"{peak:.2f}", ""])
    record(f"Training, {'tiny' if args.tiny else 'SD1.5 ControlNet'} at {resolution}x{resolution}, per memory preset",
           ["preset", "batch x accumulation", "samples/s", "peak GiB", "note"], rows,
           f"{args.train_steps} steps each through train/loop.py, median step after the first.")


if __name__ == "__main__":
    main()
