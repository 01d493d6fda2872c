"""The generation engine: Stable Diffusion + ControlNet(s) through diffusers, with nothing hidden added.

The base model (VAE, text encoder, tokenizer, U-Net) is loaded once and shared by every pipeline this engine builds;
ControlNets are loaded on demand into a small cache. Building a `StableDiffusionControlNetPipeline` from modules
already in memory copies nothing, so switching or combining ControlNets never reloads the base.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image

from common.cache import LRUCache, free_accelerator_memory
from common.env import choice_or_env, env_flag, env_text
from common.models import (
    ModelSource,
    ModelUnavailableError,
    describe_source,
    hub_is_offline,
    hub_snapshot,
    load_with_hub_fallback,
    parse_model_source,
    pick_device,
    pick_dtype,
)

from .captioner import Captioner
from .compiled import ShapeBuckets, compile_forward, set_qkv_fused
from .compiled import configure as configure_compile
from .control_mode import install_control_modes, set_unit_outputs
from .families import (
    FAMILIES,
    Family,
    base_default_side,
    base_family,
    check_fits,
    family_of,
    is_union,
    pipeline_class,
)
from .fastpath import skip_inactive_controlnet
from .image_prompts import ImageAdapters, adapter_location
from .kinds import BASE_MODEL_ENV, DEFAULT_BASE_MODEL, KINDS, base_model_source
from .light_controlnet import light_file
from .placement import card_gigabytes, memory_plan_mode, place, plan_base
from .regions import fitted_mask, mask_tensor
from .request import (
    DEFAULT_LIMITS,
    MAX_SEED,
    ControlUnit,
    GenerationRequest,
    Limits,
    LoraRef,
    PromptMode,
    RequestError,
    resolve_prompt,
    size_refused,
)
from .resize import fit
from .result import GenerationResult

log = logging.getLogger("cnet.engine")

# Request mode -> the diffusers pipeline that runs it, per model family (cnet/families.py); all share the engine's
# loaded base and ControlNets.
PIPELINE_CLASSES = FAMILIES["sd15"].pipelines

# Images with a side above this are encoded and decoded tile by tile (diffusers' VAE tiling) unless asked always.
AUTO_TILING_SIDE = 1024

# name -> (diffusers class, extra config); built from the base model's own scheduler config.
SCHEDULER_CLASSES: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),  # the paper's sampler
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {}),
    "dpmpp_2m_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "lcm": ("LCMScheduler", {}),  # few-step mode, with an LCM-LoRA
    "tcd": ("TCDScheduler", {}),  # few-step mode, with a TCD or Hyper-SD LoRA
    "flow_euler": ("FlowMatchEulerDiscreteScheduler", {}),  # flow matching: FLUX.1, SD3.5 (their bases' own)
}

ProgressFn = Callable[[int, int], None]
StopFn = Callable[[], bool]


class Fitted(NamedTuple):
    """A request's output size, and its maps, picture, mask and region masks fitted to it."""

    width: int
    height: int
    maps: list[Image.Image]
    picture: Image.Image | None
    mask: Image.Image | None
    unit_masks: list[Image.Image | None]  # each unit's region mask (None: everywhere)
    reference_masks: list[Image.Image | None]  # each reference picture's


@dataclass
class RunPlan:
    """A run, planned: everything checked and made before the engine's lock (size, maps, the picture and its
    masks, the ControlNets' conditions, the prompt, the seeds, the pipeline's image inputs), so the locked part
    only prepares the pipeline, denoises and decodes."""

    request: GenerationRequest
    width: int
    height: int
    maps: list[Image.Image]  # as shown and saved
    conditions: list[Any]  # as the ControlNets read them (the inpaint kind's is a tensor)
    picture: Image.Image | None
    mask: Image.Image | None
    masks: Any  # an inpaint's masks (cnet.edit.Masks): for the pipeline, and for the paste-back
    prompt: str  # the text sent
    caption: str | None  # auto mode's caption
    seeds: list[int]  # one per image
    total: int  # the steps the progress counts (an edit runs the last denoise x steps)
    inputs: dict[str, Any]  # the pipeline's image arguments
    output_type: str
    unit_masks: list[Image.Image | None] = field(default_factory=list)  # each unit's region mask, fitted
    reference_masks: list[Image.Image | None] = field(default_factory=list)  # each reference's mask, fitted


class TinyVaeUnavailable(ModelUnavailableError):
    """The tiny autoencoder (TAESD) of fast decode is not on this machine and cannot be fetched now."""


class GenerationCancelled(RuntimeError):
    """Raised when `should_stop()` answered True; the run ends after the current denoising step."""


class GenerationFailed(RuntimeError):
    """The run could not produce valid images (out of memory, NaN); the message says what to try."""


# "sequential" (diffusers' layer-by-layer offload) is left out: with transformers 5's CLIP text encoder its
# accelerate hooks fail on re-entry in our tests, and model offload already fits SD1.5 in 4 GB.
OFFLOAD_MODES = ("none", "model")


def _memory_format(channels_last: bool) -> Any:
    import torch

    return torch.channels_last if channels_last else torch.contiguous_format


def is_out_of_memory(err: BaseException) -> bool:
    """True for every way running out of memory shows up: CUDA's `torch.OutOfMemoryError`, the CPU allocator's
    plain RuntimeError ("DefaultCPUAllocator: can't allocate memory"), mps', and Python's MemoryError."""
    import torch

    if isinstance(err, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text
                                              or "defaultcpuallocator" in text)


def make_scheduler(name: str, base_config: Any) -> Any:
    """A fresh scheduler of kind `name` configured like the base model's (fresh per run: schedulers keep state)."""
    import diffusers

    if name not in SCHEDULER_CLASSES:
        raise RequestError(f"scheduler={name!r} is not one of {list(SCHEDULER_CLASSES)}")
    class_name, extra = SCHEDULER_CLASSES[name]
    return getattr(diffusers, class_name).from_config(base_config, **extra)


@dataclass(frozen=True)
class EngineOptions:
    """How an engine runs, beside its base model (each None: the CNET_* setting, else automatic).

    Fields:
        device / dtype: override the automatic choice (CUDA fp16, mps fp16, CPU fp32).
        caption_model: BLIP model for the `auto` prompt mode (default: CNET_CAPTION_MODEL or BLIP base).
        single_file_config: the diffusers pipeline folder or Hub id describing a single-file base checkpoint
            (CNET_SINGLE_FILE_CONFIG).
        controlnet_config: the ControlNet folder or Hub id describing single-file ControlNets
            (CNET_CONTROLNET_CONFIG; default: single_file_config, as before they were separate).
        safety_checker: load and run the base model's safety checker when it has one.
        max_cached_controlnets: ControlNets kept in memory at once (least recently used ones are dropped).
        skip_inactive_controlnet: do not run a ControlNet on steps where its scale is 0 (outside control start/end);
            the output is identical (see cnet/fastpath.py).
        channels_last: NHWC memory format for the U-Net, ControlNets and VAE (faster convolutions on GPUs, and on
            a CPU in bfloat16; default there).
        compile: `torch.compile` the U-Net, ControlNets and VAE decoder (CNET_COMPILE=1; cnet/compiled.py): each
            new shape pays a compile on first use, or at `warm_up`.
        compile_buckets: the sizes and batches to compile (CNET_COMPILE_SIZES / CNET_COMPILE_BATCHES); other
            shapes run uncompiled. None: every shape is compiled when first seen.
        vae_tiling: encode and decode tile by tile always (CNET_VAE_TILING=1); by default only images with a side
            over 1024 px are tiled (an upscale to 2048 px), where the whole-image VAE is the memory peak.
        offload: the low-VRAM mode (CNET_OFFLOAD): "model" keeps weights in CPU memory and moves one whole model
            at a time to the GPU while it runs (diffusers' `enable_model_cpu_offload`), and decodes one image at a
            time. SD1.5 + one ControlNet in fp16 then holds at most ~2.4 GB of weights on the GPU (U-Net +
            ControlNet) instead of ~2.9 GB, so a 4 GB card generates at 512x512. "none" (default) keeps
            everything on the device.
        memory_plan: "auto" (CNET_MEMORY_PLAN): plan each part's place for the card found (cnet/placement.py:
            text encoders offloaded, the denoiser quantised to int8 or NF4, offloaded last), so FLUX.1-dev fits a
            12-24 GB card and SDXL an 8 GB one; `memory_status` says what was chosen. "none" (default).
    """

    device: str | None = None
    dtype: str | None = None
    caption_model: str | None = None
    single_file_config: str | None = None
    controlnet_config: str | None = None
    safety_checker: bool = False
    max_cached_controlnets: int = 4
    skip_inactive_controlnet: bool = True
    channels_last: bool | None = None
    compile: bool | None = None
    compile_buckets: ShapeBuckets | None = None
    vae_tiling: bool | None = None
    offload: str | None = None
    memory_plan: str | None = None


class Engine:
    """Loads models lazily and turns `GenerationRequest`s into `GenerationResult`s.

    `base_model`: Hub id, diffusers folder or single-file checkpoint (default: CNET_BASE_MODEL or SD1.5). How it
    runs is an `EngineOptions`, given whole (`options=`) or field by field as keywords (`Engine(path,
    device="cpu")`); an unknown keyword is a TypeError naming it.
    """

    def __init__(self, base_model: str | None = None, options: EngineOptions | None = None, **overrides: Any
                 ) -> None:
        opts = replace(options or EngineOptions(), **overrides)
        device, dtype, compile = opts.device, opts.dtype, opts.compile
        self.base_source = parse_model_source(base_model or base_model_source(), what="base_model")
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, dtype)
        self.single_file_config = opts.single_file_config or env_text("CNET_SINGLE_FILE_CONFIG")
        self.controlnet_config = opts.controlnet_config or env_text("CNET_CONTROLNET_CONFIG")
        self.safety_checker = opts.safety_checker
        self.max_cached_controlnets = max(1, opts.max_cached_controlnets)
        self.skip_inactive_controlnet = opts.skip_inactive_controlnet
        on_gpu = self.device.startswith("cuda")
        # Channels-last: on CUDA, and on a CPU in bfloat16 (oneDNN's AMX convolutions skip the layout reorders: a
        # live frame 1.3x faster, bench/RESULTS.md); in float32 on a CPU it measured slower, so off there.
        default_layout = on_gpu or (self.device == "cpu" and str(self.dtype) == "torch.bfloat16")
        self.channels_last = env_flag("CNET_CHANNELS_LAST", default_layout) if opts.channels_last is None \
            else opts.channels_last
        self.compile = env_flag("CNET_COMPILE") if compile is None else compile
        self.compile_buckets = opts.compile_buckets or (ShapeBuckets.from_env() if self.compile else None)
        self.vae_tiling = env_flag("CNET_VAE_TILING") if opts.vae_tiling is None else opts.vae_tiling
        self.offload = choice_or_env(opts.offload, "offload", "CNET_OFFLOAD", OFFLOAD_MODES, "none")
        self.memory_plan = memory_plan_mode(opts.memory_plan)
        self.memory_status = ""  # the applied plan's one line (cnet/memory.py `MemoryPlan.status_line`)
        if self.memory_plan != "none" and self.offload != "none":
            raise ValueError(f"memory_plan={self.memory_plan!r} cannot be combined with offload={self.offload!r}: the "
                             "plan decides what is offloaded; choose one")
        if self.offload != "none" and self.compile:
            raise ValueError(f"compile=True cannot be combined with offload={self.offload!r}: compiled models must "
                             "stay on the device; choose one (compile for speed, offload for small GPUs)")
        self.captioner = Captioner(opts.caption_model, device=self.device,
                                   dtype=self.dtype if self.device != "cpu" else None)
        self._base: dict[str, Any] | None = None
        self.family: Family = FAMILIES["sd15"]  # read from the base's config when it loads (load_base)
        self._planned_family: Family | None = None  # read from its config before (planned_family)
        self._loras: tuple[tuple[str, float], ...] = ()  # (source, weight) applied to the base now
        self._embeddings: tuple[str, ...] = ()  # textual-inversion sources loaded now
        self._controlnets = LRUCache(self.max_cached_controlnets)
        self._tiny_vae: Any = None  # TAESD, for fast_decode (loaded on first use)
        self._image_adapters = ImageAdapters()  # the IP-Adapter slots on the U-Net and the shared image encoder
        self._no_preview_vae = False  # the DiT previews' tiny autoencoder is not to be had: asked once
        self._load_lock = threading.RLock()
        self._run_lock = threading.Lock()

    # -- loading ---------------------------------------------------------------------------------------------------
    def load_base(self) -> dict[str, Any]:
        """Load the base pipeline's modules once; later calls return the very same objects."""
        with self._load_lock:
            if self._base is None:
                import diffusers

                family = self.planned_family()
                kwargs: dict[str, Any] = {"dtype": self.dtype}
                if not self.safety_checker and family.has_safety_checker:
                    kwargs.update(safety_checker=None, requires_safety_checker=False)
                vae = self._half_precision_vae(family)
                if vae is not None:
                    kwargs["vae"] = vae
                plan = self._plan_memory(family)
                quantization = plan.quantization_config() if plan is not None else None
                if quantization is not None:
                    kwargs["quantization_config"] = quantization
                pipe = self._load(getattr(diffusers, family.base_pipeline), self.base_source, BASE_MODEL_ENV,
                                  **kwargs)
                denoiser = getattr(pipe, family.denoiser)
                self.family = family_of(denoiser.config)  # the loaded weights have the last word
                if plan is not None:
                    place(pipe, plan, self.device)
                    self.memory_status = plan.status_line()
                elif self.offload == "none":
                    pipe.to(self.device)  # with offload the weights stay in CPU memory; hooks move them per call
                else:
                    pipe.vae.enable_slicing()  # decode one image at a time: the VAE decode is the activation peak
                for module in (denoiser, pipe.vae):
                    module.to(memory_format=_memory_format(self.channels_last))
                if self.compile:  # the denoiser and the decoder; the text encoder runs once per image
                    configure_compile(self.compile_buckets)
                    compile_forward(denoiser, family.denoiser, self.compile_buckets)
                    compile_forward(pipe.vae.decoder, "vae decoder", self.compile_buckets)
                    set_qkv_fused([denoiser, pipe.vae], True)
                self._base = dict(pipe.components)
            return self._base

    def _plan_memory(self, family: Family) -> Any:
        """The memory plan for this base on the card found (cnet/placement.py), or None: no plan asked, no card to
        plan for (the CPU), or a base whose configs are not on this machine (a single file)."""
        if self.memory_plan == "none":
            return None
        card = card_gigabytes(self.device)
        folder = self._config_folder()
        if card is None or folder is None:
            log.info("memory plan: %s", "no card to plan for" if card is None else "the base's configs are not here")
            return None
        half = str(self.dtype).removeprefix("torch.")
        return plan_base(folder, family, f"{family.short_label} ({self.base_source.spec})", card, half)

    def _config_folder(self) -> str | None:
        """The base's pipeline folder with its configs: a local folder, or the Hub snapshot of its JSON files."""
        if self.base_source.kind == "folder":
            return self.base_source.location
        if self.base_source.kind != "hub":
            return None
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(self.base_source.location, revision=self.base_source.revision,
                                     allow_patterns=["*.json"], local_files_only=hub_is_offline())
        except Exception as err:  # noqa: BLE001 - offline or unreachable: the run goes on without a plan
            log.warning("memory plan: the configs of %s could not be read (%s)", self.base_source.spec, err)
            return None

    def load_tiny_vae(self) -> Any:
        """The base family's tiny autoencoder (TAESD; CNET_TINY_VAE overrides it), loaded once, for `fast_decode`."""
        with self._load_lock:
            if self._tiny_vae is None:
                from diffusers import AutoencoderTiny

                self.load_base()  # the family is the loaded base's
                spec = env_text("CNET_TINY_VAE") or self.family.tiny_vae
                if not spec:
                    raise RequestError(f"fast_decode: no tiny autoencoder is known for {self.family.label}; set "
                                       "CNET_TINY_VAE")
                try:
                    vae = self._load(AutoencoderTiny, parse_model_source(spec, what="CNET_TINY_VAE"),
                                     "CNET_TINY_VAE", dtype=self.dtype)
                except ModelUnavailableError as err:  # told apart from the other models a run may miss
                    raise TinyVaeUnavailable(str(err)) from None
                if self.offload == "none":
                    vae.to(self.device)
                self._tiny_vae = vae.to(memory_format=_memory_format(self.channels_last)).eval()
            return self._tiny_vae

    def _half_precision_vae(self, family: Family) -> Any:
        """In fp16, the family's fp16-safe VAE (CNET_HALF_VAE overrides it; "none": the base's own), when it can
        be had; else None, and the base's VAE is used (diffusers decodes it in fp32 where its config asks)."""
        import torch
        from diffusers import AutoencoderKL

        spec = env_text("CNET_HALF_VAE") or family.half_precision_vae
        if self.dtype != torch.float16 or not spec or spec.lower() == "none":
            return None
        try:
            return self._load(AutoencoderKL, parse_model_source(spec, what="CNET_HALF_VAE"), "CNET_HALF_VAE",
                              dtype=self.dtype)
        except ModelUnavailableError as err:
            log.warning("using the base model's own VAE in fp16 (decoded in fp32 where it asks): %s", err)
            return None

    def planned_family(self) -> Family:
        """The base's family: the loaded denoiser's, else read from its config once, before any weight
        (cnet/families.py), so a run is planned for it (sizes, arguments); a family the studio does not generate
        with is refused by name here, before anything loads."""
        if self._base is not None:
            return self.family
        if self._planned_family is None:
            try:
                family = base_family(self.base_source, self.single_file_config)
            except ValueError as err:
                raise ModelUnavailableError(str(err)) from None
            family.check_generates(f"base_model={self.base_source.spec!r}")
            self._planned_family = family
        return self._planned_family

    @property
    def denoiser(self) -> Any:
        """The loaded base's denoising model: its U-Net, or a DiT's transformer."""
        return self.load_base()[self.family.denoiser]

    def load_controlnet(self, spec: str | ModelSource, env_var: str | None = None) -> Any:
        """Load (or fetch from the cache) the ControlNet at `spec`, on this engine's device and dtype."""
        with self._load_lock:
            return self._controlnets.get(spec, lambda: self._build_controlnet(spec, env_var))

    def _build_controlnet(self, spec: str | ModelSource, env_var: str | None) -> Any:
        import diffusers

        source = parse_model_source(spec, what="controlnet")
        base_config = self.denoiser.config
        light = light_file(source.location) if source.kind != "hub" else None
        if light is not None:  # trained weights alone: rebuilt on this base (cnet/light_controlnet.py)
            model = self._light_controlnet(light, source)
        else:
            cls = diffusers.ControlNetModel
            if source.kind != "file":  # its config first: another family's ControlNet is refused before its weights
                config = load_with_hub_fallback(diffusers.ControlNetModel.load_config, source, env_var=env_var)
                check_fits(config, base_config, source.spec, self.base_source.spec)
                cls = getattr(diffusers, config.get("_class_name", "ControlNetModel"), cls)
                if not issubclass(cls, diffusers.ModelMixin):
                    cls = diffusers.ControlNetModel
            model = self._load(cls, source, env_var, dtype=self.dtype).eval()
        check_fits(model.config, base_config, source.spec, self.base_source.spec)
        if self.offload == "none":
            model.to(self.device)
        model.to(memory_format=_memory_format(self.channels_last))
        if self.compile:  # the model's own forward; the wrappers below stay outside the graph (cnet/compiled.py)
            compile_forward(model, f"controlnet {source.spec}", self.compile_buckets)
            set_qkv_fused([model], True)
        # A Union model takes its scales as a list (one per condition): it is always run, as diffusers does.
        if self.skip_inactive_controlnet and self.family.skip_inactive and not is_union(model):
            skip_inactive_controlnet(model)
        # After the skip, so it sees every call (skipped ones too): a model serving several units takes their modes
        # and masks in turn (cnet/control_mode.py; a DiT family's modes are always balanced).
        install_control_modes(model)
        return model

    def _light_controlnet(self, path: Path, source: ModelSource) -> Any:
        """A light ControlNet's file made whole: its frozen weights from this base's denoiser, or from the
        ControlNet its training started from (loaded as any ControlNet), in this engine's precision."""
        from .light_controlnet import build_light_controlnet, light_class, read_light

        metadata = read_light(path)[1]
        made_from = metadata.get("made_from")
        if made_from:  # a full ControlNet (never another light file: no loops), read for its weights, not cached
            if light_file(made_from) is not None:
                raise ValueError(f"controlnet={source.spec!r}: the ControlNet it was made from ({made_from}) must be "
                                 "a full one, not another light file")
            frozen_source = self._load(light_class(path, metadata), parse_model_source(made_from, what="controlnet"),
                                       None)
        else:
            frozen_source = self.denoiser
            if getattr(frozen_source, "hf_quantizer", None) is not None:  # int8/NF4 weights are not the copy's
                raise ValueError(f"controlnet={source.spec!r} is a light ControlNet, rebuilt from the base's weights, "
                                 "which are quantised here (CNET_MEMORY_PLAN): load it on a base in 16 bits, or use "
                                 "the run's full result folder")
        try:
            return build_light_controlnet(path, frozen_source.state_dict()).to(self.dtype).eval()
        except ValueError as err:
            raise ValueError(f"{err}; this base is {self.base_source.spec!r}") from None

    def _load(self, cls: Any, source: ModelSource, env_var: str | None, **kwargs: Any) -> Any:
        if source.kind != "file":
            return load_with_hub_fallback(cls.from_pretrained, source, env_var=env_var, **kwargs)
        # Single files carry weights only; diffusers reads the architecture from a config folder or Hub repo: the
        # base's (a pipeline folder) and a ControlNet's (a ControlNet folder) are different ones.
        is_controlnet = "ControlNet" in cls.__name__
        config = (self.controlnet_config or self.single_file_config) if is_controlnet else self.single_file_config
        if config:
            kwargs["config"] = config
        from diffusers.loaders.single_file_utils import SingleFileComponentError

        try:
            return cls.from_single_file(source.location, local_files_only=hub_is_offline(), **kwargs)
        except (OSError, ValueError, SingleFileComponentError) as err:
            flag = "controlnet_config / --controlnet-config" if is_controlnet else \
                "single_file_config / --single-file-config"
            raise ModelUnavailableError(
                f"Could not load the single-file checkpoint {source.location!r}: {err}. Single files need their "
                "architecture config: keep the matching diffusers model cached (e.g. `hf download "
                f"{DEFAULT_BASE_MODEL} --include '*.json' '*.txt'`) or pass {flag} pointing at a diffusers "
                f"{'ControlNet' if is_controlnet else 'pipeline'} folder."
            ) from err

    def use_embeddings(self, pipe: Any, embeddings: list[str]) -> None:
        """Make `embeddings` (textual inversion) the ones the tokenizer(s) and text encoder(s) know: a new selection
        unloads the old tokens first. A file's token is its name (A1111's trigger word); an SDXL file holds one
        vector per encoder (`clip_l`, `clip_g`). Under the run lock."""
        wanted = tuple(embeddings)
        if wanted == self._embeddings:
            return
        pairs = [(pipe.tokenizer, pipe.text_encoder)]
        if getattr(pipe, "text_encoder_2", None) is not None:
            pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
        if self._embeddings:
            for tokenizer, encoder in pairs:
                pipe.unload_textual_inversion(tokenizer=tokenizer, text_encoder=encoder)
            self._embeddings = ()
        try:
            for i, spec in enumerate(wanted):
                self._load_embedding(pipe, parse_model_source(spec, what=f"embeddings[{i}]"), pairs)
        except BaseException:
            for tokenizer, encoder in pairs:  # never leave half a selection loaded
                pipe.unload_textual_inversion(tokenizer=tokenizer, text_encoder=encoder)
            raise
        self._embeddings = wanted

    def _load_embedding(self, pipe: Any, source: ModelSource, pairs: list[tuple[Any, Any]]) -> None:
        from pathlib import Path

        try:
            if source.kind == "file":
                token = Path(source.location).stem
                if len(pairs) == 1:
                    pipe.load_textual_inversion(source.location, token=token)
                    return
                from safetensors.torch import load_file

                vectors = load_file(source.location)
                for (tokenizer, encoder), key in zip(pairs, ("clip_l", "clip_g")):
                    if key not in vectors:
                        raise ValueError(f"an SDXL embedding holds 'clip_l' and 'clip_g', this one {sorted(vectors)}")
                    pipe.load_textual_inversion(vectors[key], token=token, tokenizer=tokenizer, text_encoder=encoder)
            else:
                pipe.load_textual_inversion(hub_snapshot(source) if source.kind == "hub" else source.location)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            if isinstance(err, ModelUnavailableError):
                raise
            raise RequestError(f"embeddings: {source.spec!r} is not a textual-inversion embedding for this "
                               f"{self.family.label} base: {str(err)[:300]}") from None

    def use_loras(self, pipe: Any, loras: list[LoraRef]) -> None:
        """Make `loras` (in order, at their weights) the ones applied to the shared base: unchanged ones stay
        loaded, a new selection unloads the old one first (diffusers' `unload_lora_weights` restores the original
        layers, so the base gives its own pixels again). Under the run lock."""
        wanted = tuple((lora.source, float(lora.weight)) for lora in loras)
        names = [lora.origin or f"loras[{i}]" for i, lora in enumerate(loras)]  # for errors
        if wanted == self._loras:
            return
        if [s for s, _ in wanted] != [s for s, _ in self._loras]:
            if self.compile:  # peft wraps to_q/to_k/to_v, which a fused layer would bypass
                set_qkv_fused([pipe.unet], not wanted)
            if self._loras:
                pipe.unload_lora_weights()
                self._loras = ()
            try:
                for i, (spec, _) in enumerate(wanted):
                    self._load_lora(pipe, parse_model_source(spec, what=names[i]), f"lora{i}", names[i])
            except BaseException:
                pipe.unload_lora_weights()  # never leave half a selection applied
                if self.compile:
                    set_qkv_fused([pipe.unet], True)
                raise
        if wanted:
            pipe.set_adapters([f"lora{i}" for i in range(len(wanted))], adapter_weights=[w for _, w in wanted])
        self._loras = wanted

    def _load_lora(self, pipe: Any, source: ModelSource, name: str, what: str = "loras") -> None:
        from pathlib import Path

        def load(location: str, **kwargs: Any) -> None:
            pipe.load_lora_weights(location, adapter_name=name, **kwargs)

        try:
            if source.kind == "file":  # diffusers reads a file by its folder and name (A1111/kohya keys converted)
                path = Path(source.location)
                load(str(path.parent), weight_name=path.name)
            else:  # a Hub repository is fetched (safetensors only) into the cache first, then read as a folder
                load(hub_snapshot(source) if source.kind == "hub" else source.location)
        except (OSError, ValueError, KeyError) as err:
            if isinstance(err, ModelUnavailableError):
                raise
            raise RequestError(f"{what}: {source.spec!r} is not a LoRA for this {self.family.label} base: "
                               f"{str(err)[:300]}") from None

    def controlnet_spec(self, unit: ControlUnit) -> tuple[str, str | None]:
        """The ControlNet reference a unit uses, and the env var that overrides it."""
        if unit.controlnet:
            return unit.controlnet, None
        kind = KINDS[unit.kind]
        try:
            return kind.controlnet_source(self.family.name), kind.env_var
        except ValueError as err:
            raise RequestError(str(err)) from None

    def pipeline(self, units: list[ControlUnit], scheduler: str = "default", mode: str = "txt2img",
                 fast_decode: bool = False, image_prompted: bool = False) -> Any:
        """The ControlNet pipeline for `mode` (the family's: cnet/families.py) over the shared base modules and the
        units' ControlNets; with `fast_decode`, the family's tiny autoencoder (TAESD) in place of the base's VAE.
        No unit with `image_prompted` (reference pictures steer the run alone): the family's plain pipeline."""
        import inspect

        import diffusers

        if mode not in PIPELINE_CLASSES:
            raise RequestError(f"mode={mode!r} is not one of {list(PIPELINE_CLASSES)}")
        base = self.load_base()
        self._check_units(units, image_prompted)
        nets = [self.load_controlnet(*self.controlnet_spec(u)) for u in units]
        union = any(is_union(net) for net in nets)
        if union and any(net is not nets[0] for net in nets):
            raise RequestError("a ControlNet-Union model takes every condition itself: give all units the same "
                               "Union model (each with its own kind), not a mix with other ControlNets")
        try:
            class_name = pipeline_class(self.family, mode, union, controlled=bool(nets))
        except ValueError as err:
            raise RequestError(f"{err}: choose another operation or base model") from None
        # The modules this pipeline takes (FLUX.1's img2img takes no image encoder, which its base pipeline holds).
        accepted = inspect.signature(getattr(diffusers, class_name).__init__).parameters
        shared = {**base, **self._image_adapters.components()}
        components = {k: v for k, v in shared.items() if k != "scheduler" and k in accepted}
        if self.family.has_safety_checker:
            components["requires_safety_checker"] = False
        if scheduler == "default":
            scheduler = self.family.default_scheduler
        if nets:
            components["controlnet"] = _controlnet_argument(self.family, nets, union)
        pipe = getattr(diffusers, class_name)(**components,
                                              scheduler=make_scheduler(scheduler, base["scheduler"].config))
        if fast_decode:  # set after construction, as diffusers' guide does: the pipeline reads its scale factor from
            pipe.vae = self.load_tiny_vae()  # the base VAE's config (TAESD's has no block_out_channels)
        # The hooks live on the shared modules: installing them for this pipeline first removes the previous
        # pipeline's, so ControlNets switched in or out are offloaded like the base.
        if self.offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        return pipe

    def _check_units(self, units: list[ControlUnit], image_prompted: bool = False) -> None:
        """A family that takes ControlNets needs a unit (or reference pictures, which steer a run alone); one that
        edits by itself (FLUX.1 Fill) takes none."""
        if self.family.takes_controlnets and not units and not image_prompted:
            raise RequestError(f"units=[]: give a control unit (a map); only a {FAMILIES['flux_fill'].label} base "
                               "runs without one")
        if units and not self.family.takes_controlnets:
            raise RequestError(f"units: a {self.family.label} base inpaints and outpaints by itself and takes no "
                               f"ControlNet: give no control units (the Edit tab and `cnet edit` give none for it)")

    def caption(self, image: Image.Image) -> str:
        """The BLIP caption used by the `auto` prompt mode."""
        return self.captioner(image)

    def warm_up(self, kinds: tuple[str, ...] = ("canny",), *, steps: int = 2, guidance: tuple[float, ...] = (9.0, 1.0),
                controlnet: str | None = None, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
        """Compile every shape of the compile buckets now, so no visitor waits for a compile: a short run per size,
        batch and guidance (9: the CFG batch; 1: the single batch of guidance 1) with a blank map of each kind.
        Returns the seconds and graphs compiled per shape. With the on-disk caches warm (cnet/compiled.py) a restart
        reads most of it back."""
        import time

        from .compiled import compile_count

        if not self.compile or self.compile_buckets is None:
            raise ValueError("warm_up needs compile=True and compile buckets (CNET_COMPILE=1 and CNET_COMPILE_SIZES, "
                             "e.g. 512x512,768x512)")
        report = []
        for width, height in self.compile_buckets.sizes:
            for batch in self.compile_buckets.batches:
                for scale in guidance:
                    started, graphs = time.perf_counter(), compile_count()
                    blank = Image.new("RGB", (width, height))
                    self.generate(GenerationRequest(units=[ControlUnit(blank, kind=k, controlnet=controlnet)
                                                           for k in kinds], seed=0,
                                                    width=width, height=height, num_images=batch,
                                                    num_inference_steps=steps, guidance_scale=scale))
                    report.append({"width": width, "height": height, "batch": batch, "guidance": scale,
                                   "seconds": round(time.perf_counter() - started, 2),
                                   "graphs_compiled": compile_count() - graphs})
                    if progress is not None:
                        progress(f"compiled {width}x{height}, batch {batch}, guidance {scale} in "
                                 f"{report[-1]['seconds']} s ({report[-1]['graphs_compiled']} graphs)")
        # From now on a run that would need a new graph (a LoRA, a prompt over 77 tokens, another base) runs
        # uncompiled instead of compiling while visitors wait.
        import torch

        torch.compiler.set_stance("eager_on_recompile")
        return report

    # -- generation ------------------------------------------------------------------------------------------------
    def generate(self, request: GenerationRequest, *, progress: ProgressFn | None = None,
                 should_stop: StopFn | None = None, limits: Limits = DEFAULT_LIMITS,
                 preview: Callable[[Image.Image, int], None] | None = None,
                 preview_every: int = 1) -> GenerationResult:
        """Run one request: plan it (`plan`: everything checked and made before the models are touched), then run
        the plan (`run`). `progress(step, total)` is called after each denoising step; when `should_stop()` returns
        True the run raises GenerationCancelled after the current step. `preview(image, step)` receives the first
        image as it forms (cnet/preview.py: the latents mapped to RGB, no VAE) every `preview_every` steps. An
        upscale larger than its tile size runs tile by tile (cnet/tiles.py), each tile a request of its own."""
        request = request.validated(limits)
        fitted = self._fit(request, limits)
        if fitted.picture is not None and request.tile_size is not None and max(
                fitted.width, fitted.height) > request.tile_size:
            from .tiles import generate_tiled

            return generate_tiled(self, request, fitted, progress, should_stop, limits)
        return self.run(self.plan(request, fitted), progress=progress, should_stop=should_stop, preview=preview,
                        preview_every=preview_every)

    def _fit(self, request: GenerationRequest, limits: Limits) -> Fitted:
        """The output size (as given, else the picture's or the first map's, a multiple of 8, within `limits`) and
        every map, the picture and its mask fitted to it by the request's resize mode (never silently stretched)."""
        maps = [u.image.convert("RGB") for u in request.units]
        picture = request.init_image.convert("RGB") if request.init_image is not None else None
        family = self.planned_family()
        if picture is None and not maps and not request.image_prompts:
            raise RequestError("units=[] and no init_image: give a map to generate from, or a picture to edit")
        if picture is None and not maps:  # reference pictures alone: the base's own size unless one is given
            side = base_default_side(self.base_source, family)
            sized_by, source = Image.new("L", (side, side)), f"{family.short_label} base's default size"
        else:
            sized_by, source = (picture, "picture (init_image)") if picture is not None else (maps[0],
                                                                                             "map (units[0])")
        multiple = family.size_multiple
        width = request.width or sized_by.width // multiple * multiple
        height = request.height or sized_by.height // multiple * multiple
        if not all(limits.min_side <= side <= limits.max_side for side in (width, height)):
            raise size_refused(source, sized_by.width, sized_by.height, limits)
        for name, side in (("width", width), ("height", height)):
            if side % multiple:
                raise RequestError(f"{name}={side}: {family.label} makes sides in multiples of {multiple} px")
        maps = [fit(m, width, height, request.resize_mode) for m in maps]
        mask = None
        if picture is not None:
            from .edit import mask_channel

            mask = mask_channel(request.mask) if request.mask is not None else None
            if mask is not None and mask.size != picture.size:
                mask = mask.resize(picture.size, Image.Resampling.NEAREST)  # same shape (checked): same geometry
            picture = fit(picture, width, height, request.resize_mode)
            mask = fit(mask, width, height, request.resize_mode) if mask is not None else None
        size = (width, height)
        return Fitted(width, height, maps, picture, mask,
                      [fitted_mask(u.mask, size, request.resize_mode) for u in request.units],
                      [fitted_mask(p.mask, size, request.resize_mode) for p in request.image_prompts])

    def plan(self, request: GenerationRequest, fitted: Fitted) -> RunPlan:
        """Everything a run needs besides the models: the caption (auto mode), the prompt sent, the seeds, the
        ControlNets' conditions (the inpaint kind's made from the picture and mask), and the pipeline's image inputs
        (text-to-image takes the maps as `image`; the editing pipelines take the picture as `image`, the maps as
        `control_image`, how much to redraw and, to inpaint, the mask)."""
        caption = None
        if request.prompt_mode is PromptMode.AUTO and request.caption is None:
            described = fitted.maps[0] if fitted.maps else fitted.picture or request.image_prompts[0].image
            caption = self.caption(request.source_image or described)
        seed = request.seed if request.seed is not None else secrets.randbelow(MAX_SEED + 1)
        total = request.num_inference_steps
        if fitted.picture is not None:  # diffusers runs only the last denoise x steps of an edit: the bar counts those
            total = max(1, min(int(total * request.denoise), total))
        maps, conditions = self._conditions(request, fitted)
        control = conditions[0] if len(conditions) == 1 else conditions
        inputs: dict[str, Any] = {self.planned_family().map_argument: control} if conditions else {}
        masks = None
        if fitted.picture is not None:
            inputs = {"image": fitted.picture, "control_image": control, "strength": float(request.denoise)}
        if not conditions:  # FLUX.1 Fill: the picture and the mask alone
            inputs.pop("control_image", None)
        if request.mode == "inpaint":
            from .edit import prepare_mask

            masks = prepare_mask(fitted.mask, fitted.picture.size, request.mask_blur)
            inputs["mask_image"] = masks.for_pipeline
            if request.inpaint_padding is not None:
                inputs["padding_mask_crop"] = request.inpaint_padding
        return RunPlan(request, fitted.width, fitted.height, maps, conditions, fitted.picture, fitted.mask, masks,
                       resolve_prompt(request, caption), caption if caption is not None else request.caption,
                       [seed + i for i in range(request.num_images)], total, inputs,
                       # diffusers pastes a cropped inpaint back onto the picture as PIL images only.
                       "pil" if "padding_mask_crop" in inputs else "np", fitted.unit_masks, fitted.reference_masks)

    def _conditions(self, request: GenerationRequest, fitted: Fitted) -> tuple[list[Any], list[Any]]:
        """(maps as shown, conditions as the ControlNets read them): the inpaint ControlNet reads the picture with
        the mask blanked, made here; every other kind reads its map."""
        needs_mask = [KINDS[u.kind].needs_mask if u.kind in KINDS else False for u in request.units]
        if not any(needs_mask):
            return fitted.maps, fitted.maps
        from .edit import inpaint_condition

        if request.mask is None:
            raise RequestError("kind='inpaint' needs a picture and a mask (an inpaint request)")
        made = [inpaint_condition(fitted.picture, fitted.mask, (fitted.width, fitted.height)) if flag else None
                for flag in needs_mask]
        return ([m[1] if m else image for m, image in zip(made, fitted.maps)],
                [m[0] if m else image for m, image in zip(made, fitted.maps)])

    def run(self, plan: RunPlan, *, progress: ProgressFn | None = None, should_stop: StopFn | None = None,
            preview: Callable[[Image.Image, int], None] | None = None, preview_every: int = 1) -> GenerationResult:
        """Run a plan under the engine's lock: the pipeline with its LoRAs, embeddings and control modes, the
        denoising (reported and stoppable after each step), the decode; then the images and their metadata."""
        import torch

        on_step_end = self._step_callback(plan, progress, should_stop, preview, preview_every)
        with self._run_lock:
            pipe, inputs, as_lists = self._ready_pipeline(plan, should_stop)
            request = plan.request  # with the family's defaults filled in (`_ready_pipeline`)
            try:
                if self._marks_steps:
                    torch.compiler.cudagraph_mark_step_begin()
                texts, encoding = self._texts(pipe, plan.prompt, request.negative_prompt)
                arguments = _call_arguments(pipe, dict(
                    **texts, **inputs, height=plan.height, width=plan.width,
                    num_inference_steps=request.num_inference_steps, guidance_scale=float(request.guidance_scale),
                    true_cfg_scale=float(request.true_cfg),
                    num_images_per_prompt=request.num_images, eta=float(request.eta),
                    # One CPU generator per image: each image is reproducible alone, on any device.
                    generator=[torch.Generator("cpu").manual_seed(s) for s in plan.seeds],
                    **_control_arguments(request, as_lists), guess_mode=request.guess_mode,
                    callback_on_step_end=on_step_end, callback_on_step_end_tensor_inputs=["latents"],
                    # Floats first, PIL after: lets us see NaNs that would otherwise arrive as black images.
                    output_type=plan.output_type,
                ))
                with self._reference_only(pipe, plan):
                    output = self._run_pipeline(pipe, arguments, request, plan.width, plan.height)
            except BaseException:
                free_accelerator_memory()  # a failed run must not starve the next one
                raise
        return self._result(plan, pipe, output, encoding)

    @property
    def _marks_steps(self) -> bool:
        """CUDA graphs (compile on a GPU): each denoising step replays the ControlNet's graph, whose outputs feed
        the U-Net's; marking each step's start tells inductor that the previous step's outputs may be overwritten.
        diffusers does this itself only for models compiled whole (OptimizedModule), and ours compile `forward`."""
        return bool(self.compile) and self.device.startswith("cuda")

    def _step_callback(self, plan: RunPlan, progress: ProgressFn | None, should_stop: StopFn | None,
                       preview: Callable[[Image.Image, int], None] | None, preview_every: int) -> Callable:
        """diffusers' `callback_on_step_end` for this run: previews, progress, and the stop check."""
        import torch

        marks = self._marks_steps

        def on_step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
            if marks:
                torch.compiler.cudagraph_mark_step_begin()
            if preview is not None and (step + 1) % max(1, preview_every) == 0 and "latents" in tensors:
                image = self._preview(pipe, tensors["latents"], plan)
                if image is not None:
                    preview(image, step + 1)
            if progress is not None:
                progress(step + 1, plan.total)
            if should_stop is not None and should_stop():
                raise GenerationCancelled(f"stopped after step {step + 1} of {plan.total}")
            return {}

        return on_step_end

    def _preview(self, pipe: Any, latents: Any, plan: RunPlan) -> Image.Image | None:
        """The first image as it forms (cnet/preview.py): the family's latent-to-RGB factors where they are fitted
        (SD, SDXL); else its tiny autoencoder's decode (FLUX.1, SD3.5: TAEF1 / TAESD3) when that is on this machine
        or reachable; else None (no preview; the bar still counts the steps)."""
        from .preview import latents_to_preview, tiny_vae_preview

        size = (plan.width, plan.height)
        if self.family.latent_rgb is not None:
            return latents_to_preview(latents, self.family.name, size)
        if self._tiny_vae is None and self._no_preview_vae:
            return None
        try:
            tiny = self.load_tiny_vae()
        except (ModelUnavailableError, ValueError) as err:  # not here, or a CNET_TINY_VAE that names nothing
            log.info("no live preview for %s: %s", self.family.label, err)
            self._no_preview_vae = True  # asked once per engine, not at every step
            return None
        return tiny_vae_preview(pipe, latents, tiny, size)

    def _ready_pipeline(self, plan: RunPlan, should_stop: StopFn | None) -> tuple[Any, dict[str, Any], bool]:
        """The pipeline for the plan, with the request's LoRAs, embeddings and control modes applied, its image
        inputs as that pipeline takes them (a Union model takes every condition with its control type), and whether
        the units' scales and start/end go as lists (a Union model's, except FLUX.1's with one condition)."""
        self.load_base()  # the family is the loaded base's: it fills in the sampler and guidance left to it
        request = plan.request = self.family.resolved(plan.request)
        pipe = self.pipeline(request.units, request.scheduler, request.mode, request.fast_decode,
                             image_prompted=bool(request.image_prompts))
        self.family.check_controls(request)  # a setting the family does not use is refused by name
        if should_stop is not None and should_stop():
            raise GenerationCancelled("stopped before the first step")
        self.use_loras(pipe, request.loras)
        self.use_embeddings(pipe, request.embeddings)
        inputs = {**plan.inputs, **self._image_prompt_arguments(pipe, plan)}
        net = getattr(pipe, "controlnet", None)
        nets = getattr(net, "nets", [net])
        union = net is not None and is_union(nets[0])
        as_lists = union
        if union:  # one model, every condition with its control type; the maps always as `control_image`
            if plan.picture is None:
                inputs.pop("image", None)
            modes = [_union_type(unit, self.family) for unit in request.units]
            single = self.family.union_as_multi and len(modes) == 1  # FLUX.1: one condition, one mode, unlisted
            inputs["control_image"] = plan.conditions[0] if single else list(plan.conditions)
            inputs["control_mode"] = modes[0] if single else modes
            as_lists = not single  # the scales and start/end as lists, one per condition
        if net is not None:  # each model's units: their control modes and region masks
            _set_unit_outputs(list(nets), plan, one_call=union and not hasattr(net, "nets"))
        # Per run: the VAE is shared, and tiling changes pixels slightly, so small images stay untiled.
        if self.vae_tiling or max(plan.width, plan.height) > AUTO_TILING_SIDE:
            pipe.vae.enable_tiling()
        else:
            pipe.vae.disable_tiling()
        return pipe, inputs, as_lists

    def _reference_only(self, pipe: Any, plan: RunPlan) -> Any:
        """The reference-only picture (cnet/reference.py) for this run, fitted to the output and encoded by the
        base's VAE; nothing without one. U-Net families only (refused by name for the others)."""
        import contextlib

        request = plan.request
        if request.reference_only is None:
            return contextlib.nullcontext()
        if self.family.denoiser != "unet":
            raise RequestError(f"reference_only: it works in a U-Net's self-attention; {self.family.label} has a "
                               "transformer: use a reference picture (image_prompts) where the family has an adapter")
        import torch
        from diffusers.image_processor import VaeImageProcessor

        from .reference import reference_only

        vae = self.load_base()["vae"]
        picture = fit(request.reference_only.convert("RGB"), plan.width, plan.height, request.resize_mode)
        pixels = VaeImageProcessor().preprocess(picture).to(vae.device, vae.dtype)
        with torch.no_grad():
            latents = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
        return reference_only(pipe, latents, request.reference_only_weight, request.reference_only_fidelity,
                              plan.seeds[0], cfg=request.guidance_scale > 1)

    def _image_prompt_arguments(self, pipe: Any, plan: RunPlan) -> dict[str, Any]:
        """The reference pictures' IP-Adapter slots loaded (or unloaded) for this run, and the pipeline's arguments
        for them (cnet/image_prompts.py), their masks fitted to the output as the maps are."""
        from dataclasses import replace as with_mask

        prompts = [with_mask(p, mask=m) for p, m in zip(plan.request.image_prompts, plan.reference_masks)]
        location = adapter_location(plan.request.ip_adapter, self.family) if prompts else None
        return self._image_adapters.apply(pipe, prompts, location, self.family, (plan.width, plan.height))

    def _result(self, plan: RunPlan, pipe: Any, output: Any, encoding: dict[str, Any]) -> GenerationResult:
        """The images (an inpaint's unmasked pixels pasted back when asked) and each one's metadata."""
        # The conversion diffusers itself applies for output_type="pil".
        images = pipe.numpy_to_pil(output.images) if plan.output_type == "np" else list(output.images)
        if plan.masks is not None and plan.request.keep_unmasked:
            from .edit import keep_unmasked

            images = keep_unmasked(images, plan.picture, plan.masks.for_composite)
        nsfw = getattr(output, "nsfw_content_detected", None) or [False] * len(images)
        common = self._metadata(plan.request, plan.prompt, plan.caption, plan.width, plan.height)
        common.update(encoding)
        if self.memory_status:  # where the memory plan put each part (CNET_MEMORY_PLAN=auto)
            common["memory_plan"] = self.memory_status
        metadata = [{**common, "seed": s, "image_index": i, "nsfw_content_detected": bool(flag)}
                    for i, (s, flag) in enumerate(zip(plan.seeds, nsfw))]
        inputs = {} if plan.picture is None else {"init": plan.picture}
        if plan.request.reference_only is not None:  # saved beside the image, as "<stem>-reference_only.png"
            inputs["reference_only"] = plan.request.reference_only.convert("RGB")
        if plan.mask is not None:
            inputs["mask"] = plan.mask
        return GenerationResult(images=list(images), condition_maps=plan.maps, metadata=metadata,
                                edit_inputs=inputs, unit_masks=plan.unit_masks,
                                references=[p.image.convert("RGB") for p in plan.request.image_prompts],
                                reference_masks=plan.reference_masks)

    def _texts(self, pipe: Any, prompt: str, negative_prompt: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The pipeline's text arguments, and what the metadata says about them. Plain prompts go as text (the
        pipeline encodes them, as a direct diffusers call does); weighted ones, `(word:1.2)`, and ones longer than
        a chunk go as compel's embeddings (cnet/prompts.py)."""
        from .prompts import encode_prompts, needs_compel, parse_weights

        parsed = {"prompt": parse_weights(prompt), "negative_prompt": parse_weights(negative_prompt)}
        plain = {name: "".join(t for t, _ in fragments) for name, fragments in parsed.items()}
        # The notation is never sent as text: "(red:1.0)" is "red" at weight 1.
        noted = {} if plain == {"prompt": prompt, "negative_prompt": negative_prompt} else {
            "prompt_weights": {name: [[t, round(w, 4)] for t, w in fragments] for name, fragments in parsed.items()}}
        if not self.family.weighted_prompts:  # T5 reads long prompts itself; weights would need its embeddings
            if noted:
                raise RequestError(f"prompt: {self.family.label} reads the prompt as plain text (T5, up to 512 "
                                   "tokens); A1111's (word:1.2) weights and escapes are not honoured for it: remove "
                                   "them")
            return plain, {}
        if not needs_compel(pipe.tokenizer, prompt, negative_prompt):
            return plain, noted
        embeddings = encode_prompts(pipe, prompt, negative_prompt, device=None,
                                    zero_empty_negative=bool(pipe.config.get("force_zeros_for_empty_prompt")))
        return embeddings.as_kwargs(), {"prompt_encoding": "compel", "prompt_chunks": embeddings.chunks, **noted}

    def _run_pipeline(self, pipe: Any, kwargs: dict[str, Any], request: GenerationRequest, width: int,
                      height: int) -> Any:
        """Call the pipeline; turn out-of-memory and NaN outputs into clear errors with a suggestion."""
        import numpy as np
        import torch

        # Every VAE decode is checked (whole or tile by tile, whatever the output type): a NaN would otherwise
        # arrive as a black image, and with output_type="pil" (inpainting a crop) nothing else would see it.
        finite: list[bool] = []
        hook = pipe.vae.decoder.register_forward_hook(
            lambda module, args, out: finite.append(bool(torch.isfinite(out).all())))
        try:
            # SD3's ControlNet pipeline samples the map's latents from torch's global generator, not the run's: seeded
            # from the run's seed inside a fork, a run is reproducible and the process's random state is untouched.
            with torch.random.fork_rng(devices=[torch.device(self.device)] if self.device.startswith("cuda") else []):
                torch.manual_seed(kwargs["generator"][0].initial_seed())
                output = pipe(**kwargs)
        except (torch.OutOfMemoryError, RuntimeError, MemoryError) as err:
            if not is_out_of_memory(err):
                raise
            raise GenerationFailed(
                f"Out of {self.device} memory at {width}x{height} with {request.num_images} image(s) and "
                f"{len(request.units)} ControlNet(s). Try fewer images, a smaller size or one ControlNet"
                + ("; on a GPU, CNET_DTYPE=float16 halves the weights" if self._full_precision_on_gpu() else "")
                + "."
            ) from err
        finally:
            hook.remove()
        if not all(finite) or isinstance(output.images, np.ndarray) and not np.isfinite(output.images).all():
            raise GenerationFailed(
                f"The model produced invalid numbers (NaN) in {self.dtype} on {self.device}: the image would be "
                "black. Try CNET_DTYPE=float32 or bfloat16, or a VAE that is stable in half precision.")
        return output

    def _full_precision_on_gpu(self) -> bool:
        import torch

        return self.dtype == torch.float32 and not self.device.startswith("cpu")

    def _metadata(self, request: GenerationRequest, prompt: str, caption: str | None, width: int,
                  height: int) -> dict[str, Any]:
        import diffusers

        settings = request.settings()
        # Each image records its own seed and its place in the batch (image_index, batch_size): a re-run repeats the
        # batch, since float kernels may round differently at another batch size.
        settings.update(width=width, height=height, num_images=1, batch_size=request.num_images,
                        caption=caption, prompt_used=prompt)
        settings.pop("seed")
        controlnets = []
        for unit in request.units:
            spec, _ = self.controlnet_spec(unit)
            controlnets.append({"kind": unit.kind, **describe_source(parse_model_source(spec)),
                                "strength": unit.strength, "start": unit.start, "end": unit.end,
                                "control_mode": unit.control_mode})
        if request.image_prompts:
            from .image_prompts import describe_adapter

            adapter = describe_adapter(adapter_location(request.ip_adapter, self.family))
            settings["image_prompts"] = [{"scale": p.scale, "preset": p.preset, **adapter}
                                         for p in request.image_prompts]
        return {
            **settings,
            "base_model": describe_source(self.base_source),
            "family": self.family.name,
            "loras": [{**describe_source(parse_model_source(lora.source)), "weight": lora.weight}
                      for lora in request.loras],
            "embeddings": [describe_source(parse_model_source(e)) for e in request.embeddings],
            "controlnets": controlnets,
            "device": self.device,
            "dtype": str(self.dtype).removeprefix("torch."),
            "diffusers_version": diffusers.__version__,
        }


# A pipeline argument that a family's pipeline does not take -> (the request field that sets it, its neutral value):
# left neutral it is not passed; set otherwise, the run is refused naming the field (never silently ignored).
OPTIONAL_ARGUMENTS = {"negative_prompt": ("negative_prompt", ""), "eta": ("eta", 0.0),
                      "guess_mode": ("guess_mode", False), "true_cfg_scale": ("true_cfg", 1.0)}


def _call_arguments(pipe: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` as this pipeline takes them: an argument of OPTIONAL_ARGUMENTS it does not take is dropped where it
    is neutral and refused by its field's name where it is set (e.g. a negative prompt for a FLUX.1 img2img)."""
    import inspect

    accepted = inspect.signature(type(pipe).__call__).parameters
    out = dict(kwargs)
    for argument, (field_name, neutral) in OPTIONAL_ARGUMENTS.items():
        if argument in out and argument not in accepted:
            if out.pop(argument) != neutral:
                raise RequestError(f"{field_name} does not apply to {type(pipe).__name__} (this base model and "
                                   f"operation): leave it at {neutral!r}")
    return out


def _control_arguments(request: GenerationRequest, as_lists: bool) -> dict[str, Any]:
    """The units' strengths and start/end as the pipeline takes them (`as_lists`: a Union model's, one per
    condition, even for one); none for a run without units (FLUX.1 Fill)."""
    if not request.units:
        return {}
    return dict(controlnet_conditioning_scale=_one_or_list([float(u.strength) for u in request.units], as_lists),
                control_guidance_start=_one_or_list([float(u.start) for u in request.units], as_lists),
                control_guidance_end=_one_or_list([float(u.end) for u in request.units], as_lists))


def _set_unit_outputs(nets: list[Any], plan: RunPlan, one_call: bool) -> None:
    """Each ControlNet's units for this run (cnet/control_mode.py): their control modes and region masks
    (cnet/regions.py; None: everywhere), in the units' order: a multi-ControlNet calls a model once per unit (one
    ControlNet twice, FLUX.1's Union per condition), and the model takes them in turn. `one_call`: SDXL's Union
    model, which reads every condition in one call, takes one mode and one mask for all."""
    request = plan.request
    cfg_batch = request.guidance_scale > 1 and not request.guess_mode  # diffusers' [uncond, cond] batch
    modes, size = [unit.control_mode for unit in request.units], (plan.width, plan.height)
    if one_call:
        if len(set(modes)) > 1 or any(not _same_image(m, plan.unit_masks[0]) for m in plan.unit_masks):
            raise RequestError("a ControlNet-Union model reads every condition in one pass, so its units take one "
                               f"control mode (given {sorted(set(modes))}) and one control mask: make them the same")
        modes, masks, nets = modes[:1], plan.unit_masks[:1], nets[:1]
    else:
        masks, nets = plan.unit_masks, nets * len(modes) if len(nets) == 1 else nets
    served: dict[int, tuple[Any, list[tuple[str, Any]]]] = {}
    for net, mode, mask in zip(nets, modes, masks):
        served.setdefault(id(net), (net, []))[1].append((mode, None if mask is None else mask_tensor(mask, size)))
    for net, units in served.values():
        set_unit_outputs(net, units, cfg_batch)


def _same_image(a: Image.Image | None, b: Image.Image | None) -> bool:
    return a is b or (a is not None and b is not None and a.size == b.size and a.tobytes() == b.tobytes())


def _controlnet_argument(family: Family, nets: list[Any], union: bool) -> Any:
    """The pipeline's `controlnet`: one model, or the list diffusers makes a multi-ControlNet of. A Union model
    with several conditions is, for FLUX.1 (`union_as_multi`), a multi-ControlNet of that one model."""
    if len(nets) == 1 or union and not family.union_as_multi:
        return nets[0]
    return nets[:1] if union else nets


def _union_type(unit: ControlUnit, family: Family) -> int:
    """A unit's control type in the family's ControlNet-Union model (cnet/kinds.py); refused by name for a kind
    without one."""
    kind_type = KINDS[unit.kind].union_types.get(family.name)
    if kind_type is None:
        raise RequestError(f"kind={unit.kind!r} has no control type in a {family.short_label} ControlNet-Union model")
    return kind_type


def _one_or_list(values: list[float], as_list: bool = False) -> float | list[float]:
    # A single ControlNet takes scalars, several take lists: match what a direct diffusers call would pass.
    return values[0] if len(values) == 1 and not as_list else values
