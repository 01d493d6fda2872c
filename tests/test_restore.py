"""Restoring and re-running a saved PNG whose metadata was crafted or damaged (issue 24, item 7): each odd value is
refused by name, as a request's check names it, and the rest is restored; the event always completes, and the CLI
says what is wrong instead of a traceback.

Members: a lone surrogate in a text, a seed of 1e300, guidance "abc", -5 images, a kind that is a number,
`controlnets: "abc"`, JSON nested 100,000 deep, a list instead of settings, text lengths that are not numbers; for
`--from-png`: a controlnet entry without its model, a string base_model (taken as the reference), a seed "x",
`loras: 7`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from cnet.request import ControlUnit, GenerationRequest
from cnet.result import (
    METADATA_KEY,
    PARAMETERS_KEY,
    _summary,
    read_metadata,
    request_from_metadata,
    settings_from_metadata,
)


@pytest.fixture(scope="module")
def saved(tiny_models, tmp_path_factory):
    """A real PNG saved by the engine (custom prompt, seed 9, 3 steps), and its folder."""
    import numpy as np

    from cnet.engine import Engine

    ring = np.zeros((64, 64, 3), np.uint8)
    ring[20:44, 30:34] = 255
    result = Engine(str(tiny_models[0]), device="cpu").generate(GenerationRequest(
        units=[ControlUnit(Image.fromarray(ring), controlnet=str(tiny_models[1]))], prompt_mode="custom",
        prompt="a red circle", num_inference_steps=3, seed=9))
    return result.save(tmp_path_factory.mktemp("saved"))[0]


def crafted(saved, tmp_path, change=None, raw: str | None = None, summary=lambda text: text):
    """A copy of `saved` whose JSON is changed by `change(record)` (or replaced by `raw`), next to its maps."""
    with Image.open(saved) as image:
        texts, pixels = dict(image.text), image.copy()
    record = json.loads(texts[METADATA_KEY])
    texts_sent = {k: v for k, v in read_metadata(saved).items() if k in ("prompt_used", "negative_prompt")}
    if change:
        change(record)
    info = PngInfo()
    info.add_text(METADATA_KEY, raw if raw is not None else json.dumps(record))
    # The summary line repeats the seed, steps, CFG, sampler and size: written to agree, as a crafted file would.
    info.add_text(PARAMETERS_KEY, summary(_summary({**record, **texts_sent})))
    path = saved.parent / f"crafted-{tmp_path.name}.png"
    pixels.save(path, pnginfo=info)
    return path


ODD = {  # what is changed -> the setting named in the refusal
    "a lone surrogate": (lambda r: r.update(added_prompt="\ud800"), "added_prompt holds an invalid character"),
    "seed 1e300": (lambda r: r.update(seed=1e300), "seed=1e+300 is out of range [0, 4294967295]"),
    "guidance abc": (lambda r: r.update(guidance_scale="abc"), "guidance_scale='abc' must be a number"),
    "-5 images": (lambda r: r.update(batch_size=-5), "num_images=-5 is out of range"),
    "a kind that is a number": (lambda r: r["controlnets"][0].update(kind=7), "kind=7 must be text"),
    "controlnets abc": (lambda r: r.update(controlnets="abc"), "controlnets='abc' is not a list of entries"),
    "a LoRA weight that is a dict": (lambda r: r.update(loras=[{"model": "me/style", "weight": {"x": 1}}]),
                                     "loras[0].weight={'x': 1} must be a number"),
}


@pytest.mark.parametrize("odd", list(ODD))
def test_odd_values_are_refused_by_name_and_the_rest_restored(saved, tmp_path, odd):
    change, message = ODD[odd]
    restored, refused = settings_from_metadata(read_metadata(crafted(saved, tmp_path, change)))
    assert len(refused) == 1 and message in refused[0], refused
    assert restored["prompt"] == "a red circle" and restored["num_inference_steps"] == 3  # the rest is kept
    assert json.dumps(restored)  # what is restored can be sent to a browser


def test_numbers_written_otherwise_in_the_summary_line_lose_nothing(saved, tmp_path):
    """Another tool (or a hand) may write the summary's numbers its own way (1e300 for 1e+300, CFG 9 for 9.0): the
    JSON holds the values, the texts still sit where their lengths say, so the settings come back."""
    path = crafted(saved, tmp_path, lambda r: r.update(seed=1e300),
                   summary=lambda text: text.replace("Seed: 1e+300", "Seed: 1e300").replace("CFG scale: 9.0",
                                                                                          "CFG scale: 9"))
    restored, refused = settings_from_metadata(read_metadata(path))
    assert restored["prompt"] == "a red circle" and refused == ["seed=1e+300 is out of range [0, 4294967295]"]
    edited = crafted(saved, tmp_path, summary=lambda text: text.replace("a red circle", "a big red circle"))
    with pytest.raises(ValueError, match="its 'parameters' text was changed; the prompts cannot be read back"):
        read_metadata(edited)  # a text whose length changed would be cut wrong: refused, not guessed


@pytest.mark.parametrize("raw, message", [
    ("[" * 100_000 + "]" * 100_000, "nested too deep"),
    ("[1, 2]", "metadata is a list, not settings"),
    ("{not json", "metadata is not JSON"),
    ('{"text_lengths": {"prompt_used": "x", "negative_prompt": 0}}', "are not the lengths of its two texts"),
])
def test_unreadable_metadata_is_one_clear_error(saved, tmp_path, raw, message):
    with pytest.raises(ValueError, match=message):
        read_metadata(crafted(saved, tmp_path, raw=raw))


@pytest.mark.parametrize("odd", ["a lone surrogate", "seed 1e300", "controlnets abc", "deep JSON"])
def test_the_restore_event_completes_and_names_what_it_refused(public_app, raw_ui, saved, tmp_path, odd):
    ui = raw_ui(public_app[0])
    path = crafted(saved, tmp_path, raw="[" * 100_000 + "]" * 100_000) if odd == "deep JSON" else \
        crafted(saved, tmp_path, ODD[odd][0])
    reply = ui.call("settings-png", "upload", **{"settings-png": ui.upload(path)})
    assert reply["success"], reply
    status = reply["output"]["data"][-1]
    if odd == "deep JSON":
        assert "no settings restored" in str(reply["notices"]) + str(status)
    else:
        assert "**Not restored:** " + ODD[odd][1] in status
        assert "a red circle" in json.dumps(reply["output"]["data"])  # the prompt came back


@pytest.mark.parametrize("change, message", [
    (lambda r: r["controlnets"][0].pop("model"), "controlnets[0].model is missing"),
    (lambda r: r.update(seed="x"), "seed is 'x', not a whole number"),
    (lambda r: r.update(loras=7), "loras=7 is not a list of entries"),
    (lambda r: r.update(control_images=[{"a": 1}]), "is not a file name"),
    (lambda r: r.update(guidance_scale="abc"), "guidance_scale='abc' must be a number"),
    (lambda r: r.update(image_index=5), "image_index=5 is not an image of its batch of 1"),
    (lambda r: r.update(image_index=-1), "image_index=-1 is not an image of its batch of 1"),
])
def test_a_rerun_of_odd_metadata_names_the_entry_without_a_traceback(saved, tmp_path, tiny_models, change, message):
    path = crafted(saved, tmp_path, change)
    done = subprocess.run([sys.executable, "-m", "cnet", "generate", "--from-png", str(path), "--base-model",
                           str(tiny_models[0]), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]


def test_a_string_base_model_is_taken_as_the_reference(saved, tmp_path, tiny_models):
    path = crafted(saved, tmp_path, lambda r: r.update(base_model=str(tiny_models[0])))
    rerun = request_from_metadata(read_metadata(path), path.parent)
    assert rerun.base_model == str(tiny_models[0]) and rerun.request.seed == 9
