"""The Train tab's back end: a real tiny run started through accelerate, watched, stopped, resumed; and refused
on a public deployment."""

import time
from pathlib import Path

import pytest

from webui.settings import AppSettings
from webui.training import LOG_LINES, TrainingManager, TrainingRefused


def tiny_settings(tiny_models, circles, **kw):
    return {"base_model": str(tiny_models[0]), "dataset": str(circles), "resolution": 64, "batch_size": 2,
            "max_steps": 400, "checkpoint_every": 1000, "validate_every": 0, "log_every": 1, "preset": "none", **kw}


def wait_for(predicate, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_start_watch_stop_resume_use(tiny_models, circles, tmp_path):
    manager = TrainingManager(AppSettings(), workspace=tmp_path)
    out = manager.start("run-a", tiny_settings(tiny_models, circles))
    assert out == tmp_path / "runs" / "run-a"
    assert wait_for(lambda: manager.status().step >= 2), manager.status().log_tail
    status = manager.status()
    assert status.running and status.max_steps == 400 and status.loss is not None
    assert "Running run-a: step" in status.message and status.metrics
    with pytest.raises(ValueError, match="still going"):
        manager.start("run-b", tiny_settings(tiny_models, circles))
    assert "checkpoint is written first" in manager.stop()
    assert manager.wait(timeout=240) == 0
    stopped = manager.status()
    assert not stopped.running and "stopped at step" in stopped.message and stopped.controlnet is None
    # The status names the step the checkpoint holds (progress is written every step, not every log line).
    assert stopped.checkpoint == f"step-{stopped.step:08d}" and stopped.checkpoint in stopped.message
    assert (out / "checkpoints" / stopped.checkpoint / "COMPLETE.json").exists()  # Stop wrote a checkpoint
    # Before the run ends, "Use in Generate" hands over its newest checkpoint, and says so.
    # A copy (hard links) that the trainer's pruning of old checkpoints cannot pull from under Generate.
    early = manager.result_and_base()
    assert early.controlnet == str(out / "use-in-generate" / stopped.checkpoint / "controlnet")
    assert early.base_model == str(tiny_models[0]) and f"step {stopped.step}; the run has not finished" in early.what
    handed = Path(early.controlnet) / "diffusion_pytorch_model.safetensors"
    kept = out / "checkpoints" / stopped.checkpoint / "controlnet" / "diffusion_pytorch_model.safetensors"
    assert handed.read_bytes() == kept.read_bytes()

    # The app restarted, the page reloaded: a new manager shows the newest run, and Resume with a form that lost
    # its inputs continues on the run's own base model and dataset.
    manager = TrainingManager(AppSettings(), workspace=tmp_path)
    assert manager.status().name == "run-a" and manager.status().config["dataset"] == str(circles)
    resumed_from = stopped.step
    manager.start("run-a", tiny_settings(tiny_models, circles, max_steps=resumed_from + 2, base_model="",
                                         dataset=""), resume=True)
    early = manager.status()
    assert early.eta_seconds is None or early.step > resumed_from  # never the previous part's ETA
    assert manager.wait(timeout=240) == 0
    done = manager.status()
    assert done.step == resumed_from + 2 and "finished" in done.message
    assert f"resumed at step {resumed_from} from step-{resumed_from:08d}" in done.log_tail  # the Log box's words
    assert manager.result_for_generate() == str(out / "controlnet")
    assert manager.result_and_base()[:2] == (str(out / "controlnet"), str(tiny_models[0]))
    assert len(done.log_tail.splitlines()) <= LOG_LINES and "ControlNet saved to" in done.log_tail  # the newest


def test_the_status_carries_the_validation_fidelity_the_trainer_wrote(tiny_models, circles, tmp_path):
    from train.config import TrainConfig
    from train.loop import train

    out = tmp_path / "runs" / "scored"
    train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out), resolution=64,
                      batch_size=2, max_steps=4, validate_every=2, num_validation=2, validation_steps=2,
                      fidelity="shapes", checkpoint_every=100))
    status = TrainingManager(AppSettings(), workspace=tmp_path).status("scored")
    assert [f["step"] for f in status.fidelity] == [2, 4]
    assert all(0.0 <= f["fidelity"] <= 1.0 for f in status.fidelity)
    assert status.config["fidelity"] == "shapes" and "finished at step 4/4" in status.message


def test_bad_settings_are_refused_before_anything_starts(tiny_models, circles, tmp_path):
    manager = TrainingManager(AppSettings(), workspace=tmp_path)
    with pytest.raises(ValueError, match="run name"):
        manager.start("../escape", tiny_settings(tiny_models, circles))
    with pytest.raises(ValueError, match="mode='fast'"):
        manager.start("ok", tiny_settings(tiny_models, circles, mode="fast"))
    with pytest.raises(ValueError, match="dataset='nowhere/at/all'"):
        manager.start("ok", tiny_settings(tiny_models, circles, dataset="nowhere/at/all"))
    assert manager.status().message == "No run started yet."


def test_public_deployment_refuses_training(tiny_models, circles, tmp_path, monkeypatch):
    monkeypatch.delenv("CNET_ALLOW_TRAINING", raising=False)
    public = TrainingManager(AppSettings(public=True), workspace=tmp_path)
    for action in (lambda: public.start("x", tiny_settings(tiny_models, circles)), public.stop,
                   public.result_for_generate, public.ensure_allowed):
        with pytest.raises(TrainingRefused, match="CNET_ALLOW_TRAINING=1"):
            action()
    monkeypatch.setenv("CNET_ALLOW_TRAINING", "1")
    enabled = TrainingManager(AppSettings(public=True), workspace=tmp_path)
    with pytest.raises(ValueError, match="must stay inside the workspace"):
        enabled.resolve_input(str(circles), "dataset")
    with pytest.raises(ValueError, match="must stay inside the workspace"):
        enabled.resolve_input("../../etc", "dataset")
    (tmp_path / "datasets").mkdir()
    assert enabled.resolve_input("datasets", "dataset") == str(tmp_path / "datasets")
    assert enabled.resolve_input("fusing/fill50k", "dataset") == "fusing/fill50k"
    # A folder the run writes (a latent cache) may not exist yet; a Hub-id-shaped name is still a workspace folder.
    assert enabled.output_folder("caches/x", "latent_cache") == tmp_path / "caches" / "x"
    for outside in ("../elsewhere", "/tmp/x"):
        with pytest.raises(ValueError, match="latent_cache=.*must stay inside the workspace"):
            enabled.output_folder(outside, "latent_cache")


def test_quick_start_prepares_the_demo_run_in_the_workspace(tmp_path, monkeypatch):
    from train.config import TrainConfig

    monkeypatch.setenv("CNET_ALLOW_TRAINING", "1")
    manager = TrainingManager(AppSettings(public=True), workspace=tmp_path)
    for recipe, steps, effective_batch in (("quick", 600, 64), ("full", 2000, 32)):
        name, settings = manager.demo_settings(recipe)
        assert manager.run_dir(name).parent == tmp_path / "runs" and recipe in name
        assert settings["max_steps"] == steps and settings["batch_size"] * settings["grad_accum"] == effective_batch
        # Every path passes the public deployment's rules (the shipped demo base is an allowed, read-only input)...
        for key in ("base_model", "dataset", "validation_dataset"):
            assert manager.resolve_input(settings[key], key) == settings[key]
        # ...and the settings are a valid training configuration.
        TrainConfig(**settings, output_dir=str(manager.run_dir(name))).validated()
    assert (tmp_path / "datasets" / "circles" / "prompt.json").read_text().count("\n") == 2000
    assert (tmp_path / "datasets" / "circles-held-out" / "prompt.json").read_text().count("\n") == 16
    with pytest.raises(ValueError, match="recipe='fast'"):
        manager.demo_settings("fast")
    monkeypatch.delenv("CNET_ALLOW_TRAINING")
    with pytest.raises(TrainingRefused):
        TrainingManager(AppSettings(public=True), workspace=tmp_path / "other").demo_settings()


pytestmark = pytest.mark.slow  # subprocesses: the full suite (CI) runs them, the fast tier does not


def test_a_run_with_a_latent_cache_encodes_it_first_and_reports_speed_and_rows(tiny_models, circles, tmp_path):
    manager = TrainingManager(AppSettings(), workspace=tmp_path)
    out = manager.start("cached", tiny_settings(tiny_models, circles, latent_cache=True, max_steps=6))
    assert wait_for(lambda: manager.status().step >= 2), manager.status().log_tail
    running = manager.status()
    assert "images/s" in running.message and "Data: 16 rows, 0 skipped." in running.message
    assert "█" in running.message  # the step's progress bar
    assert manager.wait(timeout=240) == 0
    assert (out / "latent-cache" / "manifest.json").is_file()  # built in the run's own folder, before step 1
    log = manager.status().log_tail
    assert log.index("latent cache: shard 1 of") < log.index("started at step 0 of 6")


def test_the_status_line_shows_the_caching_bar_and_a_streams_counts():
    from webui.training import RunStatus, _describe

    caching = RunStatus(name="r", running=True, max_steps=10,
                        progress={"phase": "caching", "cache_done": 3, "cache_of": 4})
    assert _describe(caching, None) == ("Running r: encoding the latent cache before the first step, shard 3 of 4 "
                                        "[███████████████░░░░░] 75%.")
    streaming = RunStatus(name="r", running=True, step=5, max_steps=10, loss=0.5, progress={
        "phase": "training", "images_per_second": 12.34, "rows_read": 2460, "rows_skipped": 4,
        "rows_estimated": True})
    assert _describe(streaming, None) == ("Running r: step 5/10 [██████████░░░░░░░░░░] 50%, loss 0.5000, 12.3 "
                                          "images/s. Data: about 2,460 rows read, about 4 skipped.")


def test_streaming_a_folder_dataset_is_refused_before_the_run_starts(tiny_models, circles, tmp_path):
    manager = TrainingManager(AppSettings(), workspace=tmp_path)
    with pytest.raises(ValueError, match=r"is a Fill50K folder, not a stream of shards .*python -m train shard"):
        manager.start("s", tiny_settings(tiny_models, circles, streaming=True))
    assert not (tmp_path / "runs" / "s").exists()
    # The demo recipe is a folder dataset: Quick start turns the streaming and cache boxes off.
    _, settings = manager.demo_settings("quick")
    assert settings["streaming"] is False and settings["latent_cache"] is False


def test_the_status_names_loading_stopping_and_the_trainers_own_error(tmp_path):
    from webui.training import RunStatus, _describe

    assert _describe(RunStatus(name="r", running=True, max_steps=9), None) == \
        "Running r: loading the models and data before the first step."
    assert _describe(RunStatus(name="r", running=True, step=4, max_steps=9, progress={"step": 4}), None,
                     stop_requested=True) == "Stopping r at step 4/9: a checkpoint is written first."
    out = tmp_path / "runs" / "failed"
    out.mkdir(parents=True)
    (out / "config.json").write_text('{"max_steps": 9}')
    (out / "train.log").write_text("error: dataset='x' is a Fill50K folder\nTraceback (most recent call last):\n"
                                   "subprocess.CalledProcessError: ... returned non-zero exit status 2.\n")
    import subprocess

    manager = TrainingManager(AppSettings(), workspace=tmp_path)
    ended = subprocess.Popen(["sh", "-c", "exit 1"], start_new_session=True)  # a launcher that failed
    ended.wait()
    manager._run, manager._process = out, ended
    assert manager.status("failed").message == "failed ended with an error at step 0/9: dataset='x' is a Fill50K " \
        "folder"


def test_the_status_reads_a_run_that_is_still_building_its_cache(tmp_path):
    """progress.json has no loss yet while a run encodes its latent cache: the tab's poll must not fail on it."""
    out = tmp_path / "runs" / "caching"
    out.mkdir(parents=True)
    (out / "config.json").write_text('{"max_steps": 10}')
    (out / "progress.json").write_text('{"phase": "caching", "step": 0, "max_steps": 10, "cache_done": 1, '
                                       '"cache_of": 4}')
    status = TrainingManager(AppSettings(), workspace=tmp_path).status("caching")
    assert status.step == 0 and status.loss is None and status.progress["phase"] == "caching"


def test_a_new_run_leaves_settings_at_their_defaults_to_the_memory_preset():
    """The form sends every field; the preset fills "only what you leave at default", so those are left out of the
    command (a resumed run passes them all: its saved settings would otherwise come back)."""
    from webui.training import _command

    form = {"base_model": "b", "dataset": "d", "output_dir": "o", "batch_size": 4, "controlnet_lora_rank": 0,
            "lr": 3e-4, "streaming": False}
    command = _command(form, "light-12gb", resume=False)
    assert command[command.index("--preset") + 1] == "light-12gb"
    assert "--batch-size" not in command and "--controlnet-lora-rank" not in command
    assert command[command.index("--lr") + 1] == "0.0003" and "--no-streaming" not in command
    again = _command(form, "light-12gb", resume=True)
    assert again[again.index("--batch-size") + 1] == "4" and "--no-streaming" in again


def test_the_log_box_shows_the_trainers_events_as_short_lines():
    """Raw JSON lines wrapped in the 12-line Log box and pushed the newest out of sight (issue 30): each event is
    one short line in words; other lines, and a line cut short while written, stay as they are."""
    from webui.training import readable_log_line

    log = ('{"event": "log", "step": 25, "loss": 0.0381881, "lr": 0.0005, "empty_prompt_fraction": 0.523125, '
           '"seconds_per_step": 1.4063, "eta_seconds": 1089.8, "unlocked": false}')
    assert readable_log_line(log) == "step 25 · loss 0.0382 · lr 0.0005 · 1.41 s/step · empty prompts 52%"
    assert readable_log_line('{"event": "validation", "step": 100, "fidelity": null}') == \
        "validation at step 100: fidelity n/a"
    assert readable_log_line('{"event": "preset", "name": "8gb"}') == "preset: name 8gb"
    assert readable_log_line('{"event": "log", "step": 2') == '{"event": "log", "step": 2'
    assert readable_log_line("Loading weights: 100%") == "Loading weights: 100%"


def test_a_hand_over_of_a_lower_step_after_a_rewind_is_kept(tmp_path):
    """Use in Generate keeps the two newest copies; one for a lower step (a resume from an older checkpoint) is
    the one handed over, so it is never the one pruned."""
    from webui.training import _handed_over

    run = tmp_path / "run"
    for step in (1, 3, 5):
        controlnet = run / "checkpoints" / f"step-{step:08d}" / "controlnet"
        controlnet.mkdir(parents=True)
        (controlnet / "config.json").write_text(f'{{"step": {step}}}')
    _handed_over(run / "checkpoints" / "step-00000003", 3)
    _handed_over(run / "checkpoints" / "step-00000005", 5)
    lower = _handed_over(run / "checkpoints" / "step-00000001", 1)
    assert (lower / "config.json").read_text() == '{"step": 1}'
    assert sorted(p.name for p in (run / "use-in-generate").iterdir()) == ["step-00000001", "step-00000005"]
