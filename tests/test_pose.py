"""Poses as data (annotators/pose.py): OpenPose JSON in the A1111 openpose-editor's format read, checked and written
back; the map drawn where the keypoints are, in OpenPose's colours; detection turned into an editable pose."""

import json

import numpy as np
import pytest

from annotators import AnnotatorError
from annotators.pose import default_pose, detect_pose, parse_pose, pose_json, render_pose

RIGHT_WRIST = 4
WRIST_COLOUR = (170, 255, 0)  # OpenPose's colour of keypoint 4, as controlnet-aux draws it


def wrist_pixels(image):
    """Where the map shows the right wrist's joint colour exactly."""
    array = np.asarray(image)
    return np.argwhere((array == WRIST_COLOUR).all(axis=-1))


def test_a_pose_round_trips_through_openpose_json():
    pose = default_pose(640, 480)
    text = json.dumps(pose_json(pose))
    again = parse_pose(text)
    assert (again.width, again.height, len(again.people)) == (640, 480, 1)
    assert np.allclose(again.people[0].body, pose.people[0].body, atol=0.01)  # written to 2 decimals
    # The A1111 editor exports a list holding one canvas; missing points have confidence 0.
    exported = pose_json(pose)
    exported["people"][0]["pose_keypoints_2d"][3 * 16 + 2] = 0.0
    assert parse_pose([exported]).people[0].body[16] is None


def test_the_map_shows_the_wrist_where_the_keypoint_is():
    pose = default_pose(256, 256)
    before = wrist_pixels(render_pose(pose))
    pose.people[0].body[RIGHT_WRIST] = (200.0, 40.0)
    moved = render_pose(pose)
    after = wrist_pixels(moved)
    assert moved.size == (256, 256)
    assert len(before) and len(after)
    assert np.abs(after.mean(axis=0) - (40, 200)).max() < 2  # (row, column) of the circle's centre
    assert np.abs(before.mean(axis=0) - (0.55 * 256, 0.35 * 256)).max() < 2


def test_hands_and_a_face_are_drawn_and_two_people_both():
    pose = default_pose(256, 256)
    person = pose.people[0]
    person.left_hand = [(150 + i, 140 + i) for i in range(21)]
    person.face = [(128 + (i % 10), 40 + i // 10) for i in range(70)]
    with_parts = np.asarray(render_pose(pose))
    assert (with_parts[140:162, 150:172] > 0).any()
    assert (with_parts[40:48, 128:139] == 255).all(axis=-1).any()  # the face's white dots
    two = parse_pose(json.dumps({"canvas_width": 256, "canvas_height": 256, "people": [
        pose_json(default_pose(256, 256))["people"][0],
        {"pose_keypoints_2d": [v + (10 if i % 3 == 0 else 0) for i, v in
                               enumerate(pose_json(default_pose(256, 256))["people"][0]["pose_keypoints_2d"])]}]}))
    assert len(two.people) == 2 and len(wrist_pixels(render_pose(two))) > len(wrist_pixels(render_pose(pose)))


@pytest.mark.parametrize("value, message", [
    ("{not json", "not valid JSON"),
    ({"canvas_width": 5, "canvas_height": 512, "people": []}, "canvas_width=5"),
    ({"canvas_width": 512, "canvas_height": 512, "people": [{"pose_keypoints_2d": [1, 2, 3]}]},
     r"people\[0\].pose_keypoints_2d must hold 18 points"),
    ({"canvas_width": 512, "canvas_height": 512, "people": [{"face_keypoints_2d": [0] * 210}]},
     r"people\[0\] has no pose_keypoints_2d"),
    ({"canvas_width": 512, "canvas_height": 512, "people": [{}] * 17}, "at most 16 people"),
    ("x" * 300_000, "at most 200000"),
])
def test_bad_pose_json_is_refused_by_name(value, message):
    with pytest.raises(AnnotatorError, match=message):
        parse_pose(value)


@pytest.mark.slow  # the fast tier keeps the library's checks; this one loads more
def test_detection_gives_an_editable_pose_on_the_canvas_asked(annotator_weights, astronaut, monkeypatch):
    """Random OpenPose weights find whatever they find; what is checked is the plumbing: the detector's normalised
    keypoints come back in pixels of the canvas asked for, and render at that size."""
    from unittest import mock

    from controlnet_aux.open_pose import OpenposeDetector

    monkeypatch.setenv("CNET_ANNOTATORS", str(annotator_weights["aux"]))
    real = OpenposeDetector.detect_poses
    seen = []

    def spy(self, image, **kwargs):
        found = real(self, image, **kwargs)
        seen.append((image.shape, kwargs, found))
        return found

    with mock.patch.object(OpenposeDetector, "detect_poses", spy):
        pose = detect_pose(astronaut, 320, 240)
    (shape, kwargs, found), = seen
    assert shape[:2] == (512, 512) and kwargs == {"include_hand": True, "include_face": True}
    assert (pose.width, pose.height, len(pose.people)) == (320, 240, len(found))
    for person, result in zip(pose.people, found):
        for point, keypoint in zip(person.body, result.body.keypoints):
            assert (point is None) == (keypoint is None)
            if point is not None:
                assert point == pytest.approx((keypoint.x * 320, keypoint.y * 240))
    assert render_pose(pose).size == (320, 240)


@pytest.mark.slow  # the fast tier keeps the library's checks; this one loads more
def test_the_cli_renders_a_pose_and_detects_one(tmp_path, annotator_weights, astronaut, capsys):
    from PIL import Image

    from annotators.cli import main

    pose = default_pose(200, 160)
    pose.people[0].body[RIGHT_WRIST] = (150.0, 30.0)
    (tmp_path / "pose.json").write_text(json.dumps([pose_json(pose)]))
    assert main(["pose", "--json", str(tmp_path / "pose.json"), "--out", str(tmp_path / "map.png")]) == 0
    rendered = Image.open(tmp_path / "map.png")
    assert rendered.size == (200, 160)
    assert np.abs(wrist_pixels(rendered).mean(axis=0) - (30, 150)).max() < 2
    Image.fromarray(astronaut).save(tmp_path / "photo.png")
    assert main(["pose", "--image", str(tmp_path / "photo.png"), "--out", str(tmp_path / "found.json"),
                 "--width", "256", "--height", "256", "--weights", str(annotator_weights["aux"])]) == 0
    assert parse_pose((tmp_path / "found.json").read_text()).width == 256
    (tmp_path / "bad.json").write_text('{"canvas_width": 64}')
    assert main(["pose", "--json", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.png")]) == 2
    assert "canvas_height=None" in capsys.readouterr().err


def test_a_pose_without_people_is_refused_by_name():
    from annotators.pose import Pose, require_people

    with pytest.raises(AnnotatorError, match="the pose has no person"):
        require_people(Pose(64, 64, []))
