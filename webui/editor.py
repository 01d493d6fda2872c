"""Image editors whose payloads are bounded before anything is decoded.

A `gr.ImageEditor` (and `gr.Sketchpad`, the same component) value is a background, a composite and a list of layers,
each an image. Gradio decodes every one to full RGBA before our code runs, so one 46 KB upload of a flat 10 MP PNG,
listed 16 times as layers, raised a public server's peak memory by 1.2 GB. The browser can send the images two ways:

- as files uploaded through `/gradio_api/upload` (bounded by `max_file_size`) and named in the event's value
  (`{"background": FileData, "layers": [...]}`): what it does for our editors; or
- as blobs posted to `/gradio_api/component_server` (`fn_name=accept_blobs`) under a payload id that the event's
  value then names: what Gradio's page does only for an editor with a `change` or `input` listener, which ours do not
  have. Gradio 6.31 grows a layer list to whatever `index` such a request says (`index=10**9` asks for about 8 GB) and
  keeps every payload until an event names it.

So the editors of webui/editor_components.py (`BoundedEditor` mixed into Gradio's classes) refuse blob uploads and
payload ids outright (a test keeps our editors free of change/input listeners, which would make the browser use
them), and for file references read each image's size from its header, accepting PNG, JPEG and WEBP only (Pillow's
ICO reader decodes on open, and an ICNS header can state a smaller size than its image), and refuse a payload with
more layers, a larger image or more pixels in total than `EditorLimits` allow, naming the limit. `BodyLimit` bounds
the body of a `component_server` request before it is read (Gradio's parser would read up to 1,000 files of
`max_file_size` each into memory), and refuses one without a Content-Length (a refused stream left its temporary
file behind).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from fastapi import HTTPException
from gradio.components.base import server

from annotators import ImageInputError
from annotators.images import image_size, max_pixels

from .errors import refusal

EDITOR_FORMATS = ("PNG", "JPEG", "WEBP")  # what the browser's editor sends, and nothing Pillow decodes on open


@dataclass(frozen=True)
class EditorLimits:
    """What one editor payload may hold."""

    max_layers: int = 16
    # background + composite + layers, together
    max_pixels: int = field(default_factory=lambda: 4 * max_pixels())

    @classmethod
    def for_deployment(cls, public: bool) -> EditorLimits:
        """The bounds of a deployment (webui.settings.editor_bounds)."""
        from .settings import editor_bounds

        bounds = editor_bounds(public)
        return cls(max_layers=bounds["editor_max_layers"], max_pixels=bounds["editor_max_mp"] * 1_000_000)


class EditorPayloadError(ValueError):
    """An editor payload over the deployment's bounds; the message names the limit."""


def check_payload(sizes: dict[str, list[tuple[int, int]]], limits: EditorLimits) -> None:
    """Refuse a payload whose parts (name -> sizes of its images) break `limits`, naming the limit."""
    layers = len(sizes.get("layer", []))
    if layers > limits.max_layers:
        raise EditorPayloadError(f"the editor sent {layers} layers; this deployment takes at most "
                                 f"{limits.max_layers}. Merge or delete layers, then try again")
    total = sum(w * h for parts in sizes.values() for w, h in parts)
    if total > limits.max_pixels:
        shown = ", ".join(f"{len(parts)} {name}{'s' if len(parts) > 1 else ''} of "
                          f"{max(w * h for w, h in parts) / 1e6:.1f} MP" for name, parts in sizes.items() if parts)
        raise EditorPayloadError(f"the editor's images add up to {total / 1e6:.0f} MP ({shown}); this deployment "
                                 f"takes at most {limits.max_pixels / 1e6:.0f} MP in one payload. Use a smaller "
                                 "picture, or fewer layers")


def _size_of(path: str, part: str) -> tuple[int, int]:
    """(width, height) from an image's header, without decoding its pixels; EDITOR_FORMATS only."""
    try:
        return image_size(path, what=f"the editor's {part}", formats=EDITOR_FORMATS)
    except ImageInputError as err:
        raise EditorPayloadError(str(err)) from None


def payload_sizes(payload: Any) -> dict[str, list[tuple[int, int]]]:
    """The sizes of a payload's images (file references); a payload that names posted blobs is refused."""
    if payload.id is not None:
        raise EditorPayloadError("this app's editors take uploaded files, not blobs posted by id: reload the page")
    parts = {"background": [payload.background], "composite": [payload.composite], "layer": payload.layers or []}
    return {name: [_size_of(f.path, name) for f in found if f is not None] for name, found in parts.items()}


class BoundedEditor:
    """The bounds, mixed into Gradio's editor classes (the browser sees a plain image editor)."""

    # Not `limits`: Gradio sends every attribute named like a constructor argument to the browser.
    _payload_limits: EditorLimits

    def _bind(self, limits: EditorLimits) -> None:
        self._payload_limits = limits

    # The browser sees Gradio's own image editor: its component, and its properties (read from the attributes
    # named like gr.ImageEditor's arguments, not this class's `*args, limits, **kwargs`).
    def get_block_name(self) -> str:
        return "imageeditor"

    def get_block_class(self) -> str:
        return "imageeditor"

    def get_config(self, cls: Any = None) -> dict[str, Any]:
        return super().get_config(cls=cls or gr.ImageEditor)  # type: ignore[misc]

    def preprocess(self, payload: Any) -> Any:
        if payload is not None:
            try:
                check_payload(payload_sizes(payload), self._payload_limits)
            except EditorPayloadError as err:
                raise refusal(str(err)[:1].upper() + str(err)[1:] + ".", "Editor payload refused") from None
        return super().preprocess(payload)  # type: ignore[misc]

    @server
    def accept_blobs(self, data: Any) -> None:
        """Gradio's blob upload, refused: our editors have no change or input listener, so the page sends files."""
        raise HTTPException(403, "this app's editors take uploaded files, not blobs")


class BodyLimit:
    """ASGI middleware: a POST to one of `paths` whose body is over `max_bytes`, or that does not say its length,
    gets HTTP 413 (411) before it is read."""

    def __init__(self, app: Any, paths: tuple[str, ...], max_bytes: int) -> None:
        self.app, self.paths, self.max_bytes = app, paths, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or \
                not scope.get("path", "").rstrip("/").endswith(self.paths):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is None:
            await _refuse(send, 411, "a Content-Length is required")
        elif not length.isdigit() or int(length) > self.max_bytes:
            await _refuse(send, 413, f"request body over {self.max_bytes} bytes")
        else:
            await self.app(scope, receive, send)


async def _refuse(send: Any, status: int, detail: str) -> None:
    body = f'{{"detail": "{detail}"}}'.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
