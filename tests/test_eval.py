"""Fidelity you can compare: each kind's metric (cnet/metrics.py) on maps with known answers, every kind's metric
through its real annotator (random weights), `python -m cnet eval` on tiny models and a training run, and on the demo
model against the demo's own evaluation."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from cnet.metrics import METRICS, edge_f1, keypoint_distance, mean_iou, metrics_for, normal_angle, rmse, score, ssim


def ring(shift: int = 0, size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - 30, xx - 34 - shift)
    return np.stack([((r > 14) & (r < 17)).astype(np.uint8) * 255] * 3, axis=-1)


def test_edge_f1_counts_pixels_that_match():
    assert edge_f1(ring(), ring()) == 1.0
    assert edge_f1(np.zeros_like(ring()), ring()) == 0.0
    assert math.isnan(edge_f1(np.zeros_like(ring()), np.zeros_like(ring())))  # nothing to find: no score
    shifted = edge_f1(ring(1), ring())
    found, truth = ring(1)[..., 0] > 0, ring()[..., 0] > 0
    hits = (found & truth).sum()
    assert shifted == pytest.approx(2 * hits / (found.sum() + truth.sum()), abs=1e-9) and 0 < shifted < 1


def test_ssim_rmse_and_miou_on_known_maps():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert ssim(ring(), ring()) == pytest.approx(1.0) and ssim(noise, ring()) < 0.2
    assert ssim(ring()[:6, :6], ring()[:6, :6]) == pytest.approx(1.0)  # a side under the window: a smaller one
    grey = np.full((8, 8, 3), 100, np.uint8)
    assert rmse(grey + 10, grey) == pytest.approx(10.0)
    left = np.zeros((4, 16, 3), np.uint8)
    left[:, :8] = (255, 0, 0)
    assert mean_iou(left, left) == 1.0
    moved = np.zeros_like(left)
    moved[:, :12] = (255, 0, 0)  # red grows by four columns; the boundary columns (7, 8, 11, 12) are left out:
    assert mean_iou(moved, left) == pytest.approx((7 / 9 + 3 / 5) / 2)  # red 7 of 9 columns, black 3 of 5


def test_miou_counts_colours_blended_by_resizing_as_their_class():
    """A segmentation map resized bicubically (as validation conditions are) blends colours at the boundaries:
    read as distinct colours that made 35 classes and mIoU 0.08 for a perfect picture; by palette class, it stays
    near 1."""
    from controlnet_aux.util import ade_palette

    palette = np.asarray(ade_palette(), np.uint8)
    seg = np.zeros((96, 96, 3), np.uint8)
    seg[:, :40], seg[:, 40:70], seg[:, 70:] = palette[2], palette[12], palette[6]
    blended = np.asarray(Image.fromarray(seg).resize((64, 64), Image.Resampling.BICUBIC))
    exact = np.asarray(Image.fromarray(seg).resize((64, 64), Image.Resampling.NEAREST))
    assert len(np.unique(blended.reshape(-1, 3), axis=0)) > 3
    assert mean_iou(blended, exact) > 0.9 and mean_iou(exact, exact) == 1.0


def test_normal_angle_is_zero_for_the_same_normals_and_ninety_for_perpendicular_ones():
    up = np.full((4, 4, 3), (128, 128, 255), np.uint8)
    side = np.full((4, 4, 3), (255, 128, 128), np.uint8)
    assert normal_angle(up, up) == pytest.approx(0.0, abs=0.5)
    assert normal_angle(side, up) == pytest.approx(90.0, abs=1.0)


def test_keypoint_distance_measures_how_far_the_joints_moved_and_counts_a_missed_one_as_one():
    from controlnet_aux.open_pose.body import Keypoint
    from controlnet_aux.open_pose.util import draw_bodypose

    def pose(dx: float, drop: int | None = None) -> np.ndarray:
        points = [Keypoint(0.3 + 0.02 * (i % 5) + dx, 0.2 + 0.035 * i) for i in range(18)]
        if drop is not None:
            points[drop] = None
        return draw_bodypose(np.zeros((256, 256, 3), np.uint8), points)

    diagonal = math.hypot(256, 256)
    assert keypoint_distance(pose(0), pose(0)) == pytest.approx(0.0, abs=1e-9)
    assert keypoint_distance(pose(10 / 256), pose(0)) == pytest.approx(10 / diagonal, abs=0.5 / diagonal)
    assert keypoint_distance(pose(0, drop=4), pose(0)) == pytest.approx(1 / 18, abs=1e-3)
    assert math.isnan(keypoint_distance(pose(0), np.zeros((256, 256, 3), np.uint8)))


def test_the_demo_metrics_score_a_true_circle_high_and_a_wrong_colour_zero():
    from shapes.data import circle_colour_right, circle_iou_array, draw, load_palette, random_circle

    palette = load_palette()
    circle = random_circle(np.random.default_rng(0), palette)
    picture, condition, _ = draw(circle, palette)
    assert circle_iou_array(picture, condition, circle.prompt) > 0.9
    assert circle_colour_right(picture, condition, circle.prompt) == 1.0
    other = next(name for name in palette if name not in (circle.colour, circle.background))
    wrong = f"{other} circle with {circle.background} background"
    assert circle_colour_right(picture, condition, wrong) == 0.0
    assert math.isnan(circle_iou_array(picture, condition, ""))


def test_an_unknown_kind_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"metric='sketchy' has no fidelity metric: choose one of \['canny'"):
        metrics_for("sketchy")


@pytest.mark.slow
@pytest.mark.parametrize("kind", [k for k, metrics in METRICS.items() if metrics[0].annotator])
def test_every_kinds_metric_runs_through_its_real_annotator(kind, annotator_weights, astronaut):
    """Plumbing: the annotator (random weights, its real loader) re-detects the map from a photo, and the metric
    scores it against the map the same annotator makes of the photo itself: a finite number in the metric's range
    (random weights: the value means nothing, and the same picture need not give a perfect score after resizing)."""
    from annotators.detect import Loading, detect
    from annotators.registry import ModelCache

    metric = METRICS[kind][0]
    loading = Loading(weights=str(annotator_weights.get(metric.annotator, annotator_weights["aux"])), device="cpu",
                      cache=ModelCache())
    picture = Image.fromarray(astronaut).resize((128, 128))
    condition = detect(metric.annotator, picture, detect_resolution=128, loading=loading)
    value = score(metric, picture, condition, "an astronaut", loading)
    assert math.isfinite(value) or (kind == "openpose" and math.isnan(value))
    if metric.higher_is_better:
        assert -1.0 <= value <= 1.0
    else:
        assert math.isnan(value) or value >= 0.0


def _eval(*args):
    from cnet.cli import main

    return main(["eval", *map(str, args)])


def test_eval_compares_controlnets_and_plots_a_runs_checkpoints(tiny_models, circles, tmp_path, capsys):
    from train.config import TrainConfig
    from train.loop import train

    run = tmp_path / "run"
    train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(run), resolution=64,
                      batch_size=2, max_steps=2, checkpoint_every=1, keep_checkpoints=5, validate_every=0))
    out = tmp_path / "report"
    assert _eval("--data", circles, "--kind", "canny", "--controlnet", f"reference={tiny_models[1]}", "--run", run,
                 "--base-model", tiny_models[0], "--limit", 3, "--steps", 2, "--out", out) == 0
    report = json.loads((out / "report.json").read_text())
    # The result holds the last checkpoint's weights (no EMA): scored once.
    assert [(m["label"], m["step"]) for m in report["models"]] == [("reference", None), ("step 1", 1), ("step 2", 2)]
    for model in report["models"]:
        scores = model["metrics"]["canny F1"]["scores"]
        assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)
        assert model["metrics"]["canny F1"]["value"] == pytest.approx(float(np.mean(scores)))
        assert Image.open(out / model["grid"]).size == (128, 3 * 64)  # [condition | picture] per row
    table = (out / "report.md").read_text()
    assert "| model | rows | canny F1 ↑ |" in table and "| step 2 | 3 |" in table
    assert "3 rows of" in table and "ddim 2 steps" in table and "- step 1: [grid-01-step-1.png]" in table
    assert Image.open(out / "fidelity.png").size[0] > 200
    # Wrong input is named, and nothing is written in its place.
    assert _eval("--data", circles, "--kind", "canny", "--out", tmp_path / "none") == 2
    assert "name at least one --controlnet, or a training --run" in capsys.readouterr().err


def test_eval_names_a_missing_annotator_before_generating_anything(tiny_models, circles, tmp_path, monkeypatch,
                                                                     capsys):
    import cnet.engine

    monkeypatch.setenv("CNET_ANNOTATORS", str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    generated = []
    monkeypatch.setattr(cnet.engine.Engine, "generate", lambda self, request: generated.append(request))
    assert _eval("--data", circles, "--kind", "depth", "--controlnet", tiny_models[1], "--base-model", tiny_models[0],
                 "--out", tmp_path / "report") == 2
    assert "depth: could not load weights from" in capsys.readouterr().err
    assert generated == [] and not (tmp_path / "report").exists()


@pytest.mark.slow
def test_eval_on_the_demo_matches_the_demos_own_evaluation(tmp_path):
    """The same held-out circles (shapes.eval's seed) through `cnet eval --kind shapes` and through `python -m
    shapes eval`'s function: the median IoU agrees (eval sees only the outline, from which it fits the circle; the
    demo's own evaluation knows the true circle) and the colour verdicts are the same."""
    from shapes import DEMO_BASE, DEMO_CONTROLNET
    from shapes.data import write_dataset
    from shapes.eval import HELDOUT_SEED, evaluate_shapes

    held_out = write_dataset(tmp_path / "held-out", 8, seed=HELDOUT_SEED)
    assert _eval("--data", held_out, "--kind", "shapes", "--controlnet", DEMO_CONTROLNET, "--base-model", DEMO_BASE,
                 "--guidance", 5, "--out", tmp_path / "report") == 0
    ours = json.loads((tmp_path / "report" / "report.json").read_text())["models"][0]["metrics"]
    theirs = evaluate_shapes(DEMO_BASE, DEMO_CONTROLNET, n=8, guidance=5.0)
    assert ours["circle IoU"]["value"] == pytest.approx(theirs["median_iou"], abs=0.02)
    assert ours["circle colour right"]["value"] == pytest.approx(theirs["colour_right"])


def test_training_validation_scores_with_the_same_metrics_and_goes_on_when_an_annotator_is_missing(
        tiny_models, circles, tmp_path, monkeypatch):
    from train.config import TrainConfig
    from train.loop import train

    base = dict(base_model=str(tiny_models[0]), dataset=str(circles), resolution=64, batch_size=2, max_steps=1,
                validate_every=1, num_validation=2, validation_steps=2)
    train(TrainConfig(output_dir=str(tmp_path / "shapes"), fidelity="shapes", **base))
    record = json.loads((tmp_path / "shapes" / "validation.jsonl").read_text().splitlines()[0])
    assert set(record["metrics"]) == {"circle IoU", "circle colour right"}
    assert record["fidelity"] == record["metrics"]["circle IoU"]
    card = (tmp_path / "shapes" / "controlnet" / "README.md").read_text()
    assert "## Fidelity" in card and f"| circle IoU | {record['fidelity']:.3f} |" in card
    # Depth needs MiDaS's weights: here a folder without them. The run finishes; the record says why it has no score.
    monkeypatch.setenv("CNET_ANNOTATORS", str(tmp_path / "no-weights"))
    (tmp_path / "no-weights").mkdir()
    warnings = []
    result = train(TrainConfig(output_dir=str(tmp_path / "depth"), fidelity="depth", **base),
                   lambda event, info: warnings.append(info["message"]) if event == "warning" else None)
    record = json.loads((tmp_path / "depth" / "validation.jsonl").read_text().splitlines()[0])
    assert result is not None and record["fidelity"] is None
    assert "depth: could not load weights from" in record["fidelity_error"]
    assert any(w.startswith("validation could not score depth: ") for w in warnings)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(METRICS))
def test_eval_reports_every_kinds_metric_on_tiny_models(kind, tiny_models, circles, annotator_weights, tmp_path,
                                                        monkeypatch):
    """Plumbing, `python -m cnet eval` end to end for each kind: the tiny model generates, the kind's annotators
    (random weights, loaded as a user's local weights are: CNET_ANNOTATORS, CNET_ANNOTATOR_SEG) re-detect, the report
    holds each of the kind's metrics for both rows (a number, or n/a where a row has nothing to score)."""
    monkeypatch.setenv("CNET_ANNOTATORS", str(annotator_weights["aux"]))
    monkeypatch.setenv("CNET_ANNOTATOR_SEG", str(annotator_weights["seg"]))
    out = tmp_path / "report"
    assert _eval("--data", circles, "--kind", kind, "--controlnet", tiny_models[1], "--base-model", tiny_models[0],
                 "--limit", 2, "--steps", 1, "--out", out) == 0
    metrics = json.loads((out / "report.json").read_text())["models"][0]["metrics"]
    assert list(metrics) == [m.name for m in METRICS[kind]]
    for metric in metrics.values():
        assert len(metric["scores"]) == 2
        assert all(s is None or math.isfinite(s) for s in metric["scores"])  # None: nothing to score (strict JSON)
    assert "| controlnet | 2 |" in (out / "report.md").read_text()
