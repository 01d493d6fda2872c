"""What a generation asks for, validated at the boundary.

Every check raises `RequestError` (a ValueError) whose message names the field and the value received, so the
CLI, the app and the API can show it as is. Defaults are the paper's experiment settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any

from PIL import Image

from .kinds import KINDS
from .text import short_repr

DEFAULT_PROMPT = "a professional, detailed, high-quality image"
# The original ControlNet apps' texts, offered as presets (they are not added unless asked for).
ORIGINAL_ADDED_PROMPT = "best quality, extremely detailed"
ORIGINAL_NEGATIVE_PROMPT = (
    "longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, worst quality, "
    "low quality"
)
# lcm / tcd: the few-step samplers, for a base with its few-step LoRA (cnet/families.py, `few_step_settings`).
SCHEDULERS = ("ddim", "unipc", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "lcm", "tcd")
MAX_SEED = 2**32 - 1


class RequestError(ValueError):
    """A request field is out of bounds; the message names the field and the value."""


class PromptMode(StrEnum):
    """The paper's four prompt settings."""

    NONE = "none"  # a truly empty text condition: nothing is appended
    DEFAULT = "default"  # "a professional, detailed, high-quality image"
    AUTO = "auto"  # a BLIP caption of the source photo (or of the condition map)
    CUSTOM = "custom"  # the user's own text


@dataclass(frozen=True)
class Limits:
    """Server-side bounds. The app may tighten them (e.g. on a public Space); the library enforces them."""

    min_side: int = 64
    max_side: int = 2048
    max_steps: int = 150
    max_images: int = 12
    max_guidance: float = 30.0
    max_strength: float = 2.0
    max_units: int = 4
    # CLIP reads 77 tokens (~300 characters); longer text is kept for the record but must not hold the queue or
    # bloat every saved PNG (a 10 MB prompt did both).
    max_prompt_chars: int = 10_000


DEFAULT_LIMITS = Limits()


def size_refused(what: str, width: int, height: int, limits: Limits) -> RequestError:
    """The error for an output size taken from a picture (none was given) that this deployment does not make."""
    other = "a larger" if min(width, height) < limits.min_side else "a smaller"
    return RequestError(f"the {what} is {width}x{height} px, and with no width or height given the output takes its "
                        f"size; this deployment makes {limits.min_side}-{limits.max_side} px a side. Give a width "
                        f"or height (the picture is scaled to fit), or use {other} picture")


@dataclass(frozen=True)
class LoraRef:
    """A LoRA applied to the base (diffusers' `load_lora_weights`): a Hub id, a folder, or a .safetensors file
    (diffusers' own, A1111 and kohya files alike), at `weight` (1.0: as trained; 0: off)."""

    source: Any  # text, or a ModelSource already classified (a public deployment's Hub id)
    weight: float = 1.0
    # Who chose it, when not the request (e.g. the server's CNET_FEW_STEP_LORA): errors name that, not loras[i].
    origin: str | None = field(default=None, compare=False)


def parse_lora(text: str) -> LoraRef:
    """`SOURCE` or `SOURCE:WEIGHT` (e.g. `styles/ink.safetensors:0.8`), as the CLI, the API and the form take it."""
    text = text.strip()
    source, _, weight = text.rpartition(":")
    try:
        return LoraRef(source.strip(), float(weight)) if source else LoraRef(text)
    except ValueError:  # no weight after the last colon (a Windows drive, a revision): all of it is the source
        return LoraRef(text)


MAX_LORAS = 8


@dataclass
class ControlUnit:
    """One ControlNet and its condition map. `controlnet=None` takes the kind's default (or its env override)."""

    image: Image.Image
    kind: str = "canny"
    controlnet: str | None = None
    strength: float = 1.0  # diffusers' controlnet_conditioning_scale
    start: float = 0.0  # control_guidance_start, as a fraction of the steps
    end: float = 1.0  # control_guidance_end
    control_mode: str = "balanced"  # balanced | prompt | control, as the A1111 extension (see cnet/control_mode.py)


@dataclass
class GenerationRequest:
    """Everything that determines the output images (with the models and the seed)."""

    units: list[ControlUnit]
    prompt_mode: PromptMode | str = PromptMode.DEFAULT
    prompt: str = ""  # the text for `custom` mode
    caption: str | None = None  # `auto` mode: a caption computed earlier (skips BLIP), e.g. when re-running
    source_image: Image.Image | None = None  # the photo the map came from; `auto` mode captions it
    added_prompt: str = ""  # appended as ", <added>" except in `none` mode
    negative_prompt: str = ""
    num_inference_steps: int = 20
    guidance_scale: float = 9.0
    eta: float = 0.0
    num_images: int = 1
    seed: int | None = None  # None: drawn at random and reported in the result
    width: int | None = None  # None: the first condition map's width (rounded down to a multiple of 8)
    height: int | None = None
    guess_mode: bool = False  # diffusers' guess mode (control scales 0.1 -> 1.0, conditional half only)
    scheduler: str = "ddim"
    # How a map or picture of another shape meets the output: crop_and_resize (keep the centre), just_resize
    # (stretch) or resize_and_fill (fit inside, fill the bands); see cnet/resize.py.
    resize_mode: str = "crop_and_resize"
    # -- editing your own picture (the paper's "image editing"); all unset: text-to-image -------------------------
    init_image: Image.Image | None = None  # img2img / inpaint: the picture to edit (its size is the default size)
    mask: Image.Image | None = None  # inpaint: white = repaint, black = keep (resized to the picture's size)
    denoise: float = 0.75  # how much of the picture is redrawn (diffusers' `strength`): 0 keeps it, 1 redraws all
    mask_blur: int = 4  # px of Gaussian blur on the mask edge (A1111's "mask blur"); it feathers inward only
    inpaint_padding: int | None = None  # "inpaint only the masked area": redraw a crop around the mask, padded by this
    # many px, at full resolution, and paste it back (diffusers' `padding_mask_crop`); None: the whole picture
    keep_unmasked: bool = False  # paste the result onto the original through the mask: unmasked pixels stay exact
    # img2img (a tile upscale): denoise in overlapping tiles of at most this many px a side, so a 2048 px output
    # needs the memory of one tile (cnet/tiles.py); None: the whole image at once
    tile_size: int | None = None
    # Decode the final latents with the family's tiny autoencoder (TAESD, diffusers' AutoencoderTiny) instead of the
    # base's VAE: the decode costs a small fraction, and the image is slightly softer (changes the pixels; opt-in)
    fast_decode: bool = False
    # -- the base model's style -----------------------------------------------------------------------------------
    loras: list[LoraRef] = field(default_factory=list)  # applied in order, each at its weight; [] none
    # Textual-inversion embeddings (a file, folder or Hub id each): a file's trigger word is its name, as in A1111
    embeddings: list[str] = field(default_factory=list)

    @property
    def mode(self) -> str:
        """'txt2img' (from noise), 'img2img' (a picture to redraw) or 'inpaint' (a picture and a mask)."""
        if self.init_image is None:
            return "txt2img"
        return "inpaint" if self.mask is not None else "img2img"

    def validated(self, limits: Limits = DEFAULT_LIMITS) -> GenerationRequest:
        """Return a checked copy with `prompt_mode` as a PromptMode; raise RequestError on the first bad field."""
        if not isinstance(self.units, list) or not 1 <= len(self.units) <= limits.max_units:
            raise RequestError(f"units={short_repr(self.units)}: give 1 to {limits.max_units} control units")
        for i, unit in enumerate(self.units):
            _check_unit(i, unit, limits)
        return self.validate_settings(limits)

    def validate_settings(self, limits: Limits = DEFAULT_LIMITS) -> GenerationRequest:
        """Check every field but the units (so a caller can refuse bad settings before making any map)."""
        try:
            mode = PromptMode(self.prompt_mode)
        except ValueError:
            raise RequestError(
                f"prompt_mode={short_repr(self.prompt_mode)} is not one of {[m.value for m in PromptMode]}") from None
        for name in ("prompt", "added_prompt", "negative_prompt", "caption"):
            check_text(name, getattr(self, name), limits.max_prompt_chars, optional=name == "caption")
        if mode is PromptMode.CUSTOM and not self.prompt.strip():
            raise RequestError("prompt='' : prompt_mode='custom' needs a non-empty prompt")
        _check_int("num_inference_steps", self.num_inference_steps, 1, limits.max_steps)
        _check_int("num_images", self.num_images, 1, limits.max_images)
        _check_float("guidance_scale", self.guidance_scale, 0.0, limits.max_guidance)
        _check_float("eta", self.eta, 0.0, 1.0)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None:
                _check_int(name, value, limits.min_side, limits.max_side)
                if value % 8:
                    raise RequestError(f"{name}={value} must be a multiple of 8")
        from .resize import RESIZE_MODES

        if self.resize_mode not in RESIZE_MODES:
            raise RequestError(f"resize_mode={short_repr(self.resize_mode)} is not one of {list(RESIZE_MODES)}")
        if self.scheduler not in SCHEDULERS:
            raise RequestError(f"scheduler={self.scheduler!r} is not one of {list(SCHEDULERS)}")
        for name in ("guess_mode", "fast_decode"):
            if not isinstance(getattr(self, name), bool):
                raise RequestError(f"{name}={short_repr(getattr(self, name))} must be true or false")
        if self.guess_mode and any(getattr(u, "control_mode", "balanced") != "balanced" for u in self.units):
            raise RequestError("guess_mode=True is diffusers' 'control' mode for every ControlNet: leave the units' "
                               "control_mode at 'balanced', or use control_mode instead of guess_mode")
        if self.source_image is not None and not isinstance(self.source_image, Image.Image):
            raise RequestError(f"source_image={type(self.source_image).__name__} must be a PIL image")
        self._validate_edit()
        if not isinstance(self.loras, list) or len(self.loras) > MAX_LORAS:
            raise RequestError(f"loras={short_repr(self.loras)}: give a list of at most {MAX_LORAS} LoRAs")
        for i, lora in enumerate(self.loras):
            check_lora(i, lora)
        if not isinstance(self.embeddings, list) or len(self.embeddings) > MAX_LORAS:
            raise RequestError(f"embeddings={short_repr(self.embeddings)}: give a list of at most {MAX_LORAS}")
        for i, source in enumerate(self.embeddings):
            if not _names_a_model(source):
                raise RequestError(f"embeddings[{i}]={short_repr(source)} "
                                   "must name an embedding (a file, folder or Hub id)")
            check_text(f"embeddings[{i}]", _model_text(source), 1000)
        return replace(self, prompt_mode=mode)

    def _validate_edit(self) -> None:
        for name in ("init_image", "mask"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Image.Image):
                raise RequestError(f"{name}={type(value).__name__} must be a PIL image")
        if self.mask is not None and self.init_image is None:
            raise RequestError("mask given without init_image: inpainting needs the picture the mask applies to")
        if self.mask is not None:
            (w, h), (mw, mh) = self.init_image.size, self.mask.size
            if abs(w / h - mw / mh) > 0.01:
                raise RequestError(f"mask is {mw}x{mh} but init_image is {w}x{h}: their shapes must match")
        _check_float("denoise", self.denoise, 0.0, 1.0)
        if self.init_image is not None and self.denoise * self.num_inference_steps < 1:
            raise RequestError(f"denoise={self.denoise} with num_inference_steps={self.num_inference_steps} runs no "
                               "step: raise either")
        _check_int("mask_blur", self.mask_blur, 0, 64)
        if self.inpaint_padding is not None:
            _check_int("inpaint_padding", self.inpaint_padding, 0, 1024)
        if not isinstance(self.keep_unmasked, bool):
            raise RequestError(f"keep_unmasked={self.keep_unmasked!r} must be true or false")
        if self.tile_size is not None:
            _check_int("tile_size", self.tile_size, 256, 4096)
            if self.tile_size % 8:
                raise RequestError(f"tile_size={self.tile_size} must be a multiple of 8")
            if self.init_image is None or self.mask is not None:
                raise RequestError(f"tile_size={self.tile_size} works on img2img (an upscale): give a picture and "
                                   "no mask, or leave tile_size unset")

    def settings(self) -> dict[str, Any]:
        """The scalar fields, as recorded in metadata (images and units are recorded separately)."""
        skip = {"units", "source_image", "init_image", "mask", "loras", "embeddings"}
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        out["prompt_mode"] = PromptMode(self.prompt_mode).value
        out["mode"] = self.mode
        if self.mode == "txt2img":  # the editing settings mean nothing without a picture: not recorded
            for name in ("denoise", "mask_blur", "inpaint_padding", "keep_unmasked", "tile_size"):
                del out[name]
        elif self.mode == "img2img":
            for name in ("mask_blur", "inpaint_padding", "keep_unmasked"):
                del out[name]
        else:
            del out["tile_size"]
        return out


def check_lora(i: int, lora: Any) -> None:
    """RequestError unless `lora` (the request's `loras[i]`) names a LoRA in text and has a weight in [-4, 4]."""
    if not isinstance(lora, LoraRef) or not _names_a_model(lora.source):
        raise RequestError(f"loras[{i}]={short_repr(lora)} must name a LoRA (a Hub id, folder or file)")
    check_text(f"loras[{i}]", _model_text(lora.source), 1000)
    _check_float(f"loras[{i}].weight", lora.weight, -4.0, 4.0)


def _names_a_model(source: Any) -> bool:
    from .models import ModelSource

    return isinstance(source, ModelSource) or isinstance(source, str) and bool(source.strip())


def _model_text(source: Any) -> str:
    return source if isinstance(source, str) else source.spec


def resolve_prompt(request: GenerationRequest, caption: str | None = None) -> str:
    """The exact text sent to the text encoder for this request's prompt mode.

    `none` sends "" with nothing appended (the v1.0 apps still appended their added prompt; the paper does not).
    """
    mode = PromptMode(request.prompt_mode)
    if mode is PromptMode.NONE:
        return ""
    if mode is PromptMode.DEFAULT:
        text = DEFAULT_PROMPT
    elif mode is PromptMode.AUTO:
        text = caption if caption is not None else request.caption
        if text is None:
            raise RequestError("prompt_mode='auto' needs a caption; none was computed")
    else:
        text = request.prompt.strip()
    added = request.added_prompt.strip()
    return f"{text}, {added}" if added and text else (text or added)


def _check_unit(i: int, unit: ControlUnit, limits: Limits) -> None:
    where = f"units[{i}]"
    if not isinstance(unit, ControlUnit):
        raise RequestError(f"{where}={unit!r} must be a ControlUnit")
    if not isinstance(unit.image, Image.Image):
        raise RequestError(f"{where}.image={type(unit.image).__name__} must be a PIL image (the condition map)")
    if unit.kind not in KINDS and unit.controlnet is None:
        raise RequestError(f"{where}.kind={unit.kind!r} is unknown and no controlnet was given; "
                           f"known kinds: {sorted(KINDS)}")
    _check_float(f"{where}.strength", unit.strength, 0.0, limits.max_strength)
    _check_float(f"{where}.start", unit.start, 0.0, 1.0)
    _check_float(f"{where}.end", unit.end, 0.0, 1.0)
    if unit.start >= unit.end:
        raise RequestError(f"{where}.start={unit.start} must be below {where}.end={unit.end}")
    from .control_mode import CONTROL_MODES

    if unit.control_mode not in CONTROL_MODES:
        raise RequestError(f"{where}.control_mode={short_repr(unit.control_mode)} is not one of "
                           f"{list(CONTROL_MODES)}")


def check_text(name: str, value: Any, max_chars: int, optional: bool = False) -> None:
    """RequestError unless `value` is text of at most `max_chars` characters that any encoder can carry."""
    if optional and value is None:
        return
    if not isinstance(value, str):
        raise RequestError(f"{name}={short_repr(value)} must be text")
    if len(value) > max_chars:
        raise RequestError(f"{name} is {len(value)} characters long; at most {max_chars} are accepted")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as err:  # a lone surrogate: not text any encoder or PNG chunk can carry
        raise RequestError(f"{name} holds an invalid character at position {err.start} (a lone surrogate "
                           f"{value[err.start]!r}); remove it") from None


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and not low <= value <= high:
        raise RequestError(f"{name}={value:g} is out of range [{low}, {high}]")  # 1e300 is whole, and far out
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name}={short_repr(value)} must be a whole number")
    if not low <= value <= high:
        raise RequestError(f"{name}={value} is out of range [{low}, {high}]")


def _check_float(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name}={short_repr(value)} must be a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise RequestError(f"{name}={value} is out of range [{low}, {high}]")


__all__ = [
    "DEFAULT_PROMPT", "ORIGINAL_ADDED_PROMPT", "ORIGINAL_NEGATIVE_PROMPT", "SCHEDULERS", "ControlUnit",
    "GenerationRequest", "Limits", "DEFAULT_LIMITS", "PromptMode", "RequestError", "resolve_prompt",
]
