"""The session's history: every image made in this browser session (Generate and Edit), to send on to the Edit tab
(img2img, inpaint, upscale) or back to Generate as a condition map. Kept per session in `gr.State`, newest first."""

from __future__ import annotations

from typing import Any

import gradio as gr
from PIL import Image

from .errors import refusal
from .service import Studio


def create_history(studio: Studio, generate: dict[str, Any], edit: dict[str, Any], tabs: gr.Tabs) -> None:
    """Build the History section under the tabs and wire it to both tabs' results."""
    with gr.Accordion("History (this session): send an image on", open=False, elem_id="history"):
        history = gr.State([])
        chosen = gr.State(None)
        gallery = gr.Gallery(label="Newest first: click one, then a button", columns=8, height=200,
                             elem_id="history-gallery", allow_preview=False)
        with gr.Row():
            buttons = {op: gr.Button(label, size="sm", elem_id=f"history-{op}") for op, label in (
                ("img2img", "Edit it (img2img)"), ("inpaint", "Inpaint it"), ("upscale", "Upscale it"),
                ("condition", "Use as condition map"))}

    def refresh(request: gr.Request) -> tuple[list[str], list[str]]:
        # The server's own record of what this session saved: a path is never taken from what a page sends.
        items = studio.recent_outputs(request.session_hash or "")
        return items, items

    for files in (generate["files"], edit["files"]):  # a run's downloads changed: it saved new images
        files.change(refresh, None, [history, gallery], queue=False, api_visibility="private")

    def choose(items: list[str], event: gr.SelectData) -> str | None:
        return items[event.index] if items and 0 <= event.index < len(items) else None

    gallery.select(choose, history, chosen, queue=False, api_visibility="private")

    def send(path: str | None, operation: str) -> list[Any]:
        if not path:
            raise refusal("Click an image in the history first.", "Nothing chosen")
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        editor = {"background": image, "layers": [], "composite": image}
        gr.Info(f"Sent to the Edit tab ({operation}).")
        return [gr.Tabs(selected="edit"), editor, operation, None]  # the old picture's preview goes

    for op in ("img2img", "inpaint", "upscale"):
        # Queued (not queue=False): a notice reaches the page only through the queue's event stream.
        buttons[op].click(lambda path, op=op: send(path, op), chosen,
                          [tabs, edit["editor"], edit["operation"], edit["preview"]], api_visibility="private")

    def as_condition(path: str | None) -> list[Any]:
        if not path:
            raise refusal("Click an image in the history first.", "Nothing chosen")
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        gr.Info("Set as the condition map in the Generate tab's Map tab.")
        return [gr.Tabs(selected="generate"), image, gr.Tabs(selected="map"), "map"]

    buttons["condition"].click(as_condition, chosen, [tabs, generate["map_editor"], generate["source_tabs"],
                                                      generate["source"]], api_visibility="private")
