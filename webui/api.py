"""Named API endpoints for gradio_client: /generate, /edit, /detect and /caption.

They take plain values (an image file, text, numbers) rather than the UI's canvas widgets, and run through the same
`Studio` functions and limits as the UI. The components below are never shown; they only give the API its types.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any

import gradio as gr

from cnet.operations import EditOptions, edit_operation
from cnet.params import Declared, as_int, declarations, public_names
from cnet.request import ControlUnit, ImagePrompt, door_fields, door_values_of

from .errors import user_errors
from .generate_tab import shown_files
from .jobs import stop_requested
from .service import Studio, UnitInput

# Parameters the API lists first (gradio_client callers pass them positionally: the file to work on).
_LEADING = ("picture", "image")


# Files the API takes several of: the maps of the units after the first, each unit's mask, the reference pictures
# and their masks (one per unit or reference, or one for all).
_MORE_MAPS = "more_images"
_SEVERAL_FILES = (_MORE_MAPS, "control_mask", "reference", "reference_mask")


def _component(item: Declared) -> gr.components.Component:
    """The hidden component that gives one declared field its API type and default (gradio_client treats a
    component's initial value as the optional argument's default; optional numbers start at their `unset`). A unit's
    or reference's own setting takes one value for all, or a list with one per unit (per reference), as the CLI."""
    param = item.param
    if item.name in _SEVERAL_FILES:
        return gr.File(type="filepath", file_count="multiple", label=item.name)
    if param.per_unit and param.type != "image":
        # The default as JSON text (gr.JSON parses a string), so the component's value is the default itself.
        return gr.JSON(value=json.dumps(item.default) if item.default is not None else None, label=item.name)
    if param.type == "image":
        # A plain file, not gr.Image: Gradio does not decode it, so our checks (format by content, pixel limit)
        # see every upload first.
        return gr.File(type="filepath", label=item.name)
    if param.type is bool:
        return gr.Checkbox(value=bool(item.default), label=item.name)
    if param.type in (int, float):
        return gr.Number(value=item.default if item.default is not None else param.unset, label=item.name)
    return gr.Textbox(value=str(item.default) if isinstance(item.default, str) else "", label=item.name)


def _declared_inputs(door: str) -> dict[str, gr.components.Component]:
    """Public name -> component for every field `door` takes (cnet.request.door_fields), the files first."""
    items = sorted(door_fields(door), key=lambda i: _LEADING.index(i.name) if i.name in _LEADING else len(_LEADING))
    inputs = {item.name: _component(item) for item in items}
    # The maps of units 2, 3, ... (the API's own parameter: `image` stays one file, as callers send it).
    return {**dict(list(inputs.items())[:1]), _MORE_MAPS: gr.File(type="filepath", file_count="multiple",
                                                                   label=_MORE_MAPS), **dict(list(inputs.items())[1:])}


def _declared_signature(inputs: dict[str, gr.components.Component]) -> Callable[[Callable], Callable]:
    """Give an endpoint taking `**sent` the signature of its declared parameters (each optional, with its
    component's default; a file's is None), so gradio_client lists them and a caller may leave any out."""
    def decorate(fn: Callable) -> Callable:
        params = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=component.value)
                  for name, component in inputs.items()]
        # Gradio passes the gr.Request only to a positional parameter annotated so: the first one.
        request = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                    annotation=gr.Request)
        fn.__signature__ = inspect.Signature([request, *params])
        return fn

    return decorate


def create_api(studio: Studio, gpu: Callable[[Callable], Callable]) -> None:
    """Register the endpoints inside the current gr.Blocks. /generate and /edit take exactly the declared fields
    (cnet/request.py), so they match the CLI's `generate` and `edit`."""
    with gr.Column(visible=False):
        generate_inputs, edit_inputs = _declared_inputs("generate"), _declared_inputs("edit")
        out_gallery = gr.Gallery(label="images", format="png")
        out_image = gr.Image(type="pil", label="map", format="png")
        out_json = gr.JSON(label="metadata")
    outputs = [out_gallery, out_image, out_json]
    _create_generate(studio, gpu, generate_inputs, outputs)
    _create_edit(studio, gpu, edit_inputs, outputs)
    _create_tools(studio, gpu, generate_inputs["image"], out_image)


def _create_generate(studio: Studio, gpu: Callable[[Callable], Callable], inputs: dict[str, Any],
                     outputs: list[Any]) -> None:
    """/generate: maps (or photos) and reference pictures to images, as `python -m cnet generate`."""

    @user_errors
    @_in_api_names
    @gpu
    @_declared_signature(inputs)
    def generate(request: gr.Request = None, **sent: Any) -> tuple:
        """Generate from a condition map `image` (or, with detect=true, from a photo), and `more_images` for more
        units (multi-ControlNet). Parameters: the request's declared fields (`python -m cnet generate --help`
        describes each); a unit's own setting (kind, strength, control_start/end, control_mode, controlnet,
        control_mask) takes one value for all units or a list with one per unit, as do the reference pictures'
        (`reference`: files; reference_scale, reference_preset, reference_mask). seed < 0: random; width/height 0:
        the map's; base_model / controlnet: Hub ids (local paths where the deployment allows them), empty: defaults;
        loras (`source:weight`) and embeddings: one a line or separated by commas."""
        own, maps = _split_groups(sent)
        values = door_values_of("generate", _lists(own))
        source = "photo" if values.run.get("detect") else "map"
        units = [UnitInput(source, image, pixel_perfect=values.run.get("pixel_perfect", False), **unit)
                 for image, unit in zip(maps, _group_values(ControlUnit, "generate", sent, len(maps)))]
        result, paths = studio.generate(
            units, session=getattr(request, "session_hash", "") or "", should_stop=stop_requested(),
            base_model=values.run.get("base_model"), few_step=values.run.get("few_step", False),
            image_prompts=_references(sent), **values.settings)
        images, maps = shown_files(result, paths)
        return images, maps[0] if maps else None, result.metadata

    gr.Button(visible=False).click(generate, None, outputs, inputs_kwargs=inputs, api_name="generate",
                                   concurrency_id="gpu")


def _create_edit(studio: Studio, gpu: Callable[[Callable], Callable], inputs: dict[str, Any],
                 outputs: list[Any]) -> None:
    """/edit: a picture redrawn under control, as `python -m cnet edit`."""

    @user_errors
    @_in_api_names
    @gpu
    @_declared_signature(inputs)
    def edit(request: gr.Request = None, **sent: Any) -> tuple:
        """Edit `picture`: operation img2img | inpaint (`mask`: white = repaint) | outpaint | upscale (kind=tile);
        empty: inpaint with a mask, outpaint with a side to extend, else img2img. Without `image` (a condition map)
        the condition is made from the picture. inpaint_padding < 0: the whole picture; >= 0: only the masked
        area, with that padding. width/height 0: the picture's size (an upscale's: the picture times `upscale`).
        tile_size: < 0 the operation's default (1024 for an upscale), 0 the whole image. The other parameters as
        for /generate."""
        own, maps = _split_groups(sent)
        values = door_values_of("edit", _lists(own))
        units = [UnitInput("map" if image else "photo", image, **unit)
                 for image, unit in zip(maps or [None], _group_values(ControlUnit, "edit", sent, len(maps) or 1))]
        options = EditOptions(**values.edit)
        mask = values.settings.pop("mask", None)
        operation = edit_operation(values.settings.pop("operation", None), mask, options)
        result, paths = studio.edit(
            values.settings.pop("init_image", None), units, operation=operation, mask=mask, options=options,
            session=getattr(request, "session_hash", "") or "", should_stop=stop_requested(),
            base_model=values.run.get("base_model"), few_step=values.run.get("few_step", False),
            image_prompts=_references(sent), **values.settings)
        images, maps = shown_files(result, paths)
        return images, maps[0] if maps else None, result.metadata

    gr.Button(visible=False).click(edit, None, outputs, inputs_kwargs=inputs, api_name="edit",
                                   concurrency_id="gpu")


def _create_tools(studio: Studio, gpu: Callable[[Callable], Callable], image: Any, out_image: Any) -> None:
    """/detect and /caption: what a form's Preview map and the automatic prompt mode do, for API callers."""
    with gr.Column(visible=False):
        kind, annotator = gr.Textbox(value="canny", label="kind"), gr.Textbox(value="", label="annotator")
        params_json = gr.Textbox(value="", label="params_json")
        resolution, width, height = (gr.Number(value=0, label=n) for n in ("detect_resolution", "width", "height"))
        out_text = gr.Textbox(label="caption")

    @user_errors
    @gpu
    def detect(image: Any, kind: str = "canny", annotator: str = "", detect_resolution: float | None = None,
               width: float | None = None, height: float | None = None, params_json: str = "") -> Any:
        """Photo to condition map with the kind's annotator (or `annotator`); params_json like {"low_threshold": 50}."""
        try:
            params = json.loads(params_json) if params_json else {}
        except json.JSONDecodeError as err:
            raise ValueError(f"params_json is not valid JSON: {err}") from None
        if not isinstance(params, dict):
            raise ValueError("params_json must be a JSON object of parameter names to values")
        unit = UnitInput("photo", image, kind=kind or "canny", annotator=annotator or None, params=params,
                         detect_resolution=as_int(detect_resolution, "detect_resolution") if detect_resolution
                         else None)
        made, _ = studio.condition_map(unit, width=as_int(width, "width") if width else None,
                                       height=as_int(height, "height") if height else None,
                                       should_stop=stop_requested())
        return made

    gr.Button(visible=False).click(
        detect, [image, kind, annotator, resolution, width, height, params_json], out_image, api_name="detect",
        concurrency_id="gpu")

    @user_errors
    @gpu
    def caption(image: Any) -> str:
        """The BLIP caption that the automatic prompt mode would use."""
        return studio.caption(image, should_stop=stop_requested())

    gr.Button(visible=False).click(caption, image, out_text, api_name="caption", concurrency_id="gpu")


def _split_groups(sent: dict[str, Any]) -> tuple[dict[str, Any], list[Any]]:
    """The request's own values (the units' and references' taken out, read by `_group_values`), and the units'
    maps: `image`, then `more_images`."""
    maps = [sent["image"]] if sent.get("image") else []
    maps += list(sent.get(_MORE_MAPS) or [])
    grouped = {item.name for cls in (ControlUnit, ImagePrompt) for item in declarations(cls)}
    return {k: v for k, v in sent.items() if k not in grouped and k != _MORE_MAPS}, maps


def _group_values(cls: type, door: str, sent: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """Each unit's (or reference's) declared settings, but its picture: a value sent once is every one's, a list
    gives one value each (its length must be the count)."""
    from cnet.params import door_values
    from cnet.request import RequestError

    items = [item for item in declarations(cls, door) if item.name not in ("image", "reference")]
    columns = {}
    for item in items:
        value = sent.get(item.name)
        if isinstance(value, list) and len(value) not in (1, count):
            raise RequestError(f"{item.name} has {len(value)} values for {count} "
                               f"{'reference pictures' if cls is ImagePrompt else 'units'}: give one, or one each")
        if isinstance(value, list) and len(value) == 1:
            value = value[0]
        columns[item.name] = value if isinstance(value, list) else [value] * count
    return [door_values(items, {name: column[i] for name, column in columns.items() if column[i] is not None})
            for i in range(count)]


def _references(sent: dict[str, Any]) -> list[ImagePrompt]:
    """The reference pictures (`reference`, one or several files) with their own settings."""
    pictures = list(sent.get("reference") or [])
    return [ImagePrompt(picture, **values)
            for picture, values in zip(pictures, _group_values(ImagePrompt, "generate", sent, len(pictures)))]


def _lists(sent: dict[str, Any]) -> dict[str, Any]:
    """The API's list fields also take commas between entries (one a line is the forms' way)."""
    return {k: v.replace(",", "\n") if k in ("loras", "embeddings") and isinstance(v, str) else v
            for k, v in sent.items()}


# The library's field names as the API calls them (so an error names the parameter the caller sent).
API_NAMES = {**public_names(door_fields("edit")), "units": "image",
             **{f"units[0].{item.field}": item.name for item in declarations(ControlUnit)}}


def _in_api_names(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Rewrite a RequestError's field name into the API parameter's: `steps=0`, not `num_inference_steps=0`."""
    import functools

    from cnet.request import RequestError

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RequestError as err:
            message = str(err)
            for field, name in API_NAMES.items():
                if message.startswith(field + "=") or message.startswith(field + " "):
                    message = name + message[len(field):]
                    break
            raise RequestError(message) from None

    return wrapper
