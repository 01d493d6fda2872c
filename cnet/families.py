"""Model families (SD 1.x, SD 2.x, SDXL): one table entry each, read from the model's own config, never its name.

A family decides the diffusers pipeline classes for every request mode (text-to-image, img2img, inpaint; plain and
ControlNet-Union), the class that loads the base, its default output side, and which ControlNets fit it. Adding the
next family is a `Family(...)` here, not a fork of the engine.

The family is recognised by the U-Net's (or ControlNet's) architecture, which is what makes the weights fit:
SDXL's U-Net conditions on pooled text and image sizes (`addition_embed_type="text_time"`); SD 2.x, unlike 1.x, uses
linear projections in its transformers (`use_linear_projection`). A ControlNet also has to match the base's text
width (`cross_attention_dim`): two models of one family with other widths (a tiny test model and a real one) are
refused as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from common.models import ModelSource


DEFAULT_BASE_MODEL = "stable-diffusion-v1-5/stable-diffusion-v1-5"
BASE_MODEL_ENV = "CNET_BASE_MODEL"


def base_model_source() -> str:
    """The base model to use: `CNET_BASE_MODEL` if set, else Stable Diffusion 1.5."""
    from common.env import env_text

    return env_text(BASE_MODEL_ENV) or DEFAULT_BASE_MODEL


class FamilyMismatchError(ValueError):
    """A ControlNet that does not fit the base model; the message names both models and their families."""


# Rows: latent channels; columns: R, G, B (the factors ComfyUI and the A1111 web UI use for approximate previews).
SD_LATENT_RGB = (((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
                  (-0.2120, -0.2616, -0.7177)), (0.0, 0.0, 0.0))
SDXL_LATENT_RGB = (((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
                    (-0.3165, -0.2492, -0.2188)), (0.1084, -0.0175, -0.0011))


@dataclass(frozen=True)
class LivePreset:
    """A family's live recipe: the steps and the longer output side on an accelerator and on a CPU (where a step
    costs seconds), whether the family's few-step LoRA and sampler are used, and whether TAESD decodes."""

    steps: int
    cpu_steps: int
    side: int
    cpu_side: int
    few_step: bool = True
    fast_decode: bool = True
    # The share of the default's control this recipe kept where it was measured (None: not measured here).
    fidelity_kept: float | None = None

    def steps_on(self, device: str) -> int:
        """The steps a frame takes on `device` ("cpu", "cuda", "cuda:1", "mps")."""
        return self.cpu_steps if device.startswith("cpu") else self.steps

    def side_on(self, device: str) -> int:
        """The longer output side on `device`."""
        return self.cpu_side if device.startswith("cpu") else self.side


@dataclass(frozen=True)
class Family:
    """What the studio needs to know to run a family of base models."""

    name: str  # the short name used in metadata, the CLI and the UI
    label: str  # for people
    base_pipeline: str  # the diffusers class that loads a base of this family
    pipelines: Mapping[str, str]  # request mode -> ControlNet pipeline class (one ControlNet or several)
    union_pipelines: Mapping[str, str] = field(default_factory=dict)  # the same for a ControlNet-Union model
    default_side: int = 512  # the side its models were trained at (SD 2.x v-prediction: 768)
    has_safety_checker: bool = True  # SD 1.x / 2.x pipelines carry one; SDXL's do not
    text_encoders: int = 1
    # The VAE its authors' community publishes for half precision, where the base's own overflows in fp16 (SDXL's
    # does; diffusers then decodes in fp32, slower): used in fp16 when on this machine or reachable.
    half_precision_vae: str | None = None
    # The LoRA that makes it sample in a few steps (latent consistency distillation for SD; FLUX.1: alimama's
    # Turbo-Alpha, 8 steps at its usual guidance), for the few-step mode, with its steps and guidance.
    few_step_lora: str | None = None
    few_steps: int = 4  # LCM-LoRA's authors: 2-8 steps, 4 a good balance
    few_step_guidance: float = 1.0  # their guidance of 1-2; 1 drops the unconditional half of every step (no CFG)
    # The tiny autoencoder (TAESD) distilled from its VAE, for the opt-in fast decode (`fast_decode`).
    tiny_vae: str | None = "madebyollin/taesd"
    # Live previews (cnet/preview.py): the latent channels -> RGB factors fitted to its VAE, and their bias.
    # None: no factors fitted to its VAE yet, so no live preview.
    latent_rgb: tuple[tuple[tuple[float, ...], ...], tuple[float, ...]] | None = SD_LATENT_RGB
    short_label: str = ""  # in messages ("SDXL"); the label when empty
    # The request settings that mean something for it (a DiT family has no guess mode or control modes): a request
    # that sets another is refused by name, never silently ignored (`check_controls`).
    controls: frozenset[str] = frozenset({"guess_mode", "control_mode", "eta", "fast_decode"})
    # Training: it also conditions on the image's size and crop (SDXL's micro-conditioning) beside pooled text.
    size_conditioning: bool = False
    # The side of its v-prediction models where they were trained larger (SD 2.x 768-v), read from the scheduler.
    v_prediction_side: int | None = None
    denoiser: str = "unet"  # the base's denoising model (its subfolder): a U-Net, or a DiT's "transformer"
    # False: the family is recognised (its models are named and described) but the studio does not generate with it
    # yet; a run is refused by name (`check_generates`) instead of failing inside diffusers.
    generates: bool = True
    # The samplers that apply (cnet/engine.py SCHEDULER_CLASSES) and the one a request's "default" means: DDIM, the
    # paper's, for the U-Net families; flow-matching Euler, the only one diffusers' DiT pipelines are made for.
    schedulers: frozenset[str] = frozenset({"ddim", "unipc", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "lcm", "tcd"})
    default_scheduler: str = "ddim"
    few_step_scheduler: str = "lcm"
    # The guidance a request that gives none gets: the paper's CFG 9 for SD; FLUX.1-dev's embedded (distilled)
    # guidance of 3.5, and SD3.5 Large's CFG of 3.5, as their authors' model cards use.
    default_guidance: float = 9.0
    map_argument: str = "image"  # the text-to-image pipeline's argument for the maps (DiT pipelines: control_image)
    # A1111's "(word:1.2)" weights, through compel's CLIP embeddings; a T5 family reads the prompt as plain text and
    # refuses the notation by name instead of dropping it.
    weighted_prompts: bool = True
    size_multiple: int = 8  # output sides: the VAE's factor (FLUX.1 packs 2x2 latents: 16)
    # A ControlNet-Union model with several conditions is run as a multi-ControlNet of that one model (FLUX.1's
    # FluxMultiControlNetModel); SDXL's Union pipelines take it alone with lists.
    union_as_multi: bool = False
    # The U-Net ControlNet hooks (cnet/fastpath.py: skip a ControlNet at scale 0) fit its ControlNets.
    skip_inactive: bool = True
    notes: str = ""  # what a user of this family needs to know, shown where its base is named
    # False: a base that edits without ControlNets (FLUX.1 Fill reads the picture and mask itself); a request
    # with control units is refused by name, and the edit doors make none for it.
    takes_controlnets: bool = True
    # Image prompts (cnet/image_prompts.py): the IP-Adapter authors' weights for it inside h94/IP-Adapter (None: the
    # studio has none for it yet), and InstantStyle's per-block recipes at scale 1 ("style": the blocks that carry
    # colour and material; "composition": those that carry layout), as its authors' scripts name them.
    ip_adapter_weight: str | None = None
    # Request mode -> the pipeline without a ControlNet, for a run steered by reference pictures alone.
    plain_pipelines: Mapping[str, str] = field(default_factory=dict)
    ip_presets: Mapping[str, Any] = field(default_factory=dict)
    # Live mode (cnet/live.py): the fastest recipe that keeps the control (None: no live mode for it; refused by name).
    live: LivePreset | None = None

    def __post_init__(self) -> None:
        if not self.short_label:
            object.__setattr__(self, "short_label", self.label)

    def check_generates(self, what: str) -> None:
        """ValueError naming `what` (the base model) when the studio does not generate with this family yet."""
        if not self.generates:
            raise ValueError(f"{what} is a {self.label} model: the studio recognises it but cannot generate with "
                             f"{self.short_label} yet; choose a Stable Diffusion 1.x, 2.x or XL base")

    def check_controls(self, request: Any) -> None:
        """RequestError naming a setting of `request` that this family does not use (set away from its default)."""
        from .params import RequestError

        used = {"guess_mode": bool(request.guess_mode), "eta": request.eta != 0,
                "control_mode": any(unit.control_mode != "balanced" for unit in request.units),
                "true_cfg": request.true_cfg != 1, "fast_decode": bool(request.fast_decode)}
        for name, set_ in used.items():
            if set_ and name not in self.controls:
                raise RequestError(f"{name} does not apply to {self.label} models: leave it at its default")
        if "true_cfg" in self.controls and request.negative_prompt.strip() and request.true_cfg <= 1:
            raise RequestError(f"negative_prompt: {self.label}'s guidance is distilled into the model, so a negative "
                               "prompt needs true CFG: set true_cfg above 1 (every step then runs twice)")

    def resolved(self, request: Any) -> Any:
        """`request` with what it left to the family filled in: the sampler ("default") and the guidance (None);
        a sampler that does not apply to this family is refused by name."""
        from dataclasses import replace

        from .params import RequestError

        scheduler = self.default_scheduler if request.scheduler == "default" else request.scheduler
        if scheduler not in self.schedulers:
            raise RequestError(f"scheduler={scheduler!r} does not apply to {self.label} models: choose one of "
                               f"{sorted(self.schedulers)} (or 'default')")
        guidance = self.default_guidance if request.guidance_scale is None else request.guidance_scale
        return replace(request, scheduler=scheduler, guidance_scale=guidance)


SD_PLAIN = {"txt2img": "StableDiffusionPipeline", "img2img": "StableDiffusionImg2ImgPipeline",
            "inpaint": "StableDiffusionInpaintPipeline"}
SD_PIPELINES = {"txt2img": "StableDiffusionControlNetPipeline", "img2img": "StableDiffusionControlNetImg2ImgPipeline",
                "inpaint": "StableDiffusionControlNetInpaintPipeline"}

# InstantStyle: SDXL's up_blocks.0.attentions.1 carries style, down_blocks.2.attentions.1 layout (its README); for
# SD 1.5 (infer_style_sd15.py) the whole of up_blocks.1, and down_blocks.2 with the middle block for layout. SD 1.5's
# up_blocks.0 has no attention at all: SDXL's recipe there would switch the adapter off without a word.
SD15_IP_PRESETS = {"style": {"up": {"block_1": 1.0}}, "composition": {"down": {"block_2": 1.0}, "mid": 1.0},
                   "style_and_composition": {"down": {"block_2": 1.0}, "mid": 1.0, "up": {"block_1": 1.0}}}
SDXL_IP_PRESETS = {"style": {"up": {"block_0": [0.0, 1.0, 0.0]}}, "composition": {"down": {"block_2": [0.0, 1.0]}},
                   "style_and_composition": {"down": {"block_2": [0.0, 1.0]}, "up": {"block_0": [0.0, 1.0, 0.0]}}}

# Live mode: LCM-LoRA at 2 steps (the low end of its authors' 2-8), guidance 1 (no CFG), TAESD decode; on a CPU at
# 384 px, where such a frame of SD1.5 + ControlNet took 1.8 s in bfloat16 (bench/RESULTS.md; 1 step: 0.9 s, below the
# LoRA's range); SDXL at a size it still draws well.
SD15_LIVE = LivePreset(steps=2, cpu_steps=2, side=512, cpu_side=384)
SDXL_LIVE = LivePreset(steps=2, cpu_steps=2, side=768, cpu_side=512)

FAMILIES: dict[str, Family] = {
    "sd15": Family("sd15", "Stable Diffusion 1.x", "StableDiffusionPipeline", SD_PIPELINES, short_label="SD 1.x",
                   few_step_lora="latent-consistency/lcm-lora-sdv1-5", live=SD15_LIVE,
                   ip_adapter_weight="models/ip-adapter_sd15.safetensors", ip_presets=SD15_IP_PRESETS,
                   plain_pipelines=SD_PLAIN),
    "sd2": Family("sd2", "Stable Diffusion 2.x", "StableDiffusionPipeline", SD_PIPELINES, short_label="SD 2.x",
                  v_prediction_side=768),
    "sdxl": Family(
        "sdxl", "Stable Diffusion XL", "StableDiffusionXLPipeline",
        {"txt2img": "StableDiffusionXLControlNetPipeline", "img2img": "StableDiffusionXLControlNetImg2ImgPipeline",
         "inpaint": "StableDiffusionXLControlNetInpaintPipeline"},
        {"txt2img": "StableDiffusionXLControlNetUnionPipeline",
         "img2img": "StableDiffusionXLControlNetUnionImg2ImgPipeline",
         "inpaint": "StableDiffusionXLControlNetUnionInpaintPipeline"},
        default_side=1024, has_safety_checker=False, text_encoders=2,
        half_precision_vae="madebyollin/sdxl-vae-fp16-fix", few_step_lora="latent-consistency/lcm-lora-sdxl",
        tiny_vae="madebyollin/taesdxl", latent_rgb=SDXL_LATENT_RGB, short_label="SDXL", size_conditioning=True,
        live=SDXL_LIVE,
        ip_adapter_weight="sdxl_models/ip-adapter_sdxl.safetensors", ip_presets=SDXL_IP_PRESETS,
        plain_pipelines={"txt2img": "StableDiffusionXLPipeline", "img2img": "StableDiffusionXLImg2ImgPipeline",
                         "inpaint": "StableDiffusionXLInpaintPipeline"}),
}

# The DiT families: a transformer denoiser, T5 beside CLIP, flow matching. diffusers' SD3 ControlNet pipelines have
# no img2img, and their inpainting pipeline is made for one inpainting ControlNet that takes the mask as its
# condition (not the picture-and-strength edit the other families do): both are refused by name for SD3.5.
DIT = dict(default_side=1024, has_safety_checker=False, denoiser="transformer", schedulers=frozenset({"flow_euler"}),
           default_scheduler="flow_euler", few_step_scheduler="flow_euler", default_guidance=3.5,
           map_argument="control_image", weighted_prompts=False, skip_inactive=False, latent_rgb=None)
DIT_FAMILIES = {
    "flux": Family(
        "flux", "FLUX.1", "FluxPipeline",
        {"txt2img": "FluxControlNetPipeline", "img2img": "FluxControlNetImg2ImgPipeline",
         "inpaint": "FluxControlNetInpaintPipeline"},
        {"txt2img": "FluxControlNetPipeline", "img2img": "FluxControlNetImg2ImgPipeline",
         "inpaint": "FluxControlNetInpaintPipeline"},
        text_encoders=2, tiny_vae="madebyollin/taef1", short_label="FLUX.1",
        few_step_lora="alimama-creative/FLUX.1-Turbo-Alpha", few_steps=8, few_step_guidance=3.5,
        controls=frozenset({"true_cfg", "fast_decode"}),
        size_multiple=16, union_as_multi=True, notes="Guidance is FLUX.1-dev's distilled guidance (3.5), not CFG; a "
        "negative prompt needs True CFG above 1 (twice the time). Sampler: flow-matching Euler. Sides: multiples of 16",
        **DIT),
    "sd3": Family(
        "sd3", "Stable Diffusion 3.5", "StableDiffusion3Pipeline", {"txt2img": "StableDiffusion3ControlNetPipeline"},
        text_encoders=3, tiny_vae="madebyollin/taesd3", short_label="SD3.5", controls=frozenset(),
        notes="Guidance is CFG (3.5 typical). Sampler: flow-matching Euler. Text-to-image only: no img2img or inpaint "
        "ControlNet pipeline. No fast decode: its pipeline encodes the map with the VAE it decodes with", **DIT),
}
# FLUX.1 Fill: a FLUX.1 transformer that also reads the masked picture's latents and the mask (in_channels six times
# its out_channels: 64 + 64 + 256 packed), through FluxFillPipeline, for inpaint and outpaint; no ControlNet.
DIT_FAMILIES["flux_fill"] = Family(
    "flux_fill", "FLUX.1 Fill", "FluxFillPipeline", {"inpaint": "FluxFillPipeline"}, text_encoders=2,
    tiny_vae="madebyollin/taef1", short_label="FLUX.1 Fill", controls=frozenset({"fast_decode"}), size_multiple=16,
    takes_controlnets=False, **{**DIT, "default_guidance": 30.0},
    notes="It inpaints and outpaints (Edit tab, `cnet edit`) by itself, without a ControlNet: the unit's kind is not "
    "used. Guidance 30, as its model card. Sides: multiples of 16")
FAMILIES.update(DIT_FAMILIES)

UNION_CLASS = "ControlNetUnionModel"


def family_of(config: Mapping[str, Any]) -> Family:
    """The family of a U-Net, transformer or ControlNet from its config (a `config.json` as a dict, or a model's
    `.config`): FLUX.1's have single-stream blocks, SD3's a caption projection; then the U-Net families."""
    if "num_single_layers" in config:
        return _flux_family(config)
    if "caption_projection_dim" in config:
        return FAMILIES["sd3"]
    if config.get("addition_embed_type") == "text_time":
        return FAMILIES["sdxl"]
    if config.get("addition_embed_type") is not None or config.get("in_channels", 4) not in (4, 9):
        raise ValueError(f"an unknown architecture (addition_embed_type={config.get('addition_embed_type')!r}, "
                         f"in_channels={config.get('in_channels')!r}): not a Stable Diffusion 1.x, 2.x or XL model")
    return FAMILIES["sd2"] if config.get("use_linear_projection") else FAMILIES["sd15"]


def _flux_family(config: Mapping[str, Any]) -> Family:
    """FLUX.1, or FLUX.1 Fill (its transformer reads six times the channels it writes); BFL's Canny/Depth control
    models (twice) and other variants are refused by name."""
    out_channels = config.get("out_channels")
    if not out_channels or out_channels == config.get("in_channels"):
        return FAMILIES["flux"]
    if config.get("in_channels") == 6 * out_channels:
        return FAMILIES["flux_fill"]
    raise ValueError(f"an unknown FLUX.1 variant (in_channels={config.get('in_channels')!r}, out_channels="
                     f"{out_channels!r}): FLUX.1 [dev]/[schnell] and FLUX.1 Fill are supported")


def base_family(spec: str | ModelSource, single_file_config: str | None = None) -> Family:
    """The family of a base model (Hub id, folder or single file; a ModelSource as classified, e.g. a visitor's
    Hub id that must never be looked up on disk) from its U-Net config, without loading weights.
    A single file is read through its config folder (`single_file_config`), else taken for SD 1.x, as diffusers'
    own single-file loading assumes. ModelUnavailableError when the config is not on this machine and the Hub is
    unreachable; ValueError for an architecture that is none of these families."""
    from diffusers import UNet2DConditionModel

    from common.models import hub_is_offline, load_with_hub_fallback, parse_model_source

    source = parse_model_source(spec, what="base_model")
    if source.kind == "file":
        if not single_file_config:
            return FAMILIES["sd15"]
        return family_of(UNet2DConditionModel.load_config(single_file_config, subfolder="unet",
                                                          local_files_only=hub_is_offline()))
    denoiser = "transformer" if _has_transformer(source) else "unet"
    config = load_with_hub_fallback(UNet2DConditionModel.load_config, source, env_var=BASE_MODEL_ENV,
                                    subfolder=denoiser)
    try:
        return family_of(config)
    except ValueError as err:
        raise ValueError(f"base_model={source.spec!r} is {err}") from None


def _has_transformer(source: Any) -> bool:
    """Whether a base pipeline's denoiser is a transformer (its model_index.json names one), read without weights."""
    from diffusers import DiffusionPipeline

    from common.models import load_with_hub_fallback

    index = load_with_hub_fallback(DiffusionPipeline.load_config, source, env_var=BASE_MODEL_ENV)
    return "transformer" in index and "unet" not in index


def base_default_side(spec: str | ModelSource, family: Family) -> int:
    """The side the base at `spec` was trained at (`default_side`), its scheduler config read where it matters."""
    if family.v_prediction_side is None:
        return family.default_side
    from diffusers import DDIMScheduler

    from common.models import load_with_hub_fallback, parse_model_source

    source = parse_model_source(spec, what="base_model")
    if source.kind == "file":
        return family.default_side
    return default_side(family, load_with_hub_fallback(DDIMScheduler.load_config, source, subfolder="scheduler"))


def default_side(family: Family, scheduler_config: Mapping[str, Any] | None = None) -> int:
    """The side a base was trained at: the family's v-prediction side for its v-prediction models (SD 2.x 768-v),
    else its default side."""
    if family.v_prediction_side and (scheduler_config or {}).get("prediction_type") == "v_prediction":
        return family.v_prediction_side
    return family.default_side


def is_union(controlnet: Any) -> bool:
    """True for a ControlNet-Union model (several condition kinds in one model, each with its control type):
    SDXL's ControlNetUnionModel, or a FLUX.1 ControlNet with control modes (`num_mode`, InstantX's Union)."""
    return type(controlnet).__name__ == UNION_CLASS or bool(getattr(controlnet.config, "num_mode", None))


def check_fits(controlnet_config: Mapping[str, Any], base_config: Mapping[str, Any], controlnet: str,
               base: str) -> None:
    """Refuse a ControlNet made for another family (or text width) than the base, naming both."""
    theirs, ours = family_of(controlnet_config), family_of(base_config)
    width, base_width = _text_width(controlnet_config), _text_width(base_config)
    if theirs is not ours:
        raise FamilyMismatchError(f"controlnet={controlnet!r} is a {theirs.label} ControlNet, but the base model "
                                  f"{base!r} is {ours.label}: choose a ControlNet made for {ours.label}, or a "
                                  f"{theirs.label} base model")
    if width != base_width:
        raise FamilyMismatchError(f"controlnet={controlnet!r} reads text embeddings {width} wide, but the base model "
                                  f"{base!r} makes them {base_width} wide: they were not made for each other")
    inner, base_inner = _inner_width(controlnet_config), _inner_width(base_config)
    if inner != base_inner:  # a DiT's ControlNet adds to the transformer's hidden states: same width (SD3 vs 3.5)
        raise FamilyMismatchError(f"controlnet={controlnet!r} works {inner} wide, but the base model {base!r} is "
                                  f"{base_inner} wide: they were made for different sizes of {ours.label}")


def _text_width(config: Mapping[str, Any]) -> Any:
    """The width of the text embeddings a model reads: a U-Net's cross-attention, a DiT's joint attention."""
    return config.get("cross_attention_dim", config.get("joint_attention_dim"))


def _inner_width(config: Mapping[str, Any]) -> Any:
    """A DiT's hidden width (heads x head width); None for a U-Net."""
    if "num_attention_heads" in config and "joint_attention_dim" in config:
        return config["num_attention_heads"] * config["attention_head_dim"]
    return None


FEW_STEP_LORA_ENV = "CNET_FEW_STEP_LORA"


def few_step_settings(family: Family, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The few-step mode (opt-in; it changes the image): the family's few-step LoRA (CNET_FEW_STEP_LORA overrides
    it) added to the request's LoRAs, its sampler, steps and guidance (SD: LCM, 4 steps, guidance 1; FLUX.1:
    flow Euler, 8 steps, 3.5), where the settings do not already say otherwise (steps and guidance the caller set
    are kept). ValueError for a family without one."""

    from common.env import env_text

    from .request import LoraRef

    configured = env_text(FEW_STEP_LORA_ENV)
    lora = configured or family.few_step_lora
    if not lora:
        raise ValueError(f"few-step mode has no LoRA for {family.label}: set {FEW_STEP_LORA_ENV} to one")
    origin = f"the server's {FEW_STEP_LORA_ENV}" if configured else f"few-step mode's LoRA for {family.label}"
    out = dict(settings)
    out["loras"] = [*list(out.get("loras") or []), LoraRef(lora, 1.0, origin=origin)]
    if out.get("scheduler") in (None, "default", family.default_scheduler):
        out["scheduler"] = family.few_step_scheduler
    out.setdefault("num_inference_steps", family.few_steps)
    out.setdefault("guidance_scale", family.few_step_guidance)
    return out


def pipeline_class(family: Family, mode: str, union: bool, controlled: bool = True) -> str:
    """The diffusers pipeline class that runs `mode` on this family (with a ControlNet-Union model when `union`;
    without any ControlNet when not `controlled`, for a family that otherwise takes them)."""
    table = family.union_pipelines if union else family.pipelines
    if not controlled and family.takes_controlnets:
        table = family.plain_pipelines
        if mode not in table:
            raise ValueError(f"{family.label} has no {mode} pipeline without a ControlNet")
    if mode not in table:
        what = " for ControlNet-Union models" if union else " for ControlNets" if family.takes_controlnets else ""
        raise ValueError(f"{family.label} has no {mode} pipeline{what}")
    return table[mode]
