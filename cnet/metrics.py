"""How faithfully a generated picture follows its condition, for every kind, with the condition re-detected from the
picture by the project's own annotators (so scoring runs offline wherever the annotators' weights are local). Where
the ControlNet++ paper (Li et al., arXiv 2404.07987, section 4: controllability) defines a metric, it is the paper's
(canny F1, SSIM for soft edges and line art, depth RMSE, segmentation mIoU); the paper has none for pose, normals,
lines, scribbles or tiles, whose metrics below are this project's, in the same spirit.

| kind | metric (summary over the pictures) | better |
| --- | --- | --- |
| canny, mlsd | F1 of the re-detected edges or lines against the condition's, pixel for pixel (mean) | higher |
| softedge, lineart, scribble | SSIM of the re-detected map against the condition (mean) | higher |
| depth | RMSE of the re-estimated depth against the condition, on 0-255 grey levels (mean) | lower |
| seg | mIoU of the re-segmented classes (nearest ADE20K palette colour) against the condition's (mean) | higher |
| openpose | keypoint distance: per joint, re-detected to drawn, over the diagonal; a missed one is 1 (mean) | lower |
| normal | the angle between re-estimated and condition normals, in degrees (mean) | lower |
| tile | SSIM of the picture, brought to the condition's size, against it (mean) | higher |
| shapes (the demo) | IoU of the generated circle with the outlined one (median); its colour right (share) | higher |

A metric is data (`Metric`); a new kind's metric is one entry in `METRICS`. Nothing here imports torch or an
annotator until a score is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Metric:
    """One score: `compare(detected, condition, prompt)` on RGB uint8 arrays of the condition's size, where
    `detected` is the map `annotator` re-detects from the picture (the picture itself when `annotator` is None).
    `compare` is a function or a "module:function" reference (a package that plugs its own domain in)."""

    name: str
    compare: Callable[[np.ndarray, np.ndarray, str], float] | str
    annotator: str | None
    higher_is_better: bool = True
    summary: str = "mean"  # or "median" (the demo reports its median IoU)
    unit: str = ""

    def function(self) -> Callable[[np.ndarray, np.ndarray, str], float]:
        """`compare`, its "module:function" reference resolved."""
        if callable(self.compare):
            return self.compare
        import importlib

        module, _, attribute = self.compare.partition(":")
        return getattr(importlib.import_module(module), attribute)

    def summarise(self, scores: list[float]) -> float | None:
        """The summary over the pictures (NaN scores, e.g. an empty prompt for the demo, left out); None if none."""
        kept = [s for s in scores if not np.isnan(s)]
        if not kept:
            return None
        return float(np.median(kept) if self.summary == "median" else np.mean(kept))


def _grey(array: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(array).convert("L"))


def edge_f1(detected: np.ndarray, condition: np.ndarray, prompt: str = "") -> float:
    """F1 of the white pixels of `detected` against those of `condition`, pixel for pixel; NaN when neither has
    one (nothing to find, nothing found: no score, rather than a perfect or a zero one)."""
    found, truth = _grey(detected) > 127, _grey(condition) > 127
    if not found.any() and not truth.any():
        return float("nan")
    hits = float((found & truth).sum())
    if not hits:
        return 0.0
    precision, recall = hits / found.sum(), hits / truth.sum()
    return 2 * precision * recall / (precision + recall)


def ssim(detected: np.ndarray, condition: np.ndarray, prompt: str = "") -> float:
    """Structural similarity of the grey levels, as Wang et al. define it (scikit-image with their Gaussian window,
    sigma 1.5, and population covariances)."""
    from skimage.metrics import structural_similarity

    a, b = _grey(detected), _grey(condition)
    side = min(a.shape)
    window = min(11, side if side % 2 else side - 1)  # odd and at most the picture's side (scikit-image's rule)
    return float(structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, win_size=window))


def rmse(detected: np.ndarray, condition: np.ndarray, prompt: str = "") -> float:
    """Root mean square difference of the grey levels (0-255)."""
    difference = _grey(detected).astype(np.float64) - _grey(condition).astype(np.float64)
    return float(np.sqrt(np.mean(difference ** 2)))


def mean_iou(detected: np.ndarray, condition: np.ndarray, prompt: str = "") -> float:
    """Mean IoU over the classes of either map, a pixel's class being its nearest colour of the ADE20K palette the
    segmentation ControlNet uses (so colours blended by JPEG still count as their class). Pixels on a class boundary
    of either map are left out: resizing turns a boundary into slivers of other palette colours, each of which would
    otherwise count as a class of its own."""
    h, w = detected.shape[:2]
    a, b = _classes(detected).reshape(h, w), _classes(condition).reshape(h, w)
    inside = ~(_boundary(a) | _boundary(b))
    a, b = a[inside], b[inside]
    classes = np.union1d(a, b)
    if not len(classes):
        return float("nan")
    return float(np.mean([((a == c) & (b == c)).sum() / ((a == c) | (b == c)).sum() for c in classes]))


def _boundary(labels: np.ndarray) -> np.ndarray:
    """Pixels whose class differs from one of their four neighbours'."""
    edge = np.zeros(labels.shape, bool)
    edge[1:] |= labels[1:] != labels[:-1]
    edge[:-1] |= labels[:-1] != labels[1:]
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    return edge


def _classes(array: np.ndarray) -> np.ndarray:
    """Each pixel's nearest palette colour, by number (ADE20K's 150 colours, as controlnet-aux draws them)."""
    from controlnet_aux.util import ade_palette

    palette = np.asarray(ade_palette(), np.int32)
    colours, inverse = np.unique(array.reshape(-1, 3), axis=0, return_inverse=True)
    distances = ((colours[:, None, :].astype(np.int32) - palette[None]) ** 2).sum(-1)
    return distances.argmin(axis=1)[inverse.reshape(-1)]


def keypoint_distance(detected: np.ndarray, condition: np.ndarray, prompt: str = "") -> float:
    """Per joint drawn in the condition (OpenPose's colour for each of its 18 joints), the distance between its
    centre there and in the re-detected skeleton, over the picture's diagonal; a joint not found counts 1. Joints
    are found by their colours, so one person a picture is scored exactly (with several, a joint's centre is
    theirs averaged). NaN when the condition shows no joint."""
    diagonal = float(np.hypot(*condition.shape[:2]))
    distances = []
    for colour in _JOINT_COLOURS:
        truth = _centre(condition, colour)
        if truth is None:
            continue
        found = _centre(detected, colour)
        distances.append(1.0 if found is None else min(1.0, float(np.hypot(*(truth - found))) / diagonal))
    return float(np.mean(distances)) if distances else float("nan")


# OpenPose's joint colours as controlnet-aux draws them (open_pose/util.py draw_bodypose); limbs are drawn at 60%.
_JOINT_COLOURS = ((255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
                  (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255),
                  (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85))


def _centre(array: np.ndarray, colour: tuple[int, int, int], tolerance: int = 24) -> np.ndarray | None:
    near = np.abs(array.astype(np.int16) - np.array(colour, np.int16)).max(axis=-1) <= tolerance
    ys, xs = np.nonzero(near)
    return np.array([ys.mean(), xs.mean()]) if len(ys) else None


def normal_angle(detected: np.ndarray, condition: np.ndarray, prompt: str = "") -> float:
    """Mean angle in degrees between the normals the two maps encode (RGB = (xyz + 1) / 2)."""
    def unit(array: np.ndarray) -> np.ndarray:
        v = array.astype(np.float64) / 127.5 - 1.0
        return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-6)

    cosine = np.clip((unit(detected) * unit(condition)).sum(axis=-1), -1.0, 1.0)
    return float(np.degrees(np.arccos(cosine)).mean())


METRICS: Mapping[str, tuple[Metric, ...]] = MappingProxyType({
    "canny": (Metric("canny F1", edge_f1, "canny"),),
    "mlsd": (Metric("line F1", edge_f1, "mlsd"),),
    "softedge": (Metric("soft-edge SSIM", ssim, "softedge"),),
    "lineart": (Metric("line-art SSIM", ssim, "lineart"),),
    "scribble": (Metric("scribble SSIM", ssim, "fake_scribble"),),
    "depth": (Metric("depth RMSE", rmse, "depth", higher_is_better=False),),
    "seg": (Metric("segmentation mIoU", mean_iou, "seg"),),
    "openpose": (Metric("keypoint distance", keypoint_distance, "openpose", higher_is_better=False),),
    "normal": (Metric("normal angle", normal_angle, "normal", higher_is_better=False, unit="°"),),
    "tile": (Metric("tile SSIM", ssim, None),),
    "shapes": (Metric("circle IoU", "shapes.data:circle_iou_array", None, summary="median"),
               Metric("circle colour right", "shapes.data:circle_colour_right", None)),
})

# The kind of ControlNet each metric's name scores, where it differs (the demo's circles are drawn as scribbles).
UNIT_KINDS: Mapping[str, str] = MappingProxyType({"shapes": "scribble"})


def metrics_for(name: str) -> tuple[Metric, ...]:
    """The metrics of kind (or domain) `name`; ValueError naming the choices."""
    if name not in METRICS:
        raise ValueError(f"metric={name!r} has no fidelity metric: choose one of {sorted(METRICS)}")
    return METRICS[name]


def score(metric: Metric, picture: Image.Image, condition: Image.Image, prompt: str, loading: Any = None) -> float:
    """`metric` of one generated `picture` against its `condition` map. The annotator sees the picture at its own
    size, up to the annotator's detection resolution; its map is brought to the condition's size. Raises the
    annotator's error (AnnotatorError naming the weights) when its model cannot be loaded."""
    condition_rgb = np.asarray(condition.convert("RGB"))
    if metric.annotator is None:
        detected = picture.convert("RGB")
    else:
        from annotators.detect import detect
        from annotators.registry import get_annotator

        resolution = min(get_annotator(metric.annotator).detect_resolution, min(picture.size))
        detected = detect(metric.annotator, picture, detect_resolution=resolution, loading=loading)
    if detected.size != condition.size:  # a map keeps its exact values; a picture (tile) is averaged down
        detected = detected.resize(condition.size, Image.Resampling.BOX if metric.annotator is None
                                   else Image.Resampling.NEAREST)
    return float(metric.function()(np.asarray(detected), condition_rgb, prompt))
