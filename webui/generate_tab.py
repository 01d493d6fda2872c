"""The Generate tab: draw, upload a photo or a ready map; pick the kind and the prompt mode; generate.

Only UI wiring lives here: every action calls `Studio` (webui/service.py). Inputs are passed as a set of components
(the handler receives a dict), so no handler depends on the order of a long argument list.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from annotators import ANNOTATORS
from annotators.pose import parse_pose, pose_json, render_pose, require_people
from cnet.kinds import KINDS, map_kinds
from cnet.params import as_int
from cnet.request import ORIGINAL_ADDED_PROMPT, ORIGINAL_NEGATIVE_PROMPT, SCHEDULERS, door_fields, door_values_of

from .editor import EditorLimits
from .editor_components import BoundedImageEditor, BoundedSketchpad
from .errors import keep_results, user_errors
from .form import form_controls, form_values
from .jobs import run_stop_check, stop_requested
from .live import live_switch, wire_live
from .pose_editor import pose_editor
from .service import Studio, UnitInput
from .stops import stop_key
from .units import (
    CONTROL_MODE_CHOICES,
    reference_slots,
    restore_outputs,
    restored_values,
    slot_references,
    slot_units,
    unit_slots,
    wire_slots,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PROMPT_MODES = [("No prompt", "none"), ("Default prompt", "default"), ("Automatic (BLIP caption)", "auto"),
                ("Custom", "custom")]
RESIZE_MODE_CHOICES = [("Crop and resize", "crop_and_resize"), ("Just resize", "just_resize"),
                       ("Resize and fill", "resize_and_fill")]
SCHEDULER_LABELS = {"default": "Default for the model (DDIM for SD; flow Euler for FLUX.1 / SD3.5)",
                    "flow_euler": "Flow-matching Euler (FLUX.1, SD3.5)", "ddim": "DDIM (paper)", "unipc": "UniPC",
                    "euler_a": "Euler a", "dpmpp_2m": "DPM++ 2M",
                    "dpmpp_2m_karras": "DPM++ 2M Karras", "lcm": "LCM (few-step)", "tcd": "TCD (few-step)"}
# One control per distinct annotator parameter name; shown only for the annotators that have it.
PARAMS = {p.name: p for a in ANNOTATORS.values() for p in a.params}


def annotators_for(kind: str) -> list[tuple[str, str]]:
    """The annotators that make this kind's map (for scribble, the drawing converter comes first)."""
    return [(f"{a.name} — {a.description}", a.name) for a in ANNOTATORS.values() if a.kind == kind]


def load_examples() -> dict[str, list[list[str]]]:
    """examples/examples.json as rows for gr.Examples: [image path, kind, prompt mode, prompt]. None in an installed
    copy without the repository's examples/ folder."""
    if not (EXAMPLES / "examples.json").is_file():
        return {}
    table = json.loads((EXAMPLES / "examples.json").read_text())
    return {group: [[str(EXAMPLES / row["image"]), row["kind"], row["prompt_mode"], row["prompt"]] for row in rows]
            for group, rows in table.items()}


def _own_params(annotator: str | None) -> set[str]:
    """The names of the settings `annotator` has (none for an unknown or empty choice)."""
    return {p.name for p in ANNOTATORS[annotator].params} if annotator in ANNOTATORS else set()


def _param_component(name: str, first_annotator: str) -> gr.components.Component:
    """The control of one annotator setting, shown when the chosen annotator has it (from the first load on)."""
    p = PARAMS[name]
    visible = name in _own_params(first_annotator)
    if isinstance(p.default, bool):
        return gr.Checkbox(value=p.default, label=name.replace("_", " "), info=p.help, visible=visible)
    step = 1 if isinstance(p.default, int) else 0.01
    return gr.Slider(p.minimum, p.maximum, value=p.default, step=step, label=name.replace("_", " "), info=p.help,
                     visible=visible)


def create_generate_tab(studio: Studio, gpu: Callable[[Callable], Callable],
                        editor: EditorLimits | None = None) -> dict[str, Any]:
    """Build the tab inside the current gr.Blocks; `gpu` wraps functions that need the accelerator (ZeroGPU);
    `editor`: the app's bounds on canvas payloads (the deployment's by default).
    Returns the components other tabs may fill (the ControlNet and base model fields, their accordion, the kind)."""
    limits = studio.settings.limits
    ui = SimpleNamespace(source=gr.State("draw"), max_side=limits.max_side)
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            ui.editor_limits = editor or EditorLimits.for_deployment(studio.settings.public)
            _condition_inputs(ui, ui.editor_limits, studio.demo_mode)
            defaults = ui.defaults = form_defaults(studio.demo_mode)
            _condition_settings(ui, defaults)
            _prompt_controls(ui, defaults)
            _advanced_settings(ui, limits, defaults)
            ui.unit_slots = unit_slots(limits.max_units - 1, limits.max_strength, ui.editor_limits)
            ui.reference_slots = reference_slots(limits.max_image_prompts, limits.max_strength)
            for name, control in ui.reference_slots.reference_only.items():  # declared fields: the form reads them
                setattr(ui, name, control)
            _batch_section(ui, studio.settings.allow_local_paths and not studio.settings.public)
        with gr.Column(scale=4):
            # At the top of the results: on the first screen of a 1400x1000 window, beside the canvas.
            with gr.Row():
                ui.run = gr.Button("Generate", variant="primary", elem_id="generate")
                ui.stop = gr.Button("Stop", variant="stop", elem_id="stop")
            live_switch(ui)
            results_column(ui)
            _settings_drop(ui)
    _examples(ui, studio.demo_mode)
    _wire_reactions(ui)
    wire_slots(ui.unit_slots)
    wire_slots(ui.reference_slots)
    _wire_actions(ui, studio, gpu)
    _wire_settings_drop(ui, studio)
    return {"controlnet": ui.controlnet, "base_model": ui.base_model, "loras": ui.loras, "ip_adapter": ui.ip_adapter,
            "embeddings": ui.embeddings, "advanced": ui.advanced, "kind": ui.kind,
            "files": ui.files, "map_editor": ui.map_editor, "source_tabs": ui.source_tabs, "source": ui.source,
            "restored": restored_fields(ui)}


# -- sections: each adds its components to `ui` ------------------------------------------------------------------------


def _condition_inputs(ui: SimpleNamespace, editor: EditorLimits, demo_mode: bool = False) -> None:
    """Four ways in: draw on a canvas, a photo for an annotator, a pose to edit, or a ready map (also the preview's
    editor)."""
    # Each canvas's caption sits above it: Gradio's floating label covered the top of the drawing or photo.
    with gr.Tabs(selected="draw") as ui.source_tabs:
        with gr.Tab("Draw", id="draw") as ui.draw_tab:
            _caption("Sketch: black strokes, which become a white-on-black scribble")
            ui.sketch = BoundedSketchpad(limits=editor, label="Sketch", show_label=False,
                                         type="numpy", image_mode="RGBA", canvas_size=(512, 512),
                                         brush=gr.Brush(default_size=6, colors=["#000000"], color_mode="fixed"),
                                         eraser=gr.Eraser(default_size=24), elem_id="sketch")
        with gr.Tab("Photo", id="photo") as ui.photo_tab:
            _caption("Photo: the annotator extracts the map")
            ui.photo = gr.Image(label="Photo", show_label=False, type="filepath",
                                sources=["upload", "webcam", "clipboard"], elem_id="photo")
        with gr.Tab("Pose", id="pose") as ui.pose_tab:
            _caption("Pose: drag the joints (click one to select its person); the skeleton is the openpose map"
                     + (". The demo model reads circle outlines only: a pose steers nothing until an openpose "
                        "ControlNet is on this machine (see Model details)" if demo_mode else ""))
            ui.pose = pose_editor("pose-editor")
            ui.pose_detect = gr.Button("Detect the people in the Photo tab's photo", size="sm",
                                       elem_id="pose-detect")
        with gr.Tab("Map", id="map") as ui.map_tab:
            _caption("Condition map: upload a ready map, or edit the preview")
            ui.map_editor = BoundedImageEditor(limits=editor, label="Condition map", show_label=False,
                                               type="numpy", image_mode="RGB", canvas_size=(512, 512),
                                               brush=gr.Brush(default_size=4, colors=["#FFFFFF", "#000000"]),
                                               elem_id="map-editor")


def _caption(text: str) -> gr.Markdown:
    return gr.Markdown(text, elem_classes="canvas-caption")


@dataclass(frozen=True)
class FormDefaults:
    """What the form starts with: the paper's settings, or what the demo model understands."""

    kind: str = "canny"
    prompt_mode: str = "default"
    prompt: str = ""
    guidance: float = 9.0
    size: int | None = None  # a fixed output size (the demo model's), shown in the width/height sliders


def form_defaults(demo_mode: bool) -> FormDefaults:
    """The paper's defaults; in demo mode, the demo's: it reads circle outlines, its text encoder knows only the
    circle prompts (the paper's default prompt would be cut to nonsense), it makes 64x64 images, and CFG 5 measured
    better than 9 for it (docs/demo-model.md)."""
    if not demo_mode:
        return FormDefaults()
    from cnet.demo import DEMO_SIZE

    return FormDefaults(kind="scribble", prompt_mode="custom", prompt="red circle with blue background",
                        guidance=5.0, size=DEMO_SIZE)


def _condition_settings(ui: SimpleNamespace, defaults: FormDefaults) -> None:
    """The condition kind, its annotator and that annotator's own settings, and Preview map."""
    choices = annotators_for(defaults.kind)
    with gr.Row():
        ui.kind = gr.Dropdown([(f"{k.name} — {k.description}", k.name) for k in map_kinds()],
                              value=defaults.kind, label="Condition kind", scale=2, elem_id="kind")
        ui.annotator = gr.Dropdown(choices, value=choices[0][1], label="Annotator (for photos)", scale=2,
                                   elem_id="annotator")
    with gr.Accordion("Annotator settings", open=False):
        ui.detect_resolution = gr.Slider(128, 1024, value=ANNOTATORS[choices[0][1]].detect_resolution, step=64,
                                         label="Detect resolution",
                                         info="short side the detector sees (384 suits depth and normal)")
        ui.params = {name: _param_component(name, choices[0][1]) for name in PARAMS}
    ui.preview = gr.Button("Preview map", elem_id="preview")


def _prompt_controls(ui: SimpleNamespace, defaults: FormDefaults) -> None:
    """The paper's four prompt modes, the custom prompt, and the added / negative prompts with their presets."""
    ui.prompt_mode = gr.Radio(PROMPT_MODES, value=defaults.prompt_mode, label="Prompt mode", elem_id="prompt-mode",
                              info="the paper's four settings: the exact text sent is shown with each result")
    ui.prompt = gr.Textbox(value=defaults.prompt, label="Prompt",
                           placeholder="a cosy cottage in a forest, oil painting",
                           visible=defaults.prompt_mode == "custom", elem_id="prompt")
    with gr.Row():
        ui.added_prompt = gr.Textbox(label="Added prompt", placeholder="appended except in No prompt mode")
        ui.negative_prompt = gr.Textbox(label="Negative prompt")
    with gr.Row():
        ui.presets = gr.Button("Use the original apps' added and negative prompts", size="sm")
        ui.clear_presets = gr.Button("Clear them", size="sm")


@contextmanager
def sampling_controls(ui: SimpleNamespace, limits: Any, defaults: FormDefaults, prefix: str = "") -> Iterator[None]:
    """Steps and guidance in a row, then seed and "random seed" in a row the caller may add to (the Edit tab shares
    them, its ids prefixed)."""
    with gr.Row():
        ui.steps = gr.Slider(1, limits.max_steps, value=20, step=1, label="Steps", elem_id=f"{prefix}steps")
        ui.guidance = gr.Slider(0.0, limits.max_guidance, value=defaults.guidance, step=0.5, label="Guidance (CFG)",
                                elem_id=f"{prefix}guidance",
                                info="FLUX.1: its distilled guidance (3.5 typical), not CFG")
    with gr.Row():
        ui.seed = gr.Number(value=0, precision=0, minimum=0, label="Seed", elem_id=f"{prefix}seed")
        ui.randomize = gr.Checkbox(value=True, label="Random seed", elem_id=f"{prefix}random-seed")
        yield


def speed_switches(ui: SimpleNamespace, prefix: str = "") -> None:
    """The two speed switches in a row, each labelled in full (the Edit tab shares them, its ids prefixed)."""
    with gr.Row():
        ui.few_step = gr.Checkbox(label="Few-step mode (the model's few-step LoRA: SD 4 steps, FLUX.1 8; changes "
                                  "the image)",
                                  elem_id=f"{prefix}few-step")
        ui.fast_decode = gr.Checkbox(label="Fast decode (TAESD: a fraction of the VAE's time; slightly softer)",
                                     elem_id=f"{prefix}fast-decode")


def _advanced_settings(ui: SimpleNamespace, limits: Any, defaults: FormDefaults) -> None:
    """Steps, guidance, seed, images, size, control strength/start/end, guess mode, sampler, models."""
    with gr.Accordion("Advanced settings", open=False, elem_id="advanced") as ui.advanced:
        with sampling_controls(ui, limits, defaults):
            ui.num_images = gr.Slider(1, limits.max_images, value=1, step=1, label="Images")
        # What a fast setting costs in control, where it was measured (the demo model's steps and samplers).
        ui.fidelity_note = gr.Markdown(visible=False, elem_id="fidelity-note")
        with gr.Row():
            fixed = defaults.size is not None  # the demo model makes one size: show it, not a setting it ignores
            side = f" (the demo model makes {defaults.size}x{defaults.size})" if fixed else " (0: from the map)"
            ui.width = gr.Slider(0, limits.max_side, value=defaults.size or 0, step=64 if not fixed else 1,
                                 label="Width" + side, interactive=not fixed, elem_id="width")
            ui.height = gr.Slider(0, limits.max_side, value=defaults.size or 0, step=64 if not fixed else 1,
                                  label="Height" + side, interactive=not fixed, elem_id="height")
        with gr.Row():
            ui.strength = gr.Slider(0.0, limits.max_strength, value=1.0, step=0.05, label="Control strength")
            ui.control_start = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Control start")
            ui.control_end = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Control end")
        with gr.Row():
            ui.control_mode = gr.Radio(CONTROL_MODE_CHOICES, value="balanced", label="Control mode",
                                       elem_id="control-mode", info="as in the A1111 extension: how the prompt and "
                                       "the condition share the image")
            ui.control_mask = gr.Image(label="Control mask (optional: white = where this condition applies)",
                                       type="filepath", image_mode="L", height=160, elem_id="control-mask")
        with gr.Row():
            ui.resize_mode = gr.Dropdown(RESIZE_MODE_CHOICES, value="crop_and_resize", elem_id="resize-mode",
                                         label="Resize mode (a map of another shape than the output)")
            ui.pixel_perfect = gr.Checkbox(label="Pixel perfect (detect at the output's resolution)")
        with gr.Row():
            ui.guess_mode = gr.Checkbox(label="Guess mode (diffusers': scales 0.1 → 1.0, conditional half)")
            ui.scheduler = gr.Dropdown([(SCHEDULER_LABELS[s], s) for s in SCHEDULERS], value="default",
                                       label="Sampler")
            ui.eta = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Eta (DDIM; 0: deterministic)", elem_id="eta")
            ui.true_cfg = gr.Slider(1.0, limits.max_guidance, value=1.0, step=0.5, elem_id="true-cfg",
                                    label="True CFG (FLUX.1: a negative prompt needs it above 1; twice the time)")
        speed_switches(ui)
        with gr.Row():
            ui.base_model = gr.Textbox(label="Base model (Hub id or local path; empty: default)",
                                       elem_id="base-model",
                                       info="SD 1.x, SD 2.x, SDXL, FLUX.1 or SD3.5: read from its config")
            ui.controlnet = gr.Textbox(label="ControlNet (Hub id or local path; empty: the kind's default)",
                                       elem_id="controlnet")
        ui.family = gr.Markdown(elem_id="base-family")
        ui.loras = gr.Textbox(label="LoRAs (one per line: source or source:weight)", lines=2, elem_id="loras",
                              placeholder="styles/ink.safetensors:0.8\nowner/some-lora",
                              info="Hub id, folder or .safetensors (A1111 / kohya files too); weight 1.0 if left out")
        ui.ip_adapter = gr.Textbox(label="IP-Adapter for the reference pictures (empty: the base family's)",
                                   elem_id="ip-adapter", info="h94/IP-Adapter's for SD 1.5 and SDXL; a weights file "
                                   "with its image_encoder folder beside it")
        ui.embeddings = gr.Textbox(label="Embeddings (textual inversion; one per line)", lines=1,
                                   elem_id="embeddings",
                                   info="a file's name is its trigger word in the prompt, as in A1111")


def results_column(ui: SimpleNamespace, prefix: str = "") -> None:
    """The images with their maps, the prompt actually sent, the seed used, downloads and metadata (the Edit tab
    shows the same, its element ids prefixed)."""
    # The image forming while a run goes (polled from the Studio by a timer that runs only then).
    ui.live = gr.Image(label="Forming (an approximate preview, every few steps)", type="pil", interactive=False,
                       height=260, visible=False, elem_id=f"{prefix}live", format="jpeg")
    ui.live_timer = gr.Timer(0.7, active=False)
    ui.gallery = gr.Gallery(label="Results (and condition maps)", columns=2, height=520, format="png",
                            elem_id=f"{prefix}gallery")
    ui.used_prompt = gr.Textbox(label="Prompt sent to the model", interactive=False, elem_id=f"{prefix}used-prompt")
    with gr.Row():
        ui.used_seed = gr.Number(label="Seed used", interactive=False, precision=0)
        ui.status = gr.Markdown(elem_id=f"{prefix}status")
    ui.files = gr.File(label="Download (PNG with metadata)", file_count="multiple", elem_id=f"{prefix}files")
    ui.metadata = gr.JSON(label="Metadata of the first image")


def live_previews(ui: SimpleNamespace, studio: Studio, trigger: Any, scope: str) -> tuple[Any, Callable[[Any], None]]:
    """A run button's click, as its own unqueued event: it gives the click a token for Stop (`ui.click_token`;
    webui/stops.py) and starts a timer that shows the image the run is forming (`Studio.preview`). Returns the click
    event, which the run is chained on (`.then`: the click is on record before the run's request leaves the
    browser), and a function to give the run's event, after which the timer stops and the preview hides (done,
    failed or stopped). `scope`: the tab, whose Stop ends the run."""
    ui.click_token = gr.State(None)

    def on_click(request: gr.Request) -> list[Any]:
        return [studio.stops.clicked(stop_key(request.session_hash or "", scope)), gr.Timer(active=True)]

    def on_tick(request: gr.Request) -> Any:
        image = studio.preview(request.session_hash or "")
        return gr.skip() if image is None else gr.Image(value=image, visible=True)

    ui.live_timer.tick(on_tick, None, ui.live, queue=False, show_progress="hidden", api_visibility="private")
    clicked = trigger(on_click, None, [ui.click_token, ui.live_timer], queue=False, show_progress="hidden",
                      api_visibility="private")

    def stop_after(run: Any) -> None:
        run.then(lambda: [gr.Timer(active=False), gr.Image(value=None, visible=False)], None,
                 [ui.live_timer, ui.live], queue=False, show_progress="hidden", api_visibility="private")

    return clicked, stop_after


def _settings_drop(ui: SimpleNamespace) -> None:
    """A PNG made by the studio: drop it here and the form takes back every setting it was made with."""
    ui.settings_png = gr.File(label="Restore settings: drop a PNG made here", file_types=[".png"], height=170,
                              elem_id="settings-png")


def restored_fields(ui: SimpleNamespace) -> dict[str, str]:
    """What a PNG's settings restore into (cnet.result.settings_from_metadata's keys, the field names -> the tab's
    control names): every declared field the tab has a control for."""
    controls = form_controls(ui, "generate")
    return {item.field: item.name for item in door_fields("generate") if item.name in controls}


# What a saved image restores into the units' list and the references' (their pictures are files beside it).
UNIT_RESTORED = ("kind", "strength", "start", "end", "control_mode", "controlnet")
REFERENCE_RESTORED = ("scale", "preset")


def _usable(studio: Studio, key: str, value: Any) -> bool:
    """A model reference this deployment accepts, and a kind this tab offers (an Edit-only kind is not)."""
    if key == "kind":
        return value in {k.name for k in map_kinds()}
    if key in ("base_model", "controlnet"):
        try:
            studio.check_model_reference(value, key)
        except ValueError:
            return False
    if key in ("loras", "embeddings"):
        try:
            # Read as the form reads the field (its declaration): a LoRA's source, an embedding itself.
            entries = door_values_of("generate", {key: value}).settings.get(key, [])
            for entry in entries:
                studio.check_model_reference(getattr(entry, "source", entry), key)
        except ValueError:
            return False
    return True


def _restore_note(saved: dict[str, Any], refused: list[str], units: list[Any], references: list[Any]) -> str:
    """What a restore says: what came back, which files to upload, and what was refused (a few, each named)."""
    note = ("**Settings restored** from the PNG" + (" (seed fixed)" if "seed" in saved else "") + ". Its "
            "condition map is saved beside it as `…-control0.png`: upload that in the Map tab"
            + (f"; the maps of conditions 2-{len(units) + 1} (`…-control1.png` …) and their masks in their "
               "slots" if units else "")
            + ("; the reference pictures (`…-reference0.png` …) in theirs" if references else "") + ".")
    if refused:  # each named, at most a few (a crafted file could hold thousands)
        note += "\n\n**Not restored:** " + "; ".join(refused[:5]) + (" …" if len(refused) > 5 else "")
    return note


def _wire_settings_drop(ui: SimpleNamespace, studio: Studio) -> None:
    fields = restored_fields(ui)
    targets = [getattr(ui, name) for name in fields.values()]

    more = restore_outputs(ui.unit_slots, UNIT_RESTORED) + restore_outputs(ui.reference_slots, REFERENCE_RESTORED)
    count = len(targets) + 2 + len(more)

    @keep_results(count, status=count - 1)  # the status last, as the restore's callers read it
    @user_errors
    def on_drop(path: str | None) -> list[Any]:
        from cnet.result import more_units_from_metadata, read_metadata, settings_from_metadata

        if not path:
            return [gr.skip()] * count
        try:
            meta = read_metadata(path)
            saved, refused = settings_from_metadata(meta, studio.settings.limits)
            extra, also_refused = more_units_from_metadata(meta, studio.settings.limits)
        except ValueError as err:  # what is wrong with the file, without the server's upload path
            raise ValueError("no settings restored: " + str(err).replace(f"{path}: ", "").replace(str(path), "it")
                             ) from None
        except OSError:
            raise ValueError("no settings restored: this is not a PNG made by this studio") from None
        values = [saved[key] if saved.get(key) is not None and _usable(studio, key, saved[key]) else gr.skip()
                  for key in fields]
        # The prompt box shows when the restored mode is custom (a value alone would leave it hidden).
        values[list(fields).index("prompt")] = gr.Textbox(value=saved.get("prompt") or "",
                                                                    visible=saved.get("prompt_mode") == "custom")
        refused += also_refused
        units = [u for u in extra["units"] if _usable(studio, "kind", u.get("kind"))][:len(ui.unit_slots.fields)]
        references = extra["references"][:len(ui.reference_slots.fields)]
        gr.Info("Settings restored from the PNG" + (f", {len(refused)} refused" if refused else "")
                + "; open Advanced settings to see them.")
        return [*values, *restored_values(ui.unit_slots, UNIT_RESTORED, units),
                *restored_values(ui.reference_slots, REFERENCE_RESTORED, references), "seed" not in saved,
                _restore_note(saved, refused, units, references)]

    ui.settings_png.upload(on_drop, ui.settings_png, [*targets, *more, ui.randomize, ui.status],
                           api_visibility="private")


def _examples(ui: SimpleNamespace, demo_mode: bool) -> None:
    examples = load_examples()
    # The demo model only knows circles: offer circles.
    groups = [("demo", "Demo model examples (circle outlines)")] if demo_mode else \
        [("photos", "Example photos"), ("sketches", "Example sketches (drawn on paper)")]
    with gr.Row():
        for group, label in groups:
            if examples.get(group):
                loaded = gr.Examples(examples[group], [ui.photo, ui.kind, ui.prompt_mode, ui.prompt], label=label)
                # Loading an example resets each component to its first props (the prompt box hidden), and the mode
                # may not change (custom -> custom): show the box from the loaded mode every time.
                loaded.load_input_event.then(_prompt_box, ui.prompt_mode, ui.prompt, queue=False,
                                             api_visibility="private")


def _prompt_box(mode: str) -> Any:
    """The custom prompt box: shown (and editable) in Custom mode only."""
    return gr.Textbox(visible=mode == "custom")


# -- events ----------------------------------------------------------------------------------------------------------


def _wire_reactions(ui: SimpleNamespace) -> None:
    """Small UI reactions: no queue, they never touch a model."""
    private = dict(queue=False, api_visibility="private")
    for tab, name in ((ui.draw_tab, "draw"), (ui.photo_tab, "photo"), (ui.map_tab, "map")):
        tab.select(lambda n=name: n, None, ui.source, **private)
    # A pose is the openpose kind's map: choosing the Pose tab chooses the kind too.
    ui.pose_tab.select(lambda: ["pose", "openpose"], None, [ui.source, ui.kind], **private)

    def on_kind(kind_name: str) -> list[Any]:
        choices = annotators_for(kind_name)
        first = choices[0][1] if choices else None
        return [gr.Dropdown(choices=choices, value=first),
                gr.Slider(value=ANNOTATORS[KINDS[kind_name].annotator].detect_resolution)]

    def on_annotator(name: str | None) -> list[Any]:
        own = _own_params(name)
        return [gr.update(visible=n in own) for n in PARAMS]

    # A photo that arrives (upload or example) becomes the source; so does a map uploaded into the editor.
    ui.photo.change(lambda image: ["photo", gr.Tabs(selected="photo")] if image is not None else [gr.skip()] * 2,
                    ui.photo, [ui.source, ui.source_tabs], **private)
    ui.map_editor.upload(lambda: ["map", gr.Tabs(selected="map")], None, [ui.source, ui.source_tabs], **private)
    ui.kind.change(on_kind, ui.kind, [ui.annotator, ui.detect_resolution], **private)
    ui.annotator.change(on_annotator, ui.annotator, list(ui.params.values()), **private)
    ui.prompt_mode.change(_prompt_box, ui.prompt_mode, ui.prompt, **private)
    ui.presets.click(lambda: (ORIGINAL_ADDED_PROMPT, ORIGINAL_NEGATIVE_PROMPT), None,
                     [ui.added_prompt, ui.negative_prompt], **private)
    ui.clear_presets.click(lambda: ("", ""), None, [ui.added_prompt, ui.negative_prompt], **private)


def _first_unit(ui: SimpleNamespace, v: dict) -> UnitInput:
    """The main condition from the form's values (`v`: component -> value)."""
    if v[ui.source] == "pose":  # the edited skeleton, drawn as the map (annotators/pose.py)
        pose = parse_pose(v[ui.pose], max_side=ui.max_side)  # any client may send any text: bounded before drawing
        return UnitInput("map", render_pose(require_people(pose)), kind=v[ui.kind])
    image = {"draw": v[ui.sketch], "photo": v[ui.photo], "map": v[ui.map_editor]}[v[ui.source]]
    chosen = v[ui.annotator] if v[ui.annotator] in ANNOTATORS else None
    own = _own_params(chosen)
    return UnitInput(v[ui.source], image, kind=v[ui.kind], annotator=chosen,
                     params={n: v[c] for n, c in ui.params.items() if n in own},
                     detect_resolution=as_int(v[ui.detect_resolution], "detect resolution"))


def _form_run(ui: SimpleNamespace, v: dict) -> tuple[list[UnitInput], dict[str, Any]]:
    """What the form asks to run: its units (the main condition with its declared unit fields and pixel perfect;
    then the list's units in use) and `Studio.generate`'s other arguments (the reference pictures among them), read
    through the declarations
    (webui/form.py). Generate and the Batch section both run from it, so a batch runs what one Generate would."""
    values = form_values(ui, v, "generate", leave_out=("seed",) if v[ui.randomize] else ())
    unit = _first_unit(ui, v)
    for name, value in values.unit.items():
        setattr(unit, name, value)
    unit.pixel_perfect = values.run.get("pixel_perfect", False)
    units = [unit, *slot_units(ui.unit_slots, v)]
    settings = {**values.settings, "image_prompts": slot_references(ui.reference_slots, v)}
    if not v[ui.randomize]:
        settings["seed"] = as_int(v[ui.seed] or 0, "seed")
    return units, {"base_model": values.run.get("base_model"), "few_step": values.run.get("few_step", False),
                   **settings}


def _batch_section(ui: SimpleNamespace, allowed: bool) -> None:
    """Generate once per map or photo of a folder on this machine, with the form's settings."""
    with gr.Accordion("Batch over a folder (this machine)", open=False, visible=allowed):
        with gr.Row():
            ui.batch_folder = gr.Textbox(label="Folder of condition maps (or photos)", scale=3,
                                         elem_id="batch-folder")
            ui.batch_detect = gr.Checkbox(label="They are photos: detect the kind's map", scale=1)
        ui.batch_run = gr.Button("Run the batch with these settings", elem_id="batch-run")
        ui.batch_report = gr.Markdown(elem_id="batch-report")


def _wire_model_fields(ui: SimpleNamespace, studio: Studio, defaults: FormDefaults) -> None:
    # Few-step mode sets what it needs where the user sees it (the family's LoRA: steps, guidance, sampler; and back).
    ui.few_step.change(studio.few_step_form, [ui.few_step, ui.base_model], [ui.steps, ui.guidance, ui.scheduler],
                       queue=False, api_visibility="private")

    def on_base_left(reference: str | None, guidance: float) -> Any:
        # Guidance means CFG 9 for SD, FLUX.1-dev's distilled guidance 3.5 for FLUX.1: a default follows the family.
        out: list[Any] = [studio.family_guidance(reference, guidance, defaults.guidance)]
        if defaults.size is not None:  # the demo's one size holds while the demo model is the base, not after
            named = bool((reference or "").strip())
            side = " (0: from the map)" if named else f" (the demo model makes {defaults.size}x{defaults.size})"
            out += [gr.Slider(interactive=named, value=0 if named else defaults.size, step=64 if named else 1,
                              label=label + side) for label in ("Width", "Height")]
        return out if len(out) > 1 else out[0]  # one output: its value alone

    def on_sampling(steps: float, scheduler: str, reference: str | None) -> Any:
        note = studio.fidelity_note(as_int(steps, "steps"), scheduler, reference)
        return gr.Markdown(value=note and f"**Fidelity:** {note}", visible=bool(note))

    for control in (ui.steps, ui.scheduler):
        control.change(on_sampling, [ui.steps, ui.scheduler, ui.base_model], ui.fidelity_note, queue=False,
                       show_progress="hidden", api_visibility="private")
    sizes = [ui.width, ui.height] if defaults.size is not None else []
    # The family of the base model named (read from its config, no weights loaded), when the field is left.
    for event in (ui.base_model.blur, ui.base_model.submit):
        event(studio.describe_base, ui.base_model, ui.family, api_visibility="private")
        event(on_base_left, [ui.base_model, ui.guidance], [ui.guidance, *sizes], api_visibility="private")


def _wire_actions(ui: SimpleNamespace, studio: Studio, gpu: Callable[[Callable], Callable]) -> None:
    """Preview map, Generate, Batch and Stop: the accelerator's queue, through `Studio`."""
    map_inputs = {ui.source, ui.sketch, ui.photo, ui.map_editor, ui.pose, ui.kind, ui.annotator,
                  ui.detect_resolution, *ui.params.values()}
    _wire_model_fields(ui, studio, ui.defaults)

    @keep_results(3)
    @user_errors
    @gpu
    def on_preview(v: dict) -> list[Any]:
        made, _ = studio.condition_map(_first_unit(ui, v), should_stop=stop_requested())
        return [made, gr.Tabs(selected="map"), "map"]

    ui.preview.click(on_preview, map_inputs, [ui.map_editor, ui.source_tabs, ui.source], concurrency_id="gpu",
                     api_visibility="private")

    _wire_pose_detection(ui, studio, gpu)
    # The declared fields' controls, and those the form adds (random seed, the units' list, the references).
    generate_inputs = map_inputs | set(form_controls(ui, "generate").values()) | {ui.randomize} | \
        ui.unit_slots.inputs() | ui.reference_slots.inputs()

    outputs = [ui.gallery, ui.used_prompt, ui.used_seed, ui.status, ui.files, ui.metadata]

    @keep_results(len(outputs), status=outputs.index(ui.status))
    @user_errors
    @gpu
    def on_generate(v: dict, request: gr.Request, progress: gr.Progress = gr.Progress(track_tqdm=True)
                    ) -> list[Any]:
        units, arguments = _form_run(ui, v)
        session = request.session_hash or ""
        stopped = run_stop_check(studio.stops, stop_key(session, "generate"), v[ui.click_token])
        result, paths = studio.generate(units, session=session, should_stop=stopped,
                                        progress=lambda i, n: progress((i, n), desc="Denoising"), **arguments)
        return shown_results(result, paths)

    clicked, stop_previews = live_previews(ui, studio, ui.run.click, "generate")
    # The progress bar shows once, over the gallery, not over each of the six result panes.
    event = clicked.then(on_generate, generate_inputs | {ui.click_token}, outputs, concurrency_id="gpu",
                         api_visibility="private", show_progress_on=ui.gallery)
    stop_previews(event)
    live_frames = wire_live(ui, studio, gpu, generate_inputs, outputs, lambda v: _form_run(ui, v))
    _wire_batch(ui, studio, gpu, generate_inputs)
    _wire_stop(ui, studio, [event, live_frames])


def _wire_batch(ui: SimpleNamespace, studio: Studio, gpu: Callable[[Callable], Callable], generate_inputs: set) -> None:
    """Batch: what Generate would run, once per input of a folder of the server's disk. Its click is an event of
    its own, as Generate's (`live_previews`), so the Generate tab's Stop finds it."""
    ui.batch_token = gr.State(None)

    @keep_results(1, status=0)  # an error is the report's text, not a badge over the last report
    @user_errors
    @gpu
    def on_batch(v: dict, request: gr.Request, progress: gr.Progress = gr.Progress()) -> str:
        units, arguments = _form_run(ui, v)  # exactly what Generate would run, with each input as the first map
        session = request.session_hash or ""
        report = studio.batch(v[ui.batch_folder] or "", units, detect=bool(v[ui.batch_detect]), session=session,
                              should_stop=run_stop_check(studio.stops, stop_key(session, "generate"),
                                                         v[ui.batch_token]),
                              progress=lambda i, n: progress((i, n), desc="Batch"), **arguments)
        failed = "".join(f"\n- {line}" for line in report.failed[:20])
        return f"**Batch:** {report.summary()}{failed}"

    def on_batch_click(request: gr.Request) -> float:
        return studio.stops.clicked(stop_key(request.session_hash or "", "generate"))

    ui.batch_run.click(on_batch_click, None, ui.batch_token, queue=False, show_progress="hidden",
                       api_visibility="private").then(
        on_batch, generate_inputs | {ui.batch_folder, ui.batch_detect, ui.batch_token}, ui.batch_report,
        concurrency_id="gpu", api_visibility="private")


def _wire_pose_detection(ui: SimpleNamespace, studio: Studio, gpu: Callable[[Callable], Callable]) -> None:
    """The Pose tab's detection: the people in the Photo tab's photo become the pose to edit."""
    @keep_results(1)
    @user_errors
    @gpu
    def on_detect_pose(photo: Any, width: float, height: float) -> Any:
        found = studio.detect_pose(photo, width=as_int(width or 0, "width") or None,
                                   height=as_int(height or 0, "height") or None, should_stop=stop_requested())
        if not found.people:
            gr.Warning("No person found in the photo: the pose stays as it was.")
            return gr.skip()
        return json.dumps(pose_json(found))

    ui.pose_detect.click(on_detect_pose, [ui.photo, ui.width, ui.height], ui.pose, concurrency_id="gpu",
                         api_visibility="private")


def _wire_stop(ui: SimpleNamespace, studio: Studio, events: list[Any]) -> None:
    def on_stop(request: gr.Request) -> str:
        # The event is cancelled too (a queued run never starts); the results pane keeps the previous images.
        return studio.stop(request.session_hash or "", "generate")

    ui.stop.click(on_stop, None, ui.status, cancels=events, queue=False, api_visibility="private")


def shown_files(result: Any, paths: list[Path]) -> tuple[list[Any], list[Any]]:
    """The saved files of a result (its images, its condition maps) to hand to Gradio, or the images themselves
    where nothing was saved. Files, because Gradio copies a file into its cache atomically, while an image it
    encodes itself is written in place under a content-addressed name: two visitors getting the same image at once
    (an example's map) could be served a truncated file."""
    images = [str(p) for p in paths] if len(paths) == len(result.images) else list(result.images)
    maps = [str(p) for p in result.map_files] if len(result.map_files) == len(result.condition_maps) \
        else list(result.condition_maps)
    return images, maps


def shown_results(result: Any, paths: list[Path]) -> list[Any]:
    """What the results column shows of a generation."""
    images, maps = shown_files(result, paths)
    shown = [(im, f"seed {m['seed']}" + (" · blocked by the safety checker" if m["nsfw_content_detected"] else ""))
             for im, m in zip(images, result.metadata)]
    shown += [(m, f"condition map {i + 1}") for i, m in enumerate(maps)]
    note = f"Prompt mode **{result.metadata[0]['prompt_mode']}**"
    if result.metadata[0].get("caption"):
        note += f" · BLIP caption: *{result.metadata[0]['caption']}*"
    if result.metadata[0].get("memory_plan"):
        note += f" · memory plan: {result.metadata[0]['memory_plan']}"
    return [shown, result.prompt, result.seed, note, [str(p) for p in paths], result.metadata[0]]
