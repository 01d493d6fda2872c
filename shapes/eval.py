"""`python -m shapes eval`: how well the demo ControlNet controls, on held-out circles.

For each held-out circle (seeded, never in training) we generate with DDIM (20 steps), strength 1.0 and CFG 5 (and
9.0, the paper's), segment the generated circle (pixels nearer the prompt's circle colour than its background
colour) and compare it with the true filled circle. The base model alone (strength 0) is the baseline: the gain is
the ControlNet's.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from . import DEMO_BASE, DEMO_CONTROLNET

HELDOUT_SEED = 12345  # training data uses seed 1; this seed's circles are never trained on


@dataclass(frozen=True)
class Sampling:
    """How the held-out circles are generated."""

    steps: int = 20
    guidance: float = 5.0
    strength: float = 1.0
    control_mode: str = "balanced"
    scheduler: str = "ddim"


def evaluate_shapes(base: str | Path = DEMO_BASE, controlnet: str | Path = DEMO_CONTROLNET, *, n: int = 32,
                    seed: int = HELDOUT_SEED, engine: Any = None, **sampling: Any) -> dict[str, Any]:
    """Median IoU, share with IoU > 0.5, and share with the right circle colour, over `n` held-out circles;
    `sampling`: the `Sampling` fields (steps, guidance, strength, control_mode, scheduler)."""
    run = Sampling(**sampling)
    steps, guidance, strength, control_mode, scheduler = (run.steps, run.guidance, run.strength, run.control_mode,
                                                          run.scheduler)
    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest

    from .data import draw, iou, load_palette, nearest_colour, random_circle, segment

    engine = engine or Engine(str(base), device="cpu")
    palette = load_palette()
    rng = np.random.default_rng(seed)
    ious, colours = [], []
    for i in range(n):
        circle = random_circle(rng, palette)
        _, condition, truth = draw(circle, palette)
        result = engine.generate(GenerationRequest(
            units=[ControlUnit(Image.fromarray(condition), kind="scribble", controlnet=str(controlnet),
                               strength=strength, control_mode=control_mode)],
            prompt_mode="custom", prompt=circle.prompt, num_inference_steps=steps, guidance_scale=guidance,
            scheduler=scheduler, seed=i, width=64, height=64))
        image = np.asarray(result.images[0])
        mask = segment(image, palette[circle.colour], palette[circle.background])
        ious.append(iou(mask, truth))
        colours.append(nearest_colour(image, mask, palette) == circle.colour)
    return {"n": n, "steps": steps, "scheduler": scheduler, "guidance": guidance, "strength": strength,
            "control_mode": control_mode,
            "median_iou": statistics.median(ious),
            "share_iou_above_0.5": float(np.mean([v > 0.5 for v in ious])),
            "colour_right": float(np.mean(colours)), "ious": ious}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m shapes eval", description=__doc__)
    parser.add_argument("--base", default=str(DEMO_BASE))
    parser.add_argument("--controlnet", default=str(DEMO_CONTROLNET))
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--scheduler", default="ddim", help="the sampler (cnet.request.SCHEDULERS)")
    parser.add_argument("--guidance", type=float, action="append",
                        help="CFG scale(s) to evaluate (default: 5 and 9, the paper's)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    from cnet.engine import Engine

    engine = Engine(args.base, device="cpu")
    rows = []
    for guidance in args.guidance or (5.0, 9.0):
        for strength in (1.0, 0.0):
            r = evaluate_shapes(args.base, args.controlnet, n=args.n, steps=args.steps, guidance=guidance,
                                strength=strength, engine=engine, scheduler=args.scheduler)
            rows.append({k: v for k, v in r.items() if k != "ious"})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| model | sampler, steps | CFG | median IoU | IoU > 0.5 | colour right |\n|---|---|---|---|---|---|")
    for r in rows:
        who = "base + ControlNet" if r["strength"] else "base alone (strength 0)"
        print(f"| {who} | {r['scheduler']}, {r['steps']} | {r['guidance']} | {r['median_iou']:.3f} | "
              f"{r['share_iou_above_0.5']:.0%} | "
              f"{r['colour_right']:.0%} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
