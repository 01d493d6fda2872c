"""Condition maps from photos and drawings: canny, depth, pose, scribbles and the other ControlNet 1.1 kinds.

Importing this package loads no model; `detect(name, image, ...)` loads a detector on first use.
"""

from .detect import detect
from .images import ImageInputError, open_image, to_rgb_array
from .registry import ANNOTATORS, Annotator, AnnotatorError, ModelCache, Param, get_annotator
from .scribble import Scribble, scribble_from_drawing

__all__ = [
    "ANNOTATORS", "Annotator", "AnnotatorError", "ImageInputError", "ModelCache", "Param", "Scribble", "detect",
    "get_annotator", "open_image", "scribble_from_drawing", "to_rgb_array",
]
