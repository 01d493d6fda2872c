"""What a generation asks for, validated at the boundary.

Every check raises `RequestError` (a ValueError) whose message names the field and the value received, so the
CLI, the app and the API can show it as is. Defaults are the paper's experiment settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, NamedTuple

from PIL import Image

from common.text import short_repr

from .control_mode import CONTROL_MODES
from .image_prompts import ImagePrompt, check_image_prompt
from .kinds import KINDS
from .operations import OPERATIONS, implied_operation, size_refused
from .params import (
    MAX_LINES,
    Declared,
    Param,
    RequestError,
    check_float,
    check_side,
    check_value,
    declarations,
    declared,
    door_values,
)
from .resize import RESIZE_MODES

DEFAULT_PROMPT = "a professional, detailed, high-quality image"
# The original ControlNet apps' texts, offered as presets (they are not added unless asked for).
ORIGINAL_ADDED_PROMPT = "best quality, extremely detailed"
ORIGINAL_NEGATIVE_PROMPT = (
    "longbody, lowres, bad anatomy, bad hands, missing fingers, extra digit, fewer digits, cropped, worst quality, "
    "low quality"
)
# lcm / tcd: the few-step samplers, for a base with its few-step LoRA (cnet/families.py, `few_step_settings`);
# flow_euler: flow matching (FLUX.1, SD3.5); "default": the base family's own (DDIM, the paper's, for SD).
SCHEDULERS = ("default", "ddim", "unipc", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "lcm", "tcd", "flow_euler")
MAX_SEED = 2**32 - 1


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
    max_image_prompts: int = 4  # reference pictures (IP-Adapter slots, each its own attention pass)
    # The longest side of a reference picture or a mask: they are read at CLIP's 224 px or the output's size, so a
    # larger file only costs the server memory to decode (checked from the header, before decoding).
    max_mask_side: int = 8192
    # CLIP reads 77 tokens (~300 characters); longer text is kept for the record but must not hold the queue or
    # bloat every saved PNG (a 10 MB prompt did both).
    max_prompt_chars: int = 10_000


DEFAULT_LIMITS = Limits()


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


MAX_LORAS = MAX_LINES


@dataclass
class RunOptions:
    """How a request is run, beside what it asks for: the base model, the few-step recipe, and how a unit's image
    is read (declared once, as the request's fields, for the CLI, the API and the forms)."""

    base_model: str | None = declared(None, Param(
        "the base model: Hub id, diffusers folder or single file (empty: the default)", optional=True,
        restore=False))
    few_step: bool = declared(False, Param(
        "few-step mode (changes the image): the base family's LCM-LoRA, the LCM sampler, 4 steps, guidance 1",
        type=bool, restore=False))
    detect: bool = declared(False, Param(
        "the image is a photo: run the kind's annotator on it first (the photo feeds the auto prompt mode)",
        type=bool, restore=False, scope="txt2img"))
    pixel_perfect: bool = declared(False, Param(
        "with detect and a width/height: detect at the resolution that makes the map the output's size",
        type=bool, restore=False, scope="txt2img"))


def _kind_names() -> tuple[str, ...]:
    return tuple(sorted(KINDS))


@dataclass
class ControlUnit:
    """One ControlNet and its condition map. `controlnet=None` takes the kind's default (or its env override)."""

    image: Image.Image = declared(None, Param(
        "condition map (repeat for multi-ControlNet); with detect: a photo the kind's annotator runs on",
        type="image", record=False, restore=False, per_unit=True))
    kind: str = declared("canny", Param("the condition kind", choices=_kind_names, per_unit=True))
    controlnet: str | None = declared(None, Param(
        "the ControlNet: a Hub id, folder or file (empty: the kind's default)", optional=True, per_unit=True,
        record=False))  # recorded as the entry's model, with its revision
    strength: float = declared(1.0, Param(  # diffusers' controlnet_conditioning_scale
        "control strength", type=float, high="max_strength", per_unit=True))
    start: float = declared(0.0, Param(  # control_guidance_start
        "fraction of the steps before control starts", type=float, name="control_start", high=1.0, per_unit=True))
    end: float = declared(1.0, Param(  # control_guidance_end
        "fraction of the steps after which control stops", type=float, name="control_end", high=1.0, per_unit=True))
    control_mode: str = declared("balanced", Param(  # as the A1111 extension (see cnet/control_mode.py)
        "balanced | prompt (my prompt is more important) | control (ControlNet is more important)",
        choices=CONTROL_MODES, per_unit=True))
    mask: Image.Image | None = declared(None, Param(  # cnet/regions.py: its residuals weighted by the mask
        "where this control applies (white; grey fades it; not given: everywhere), fitted to the output like its map",
        type="image", name="control_mask", optional=True, record=False, restore=False, per_unit=True))


_EDIT = "edit"


@dataclass
class GenerationRequest:
    """Everything that determines the output images (with the models and the seed). Each field but `units` is
    declared once (cnet/params.py): every door (CLI, API, forms, PNG) is derived from these declarations."""

    units: list[ControlUnit]
    # Reference pictures (IP-Adapter): what the image should look like (cnet/image_prompts.py), each declared field
    # once, as the units' are.
    image_prompts: list[ImagePrompt] = field(default_factory=list)
    prompt_mode: PromptMode | str = declared(PromptMode.DEFAULT, Param(
        "none | default | auto (a BLIP caption) | custom (your prompt)",
        choices=lambda: tuple(m.value for m in PromptMode)))
    prompt: str = declared("", Param("the text for the custom prompt mode", high="max_prompt_chars"))
    # `auto` mode: a caption computed earlier (BLIP does not run), e.g. when re-running
    caption: str | None = declared(None, Param(
        "auto mode: use this caption instead of running BLIP", optional=True, high="max_prompt_chars",
        restore=False))
    source_image: Image.Image | None = declared(None, Param(
        "the photo the map came from (captioned in auto mode)", type="image", optional=True, record=False,
        restore=False))
    added_prompt: str = declared("", Param("appended as ', <added>' except in 'none' mode", high="max_prompt_chars"))
    negative_prompt: str = declared("", Param("what the image should not show", high="max_prompt_chars"))
    num_inference_steps: int = declared(20, Param(
        "denoising steps (20, the paper's; 4 with few_step)", type=int, name="steps", low=1, high="max_steps"))
    guidance_scale: float | None = declared(None, Param(  # None: the family's (cnet/families.py `default_guidance`)
        "guidance: classifier-free for SD and SD3.5, FLUX.1-dev's distilled guidance for FLUX.1 (not given: 9.0, "
        "the paper's, for SD; 3.5 for FLUX.1 and SD3.5; 1 with few_step)", type=float, name="guidance",
        high="max_guidance", optional=True, unset=-1))
    true_cfg: float = declared(1.0, Param(
        "FLUX.1 text-to-image: true classifier-free guidance, which a negative prompt needs (above 1: every step "
        "runs twice)", type=float, low=1.0, high="max_guidance"))
    eta: float = declared(0.0, Param("DDIM's eta (0: deterministic sampling)", type=float, high=1.0))
    num_images: int = declared(1, Param("images per run", type=int, low=1, high="max_images"))
    seed: int | None = declared(None, Param(  # None: drawn at random and reported in the result
        "the seed (random when not given; always reported and saved)", type=int, high=MAX_SEED, optional=True,
        unset=-1))
    width: int | None = declared(None, Param(  # None: the first map's (or the picture's) width, a multiple of 8
        "output width in px (not given: the map's or picture's)", type=int, low="min_side", high="max_side",
        multiple_of=8, optional=True, unset=0))
    height: int | None = declared(None, Param(
        "output height in px (not given: the map's or picture's)", type=int, low="min_side", high="max_side",
        multiple_of=8, optional=True, unset=0))
    guess_mode: bool = declared(False, Param(  # diffusers' guess mode (control scales 0.1 -> 1.0)
        "diffusers' guess mode: the ControlNet sees only the conditional half", type=bool))
    scheduler: str = declared("default", Param(
        "the sampler: default (the family's: DDIM, the paper's, for SD; flow_euler for FLUX.1 and SD3.5); lcm/tcd "
        "with a few-step LoRA", choices=SCHEDULERS))
    # How a map or picture of another shape meets the output (cnet/resize.py).
    resize_mode: str = declared("crop_and_resize", Param(
        "a map or picture of another shape: crop_and_resize (keep the centre), just_resize (stretch) or "
        "resize_and_fill (fit inside, fill the bands)", choices=lambda: tuple(RESIZE_MODES)))
    # -- editing your own picture (the paper's "image editing"); all unset: text-to-image -------------------------
    # None: the one the inputs imply (no picture: txt2img; a picture: img2img; and a mask: inpaint)
    operation: str | None = declared(None, Param(
        "img2img | inpaint (needs a mask) | outpaint | upscale (cnet/operations.py)", optional=True,
        choices=lambda: tuple(OPERATIONS), scope=_EDIT, restore=False))
    init_image: Image.Image | None = declared(None, Param(
        "the picture to edit (its size is the default size)", type="image", name="picture", optional=True,
        scope=_EDIT, record=False, restore=False))
    mask: Image.Image | None = declared(None, Param(
        "inpaint: white = repaint, black = keep (or a transparent PNG's painted area)", type="image",
        optional=True, scope=_EDIT, record=False, restore=False))
    denoise: float = declared(0.75, Param(  # diffusers' `strength`
        "how much of the picture is redrawn: 0 keeps it, 1 redraws all", type=float, high=1.0, scope=_EDIT))
    mask_blur: int = declared(4, Param(  # A1111's "mask blur"; it feathers inward only
        "px of feathering at the mask's edge", type=int, high=64, scope="inpaint"))
    # "inpaint only the masked area" (diffusers' `padding_mask_crop`); None: the whole picture
    inpaint_padding: int | None = declared(None, Param(
        "inpaint only the masked area, cropped with this much padding, at full resolution (not given: the whole "
        "picture)", type=int, high=1024, optional=True, unset=-1, scope="inpaint"))
    keep_unmasked: bool = declared(False, Param(
        "unmasked pixels stay exactly as they were (the result is pasted through the mask)", type=bool,
        scope="inpaint"))
    # img2img (a tile upscale): overlapping tiles (cnet/tiles.py) so a 2048 px output needs one tile's memory
    tile_size: int | None = declared(None, Param(
        "img2img/upscale: denoise in overlapping tiles of at most N px a side, for the memory of one tile (not "
        "given: 1024 for an upscale, else the whole image; 0: the whole image)", type=int, low=256, high=4096,
        multiple_of=8, optional=True, unset=-1, none=0, scope="img2img"))
    # The family's tiny autoencoder (TAESD) instead of the base's VAE: a fraction of the time, slightly softer
    fast_decode: bool = declared(False, Param(
        "decode with the family's tiny autoencoder (TAESD): a fraction of the VAE's time, a slightly softer image",
        type=bool))
    # -- the base model's style -----------------------------------------------------------------------------------
    loras: list[LoraRef] = declared([], Param(
        "LoRAs for the base (Hub id, folder or .safetensors, A1111/kohya files too) as SOURCE[:WEIGHT], one a line",
        type=list, cli_alias="--lora", record=False, item=parse_lora))
    # Reference-only (cnet/reference.py): no model, the picture enters the U-Net's self-attention.
    reference_only: Image.Image | None = declared(None, Param(
        "reference-only: a picture whose look enters the U-Net's self-attention, no model needed (SD 1.x, 2.x, SDXL)",
        type="image", optional=True, record=False, restore=False))
    reference_only_weight: float = declared(1.0, Param(
        "reference-only: the share of self-attention layers that read the reference, widest first (0: none)",
        type=float, high=1.0))
    reference_only_fidelity: float = declared(0.5, Param(
        "reference-only: style fidelity, how much of guidance's unconditional half stays without the reference",
        type=float, high=1.0))
    ip_adapter: str | None = declared(None, Param(
        "the IP-Adapter for the reference pictures: a weights file (its image_encoder folder beside it), a folder or "
        "Hub repository laid out as h94/IP-Adapter, or owner/name/path/file (empty: the base family's, from "
        "h94/IP-Adapter)", optional=True, high=1000, record=False, restore=False))
    embeddings: list[str] = declared([], Param(
        "textual-inversion embeddings (a file's name is its trigger word, as in A1111; folder or Hub id), one a "
        "line", type=list, cli_alias="--embedding", record=False))

    @property
    def mode(self) -> str:
        """The pipeline mode its operation runs: 'txt2img' (from noise), 'img2img' (a picture to redraw) or
        'inpaint' (a picture and a mask)."""
        return OPERATIONS[self.operation_name].pipeline_mode

    @property
    def operation_name(self) -> str:
        """The operation: as named, or the one the inputs imply (cnet/operations.py)."""
        return self.operation or implied_operation(self.init_image, self.mask)

    def validated(self, limits: Limits = DEFAULT_LIMITS) -> GenerationRequest:
        """Return a checked copy with `prompt_mode` as a PromptMode; raise RequestError on the first bad field."""
        # No unit: an edit by a base that takes no ControlNet (FLUX.1 Fill); the engine refuses it for the others.
        if not isinstance(self.units, list) or not 0 <= len(self.units) <= limits.max_units:
            raise RequestError(f"units={short_repr(self.units)}: give 1 to {limits.max_units} control units")
        if not self.units and self.init_image is None and not self.image_prompts:
            raise RequestError("units=[]: give a control unit (a map) or a reference picture; only an edit by a base "
                               "that takes no ControlNet (FLUX.1 Fill) runs without either")
        for i, unit in enumerate(self.units):
            _check_unit(i, unit, limits)
        return self.validate_settings(limits)

    def validate_settings(self, limits: Limits = DEFAULT_LIMITS) -> GenerationRequest:
        """Check every field but the units (so a caller can refuse bad settings before making any map): each
        against its declaration, then what involves several fields."""
        for item in declarations(GenerationRequest):
            value = getattr(self, item.field)
            if item.param.type is str and item.param.choices is None:
                check_text(item.field, value, item.param.bound(limits), optional=item.param.optional)
            elif item.param.type == "image":
                if value is not None and not isinstance(value, Image.Image):
                    raise RequestError(f"{item.field}={type(value).__name__} must be a PIL image")
            elif item.param.type is not list:
                check_value(item.field, value, item.param, limits)
        if not isinstance(self.image_prompts, list) or len(self.image_prompts) > limits.max_image_prompts:
            raise RequestError(f"image_prompts={short_repr(self.image_prompts)}: give at most "
                               f"{limits.max_image_prompts} reference pictures")
        for i, prompt in enumerate(self.image_prompts):
            check_image_prompt(i, prompt, limits)
        if isinstance(self.reference_only, Image.Image):  # read at the output's size: a larger file only costs memory
            check_side("reference_only", self.reference_only, limits)
        mode = PromptMode(self.prompt_mode)
        if mode is PromptMode.CUSTOM and not self.prompt.strip():
            raise RequestError("prompt='' : prompt_mode='custom' needs a non-empty prompt")
        if self.guess_mode and any(getattr(u, "control_mode", "balanced") != "balanced" for u in self.units):
            raise RequestError("guess_mode=True is diffusers' 'control' mode for every ControlNet: leave the units' "
                               "control_mode at 'balanced', or use control_mode instead of guess_mode")
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
        """The editing fields' checks that involve several fields (each alone is checked by its declaration)."""
        if self.operation is not None:
            implied = OPERATIONS[implied_operation(self.init_image, self.mask)].pipeline_mode
            if OPERATIONS[self.operation].pipeline_mode != implied:
                needs = {"txt2img": "no init_image", "img2img": "an init_image and no mask",
                         "inpaint": "an init_image and a mask"}[OPERATIONS[self.operation].pipeline_mode]
                raise RequestError(f"operation={self.operation!r} needs {needs}")
        if self.mask is not None and self.init_image is None:
            raise RequestError("mask given without init_image: inpainting needs the picture the mask applies to")
        if self.mask is not None:
            (w, h), (mw, mh) = self.init_image.size, self.mask.size
            if abs(w / h - mw / mh) > 0.01:
                raise RequestError(f"mask is {mw}x{mh} but init_image is {w}x{h}: their shapes must match")
        if self.init_image is not None and self.denoise * self.num_inference_steps < 1:
            raise RequestError(f"denoise={self.denoise} with num_inference_steps={self.num_inference_steps} runs no "
                               "step: raise either")
        if self.tile_size is not None and (self.init_image is None or self.mask is not None):
            raise RequestError(f"tile_size={self.tile_size} works on img2img (an upscale): give a picture and "
                               "no mask, or leave tile_size unset")

    def settings(self) -> dict[str, Any]:
        """The declared fields recorded in metadata for this request's mode (images, units, LoRAs and embeddings
        are recorded separately; the editing settings only where the mode uses them), and the mode."""
        out = {item.field: getattr(self, item.field) for item in declarations(GenerationRequest)
               if item.param.record and item.param.scope in ("generate", _EDIT if self.mode != "txt2img" else "",
                                                              self.mode)}
        out["prompt_mode"] = PromptMode(self.prompt_mode).value
        out["mode"], out["operation"] = self.mode, self.operation_name
        return out


def door_fields(door: str) -> list[Declared]:
    """Every declared field a door takes for `door` ("generate": from maps; "edit": a picture), in the order the
    CLI and the API list them: the run's options, the unit's, the request's, and an edit's picture options."""
    from .operations import EditOptions

    groups = [RunOptions, ControlUnit, ImagePrompt, GenerationRequest] + ([EditOptions] if door == "edit" else [])
    return [item for cls in groups for item in declarations(cls, door)]


class DoorValues(NamedTuple):
    """What a door sent, typed and split by where it goes (field name -> value; fields not given are absent)."""

    run: dict[str, Any]  # RunOptions
    unit: dict[str, Any]  # ControlUnit (one unit)
    settings: dict[str, Any]  # GenerationRequest
    edit: dict[str, Any]  # EditOptions
    reference: dict[str, Any]  # ImagePrompt (one reference picture)


def door_values_of(door: str, sent: dict[str, Any]) -> DoorValues:
    """`sent` (public name -> value, as the API or a form sends it) read through the declarations of `door`."""
    from .operations import EditOptions

    return DoorValues(*(door_values(declarations(cls, door), sent) if cls is not EditOptions or door == "edit"
                        else {} for cls in (RunOptions, ControlUnit, GenerationRequest, EditOptions, ImagePrompt)))


def check_lora(i: int, lora: Any) -> None:
    """RequestError unless `lora` (the request's `loras[i]`) names a LoRA in text and has a weight in [-4, 4]."""
    if not isinstance(lora, LoraRef) or not _names_a_model(lora.source):
        raise RequestError(f"loras[{i}]={short_repr(lora)} must name a LoRA (a Hub id, folder or file)")
    check_text(f"loras[{i}]", _model_text(lora.source), 1000)
    check_float(f"loras[{i}].weight", lora.weight, -4.0, 4.0)


def _names_a_model(source: Any) -> bool:
    from common.models import ModelSource

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
    for item in declarations(ControlUnit):  # the images, kind and ControlNet are checked here, by their own rules
        if item.field not in ("image", "kind", "controlnet", "mask"):
            check_value(f"{where}.{item.field}", getattr(unit, item.field), item.param, limits)
    if unit.mask is not None:
        if not isinstance(unit.mask, Image.Image):
            raise RequestError(f"{where}.mask={type(unit.mask).__name__} must be a PIL image or not given")
        (w, h), (mw, mh) = unit.image.size, unit.mask.size
        check_side(f"{where}.mask", unit.mask, limits)
        if abs(w / h - mw / mh) > 0.01:
            raise RequestError(f"{where}.mask is {mw}x{mh} but its map is {w}x{h}: their shapes must match")
    if unit.start >= unit.end:
        raise RequestError(f"{where}.start={unit.start} must be below {where}.end={unit.end}")


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




__all__ = [
    "size_refused",
    "DEFAULT_PROMPT", "ImagePrompt", "ORIGINAL_ADDED_PROMPT", "ORIGINAL_NEGATIVE_PROMPT", "SCHEDULERS", "ControlUnit",
    "GenerationRequest", "Limits", "DEFAULT_LIMITS", "PromptMode", "RequestError", "resolve_prompt",
]
