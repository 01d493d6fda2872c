"""Live mode: the presets (cnet/live.py), a frame and its staleness in the back end (webui/service.py `Studio.live`),
several sessions' strokes over HTTP, and strokes in chromium (tests/test_browser.py)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from PIL import Image

from cnet.families import FAMILIES
from cnet.live import describe_preset, live_preset_for, live_settings, live_size
from cnet.params import RequestError


def test_a_live_frame_is_smaller_on_a_cpu_and_never_larger_than_asked():
    assert live_size(None, None, 384) == (384, 384)  # the family's 512 square, scaled down
    assert live_size(768, 512, 384) == (384, 256)  # the aspect kept, multiples of 8
    assert live_size(256, 256, 384) == (256, 256)  # never scaled up
    assert live_size(1000, 250, 512, multiple=16) == (512, 128)


@pytest.mark.parametrize("device, steps, side", [("cpu", 2, 384), ("cuda", 2, 512), ("cuda:1", 2, 512)])
def test_the_sd15_preset_per_device(device, steps, side):
    family = FAMILIES["sd15"]
    asked = {"prompt": "a house", "seed": 7, "num_inference_steps": 20, "guidance_scale": 9.0, "scheduler": "euler_a",
             "num_images": 4}
    out = live_settings(family.live, family, asked, device=device)
    assert out["num_inference_steps"] == steps and (out["width"], out["height"]) == (side, side)
    assert out["fast_decode"] and out["num_images"] == 1
    # The sampler and guidance are left to the few-step mode (the LCM-LoRA's own), the prompt and seed are kept.
    assert out["scheduler"] == "default" and "guidance_scale" not in out
    assert (out["prompt"], out["seed"]) == ("a house", 7)
    assert live_settings(family.live, family, asked, device=device, fast_decode=False)["fast_decode"] is False
    assert asked["num_inference_steps"] == 20  # the caller's settings are not changed


@pytest.mark.parametrize("family", ["flux", "sd3", "sd2"])
def test_families_without_a_live_preset_are_refused_by_name(family, monkeypatch):
    import cnet.live

    monkeypatch.setattr(cnet.live, "base_family", lambda spec, config=None: FAMILIES[family])
    with pytest.raises(RequestError, match=f"live mode has no preset for {FAMILIES[family].label}"):
        live_preset_for("some/base")


def test_the_demo_runs_its_own_preset_and_says_what_it_keeps():
    from cnet.demo import demo_model

    demo = demo_model()
    preset, family = live_preset_for(None, demo)
    assert (preset.steps_on("cpu"), preset.side_on("cpu"), preset.few_step, preset.fast_decode) == (4, 64, False, False)
    line = describe_preset(preset, "the demo model", "cpu")
    assert "4 steps" in line and "keeps 93% of the default's control" in line and "looser" not in line
    from dataclasses import replace

    assert "expect looser control" in describe_preset(replace(preset, fidelity_kept=0.35), "x", "cpu")


# -- the back end, on the demo model ------------------------------------------------------------------------------


@pytest.fixture
def demo_studio(tmp_path, monkeypatch):
    """The app's back end in demo mode (no CNET_* models, the Hub offline), with no debounce."""
    for name in [k for k in os.environ if k.startswith("CNET_") and k != "CNET_DTYPE"]:
        monkeypatch.delenv(name)
    from webui.service import Studio
    from webui.settings import AppSettings

    studio = Studio(AppSettings(output_dir=tmp_path / "out"))
    assert studio.demo_mode
    studio.live_debounce = 0
    return studio


def circle_sketch() -> Image.Image:
    """A circle outline as the Draw tab sends it (black strokes on white)."""
    import cv2

    canvas = np.full((512, 512, 3), 255, np.uint8)
    cv2.circle(canvas, (256, 256), 150, (0, 0, 0), 8)
    return Image.fromarray(canvas)


def test_a_live_frame_is_the_preset_run_and_saves_nothing(demo_studio, tmp_path):
    from webui.service import UnitInput

    units = [UnitInput("draw", circle_sketch(), kind="scribble")]
    asked = {"prompt_mode": "custom", "prompt": "red circle with blue background", "guidance_scale": 5.0, "seed": 3}
    frame = demo_studio.live(units, session="s", superseded=lambda: False, **asked)
    assert frame is not None and frame.session.frames == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))  # nothing saved
    assert frame.result.metadata[0]["num_inference_steps"] == 4 and frame.result.images[0].size == (64, 64)
    # The same pixels as Generate with the demo's live preset written out (DDIM 4 steps, the demo's size).
    same, _ = demo_studio.generate(units, session="s", num_inference_steps=4, keep=False, **asked)
    assert np.array_equal(np.asarray(same.images[0]), np.asarray(frame.result.images[0]))
    assert "4 steps" in frame.preset and "keeps 93%" in frame.preset


def test_a_random_seed_is_drawn_once_per_session_so_the_picture_evolves(demo_studio):
    from webui.service import UnitInput

    units = [UnitInput("draw", circle_sketch(), kind="scribble")]
    seeds = {demo_studio.live(units, session="s", superseded=lambda: False).result.seed for _ in range(2)}
    other = demo_studio.live(units, session="other", superseded=lambda: False).result.seed
    assert len(seeds) == 1 and demo_studio._live["s"].seed in seeds
    assert demo_studio._live["other"].seed == other


def test_a_stale_frame_is_skipped_before_it_starts_or_cancelled_at_its_next_step(demo_studio):
    from cnet.engine import GenerationCancelled
    from webui.service import UnitInput

    units = [UnitInput("draw", circle_sketch(), kind="scribble")]
    assert demo_studio.live(units, session="s", superseded=lambda: True) is None
    assert demo_studio._live["s"].skipped == 1
    # A newer stroke arrives once the first step is done: the frame ends at a step's check, with nothing shown.
    steps: list[int] = []
    original = demo_studio.generate
    demo_studio.generate = lambda *a, **k: original(*a, progress=lambda i, n: steps.append(i), **k)
    assert demo_studio.live(units, session="s", superseded=lambda: bool(steps)) is None
    assert demo_studio._live["s"].cancelled == 1 and demo_studio._live["s"].frames == 0
    assert 1 <= len(steps) < 4  # it did not run its 4 steps
    # A Stop pressed while a newer stroke waits is a Stop: raised, not counted as staleness.
    steps.clear()
    with pytest.raises(GenerationCancelled):
        demo_studio.live(units, session="s", superseded=lambda: bool(steps), should_stop=lambda: bool(steps))
    assert demo_studio._live["s"].cancelled == 1
    # A Stop before anything began, too.
    with pytest.raises(GenerationCancelled):
        demo_studio.live(units, session="s", superseded=lambda: False, should_stop=lambda: True)


def test_a_public_live_frame_checks_the_base_model_before_reading_it(tmp_path, monkeypatch):
    """A visitor's base model is a Hub id on a public deployment: a local path is refused by the rule, never read
    from disk (an OSError would tell whether it exists)."""
    from webui.service import Studio, UnitInput
    from webui.settings import PUBLIC_LIMITS, AppSettings

    studio = Studio(AppSettings(public=True, allow_local_paths=False, limits=PUBLIC_LIMITS,
                                output_dir=tmp_path / "out"))
    studio.live_debounce = 0
    for path in ("/etc", "/nonexistent/x", str(tmp_path)):
        with pytest.raises(RequestError, match="accepts Hub ids"):
            studio.live([UnitInput("draw", circle_sketch())], session="s", superseded=lambda: False, base_model=path)


def test_a_missing_taesd_falls_back_for_its_family_only_and_other_missing_models_are_errors(
        tiny_models, tmp_path, monkeypatch):
    from cnet.tiny import save_tiny_lora
    from common.models import ModelUnavailableError
    from webui.service import Studio, UnitInput
    from webui.settings import AppSettings

    monkeypatch.setenv("CNET_BASE_MODEL", str(tiny_models[0]))
    monkeypatch.setenv("CNET_CONTROLNET_SCRIBBLE", str(tiny_models[1]))
    monkeypatch.setenv("CNET_FEW_STEP_LORA", str(save_tiny_lora(tiny_models[0], tmp_path / "lora")))
    studio = Studio(AppSettings(output_dir=tmp_path / "out"))
    studio.live_debounce = 0
    units = [UnitInput("draw", circle_sketch().resize((64, 64)), kind="scribble")]
    # Another missing model (a ControlNet nobody has): its own error, and TAESD is not blamed.
    with pytest.raises(ModelUnavailableError, match="not-here/controlnet"):
        studio.live([UnitInput("draw", circle_sketch().resize((64, 64)), kind="scribble",
                               controlnet="not-here/controlnet")], session="s", superseded=lambda: False)
    assert studio._no_tiny_vae == set()
    frame = studio.live(units, session="s", superseded=lambda: False, width=64, height=64)  # no TAESD offline
    assert frame is not None and studio._no_tiny_vae == {"sd15"}
    assert "TAESD is not on this machine" in frame.preset and "hf download madebyollin/taesd" in frame.preset
    assert frame.result.metadata[0]["fast_decode"] is False and frame.result.metadata[0]["num_inference_steps"] == 2


# -- over HTTP: several sessions, one queue ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_live_user_keeps_one_frame_in_the_queue_and_the_others_are_served(raw_ui, tmp_path, monkeypatch):
    """Session A sends four strokes at once (as a client may, by index); session B generates meanwhile and C draws
    live too. A's three stale strokes are skipped without running, B gets its picture, and A and C each get one
    frame, their newest; a stroke while live mode is off runs nothing."""
    import threading

    from conftest import launched

    for name in [k for k in os.environ if k.startswith("CNET_") and k != "CNET_DTYPE"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CNET_LIVE_DEBOUNCE_MS", "600")  # the first stroke is still waiting when the rest arrive
    path = tmp_path / "sketch.png"
    circle_sketch().save(path)
    with launched(True, tmp_path / "out", tmp_path / "ws") as url:
        ui = raw_ui(url)
        sketch = {"background": None, "layers": [], "composite": ui.upload(path), "id": None}
        gate = ui.call("live-watch", **{"live-mode": False})
        assert not gate["success"]  # live mode off: the gate stops the chain (its error is not shown)
        direct = ui.call("live-watch", "success", sketch=sketch, kind="scribble", **{"live-mode": False})
        assert direct["success"] and direct["output"]["data"][0] == {"__type__": "update"}  # by index: nothing ran
        sessions, replies = {"A": "a" * 12, "B": "b" * 12, "C": "c" * 12}, {}

        def listen(name: str, session: str) -> None:
            replies[name] = [m for m in ui.messages(session) if m.get("msg") == "process_completed"]

        strokes = [ui.join("live-watch", "success", session=sessions["A"], sketch=sketch, kind="scribble",
                          **{"live-mode": True})]
        ui.join("generate", session=sessions["B"], sketch=sketch, kind="scribble", steps=2)
        strokes += [ui.join("live-watch", "success", session=sessions["A"], sketch=sketch, kind="scribble",
                          **{"live-mode": True})
                    for _ in range(3)]
        ui.join("live-watch", "success", session=sessions["C"], sketch=sketch, kind="scribble", **{"live-mode": True})
        listeners = [threading.Thread(target=listen, args=item) for item in sessions.items()]
        started = time.monotonic()
        for thread in listeners:
            thread.start()
        for thread in listeners:
            thread.join(timeout=120)
        assert time.monotonic() - started < 120
    a, b, c = replies["A"], replies["B"], replies["C"]
    assert len(a) == 4 and len(b) == 1 and len(c) == 1 and all(m["success"] for m in a + b + c)
    frames = [m for m in a if m["output"]["data"][0] is not None and m["output"]["data"][0] != {"__type__": "update"}]
    statuses = [m["output"]["data"][3] for m in a]
    shown = [s for s in statuses if isinstance(s, str) and s.startswith("**Live** frame 1,")]
    assert len(shown) == 1 and "3 skipped before starting" in shown[0], statuses  # only A's newest ran
    assert frames and b[0]["output"]["data"][0]  # B's Generate was served between A's strokes
    assert str(c[0]["output"]["data"][3]).startswith("**Live** frame 1,")  # C's own frame


def test_a_fast_setting_that_loses_control_says_so_where_it_was_measured(demo_studio):
    """The demo's steps and samplers: below 90% of the default's control a line says how much was kept."""
    assert "kept 57% of the 20-step default's control" in demo_studio.fidelity_note(2, "default")
    assert "LCM at 4 steps kept 89%" in demo_studio.fidelity_note(4, "lcm")
    assert demo_studio.fidelity_note(4, "ddim") == ""  # 93%: the live preset's, above the line
    assert demo_studio.fidelity_note(7, "ddim") == ""  # not measured: nothing claimed
    assert demo_studio.fidelity_note(2, "default", "some/base") == ""  # another base: the demo's figures do not apply
