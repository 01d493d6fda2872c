"""Training on tiny models and a tiny Fill50K-style set, on the CPU: the paper's method, checked piece by piece."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from train.checkpoint import CheckpointError, complete_checkpoints, find_resume, write_atomically
from train.config import ConfigError, TrainConfig
from train.data import DataError, load_rows
from train.loop import train


def config(tiny_models, circles, out, **kw):
    base = dict(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out), resolution=64,
                batch_size=4, max_steps=4, lr=1e-3, checkpoint_every=100, validate_every=0, log_every=1, seed=3)
    return TrainConfig(**{**base, **kw})


def weights(model_or_path):
    from diffusers import ControlNetModel

    model = ControlNetModel.from_pretrained(model_or_path) if not hasattr(model_or_path, "state_dict") \
        else model_or_path
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class Recorder:
    def __init__(self):
        self.events = []
        self.models = {}

    def __call__(self, event, info):
        if event == "setup":
            self.models = info
        self.events.append((event, info))

    def of(self, name):
        return [info for event, info in self.events if event == name]


def test_default_mode_locks_the_base_and_trains_the_zero_convolutions(tiny_models, circles, tmp_path):
    from diffusers import UNet2DConditionModel

    recorder = Recorder()
    result = train(config(tiny_models, circles, tmp_path), callback=recorder)
    reference = UNet2DConditionModel.from_pretrained(tiny_models[0], subfolder="unet").state_dict()
    trained_unet = recorder.models["unet"].state_dict()
    assert all(torch.equal(reference[k], trained_unet[k]) for k in reference)  # bit-identical locked base
    learned = weights(result)
    zero_convs = [k for k in learned if k.startswith(("controlnet_down_blocks", "controlnet_mid_block"))]
    assert zero_convs and all(learned[k].abs().sum() > 0 for k in zero_convs)  # no longer zero
    card = (result / "README.md").read_text()
    assert "base_model: " + str(tiny_models[0]) in card and "Mode: `default`" in card
    # Loadable by diffusers directly, and by our engine.
    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest

    image = Image.open(circles / "source" / "0.png")
    out = Engine(str(tiny_models[0]), device="cpu").generate(GenerationRequest(
        units=[ControlUnit(image, controlnet=str(result))], num_inference_steps=1, seed=0))
    assert out.images[0].size == (64, 64)


def test_zero_convolutions_start_at_zero(tiny_models, circles, tmp_path):
    """The ControlNet our trainer builds, as it is before its first step: every zero convolution is zero, the
    copied encoder equals the base's, so training starts from the base model's exact behaviour."""
    at_start = {}

    def snapshot(event, info):
        if event == "setup":
            net, unet = info["controlnet"], info["unet"]
            at_start["zero"] = [p.detach().clone() for m in (net.controlnet_down_blocks, net.controlnet_mid_block)
                                for p in m.parameters()]
            at_start["copied"] = all(torch.equal(a, b) for a, b in zip(net.down_blocks.state_dict().values(),
                                                                        unet.down_blocks.state_dict().values()))

    result = train(config(tiny_models, circles, tmp_path, max_steps=1), callback=snapshot)
    assert len(at_start["zero"]) == 2 * 4 + 2 and all(not p.any() for p in at_start["zero"])  # 4 skips, 1 middle
    assert at_start["copied"]
    assert any(learned.abs().sum() > 0 for key, learned in weights(result).items()
               if key.startswith("controlnet_mid_block"))  # one step later they have moved


@pytest.mark.parametrize("prob, low, high", [(0.5, 0.35, 0.65), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)])
def test_share_of_empty_prompts(tiny_models, circles, tmp_path, prob, low, high, monkeypatch):
    seen = []
    recorder = Recorder()
    cfg = config(tiny_models, circles, tmp_path, max_steps=10, batch_size=8, empty_prompt_prob=prob, lr=1e-12)

    import train.sources as sources

    original = sources.encode_text

    def counting(texts, base, device):  # every text the step encodes, the real encoder still answering
        seen.extend(texts)
        return original(texts, base, device)

    monkeypatch.setattr(sources, "encode_text", counting)
    train(cfg, callback=recorder)
    share = sum(t == "" for t in seen) / len(seen)
    assert len(seen) == 80 and low <= share <= high
    assert recorder.of("log")[-1]["empty_prompt_fraction"] == pytest.approx(share)


def test_small_mode_connects_only_the_middle_block(tiny_models, circles, tmp_path):
    calls = {}
    for mode in ("small", "default"):
        recorder = Recorder()
        seen = []

        def callback(event, info, seen=seen, recorder=recorder):
            recorder(event, info)
            if event == "setup":
                info["unet"].register_forward_pre_hook(
                    lambda m, a, kw: seen.append((kw.get("down_block_additional_residuals"),
                                                  kw.get("mid_block_additional_residual"))), with_kwargs=True)

        train(config(tiny_models, circles, tmp_path / mode, mode=mode, max_steps=2), callback=callback)
        calls[mode] = seen
    # small: the skip connections receive nothing (all-zero, gradient-free); the middle block is connected.
    assert calls["small"] and all(all(not d.any() and not d.requires_grad for d in down) and mid.requires_grad
                                  for down, mid in calls["small"])
    assert all(any(d.any() for d in down) and all(d.requires_grad for d in down) and mid.requires_grad
               for down, mid in calls["default"][1:])  # step 1's zero convolutions still output zeros


def test_large_mode_changes_the_base_only_after_unlock(tiny_models, circles, tmp_path):
    snapshots = {}

    def digest(unet):
        return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in unet.parameters())).hexdigest()

    recorder = Recorder()

    def callback(event, info):
        recorder(event, info)
        if event == "setup":
            snapshots[0] = digest(info["unet"])
        if event == "step":
            snapshots[info["step"]] = digest(recorder.models["unet"])

    train(config(tiny_models, circles, tmp_path, mode="large", unlock_after=3, max_steps=5), callback=callback)
    assert snapshots[0] == snapshots[1] == snapshots[2] == snapshots[3]
    assert snapshots[4] != snapshots[3] and snapshots[5] != snapshots[4]
    assert [info["step"] for info in recorder.of("unlock")] == [3]
    # The trained base is saved as a whole pipeline that generates with the ControlNet beside it.
    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest

    trained = type(recorder.models["unet"]).from_pretrained(tmp_path / "base", subfolder="unet")
    assert digest(trained) == snapshots[5]
    result = Engine(str(tmp_path / "base"), device="cpu").generate(GenerationRequest(
        units=[ControlUnit(Image.new("RGB", (64, 64)), controlnet=str(tmp_path / "controlnet"))],
        num_inference_steps=2, seed=0))
    assert result.images[0].size == (64, 64)


def test_stopped_and_resumed_run_matches_an_uninterrupted_one(tiny_models, circles, tmp_path):
    whole = train(config(tiny_models, circles, tmp_path / "whole", max_steps=6, grad_accum=2, batch_size=3))
    cfg = config(tiny_models, circles, tmp_path / "parts", max_steps=6, grad_accum=2, batch_size=3)
    assert train(TrainConfig(**{**cfg.to_dict(), "stop_after": 3})) is None  # stopped, with a checkpoint
    assert [s for s, _ in complete_checkpoints(tmp_path / "parts")] == [3]
    resumed = train(TrainConfig(**{**cfg.to_dict(), "resume": "latest"}))
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_latest_reuses_the_runs_saved_settings(tiny_models, circles, tmp_path):
    """`--output-dir DIR --resume latest` alone continues the run on its own base model, data and settings (the
    README's resume line works offline); a flag given still wins, and the first launch's --stop-after does not
    carry over."""
    from train.cli import main

    out = tmp_path / "run"
    first = ["--base-model", str(tiny_models[0]), "--dataset", str(circles), "--output-dir", str(out),
             "--resolution", "64", "--batch-size", "2", "--max-steps", "4", "--stop-after", "2",
             "--checkpoint-every", "100", "--validate-every", "0", "--preset", "none"]
    assert main(first) == 0
    assert [s for s, _ in complete_checkpoints(out)] == [2]
    assert main(["--output-dir", str(out), "--resume", "latest", "--max-steps", "5"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["base_model"], saved["dataset"]) == (str(tiny_models[0]), str(circles))
    assert (saved["resolution"], saved["batch_size"], saved["max_steps"], saved["stop_after"]) == (64, 2, 5, None)
    assert json.loads((out / "progress.json").read_text())["step"] == 5
    assert (out / "controlnet" / "config.json").exists()


def test_resume_without_a_saved_run_names_what_is_missing(tmp_path, capsys):
    from train.cli import main

    assert main(["--output-dir", str(tmp_path / "never-ran"), "--resume", "latest"]) == 2
    assert "dataset=''" in capsys.readouterr().err


def test_progress_is_written_every_step_and_matches_the_checkpoint_of_a_stop(tiny_models, circles, tmp_path):
    seen = []
    out = tmp_path / "run"

    def watch(event, info):
        if event == "step":
            seen.append(json.loads((out / "progress.json").read_text())["step"])

    assert train(config(tiny_models, circles, out, max_steps=10, stop_after=3, log_every=10), callback=watch) is None
    assert seen == [1, 2, 3]  # log_every=10, yet the status line followed each step
    assert [s for s, _ in complete_checkpoints(out)] == [3]


def test_interrupted_checkpoint_is_never_resumed_from(tmp_path):
    write_atomically(tmp_path, 3, lambda d: (d / "w").write_text("ok"), {}, keep=3)
    (tmp_path / "checkpoints" / "step-00000009").mkdir()  # renamed but never marked complete
    (tmp_path / "checkpoints" / ".tmp-step-00000012").mkdir()  # killed mid-write
    assert find_resume(tmp_path, "latest").name == "step-00000003"
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        find_resume(tmp_path, str(tmp_path / "checkpoints" / "step-00000009"))


def test_full_disk_keeps_the_previous_checkpoint(tmp_path):
    write_atomically(tmp_path, 1, lambda d: (d / "w").write_text("one"), {}, keep=1)

    def full_disk(folder):
        (folder / "w").write_text("partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match="step-00000001 is intact"):
        write_atomically(tmp_path, 2, full_disk, {}, keep=1)
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [1]
    assert (tmp_path / "checkpoints" / "step-00000001" / "w").read_text() == "one"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_old_checkpoints_are_pruned_after_the_new_one_is_complete(tmp_path):
    for step in (1, 2, 3, 4):
        write_atomically(tmp_path, step, lambda d: (d / "w").write_text("x"), {}, keep=2)
    assert [s for s, _ in complete_checkpoints(tmp_path)] == [3, 4]


@pytest.mark.slow
def test_two_processes_train_identical_weights_and_only_one_writes(tiny_models, circles, tmp_path):
    # accelerate's `--cpu --num_processes 2` starts one process unless MPI is set up; torchrun with gloo
    # (--multi_gpu on a machine without GPUs, ACCELERATE_USE_CPU=1) runs two real processes.
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
         "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "train",
         "--base-model", str(tiny_models[0]), "--dataset", str(circles), "--output-dir", str(tmp_path),
         "--resolution", "64", "--batch-size", "2", "--max-steps", "3", "--checkpoint-every", "2",
         "--validate-every", "0", "--log-every", "1"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    end = next(json.loads(line) for line in proc.stdout.splitlines() if '"event": "end"' in line)
    hashes = end["weights_sha256"]  # each process's weights, gathered: DDP keeps them identical
    assert len(hashes) == 2 and hashes[0] == hashes[1] and len(hashes[0]) == 64
    assert '"processes": 2' in proc.stdout
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]  # one writer: each step logged once
    assert proc.stdout.count('"event": "checkpoint"') == 2


# -- data ---------------------------------------------------------------------------------------------------------

def test_three_dataset_layouts_load(circles, tmp_path):
    assert load_rows(str(circles)).layout == "fill50k"
    rows = [json.loads(line) for line in (circles / "prompt.json").read_text().splitlines()]
    jsonl = tmp_path / "jsonl"
    jsonl.mkdir()
    (jsonl / "metadata.jsonl").write_text("".join(
        json.dumps({"img": f"../{circles.name}/{r['target']}", "cond": f"../{circles.name}/{r['source']}",
                    "caption": r["prompt"]}) + "\n" for r in rows))
    with pytest.raises(DataError, match="outside the dataset folder"):
        load_rows(str(jsonl), image_column="img", conditioning_image_column="cond", caption_column="caption")
    import shutil

    shutil.copytree(circles / "source", jsonl / "source")
    shutil.copytree(circles / "target", jsonl / "target")
    (jsonl / "metadata.jsonl").write_text("".join(
        json.dumps({"img": r["target"], "cond": r["source"], "caption": r["prompt"]}) + "\n" for r in rows))
    loaded = load_rows(str(jsonl), image_column="img", conditioning_image_column="cond", caption_column="caption")
    assert loaded.layout == "metadata.jsonl" and len(loaded.rows) == 16

    import datasets

    table = datasets.Dataset.from_dict(
        {"image": [str(circles / r["target"]) for r in rows], "conditioning_image": [str(circles / r["source"])
                                                                                     for r in rows],
         "text": [r["prompt"] for r in rows]}).cast_column("image", datasets.Image()).cast_column(
        "conditioning_image", datasets.Image())
    table.save_to_disk(str(tmp_path / "saved"))
    loaded = load_rows(str(tmp_path / "saved"))
    assert loaded.layout == "datasets (disk)" and len(loaded.rows) == 16
    from train.data import ControlNetDataset

    item = ControlNetDataset(loaded.rows, 64)[0]
    assert item["pixel_values"].shape == (3, 64, 64) and -1 <= item["pixel_values"].min()
    assert 0 <= item["conditioning_pixel_values"].min() and item["conditioning_pixel_values"].max() <= 1


def test_broken_rows_name_row_and_file(circles, tmp_path):
    import shutil

    data = shutil.copytree(circles, tmp_path / "broken")
    lines = (data / "prompt.json").read_text().splitlines()
    lines[2] = json.dumps({"source": "source/missing.png", "target": "target/2.png", "prompt": "red circle"})
    lines[4] = json.dumps({"source": "source/4.png", "target": "target/4.png", "prompt": ""})
    (data / "target" / "6.png").write_bytes(b"not a png")
    (data / "prompt.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"prompt.json line 3: file source/missing.png \(column 'source'\) does not"):
        load_rows(str(data))
    loaded = load_rows(str(data), skip_bad_rows=True)
    assert len(loaded.rows) == 13 and len(loaded.skipped) == 3
    assert any("line 5: column 'prompt' is missing or empty" in s for s in loaded.skipped)
    assert any("target/6.png" in s and "not a readable image" in s for s in loaded.skipped)


def test_hub_dataset_offline_fails_with_the_name(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="cnet-tests/no-such-dataset"):
        load_rows("cnet-tests/no-such-dataset")


@pytest.mark.slow
def test_builder_writes_a_loadable_dataset(tmp_path):
    from skimage import data as skdata

    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "coffee"):
        Image.fromarray(getattr(skdata, name)()).save(photos / f"{name}.jpg")
    (photos / "broken.jpg").write_bytes(b"nope")
    proc = subprocess.run([sys.executable, "-m", "train", "build-dataset", "--photos", str(photos), "--kind",
                           "canny", "--out", str(tmp_path / "set"), "--caption", "none", "--text", "a photo",
                           "--resolution", "128"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "2 rows written" in proc.stdout and "broken.jpg" in proc.stderr
    loaded = load_rows(str(tmp_path / "set"))
    assert len(loaded.rows) == 2 and loaded.rows[0].text == "a photo"
    cond = np.asarray(Image.open(loaded.rows[0].conditioning))
    assert set(np.unique(cond)) <= {0, 255} and min(cond.shape[:2]) == 128


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="huge"), "mode='huge'"), (dict(resolution=100), "resolution=100"),
    (dict(empty_prompt_prob=1.5), "empty_prompt_prob=1.5"), (dict(batch_size=0), "batch_size=0"),
    (dict(dataset=""), "dataset=''"), (dict(mixed_precision="fp8"), "mixed_precision='fp8'"),
])
def test_config_errors_name_the_setting(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**{"dataset": "x", **kwargs}).validated()


@pytest.mark.slow
def test_cli_config_file_and_flags(tiny_models, circles, tmp_path):
    (tmp_path / "run.toml").write_text(f'base_model = "{tiny_models[0]}"\ndataset = "{circles}"\n'
                                       f'output_dir = "{tmp_path / "out"}"\nresolution = 64\nmax_steps = 50\n'
                                       'batch_size = 2\nvalidate_every = 0\n')
    proc = subprocess.run([sys.executable, "-m", "train", "--config", str(tmp_path / "run.toml"), "--max-steps",
                           "2", "--log-every", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "out" / "config.json").read_text())["max_steps"] == 2
    assert (tmp_path / "out" / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()
    proc = subprocess.run([sys.executable, "-m", "train", "--dataset", str(circles), "--mode", "medium"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "invalid choice: 'medium'" in proc.stderr


@pytest.mark.slow
def test_a_killed_run_resumes_from_its_last_complete_checkpoint(tiny_models, circles, tmp_path):
    """SIGKILL at a random moment (here: while it trains past its second checkpoint), then --resume latest."""
    import random
    import signal
    import time

    out = tmp_path / "killed"
    args = [sys.executable, "-m", "train", "--base-model", str(tiny_models[0]), "--dataset", str(circles),
            "--output-dir", str(out), "--resolution", "64", "--batch-size", "2", "--max-steps", "40",
            "--checkpoint-every", "2", "--validate-every", "0", "--log-every", "1", "--preset", "none"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    target = random.Random(0).randint(3, 8)

    def last_step():
        found = complete_checkpoints(out)
        return found[-1][0] if found else 0

    while time.monotonic() < deadline and proc.poll() is None and last_step() < target:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    last = complete_checkpoints(out)[-1][0]
    assert 2 <= last < 40
    resumed = subprocess.run(args + ["--resume", "latest"], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f'"event": "resume", "step": {last}' in resumed.stdout
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 40 and set(range(1, 41)) <= set(steps)  # every step was logged; the rest re-ran
    assert (out / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()


def test_validation_draws_from_the_held_out_dataset(tiny_models, circles, tmp_path):
    from shapes.data import write_dataset

    held_out = write_dataset(tmp_path / "held-out", 3, seed=99)
    expected = [json.loads(line)["prompt"] for line in (held_out / "prompt.json").read_text().splitlines()][:2]
    recorder = Recorder()
    train(config(tiny_models, circles, tmp_path / "run", max_steps=2, validate_every=2, num_validation=2,
                 validation_dataset=str(held_out), validation_steps=1, fidelity="shapes"), callback=recorder)
    [record] = recorder.of("validation")
    assert record["step"] == 2 and record["prompts"] == expected
    assert 0.0 <= record["fidelity"] <= 1.0  # scored against the held-out outlines
    assert Image.open(record["grid"]).height == 2 * 64  # one row per held-out condition
    training_prompts = [json.loads(line)["prompt"] for line in (circles / "prompt.json").read_text().splitlines()]
    assert record["prompts"] != training_prompts[:2]


def test_with_precomputed_latents_the_steps_never_read_the_pictures_again(tiny_models, tmp_path):
    """The cache holds every picture's latents: once it is made, the steps decode only the condition maps (the
    pictures are not decoded, stacked or moved each step). Here the pictures are gone once training starts."""
    import shutil

    from shapes.data import write_dataset

    data = write_dataset(tmp_path / "data", 8, seed=2)

    def remove_pictures(event, info):
        if event == "start":
            shutil.rmtree(data / "target")

    cfg = config(tiny_models, data, tmp_path / "run", precompute=True, max_steps=3)
    assert train(cfg, callback=remove_pictures) is not None
    assert not (data / "target").exists() and (data / "source").exists()


def test_small_mode_then_default_mode_reconnects_the_skips_from_zero(tiny_models, circles, tmp_path):
    """The paper: train with the skips disconnected, then connect them again in a continued training. The small
    run's 12 skip zero-convolutions are still exactly zero; the continued default run starts from them and trains."""
    small = weights(train(config(tiny_models, circles, tmp_path / "small", mode="small", max_steps=3)))
    skips = [k for k in small if k.startswith("controlnet_down_blocks.")]
    assert len(skips) == 2 * 4 and all(not small[k].any() for k in skips)  # tiny model: 4 skips (weight, bias)
    assert small["controlnet_mid_block.weight"].any()  # the middle block learnt
    at_start = {}

    def snapshot(event, info):
        if event == "setup":
            at_start.update(weights(info["controlnet"]))

    joined = weights(train(config(tiny_models, circles, tmp_path / "default", max_steps=3,
                                  init_controlnet=str(tmp_path / "small" / "controlnet")), callback=snapshot))
    assert all(torch.equal(at_start[k], small[k]) for k in small)  # the continued run starts from the small one
    assert all(joined[k].any() for k in skips if k.endswith("weight"))  # the skips connected again, and trained


def test_ema_is_the_result_the_raw_weights_train_as_without_it_and_resume_exactly(tiny_models, circles, tmp_path):
    plain = weights(train(config(tiny_models, circles, tmp_path / "plain", max_steps=4)))
    averaged = weights(train(config(tiny_models, circles, tmp_path / "ema", max_steps=4, ema_decay=0.9)))
    raw = weights(tmp_path / "ema" / "checkpoints" / "step-00000004" / "controlnet")
    assert all(torch.equal(plain[k], raw[k]) for k in plain)  # the average does not change the training itself
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw)  # the result is the average
    cfg = config(tiny_models, circles, tmp_path / "parts", max_steps=4, ema_decay=0.9)
    assert train(TrainConfig(**{**cfg.to_dict(), "stop_after": 2})) is None
    resumed = weights(train(TrainConfig(**{**cfg.to_dict(), "resume": "latest"})))
    assert all(torch.equal(averaged[k], resumed[k]) for k in averaged)


def test_resume_auto_starts_fresh_then_goes_on_from_the_latest_checkpoint(tiny_models, circles, tmp_path):
    """A requeued cluster job runs the same command each time: `--resume auto`."""
    cfg = config(tiny_models, circles, tmp_path, max_steps=4, resume="auto")
    recorder = Recorder()
    assert train(TrainConfig(**{**cfg.to_dict(), "stop_after": 2}), callback=recorder) is None
    assert recorder.of("resume") == []  # nothing to resume from: a fresh start
    recorder = Recorder()
    assert train(cfg, callback=recorder) is not None
    assert [info["step"] for info in recorder.of("resume")] == [2]


def test_presets_leave_precompute_out_for_streams_and_latent_caches():
    from train.presets import apply_preset

    assert apply_preset({}, "24gb")[0]["precompute"] is True
    for given in ({"streaming": True}, {"latent_cache": "cache"}):
        settings, _ = apply_preset(given, "24gb")
        assert "precompute" not in settings and settings["mixed_precision"] == "bf16"


def test_the_weights_hash_reads_bf16_weights():
    """One hash for the cache key and the processes' end-of-run check; numpy has no bfloat16, so the old end-of-run
    hash failed on bf16 weights."""
    import copy

    from train.weights import weights_sha256

    model = torch.nn.Linear(4, 4)
    same = copy.deepcopy(model)
    assert weights_sha256(model) == weights_sha256(same)
    with torch.no_grad():
        same.bias[0] += 1
    assert weights_sha256(model) != weights_sha256(same)
    half = model.to(torch.bfloat16)
    assert len(weights_sha256(half)) == 64
