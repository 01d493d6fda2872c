"""The adversarial suite: what a visitor of a public deployment can send, and what comes back.

| Input | Where | Outcome |
| --- | --- | --- |
| non-image bytes named `.png` | /generate, /detect | refused: "not a readable image" |
| truncated PNG | /detect | refused: "damaged or truncated" |
| decompression bomb (20000x20000 PNG, a few KB) | /detect | refused before decoding (pixel limit) |
| animated GIF | /detect | refused: not PNG/JPEG/WEBP |
| TIFF renamed `.png` | /detect | refused by content: "a TIFF file; accepted: PNG, JPEG, WEBP" |
| 1x1 image | /detect | works (upscaled to the detect resolution) |
| 16-bit PNG, CMYK JPEG, EXIF-rotated JPEG | /detect | work (tests/test_annotators.py covers the maps) |
| steps 500, 64 images, guidance 50, size 8192 | /generate (public limits) | refused, naming field and value |
| NaN guidance | library (JSON cannot carry NaN) | refused, naming the field |
| path traversal in model fields (`../../etc`, `/etc/passwd`) | Studio on a public deployment | refused: Hub ids only |
| path traversal in file URLs (`/gradio_api/file=/etc/passwd`, the HF cache) | HTTP | 403, never served |
| 20 concurrent /generate calls, queue of 8 | /generate | own seed's pixels, or refused as "queue full" |
"""

import io
import struct
import threading
import urllib.request
import zlib

import numpy as np
import pytest
from PIL import Image


def png_bomb(side=20000):
    """A valid PNG header claiming side x side pixels, with a tiny compressed body."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side // 8 + 1) * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def save(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def encoded(image, fmt, **kw):
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def gif_animation():
    frames = [Image.new("P", (32, 32), i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    return buf.getvalue()


@pytest.mark.parametrize("name, make, message", [
    ("fake.png", lambda: b"GIF89a? no, just text pretending", "not a readable image"),
    ("cut.png", lambda: encoded(Image.new("RGB", (300, 300), "red"), "PNG")[:150], "damaged or truncated"),
    ("bomb.png", png_bomb, "400 MP, over the 40 MP limit"),
    ("anim.png", gif_animation, "GIF"),
    ("scan.png", lambda: encoded(Image.new("RGB", (64, 64)), "TIFF"), "a TIFF file; accepted: PNG, JPEG, WEBP"),
])
def test_bad_uploads_are_refused_by_content(client, tmp_path, name, make, message):
    from gradio_client import handle_file

    path = save(tmp_path, name, make())
    with pytest.raises(Exception) as err:
        client.predict(handle_file(path), api_name="/detect")
    assert message in str(err.value)


def test_tiny_image_works(client, tmp_path):
    from gradio_client import handle_file

    path = save(tmp_path, "one.png", encoded(Image.new("RGB", (1, 1), "white"), "PNG"))
    assert Image.open(client.predict(handle_file(path), api_name="/detect")).size == (512, 512)


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=500), "steps=500 is out of range [1, 50]"),
    (dict(steps=0), "steps=0 is out of range [1, 50]"),
    (dict(num_images=64), "num_images=64 is out of range [1, 4]"),
    (dict(guidance=50), "guidance=50.0 is out of range"),
    (dict(width=8192, height=8192), "width=8192 is out of range [64, 1024]"),
])
def test_public_limits_hold_for_hidden_api_calls(client, tmp_path, cond_map, kwargs, message):
    from gradio_client import handle_file

    path = tmp_path / "map.png"
    cond_map.save(path)
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(path)), **kwargs, api_name="/generate")
    assert message in str(err.value)


def test_files_outside_our_folders_are_never_served(public_app):
    from huggingface_hub import constants

    url = public_app[0]
    for target in ("/etc/passwd", f"{constants.HF_HOME}/token", "../../../../etc/passwd"):
        for route in ("gradio_api/file=", "file="):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(url + route + target, timeout=10)
            assert err.value.code in (403, 404)


def test_model_fields_accept_hub_ids_only(public_app, cond_map):
    from cnet.request import RequestError
    from webui.service import UnitInput

    studio = public_app[1]
    for reference in ("../../etc", "/etc/passwd", "~/.cache/huggingface", "a/b/c"):
        with pytest.raises(RequestError, match="Hub ids"):
            studio.generate([UnitInput("map", cond_map, controlnet=reference)], num_inference_steps=1)
        with pytest.raises(RequestError, match="Hub ids"):
            studio.generate([UnitInput("map", cond_map)], base_model=reference, num_inference_steps=1)


def test_training_is_refused_on_the_public_deployment(public_app, monkeypatch):
    from webui.training import TrainingRefused

    studio = public_app[1]
    with pytest.raises(TrainingRefused):
        studio.training.start("x", {"dataset": "fusing/fill50k"})
    with pytest.raises(TrainingRefused):
        studio.training.stop()


def test_results_are_handed_over_as_the_saved_pngs(client, tmp_path, cond_map):
    """The API's images and map are our saved files (with their metadata), which Gradio copies into its cache
    atomically; images it encodes itself are written in place under a content-addressed name, and two visitors
    getting the same map at once were once served a truncated file."""
    from gradio_client import handle_file

    from cnet.result import read_metadata

    path = tmp_path / "map.png"
    cond_map.save(path)
    images, condition_map, metadata = client.predict(handle_file(str(path)), steps=1, seed=5, api_name="/generate")
    assert read_metadata(images[0]["image"])["seed"] == 5 == metadata[0]["seed"]
    assert np.array_equal(np.asarray(Image.open(condition_map).convert("RGB")), np.asarray(cond_map))


@pytest.mark.slow
def test_twenty_concurrent_clients_get_their_own_images_or_a_clean_refusal(public_app, tmp_path, cond_map):
    from gradio_client import Client, handle_file

    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest

    path = tmp_path / "map.png"
    cond_map.save(path)
    url = public_app[0]
    results: dict[int, object] = {}

    def visitor(seed: int) -> None:
        try:
            images, _, metadata = Client(url, verbose=False).predict(handle_file(str(path)), steps=2, seed=seed,
                                                                     api_name="/generate")
            results[seed] = (np.asarray(Image.open(images[0]["image"]).convert("RGB")), metadata[0]["seed"])
        except Exception as err:  # noqa: BLE001 - every failure is inspected below
            results[seed] = err

    threads = [threading.Thread(target=visitor, args=(seed,)) for seed in range(100, 120)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 20
    engine = Engine(device="cpu")
    completed = 0
    for seed, outcome in results.items():
        if isinstance(outcome, Exception):
            assert "queue" in str(outcome).lower() and "full" in str(outcome).lower(), outcome
            continue
        pixels, reported = outcome
        expected = engine.generate(GenerationRequest(units=[ControlUnit(Image.open(path).convert("RGB"))],
                                                     num_inference_steps=2, seed=seed)).images[0]
        assert reported == seed and np.array_equal(pixels, np.asarray(expected))  # nobody gets another's image
        completed += 1
    assert completed >= 8  # the queue holds 8; the rest may be refused, never lost or mixed up
