"""Live mode in the Generate tab: a new picture after each stroke on the Draw or Map canvas, without Generate.

Each stroke sends one live frame to the accelerator's queue (the same first-come queue as Generate, so a live user
takes one turn like anyone else); a frame that a newer stroke of the same session made stale is skipped before it
begins or cancelled at its next step (`Studio.live`, `webui.jobs.newer_event_waiting`), so only the newest one runs
to the end. Nothing is saved: Generate makes the full-quality picture to keep.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from .errors import keep_results, user_errors
from .jobs import newer_event_waiting, stop_requested
from .service import LiveFrame, Studio

WATCH_SCRIPT = Path(__file__).with_name("live_watch.js").read_text()


def live_switch(ui: SimpleNamespace) -> None:
    """The live switch, under Generate and Stop, and the (empty) component that hears strokes (`live_watch.js`)."""
    ui.live_watch = gr.HTML("", js_on_load=WATCH_SCRIPT, elem_id="live-watch", padding=False)
    ui.live_mode = gr.Checkbox(
        label="Live: a new picture after each stroke", value=False, elem_id="live-mode",
        info="Draw or Map tab; each stroke runs the base's live preset (fewer steps, a smaller size, and fast "
             "decode where the base has TAESD) with a fixed seed, which Generate then keeps for the full-quality "
             "picture; a prompt change shows at the next stroke")


def _gate(on: bool) -> None:
    """Let a stroke through to a live frame only while live mode is on (an unseen error stops the chain)."""
    if not on:
        raise gr.Error("live mode is off", visible=False, print_exception=False)


def frame_status(frame: LiveFrame) -> str:
    """The status line of a live frame: its time, what ran, and what newer strokes made stale."""
    live = frame.session
    stale = f" · made stale by newer strokes: {live.cancelled} cancelled while running, {live.skipped} skipped " \
        "before starting" if live.cancelled or live.skipped else ""
    return f"**Live** frame {live.frames}, computed in {frame.seconds:.1f} s{stale}. {frame.preset}"


def wire_live(ui: SimpleNamespace, studio: Studio, gpu: Callable[[Callable], Callable], inputs: set[Any],
              outputs: list[Any], form_run: Callable[[dict], tuple[list[Any], dict[str, Any]]]) -> Any:
    """Strokes on the Draw and Map canvases (heard by `ui.live_watch`) run live frames while the switch is on;
    `form_run` reads the form as Generate does (its units and settings), and `outputs` are Generate's result panes.
    Returns the frames' event, for Stop to cancel."""

    @keep_results(len(outputs), status=outputs.index(ui.status))
    @user_errors
    @gpu
    def frame_panes(v: dict, request: gr.Request) -> list[Any]:
        if not v[ui.live_mode]:  # checked here too: the page's gate is a visitor's to skip
            return [gr.skip()] * len(outputs)
        units, arguments = form_run(v)
        frame = studio.live(units, session=request.session_hash or "", superseded=newer_event_waiting(),
                            should_stop=stop_requested(), **arguments)
        if frame is None:  # stale: the newer stroke's frame will fill the panes
            return [gr.skip()] * len(outputs)
        result = frame.result
        shown = [(result.images[0], f"live frame · seed {result.seed}")]
        # The download pane empties: a live frame is not saved, and the last Generate's files are not this picture.
        return [shown, result.prompt, result.seed, frame_status(frame), None, result.metadata[0]]

    def on_stroke(v: dict, request: gr.Request) -> list[Any]:
        panes = frame_panes(v, request)
        if all(pane == gr.skip() for pane in panes):  # dropped: the newer frame's preview goes on
            return [*panes, gr.skip(), gr.skip(), gr.skip(), gr.skip()]
        seed = panes[outputs.index(ui.used_seed)]
        # The frame's seed goes into the form (random off), so Generate makes this picture at full quality.
        keep_seed = [gr.skip(), gr.skip()] if seed == gr.skip() else [seed, False]
        return [*panes, gr.Timer(active=False), gr.Image(value=None, visible=False), *keep_seed]

    gate = ui.live_watch.click(_gate, ui.live_mode, None, queue=False, show_progress="hidden",
                               trigger_mode="multiple", api_visibility="private")
    gate.success(lambda: gr.Timer(active=True), None, ui.live_timer, queue=False, show_progress="hidden",
                 api_visibility="private")
    # "multiple": every stroke is sent; the server drops the stale ones (a pending one is not held back).
    return gate.success(on_stroke, inputs | {ui.live_mode}, [*outputs, ui.live_timer, ui.live, ui.seed, ui.randomize],
                        concurrency_id="gpu", trigger_mode="multiple", show_progress="hidden",
                        api_visibility="private")
