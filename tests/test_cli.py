"""`python -m cnet` end to end, in a subprocess, as a user runs it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnet.result import read_metadata


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "cnet", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_tiny_model_command_writes_loadable_folders(tmp_path):
    proc = run("tiny-model", str(tmp_path / "m"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(tmp_path / "m" / "base"), str(tmp_path / "m" / "controlnet")]
    assert (tmp_path / "m" / "controlnet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "m" / "base" / "model_index.json").is_file()


def test_the_tiny_model_downsamples_like_stable_diffusion(tiny_models):
    """A VAE factor of 8 (a 512 canvas makes 64x64 latents, not 256x256) and a 64x64 default output."""
    import torch
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel

    vae = AutoencoderKL.from_pretrained(tiny_models[0], subfolder="vae")
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 512, 768)).latent_dist.mean
        condition = ControlNetModel.from_pretrained(tiny_models[1]).controlnet_cond_embedding(
            torch.zeros(1, 3, 512, 768))
    assert latents.shape[-2:] == condition.shape[-2:] == (64, 96)
    unet = UNet2DConditionModel.from_pretrained(tiny_models[0], subfolder="unet")
    assert unet.config.sample_size * 2 ** (len(vae.config.block_out_channels) - 1) == 64


def test_generate_writes_pngs_with_metadata_and_reruns(tiny_models, cond_map, tmp_path):
    cond_map.save(tmp_path / "cond.png")
    out = tmp_path / "out"
    proc = run("generate", "--image", str(tmp_path / "cond.png"), "--out", str(out), "--base-model",
               str(tiny_models[0]), "--controlnet", str(tiny_models[1]), "--steps", "2", "--seed", "9",
               "--num-images", "2", "--prompt", "a red circle", "--guidance", "5")
    assert proc.returncode == 0, proc.stderr
    paths = proc.stdout.split()
    assert [p.rsplit("/", 1)[1] for p in paths] == ["cnet-9-0.png", "cnet-9-1.png"]
    meta = read_metadata(paths[1])
    assert (meta["prompt_mode"], meta["prompt_used"], meta["seed"]) == ("custom", "a red circle", 10)
    assert "seed: 9" in proc.stderr

    proc = run("generate", "--from-png", paths[1], "--out", str(tmp_path / "exact"))
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(np.asarray(Image.open(proc.stdout.split()[0])), np.asarray(Image.open(paths[1])))

    # The re-run also goes through the low-VRAM mode: offloading moves weights, never numbers.
    proc = run("generate", "--from-png", paths[1], "--out", str(tmp_path / "again"), "--offload", "model")
    assert proc.returncode == 0, proc.stderr
    again = proc.stdout.split()
    assert len(again) == 1 and again[0].endswith("cnet-10-0.png")  # the batch re-ran; only the asked image is kept
    # Offload decodes one image at a time (VAE slicing), the original decoded the batch together: within 1/255.
    difference = np.abs(np.asarray(Image.open(again[0])).astype(int) - np.asarray(Image.open(paths[1])).astype(int))
    assert difference.max() <= 1
    assert read_metadata(again[0])["seed"] == 10 and read_metadata(again[0])["image_index"] == 1


def test_generate_reports_bad_input_without_traceback(tiny_models, cond_map, tmp_path):
    cond_map.save(tmp_path / "cond.png")
    proc = run("generate", "--image", str(tmp_path / "cond.png"), "--out", str(tmp_path), "--base-model",
               str(tiny_models[0]), "--controlnet", str(tiny_models[1]), "--width", "100")
    assert proc.returncode == 2
    assert "width=100 must be a multiple of 8" in proc.stderr and "Traceback" not in proc.stderr
    (tmp_path / "fake.png").write_bytes(b"not an image")
    proc = run("generate", "--image", str(tmp_path / "fake.png"), "--out", str(tmp_path))
    assert proc.returncode == 2 and "not a readable image" in proc.stderr


def test_generate_with_detect_runs_the_kinds_annotator(tiny_models, tmp_path):
    from skimage import data

    from annotators import detect

    photo = data.astronaut()
    Image.fromarray(photo).save(tmp_path / "photo.png")
    proc = run("generate", "--detect", "--image", str(tmp_path / "photo.png"), "--kind", "canny", "--out",
               str(tmp_path / "out"), "--base-model", str(tiny_models[0]), "--controlnet", str(tiny_models[1]),
               "--steps", "1", "--seed", "0", "--width", "64", "--height", "64")
    assert proc.returncode == 0, proc.stderr
    saved_map = np.asarray(Image.open(tmp_path / "out" / "cnet-0-control0.png"))
    # Canny 100/200 as the kind says, made at the asked size (it was made at 512 and then stretched)
    assert np.array_equal(saved_map, np.asarray(detect("canny", photo, width=64, height=64)))
    assert Image.open(proc.stdout.split()[0]).size == (64, 64)


pytestmark = pytest.mark.slow  # subprocesses: the full suite (CI) runs them, the fast tier does not


def test_a_rerun_takes_the_precision_its_png_was_made_in(tiny_models, cond_map, tmp_path):
    """A float32 PNG re-run where the automatic choice is bfloat16 (a CPU with AMX): the same pixels, since the re-run
    takes the PNG's precision on the same kind of device (CNET_DTYPE unset, as a user has it)."""
    import os

    from cnet.cli import _saved_dtype

    assert _saved_dtype({"dtype": "float32", "device": "cpu"}, "cpu") == "float32"
    assert _saved_dtype({"dtype": "float16", "device": "cuda:0"}, "cpu") is None  # another kind of device: its own
    assert _saved_dtype({"dtype": "int4", "device": "cpu"}, "cpu") is None
    assert _saved_dtype({"device": "cpu"}, "cpu") is None
    cond_map.save(tmp_path / "cond.png")
    proc = run("generate", "--image", str(tmp_path / "cond.png"), "--out", str(tmp_path / "out"), "--base-model",
               str(tiny_models[0]), "--controlnet", str(tiny_models[1]), "--steps", "2", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    made = proc.stdout.split()[0]
    assert read_metadata(made)["dtype"] == "float32"  # the suite pins float32 (conftest)
    unpinned = {k: v for k, v in os.environ.items() if k != "CNET_DTYPE"}
    proc = run("generate", "--from-png", made, "--out", str(tmp_path / "again"), env=unpinned)
    assert proc.returncode == 0, proc.stderr
    again = proc.stdout.split()[0]
    assert read_metadata(again)["dtype"] == "float32"
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(Image.open(made)))


@pytest.mark.parametrize("script, usage, absent", [
    ("cnet", "usage: cnet [-h] {generate", "python -m cnet [-h]"),
    ("cnet-train", "usage: cnet-train [-h]", "python -m train [-h]"),
    ("cnet-studio", "usage: cnet-studio [-h]", "This file only wires things together"),
])
def test_the_console_scripts_name_themselves_in_their_help(script, usage, absent):
    """Installed commands say their own name (`cnet`, not `python -m cnet`), and the app's help is for its users,
    not its developers."""
    import shutil

    path = shutil.which(script) or str(Path(sys.executable).with_name(script))
    proc = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and usage in proc.stdout and absent not in proc.stdout, proc.stdout[:500]


def test_the_deprecated_symlink_argument_diffusers_passes_is_not_shown_to_users():
    """diffusers' load_config hands huggingface_hub `local_dir_use_symlinks`; its warning reached users of the SDXL
    command line (issue 30). Once the studio's model code is loaded it is silenced by its text, nothing else."""
    code = ("import warnings, common.models\n"
            "from huggingface_hub.utils._validators import smoothly_deprecate_legacy_arguments as f\n"
            "f('hf_hub_download', {'local_dir_use_symlinks': 'auto'})\n"
            "warnings.warn('another warning stays')\n")
    proc = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120)
    assert "local_dir_use_symlinks" not in proc.stderr and "another warning stays" in proc.stderr
