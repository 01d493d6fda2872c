"""Round 2 of the adversarial suite: a visitor of a public deployment, over HTTP (the named API through
gradio_client, and the UI's own events called by index with raw requests, as anyone can).

Each class, the members tried, and the outcome:
- maps we would make unbounded: 1000x1, 1x1000, 10000x1, 2000x100 photos; a long drawing; detect_resolution, width,
  height over 1024; width alone on a tall photo -> refused naming the size; a 5:1 panorama is capped at 1024 px;
- cancelled or abandoned work: an API cancel and a closed page mid-generation; detection, captioning and generation
  cancelled while waiting for the accelerator -> stops within a step / never starts; the next visitor runs at once;
- local folders by a Hub-id-shaped name: `folder/model` in the working folder (folder, file, missing) in the
  ControlNet and base model fields of the UI event; `/x`, `./x`, `~/x`, `a/b/c`, `..` -> one "not on this machine"
  text for all three; paths refused as not Hub ids;
- other visitors' outputs: two sessions -> each its own unguessable folder, random file names; size and age bounded;
- unbounded text: prompt, added, negative prompt over the limit; a 1 MB prompt -> refused naming field and length;
  a saved PNG holds each text once;
- odd values: guidance null, steps "abc", seed "seven", a lone surrogate -> named errors; seed "7" is a seed;
- over 40 MP: 45, 60, 100, 400 MP PNGs -> "over the 40 MP limit" for all; an MPO photo -> its first frame;
- messages: training by event index, a file path never uploaded, an unexpected fault -> our text or a generic one,
  never the working folder, no traceback logged for a refusal;
- the demo model: a public deployment without Stable Diffusion -> serves the demo;
- per-session state: 300 sessions' Stop presses and finished runs -> nothing kept.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotators import ImageInputError, detect
from cnet.engine import GenerationCancelled


def png(tmp_path, name, image):
    path = tmp_path / name
    image.save(path)
    return str(path)


@pytest.fixture
def map_path(tmp_path, cond_map):
    return png(tmp_path, "map.png", cond_map)


def error_of(call):
    with pytest.raises(Exception) as err:
        call()
    return str(err.value)


# -- 1. maps we make are bounded -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1000, 1), (1, 1000), (10000, 1), (2000, 100)])
def test_absurdly_elongated_images_are_refused_naming_their_size(client, tmp_path, size):
    from gradio_client import handle_file

    path = png(tmp_path, "thin.png", Image.new("RGB", size, "white"))
    message = error_of(lambda: client.predict(handle_file(path), api_name="/detect"))
    assert f"{size[0]}x{size[1]} px is too elongated" in message


def test_a_panorama_is_capped_at_the_deployments_side_limit(client, tmp_path):
    from gradio_client import handle_file

    path = png(tmp_path, "pano.png", Image.fromarray(np.random.default_rng(0).integers(0, 255, (600, 3000, 3),
                                                                                        dtype=np.uint8)))
    made = Image.open(client.predict(handle_file(path), api_name="/detect"))
    assert made.size == (1024, 192)  # short side would be 512 (2560 long): the long side is held at 1024


@pytest.mark.parametrize("kwargs, message", [
    (dict(detect_resolution=2048), "detect_resolution=2048 must be a whole number in [64, 1024]"),
    (dict(width=2048, height=512), "width=2048 must be a whole number in [64, 1024]"),
    (dict(height=1536), "height=1536 must be a whole number in [64, 1024]"),
    (dict(width=1024), "width=1024 with the map's aspect ratio (128x1024) makes a 1024x8192 map"),
])
def test_detect_obeys_the_public_side_limit(client, tmp_path, kwargs, message):
    from gradio_client import handle_file

    path = png(tmp_path, "tall.png", Image.new("RGB", (40, 320), "white"))
    assert message in error_of(lambda: client.predict(handle_file(path), **kwargs, api_name="/detect"))


def test_drawings_are_bounded_too():
    strokes = np.zeros((1, 3000, 4), np.uint8)
    strokes[0, 1000:2000, 3] = 255  # one black stroke on a transparent canvas
    with pytest.raises(ImageInputError, match="3000x1 px is too elongated"):
        detect("scribble", strokes)
    wide = np.zeros((100, 1500, 4), np.uint8)
    wide[40:60, :, 3] = 255
    assert detect("scribble", wide, max_side=1024).size == (1024, 64)


# -- 2. cancelled or abandoned work stops ----------------------------------------------------------------------------


def count_unet_calls(studio):
    calls = []
    unet = studio.engine_for(None).load_base()["unet"]
    return calls, unet.register_forward_hook(lambda *args: calls.append(time.monotonic()))


def wait_until(predicate, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.05)
    assert predicate(), "timed out"


@pytest.mark.slow
def test_an_api_cancel_stops_the_generation_within_a_step(public_app, map_path):
    from gradio_client import Client, handle_file

    url, studio = public_app
    calls, hook = count_unet_calls(studio)
    try:
        # 50 steps at 1024x1024 take ~45 s on these cores; cancelled after the second step.
        job = Client(url, verbose=False).submit(handle_file(map_path), steps=50, width=1024, height=1024, seed=1,
                                                api_name="/generate")
        wait_until(lambda: len(calls) >= 2)
        at_cancel = len(calls)
        job.cancel()
        started = time.monotonic()
        images, _, metadata = Client(url, verbose=False).predict(handle_file(map_path), steps=2, seed=2,
                                                                 api_name="/generate")
        waited = time.monotonic() - started
    finally:
        hook.remove()
    first_run = len(calls) - 2  # the second visitor's 2 steps came after the first run let go
    assert first_run <= at_cancel + 2, (at_cancel, first_run)  # stopped within a step (or two, in flight)
    assert metadata[0]["seed"] == 2 and waited < 20  # not the ~40 s the cancelled run had left


@pytest.mark.slow
def test_a_closed_page_stops_the_generation_within_a_step(public_app, map_path, raw_ui):
    url, studio = public_app
    ui = raw_ui(url)
    calls, hook = count_unet_calls(studio)
    try:
        session = ui.join("generate", "api", image=ui.upload(map_path), steps=50, width=1024, height=1024, seed=3)
        stream = ui.messages(session)
        for message in stream:
            if message.get("msg") == "progress" or len(calls) >= 2:
                break
        wait_until(lambda: len(calls) >= 2)
        at_close = len(calls)
        stream.close()  # the visitor closed the tab: the event stream is gone
        wait_until(lambda: not studio._runs, timeout=60)  # the run ended
    finally:
        hook.remove()
    assert len(calls) <= at_close + 2 + 8  # the server notices a dropped stream at its next message (a few steps)
    assert len(calls) < 50


@pytest.mark.parametrize("action", ["detect", "caption", "generate"])
def test_work_cancelled_while_waiting_for_the_accelerator_never_starts(public_app, cond_map, action, monkeypatch):
    from webui.service import UnitInput

    studio = public_app[1]
    started = []
    monkeypatch.setattr("webui.service.detect_map", lambda *a, **k: started.append("detect"))
    monkeypatch.setattr(type(studio.engine_for(None)), "caption", lambda *a: started.append("caption"))
    cancelled = threading.Event()
    holder_ready = threading.Event()

    def busy():  # another request's run holds the accelerator, and its visitor cancels ours meanwhile
        with studio._accelerator:
            holder_ready.set()
            time.sleep(0.5)
            cancelled.set()

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    assert holder_ready.wait(timeout=30)
    run = {"detect": lambda: studio.condition_map(UnitInput("photo", cond_map), should_stop=cancelled.is_set),
           "caption": lambda: studio.caption(cond_map, should_stop=cancelled.is_set),
           "generate": lambda: studio.generate([UnitInput("photo", cond_map)], num_inference_steps=1,
                                               should_stop=cancelled.is_set)}[action]
    with pytest.raises(GenerationCancelled, match="cancelled before it started"):
        run()
    thread.join()
    assert started == []


# -- 3. local folders are never reachable by a Hub-id-shaped name ----------------------------------------------------


def test_hub_id_shaped_names_never_reach_the_working_folder(public_app, raw_ui, tmp_path, tiny_models, map_path,
                                                            monkeypatch):
    import shutil

    url, _ = public_app
    ui = raw_ui(url)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(tiny_models[1], tmp_path / "somefolder" / "model")  # a real ControlNet, loadable from disk
    (tmp_path / "somefolder" / "notes.txt").write_text("a file, not a checkpoint")
    sketch = {"background": None, "layers": [], "composite": ui.upload(map_path), "id": None}
    texts = {}
    fields = ("controlnet", "base-model", "loras", "embeddings")
    for field in fields:
        for name in ("somefolder/model", "somefolder/notes.txt", "nothere/model"):
            reply = ui.call("generate", sketch=sketch, steps=1, **{field: name})
            texts[field, name] = ui.error(reply).replace(name, "NAME")
    for field in fields:  # no oracle: existing folder, existing file and nothing read alike
        assert len({texts[field, n] for n in ("somefolder/model", "somefolder/notes.txt", "nothere/model")}) == 1
        assert "is not on this machine" in texts[field, "nothere/model"]
    for bad in ("/etc", "./somefolder/model", "~/.cache/huggingface", "a/b/c", "../x/y", "somefolder/.."):
        reply = ui.call("generate", sketch=sketch, steps=1, controlnet=bad)
        assert "accepts Hub ids (owner/name) only" in ui.error(reply), bad


def test_loras_and_the_apis_model_choice_are_hub_ids_only_in_public(public_app, raw_ui, client, map_path):
    from gradio_client import handle_file

    url, _ = public_app
    ui = raw_ui(url)
    sketch = {"background": None, "layers": [], "composite": ui.upload(map_path), "id": None}
    for bad in ("/etc/passwd:1", "./styles/ink.safetensors", "owner/ok\n../../x:0.5"):
        reply = ui.call("generate", sketch=sketch, steps=1, loras=bad)
        assert "accepts Hub ids (owner/name) only" in ui.error(reply), bad
    for field, bad in (("loras", "/etc/passwd:0.5"), ("base_model", "/tmp"), ("controlnet", "~/.cache/x")):
        with pytest.raises(Exception, match="accepts Hub ids"):
            client.predict(handle_file(str(map_path)), steps=1, api_name="/generate", **{field: bad})


# -- 4. outputs: one unguessable folder per session, bounded ---------------------------------------------------------


def test_each_visitor_gets_an_unguessable_output_folder(public_app, map_path):
    from gradio_client import Client, handle_file

    url, studio = public_app
    folders = []
    for visitor in range(2):
        client = Client(url, verbose=False)
        for _ in range(2):
            client.predict(handle_file(map_path), steps=1, seed=visitor, api_name="/generate")
        newest = sorted(studio.settings.output_dir.rglob(f"*-{visitor}-*-0.png"), key=os.path.getmtime)[-2:]
        assert all(re.fullmatch(rf"\d{{6}}-{visitor}-[0-9a-f]{{16}}-0\.png", p.name) for p in newest)
        session_folders = {p.parent.parent for p in newest}
        assert len(session_folders) == 1  # one visitor, one folder
        folder = session_folders.pop()
        assert folder.parent.name == "sessions" and re.fullmatch(r"[0-9a-f]{32}", folder.name)
        assert folder.name not in (client.session_hash, client.session_hash[:32])
        folders.append(folder)
    assert folders[0] != folders[1]


def test_outputs_are_pruned_oldest_first_to_size_and_age(tmp_path):
    from webui.service import prune_outputs

    now = time.time()
    files = []
    for i in range(6):  # 6 outputs of 1000 bytes, one minute apart; the newest is the one just saved
        path = tmp_path / f"2026-11-2{i % 2}" / (f"1200{i:02d}-7-0.png" if i % 3 else f"1200{i:02d}-7-control0.png")
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x" * 1000)
        os.utime(path, (now - 60 * (6 - i), now - 60 * (6 - i)))
        files.append(path)
    foreign = [tmp_path / "2026-11-20" / "holiday.png", tmp_path / "notes.txt"]  # not ours: never touched
    for path in foreign:
        path.write_bytes(b"y" * 5000)
        os.utime(path, (now - 9999, now - 9999))
    assert prune_outputs(tmp_path, max_bytes=3500, keep=[files[-1]]) == 3
    assert [p.exists() for p in files] == [False, False, False, True, True, True]
    assert prune_outputs(tmp_path, max_bytes=0, max_age_seconds=90, keep=[files[-1]]) == 2  # older than 1.5 min
    assert [p.exists() for p in files] == [False] * 5 + [True]
    assert prune_outputs(tmp_path, max_bytes=10, keep=[files[-1]]) == 0  # never the file just saved
    assert all(p.exists() for p in foreign)


def test_output_bounds_are_configurable_and_tight_on_public_deployments(monkeypatch):
    from webui.settings import AppSettings

    assert (AppSettings.from_env(public=True).output_max_mb, AppSettings.from_env(public=True).output_max_age_hours) \
        == (1000, 24)
    assert AppSettings.from_env().output_max_mb == 20_000 and AppSettings.from_env().output_max_age_hours == 0
    monkeypatch.setenv("CNET_OUTPUT_MAX_MB", "5")
    monkeypatch.setenv("CNET_OUTPUT_MAX_AGE_HOURS", "2")
    assert (AppSettings.from_env().output_max_mb, AppSettings.from_env().output_max_age_hours) == (5, 2)


def test_a_studio_keeps_its_outputs_within_the_bound(tiny_models, cond_map, tmp_path, monkeypatch):
    from webui.service import Studio, UnitInput
    from webui.settings import AppSettings

    monkeypatch.setenv("CNET_BASE_MODEL", str(tiny_models[0]))
    monkeypatch.setenv("CNET_CONTROLNET_CANNY", str(tiny_models[1]))
    monkeypatch.setattr("webui.outputs.PRUNE_EVERY_SECONDS", 0.0)  # prune at every save, for the test
    probe = Studio(AppSettings(output_dir=tmp_path / "probe", output_max_mb=0))
    probe.generate([UnitInput("map", cond_map)], num_inference_steps=1, seed=0)
    one_run = sum(p.stat().st_size for p in (tmp_path / "probe").rglob("*.png"))  # an image and its map
    bounded = Studio(AppSettings(output_dir=tmp_path / "b", output_max_mb=2.5 * one_run / 2**20))
    saved = []
    for seed in range(5):
        saved.append(bounded.generate([UnitInput("map", cond_map)], num_inference_steps=1, seed=seed)[1][0])
        time.sleep(1.1)  # distinct modification times, oldest first
    total = sum(p.stat().st_size for p in (tmp_path / "b").rglob("*.png"))
    assert one_run > 0 and total <= 2.5 * one_run
    assert saved[-1].exists() and saved[-2].exists() and not saved[0].exists()  # the oldest went first


# -- 5. text is bounded and stored once ------------------------------------------------------------------------------


@pytest.mark.parametrize("field, length", [("prompt", 2001), ("added_prompt", 5000), ("negative_prompt", 2001),
                                           ("prompt", 1_000_000)])
def test_long_texts_are_refused_naming_the_field(client, map_path, field, length):
    from gradio_client import handle_file

    started = time.monotonic()
    texts = {"prompt": "a cat", field: "x" * length}
    message = error_of(lambda: client.predict(handle_file(map_path), prompt_mode="custom", **texts,
                                              api_name="/generate"))
    assert f"{field} is {length} characters long; at most 2000 are accepted" in message
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("mode, added", [("custom", ""), ("custom", "best quality"), ("none", ""),
                                         ("default", "extra"), ("auto", ""), ("auto", "best quality")])
def test_a_saved_png_holds_each_text_once(engine, tiny_models, cond_map, tmp_path, mode, added):
    from cnet.request import ControlUnit, GenerationRequest
    from cnet.result import read_metadata

    prompt, negative = "zebra" * 40, "quagga" * 30
    result = engine.generate(GenerationRequest(units=[ControlUnit(cond_map, controlnet=str(tiny_models[1]))],
                                               prompt_mode=mode, prompt=prompt, added_prompt=added,
                                               negative_prompt=negative, num_inference_steps=1, seed=0))
    path = result.save(tmp_path)[0]
    data = path.read_bytes()
    sent = result.prompt
    assert data.count(negative.encode()) == 1 and (not sent or data.count(sent.encode()) == 1)
    meta = read_metadata(path)
    assert meta["prompt_used"] == sent and meta["negative_prompt"] == negative
    if mode == "custom":
        assert meta["prompt"] == prompt and data.count(prompt.encode()) == 1
    if mode == "auto":  # the BLIP caption is part of the text sent: stored once too, and read back
        assert meta["caption"] == result.metadata[0]["caption"] and data.count(meta["caption"].encode()) == 1


# -- 8. odd values get named errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, message", [
    (dict(guidance="high"), "guidance='high' must be a number"),
    (dict(steps="abc"), "steps='abc' must be a whole number"),
    (dict(seed="seven"), "seed='seven' must be a whole number"),
])
def test_odd_values_are_named(client, map_path, kwargs, message):
    from gradio_client import handle_file

    assert message in error_of(lambda: client.predict(handle_file(map_path), **kwargs, api_name="/generate"))


def test_a_seed_sent_as_text_is_a_seed(client, map_path):
    from gradio_client import handle_file

    _, _, metadata = client.predict(handle_file(map_path), steps=1, seed="7", api_name="/generate")
    assert metadata[0]["seed"] == 7


@pytest.mark.parametrize("field", ["prompt", "negative_prompt"])
def test_a_lone_surrogate_is_named(public_app, raw_ui, map_path, field):
    ui = raw_ui(public_app[0])
    texts = {"prompt": "a cat", field: "a \ud800 cat"}
    reply = ui.call("generate", "api", image=ui.upload(map_path), prompt_mode="custom", **texts)
    assert f"{field} holds an invalid character at position 2" in reply["output"]["error"]


def test_training_by_event_index_is_refused_without_a_traceback(public_app, raw_ui, caplog):
    ui = raw_ui(public_app[0])
    with caplog.at_level(logging.INFO, logger="cnet.app"):
        for target in ("train-start", "train-stop", "train-push"):
            reply = ui.call(target)
            assert "Training is off on this public deployment" in ui.error(reply)
    assert not [r for r in caplog.records if r.exc_info]


def test_errors_never_show_the_working_folder(public_app, raw_ui, map_path, monkeypatch):
    ui = raw_ui(public_app[0])
    here = os.getcwd()
    not_uploaded = {"path": str(Path(here) / "README.md"), "meta": {"_type": "gradio.FileData"}}
    replies = [ui.call("generate", "api", image=not_uploaded)]  # gradio's own check names the path
    studio = public_app[1]
    monkeypatch.setattr(studio, "engine_for", lambda *a: (_ for _ in ()).throw(KeyError(f"{here}/secret")))
    replies.append(ui.call("generate", "api", image=ui.upload(map_path), steps=1))  # a fault of ours
    for reply in replies:
        assert not reply["success"] and here not in json.dumps(reply), reply
    assert replies[1]["output"]["error"] == "The server could not finish this request."


# -- 7. images over the pixel limit, and phones' MPO files -----------------------------------------------------------


@pytest.mark.parametrize("size", [(7500, 6000), (10000, 6000), (10000, 10000), (20000, 20000)])
def test_images_over_40_mp_get_the_same_clear_message(client, tmp_path, size):
    from gradio_client import handle_file

    buffer = io.BytesIO()
    Image.new("1", size).save(buffer, "PNG")  # one bit a pixel: 45-400 MP in a few KB
    path = tmp_path / "big.png"
    path.write_bytes(buffer.getvalue())
    message = error_of(lambda: client.predict(handle_file(str(path)), api_name="/detect"))
    assert f"{size[0] * size[1] / 1e6:.0f} MP, over the 40 MP limit" in message


def test_an_mpo_photo_is_read_from_its_first_frame(client, tmp_path, astronaut):
    from gradio_client import handle_file

    photo = Image.fromarray(astronaut[100:356, 100:356])
    buffer = io.BytesIO()
    photo.save(buffer, "MPO", save_all=True, append_images=[Image.new("RGB", (256, 256), "blue")])
    path = tmp_path / "phone.jpg"
    path.write_bytes(buffer.getvalue())
    with Image.open(path) as opened:
        assert opened.format == "MPO" and opened.n_frames == 2
        first = opened.convert("RGB")
    made = np.asarray(Image.open(client.predict(handle_file(str(path)), api_name="/detect")).convert("RGB"))
    assert np.array_equal(made, np.asarray(detect("canny", first)))


# -- 9. the demo model on a public deployment ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_public_deployment_without_stable_diffusion_serves_the_demo(tmp_path, monkeypatch):
    from conftest import launched
    from gradio_client import Client, handle_file

    from cnet.demo import use_demo

    for name in [k for k in os.environ if k.startswith("CNET_") and k != "CNET_DTYPE"]:
        monkeypatch.delenv(name)
    if not use_demo():
        pytest.skip("Stable Diffusion is available here: the demo does not stand in")
    yy, xx = np.mgrid[:64, :64]
    ring = (np.abs(np.hypot(yy - 32, xx - 32) - 18) < 1.5).astype(np.uint8) * 255
    path = png(tmp_path, "circle.png", Image.fromarray(np.stack([ring] * 3, -1)))
    with launched(True, tmp_path / "out", tmp_path / "ws") as url:
        images, _, metadata = Client(url, verbose=False).predict(
            handle_file(path), kind="scribble", prompt_mode="custom", prompt="red circle with blue background",
            steps=2, seed=0, api_name="/generate")
    assert Image.open(images[0]["image"]).size == (64, 64)
    # The server's own models are named, not located: no path of the server in what a visitor gets.
    assert metadata[0]["controlnets"][0]["model"] == "server:controlnet"
    assert metadata[0]["base_model"]["model"] == "server:base" and "/" not in json.dumps(metadata[0]["base_model"])


# -- 10. no state per session beyond the runs in progress ------------------------------------------------------------


def test_stop_presses_and_finished_runs_leave_no_state(tiny_models, cond_map, tmp_path, monkeypatch):
    from webui.service import Studio, UnitInput
    from webui.settings import AppSettings

    monkeypatch.setenv("CNET_BASE_MODEL", str(tiny_models[0]))
    monkeypatch.setenv("CNET_CONTROLNET_CANNY", str(tiny_models[1]))
    studio = Studio(AppSettings(output_dir=tmp_path))
    for session in range(300):
        studio.stop(f"visitor-{session}")
    for session in range(3):
        studio.generate([UnitInput("map", cond_map)], session=f"run-{session}", num_inference_steps=1, seed=0)
    assert studio._runs == {}


# -- promises of SECURITY.md that had no test -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_with_safety_checker(tiny_models, tmp_path_factory):
    """The tiny base plus a real (tiny, random) StableDiffusionSafetyChecker, in two folders: one whose concept
    thresholds flag every image, one that flags none. The checker's own code decides; we only set its thresholds."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    config = CLIPConfig(projection_dim=16,
                        vision_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                           num_hidden_layers=2, image_size=32, patch_size=8),
                        text_config=dict(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                                         num_hidden_layers=2, vocab_size=100))
    folders = {}
    for name, threshold in (("flags-all", -2.0), ("flags-none", 2.0)):  # cosine similarity is within [-1, 1]
        torch.manual_seed(0)
        checker = StableDiffusionSafetyChecker(config).eval()
        checker.concept_embeds_weights.data.fill_(threshold)
        checker.special_care_embeds_weights.data.fill_(threshold)
        pipe = StableDiffusionPipeline.from_pretrained(tiny_models[0], safety_checker=None,
                                                       requires_safety_checker=False)
        pipe.register_modules(safety_checker=checker,
                              feature_extractor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                   crop_size={"height": 32, "width": 32}))
        folders[name] = tmp_path_factory.mktemp(name) / "base"
        pipe.save_pretrained(folders[name])
    return folders


def test_the_safety_checker_runs_on_public_deployments_and_labels_what_it_blocks(base_with_safety_checker,
                                                                                 tiny_models, cond_map, tmp_path,
                                                                                 monkeypatch):
    from webui.service import Studio, UnitInput
    from webui.settings import PUBLIC_LIMITS, AppSettings

    monkeypatch.setenv("CNET_CONTROLNET_CANNY", str(tiny_models[1]))
    outcomes = {}
    for name, folder in base_with_safety_checker.items():
        monkeypatch.setenv("CNET_BASE_MODEL", str(folder))
        for public in (True, False):
            studio = Studio(AppSettings(public=public, allow_local_paths=not public, limits=PUBLIC_LIMITS,
                                        output_dir=tmp_path))
            result, _ = studio.generate([UnitInput("map", cond_map)], num_inference_steps=2, seed=0, num_images=2)
            pixels = np.asarray(result.images[0])
            outcomes[name, public] = ([m["nsfw_content_detected"] for m in result.metadata], int(pixels.max()))
    assert outcomes["flags-all", True] == ([True, True], 0)  # blocked: black, and labelled in the metadata
    assert outcomes["flags-all", False][0] == [False, False]  # locally the checker is not loaded
    assert outcomes["flags-none", True][0] == [False, False] and outcomes["flags-none", True][1] > 0


@pytest.mark.slow
def test_the_gallery_labels_a_blocked_image(base_with_safety_checker, tiny_models, tmp_path, monkeypatch, raw_ui,
                                            map_path):
    from conftest import launched

    monkeypatch.setenv("CNET_BASE_MODEL", str(base_with_safety_checker["flags-all"]))
    monkeypatch.setenv("CNET_CONTROLNET_SCRIBBLE", str(tiny_models[1]))
    with launched(True, tmp_path / "out", tmp_path / "ws") as url:
        ui = raw_ui(url)
        sketch = {"background": None, "layers": [], "composite": ui.upload(map_path), "id": None}
        reply = ui.call("generate", sketch=sketch, kind="scribble", steps=1, width=64, height=64)
    assert reply["success"], reply
    gallery = reply["output"]["data"][0]
    assert gallery[0]["caption"].endswith("blocked by the safety checker")


def test_secrets_are_never_served_even_inside_an_allowed_folder(tiny_models, tmp_path, monkeypatch):
    """~/.ssh and ./.env are blocked, and blocked beats allowed: here the allowed output folder contains both."""
    import urllib.error
    import urllib.request

    from conftest import launched

    home, work = tmp_path / "home", tmp_path / "work"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("PRIVATE KEY")
    work.mkdir()
    (work / ".env").write_text("HF_TOKEN=secret")
    (tmp_path / "harmless.png").write_bytes(b"\x89PNG fine")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    monkeypatch.setenv("CNET_BASE_MODEL", str(tiny_models[0]))
    with launched(True, tmp_path, tmp_path / "ws") as base:
        url = base + "gradio_api/file="
        assert urllib.request.urlopen(url + str(tmp_path / "harmless.png"), timeout=10).status == 200
        for secret in (home / ".ssh" / "id_ed25519", work / ".env"):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url + str(secret), timeout=10)
            assert err.value.code in (403, 404), secret


@pytest.mark.parametrize("megabytes, status", [(19, 200), (21, 413), (60, 413)])
def test_uploads_over_20_mb_are_refused_with_413(public_app, megabytes, status):
    import httpx

    body = os.urandom(megabytes * 10**6)
    reply = httpx.post(public_app[0] + "gradio_api/upload", files={"files": ("big.png", body)}, timeout=120)
    assert reply.status_code == status, reply.text[:200]


def test_two_runs_in_the_same_second_with_the_same_seed_keep_both_images(tiny_models, cond_map, tmp_path,
                                                                          monkeypatch):
    import datetime

    from webui.service import Studio, UnitInput
    from webui.settings import AppSettings

    class FrozenClock(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.datetime(2026, 11, 27, 12, 0, 0)

    monkeypatch.setattr("webui.outputs.datetime.datetime", FrozenClock)
    monkeypatch.setenv("CNET_BASE_MODEL", str(tiny_models[0]))
    monkeypatch.setenv("CNET_CONTROLNET_CANNY", str(tiny_models[1]))
    studio = Studio(AppSettings(output_dir=tmp_path))
    saved = [studio.generate([UnitInput("map", cond_map)], prompt_mode="custom", prompt=text, num_inference_steps=1,
                             seed=5)[1][0] for text in ("a red circle", "a blue circle")]
    assert [p.name for p in saved] == ["120000-5-0.png", "120000-5-2-0.png"]
    from cnet.result import read_metadata

    assert [read_metadata(p)["prompt"] for p in saved] == ["a red circle", "a blue circle"]


def test_online_hub_failures_read_alike_for_shadowed_and_plain_names(tmp_path, monkeypatch):
    """With the Hub reachable, the libraries' own errors differ between a name a local folder shadows (the cache
    snapshot path) and one it does not (from_pretrained): the message a visitor sees must not."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    import common.models as models

    monkeypatch.chdir(tmp_path)
    (tmp_path / "somefolder" / "model").mkdir(parents=True)
    monkeypatch.setattr(models, "hub_is_offline", lambda: False)

    def snapshot(repo, revision=None, local_files_only=False, **kwargs):
        if local_files_only:
            raise LocalEntryNotFoundError("not in the cache")
        raise RuntimeError(f"404 Client Error. Repository Not Found for url: https://huggingface.co/api/models/{repo}")

    def from_pretrained(location, local_files_only=False, **kwargs):
        raise OSError("not cached" if local_files_only else
                      f"{location} is not a local folder and is not a valid model identifier listed on the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    texts = set()
    for name in ("somefolder/model", "nothere/model"):
        with pytest.raises(models.ModelUnavailableError) as err:
            models.load_with_hub_fallback(from_pretrained, models.parse_hub_id(name))
        texts.add(str(err.value).replace(name, "NAME"))
    assert len(texts) == 1 and "Could not load 'NAME' from the Hugging Face Hub" in texts.pop()


def test_a_batch_over_a_server_folder_is_refused_on_public_deployments(public_app, raw_ui):
    """The Batch section is hidden there, but its event can be called by index: it must refuse, naming why."""
    ui = raw_ui(public_app[0])
    reply = ui.call("batch-run", **{"batch-folder": "/etc"})
    assert "not on this deployment" in ui.error(reply)


def test_an_upscale_or_outpaint_too_big_is_refused_before_it_is_made(public_app, tmp_path):
    """A 16 KB flat PNG of 2000x2000 times 4 would be a 64 MP resize before any check: refused first, naming it."""
    from cnet.operations import EditOptions
    from webui.service import UnitInput

    studio = public_app[1]
    flat = Image.new("RGB", (2000, 2000), "gray")
    with pytest.raises(ValueError, match=r"upscale=4.0 makes 8000x8000: at most 1024 px"):
        studio.edit(flat, [UnitInput("photo", None, kind="tile")], operation="upscale",
                    options=EditOptions(upscale=4.0))
    small = Image.new("RGB", (512, 512), "gray")
    with pytest.raises(ValueError, match=r"outpaint makes 2560x512: at most 1024 px"):
        studio.edit(small, [UnitInput("photo", None)], operation="outpaint", options=EditOptions(outpaint_right=2048))


def test_the_edit_preview_names_its_error_through_http(public_app, raw_ui):
    ui = raw_ui(public_app[0])
    reply = ui.call("edit-preview")
    assert "no picture" in ui.error(reply)


def test_edit_inputs_are_pruned_like_the_images(tmp_path):
    import os as _os

    from webui.service import prune_outputs

    names = ["101010-5-0.png", "101010-5-control0.png", "101010-5-init.png", "101010-5-mask.png"]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(b"x" * 100)
        _os.utime(tmp_path / name, (1000 + i, 1000 + i))
    assert prune_outputs(tmp_path, max_bytes=1) == 4


def test_fast_decode_over_http_names_the_missing_autoencoder_and_the_app_keeps_serving(client, map_path):
    """A visitor's fast_decode=True on a deployment without TAESD: a plain message naming it (no path or trace of the
    server), then a normal request still works."""
    from gradio_client import handle_file

    message = error_of(lambda: client.predict(handle_file(map_path), steps=1, fast_decode=True,
                                              api_name="/generate"))
    assert "madebyollin/taesd" in message and "CNET_TINY_VAE" in message and "Traceback" not in message
    images, _, metadata = client.predict(handle_file(map_path), steps=1, seed=3, api_name="/generate")
    assert images and metadata[0]["fast_decode"] is False
