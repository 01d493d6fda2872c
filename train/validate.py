"""Validation while training: images for fixed conditions, a grid, and a fidelity score where the kind has one.

A ControlNet "suddenly" starts to follow its condition after some thousand steps; the score makes that visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image


def canny_f1(generated: Image.Image, condition: Image.Image, prompt: str = "", tolerance: int = 2) -> float:
    """F1 between Canny edges re-extracted from `generated` and the condition's edges, with `tolerance` pixels of
    slack (edges one or two pixels off still count)."""
    out = cv2.Canny(np.asarray(generated.convert("RGB")), 100, 200) > 0
    ref = np.asarray(condition.convert("L").resize(generated.size)) > 127
    if not out.any() or not ref.any():
        return 0.0
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
    near_ref = cv2.dilate(ref.astype(np.uint8), kernel) > 0
    near_out = cv2.dilate(out.astype(np.uint8), kernel) > 0
    precision = (out & near_ref).sum() / out.sum()
    recall = (ref & near_out).sum() / ref.sum()
    return float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0


# Keys: train.config.FIDELITIES. A score is a function, or a "module:function" reference to a package that plugs
# one in (the demo's circle IoU lives with the demo), imported only when that score is asked for.
FIDELITY: dict[str, Any] = {"canny": canny_f1, "shapes": "shapes.data:circle_iou"}


def scorer(name: str) -> Any:
    """The fidelity function called `name` (FIDELITY), its reference resolved."""
    found = FIDELITY[name]
    if isinstance(found, str):
        import importlib

        module, _, attribute = found.partition(":")
        found = getattr(importlib.import_module(module), attribute)
    return found


def grid(rows: list[list[Image.Image]]) -> Image.Image:
    """Rows of equally sized images pasted into one picture."""
    w, h = rows[0][0].size
    cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (cols * w, len(rows) * h), "black")
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            canvas.paste(image.convert("RGB").resize((w, h)), (x * w, y * h))
    return canvas


def run_validation(pipe: Any, conditions: list[Image.Image], prompts: list[str], *, steps: int, guidance: float,
                   seed: int, out_file: Path, fidelity: str | None = None, map_argument: str = "image"
                   ) -> dict[str, Any]:
    """Generate one image per condition (seeded), save [condition | image] rows as a grid, return the score.
    `map_argument`: the pipeline's argument for the map (the DiT pipelines' `control_image`)."""
    import torch

    images = []
    for i, (cond, prompt) in enumerate(zip(conditions, prompts)):
        generator = torch.Generator("cpu").manual_seed(seed + i)
        images.append(pipe(prompt, **{map_argument: cond}, num_inference_steps=steps, guidance_scale=guidance,
                           generator=generator).images[0])
    out_file.parent.mkdir(parents=True, exist_ok=True)
    picture = grid([[c, im] for c, im in zip(conditions, images)])
    picture.save(out_file)
    result: dict[str, Any] = {"grid": str(out_file), "images": images, "picture": picture}
    if fidelity in FIDELITY:
        score = scorer(fidelity)
        scores = [score(im, c, p) for im, c, p in zip(images, conditions, prompts)]
        result["fidelity"] = float(np.nanmean(scores)) if not np.isnan(scores).all() else None
        result["scores"] = scores
    return result
