"""Image editors whose payloads are bounded before anything is decoded.

A `gr.ImageEditor` (and `gr.Sketchpad`, the same component) value is a background, a composite and a list of layers,
each an image. Gradio decodes every one to full RGBA before our code runs, so one 46 KB upload of a flat 10 MP PNG,
listed 16 times as layers, raised a public server's peak memory by 1.2 GB. The browser sends the images in two
ways, and both are bounded here:

- as file references in the event's value (`{"background": FileData, "layers": [...]}`), or
- as blobs posted to `/gradio_api/component_server` (`fn_name=accept_blobs`) under a payload id, which the event's
  value then names. Gradio 6.31 grows a layer list to whatever `index` the request says (`index=10**9` asks for
  about 8 GB) and keeps every payload until an event consumes it, which the browser's own strokes never do for all
  but the last one.

The editors of webui/editor_components.py (`BoundedEditor` mixed into Gradio's classes) read each image's size from
its header, refuse a payload with more layers, a larger image or more pixels in total than `EditorLimits` allow
(naming the limit), and keep pending blobs in one store per app that holds at most a number of bytes and payloads,
dropping the oldest. `BodyLimit` bounds the body of a `component_server` request before it is read (Gradio's parser
would read up to 1,000 files of `max_file_size` each into memory).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import gradio as gr
from fastapi import HTTPException
from gradio.components.base import server

from annotators import ImageInputError
from annotators.images import MAX_PIXELS, image_size

from .errors import refusal

EDITOR_PARTS = ("background", "composite", "layer")


@dataclass(frozen=True)
class EditorLimits:
    """What one editor payload may hold, and what the app keeps of payloads not yet used by an event."""

    max_layers: int = 16
    max_pixels: int = 4 * MAX_PIXELS  # background + composite + layers, together
    pending_bytes: int = 1 << 30  # blobs posted and not yet used by an event, every editor and visitor together
    pending_payloads: int = 256
    store: BlobStore = field(default_factory=lambda: BlobStore(), compare=False)

    @classmethod
    def for_deployment(cls, public: bool) -> EditorLimits:
        """The bounds of a deployment (webui.settings.editor_bounds); each call makes its own store of pending
        payloads: one per app."""
        from .settings import editor_bounds

        bounds = editor_bounds(public)
        return cls(max_layers=bounds["editor_max_layers"], max_pixels=bounds["editor_max_mp"] * 1_000_000,
                   pending_bytes=bounds["editor_pending_mb"] << 20)


class EditorPayloadError(ValueError):
    """An editor payload over the deployment's bounds; the message names the limit."""


class BlobStore(MutableMapping):
    """Gradio's `blob_storage` (payload id -> EditorDataBlobs), shared by the app's editors and bounded: adding a
    payload drops the oldest ones beyond `limits.pending_bytes` / `pending_payloads`. A payload refused or dropped
    leaves a note, so the event that names it says why instead of finding an empty editor."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._notes: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()
        self.limits: EditorLimits | None = None

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        size = sum(len(part) for part in (value.background, value.composite, *value.layers) if part)
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            self._sizes[key] = size
            limits = self.limits or EditorLimits()
            while len(self._items) > 1 and (len(self._items) > limits.pending_payloads
                                            or sum(self._sizes.values()) > limits.pending_bytes):
                dropped, _ = self._items.popitem(last=False)
                del self._sizes[dropped]
                self._note(dropped, "the editor's images were dropped from the server's memory (too many edits "
                                    "were waiting at once): change the drawing or upload the picture again")

    def __delitem__(self, key: str) -> None:
        with self._lock:
            del self._items[key]
            del self._sizes[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    @property
    def pending_bytes(self) -> int:
        return sum(self._sizes.values())

    def refuse(self, key: str, message: str) -> None:
        """Drop what was posted under `key` and remember why, for the event that names it."""
        with self._lock:
            self._items.pop(key, None)
            self._sizes.pop(key, None)
            self._note(key, message)

    def note(self, key: str) -> str | None:
        with self._lock:
            return self._notes.pop(key, None)

    def _note(self, key: str, message: str) -> None:
        self._notes[key] = message
        while len(self._notes) > 1024:
            self._notes.popitem(last=False)


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


def _size_of(source: Any, part: str) -> tuple[int, int]:
    """(width, height) from an image's header, without decoding its pixels."""
    try:
        return image_size(source, what=f"the editor's {part}")
    except ImageInputError as err:
        raise EditorPayloadError(str(err)) from None


def _payload_sizes(payload: Any, store: BlobStore) -> dict[str, list[tuple[int, int]]]:
    """The sizes of a payload's images: posted blobs (payload.id) or file references."""
    if payload.id is not None:
        blobs = store.get(payload.id)
        if blobs is None:
            note = store.note(payload.id)
            if note:
                raise EditorPayloadError(note)
            return {}
        parts = {"background": [blobs.background], "composite": [blobs.composite], "layer": blobs.layers}
        return {name: [_size_of(io.BytesIO(b), name) for b in found if b] for name, found in parts.items()}
    parts = {"background": [payload.background], "composite": [payload.composite], "layer": payload.layers or []}
    return {name: [_size_of(f.path, name) for f in found if f is not None] for name, found in parts.items()}


class BoundedEditor:
    """The bounds, mixed into Gradio's editor classes (the browser sees a plain image editor)."""

    # Not `limits`: Gradio sends every attribute named like a constructor argument to the browser.
    _payload_limits: EditorLimits

    def _bind(self, limits: EditorLimits) -> None:
        self._payload_limits = limits
        limits.store.limits = limits
        self.blob_storage = limits.store  # type: ignore[assignment]

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
                check_payload(_payload_sizes(payload, self._payload_limits.store), self._payload_limits)
            except EditorPayloadError as err:
                if payload.id is not None:
                    self._payload_limits.store.refuse(payload.id, str(err))
                raise refusal(str(err)[:1].upper() + str(err)[1:] + ".", "Editor payload refused") from None
        return super().preprocess(payload)  # type: ignore[misc]

    @server
    def accept_blobs(self, data: Any) -> None:
        """Gradio's blob upload, after checking the part, the layer index and the image's size; refused with HTTP
        413 (or 400 for a malformed request) naming the limit."""
        fields, files = data.data, data.files
        part, payload_id, index = fields.get("type"), fields.get("id"), fields.get("index")
        if part not in EDITOR_PARTS or not isinstance(payload_id, str) or not payload_id or not files:
            raise HTTPException(400, "accept_blobs takes one image as a background, composite or layer")
        try:
            layer = None if part != "layer" else int(index)
        except (TypeError, ValueError):
            raise HTTPException(400, f"accept_blobs: layer index {str(index)[:20]!r} is not a number") from None
        try:
            if layer is not None and not 0 <= layer < self._payload_limits.max_layers:
                raise EditorPayloadError(f"layer index {layer} is out of range: this deployment takes at most "
                                         f"{self._payload_limits.max_layers} layers")
            store = self._payload_limits.store
            sizes = _payload_sizes(_Posted(payload_id), store) if payload_id in store else {}
            sizes.setdefault(part, []).append(_size_of(io.BytesIO(files[0][1]), part))
            check_payload(sizes, self._payload_limits)
        except EditorPayloadError as err:
            self._payload_limits.store.refuse(payload_id, str(err))
            raise HTTPException(413, str(err)) from None
        super().accept_blobs(data)  # type: ignore[misc]


@dataclass
class _Posted:
    """A payload named by its id (as the event's value names blobs already posted)."""

    id: str


class BodyLimit:
    """ASGI middleware: a POST to one of `paths` whose body is over `max_bytes` gets HTTP 413 before it is read
    (by its Content-Length, or as it streams in)."""

    def __init__(self, app: Any, paths: tuple[str, ...], max_bytes: int) -> None:
        self.app, self.paths, self.max_bytes = app, paths, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or \
                not scope.get("path", "").rstrip("/").endswith(self.paths):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _refuse(send, self.max_bytes)
            return
        seen = 0

        async def bounded_receive() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, bounded_receive, send)


async def _refuse(send: Any, max_bytes: int) -> None:
    body = f'{{"detail": "request body over {max_bytes} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

