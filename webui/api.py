"""Named API endpoints for gradio_client: /generate, /edit, /detect and /caption.

They take plain values (an image file, text, numbers) rather than the UI's canvas widgets, and run through the same
`Studio` functions and limits as the UI. The components below are never shown; they only give the API its types.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import gradio as gr

from .errors import user_errors
from .generate_tab import model_choices, shown_files
from .jobs import stop_requested
from .service import Studio, UnitInput, as_float, as_int


def create_api(studio: Studio, gpu: Callable[[Callable], Callable]) -> None:
    """Register the endpoints inside the current gr.Blocks."""
    with gr.Column(visible=False):
        # A plain file, not gr.Image: Gradio does not decode it, so our checks (format by content, pixel limit)
        # see every upload first.
        image = gr.File(type="filepath", label="image")
        kind = gr.Textbox(value="canny", label="kind")
        # Initial values are the API's defaults (gradio_client treats them as optional arguments).
        text = {n: gr.Textbox(value=v, label=n) for n, v in (
            ("prompt_mode", "default"), ("prompt", ""), ("added_prompt", ""), ("negative_prompt", ""),
            ("scheduler", "ddim"), ("annotator", ""), ("params_json", ""), ("control_mode", "balanced"),
            ("resize_mode", "crop_and_resize"), ("base_model", ""), ("controlnet", ""), ("loras", ""),
            ("embeddings", ""))}
        numbers = {n: gr.Number(value=v, label=n) for n, v in (
            ("steps", 20), ("guidance", 9.0), ("seed", -1), ("num_images", 1), ("width", 0), ("height", 0),
            ("strength", 1.0), ("detect_resolution", 0))}
        flags = {n: gr.Checkbox(value=False, label=n) for n in ("detect", "guess_mode", "pixel_perfect", "few_step",
                                                                   "fast_decode")}
        out_gallery = gr.Gallery(label="images", format="png")
        out_image = gr.Image(type="pil", label="map", format="png")
        out_json = gr.JSON(label="metadata")
        out_text = gr.Textbox(label="caption")

    @user_errors
    @_in_api_names
    @gpu
    def generate(image: Any, kind: str = "canny", prompt_mode: str = "default", prompt: str = "",
                 added_prompt: str = "", negative_prompt: str = "", steps: float = 20, guidance: float = 9.0,
                 seed: float | None = None, num_images: float = 1, width: float | None = None,
                 height: float | None = None, strength: float = 1.0, guess_mode: bool = False,
                 scheduler: str = "ddim", detect: bool = False, control_mode: str = "balanced",
                 resize_mode: str = "crop_and_resize", pixel_perfect: bool = False, base_model: str = "",
                 controlnet: str = "", loras: str = "", embeddings: str = "", few_step: bool = False,
                 fast_decode: bool = False, request: gr.Request = None) -> tuple:
        """Generate from a condition map (or, with detect=True, from a photo). seed < 0 or empty: random.
        base_model / controlnet: Hub ids (local paths where the deployment allows them), empty: the defaults;
        loras: `source:weight` items separated by new lines or commas; embeddings: textual-inversion sources
        the same way (a file's name is its trigger word). few_step: the base family's LCM-LoRA and sampler (set
        steps=4, guidance=1 with it; it changes the image). fast_decode: decode with the tiny autoencoder (TAESD):
        faster, slightly softer."""
        seed_value = None if seed is None or seed == "" else as_int(seed, "seed")
        unit = UnitInput("photo" if detect else "map", image, kind=kind or "canny",
                         strength=as_float(strength, "strength"), control_mode=control_mode or "balanced",
                         pixel_perfect=bool(pixel_perfect), controlnet=controlnet or None)
        result, paths = studio.generate(
            [unit], session=getattr(request, "session_hash", "") or "", should_stop=stop_requested(),
            **_models(base_model, loras, embeddings), few_step=bool(few_step),
            prompt_mode=prompt_mode or "default", prompt=prompt or "", added_prompt=added_prompt or "",
            negative_prompt=negative_prompt or "", num_inference_steps=as_int(steps, "steps"),
            guidance_scale=as_float(guidance, "guidance"),
            seed=None if seed_value is None or seed_value < 0 else seed_value,
            num_images=as_int(num_images, "num_images"),
            width=as_int(width, "width") if width else None, height=as_int(height, "height") if height else None,
            guess_mode=bool(guess_mode), scheduler=scheduler or "ddim", resize_mode=resize_mode or "crop_and_resize",
            fast_decode=bool(fast_decode))
        images, maps = shown_files(result, paths)
        return images, maps[0], result.metadata

    gr.Button(visible=False).click(
        generate, [image, kind, text["prompt_mode"], text["prompt"], text["added_prompt"], text["negative_prompt"],
                   numbers["steps"], numbers["guidance"], numbers["seed"], numbers["num_images"], numbers["width"],
                   numbers["height"], numbers["strength"], flags["guess_mode"], text["scheduler"], flags["detect"],
                   text["control_mode"], text["resize_mode"], flags["pixel_perfect"], text["base_model"],
                   text["controlnet"], text["loras"], text["embeddings"], flags["few_step"],
                   flags["fast_decode"]],
        [out_gallery, out_image, out_json], api_name="generate", concurrency_id="gpu")

    with gr.Column(visible=False):
        picture, mask = gr.File(type="filepath", label="picture"), gr.File(type="filepath", label="mask")
        operation = gr.Textbox(value="img2img", label="operation")
        edit_numbers = {n: gr.Number(value=v, label=n) for n, v in (
            ("denoise", 0.75), ("mask_blur", 4), ("inpaint_padding", -1), ("outpaint_left", 0),
            ("outpaint_right", 0), ("outpaint_top", 0), ("outpaint_bottom", 0), ("upscale", 2.0),
            ("tile_down_sampling", 1.0), ("tile_size", -1))}
        keep = gr.Checkbox(value=False, label="keep_unmasked")

    @user_errors
    @_in_api_names
    @gpu
    def edit(picture: Any, image: Any = None, mask: Any = None, operation: str = "img2img", kind: str = "canny",
             prompt_mode: str = "default", prompt: str = "", negative_prompt: str = "", steps: float = 20,
             guidance: float = 9.0, seed: float | None = None, strength: float = 1.0, denoise: float = 0.75,
             mask_blur: float = 4, inpaint_padding: float = -1, keep_unmasked: bool = False,
             outpaint_left: float = 0, outpaint_right: float = 0, outpaint_top: float = 0, outpaint_bottom: float = 0,
             upscale: float = 2.0, tile_down_sampling: float = 1.0, control_mode: str = "balanced",
             width: float | None = None, height: float | None = None, resize_mode: str = "crop_and_resize",
             tile_size: float = -1, base_model: str = "", controlnet: str = "", loras: str = "",
             embeddings: str = "", few_step: bool = False, fast_decode: bool = False,
             request: gr.Request = None) -> tuple:
        """Edit `picture`: operation img2img | inpaint (`mask`: white = repaint) | outpaint | upscale (kind=tile).
        Without `image` (a condition map) the condition is made from the picture. inpaint_padding < 0: the whole
        picture; >= 0: only the masked area, with that padding. width/height 0: the picture's size (an upscale's:
        the picture times `upscale`); another shape is met by resize_mode. tile_size (img2img, upscale): denoise in
        tiles of at most that many px a side; 0: whole; < 0: the default (1024 for an upscale, else whole).
        base_model, controlnet, loras, embeddings, few_step, fast_decode: as for /generate. seed < 0 or empty:
        random."""
        seed_value = None if seed is None or seed == "" else as_int(seed, "seed")
        padding = as_int(inpaint_padding, "inpaint_padding") if inpaint_padding not in (None, "") else -1
        unit = UnitInput("map" if image else "photo", image or None, kind=kind or "canny",
                         strength=as_float(strength, "strength"), control_mode=control_mode or "balanced",
                         controlnet=controlnet or None)
        sides = {side: as_int(value or 0, f"outpaint_{side}") for side, value in (
            ("left", outpaint_left), ("right", outpaint_right), ("top", outpaint_top), ("bottom", outpaint_bottom))}
        result, paths = studio.edit(
            picture, [unit], operation=operation or "img2img", mask=mask or None, outpaint=sides,
            upscale=as_float(upscale, "upscale"), tile_down_sampling=as_float(tile_down_sampling, "tile_down_sampling"),
            session=getattr(request, "session_hash", "") or "", should_stop=stop_requested(),
            prompt_mode=prompt_mode or "default", prompt=prompt or "", negative_prompt=negative_prompt or "",
            num_inference_steps=as_int(steps, "steps"), guidance_scale=as_float(guidance, "guidance"),
            seed=None if seed_value is None or seed_value < 0 else seed_value, denoise=as_float(denoise, "denoise"),
            mask_blur=as_int(mask_blur, "mask_blur"), inpaint_padding=None if padding < 0 else padding,
            keep_unmasked=bool(keep_unmasked), resize_mode=resize_mode or "crop_and_resize",
            width=as_int(width, "width") if width else None, height=as_int(height, "height") if height else None,
            **({} if tile_size in (None, "") or as_int(tile_size, "tile_size") < 0
               else {"tile_size": as_int(tile_size, "tile_size")}),
            few_step=bool(few_step), fast_decode=bool(fast_decode), **_models(base_model, loras, embeddings))
        images, maps = shown_files(result, paths)
        return images, maps[0], result.metadata

    gr.Button(visible=False).click(
        edit, [picture, image, mask, operation, kind, text["prompt_mode"], text["prompt"], text["negative_prompt"],
               numbers["steps"], numbers["guidance"], numbers["seed"], numbers["strength"],
               *(edit_numbers[n] for n in ("denoise", "mask_blur", "inpaint_padding")), keep,
               *(edit_numbers[n] for n in ("outpaint_left", "outpaint_right", "outpaint_top", "outpaint_bottom",
                                           "upscale", "tile_down_sampling")), text["control_mode"],
               numbers["width"], numbers["height"], text["resize_mode"], edit_numbers["tile_size"],
               text["base_model"], text["controlnet"], text["loras"], text["embeddings"], flags["few_step"],
               flags["fast_decode"]],
        [out_gallery, out_image, out_json], api_name="edit", concurrency_id="gpu")

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
        detect, [image, kind, text["annotator"], numbers["detect_resolution"], numbers["width"], numbers["height"],
                 text["params_json"]], out_image, api_name="detect", concurrency_id="gpu")

    @user_errors
    @gpu
    def caption(image: Any) -> str:
        """The BLIP caption that the automatic prompt mode would use."""
        return studio.caption(image, should_stop=stop_requested())

    gr.Button(visible=False).click(caption, image, out_text, api_name="caption", concurrency_id="gpu")


def _models(base_model: str | None, loras: str | None, embeddings: str | None) -> dict:
    """The API's model choices as Studio arguments: lists separated by new lines or commas."""
    return model_choices(base_model, (loras or "").replace(",", "\n"), (embeddings or "").replace(",", "\n"))


# The library's field names as the API calls them (so an error names the parameter the caller sent).
API_NAMES = {"num_inference_steps": "steps", "guidance_scale": "guidance", "units[0].strength": "strength",
             "units[0].control_mode": "control_mode", "units": "image"}


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
