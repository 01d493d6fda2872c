"""Image-editor payloads from a visitor of a public deployment, over HTTP (issue 24, items 1-2 and the 45 MP
background of item 10): every editor-backed event and Gradio's blob upload, with the server's memory measured
before and after each payload (this process is the server: `public_app` runs it in-process).

Members tried: 16 layers of one 46 KB flat 10 MP PNG; 5 small layers; a 12 MP picture with 3 layers (over the pixel
budget); a 45 MP background alone; an ICO and an ICNS whose header understates its image; the same through the
sketch, the map editor and the Edit tab, each followed by a small drawing that is taken. Blobs (which the page never
posts for our editors): layer index 20,000,000, 10**9, -1 and "abc", an unknown part, a plain layer, on each
editor; an event naming posted blobs; a body of many files; a body without a Content-Length.
"""

from __future__ import annotations

import io
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


@pytest.mark.parametrize("part, index", [("layer", 20_000_000), ("layer", 10**9), ("layer", -1), ("layer", "abc"),
                                         ("mask", "null"), ("background", "null"), ("layer", 0)])
@pytest.mark.parametrize("editor", ["sketch", "map-editor", "edit-picture"])
def test_blob_uploads_are_refused_before_anything_is_kept(public_app, raw_ui, pictures, part, index, editor):
    """The page posts blobs only for an editor with a change or input listener, which ours have not (guarded below):
    every blob upload is refused, so Gradio's layer list never grows (index 20,000,000 kept 153 MB before)."""
    ui = raw_ui(public_app[0])
    reply, growth = peak_growth(lambda: post_blob(ui, editor, secrets.token_hex(6), part, index, pictures["small"]))
    assert reply.status_code == 403 and "take uploaded files, not blobs" in reply.json()["detail"], reply.text
    assert growth < 50, f"the server's peak rose by {growth:.0f} MB"


def test_an_event_naming_posted_blobs_is_refused(public_app, raw_ui):
    ui = raw_ui(public_app[0])
    reply = ui.call("edit-run", **{"edit-picture": {"id": secrets.token_hex(6), "background": None, "layers": [],
                                                    "composite": None}})
    assert not reply["success"] and "take uploaded files, not blobs posted by id" in reply["output"]["error"]


def test_no_editor_listens_to_change_or_input(public_app, raw_ui):
    """With such a listener Gradio's page would post the editor's images as blobs (refused above) instead of
    uploading files: adding one means revisiting webui/editor.py first."""
    ui = raw_ui(public_app[0])
    editors = {c["id"] for c in ui.config["components"] if c["type"] == "imageeditor"}
    from webui.settings import PUBLIC_LIMITS

    # The sketch, the map, the Edit tab's picture, and a map-and-mask editor per extra unit in both tabs.
    assert len(editors) == 3 + 2 * (PUBLIC_LIMITS.max_units - 1)
    listened = [(target, event) for dep in ui.config["dependencies"] for target, event in dep["targets"]
                if target in editors and event in ("change", "input")]
    assert listened == []


def icns_with_a_smaller_header() -> bytes:
    """An ICNS file whose header says 1024x1024 while it holds a 4000x4000 PNG."""
    import struct

    inner = flat_png(4000, 4000, "RGB")
    chunk = b"ic10" + struct.pack(">I", len(inner) + 8) + inner
    return b"icns" + struct.pack(">I", len(chunk) + 8) + chunk


@pytest.mark.parametrize("make", [lambda: icns_with_a_smaller_header(),
                                  lambda: (lambda b: (Image.new("RGB", (256, 256)).save(b, "ICO"), b.getvalue())[1])(
                                      io.BytesIO())], ids=["icns", "ico"])
def test_editor_images_are_png_jpeg_or_webp(public_app, raw_ui, make):
    """Pillow's ICO reader decodes on open and an ICNS header can understate its image: neither is read at all."""
    ui = raw_ui(public_app[0])
    odd = uploaded(ui, make())
    reply, growth = peak_growth(lambda: ui.call("edit-run", **{"edit-picture": {
        "background": odd, "composite": odd, "layers": []}}))
    assert not reply["success"] and "not a readable image" in reply["output"]["error"], reply
    assert growth < 50


def test_a_component_server_body_over_the_limit_is_refused_before_it_is_read(public_app):
    import httpx

    url = public_app[0] + "gradio_api/component_server"
    files = [("file", (f"{i}.png", b"\0" * (4 * MB))) for i in range(8)]  # 32 MB: each file under max_file_size
    reply, growth = peak_growth(lambda: httpx.post(url, files=files, data={"fn_name": "accept_blobs"}, timeout=60))
    assert reply.status_code == 413 and "request body over" in reply.text
    assert growth < 100

    def chunks():  # no Content-Length (3 files of 12 MB, each allowed): refused before a byte is parsed
        for name in "abc":
            yield f'--x\r\nContent-Disposition: form-data; name="file"; filename="{name}.png"\r\n\r\n'.encode()
            for _ in range(12):
                yield b"\0" * MB
            yield b"\r\n"
        yield b"--x--\r\n"

    streamed = httpx.post(url, content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"},
                          timeout=60)
    assert streamed.status_code == 411 and "Content-Length is required" in streamed.text


def test_the_bounds_are_read_per_deployment(monkeypatch):
    from webui.editor import EditorLimits

    public, local = EditorLimits.for_deployment(True), EditorLimits.for_deployment(False)
    assert (public.max_layers, public.max_pixels) == (4, 36_000_000)
    assert (local.max_layers, local.max_pixels) == (16, 160_000_000)
    monkeypatch.setenv("CNET_EDITOR_MAX_MP", "48")
    assert EditorLimits.for_deployment(True).max_pixels == 48_000_000
