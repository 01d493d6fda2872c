"""Refusals that name what the visitor (or the operator) did, logged as one line (issue 24, item 10).

Members: a 2000x1500 picture or map with no size given on a public deployment (the Edit tab, /edit, /generate);
200,000 LoRA lines, 9 LoRA lines, 400,000 characters of embeddings; a server CNET_FEW_STEP_LORA that does not exist;
a results.jsonl that is a folder; a stopped run's status; the server's log for refused requests over HTTP. The 45 MP
editor background is in tests/test_editor_payloads.py, a malformed stream.pt in tests/test_data_damage.py.
"""

from __future__ import annotations

import pytest
from PIL import Image


@pytest.fixture
def large(tmp_path):
    path = tmp_path / "large.png"
    Image.new("RGB", (2000, 1500), "gray").save(path)
    return path


def error_of(call) -> str:
    with pytest.raises(Exception) as raised:
        call()
    return str(raised.value)


@pytest.mark.parametrize("endpoint", ["/generate", "/edit"])
def test_a_picture_over_the_side_limit_with_no_size_given_says_so(client, large, endpoint):
    from gradio_client import handle_file

    what = "map (units[0])" if endpoint == "/generate" else "picture"
    message = error_of(lambda: client.predict(handle_file(str(large)), steps=1, api_name=endpoint))
    assert f"the {what} is 2000x1500 px" in message and "this deployment makes 64-1024 px a side" in message
    assert "Give a width or height" in message and "width=2000" not in message


def test_a_picture_under_the_side_limit_asks_for_a_larger_one(client, tmp_path):
    from gradio_client import handle_file

    small = tmp_path / "small.png"
    Image.new("RGB", (32, 24)).save(small)
    message = error_of(lambda: client.predict(handle_file(str(small)), steps=1, api_name="/edit"))
    assert "the picture is 32x24 px" in message and "use a larger picture" in message


def test_the_edit_tab_says_so_too(public_app, raw_ui, large):
    ui = raw_ui(public_app[0])
    picture = ui.upload(large)
    reply = ui.call("edit-run", **{"edit-picture": {"background": picture, "composite": picture, "layers": []}})
    assert "the picture is 2000x1500 px" in raw_ui.error(reply)


@pytest.mark.parametrize("field, value, message", [
    ("loras", "me/style\n" * 200_000, "loras is 1800000 characters long; at most 8 lines of 1,000"),
    ("loras", "\n".join(f"me/style{i}" for i in range(9)), "loras has 9 entries; at most 8"),
    ("embeddings", "x" * 400_000, "embeddings is 400000 characters long"),
])
def test_long_model_lists_are_refused_before_they_are_parsed(client, tmp_path, cond_map, field, value, message):
    from gradio_client import handle_file

    path = tmp_path / "map.png"
    cond_map.save(path)
    assert message in error_of(lambda: client.predict(handle_file(str(path)), steps=1, api_name="/generate",
                                                      **{field: value}))


def test_a_missing_server_few_step_lora_is_the_operators_setting_not_the_visitors(client, tmp_path, cond_map,
                                                                                  monkeypatch):
    from gradio_client import handle_file

    monkeypatch.setenv("CNET_FEW_STEP_LORA", str(tmp_path / "secret-place" / "lcm.safetensors"))
    path = tmp_path / "map.png"
    cond_map.save(path)
    message = error_of(lambda: client.predict(handle_file(str(path)), steps=1, few_step=True, api_name="/generate"))
    assert "the server's CNET_FEW_STEP_LORA names a LoRA this server does not have" in message
    assert "loras[" not in message and "secret-place" not in message  # a public visitor sees no server path


def test_a_results_table_that_is_a_folder_is_named(tiny_models, cond_map, tmp_path, capsys):
    from cnet.cli import main

    maps, out = tmp_path / "maps", tmp_path / "out"
    maps.mkdir()
    cond_map.save(maps / "a.png")
    (out / "results.jsonl").mkdir(parents=True)
    assert main(["batch", "--input", str(maps), "--out", str(out), "--base-model", str(tiny_models[0]),
                 "--controlnet", str(tiny_models[1]), "--steps", "1"]) == 2
    assert "results.jsonl is not a file: the batch records its rows there; move it away" in capsys.readouterr().err


def test_a_stopped_run_says_stopped_once():
    import gradio as gr

    from cnet.engine import GenerationCancelled
    from webui.errors import keep_results, user_errors

    @keep_results(2, status=1)
    @user_errors
    def run():
        raise GenerationCancelled("stopped after step 12 of 150")

    assert run()[1] == "**Stopped:** Stopped after step 12 of 150"
    with pytest.raises(gr.Error) as raised:
        user_errors(run.__wrapped__.__wrapped__)()
    assert raised.value.message == "Stopped after step 12 of 150"


def test_refused_requests_are_logged_as_one_line_without_a_traceback(public_app, raw_ui, client, tmp_path, cond_map,
                                                                     capfd, caplog):
    import logging

    from gradio_client import handle_file

    caplog.set_level(logging.INFO, logger="cnet.app")
    path = tmp_path / "map.png"
    cond_map.save(path)
    capfd.readouterr()
    error_of(lambda: client.predict(handle_file(str(path)), steps=500, api_name="/generate"))
    ui = raw_ui(public_app[0])
    ui.call("train-start")  # training refused on this deployment
    tiny = ui.upload(path)
    ui.call("edit-run", **{"edit-picture": {"background": tiny, "composite": tiny, "layers": [tiny] * 9}})
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out
    lines = [r.getMessage() for r in caplog.records if r.name == "cnet.app"]
    assert any(line.startswith("refused (Cannot do that): steps=500 is out of range") for line in lines)
    assert any(line.startswith("refused (Editor payload refused): The editor sent 9 layers") for line in lines)
    assert any(line.startswith("refused (Not allowed): Training is off") for line in lines)
