"""Image-editor payloads from a visitor of a public deployment, over HTTP (issue 24, items 1-2 and the 45 MP
background of item 10): every editor-backed event and Gradio's blob upload, with the server's memory measured
before and after each payload (this process is the server: `public_app` runs it in-process).

Members tried: 16 layers of one 46 KB flat 10 MP PNG; 5 small layers; a 12 MP picture with 3 layers (over the pixel
budget); a 45 MP background alone; the same through the sketch, the map editor and the Edit tab. Blobs: layer index
20,000,000, 10**9, -1 and "abc"; an unknown part; a 45 MP blob; blobs of one payload adding up past the budget; a
body of many files; 300 pending payloads. Then the browser's own flow (blobs, then the event naming them) still works.
"""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path

import pytest
from PIL import Image

MB = 1 << 20


def peak_growth(action) -> tuple[object, float]:
    """Run `action` with this process's peak RSS reset first; return its result and how far the peak rose (MB)."""
    status = Path("/proc/self/status")

    def read(key: str) -> float:
        line = next(line for line in status.read_text().splitlines() if line.startswith(key + ":"))
        return int(line.split()[1]) * 1024 / MB

    before = read("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts again from the current RSS
    result = action()
    return result, read("VmHWM") - before


def flat_png(width: int, height: int, mode: str = "RGBA") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def pictures():
    return {"10mp": flat_png(3873, 2582), "12mp": flat_png(4000, 3000), "45mp": flat_png(7500, 6000, "1"),
            "small": flat_png(64, 64)}


def uploaded(ui, data: bytes) -> dict:
    path = ui.http.post(ui.url + "gradio_api/upload", files={"files": ("x.png", data)}).json()[0]
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}


# The editor-backed events, as a visitor calls them by index: (run button, editor, the preview of that source).
EVENTS = {"edit tab": ("edit-run", "edit-picture", "edit-preview"), "sketch": ("generate", "sketch", "preview"),
          "map editor": ("generate", "map-editor", "preview")}
PAYLOADS = {  # parts -> what the refusal names
    "16 layers of a 10 MP PNG": (("10mp", "10mp", ["10mp"] * 16), "sent 16 layers; this deployment takes at most 4"),
    "5 small layers": (("small", "small", ["small"] * 5), "sent 5 layers; this deployment takes at most 4"),
    "12 MP with 3 layers": (("12mp", "12mp", ["12mp"] * 3), "add up to 60 MP (1 background of 12.0 MP, 1 composite"
                                                           " of 12.0 MP, 3 layers of 12.0 MP); this deployment takes "
                                                           "at most 36 MP"),
    "a 45 MP background": (("45mp", None, []), "background: refused before decoding: 45 MP, over the 40 MP limit"),
}


@pytest.mark.parametrize("event", list(EVENTS))
@pytest.mark.parametrize("payload", list(PAYLOADS))
def test_editor_payloads_over_the_bounds_are_refused_before_decoding(public_app, raw_ui, pictures, event, payload):
    ui = raw_ui(public_app[0])
    (background, composite, layers), message = PAYLOADS[payload]
    files = {name: uploaded(ui, data) for name, data in pictures.items()}
    value = {"background": files[background], "composite": files[composite] if composite else None,
             "layers": [files[name] for name in layers]}
    button, editor, preview = EVENTS[event]
    reply, growth = peak_growth(lambda: ui.call(button, **{editor: value}))
    assert not reply["success"] and message in reply["output"]["error"], reply
    # Before the bound, 16 layers of the 10 MP PNG raised the peak by 1.2 GB and 36 MP x 5 by 2.5 GB.
    assert growth < 150, f"the server's peak rose by {growth:.0f} MB"
    # The app keeps serving the same editor: a small drawing is taken.
    small = {"background": files["small"], "composite": files["small"], "layers": [files["small"]]}
    assert ui.call(preview, **{editor: small})["success"]


def post_blob(ui, editor: str, payload_id: str, part: str, index, data: bytes):
    component = next(c for c in ui.config["components"] if c["props"].get("elem_id") == editor)
    return ui.http.post(ui.url + "gradio_api/component_server", data={
        "session_hash": secrets.token_hex(6), "component_id": str(component["id"]), "fn_name": "accept_blobs",
        "id": payload_id, "type": part, "index": str(index)}, files={"file": (f"{part}.png", data)})


@pytest.mark.parametrize("part, index, status, message", [
    ("layer", 20_000_000, 413, "layer index 20000000 is out of range: this deployment takes at most 4 layers"),
    ("layer", 10**9, 413, "layer index 1000000000 is out of range"),
    ("layer", -1, 413, "layer index -1 is out of range"),
    ("layer", "abc", 400, "layer index 'abc' is not a number"),
    ("mask", "null", 400, "takes one image as a background, composite or layer"),
    ("background", "null", 413, "refused before decoding: 45 MP, over the 40 MP limit"),
])
def test_blob_uploads_are_bounded_before_anything_is_kept(public_app, raw_ui, pictures, part, index, status, message):
    ui = raw_ui(public_app[0])
    data = pictures["45mp"] if part == "background" else b"\0"
    reply, growth = peak_growth(lambda: post_blob(ui, "sketch", secrets.token_hex(6), part, index, data))
    assert reply.status_code == status and message in reply.json()["detail"], reply.text
    assert growth < 50, f"the server's peak rose by {growth:.0f} MB"  # index 20,000,000 kept 153 MB before


def test_blobs_of_one_payload_past_the_budget_are_refused_and_the_event_says_why(public_app, raw_ui, pictures):
    ui = raw_ui(public_app[0])
    payload_id = secrets.token_hex(6)
    for part, index in (("background", "null"), ("composite", "null"), ("layer", 0)):
        assert post_blob(ui, "edit-picture", payload_id, part, index, pictures["12mp"]).status_code == 200
    refused = post_blob(ui, "edit-picture", payload_id, "layer", 1, pictures["12mp"])
    assert refused.status_code == 413 and "add up to 48 MP" in refused.json()["detail"]
    reply = ui.call("edit-run", **{"edit-picture": {"id": payload_id, "background": None, "layers": [],
                                                    "composite": None}})
    assert not reply["success"] and "add up to 48 MP" in reply["output"]["error"]


def test_the_browsers_own_flow_still_works_through_blobs(public_app, raw_ui, pictures):
    """Blobs posted under an id, then the event naming it: the picture reaches the back end (here the Edit tab's
    preview, which draws the picture and its mask)."""
    ui = raw_ui(public_app[0])
    payload_id = secrets.token_hex(6)
    picture, layer = flat_png(96, 64, "RGB"), io.BytesIO()
    Image.new("RGBA", (96, 64), (255, 255, 255, 255)).save(layer, "PNG")
    for part, index, data in (("background", "null", picture), ("composite", "null", picture),
                              ("layer", 0, layer.getvalue())):
        assert post_blob(ui, "edit-picture", payload_id, part, index, data).status_code == 200
    reply = ui.call("edit-preview", **{"edit-picture": {"id": payload_id, "background": None, "layers": [],
                                                        "composite": None}, "edit-operation": "inpaint"})
    assert reply["success"], reply
    shown = reply["output"]["data"][0]
    assert shown and Image.open(shown["path"]).size == (96, 64)


def test_pending_payloads_are_bounded_and_a_dropped_one_is_named(public_app, raw_ui, pictures):
    ui = raw_ui(public_app[0])
    first = secrets.token_hex(6)
    assert post_blob(ui, "sketch", first, "background", "null", pictures["small"]).status_code == 200
    for _ in range(260):  # the store keeps 256 payloads: the oldest, `first`, is dropped
        post_blob(ui, "sketch", secrets.token_hex(6), "background", "null", pictures["small"])
    reply = ui.call("generate", sketch={"id": first, "background": None, "layers": [], "composite": None})
    assert not reply["success"] and "dropped from the server's memory" in reply["output"]["error"]


def test_a_component_server_body_over_the_limit_is_refused_before_it_is_read(public_app):
    import httpx

    url = public_app[0] + "gradio_api/component_server"
    files = [("file", (f"{i}.png", b"\0" * (4 * MB))) for i in range(8)]  # 32 MB: each file under max_file_size
    reply, growth = peak_growth(lambda: httpx.post(url, files=files, data={"fn_name": "accept_blobs"}, timeout=60))
    assert reply.status_code == 413 and "request body over" in reply.text

    def chunks():  # no Content-Length: the body is counted as it streams in (3 files of 12 MB, each allowed)
        for name in "abc":
            yield f'--x\r\nContent-Disposition: form-data; name="file"; filename="{name}.png"\r\n\r\n'.encode()
            for _ in range(12):
                yield b"\0" * MB
            yield b"\r\n"
        yield b"--x--\r\n"

    streamed = httpx.post(url, content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"},
                          timeout=60)
    assert streamed.status_code == 413, streamed.text
    assert growth < 100


def test_the_bounds_are_read_per_deployment(monkeypatch):
    from webui.editor import EditorLimits

    public, local = EditorLimits.for_deployment(True), EditorLimits.for_deployment(False)
    assert (public.max_layers, public.max_pixels) == (4, 36_000_000)
    assert (local.max_layers, local.max_pixels) == (16, 160_000_000)
    monkeypatch.setenv("CNET_EDITOR_MAX_MP", "48")
    assert EditorLimits.for_deployment(True).max_pixels == 48_000_000
    assert json.dumps(public.max_layers)  # plain numbers: nothing of the store reaches the browser's config
