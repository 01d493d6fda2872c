"""Live frames on a GPU: frames per second of each family's live preset at 512 px, eager and compiled.

    python -m bench.gpu --live                       # SD1.5 and SDXL shapes, random weights, fp16
    python -m bench.gpu --live --tiny --device cpu   # the same code on the tiny model (CI's smoke run)

A frame is what a stroke costs (cnet/live.py): the prompt encoded, the preset's LCM steps at guidance 1 (2 on a
GPU) with a rank-64 LoRA on LCM-LoRA's layers (the stand-in of bench/live.py), the TAESD decode. The compiled
variant is the engine with torch.compile (max-autotune: CUDA graphs on a GPU) for the frame's one shape, warmed by
running the frame itself, so the LoRA's layers are in the graph. Frames are timed back to back (as strokes come),
the GPU synchronised around each; the variants alternate every round.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bench.common import record


def live_frames(args: argparse.Namespace, work: Path) -> None:
    """Time each family's live frames (eager and, with --compile or on CUDA, compiled) and record the table."""
    import torch

    from bench.live import stand_in_lora
    from cnet.families import FAMILIES
    from cnet.tiny import save_tiny_models

    cuda = args.device.startswith("cuda")
    families = ["sd15"] if args.tiny else ["sd15", "sdxl"]
    side = 64 if args.tiny else 512
    rows = []
    for family in families:
        preset = "tiny" if args.tiny else family
        base, net = save_tiny_models(work / family, preset=preset, family=family if args.tiny else "sd15")
        os.environ["CNET_FEW_STEP_LORA"] = str(stand_in_lora(base, work / family / "lora"))
        runners = {"eager": frame_runner(args, base, net, family, side, compile=False)}
        if cuda or args.compile:
            runners["torch.compile (CUDA graphs on a GPU)"] = frame_runner(args, base, net, family, side, compile=True)
        times: dict[str, list[float]] = {name: [] for name in runners}
        for round_ in range(args.repeats):
            for name in (list(runners) if round_ % 2 == 0 else list(runners)[::-1]):
                times[name] += runners[name](args.frames)
        for name, seconds in times.items():
            median = statistics.median(seconds)
            rows.append([family, f"{side}x{side}", name, f"{min(seconds) * 1000:.1f}", f"{median * 1000:.1f}",
                         f"{1 / median:.1f}"])
            print(rows[-1], flush=True)
        del runners
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    record(f"Live frames per second, {'tiny' if args.tiny else 'SD1.5 and SDXL'} at {side} px, "
           f"{'float16' if cuda else 'CPU'}",
           ["family", "size", "variant", "min ms / frame", "median ms / frame", "frames / s (median)"], rows,
           f"{args.repeats} rounds of {args.frames} frames back to back after a warm-up, the variants alternating; the "
           f"live preset on {args.device} ({FAMILIES['sd15'].live.steps_on(args.device)} LCM steps, guidance 1, a "
           "rank-64 LoRA stand-in on LCM-LoRA's layers, TAESD); random weights with the published shapes. Goal "
           "(issue 28): 20 frames/s for SD1.5 on an H100.")


def frame_runner(args: argparse.Namespace, base: Path, net: Path, family: str, side: int, compile: bool) -> Any:
    """A function running `n` live frames and returning their seconds (the engine loaded and warmed once)."""
    import numpy as np
    import torch
    from diffusers import AutoencoderTiny
    from PIL import Image

    from cnet.compiled import ShapeBuckets
    from cnet.engine import Engine
    from cnet.families import FAMILIES, few_step_settings
    from cnet.live import live_settings
    from cnet.request import ControlUnit, GenerationRequest
    from cnet.tiny import save_tiny_taesd

    taesd = base.parent / "taesd"
    if not taesd.exists():
        save_tiny_taesd(taesd) if args.tiny else AutoencoderTiny().save_pretrained(taesd)
    os.environ["CNET_TINY_VAE"] = str(taesd)
    cuda = args.device.startswith("cuda")
    engine = Engine(str(base), device=args.device, compile=compile,
                    compile_buckets=ShapeBuckets.parse(f"{side}x{side}", "1") if compile else None)
    cond = Image.fromarray(((np.random.default_rng(0).random((side, side, 3)) > 0.9) * 255).astype(np.uint8))
    spec = FAMILIES[family]
    asked = live_settings(spec.live, spec, {"prompt_mode": "custom", "prompt": "a house", "seed": 0,
                                            "width": side, "height": side}, device=args.device)
    asked["width"] = asked["height"] = side  # the table's size, whatever the preset's cap
    request = GenerationRequest(units=[ControlUnit(cond, controlnet=str(net))], **few_step_settings(spec, asked))
    for _ in range(3):  # warm-up: the LoRA loads, kernels tune, and the compiled variant compiles this shape
        engine.generate(request)

    def run(n: int) -> list[float]:
        out = []
        for _ in range(n):
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            engine.generate(request)
            if cuda:
                torch.cuda.synchronize()
            out.append(time.perf_counter() - start)
        return out

    return run
