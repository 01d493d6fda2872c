"""The Gradio app through its public API (gradio_client), as a script or another app would use it."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnet.request import DEFAULT_PROMPT


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture
def map_file(cond_map, tmp_path):
    path = tmp_path / "map.png"
    cond_map.save(path)
    return path


def test_named_endpoints_exist(client):
    assert {"/generate", "/detect", "/caption"} <= set(client.view_api(print_info=False,
                                                                       return_format="dict")["named_endpoints"])


@pytest.mark.parametrize("mode, prompt, expected", [
    ("none", "", ""), ("default", "", DEFAULT_PROMPT), ("custom", "a red circle", "a red circle")])
def test_generate_returns_images_map_and_exact_prompt(client, map_file, mode, prompt, expected):
    from gradio_client import handle_file

    images, control_map, metadata = client.predict(handle_file(str(map_file)), prompt_mode=mode, prompt=prompt,
                                                   steps=2, seed=4, num_images=2, api_name="/generate")
    assert len(images) == 2 and [m["seed"] for m in metadata] == [4, 5]
    assert Image.open(images[0]["image"]).size == (64, 64)
    assert np.array_equal(np.asarray(Image.open(control_map).convert("RGB")), np.asarray(Image.open(map_file)))
    assert all(m["prompt_used"] == expected and m["prompt_mode"] == mode for m in metadata)


def test_generate_auto_mode_uses_the_blip_caption(client, map_file):
    from gradio_client import handle_file

    caption = client.predict(handle_file(str(map_file)), api_name="/caption")
    assert isinstance(caption, str) and caption
    _, _, metadata = client.predict(handle_file(str(map_file)), prompt_mode="auto", steps=1, seed=0,
                                    api_name="/generate")
    assert metadata[0]["prompt_used"] == caption == metadata[0]["caption"]


def test_same_seed_same_pixels_through_the_api(client, map_file):
    from gradio_client import handle_file

    runs = [client.predict(handle_file(str(map_file)), steps=2, seed=8, api_name="/generate")[0][0]["image"]
            for _ in range(2)]
    assert np.array_equal(np.asarray(Image.open(runs[0])), np.asarray(Image.open(runs[1])))


def test_detect_endpoint_matches_the_library(client, tmp_path):
    from gradio_client import handle_file
    from skimage import data

    from annotators import detect

    photo = data.astronaut()
    Image.fromarray(photo).save(tmp_path / "photo.png")
    result = client.predict(handle_file(str(tmp_path / "photo.png")), kind="canny",
                            params_json='{"low_threshold": 60, "high_threshold": 120}', api_name="/detect")
    expected = np.asarray(detect("canny", photo, low_threshold=60, high_threshold=120))
    assert np.array_equal(np.asarray(Image.open(result).convert("RGB")), expected)


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=999), "steps=999 is out of range"),  # the API's own parameter names
    (dict(guidance=50), "guidance=50.0 is out of range"),  # NaN cannot even travel as JSON
    (dict(width=100, height=64), "width=100 must be a multiple of 8"),
    (dict(prompt_mode="custom"), "custom' needs a non-empty prompt"),
    (dict(kind="sketchy"), "kind='sketchy'"),
    (dict(scheduler="fast"), "scheduler='fast'"),
])
def test_invalid_requests_get_readable_errors_and_the_app_keeps_serving(client, map_file, kwargs, message):
    from gradio_client import handle_file

    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(map_file)), **kwargs, api_name="/generate")
    assert message in str(err.value) and "Traceback" not in str(err.value)
    images, _, _ = client.predict(handle_file(str(map_file)), steps=1, seed=0, api_name="/generate")
    assert len(images) == 1


def test_bad_detect_parameters_and_non_images_are_refused(client, tmp_path, map_file):
    from gradio_client import handle_file

    with pytest.raises(Exception, match=r"unknown parameter\(s\) \['blur'\]"):
        client.predict(handle_file(str(map_file)), params_json='{"blur": 3}', api_name="/detect")
    with pytest.raises(Exception, match="params_json is not valid JSON"):
        client.predict(handle_file(str(map_file)), params_json="{", api_name="/detect")


@pytest.mark.slow
def test_app_module_imports_without_loading_models():
    code = ("import sys, app; heavy = [m for m in ('torch', 'diffusers', 'transformers', 'controlnet_aux') "
            "if m in sys.modules]; print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_offline_status_names_missing_models_and_how_to_get_them(monkeypatch, tiny_models):
    from app import status_markdown
    from webui.service import Studio
    from webui.settings import AppSettings

    for name in ("CNET_BASE_MODEL", "CNET_CAPTION_MODEL", "CNET_ANNOTATORS"):  # the module's app sets some
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-cache")
    monkeypatch.setenv("CNET_CONTROLNET_CANNY", str(tiny_models[1]))
    studio = Studio(AppSettings())
    statuses = {s.role: s for s in studio.model_status()}
    assert statuses["ControlNet: canny"].available
    text = status_markdown(studio)
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" in text
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5" in text and "CNET_BASE_MODEL" in text
    assert "ControlNet: canny" not in text
    # The captioner and the annotators' weights fail offline just the same: they are listed too.
    assert "hf download Salesforce/blip-image-captioning-base" in text and "CNET_CAPTION_MODEL" in text
    assert "hf download lllyasviel/Annotators" in text and "CNET_ANNOTATORS" in text
    from app import status_summary

    missing = sum(not s.available for s in studio.model_status())
    assert status_summary(studio).endswith(f"{missing} of {len(statuses)} models are not on this machine yet: "
                                           "see *Model details*.") and "\n" not in status_summary(studio)


def test_the_progress_bar_shows_once_over_the_gallery(app_url):
    import json
    import urllib.request

    config = json.load(urllib.request.urlopen(app_url + "config"))
    ids = {c["props"].get("elem_id"): c["id"] for c in config["components"] if c.get("props", {}).get("elem_id")}
    on_click = [d for d in config["dependencies"] if [ids["generate"], "click"] in d["targets"]]
    chained = [d for d in config["dependencies"] if d.get("trigger_after") in {c["id"] for c in on_click}]
    (generate,) = [d for d in chained if len(d["outputs"]) == 6]  # the run, chained on its click event
    assert generate["show_progress_on"] == [ids["gallery"]]
    assert on_click and all(d["show_progress"] == "hidden" for d in on_click)  # the click event: no bar


def test_a_batch_runs_exactly_what_generate_runs_per_input(app_url, raw_ui, tmp_path, cond_map, tiny_models,
                                                            monkeypatch):
    """The form's settings, through the UI's own events: control start/end, pixel perfect, a second unit and
    few-step mode (its LoRA, not only its sampler) reach every input of the Batch section as they reach Generate."""
    import json
    import os
    import re
    from pathlib import Path

    from cnet.tiny import save_tiny_lora

    monkeypatch.setenv("CNET_FEW_STEP_LORA", str(save_tiny_lora(tiny_models[0], tmp_path / "lcm")))
    maps = tmp_path / "maps"
    maps.mkdir()
    cond_map.save(maps / "x.png")
    cond_map.transpose(0).save(tmp_path / "second.png")
    ui = raw_ui(app_url)
    source = next(c for c in ui.find("generate")["inputs"] if ui.components[c]["type"] == "state")
    form = {"condition_kind": "canny", "control_start": 0.3, "control_end": 0.6, "steps": 4, "random_seed": False,
            "seed": 11, "pixel_perfect_(detect_at_the_output's_resolution)": True, "width": 64, "height": 64,
            "few-step": True, "guidance_(cfg)": 1.0, "sampler": "lcm", "unit2-on": True, "unit2-kind": "depth",
            "unit2-source": "map", "unit2-image": {"background": ui.upload(tmp_path / "second.png"), "layers": [],
                                                   "composite": ui.upload(tmp_path / "second.png")}}
    editor = {"background": ui.upload(maps / "x.png"), "layers": [], "composite": ui.upload(maps / "x.png")}
    # The source is server-side session state: selecting the Map tab sets it, as a click in the browser does.
    select_map = next(d for d in ui.config["dependencies"] for target, name in d["targets"] if name == "select"
                      and ui.components[target]["props"].get("label") == "Map" and d["outputs"] == [source])
    session = "batch-vs-generate"
    ui.http.post(app_url + "gradio_api/run/predict", json={"data": [], "fn_index": select_map["id"],
                                                          "session_hash": session}).raise_for_status()
    generated = ui.call("generate", session=session, **{"map-editor": editor}, **form)
    assert generated["success"] and "Prompt mode" in generated["output"]["data"][3], generated
    batch = ui.call("batch-run", **{"batch-folder": str(maps)}, **form)
    assert batch["success"] and "1 input(s) done" in batch["output"]["data"][0], batch
    table = Path(re.search(r"table: (\S+results\.jsonl)", batch["output"]["data"][0]).group(1))
    (row,) = [json.loads(line) for line in table.read_text().splitlines()]
    made = generated["output"]["data"][-1]  # the metadata of Generate's first image
    ran = {k: v for k, v in row["metadata"].items() if k != "control_images"}
    assert [(c["kind"], c["start"], c["end"]) for c in ran["controlnets"]] == [("canny", 0.3, 0.6), ("depth", 0.0, 1.0)]
    assert "control_masks" not in ran  # nothing was painted over the second map
    assert ran["loras"] and ran["loras"][0]["model"] == os.environ["CNET_FEW_STEP_LORA"]
    assert ran == made  # every setting, the models and the seed
    first = Image.open(table.parent / row["outputs"][0])
    shown = Image.open(generated["output"]["data"][0][0]["image"]["path"])
    assert np.array_equal(np.asarray(first.convert("RGB")), np.asarray(shown.convert("RGB")))


def test_a_batch_error_is_the_reports_text(app_url, raw_ui, tmp_path):
    """Not an error badge over the last report: the report says what is wrong, and a notice too."""
    reply = raw_ui(app_url).call("batch-run", **{"batch-folder": str(tmp_path / "nowhere")})
    assert reply["success"] and "**Cannot do that:** input folder" in reply["output"]["data"][0]
    assert "is not a folder" in reply["output"]["data"][0] and reply["notices"]


def test_edit_takes_few_step_and_fast_decode_as_the_cli_does(client, tiny_models, cond_map, tmp_path, monkeypatch):
    """`cnet edit --few-step --fast-decode` and `/edit` with few_step and fast_decode run the same edit: the same
    LoRA, sampler and decoder, the same pixels (the API had neither switch)."""
    from gradio_client import handle_file

    from cnet.cli import main
    from cnet.result import read_metadata
    from cnet.tiny import save_tiny_lora, save_tiny_taesd

    monkeypatch.setenv("CNET_FEW_STEP_LORA", str(save_tiny_lora(tiny_models[0], tmp_path / "lcm")))
    monkeypatch.setenv("CNET_TINY_VAE", str(save_tiny_taesd(tmp_path / "taesd")))
    picture = tmp_path / "picture.png"
    cond_map.convert("RGB").rotate(30).save(picture)
    assert main(["edit", "--picture", str(picture), "--image", str(picture), "--kind", "canny", "--base-model",
                 str(tiny_models[0]), "--controlnet", str(tiny_models[1]), "--few-step", "--fast-decode", "--steps",
                 "4", "--guidance", "1", "--seed", "6", "--out", str(tmp_path / "cli")]) == 0
    images, _, metadata = client.predict(handle_file(str(picture)), image=handle_file(str(picture)), kind="canny",
                                         few_step=True, fast_decode=True, steps=4, guidance=1.0, seed=6,
                                         api_name="/edit")
    theirs = read_metadata(tmp_path / "cli" / "cnet-6-0.png")
    assert metadata[0]["scheduler"] == theirs["scheduler"] == "lcm" and metadata[0]["fast_decode"] is True
    assert metadata[0]["loras"][-1]["model"] == theirs["loras"][-1]["model"] == os.environ["CNET_FEW_STEP_LORA"]
    api_pixels = np.asarray(Image.open(images[0]["image"]).convert("RGB"), dtype=np.int16)
    cli_pixels = np.asarray(Image.open(tmp_path / "cli" / "cnet-6-0.png").convert("RGB"), dtype=np.int16)
    assert np.abs(api_pixels - cli_pixels).max() <= 1  # the same run (kernels may round 1/255 apart)
