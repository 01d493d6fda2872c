"""The latent cache on disk (train/latent_cache.py): built once, reused without a VAE encoder call, the same steps
on every reuse, and refused when made by other weights."""

import json
import subprocess
import sys

import pytest
import torch

from train.cli import main
from train.config import ConfigError, TrainConfig
from train.data import DataError
from train.loop import train


@pytest.fixture(scope="module")
def cache(tiny_models, circles, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "latents"
    assert main(["cache", "--dataset", str(circles), "--base-model", str(tiny_models[0]), "--resolution", "64",
                 "--out", str(out), "--batch-size", "4", "--rows-per-shard", "6"]) == 0
    return out


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
    with pytest.raises(ConfigError, match="latent_cache replaces precompute and streaming"):
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
    assert (out / "shard-00002.safetensors").read_bytes() == (cache / "shard-00002.safetensors").read_bytes()


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
