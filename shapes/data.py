"""The demo domain (the paper's Fill50K tutorial, procedurally): one filled circle on a plain background.

Image: 64x64, background colour B, a filled circle of colour C != B (random centre, radius 8-24 px).
Prompt: "<C> circle with <B> background". Condition: the circle's outline, white, 2 px, on black.
Everything is drawn from a seeded generator, so a seed names a whole dataset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from . import PALETTE_FILE

SIZE = 64


def load_palette(path: str | Path = PALETTE_FILE) -> dict[str, tuple[int, int, int]]:
    """Colour names to RGB, from shapes/palette.json."""
    return {name: tuple(rgb) for name, rgb in json.loads(Path(path).read_text()).items()}


@dataclass(frozen=True)
class Circle:
    centre: tuple[int, int]  # (x, y)
    radius: int
    colour: str
    background: str

    @property
    def prompt(self) -> str:
        return f"{self.colour} circle with {self.background} background"


def random_circle(rng: np.random.Generator, palette: dict[str, tuple[int, int, int]]) -> Circle:
    names = list(palette)
    fg, bg = rng.choice(len(names), 2, replace=False)
    radius = int(rng.integers(8, 25))
    x, y = (int(v) for v in rng.integers(radius // 2, SIZE - radius // 2, 2))  # may touch the border, as Fill50K
    return Circle((x, y), radius, names[fg], names[bg])


def draw(circle: Circle, palette: dict[str, tuple[int, int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image RGB, condition RGB, filled-circle mask) as uint8/bool arrays."""
    image = np.empty((SIZE, SIZE, 3), np.uint8)
    image[:] = palette[circle.background]
    cv2.circle(image, circle.centre, circle.radius, palette[circle.colour], -1, lineType=cv2.LINE_AA)
    condition = np.zeros((SIZE, SIZE, 3), np.uint8)
    cv2.circle(condition, circle.centre, circle.radius, (255, 255, 255), 2, lineType=cv2.LINE_AA)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    cv2.circle(mask, circle.centre, circle.radius, 1, -1)
    return image, condition, mask.astype(bool)


def sample_batch(rng: np.random.Generator, n: int, palette: dict) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """n images and conditions (uint8, NHWC) with their prompts, for the base pre-training loop."""
    circles = [random_circle(rng, palette) for _ in range(n)]
    drawn = [draw(c, palette) for c in circles]
    return (np.stack([d[0] for d in drawn]), np.stack([d[1] for d in drawn]), [c.prompt for c in circles])


def write_dataset(folder: str | Path, n: int, seed: int, palette_file: str | Path = PALETTE_FILE) -> Path:
    """A Fill50K-layout folder (prompt.json, source/, target/) of n circles from `seed`."""
    from PIL import Image

    palette = load_palette(palette_file)
    root = Path(folder)
    (root / "source").mkdir(parents=True, exist_ok=True)
    (root / "target").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        circle = random_circle(rng, palette)
        image, condition, _ = draw(circle, palette)
        Image.fromarray(image).save(root / "target" / f"{i}.png")
        Image.fromarray(condition).save(root / "source" / f"{i}.png")
        lines.append(json.dumps({"source": f"source/{i}.png", "target": f"target/{i}.png", "prompt": circle.prompt,
                                 "centre": circle.centre, "radius": circle.radius}))
    (root / "prompt.json").write_text("\n".join(lines) + "\n")
    return root


def segment(image: np.ndarray, colour: tuple[int, int, int], background: tuple[int, int, int]) -> np.ndarray:
    """Pixels nearer the circle's colour than the background's: the generated circle."""
    pixels = image.astype(np.float32)
    near_fg = np.linalg.norm(pixels - np.float32(colour), axis=-1)
    near_bg = np.linalg.norm(pixels - np.float32(background), axis=-1)
    return near_fg < near_bg


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def nearest_colour(image: np.ndarray, mask: np.ndarray, palette: dict) -> str | None:
    """The palette colour nearest the mean colour inside `mask` (None if the mask is empty)."""
    if not mask.any():
        return None
    mean = image[mask].astype(np.float32).mean(axis=0)
    return min(palette, key=lambda name: float(np.linalg.norm(mean - np.float32(palette[name]))))


def parse_prompt(prompt: str) -> tuple[str, str] | None:
    words = prompt.split()
    if len(words) == 5 and words[1] == "circle" and words[2] == "with" and words[4] == "background":
        return words[0], words[3]
    return None


def filled_from_outline(condition: np.ndarray) -> np.ndarray:
    """The filled circle implied by an outline map (for validation, where only the condition is known).

    A least-squares circle fit on the outline pixels, so circles cut by the image border (open arcs) still give
    the right disc."""
    gray = condition if condition.ndim == 2 else condition[..., 0]
    ys, xs = np.nonzero(gray > 127)
    mask = np.zeros(gray.shape, np.uint8)
    if len(xs) < 3:
        return mask.astype(bool)
    # x^2 + y^2 + D x + E y + F = 0, solved for D, E, F (Kasa's fit).
    a = np.stack([xs, ys, np.ones_like(xs)], axis=1).astype(np.float64)
    b = -(xs.astype(np.float64) ** 2 + ys.astype(np.float64) ** 2)
    (d, e, f), *_ = np.linalg.lstsq(a, b, rcond=None)
    cx, cy = -d / 2, -e / 2
    radius = np.sqrt(max(cx**2 + cy**2 - f, 0.0))
    cv2.circle(mask, (int(round(cx)), int(round(cy))), int(round(radius)), 1, -1)
    return mask.astype(bool)


def main(argv: list[str] | None = None) -> int:
    """`python -m shapes dataset DIR --rows N --seed S`: write a Fill50K-layout folder of circles."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m shapes dataset", description=write_dataset.__doc__)
    parser.add_argument("folder")
    parser.add_argument("--rows", type=int, default=2000, help="how many circles (default 2000)")
    parser.add_argument("--seed", type=int, default=1, help="names the whole dataset; the held-out set uses 12345")
    args = parser.parse_args(argv)
    if args.rows < 1:
        parser.error(f"--rows={args.rows} must be at least 1")
    print(write_dataset(args.folder, args.rows, seed=args.seed))
    return 0


def circle_iou(generated: Any, condition: Any, prompt: str) -> float:
    """The demo domain's score: IoU of the generated circle (pixels nearer the prompt's circle colour than its
    background colour) with the circle the outline encloses (PIL images)."""
    return circle_iou_array(np.asarray(generated.convert("RGB")),
                            np.asarray(condition.convert("L").resize(generated.size)), prompt)


def circle_iou_array(generated: np.ndarray, condition: np.ndarray, prompt: str) -> float:
    """`circle_iou` on arrays (cnet.metrics' form): the generated RGB picture, the outline map (grey or RGB)."""
    colours = parse_prompt(prompt)
    if colours is None:  # an empty prompt names no colours: nothing to segment against
        return float("nan")
    palette = load_palette()
    return iou(segment(generated, palette[colours[0]], palette[colours[1]]), filled_from_outline(condition))


def circle_colour_right(generated: np.ndarray, condition: np.ndarray, prompt: str) -> float:
    """1.0 when the generated circle (the pixels nearer the prompt's circle colour than its background colour)
    has, on average, the prompt's circle colour (of the palette's colours the nearest), else 0.0; NaN for a
    prompt that names no colours."""
    colours = parse_prompt(prompt)
    if colours is None:
        return float("nan")
    palette = load_palette()
    mask = segment(generated, palette[colours[0]], palette[colours[1]])
    return float(nearest_colour(generated, mask, palette) == colours[0])
