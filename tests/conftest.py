"""Shared fixtures: tiny models built from configs and saved in diffusers layout, so `from_pretrained` runs for real."""

from __future__ import annotations

import contextlib
import os
import tempfile

import numpy as np
import pytest
from PIL import Image

# Hermetic: no network (an uncached model fails at once) and an empty Hugging Face cache of our own, so a model this
# machine happens to have cached (Stable Diffusion 1.5, say) changes nothing. Set before anything imports
# huggingface_hub, which reads them once; subprocesses inherit them.
os.environ["HF_HUB_OFFLINE"] = "1"


def _patient_api_clients() -> None:
    """gradio_client's Client reads the app's config and API info within httpx's default timeout (5 s); on this
    2-core machine, under a whole suite, an app took longer once (a ReadTimeout at a fixture's setup, 2026-12-07).
    The tests' clients wait up to 120 s, as RawUI's do; what is tested is what the app answers, not how fast."""
    import gradio_client

    original = gradio_client.Client.__init__

    def patient(self, *args, httpx_kwargs=None, **kwargs):
        original(self, *args, httpx_kwargs={"timeout": 120, **(httpx_kwargs or {})}, **kwargs)

    gradio_client.Client.__init__ = patient


_patient_api_clients()


def _patient_localhost_check() -> None:
    """Gradio's launch asks its own new server for a HEAD within 3 s, and one timeout ends the launch ("When
    localhost is not accessible, a shareable link must be created"). At the end of a whole suite on 2 cores a fresh
    server answered later than that (two clean-clone runs, 2026-12-07, the last test file's app): the tests' apps
    are on localhost by construction, so the probe is given up to a minute."""
    import time

    import httpx
    from gradio import networking

    def url_ok(url: str) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.head(url, timeout=10, verify=False).status_code in (200, 401, 301, 302, 303, 307, 308):
                    return True
            except (httpx.TimeoutException, httpx.TransportError):
                pass
            time.sleep(0.5)
        return False

    networking.url_ok = url_ok


_patient_localhost_check()
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="cnet-tests-hf-home-")
os.environ.pop("HF_HUB_CACHE", None)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")
# The same numbers on any machine: a CPU with AMX would otherwise pick bfloat16 (common/models.py `pick_dtype`), and
# the tests compare pixels with diffusers' float32 calls. The automatic choice has its own test (test_models.py).
os.environ["CNET_DTYPE"] = "float32"


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
def _shared_engine():
    return []  # the engine the `engine` fixture hands out while it stays as a fresh one would be


@pytest.fixture
def engine(tiny_models, tiny_blip, _shared_engine):
    """The tiny engine, loaded once and shared while it is clean: a test that leaves LoRAs or embeddings loaded on
    it hands the next test a new engine, so no test sees another's styles."""
    from cnet.engine import Engine

    if not _shared_engine:
        _shared_engine.append(Engine(str(tiny_models[0]), device="cpu", caption_model=str(tiny_blip)))
    yield _shared_engine[0]
    if _shared_engine[0]._loras or _shared_engine[0]._embeddings:
        _shared_engine.clear()


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


def close_app(demo) -> None:
    """demo.close(), which sets an asyncio.Event from this (non-loop) thread: with event streams still waiting on it
    the set can race ("deque mutated during iteration") after the flag is already set, aborting the close half-way.
    A second close finds the flag set and finishes shutting the server down."""
    try:
        demo.close()
    except RuntimeError:
        demo.close()


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
    close_app(demo)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def latent_cache(tiny_models, circles, tmp_path_factory):
    """A latent cache of the 16 circles at 64 px, in shards of 6 rows (built by `python -m train cache`)."""
    from train.cli import main

    out = tmp_path_factory.mktemp("cache") / "latents"
    assert main(["cache", "--dataset", str(circles), "--base-model", str(tiny_models[0]), "--resolution", "64",
                 "--out", str(out), "--batch-size", "4", "--rows-per-shard", "6"]) == 0
    return out


@pytest.fixture(scope="session")
def circles(tmp_path_factory):
    """A Fill50K-layout folder of 16 circles from the project's own seeded generator."""
    from shapes.data import write_dataset

    return write_dataset(tmp_path_factory.mktemp("fill50k"), 16, seed=0)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def launched(public: bool, output_dir, workspace, **settings):
    """The real app on a free localhost port, yielding its URL; closed afterwards."""
    from app import build_app, launch_options
    from webui.settings import PUBLIC_LIMITS, AppSettings

    limits = {"limits": PUBLIC_LIMITS, "allow_local_paths": False} if public else {}
    config = AppSettings(port=free_port(), public=public, output_dir=output_dir, **{**limits, **settings})
    demo, _ = build_app(config, workspace=str(workspace))
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(config))
    try:
        yield f"http://127.0.0.1:{config.port}/"
    finally:
        close_app(demo)


class RawUI:
    """Calls the app's UI events by index over plain HTTP, as anyone can (every Gradio event is an API, hidden or
    not): the values the browser would send, with some replaced, posted to the queue; the reply read from its
    event stream."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.http = httpx.Client(timeout=120)
        self.config = self.http.get(url + "config").json()
        self.components = {c["id"]: c for c in self.config["components"]}

    def find(self, elem_id: str, event: str = "click") -> dict:
        """The event on the component with this elem_id (the one that takes the most inputs, where several
        handlers share the trigger or are chained on it: the run, not its click event), or the endpoint with this
        api_name; event="success": the event chained on success of that one (a live frame after its gate)."""
        if event == "success":
            first = self.find(elem_id, "click")
            return max((dep for dep in self.config["dependencies"] if dep.get("trigger_after") == first["id"]),
                       key=lambda dep: len(dep["inputs"]))
        found = []
        for dep in self.config["dependencies"]:
            if event == "api" and dep.get("api_name") == elem_id:
                return dep
            for target, name in dep["targets"]:
                if name == event and self.components.get(target, {}).get("props", {}).get("elem_id") == elem_id:
                    found.append(dep)
        if not found:
            raise KeyError(f"no {event} event on #{elem_id}")
        # A run chained on its button's click event (`.then`: webui/stops.py) is that button's run too.
        ids = {dep["id"] for dep in found}
        found += [dep for dep in self.config["dependencies"]
                  if dep.get("trigger_after") in ids and not dep.get("trigger_only_on_success")]
        return max(found, key=lambda dep: len(dep["inputs"]))

    def upload(self, path) -> dict:
        with open(path, "rb") as f:
            server_path = self.http.post(self.url + "gradio_api/upload", files={"files": f}).json()[0]
        return {"path": server_path, "meta": {"_type": "gradio.FileData"}, "orig_name": "upload.png"}

    def values(self, dep: dict, by_id: dict[int, object] | None = None, **overrides) -> list:
        """The dependency's inputs at their initial values; `overrides` by elem_id or label (spaces as _), `by_id`
        by component id (a gr.State has neither)."""
        data = []
        for cid in dep["inputs"]:
            props = self.components[cid].get("props", {})
            keys = {props.get("elem_id"), (props.get("label") or "").lower().replace(" ", "_")}
            hit = next((k for k in overrides if k in keys), None)
            if by_id and cid in by_id:
                data.append(by_id[cid])
            else:
                data.append(overrides[hit] if hit else props.get("value"))
        return data

    def join(self, elem_id: str, event: str = "click", session: str | None = None,
             by_id: dict[int, object] | None = None, **overrides) -> str:
        """Queue the event (elem_id + event, or an api_name with event="api"); returns the session to listen on.
        The body is plain ASCII JSON, so it can carry what a browser would not send (a lone surrogate, say)."""
        import json
        import secrets

        dep = self.find(elem_id, event)
        session = session or secrets.token_hex(6)
        trigger = dep["targets"][0][0] if dep["targets"][0][0] is not None else \
            self.find(elem_id, "click")["targets"][0][0]  # a chained event: its first event's trigger
        body = {"data": self.values(dep, by_id, **overrides), "fn_index": dep["id"], "session_hash": session,
                "event_data": None, "trigger_id": trigger}
        joined = self.http.post(self.url + "gradio_api/queue/join", content=json.dumps(body),
                                headers={"content-type": "application/json"})
        assert joined.status_code == 200, joined.text
        return session

    def messages(self, session: str):
        """The event stream's messages, as they arrive (closing the generator closes the connection)."""
        import json

        with self.http.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": session}) as reply:
            for line in reply.iter_lines():
                if line.startswith("data:"):
                    yield json.loads(line[5:])

    def call(self, elem_id: str, event: str = "click", session: str | None = None,
             by_id: dict[int, object] | None = None, **overrides) -> dict:
        """The final message of the event: {"success": bool, "output": {...}} (errors in output["error"]), with the
        notices shown on the way (gr.Warning / gr.Info) in "notices"."""
        notices = []
        for message in self.messages(self.join(elem_id, event, session, by_id, **overrides)):
            if message.get("msg") == "log":
                notices.append(message.get("log", ""))
            if message.get("msg") == "process_completed":
                return {**message, "notices": notices}
        raise AssertionError("the event stream ended without a result")

    @staticmethod
    def error(reply: dict) -> str:
        """What the visitor was told went wrong: a raised error, or the notice of an event that keeps its results."""
        if not reply["success"]:
            return reply["output"]["error"]
        assert reply["notices"], f"no error and no notice: {reply}"
        return reply["notices"][0]


@pytest.fixture
def raw_ui():
    return RawUI


@pytest.fixture(scope="module")
def public_app(tiny_models, tiny_blip, tmp_path_factory):
    """A public deployment (tight limits, Hub ids only, queue of 8) over the tiny local models."""
    import os
    import socket

    from app import build_app, launch_options
    from webui.settings import PUBLIC_LIMITS, AppSettings

    env = {"CNET_BASE_MODEL": str(tiny_models[0]), "CNET_CAPTION_MODEL": str(tiny_blip),
           "CNET_CONTROLNET_CANNY": str(tiny_models[1])}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = AppSettings(port=port, public=True, allow_local_paths=False, limits=PUBLIC_LIMITS, max_queue=8,
                           output_dir=tmp_path_factory.mktemp("public-outputs"))
    demo, studio = build_app(settings, workspace=str(tmp_path_factory.mktemp("ws")))
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(settings))
    yield f"http://127.0.0.1:{port}/", studio
    close_app(demo)
    for k, v in saved.items():
        os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def client(public_app):
    from gradio_client import Client

    return Client(public_app[0], verbose=False)


def launch_two_processes(*args: str, timeout: int = 600):
    """`accelerate launch` of two CPU processes (gloo) running `args` (e.g. "-m", "train", ...); the finished
    process, its output captured."""
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", *args],
                          capture_output=True, text=True, env={**os.environ, "ACCELERATE_USE_CPU": "1"},
                          timeout=timeout)
