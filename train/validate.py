"""Validation while training: images for fixed conditions, a grid, and a fidelity score where the kind has one.

A ControlNet "suddenly" starts to follow its condition after some thousand steps; the score makes that visible.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image


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
    if fidelity:
        result.update(fidelity_scores(fidelity, images, conditions, prompts))
    return result


def fidelity_scores(fidelity: str, images: list[Image.Image], conditions: list[Image.Image], prompts: list[str]
                    ) -> dict[str, Any]:
    """The kind's metrics (cnet/metrics.py, the same as `python -m cnet eval`): "fidelity" is the first one's
    summary, "metrics" all of them; when a re-detecting annotator cannot load (its weights are not here), None
    with "fidelity_error" saying why: the run goes on."""
    from annotators.detect import Loading
    from annotators.registry import ModelCache
    from cnet.metrics import metrics_for, score

    # The annotators load into a cache of this validation's own: they leave the card with it, before the next step.
    metrics, values, loading = metrics_for(fidelity), {}, Loading(cache=ModelCache())
    try:
        for metric in metrics:
            values[metric.name] = metric.summarise([score(metric, im, c, p, loading) for im, c, p in
                                                    zip(images, conditions, prompts)])
    except Exception as err:  # an annotator's weights missing offline, say: validation must not end the run
        return {"fidelity": None, "metrics": {}, "fidelity_error": f"{type(err).__name__}: {str(err)[:300]}"}
    return {"fidelity": values[metrics[0].name], "metrics": values}
