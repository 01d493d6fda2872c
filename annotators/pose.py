"""Poses as data: OpenPose keypoints that a person can edit, import, export and render into the map an openpose
ControlNet reads.

The format is OpenPose's JSON as the A1111 openpose-editor extension reads and writes it, so poses travel between
tools: `{"canvas_width": W, "canvas_height": H, "people": [{"pose_keypoints_2d": [x, y, c, ...] (18 points),
"hand_left_keypoints_2d": [...] (21), "hand_right_keypoints_2d": [...] (21), "face_keypoints_2d": [...] (70)}]}` in
pixels of the canvas; a confidence of 0 marks a point that is not there. The map is drawn by controlnet-aux's own
OpenPose drawing (the colours and limb widths the ControlNets were trained on), never by a copy of it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .registry import AnnotatorError

BODY_POINTS, HAND_POINTS, FACE_POINTS = 18, 21, 70
MAX_PEOPLE = 16
MAX_JSON_CHARS = 200_000  # 16 people with hands and faces take about 40,000
Point = tuple[float, float] | None  # pixels of the canvas; None: not there

# OpenPose's body order: nose, neck, then right/left shoulder, elbow, wrist, hip, knee, ankle, eyes and ears. A person
# standing and facing the viewer (their right on the image's left), as fractions of the canvas.
STANDING = ((0.5, 0.18), (0.5, 0.28), (0.4, 0.28), (0.37, 0.42), (0.35, 0.55), (0.6, 0.28), (0.63, 0.42),
            (0.65, 0.55), (0.45, 0.56), (0.45, 0.73), (0.45, 0.9), (0.55, 0.56), (0.55, 0.73), (0.55, 0.9),
            (0.48, 0.16), (0.52, 0.16), (0.46, 0.17), (0.54, 0.17))
PARTS = {"body": ("pose_keypoints_2d", BODY_POINTS), "left_hand": ("hand_left_keypoints_2d", HAND_POINTS),
         "right_hand": ("hand_right_keypoints_2d", HAND_POINTS), "face": ("face_keypoints_2d", FACE_POINTS)}


@dataclass
class Person:
    """One person's keypoints (pixels; None where a point is not there); hands and face None when absent."""

    body: list[Point]
    left_hand: list[Point] | None = None
    right_hand: list[Point] | None = None
    face: list[Point] | None = None


@dataclass
class Pose:
    """A canvas of `width` x `height` px and the people on it."""

    width: int
    height: int
    people: list[Person] = field(default_factory=list)


def default_pose(width: int = 512, height: int = 512) -> Pose:
    """One person standing in the middle of a `width` x `height` canvas: where an editor starts."""
    return Pose(width, height, [Person([(x * width, y * height) for x, y in STANDING])])


def parse_pose(value: Any, max_side: int = 8192) -> Pose:
    """A pose from OpenPose JSON (text, or the parsed dict); AnnotatorError naming what is wrong otherwise.
    `canvas_width`/`canvas_height` (or `width`/`height`) give the canvas, at most `max_side` px a side (its map is
    drawn at that size); every coordinate must be a finite number."""
    if isinstance(value, str):
        if len(value) > MAX_JSON_CHARS:
            raise AnnotatorError(f"pose JSON is {len(value)} characters long; at most {MAX_JSON_CHARS} are accepted")
        try:
            value = json.loads(value)
        except ValueError as err:
            raise AnnotatorError(f"pose JSON is not valid JSON: {err}") from None
    if isinstance(value, list) and len(value) == 1:  # the A1111 editor exports a list of one canvas
        value = value[0]
    if not isinstance(value, dict):
        raise AnnotatorError(f"pose JSON must be an object with canvas_width, canvas_height and people, not "
                             f"{type(value).__name__}")
    width, height = (_side(value, key, max_side) for key in ("width", "height"))
    people = value.get("people") or []
    if not isinstance(people, list) or len(people) > MAX_PEOPLE:
        raise AnnotatorError(f"pose JSON: people must be a list of at most {MAX_PEOPLE} people")
    return Pose(width, height, [_person(i, entry) for i, entry in enumerate(people)])


def _side(value: dict[str, Any], name: str, max_side: int) -> int:
    side = value.get(f"canvas_{name}", value.get(name))
    if isinstance(side, bool) or not isinstance(side, (int, float)) or not 16 <= side <= max_side:
        raise AnnotatorError(f"pose JSON: canvas_{name}={side!r} must be a number of pixels from 16 to {max_side}")
    return int(side)


def _person(i: int, entry: Any) -> Person:
    if not isinstance(entry, dict):
        raise AnnotatorError(f"pose JSON: people[{i}] must be an object of keypoint lists")
    parts: dict[str, list[Point] | None] = {}
    for part, (key, count) in PARTS.items():
        flat = entry.get(key)
        if not flat:
            parts[part] = None
            continue
        if not isinstance(flat, list) or len(flat) != 3 * count or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in flat):
            raise AnnotatorError(f"pose JSON: people[{i}].{key} must hold {count} points as {3 * count} finite "
                                 "numbers (x, y, confidence)")
        parts[part] = [(flat[j], flat[j + 1]) if flat[j + 2] > 0 else None for j in range(0, len(flat), 3)]
    if parts["body"] is None:
        raise AnnotatorError(f"pose JSON: people[{i}] has no pose_keypoints_2d (its body)")
    return Person(**parts)


def pose_json(pose: Pose) -> dict[str, Any]:
    """The pose as OpenPose JSON (the A1111 openpose-editor's format): what `parse_pose` reads back."""
    def flat(points: list[Point] | None) -> list[float] | None:
        if points is None:
            return None
        return [v for point in points for v in ((round(point[0], 2), round(point[1], 2), 1.0) if point else
                                                 (0.0, 0.0, 0.0))]

    return {"canvas_width": pose.width, "canvas_height": pose.height,
            "people": [{key: flat(getattr(person, part)) for part, (key, _) in PARTS.items()
                        if getattr(person, part) is not None} for person in pose.people]}


def require_people(pose: Pose) -> Pose:
    """`pose`, unless it has nobody on it (its map would be black: a run would follow nothing)."""
    if not pose.people:
        raise AnnotatorError("the pose has no person: add one (Add person) or reset it")
    return pose


def render_pose(pose: Pose) -> Image.Image:
    """The openpose map of `pose` at its canvas size: body limbs and joints, hands and face where present, drawn by
    controlnet-aux's OpenPose functions on black."""
    import numpy as np
    from controlnet_aux.open_pose import util
    from controlnet_aux.open_pose.body import Keypoint

    def keypoints(points: list[Point] | None) -> list[Any] | None:  # controlnet-aux draws from fractions
        if points is None:
            return None
        return [None if p is None else Keypoint(p[0] / pose.width, p[1] / pose.height) for p in points]

    canvas = np.zeros((pose.height, pose.width, 3), dtype=np.uint8)
    for person in pose.people:
        canvas = util.draw_bodypose(canvas, keypoints(person.body))
        for hand in (person.left_hand, person.right_hand):
            if hand is not None:
                canvas = util.draw_handpose(canvas, keypoints(hand))
        if person.face is not None:
            canvas = util.draw_facepose(canvas, keypoints(person.face))
    return Image.fromarray(canvas)


def detect_pose(photo: Any, width: int | None = None, height: int | None = None, *, detect_resolution: int = 512,
                loading: Any = None) -> Pose:
    """The people OpenPose finds in `photo` (body, hands and face), as an editable pose on a `width` x `height`
    canvas (default: the photo's own size). The weights are the openpose annotator's (CNET_ANNOTATORS)."""
    from .detect import annotator_model
    from .images import resize_to_resolution, to_rgb_array

    rgb = to_rgb_array(photo, what="pose photo")
    height_px, width_px = rgb.shape[:2]
    model = annotator_model("openpose", loading)
    found = model.detect_poses(resize_to_resolution(rgb, detect_resolution), include_hand=True, include_face=True)
    return pose_from_detections(found, width or width_px, height or height_px)


def pose_from_detections(results: list[Any], width: int, height: int) -> Pose:
    """controlnet-aux's `OpenposeDetector.detect_poses` results (normalised keypoints) as an editable pose on a
    `width` x `height` canvas."""
    def points(found: list[Any] | None) -> list[Point] | None:
        if found is None:
            return None
        return [(k.x * width, k.y * height) if k is not None else None for k in found]

    return Pose(width, height, [Person(points(r.body.keypoints), points(r.left_hand), points(r.right_hand),
                                       points(r.face)) for r in results])
