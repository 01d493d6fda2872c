"""The shipped demo model (examples/shapes): it loads, it really controls, it stands in when SD1.5 is missing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnet.demo import DEMO_BASE, DEMO_CONTROLNET, demo_available


def test_shipped_models_load_through_cnet_and_diffusers_directly():
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

    assert demo_available()
    pipe = StableDiffusionControlNetPipeline.from_pretrained(
        DEMO_BASE, controlnet=ControlNetModel.from_pretrained(DEMO_CONTROLNET), safety_checker=None,
        requires_safety_checker=False)
    assert pipe.vae_scale_factor * pipe.unet.config.sample_size == 64
    card = (DEMO_CONTROLNET / "README.md").read_text()
    assert "cnet studio" in card and "Empty prompts" in card
    size = sum(p.stat().st_size for p in DEMO_BASE.parent.rglob("*") if p.is_file())
    assert size < 20 * 2**20  # the bundle stays small enough to ship in the repository


def test_the_controlnet_really_controls():
    """8 held-out circles, 10 DDIM steps, CFG 5: the circle IoU with the ControlNet is far above the base alone.

    Measured when shipped: median 0.92 / mean 0.91 with the ControlNet, 0.23 / 0.20 without, every circle in the
    prompt's colour (deterministic on CPU; the margins absorb other CPUs' rounding).
    """
    from cnet.engine import Engine
    from shapes.eval import evaluate_shapes

    engine = Engine(str(DEMO_BASE), device="cpu")
    controlled = evaluate_shapes(n=8, steps=10, strength=1.0, engine=engine)
    alone = evaluate_shapes(n=8, steps=10, strength=0.0, engine=engine)
    assert controlled["median_iou"] > 0.7 and alone["median_iou"] < 0.35
    assert np.mean(controlled["ious"]) > np.mean(alone["ious"]) + 0.35
    assert controlled["share_iou_above_0.5"] >= 0.6
    assert controlled["colour_right"] >= 0.85  # the base's text conditioning survives the ControlNet


@pytest.mark.slow
def test_the_shipped_controlnet_meets_its_goal_on_the_held_out_circles():
    """The demo's own evaluation (32 held-out circles, DDIM 20, CFG 5, float32): median circle IoU 0.904 and the
    colour right in every circle on the machine that trained it (docs/demo-eval.json). Goals: 0.9 and 95%; the
    median may round differently on another CPU, so 0.005 below the goal is allowed and said."""
    from cnet.engine import Engine
    from shapes.eval import evaluate_shapes

    scores = evaluate_shapes(n=32, steps=20, guidance=5.0, engine=Engine(str(DEMO_BASE), device="cpu"))
    assert scores["median_iou"] >= 0.9 - 0.005 and scores["colour_right"] >= 0.95


def test_dataset_generator_is_seeded_and_matches_its_prompts(tmp_path):
    from PIL import Image

    from shapes.data import load_palette, write_dataset

    a = write_dataset(tmp_path / "a", 6, seed=3)
    b = write_dataset(tmp_path / "b", 6, seed=3)
    assert (a / "prompt.json").read_text() == (b / "prompt.json").read_text()
    palette = load_palette()
    assert len(palette) >= 8
    for line in (a / "prompt.json").read_text().splitlines():
        row = json.loads(line)
        image = np.asarray(Image.open(a / row["target"]))
        colour, _, _, background, _ = row["prompt"].split()
        x, y = row["centre"]
        assert tuple(image[y, x]) == tuple(palette[colour]) and tuple(image[0, 0]) in (tuple(palette[background]),
                                                                                     tuple(palette[colour]))
        outline = np.asarray(Image.open(a / row["source"]))
        assert outline.max() == 255 and outline[y, x].max() == 0  # an outline, not a filled disc


def test_base_pretraining_script_runs_a_few_steps(tmp_path):
    for stage in ("vae", "unet"):
        proc = subprocess.run([sys.executable, "-m", "shapes", "pretrain", stage, "--out", str(tmp_path / "base"),
                               "--steps", "2", "--batch-size", "4"], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "base", safety_checker=None)
    assert pipe.tokenizer("red circle with blue background", add_special_tokens=False).input_ids.__len__() == 5


def test_demo_stands_in_when_stable_diffusion_is_missing(monkeypatch, tmp_path):
    from huggingface_hub import constants

    from webui.service import Studio, UnitInput
    from webui.settings import AppSettings

    monkeypatch.delenv("CNET_BASE_MODEL", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    studio = Studio(AppSettings(output_dir=tmp_path))
    assert studio.demo_mode
    outline = np.zeros((256, 256, 3), np.uint8)
    import cv2

    cv2.circle(outline, (128, 128), 70, (255, 255, 255), 8)
    result, _ = studio.generate([UnitInput("photo", outline, kind="scribble")], prompt_mode="custom",
                                prompt="red circle with blue background", num_inference_steps=5, seed=0)
    assert result.images[0].size == (64, 64)
    assert result.metadata[0]["controlnets"][0]["model"] == str(DEMO_CONTROLNET)


def test_cli_falls_back_with_a_notice(tmp_path):
    import os

    from PIL import Image

    Image.open(Path(__file__).resolve().parents[1] / "examples" / "shapes" / "circle-0.png").save(tmp_path / "c.png")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNET_") or k == "CNET_DTYPE"}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run([sys.executable, "-m", "cnet", "generate", "--image", str(tmp_path / "c.png"),
                           "--prompt", "red circle with blue background", "--steps", "3", "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "notice: Stable Diffusion is not on this machine" in proc.stderr
    assert Image.open(proc.stdout.split()[0]).size == (64, 64)


pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]


def test_control_modes_move_the_result_the_documented_way():
    """A1111's control modes on 8 held-out circles at the paper's CFG 9, 10 DDIM steps. Measured (CPU, float32) with
    the ControlNet shipped since 2026-12-07: mean IoU 0.824 "My prompt is more important", 0.822 balanced, 0.907
    "ControlNet is more important" (0.668 / 0.694 / 0.858 with the earlier, weaker one): the ControlNet mode follows
    the outline more than the prompt mode (on this stronger model the prompt mode no longer loosens it below
    balanced)."""
    from cnet.engine import Engine
    from shapes.eval import evaluate_shapes

    engine = Engine(str(DEMO_BASE), device="cpu")
    prompt = evaluate_shapes(n=8, steps=10, guidance=9.0, engine=engine, control_mode="prompt")
    control = evaluate_shapes(n=8, steps=10, guidance=9.0, engine=engine, control_mode="control")
    assert np.mean(control["ious"]) > np.mean(prompt["ious"]) + 0.05
    assert control["median_iou"] > prompt["median_iou"] and control["colour_right"] >= 0.85


def test_editing_works_offline_on_the_demo(tmp_path, monkeypatch):
    """Demo mode edits too: inpaint a new circle into a plain picture (the user's outline as the condition), and
    recolour a circle by img2img (its canny outline made from the picture). Measured when written (6 each): inpaint
    median IoU 0.69, colour right 6/6, every unmasked pixel kept; recolouring right 6/6."""
    from PIL import Image

    from shapes.data import draw, iou, load_palette, nearest_colour, random_circle, segment
    from webui.service import Studio, UnitInput
    from webui.settings import AppSettings

    for name in [k for k in __import__("os").environ if k.startswith("CNET_") and k != "CNET_DTYPE"]:
        monkeypatch.delenv(name)
    studio = Studio(AppSettings(output_dir=tmp_path))
    assert studio.demo_mode
    palette = load_palette()
    rng = np.random.default_rng(11)
    ious, colours = [], []
    for i in range(6):
        circle = random_circle(rng, palette)
        _, outline, truth = draw(circle, palette)
        plain = np.zeros((64, 64, 3), np.uint8) + np.array(palette[circle.background], np.uint8)
        ys, xs = np.nonzero(truth)
        mask = np.zeros((64, 64), np.uint8)
        mask[max(0, ys.min() - 4):ys.max() + 5, max(0, xs.min() - 4):xs.max() + 5] = 255
        result, _ = studio.edit(Image.fromarray(plain), [UnitInput("map", Image.fromarray(outline), kind="scribble")],
                                operation="inpaint", mask=Image.fromarray(mask), prompt_mode="custom",
                                prompt=circle.prompt, guidance_scale=5.0, seed=i, denoise=1.0, keep_unmasked=True,
                                mask_blur=2)
        image = np.asarray(result.images[0])
        assert (image[mask == 0] == plain[mask == 0]).all()
        found = segment(image, palette[circle.colour], palette[circle.background])
        ious.append(iou(found, truth))
        colours.append(nearest_colour(image, found, palette) == circle.colour)
    assert np.median(ious) > 0.5 and sum(colours) >= 5

    rng = np.random.default_rng(7)
    recoloured = []
    for i in range(6):
        circle = random_circle(rng, palette)
        picture, _, _ = draw(circle, palette)
        others = [name for name in palette if name not in (circle.colour, circle.background)]
        colour, background = others[i % len(others)], others[(i + 3) % len(others)]
        result, _ = studio.edit(Image.fromarray(picture), [UnitInput("photo", None, kind="canny")],
                                operation="img2img", prompt_mode="custom",
                                prompt=f"{colour} circle with {background} background", guidance_scale=5.0, seed=i,
                                denoise=0.9)
        image = np.asarray(result.images[0])
        recoloured.append(nearest_colour(image, segment(image, palette[colour], palette[background]),
                                         palette) == colour)
    assert sum(recoloured) >= 5


@pytest.mark.slow
def test_the_command_line_refuses_demo_edits_that_change_the_size(tmp_path):
    """`cnet edit --outpaint-right 32` and `--upscale 2` on the demo: refused by name (they returned a 64x64 crop or
    circle before, silently), nothing saved; img2img still runs."""
    picture = Path(__file__).resolve().parents[1] / "examples" / "shapes" / "picture-0.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNET_") or k == "CNET_DTYPE"}
    env["HF_HUB_OFFLINE"] = "1"

    def edit(*flags):
        return subprocess.run([sys.executable, "-m", "cnet", "edit", "--picture", str(picture), "--kind", "canny",
                               "--prompt", "red circle with blue background", "--steps", "2", "--out",
                               str(tmp_path / "out"), *flags], capture_output=True, text=True, timeout=300, env=env)

    for flags, operation in ((["--outpaint-right", "32"], "outpaint"), (["--upscale", "2"], "upscale")):
        proc = edit(*flags)
        assert proc.returncode == 2 and f"operation='{operation}' needs Stable Diffusion" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert edit().returncode == 0
