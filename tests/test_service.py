"""The app's back end without the UI: maps from every source, limits, public-mode checks, Stop."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotators import ImageInputError
from cnet.batch import batch_folder_name
from cnet.engine import GenerationCancelled
from cnet.request import RequestError
from webui.service import Studio, UnitInput
from webui.settings import PUBLIC_LIMITS, AppSettings


@pytest.fixture
def local_models(monkeypatch, tiny_models, tiny_blip, tmp_path):
    monkeypatch.setenv("CNET_BASE_MODEL", str(tiny_models[0]))
    monkeypatch.setenv("CNET_CONTROLNET_SCRIBBLE", str(tiny_models[1]))
    monkeypatch.setenv("CNET_CONTROLNET_CANNY", str(tiny_models[1]))
    monkeypatch.setenv("CNET_CAPTION_MODEL", str(tiny_blip))
    return AppSettings(output_dir=tmp_path / "out")


def sketchpad_value():
    """What gr.Sketchpad sends: black strokes on a transparent RGBA layer."""
    layer = np.zeros((64, 64, 4), np.uint8)
    layer[30:34, 8:56] = (0, 0, 0, 255)
    return {"background": None, "layers": [layer], "composite": layer}


def test_draw_source_becomes_white_strokes_on_black(local_models):
    made, photo = Studio(local_models).condition_map(UnitInput("draw", sketchpad_value(), kind="scribble"))
    array = np.asarray(made)
    assert photo is None and made.size == (512, 512)  # scribble maps are made at the detect resolution
    assert array[256, 256, 0] == 255 and array[0, 0, 0] == 0


def test_map_source_is_used_as_is_and_photo_source_is_detected(local_models, astronaut):
    studio = Studio(local_models)
    editor = {"background": astronaut, "layers": [], "composite": astronaut}
    made, photo = studio.condition_map(UnitInput("map", editor))
    assert np.array_equal(np.asarray(made), astronaut) and photo is None
    made, photo = studio.condition_map(UnitInput("photo", astronaut, kind="canny", params={"low_threshold": 50}))
    import cv2

    assert np.array_equal(np.asarray(made)[:, :, 0], cv2.Canny(astronaut, 50, 200))
    assert np.array_equal(np.asarray(photo), astronaut)


@pytest.mark.parametrize("source, message", [("draw", "canvas is empty"), ("photo", "no photo"),
                                             ("map", "no condition map")])
def test_missing_inputs_say_what_to_do(local_models, source, message):
    with pytest.raises(ImageInputError, match=message):
        Studio(local_models).condition_map(UnitInput(source, None))


def test_generate_saves_pngs_and_stop_halts_within_a_step(local_models, cond_map):
    studio = Studio(local_models)
    result, paths = studio.generate([UnitInput("map", cond_map)], num_inference_steps=2, seed=1,
                                    prompt_mode="none")
    assert [p.suffix for p in paths] == [".png"] and paths[0].parent.parent == local_models.output_dir
    assert result.prompt == ""
    steps = []

    said = []

    def progress(i, n):
        steps.append(i)
        if i == 2:
            said.append(studio.stop("visitor-a"))  # what the Stop button does, from another request

    with pytest.raises(GenerationCancelled):
        studio.generate([UnitInput("map", cond_map)], session="visitor-a", progress=progress,
                        num_inference_steps=10, seed=1)
    assert steps == [1, 2] and said[0].startswith("Stopped after step 3 of 10")  # step 3 is the one running
    # Another visitor's stop does not touch this run, and a new run of the same visitor starts afresh.
    assert studio.stop("visitor-b") == "Nothing is running."
    assert len(studio.generate([UnitInput("map", cond_map)], session="visitor-a", num_inference_steps=2,
                               seed=1)[0].images) == 1


def test_public_deployment_refuses_local_paths_and_big_requests(local_models, tiny_models, cond_map):
    public = Studio(AppSettings(public=True, allow_local_paths=False, limits=PUBLIC_LIMITS,
                                output_dir=local_models.output_dir))
    for reference in (str(tiny_models[0]), "../../etc", "/etc/passwd", "a/b/c"):
        with pytest.raises(RequestError, match="Hub ids"):
            public.check_model_reference(reference, "base_model")
    from common.models import ModelSource

    # A Hub source, never looked up on disk (see tests/test_public_attacks.py for the folder of that name)
    assert public.check_model_reference("owner/model", "base_model") == ModelSource("owner/model", "hub")
    with pytest.raises(RequestError, match=r"num_inference_steps=100 is out of range \[1, 50\]"):
        public.generate([UnitInput("map", cond_map)], num_inference_steps=100)
    with pytest.raises(RequestError, match="controlnet='/tmp/x'"):
        public.generate([UnitInput("map", cond_map, controlnet="/tmp/x")])


def test_settings_are_read_once_and_clamped(monkeypatch):
    monkeypatch.setenv("CNET_MAX_QUEUE", "100000")
    monkeypatch.setenv("CNET_PORT", "not-a-port")
    settings = AppSettings.from_env()
    assert settings.max_queue == 256 and settings.port == 7860 and settings.host == "127.0.0.1"
    assert not settings.public and settings.allow_local_paths
    monkeypatch.setenv("SPACE_ID", "someone/cnet-studio")
    space = AppSettings.from_env()
    assert space.public and not space.allow_local_paths and space.limits == PUBLIC_LIMITS
    assert space.host == "0.0.0.0"
    assert AppSettings.from_env(port=9000).port == 9000


def test_caption_of_an_editor_value(local_models, cond_map):
    caption = Studio(local_models).caption({"composite": np.asarray(cond_map), "background": None, "layers": []})
    assert isinstance(caption, str) and caption
    with pytest.raises(ImageInputError, match="no image to caption"):
        Studio(local_models).caption(None)


def test_switching_base_model_replaces_the_engine(local_models, tiny_models, tmp_path):
    import shutil

    studio = Studio(local_models)
    first = studio.engine
    assert studio.engine_for(None) is first and studio.engine_for(str(tiny_models[0])) is first
    copy = shutil.copytree(tiny_models[0], tmp_path / "base-copy")
    assert studio.engine_for(str(copy)) is not first


def test_each_session_gets_its_own_history_newest_first(local_models, cond_map, monkeypatch):
    import webui.outputs as outputs

    monkeypatch.setattr(outputs, "RECENT_PER_SESSION", 3)
    studio = Studio(local_models)
    made = {}
    for session, seeds in (("alice", (1, 2)), ("bob", (3,)), ("alice", (4, 5))):
        for seed in seeds:
            _, paths = studio.generate([UnitInput("map", cond_map)], session=session, num_inference_steps=1,
                                       seed=seed)
            made.setdefault(session, []).extend(str(p) for p in paths)
    assert studio.recent_outputs("alice") == made["alice"][::-1][:3]  # newest first, at most 3
    assert studio.recent_outputs("bob") == made["bob"] and studio.recent_outputs("eve") == []
    Path(made["alice"][-1]).unlink()  # pruned or deleted: no longer offered
    assert made["alice"][-1] not in studio.recent_outputs("alice")


def test_a_batch_runs_over_a_local_folder_into_its_own_output_folder(local_models, cond_map, tmp_path):
    import json

    maps = tmp_path / "my-maps"
    maps.mkdir()
    cond_map.save(maps / "one.png")
    cond_map.transpose(0).save(maps / "two.png")
    studio = Studio(local_models)
    report = studio.batch(str(maps), [UnitInput("map", None, kind="canny")], num_inference_steps=1, seed=7)
    out = local_models.output_dir / "batch" / batch_folder_name(maps)
    assert out.name.startswith("my-maps-") and report.table == out / "results.jsonl"
    assert report.done == 2 and not report.failed
    assert sorted(p.name for p in report.written) == ["one-7-0.png", "two-7-0.png"]
    assert [json.loads(line)["input"] for line in report.table.read_text().splitlines()] == ["one.png", "two.png"]
    again = studio.batch(str(maps), [UnitInput("map", None, kind="canny")], num_inference_steps=1, seed=7)
    assert again.done == 0 and again.already_done == 2  # resumable
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .png/.jpg/.jpeg/.webp images"):
        studio.batch(str(tmp_path / "empty"), [UnitInput("map", None)], num_inference_steps=1)


def test_two_folders_of_the_same_name_get_their_own_batch(local_models, cond_map, tmp_path):
    """2023/maps then 2024/maps: the second folder's x.png is made, not skipped as the first one's."""
    studio = Studio(local_models)
    reports = []
    for year, image in (("2023", cond_map), ("2024", cond_map.transpose(0))):
        (tmp_path / year / "maps").mkdir(parents=True)
        image.save(tmp_path / year / "maps" / "x.png")
        reports.append(studio.batch(str(tmp_path / year / "maps"), [UnitInput("map", None, kind="canny")],
                                    num_inference_steps=1, seed=7))
    assert [r.done for r in reports] == [1, 1] and reports[0].table.parent != reports[1].table.parent
    first, second = (Image.open(r.written[0]) for r in reports)
    assert not np.array_equal(np.asarray(first), np.asarray(second))  # each folder's own map, each kept


def test_an_empty_extra_unit_is_named_by_its_place(local_models, cond_map):
    from annotators import ImageInputError

    units = [UnitInput("map", cond_map, kind="canny"), UnitInput("photo", None, kind="depth")]
    with pytest.raises(ImageInputError, match=r"condition 2 \(depth\): no photo: upload one first"):
        Studio(local_models).generate(units, num_inference_steps=1, seed=0)


def test_the_studio_says_a_run_on_its_way_is_stopped_and_the_run_makes_nothing(local_models, cond_map):
    """What the browser does when the Stop overtakes the run's request: click, Stop, and only then the run."""
    from webui.stops import stop_key

    studio = Studio(local_models)
    key = stop_key("visitor", "generate")
    token = studio.stops.clicked(key)
    assert studio.stop("visitor", "generate") == "Stopped before it started: nothing will be made."
    with pytest.raises(GenerationCancelled):
        studio.generate([UnitInput("map", cond_map)], session="visitor", num_inference_steps=2, seed=1,
                        should_stop=studio.stops.begin(key, token))
    assert not list(local_models.output_dir.rglob("*.png"))
    assert studio.stop("visitor", "generate") == "Nothing is running."
    token = studio.stops.clicked(key)  # the next click runs
    result, paths = studio.generate([UnitInput("map", cond_map)], session="visitor", num_inference_steps=2,
                                    seed=1, should_stop=studio.stops.begin(key, token))
    assert len(paths) == 1


def test_a_stop_while_the_models_are_checked_says_nothing_will_be_made(local_models, cond_map, monkeypatch):
    """Stop before the first denoising step ended (loading): the run is found, stopped, and says so."""
    studio = Studio(local_models)
    checked = studio._checked
    said = []

    def stop_while_checking(*args, **kwargs):
        said.append(studio.stop("visitor"))  # the Stop button, from another request, while the models load
        return checked(*args, **kwargs)

    monkeypatch.setattr(studio, "_checked", stop_while_checking)
    with pytest.raises(GenerationCancelled):
        studio.generate([UnitInput("map", cond_map)], session="visitor", num_inference_steps=2, seed=1)
    assert said == ["Stopped before its first step ended: nothing will be made."]
    assert not list(local_models.output_dir.rglob("*.png"))


def test_a_stop_after_the_last_step_does_not_promise_that_nothing_is_saved(local_models, cond_map):
    """Past the last step's check the run decodes and saves: the Stop's message says the result may still come."""
    studio = Studio(local_models)
    said = []

    def progress(i, n):
        if i == n:
            said.append(studio.stop("visitor"))

    try:
        studio.generate([UnitInput("map", cond_map)], session="visitor", progress=progress, num_inference_steps=2,
                        seed=1)
    except GenerationCancelled:
        pass  # the last step's own check can still catch it: "may"
    assert said == ["Stopped at its last step (2 of 2): the result may still be saved."]
