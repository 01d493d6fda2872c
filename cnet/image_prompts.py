"""Image prompts: reference pictures that steer what the image looks like (IP-Adapter), beside the maps that steer
where things go.

Each reference is one IP-Adapter slot of diffusers' `load_ip_adapter` (the same weights loaded once per reference),
so each has its own scale, its own InstantStyle preset (the adapter active only in the blocks that carry style, or
layout) and its own mask (diffusers' `ip_adapter_masks`). The CLIP image encoder is loaded once per engine and
handed to every pipeline it builds; the adapter layers stay on the shared U-Net until a run asks for another set (or
none: `unload_ip_adapter` restores the plain attention, so the base gives its own pixels again).

This module declares the reference's fields (cnet/params.py) and where a family's adapter lives; the engine calls
`ImageAdapters.apply` under its run lock.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image

from .params import Param, RequestError, declared

IP_ADAPTER_ENV = "CNET_IP_ADAPTER"
IP_ADAPTER_REPO = "h94/IP-Adapter"  # the IP-Adapter authors' weights for SD 1.5 and SDXL
IP_PRESETS = ("full", "style", "composition", "style_and_composition")


@dataclass
class ImagePrompt:
    """One reference picture (an IP-Adapter image prompt), how strongly it steers, in which blocks, and where."""

    image: Image.Image = declared(None, Param(
        "a reference picture whose look the image takes (IP-Adapter image prompt; repeat for several)",
        type="image", name="reference", record=False, restore=False, per_unit=True))
    scale: float = declared(0.6, Param(  # diffusers' `set_ip_adapter_scale`; its guide's 0.6 keeps the prompt heard
        "how strongly the reference steers (IP-Adapter scale; 0: not at all)", type=float, name="reference_scale",
        high="max_strength", per_unit=True))
    preset: str = declared("full", Param(
        "full (everything) | style (InstantStyle: colours, materials, mood only) | composition (its layout only) | "
        "style_and_composition", choices=IP_PRESETS, name="reference_preset", per_unit=True))
    mask: Image.Image | None = declared(None, Param(
        "where the reference applies (white; not given: everywhere), fitted to the output like the maps",
        type="image", name="reference_mask", optional=True, record=False, restore=False, per_unit=True))


def check_image_prompt(i: int, prompt: Any, limits: Any) -> None:
    """RequestError naming `image_prompts[i]` and the value unless it is a usable reference."""
    from .params import check_side, check_value, declarations

    where = f"image_prompts[{i}]"
    if not isinstance(prompt, ImagePrompt):
        raise RequestError(f"{where}={type(prompt).__name__} must be an ImagePrompt")
    if not isinstance(prompt.image, Image.Image):
        raise RequestError(f"{where}.image={type(prompt.image).__name__} must be a PIL image (the reference)")
    if prompt.mask is not None and not isinstance(prompt.mask, Image.Image):
        raise RequestError(f"{where}.mask={type(prompt.mask).__name__} must be a PIL image or not given")
    check_side(f"{where}.image", prompt.image, limits)
    if prompt.mask is not None:
        check_side(f"{where}.mask", prompt.mask, limits)
    for item in declarations(ImagePrompt):
        if item.param.type != "image":
            check_value(f"{where}.{item.field}", getattr(prompt, item.field), item.param, limits)


@dataclass(frozen=True)
class AdapterLocation:
    """Where an IP-Adapter's weights are: a Hub repository or a local folder, the weight file inside it, and its
    image encoder's folder (diffusers' layout: `image_encoder` beside the weight file)."""

    source: Any  # common.models.ModelSource of the repository or folder
    weight: str  # e.g. "models/ip-adapter_sd15.safetensors"

    @property
    def subfolder(self) -> str:
        return str(PurePosixPath(self.weight).parent).removeprefix(".")

    @property
    def weight_name(self) -> str:
        return PurePosixPath(self.weight).name

    @property
    def spec(self) -> str:
        """The reference recorded in metadata and accepted back: a file path, or repository/path/to/weights."""
        if self.source.kind == "hub":
            return f"{self.source.location}/{self.weight}"
        return str(Path(self.source.location, self.weight))


def adapter_location(spec: Any, family: Any) -> AdapterLocation:
    """The IP-Adapter a request names (`ip_adapter`): a weights file (its `image_encoder` folder beside it), a
    folder or Hub repository laid out as the authors' (the family's file inside it), `owner/name/path/file`, or
    None: CNET_IP_ADAPTER, else the family's (`h94/IP-Adapter`). RequestError for a family without one."""
    from common.env import env_text
    from common.models import ModelSource, parse_hub_id, parse_model_source

    if not family.ip_adapter_weight:
        raise RequestError(f"image_prompts: the studio has no IP-Adapter for {family.label} bases yet (SD 1.x and "
                           "SDXL have one): remove the reference pictures or choose another base")
    spec = spec or env_text(IP_ADAPTER_ENV) or f"{IP_ADAPTER_REPO}/{family.ip_adapter_weight}"
    if isinstance(spec, ModelSource):
        return AdapterLocation(spec, family.ip_adapter_weight)
    text = str(spec).strip()
    local = Path(text).expanduser()
    if local.is_file():
        return AdapterLocation(ModelSource(str(local.parent.resolve()), "folder"), local.name)
    parts = text.split("/")
    if not local.exists() and len(parts) > 2 and not text.startswith(("/", ".", "~")):
        return AdapterLocation(parse_hub_id("/".join(parts[:2]), what="ip_adapter"), "/".join(parts[2:]))
    return AdapterLocation(parse_model_source(text, what="ip_adapter"), family.ip_adapter_weight)


def download_hint(location: AdapterLocation) -> str:
    """How to get an IP-Adapter from the Hub: only its weights file and image encoder (the authors' repository holds
    many gigabytes of others)."""
    folder = f"{location.subfolder}/" if location.subfolder else ""
    return (f"Download only its two parts with `hf download {location.source.location} --include "
            f"\"{location.weight}\" \"{folder}image_encoder/*\"`, or point {IP_ADAPTER_ENV} at a local copy.")


def describe_adapter(location: AdapterLocation) -> dict[str, Any]:
    """What metadata records about an IP-Adapter: its reference (accepted back by `adapter_location`) and its
    revision (the repository's commit, or the weights file's hash)."""
    from common.models import ModelSource, describe_source

    if location.source.kind == "hub":
        return {"model": location.spec, "revision": describe_source(location.source)["revision"]}
    return describe_source(ModelSource(location.spec, "file"))


def preset_scales(preset: str, scale: float, family: Any) -> Any:
    """`set_ip_adapter_scale`'s configuration for one reference: its scale everywhere ("full"), or the family's
    InstantStyle recipe (only the blocks that carry style and/or layout) at that scale."""
    if preset == "full":
        return float(scale)
    recipe = family.ip_presets.get(preset)
    if recipe is None:
        raise RequestError(f"reference_preset={preset!r} has no recipe for {family.label}: use 'full'")
    return _scaled(copy.deepcopy(recipe), float(scale))


def _scaled(recipe: Any, scale: float) -> Any:
    if isinstance(recipe, dict):
        return {key: _scaled(value, scale) for key, value in recipe.items()}
    if isinstance(recipe, list):
        return [_scaled(value, scale) for value in recipe]
    return recipe * scale


class ImageAdapters:
    """The IP-Adapter slots loaded into one engine's shared U-Net, and its shared image encoder."""

    def __init__(self) -> None:
        self.loaded: tuple[str, int] | None = None  # (the adapter's spec, how many slots)
        self.encoder: Any = None  # CLIPVisionModelWithProjection, kept across pipelines
        self.encoder_of: str | None = None  # the adapter whose image encoder it is
        self.feature_extractor: Any = None

    def components(self) -> dict[str, Any]:
        """What a new pipeline is built with so the encoder is never loaded twice."""
        return {"image_encoder": self.encoder, "feature_extractor": self.feature_extractor} if self.encoder else {}

    def apply(self, pipe: Any, prompts: list[ImagePrompt], location: AdapterLocation | None, family: Any,
              size: tuple[int, int]) -> dict[str, Any]:
        """Load (or keep, or unload) the slots `prompts` need into `pipe`, set each one's scale and preset, and
        return the pipeline's arguments: the references and, where any has a mask, the masks."""
        if not prompts:
            if self.loaded is not None:
                pipe.unload_ip_adapter()
                self.loaded = None
            return {}
        wanted = (location.spec, len(prompts))
        if wanted != self.loaded:
            self._load(pipe, location, len(prompts))
            self.loaded = wanted
        try:
            pipe.set_ip_adapter_scale([preset_scales(p.preset, p.scale, family) for p in prompts])
        except ValueError as err:  # a recipe's block holds another number of attention layers in this U-Net
            presets = sorted({p.preset for p in prompts} - {"full"})
            raise RequestError(f"reference_preset={presets}: the recipe does not fit this U-Net ({err}); use "
                               "'full'") from None
        _check_scales_reach(pipe, prompts)
        arguments: dict[str, Any] = {"ip_adapter_image": [p.image.convert("RGB") for p in prompts]}
        if any(p.mask is not None for p in prompts):
            from diffusers.image_processor import IPAdapterMaskProcessor

            from .edit import mask_channel

            processor = IPAdapterMaskProcessor()
            arguments["cross_attention_kwargs"] = {"ip_adapter_masks": [
                None if p.mask is None else processor.preprocess([mask_channel(p.mask)], height=size[1],
                                                                 width=size[0]) for p in prompts]}
        return arguments

    def _load(self, pipe: Any, location: AdapterLocation, count: int) -> None:
        """Replace the loaded slots by `count` slots of `location`'s adapter; its image encoder is loaded only when
        the engine does not hold that adapter's already."""
        from common.models import ModelUnavailableError, load_with_hub_fallback

        if self.loaded is not None:
            pipe.unload_ip_adapter()
            self.loaded = None
        if self.encoder_of != location.spec:
            self.encoder = self.encoder_of = None
        pipe.image_encoder = self.encoder  # diffusers loads the encoder only into a pipeline that has none

        def load(where: str, **kwargs: Any) -> None:
            pipe.load_ip_adapter(where, subfolder=[location.subfolder] * count,
                                 weight_name=[location.weight_name] * count, **kwargs)

        try:
            load_with_hub_fallback(load, location.source, env_var=IP_ADAPTER_ENV)
        except ModelUnavailableError:
            raise ModelUnavailableError(f"The IP-Adapter {location.spec!r} (for the reference pictures) is not on this "
                                        f"machine and the Hub is unreachable. {download_hint(location)}") from None
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise RequestError(f"ip_adapter: {location.spec!r} is not an IP-Adapter for this base (with its image "
                               f"encoder in an 'image_encoder' folder beside it): {str(err)[:300]}") from None
        self.encoder, self.encoder_of = pipe.image_encoder, location.spec
        self.feature_extractor = pipe.feature_extractor


def _check_scales_reach(pipe: Any, prompts: list[ImagePrompt]) -> None:
    """A preset naming blocks this U-Net does not have would leave its reference silently off (diffusers ignores
    them): refuse it by name instead."""
    scales = [processor.scale for processor in pipe.unet.attn_processors.values() if hasattr(processor, "to_k_ip")]
    for i, prompt in enumerate(prompts):
        if prompt.scale > 0 and not any(_nonzero(slot[i]) for slot in scales):
            raise RequestError(f"image_prompts[{i}].preset={prompt.preset!r} names no attention block of this "
                               "U-Net, so the reference would do nothing: use 'full'")


def _nonzero(scale: Any) -> bool:
    return any(s != 0 for s in scale) if isinstance(scale, list) else scale != 0
