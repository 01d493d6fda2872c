"""The Generate tab: draw, upload a photo or a ready map; pick the kind and the prompt mode; generate.

Only UI wiring lives here: every action calls `Studio` (webui/service.py). Inputs are passed as a set of components
(the handler receives a dict), so no handler depends on the order of a long argument list.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from annotators import ANNOTATORS
from cnet.kinds import KINDS
from cnet.request import ORIGINAL_ADDED_PROMPT, ORIGINAL_NEGATIVE_PROMPT, SCHEDULERS

from .errors import user_errors
from .jobs import stop_requested
from .service import Studio, UnitInput, as_float, as_int

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PROMPT_MODES = [("No prompt", "none"), ("Default prompt", "default"), ("Automatic (BLIP caption)", "auto"),
                ("Custom", "custom")]
SCHEDULER_LABELS = {"ddim": "DDIM (paper)", "unipc": "UniPC", "euler_a": "Euler a", "dpmpp_2m": "DPM++ 2M",
                    "dpmpp_2m_karras": "DPM++ 2M Karras"}
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


def _param_component(name: str) -> gr.components.Component:
    p = PARAMS[name]
    if isinstance(p.default, bool):
        return gr.Checkbox(value=p.default, label=name.replace("_", " "), info=p.help, visible=False)
    step = 1 if isinstance(p.default, int) else 0.01
    return gr.Slider(p.minimum, p.maximum, value=p.default, step=step, label=name.replace("_", " "), info=p.help,
                     visible=False)


def create_generate_tab(studio: Studio, gpu: Callable[[Callable], Callable]) -> dict[str, Any]:
    """Build the tab inside the current gr.Blocks; `gpu` wraps functions that need the accelerator (ZeroGPU).
    Returns the components other tabs may fill (the ControlNet field, the kind)."""
    limits = studio.settings.limits
    source = gr.State("draw")
    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            with gr.Tabs(selected="draw") as source_tabs:
                with gr.Tab("Draw", id="draw") as draw_tab:
                    sketch = gr.Sketchpad(label="Sketch (black strokes; becomes white-on-black scribble)",
                                          type="numpy", image_mode="RGBA", canvas_size=(512, 512),
                                          brush=gr.Brush(default_size=6, colors=["#000000"], color_mode="fixed"),
                                          eraser=gr.Eraser(default_size=24), elem_id="sketch")
                with gr.Tab("Photo", id="photo") as photo_tab:
                    photo = gr.Image(label="Photo: the annotator extracts the map", type="filepath",
                                     sources=["upload", "webcam", "clipboard"], elem_id="photo")
                with gr.Tab("Map", id="map") as map_tab:
                    map_editor = gr.ImageEditor(label="Condition map: upload a ready map, or edit the preview",
                                                type="numpy", image_mode="RGB", canvas_size=(512, 512),
                                                brush=gr.Brush(default_size=4, colors=["#FFFFFF", "#000000"]),
                                                elem_id="map-editor")
            with gr.Row():
                kind = gr.Dropdown([(f"{k.name} — {k.description}", k.name) for k in KINDS.values()], value="canny",
                                   label="Condition kind", scale=2, elem_id="kind")
                annotator = gr.Dropdown(annotators_for("canny"), value="canny", label="Annotator (for photos)",
                                        scale=2)
            with gr.Accordion("Annotator settings", open=False):
                detect_resolution = gr.Slider(128, 1024, value=512, step=64, label="Detect resolution",
                                              info="short side the detector sees (384 suits depth and normal)")
                params = {name: _param_component(name) for name in PARAMS}
            preview = gr.Button("Preview map", elem_id="preview")

            prompt_mode = gr.Radio(PROMPT_MODES, value="default", label="Prompt mode", elem_id="prompt-mode",
                                   info="the paper's four settings: the exact text sent is shown with each result")
            prompt = gr.Textbox(label="Prompt", placeholder="a cosy cottage in a forest, oil painting", visible=False,
                                elem_id="prompt")
            with gr.Row():
                added_prompt = gr.Textbox(label="Added prompt", placeholder="appended except in No prompt mode")
                negative_prompt = gr.Textbox(label="Negative prompt")
            with gr.Row():
                presets = gr.Button("Use the original apps' added and negative prompts", size="sm")
                clear_presets = gr.Button("Clear them", size="sm")
            with gr.Row():
                run = gr.Button("Generate", variant="primary", elem_id="generate")
                stop = gr.Button("Stop", variant="stop", elem_id="stop")

            with gr.Accordion("Advanced settings", open=False, elem_id="advanced"):
                with gr.Row():
                    steps = gr.Slider(1, limits.max_steps, value=20, step=1, label="Steps", elem_id="steps")
                    guidance = gr.Slider(0.0, limits.max_guidance, value=9.0, step=0.5, label="Guidance (CFG)")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
                    randomize = gr.Checkbox(value=True, label="Random seed")
                    num_images = gr.Slider(1, limits.max_images, value=1, step=1, label="Images")
                with gr.Row():
                    width = gr.Slider(0, limits.max_side, value=0, step=64, label="Width (0: from the map)",
                                      elem_id="width")
                    height = gr.Slider(0, limits.max_side, value=0, step=64, label="Height (0: from the map)",
                                       elem_id="height")
                with gr.Row():
                    strength = gr.Slider(0.0, limits.max_strength, value=1.0, step=0.05, label="Control strength")
                    start = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Control start")
                    end = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Control end")
                with gr.Row():
                    guess_mode = gr.Checkbox(label="Guess mode (diffusers': scales 0.1 → 1.0, conditional half)")
                    scheduler = gr.Dropdown([(SCHEDULER_LABELS[s], s) for s in SCHEDULERS], value="ddim",
                                            label="Sampler")
                with gr.Row():
                    base_model = gr.Textbox(label="Base model (Hub id or local path; empty: default)",
                                            elem_id="base-model")
                    controlnet = gr.Textbox(label="ControlNet (Hub id or local path; empty: the kind's default)",
                                            elem_id="controlnet")
            with gr.Accordion("Second condition (multi-ControlNet)", open=False):
                use_second = gr.Checkbox(label="Use a second condition")
                with gr.Row():
                    kind2 = gr.Dropdown(list(KINDS), value="depth", label="Kind")
                    source2 = gr.Radio([("Photo → detect", "photo"), ("Ready map", "map")], value="photo",
                                       label="Source")
                    strength2 = gr.Slider(0.0, limits.max_strength, value=0.6, step=0.05, label="Strength")
                image2 = gr.Image(label="Image for the second condition", type="filepath")

        with gr.Column(scale=4):
            gallery = gr.Gallery(label="Results (and condition maps)", columns=2, height=520, format="png",
                                 elem_id="gallery")
            used_prompt = gr.Textbox(label="Prompt sent to the model", interactive=False, elem_id="used-prompt")
            with gr.Row():
                used_seed = gr.Number(label="Seed used", interactive=False, precision=0)
                status = gr.Markdown()
            files = gr.File(label="Download (PNG with metadata)", file_count="multiple")
            metadata = gr.JSON(label="Metadata of the first image")

    examples = load_examples()
    # The demo model only knows circles: offer circles.
    groups = [("demo", "Demo model examples (circle outlines)")] if studio.demo_mode else \
        [("photos", "Example photos"), ("sketches", "Example sketches (drawn on paper)")]
    with gr.Row():
        for group, label in groups:
            if examples.get(group):
                gr.Examples(examples[group], [photo, kind, prompt_mode, prompt], label=label)

    # -- small UI reactions (no queue: they never touch a model) ----------------------------------------------------
    for tab, name in ((draw_tab, "draw"), (photo_tab, "photo"), (map_tab, "map")):
        tab.select(lambda n=name: n, None, source, queue=False, api_visibility="private")

    def on_kind(kind_name: str) -> list[Any]:
        choices = annotators_for(kind_name)
        first = choices[0][1] if choices else None
        return [gr.Dropdown(choices=choices, value=first),
                gr.Slider(value=KINDS[kind_name].annotator_params.get("detect_resolution", 512))]

    # A photo that arrives (upload or example) becomes the source; so does a map uploaded into the editor.
    photo.change(lambda image: ["photo", gr.Tabs(selected="photo")] if image is not None else [gr.skip()] * 2,
                 photo, [source, source_tabs], queue=False, api_visibility="private")
    map_editor.upload(lambda: ["map", gr.Tabs(selected="map")], None, [source, source_tabs], queue=False,
                      api_visibility="private")

    kind.change(on_kind, kind, [annotator, detect_resolution], queue=False, api_visibility="private")

    def on_annotator(name: str | None) -> list[Any]:
        own = {p.name for p in ANNOTATORS[name].params} if name in ANNOTATORS else set()
        return [gr.update(visible=n in own) for n in PARAMS]

    annotator.change(on_annotator, annotator, list(params.values()), queue=False, api_visibility="private")
    prompt_mode.change(lambda m: gr.Textbox(visible=m == "custom"), prompt_mode, prompt, queue=False,
                       api_visibility="private")
    presets.click(lambda: (ORIGINAL_ADDED_PROMPT, ORIGINAL_NEGATIVE_PROMPT), None, [added_prompt, negative_prompt],
                  queue=False, api_visibility="private")
    clear_presets.click(lambda: ("", ""), None, [added_prompt, negative_prompt], queue=False,
                        api_visibility="private")

    # -- actions ---------------------------------------------------------------------------------------------------
    map_inputs = {source, sketch, photo, map_editor, kind, annotator, detect_resolution, *params.values()}

    def first_unit(v: dict) -> UnitInput:
        image = {"draw": v[sketch], "photo": v[photo], "map": v[map_editor]}[v[source]]
        chosen = v[annotator] if v[annotator] in ANNOTATORS else None
        own = {p.name for p in ANNOTATORS[chosen].params} if chosen else set()
        return UnitInput(v[source], image, kind=v[kind], annotator=chosen,
                         params={n: v[c] for n, c in params.items() if n in own},
                         detect_resolution=as_int(v[detect_resolution], "detect resolution"))

    @user_errors
    @gpu
    def on_preview(v: dict) -> list[Any]:
        made, _ = studio.condition_map(first_unit(v), should_stop=stop_requested())
        return [made, gr.Tabs(selected="map"), "map"]

    preview.click(on_preview, map_inputs, [map_editor, source_tabs, source], concurrency_id="gpu",
                  api_visibility="private")

    generate_inputs = map_inputs | {prompt_mode, prompt, added_prompt, negative_prompt, steps, guidance, seed,
                                    randomize, num_images, width, height, strength, start, end, guess_mode,
                                    scheduler, base_model, controlnet, use_second, kind2, source2, strength2, image2}

    @user_errors
    @gpu
    def on_generate(v: dict, request: gr.Request, progress: gr.Progress = gr.Progress(track_tqdm=True)
                    ) -> list[Any]:
        unit = first_unit(v)
        unit.strength, unit.start, unit.end = (as_float(v[c], n) for c, n in ((strength, "strength"), (start, "start"),
                                                                              (end, "end")))
        unit.controlnet = v[controlnet] or None
        units = [unit]
        if v[use_second]:
            units.append(UnitInput(v[source2], v[image2], kind=v[kind2], strength=as_float(v[strength2], "strength")))
        result, paths = studio.generate(
            units, session=request.session_hash or "", base_model=v[base_model] or None,
            should_stop=stop_requested(), progress=lambda i, n: progress((i, n), desc="Denoising"),
            # Hidden textboxes send None: treat them as empty.
            prompt_mode=v[prompt_mode], prompt=v[prompt] or "", added_prompt=v[added_prompt] or "",
            negative_prompt=v[negative_prompt] or "", num_inference_steps=as_int(v[steps], "steps"),
            guidance_scale=as_float(v[guidance], "guidance"),
            seed=None if v[randomize] else as_int(v[seed] or 0, "seed"), num_images=as_int(v[num_images], "images"),
            width=as_int(v[width] or 0, "width") or None, height=as_int(v[height] or 0, "height") or None,
            guess_mode=bool(v[guess_mode]), scheduler=v[scheduler])
        shown = [(im, f"seed {m['seed']}" + (" · blocked by the safety checker" if m["nsfw_content_detected"]
                                              else "")) for im, m in zip(result.images, result.metadata)]
        shown += [(m, f"condition map {i + 1}") for i, m in enumerate(result.condition_maps)]
        note = f"Prompt mode **{result.metadata[0]['prompt_mode']}**"
        if result.metadata[0].get("caption"):
            note += f" · BLIP caption: *{result.metadata[0]['caption']}*"
        return [shown, result.prompt, result.seed, note, [str(p) for p in paths], result.metadata[0]]

    event = run.click(on_generate, generate_inputs, [gallery, used_prompt, used_seed, status, files, metadata],
                      concurrency_id="gpu", api_visibility="private")
    def on_stop(request: gr.Request) -> None:
        studio.stop(request.session_hash or "")

    stop.click(on_stop, None, None, cancels=[event], queue=False, api_visibility="private")
    return {"controlnet": controlnet, "kind": kind}
