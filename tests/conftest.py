"""Shared fixtures: tiny models built from configs and saved in diffusers layout, so `from_pretrained` runs for real."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

# Tests never reach the network: an uncached model must fail at once.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TQDM_DISABLE", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """(base folder, ControlNet folder) of a tiny random SD1.5-shaped pipeline."""
    from cnet.tiny import save_tiny_models

    return save_tiny_models(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def second_controlnet(tmp_path_factory):
    """Another tiny ControlNet (other seed), for switching and multi-ControlNet tests."""
    from cnet.tiny import build_tiny_components

    path = tmp_path_factory.mktemp("cn2") / "controlnet"
    build_tiny_components(seed=1)["controlnet"].save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory):
    from cnet.tiny import save_tiny_blip

    return save_tiny_blip(tmp_path_factory.mktemp("blip"))


@pytest.fixture(scope="session")
def engine(tiny_models, tiny_blip):
    from cnet.engine import Engine

    return Engine(str(tiny_models[0]), device="cpu", caption_model=str(tiny_blip))


@pytest.fixture
def cond_map():
    """A 64x64 white-on-black edge map: a ring, like a Canny map of a disc."""
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 30, xx - 34)
    ring = ((r > 14) & (r < 17)).astype(np.uint8) * 255
    return Image.fromarray(np.stack([ring] * 3, axis=-1))


@pytest.fixture(scope="session")
def annotator_weights(tmp_path_factory):
    """Random weights for every weight-based annotator, in the layouts their real loaders read."""
    from annotators.random_weights import save_aux_weights, save_depth_anything, save_upernet

    root = tmp_path_factory.mktemp("annotator-weights")
    return {"aux": save_aux_weights(root / "Annotators"), "depth_anything": save_depth_anything(root / "da"),
            "seg": save_upernet(root / "seg")}


@pytest.fixture
def astronaut():
    from skimage import data

    return data.astronaut()  # 512x512 RGB, public domain (NASA)


@pytest.fixture(scope="module")
def app_url(tiny_models, tiny_blip, tmp_path_factory):
    """The real app, launched on a free localhost port, with every model pointed at the tiny local ones.

    Module-scoped: the environment it sets is restored when the module's tests are done."""
    import socket

    from app import build_app, launch_options
    from webui.settings import AppSettings

    env = {"CNET_BASE_MODEL": str(tiny_models[0]), "CNET_CAPTION_MODEL": str(tiny_blip),
           **{f"CNET_CONTROLNET_{k}": str(tiny_models[1]) for k in ("CANNY", "SCRIBBLE", "DEPTH", "OPENPOSE")}}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = AppSettings.from_env(port=port, output_dir=tmp_path_factory.mktemp("outputs"))
    demo, _ = build_app(settings)
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(settings))
    yield f"http://127.0.0.1:{port}/"
    demo.close()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def circles(tmp_path_factory):
    """A Fill50K-layout folder of 16 circles from the project's own seeded generator."""
    from train.shapes import write_dataset

    return write_dataset(tmp_path_factory.mktemp("fill50k"), 16, seed=0)
