"""The Edit tab: redraw your own picture under ControlNet (the paper's "image editing").

Upload a picture, paint over what should change (inpaint), or extend it (outpaint), or re-render it larger with the
tile ControlNet (upscale), or redraw it whole (img2img). The condition is made from the picture by the kind's
annotator. Everything runs through `Studio.edit`, the same path as the /edit API.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import gradio as gr

from cnet.demo import demo_model
from cnet.kinds import KINDS
from cnet.operations import EDIT_OPERATIONS, OPERATIONS, UPSCALE_TILE_SIZE, EditOptions
from cnet.params import as_int

from .editor import EditorLimits
from .editor_components import BoundedImageEditor
from .errors import keep_results, user_errors
from .form import form_controls, form_values
from .generate_tab import (
    CONTROL_MODE_CHOICES,
    EXAMPLES,
    PROMPT_MODES,
    RESIZE_MODE_CHOICES,
    form_defaults,
    live_previews,
    results_column,
    sampling_controls,
    shown_results,
    speed_switches,
)
from .jobs import run_stop_check
from .service import Studio, UnitInput, editor_picture_and_mask
from .stops import stop_key
from .units import reference_slots, slot_references, slot_units, unit_slots, wire_slots

log = logging.getLogger(__name__)

OPERATION_HELP = {
    "img2img": "redraw the whole picture; Denoise says how much changes",
    "inpaint": "repaint only what you painted over (white brush) on the picture",
    "outpaint": "extend the canvas on the sides you choose and draw what is beyond",
    "upscale": "re-render larger with added detail (the tile ControlNet)",
}
# The condition each operation starts with: upscaling is what the tile model is for.
OPERATION_KIND = {"img2img": "canny", "inpaint": "canny", "outpaint": "canny", "upscale": "tile"}


def create_edit_tab(studio: Studio, gpu: Callable[[Callable], Callable],
                    models: dict[str, Any] | None = None, editor: EditorLimits | None = None) -> dict[str, Any]:
    """Build the tab inside the current gr.Blocks; returns what the history fills (the editor, the operation) and
    what feeds it (the saved files). `models`: the components holding the base model, LoRAs and embeddings (the
    Generate tab's), read when an edit runs; without them the defaults are used. `editor`: the app's bounds on
    editor payloads (the deployment's by default)."""
    limits = studio.settings.limits
    defaults = form_defaults(studio.demo_mode)  # in demo mode: a circle prompt the demo's text encoder reads
    ui = SimpleNamespace()
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            gr.Markdown("Picture: upload it, then (to inpaint) paint over what should change",
                        elem_classes="canvas-caption")
            # RGBA: the painted layers keep their alpha, which is the mask.
            ui.editor = BoundedImageEditor(limits=EditorLimits.for_deployment(studio.settings.public)
                                           if editor is None else editor,
                                           label="Picture", show_label=False, type="pil", image_mode="RGBA",
                                           sources=["upload", "clipboard"], layers=True, elem_id="edit-picture",
                                           brush=gr.Brush(default_size=24, colors=["#FFFFFF"], color_mode="fixed"))
            ui.operation = gr.Radio(list(EDIT_OPERATIONS), value="img2img", label="Operation",
                                    info=OPERATION_HELP["img2img"], elem_id="edit-operation")
            _condition_controls(ui, limits)
            ui.denoise = gr.Slider(0.0, 1.0, value=0.75, step=0.05, label="Denoise (0 keeps the picture, 1 redraws)",
                                   elem_id="edit-denoise")
            # img2img and inpaint only: an outpaint's size is the extended canvas, an upscale's the factor's.
            with gr.Accordion("Output size", open=False) as ui.size_group, gr.Row():
                ui.width = gr.Slider(0, limits.max_side, value=0, step=8, label="Width (0: the picture's)",
                                     elem_id="edit-width")
                ui.height = gr.Slider(0, limits.max_side, value=0, step=8, label="Height (0: the picture's)",
                                      elem_id="edit-height")
                ui.resize_mode = gr.Dropdown(RESIZE_MODE_CHOICES, value="crop_and_resize", elem_id="edit-resize-mode",
                                             label="Resize mode (when the shape differs)")
            _operation_settings(ui)
            ui.editor_limits = editor or EditorLimits.for_deployment(studio.settings.public)
            ui.unit_slots = unit_slots(limits.max_units - 1, limits.max_strength, ui.editor_limits, prefix="edit-")
            ui.reference_slots = reference_slots(limits.max_image_prompts, limits.max_strength, prefix="edit-")
            for name, control in ui.reference_slots.reference_only.items():  # declared fields: the form reads them
                setattr(ui, name, control)
            _shared_models(ui, models or {})
            ui.prompt_mode = gr.Radio(PROMPT_MODES, value=defaults.prompt_mode, label="Prompt mode",
                                      elem_id="edit-prompt-mode")
            ui.prompt = gr.Textbox(value=defaults.prompt, label="Prompt", visible=defaults.prompt_mode == "custom",
                                   elem_id="edit-prompt")
            with gr.Accordion("Steps, guidance, seed, speed", open=False):
                with sampling_controls(ui, limits, defaults, "edit-"):
                    pass
                speed_switches(ui, "edit-")
        with gr.Column(scale=4):
            with gr.Row():
                ui.run = gr.Button("Edit", variant="primary", elem_id="edit-run")
                ui.stop = gr.Button("Stop", variant="stop", elem_id="edit-stop")
                ui.preview = gr.Button("Preview what runs", elem_id="edit-preview")
            ui.preview_image = gr.Image(label="Picture and mask (red: repainted)", type="pil", interactive=False,
                                        height=240, elem_id="edit-preview-image")
            results_column(ui, prefix="edit-")
    if studio.demo_mode:
        _demo_examples(ui)
    _wire(ui, studio, gpu)
    return {"editor": ui.editor, "operation": ui.operation, "files": ui.files, "preview": ui.preview_image}


def _condition_controls(ui: SimpleNamespace, limits: Any) -> None:
    """The condition made from the picture: its kind, strength, ControlNet and control mode."""
    with gr.Row():
        ui.kind = gr.Dropdown([(f"{k.name} — {k.description}", k.name) for k in KINDS.values()],
                              value="canny", label="Condition (made from the picture)", scale=2, elem_id="edit-kind")
        ui.strength = gr.Slider(0.0, limits.max_strength, value=1.0, step=0.05, label="Control strength")
    # The condition's own ControlNet (e.g. one made for a FLUX.1 base); the base model is Generate's.
    ui.controlnet = gr.Textbox(label="ControlNet (Hub id or local path; empty: the condition's default for the base "
                               "model)", elem_id="edit-controlnet")
    ui.control_mode = gr.Radio(CONTROL_MODE_CHOICES, value="balanced", label="Control mode")


def _shared_models(ui: SimpleNamespace, models: dict[str, Any]) -> None:
    """The Generate tab's base model, LoRAs and embeddings, read as this form's own fields (webui/form.py)."""
    ui.models = models
    for name, control in models.items():
        setattr(ui, name, control)
    if models:
        gr.Markdown("Base model, LoRAs and embeddings: as chosen in Generate → Advanced settings.",
                    elem_classes="canvas-caption")


def _operation_settings(ui: SimpleNamespace) -> None:
    """Each operation's own settings, shown when it is chosen (named as the declared fields: webui/form.py)."""
    with gr.Group(visible=False) as ui.inpaint_group:
        with gr.Row():
            ui.mask_blur = gr.Slider(0, 64, value=4, step=1, label="Mask blur (px, feathered inward)")
            ui.keep_unmasked = gr.Checkbox(value=True, label="Keep unmasked pixels exactly",
                                           elem_id="edit-keep")
        with gr.Row():
            ui.only_masked = gr.Checkbox(value=False, label="Inpaint only the masked area (full resolution)")
            ui.inpaint_padding = gr.Slider(0, 256, value=32, step=8, label="Padding around the mask (px)")
    with gr.Group(visible=False) as ui.outpaint_group, gr.Row():
        ui.sides = {side: gr.Slider(0, 512, value=128 if side == "right" else 0, step=8,
                                    label=f"Extend {side} (px)", elem_id=f"edit-outpaint-{side}")
                    for side in ("left", "right", "top", "bottom")}
        for side, control in ui.sides.items():  # named as the declared fields (webui/form.py)
            setattr(ui, f"outpaint_{side}", control)
    with gr.Group(visible=False) as ui.upscale_group, gr.Row():
        ui.upscale = gr.Slider(1.0, 4.0, value=2.0, step=0.25, label="Upscale factor", elem_id="edit-factor")
        ui.tile_down_sampling = gr.Slider(1.0, 8.0, value=1.0, step=0.5,
                                     label="Tile down-sampling (more: more invented detail)")
        ui.tile_size = gr.Slider(0, 2048, value=UPSCALE_TILE_SIZE, step=64, elem_id="edit-tile-size",
                                 label="Denoise in tiles of (px; 0: whole image)",
                                 info="a larger result then needs only the memory of one tile")


def _demo_examples(ui: SimpleNamespace) -> None:
    """The demo's circles: recolour one (img2img; its canny outline keeps the shape)."""
    gr.Examples([[str(EXAMPLES / "shapes" / f"picture-{i}.png"), "img2img", "custom", prompt]
                 for i, prompt in enumerate(("blue circle with yellow background",
                                             "red circle with green background",
                                             "white circle with purple background"))],
                [ui.editor, ui.operation, ui.prompt_mode, ui.prompt], label="Demo model examples (recolour)"
                ).load_input_event.then(lambda: None, None, ui.preview_image, queue=False, show_progress="hidden",
                                        api_visibility="private")  # a new picture: the preview of the old one goes


def _wire(ui: SimpleNamespace, studio: Studio, gpu: Callable[[Callable], Callable]) -> None:
    def on_operation(operation: str) -> list[Any]:
        info = OPERATION_HELP[operation]
        if studio.demo_mode and OPERATIONS[operation].resizes:  # said before the run, refused by name at it
            side = demo_model().size
            info += f" · not on the offline demo model, which makes {side}x{side} pictures only: needs Stable Diffusion"
        return [gr.Radio(info=info), gr.Accordion(visible=operation in ("img2img", "inpaint")),
                gr.Group(visible=operation == "inpaint"),
                gr.Group(visible=operation == "outpaint"), gr.Group(visible=operation == "upscale"),
                OPERATION_KIND[operation], 0.5 if operation == "upscale" else 1.0 if operation == "outpaint" else 0.75]

    ui.operation.change(on_operation, ui.operation, [ui.operation, ui.size_group, ui.inpaint_group, ui.outpaint_group,
                                                     ui.upscale_group, ui.kind, ui.denoise],
                        queue=False, api_visibility="private")
    ui.prompt_mode.change(lambda m: gr.Textbox(visible=m == "custom"), ui.prompt_mode, ui.prompt, queue=False,
                          api_visibility="private")
    _wire_few_step(ui, studio)
    _wire_preview(ui, studio)

    wire_slots(ui.unit_slots)
    wire_slots(ui.reference_slots)
    inputs = set(form_controls(ui, "edit").values()) | {ui.editor, ui.operation, ui.only_masked, ui.randomize} | \
        ui.unit_slots.inputs() | ui.reference_slots.inputs()
    outputs = [ui.gallery, ui.used_prompt, ui.used_seed, ui.status, ui.files, ui.metadata]

    @keep_results(len(outputs), status=outputs.index(ui.status))
    @user_errors
    @gpu
    def on_edit(v: dict, request: gr.Request, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> list[Any]:
        operation = v[ui.operation]
        values = form_values(ui, v, "edit", leave_out=_left_out(operation, v[ui.randomize], v[ui.only_masked]))
        picture, mask = editor_picture_and_mask(v[ui.editor])
        settings = {**values.settings, "image_prompts": slot_references(ui.reference_slots, v)}
        settings.pop("operation", None)  # the Radio's value, passed on its own
        if not v[ui.randomize]:
            settings["seed"] = as_int(v[ui.seed] or 0, "seed")
        result, paths = studio.edit(
            picture, [UnitInput("photo", None, **values.unit), *slot_units(ui.unit_slots, v)], operation=operation,
            mask=mask if OPERATIONS[operation].takes_mask else None,  # painted layers stay when the operation changes
            options=EditOptions(**values.edit), session=request.session_hash or "",
            should_stop=run_stop_check(studio.stops, stop_key(request.session_hash or "", "edit"), v[ui.click_token]),
            progress=lambda i, n: progress((i, n), desc="Denoising"), base_model=values.run.get("base_model"),
            few_step=values.run.get("few_step", False), **settings)
        return shown_results(result, paths)

    clicked, stop_previews = live_previews(ui, studio, ui.run.click, "edit")
    event = clicked.then(on_edit, inputs | {ui.click_token}, outputs, concurrency_id="gpu", api_visibility="private",
                         show_progress_on=ui.gallery)
    stop_previews(event)

    def on_stop(request: gr.Request) -> str:
        return studio.stop(request.session_hash or "", "edit")

    ui.stop.click(on_stop, None, ui.status, cancels=[event], queue=False, api_visibility="private")


def _wire_preview(ui: SimpleNamespace, studio: Studio) -> None:
    """Preview what runs: the picture with the area to repaint (an outpaint's canvas and border as it will run)."""
    sides = list(ui.sides.values())

    def preview(editor: Any, operation: str, values: Any) -> Any:
        from cnet.edit import mask_preview

        picture, mask = editor_picture_and_mask(editor)
        if picture is None:
            return None
        if operation == "outpaint":  # the operation's own preparation: the canvas and border that will run
            options = EditOptions(**{f"outpaint_{side}": value for side, value in _sides(values).items()})
            prepared = OPERATIONS["outpaint"].prepare(picture, None, options, studio.settings.limits.max_side)
            picture, mask = prepared.picture, prepared.mask
        return mask_preview(picture, mask if operation in ("inpaint", "outpaint") else None)

    @keep_results(1)
    @user_errors
    def on_preview(editor: Any, operation: str, *values: Any) -> Any:
        shown = preview(editor, operation, values)
        if shown is None:
            raise ValueError("no picture: upload the picture to edit first")
        return shown

    def on_setting(editor: Any, operation: str, *values: Any) -> Any:
        try:
            return preview(editor, operation, values)  # no picture yet: nothing to show, and nothing to say
        except (ValueError, OSError) as err:  # the run says what is wrong; a stale preview would mislead
            log.info("edit preview not drawn: %s", err)
            return None

    inputs = [ui.editor, ui.operation, *sides]
    ui.preview.click(on_preview, inputs, ui.preview_image, api_visibility="private")
    # Never a stale preview: a new picture clears it, and the operation or an outpaint side, which change what runs,
    # redraw it. (Not the editor's change event: with a change listener Gradio's page posts the editor's images as
    # blobs, which webui/editor.py refuses; tests/test_editor_payloads.py.)
    for new_picture in (ui.editor.upload, ui.editor.clear):
        new_picture(lambda: None, None, ui.preview_image, queue=False, show_progress="hidden",
                    api_visibility="private")
    # Queued (one at a time, bounded by the queue), as the Preview button: each reads the picture's files.
    ui.operation.change(on_setting, inputs, ui.preview_image, show_progress="hidden", api_visibility="private")
    for side in sides:  # typed or dragged; while one redraw runs, the drag's further values collapse into one
        side.change(on_setting, inputs, ui.preview_image, trigger_mode="always_last", show_progress="hidden",
                    api_visibility="private")


def _wire_few_step(ui: SimpleNamespace, studio: Studio) -> None:
    """Few-step mode sets what it needs where the user sees it, for the base model's family (SD's LCM-LoRA: 4 steps
    at guidance 1; FLUX.1's: 8 at 3.5; the sampler follows by itself), and back."""
    base = getattr(ui, "base_model", None)  # the Generate tab's field, when the app shares it

    def on_few_step(on: bool, reference: str | None = None) -> list[Any]:
        return studio.few_step_form(on, reference)[:2]

    ui.few_step.change(on_few_step, [ui.few_step] + ([base] if base is not None else []), [ui.steps, ui.guidance],
                       queue=False, api_visibility="private")


def _sides(values: Any) -> dict[str, int]:
    return {side: as_int(value or 0, f"outpaint_{side}")
            for side, value in zip(("left", "right", "top", "bottom"), values)}


def _left_out(operation: str, random_seed: bool, only_masked: bool) -> tuple[str, ...]:
    """The declared fields whose controls this run does not use: the seed when random, the padding unless "only the
    masked area", the tile size unless upscaling, the output size where the operation makes its own (an outpaint's
    canvas, an upscale's factor), so a value left in a hidden control changes nothing."""
    out = ("seed",) if random_seed else ()
    out += () if only_masked else ("inpaint_padding",)
    out += () if operation == "upscale" else ("tile_size",)
    return out + (() if operation in ("img2img", "inpaint") else ("width", "height"))
