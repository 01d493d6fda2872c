"""Sharing a trained ControlNet (train/hub.py): the result folder carries its card and samples; offline, a push is
refused with the command for later and nothing is lost, from the library, `python -m train`, and the Train tab."""

import json
import subprocess
import sys

import pytest

from train.config import TrainConfig
from train.hub import HubUnavailable, push_run
from train.loop import train


@pytest.fixture
def offline(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def finished_run(tiny_models, circles, tmp_path_factory):
    out = tmp_path_factory.mktemp("hub") / "run"
    train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out), resolution=64,
                      batch_size=2, max_steps=2, validate_every=2, num_validation=2, validation_steps=2,
                      fidelity="shapes"))
    return out


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_result_carries_its_card_with_the_scores_and_the_last_validation_grid(finished_run):
    result = finished_run / "controlnet"
    card = (result / "README.md").read_text()
    assert (result / "samples.png").read_bytes() == (finished_run / "validation" / "step-00000002.png").read_bytes()
    assert "![Validation: condition and generated picture per row](samples.png)" in card
    assert "tags: [controlnet, stable-diffusion, sd15, cnet-studio, shapes]" in card and "| circle IoU |" in card


def test_offline_a_push_is_refused_with_the_command_for_later_and_nothing_changes(finished_run, offline):
    before = snapshot(finished_run)
    with pytest.raises(HubUnavailable, match=r"Hugging Face Hub is unreachable .* nothing is lost; where there is "
                                             rf"network: python -m train push --run {finished_run} --repo-id me/x"):
        push_run(finished_run, "me/x")
    proc = subprocess.run([sys.executable, "-m", "train", "push", "--run", str(finished_run)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "error: pushing" in proc.stderr and "--repo-id run" in proc.stderr
    assert snapshot(finished_run) == before


def test_a_run_asked_to_push_offline_is_refused_before_it_starts(tiny_models, circles, tmp_path, offline):
    out = tmp_path / "run"
    with pytest.raises(HubUnavailable, match=r"--push-to-hub: .* train without it, then python -m train push"):
        train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out), resolution=64,
                          max_steps=2, push_to_hub=True))
    assert not out.exists()


def test_a_run_without_a_result_is_not_pushed(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"max_steps": 5}))
    with pytest.raises(ValueError, match="has no result to push yet"):
        push_run(tmp_path / "run")


def test_the_train_tabs_push_over_http_says_offline_and_keeps_the_run(finished_run, offline, tmp_path, raw_ui):
    """The Push button's event, called as the page does (by index, over HTTP), on a local app whose workspace
    shows the finished run: the visitor is told the Hub is unreachable and how to push later."""
    import shutil

    from conftest import launched

    workspace = tmp_path / "ws"
    shown = shutil.copytree(finished_run, workspace / "runs" / "my-run")
    before = snapshot(shown)
    with launched(False, tmp_path / "out", workspace) as url:
        reply = raw_ui(url).call("train-push", **{"train-name": "my-run", "train-repo-id": "me/my-run"})
    told = raw_ui.error(reply)
    assert "Hugging Face Hub is unreachable" in told
    assert f"python -m train push --run {shown} --repo-id me/my-run" in told
    assert snapshot(shown) == before
