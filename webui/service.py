"""What the app does, without any UI: turn inputs into condition maps and images, report model availability.

The Gradio tabs and the public API call these functions; they never import gradio, so they are tested directly.
Errors are library errors (`RequestError`, `AnnotatorError`, `ImageInputError`, `ModelUnavailableError`), each with
a message fit to show a user.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from annotators import ANNOTATORS, AnnotatorError, ImageInputError, to_rgb_array
from cnet.demo import demo_model, few_step_on, on_demo
from cnet.kinds import base_model_source, get_kind
from cnet.maps import detect_map
from cnet.operations import EditOptions
from cnet.params import declarations
from cnet.request import ControlUnit, GenerationRequest, LoraRef
from common.env import env_int
from common.models import ModelSource, pick_device

from .model_policy import ModelPolicy, ModelStatus
from .outputs import OutputStore, prune_outputs, without_server_paths
from .settings import AppSettings
from .stops import StopLedger, stop_key
from .values import canvas_image, editor_picture_and_mask

__all__ = ["Studio", "UnitInput", "canvas_image", "editor_picture_and_mask", "prune_outputs"]

Source = Literal["draw", "photo", "map"]
StopCheck = Callable[[], bool]
log = logging.getLogger("cnet.app")


@dataclass
class UnitInput:
    """One condition as the user gave it: a drawing, a photo to run an annotator on, or a ready map."""

    source: Source
    image: Any  # PIL image, numpy array, or the canvas dict of gr.ImageEditor / gr.Sketchpad
    kind: str = "canny"
    annotator: str | None = None  # None: the kind's own annotator
    params: dict[str, Any] = field(default_factory=dict)
    detect_resolution: int | None = None
    strength: float = 1.0
    start: float = 0.0
    end: float = 1.0
    controlnet: str | None = None  # None: the kind's default (or its CNET_CONTROLNET_<KIND>)
    control_mode: str = "balanced"  # balanced | prompt | control (cnet/control_mode.py)
    pixel_perfect: bool = False  # detect at the resolution that makes the map the output's size (needs one)
    mask: Any = None  # where the control applies: an upload, or the editor the user painted it in (None: everywhere)


def region_mask(value: Any, what: str) -> Image.Image | None:
    """A control's or reference's mask as the user gave it: an upload (its white, or a transparent layer's painted
    area), or the editor they painted it in (the painted strokes); None when none was given or nothing painted."""
    if isinstance(value, dict):
        return editor_picture_and_mask(value)[1]
    return canvas_image(value, what=what)


def reference_pictures(prompts: Any) -> list[Any]:
    """The reference pictures (ImagePrompts) with their pictures and masks read from what the doors sent."""
    if not prompts:
        return []
    if not isinstance(prompts, list):
        raise ValueError(f"image_prompts must be a list of reference pictures, not {type(prompts).__name__}")
    out = []
    for i, prompt in enumerate(prompts):
        picture = canvas_image(prompt.image, what=f"image_prompts[{i}] picture")
        if picture is None:
            raise ImageInputError(f"image_prompts[{i}]: no reference picture: upload one, or remove the reference")
        out.append(replace(prompt, image=picture, mask=region_mask(prompt.mask, f"image_prompts[{i}].mask")))
    return out


class DeploymentRefused(PermissionError):
    """A rule of this deployment (e.g. public), with a message written for visitors."""


PREVIEW_EVERY = 2  # steps between live previews (each costs about a millisecond: bench/RESULTS.md)


@dataclass
class RunInProgress:
    """A generation running for a session: its stop flag and how far it got (for Stop's message)."""

    stop: threading.Event = field(default_factory=threading.Event)
    step: int = 0
    total: int = 0
    preview: Any = None  # the first image as it forms (cnet/preview.py), replaced every few steps


@dataclass
class LiveSession:
    """A session's live mode: its frames, those a newer stroke made stale (skipped before they began, or cancelled
    at a step), and the seed its frames keep when the form asks for a random one."""

    frames: int = 0
    skipped: int = 0
    cancelled: int = 0
    seed: int | None = None


@dataclass
class LiveFrame:
    """One live frame: the result (nothing saved), its time, and what the preset ran."""

    result: Any
    seconds: float
    preset: str
    session: LiveSession


# A frame waits this long before it begins, so a stroke that follows within it (or while the frame waits in the
# queue) takes its place.
LIVE_DEBOUNCE_MS = 300
MAX_LIVE_SESSIONS = 4096  # sessions whose live counts are kept (a few integers each)


class Studio:
    """The app's back end: one engine (loaded lazily), the annotators, and per-run stop flags.

    Everything that uses the accelerator (detection, captioning, generation) runs one at a time under one lock, and
    takes a `should_stop` check: a request its caller gave up on (Stop, an API cancel, a closed page) stops within
    a denoising step, or does not start at all when it was still waiting for the lock.
    """

    def __init__(self, settings: AppSettings, training: Any = None) -> None:
        self.settings = settings
        self._engine: Any = None
        self._engine_lock = threading.Lock()
        self._accelerator = threading.RLock()  # generation holds it and runs detection inside: re-entrant
        self._runs: dict[str, RunInProgress] = {}  # only runs in progress: bounded by the queue
        self.stops = StopLedger()  # each session's run clicks and Stops: a Stop ends a run that has not arrived yet
        self.outputs = OutputStore(settings)  # saved images, each session's history, pruning
        self.models = ModelPolicy(settings, lambda: self.demo_mode)  # which models a request may name
        self.training = training  # webui.training.TrainingManager: the Train tab's runs
        self._demo_mode: bool | None = None
        self._told_compile = False  # the log says once why a public deployment runs uncompiled
        self._live: dict[str, LiveSession] = {}  # per session: bounded like the outputs' sessions (a few ints each)
        self._no_tiny_vae: set[str] = set()  # families whose TAESD a live frame found missing: their VAE decodes
        self.live_debounce = env_int("CNET_LIVE_DEBOUNCE_MS", LIVE_DEBOUNCE_MS, 0, 5000) / 1000

    def warm_up(self) -> None:
        """Compile the default engine for the compile buckets (CNET_COMPILE=1, CNET_COMPILE_SIZES) before visitors
        come; runs hold the accelerator lock, so a request that arrives meanwhile waits instead of compiling too.
        Failures are logged: the app serves uncompiled shapes either way."""
        from common.models import ModelUnavailableError

        controlnet = None
        if self.demo_mode:
            from cnet.demo import DEMO_CONTROLNET

            controlnet = str(DEMO_CONTROLNET)
        try:
            with self._accelerator:
                self.engine.warm_up(controlnet=controlnet, progress=log.info)
        except (ModelUnavailableError, ValueError, RuntimeError) as err:
            log.warning("compile warm-up skipped: %s", err)

    @property
    def engine(self) -> Any:
        """The generation engine, created on first use (so starting the app imports no model code)."""
        return self.engine_for(None)

    @property
    def demo_mode(self) -> bool:
        """True when Stable Diffusion is unavailable and the built-in demo model stands in (decided once)."""
        if self._demo_mode is None:
            from cnet.demo import use_demo

            self._demo_mode = use_demo()
        return self._demo_mode

    def engine_for(self, base_model: str | ModelSource | None) -> Any:
        """The engine for `base_model` (None: the configured default, or the demo model when that is missing).
        One engine is kept: switching the base model replaces it, so two base models never sit in memory."""
        with self._engine_lock:
            wanted = base_model or base_model_source()
            if base_model is None and self.demo_mode:
                from cnet.demo import DEMO_BASE

                wanted = str(DEMO_BASE)
            if self._engine is None or self._engine.base_source.spec.rstrip("/") != _normalise(wanted):
                from cnet.engine import Engine

                self._engine = None  # drop the old one before loading the next
                # Public deployments run the base model's safety checker where it has one.
                self._engine = Engine(wanted, safety_checker=self.settings.public,
                                      compile=self._compiles(base_model))
            return self._engine

    def _compiles(self, base_model: str | ModelSource | None) -> bool | None:
        """Whether an engine compiles (None: as CNET_COMPILE says). On public deployments only the default engine
        compiles, and only within the compile buckets (warmed at start-up): a visitor's base model or a new size
        must never hold the shared queue for a compile of minutes. CNET_COMPILE=1 without CNET_COMPILE_SIZES runs
        uncompiled there, with a warning."""
        from cnet.compiled import ShapeBuckets
        from common.env import env_flag

        if not self.settings.public or not env_flag("CNET_COMPILE"):
            return None
        if ShapeBuckets.from_env() is None:
            if not self._told_compile:
                self._told_compile = True
                log.warning("CNET_COMPILE=1 without CNET_COMPILE_SIZES: a public deployment compiles only warmed "
                            "sizes, so it runs uncompiled. Set CNET_COMPILE_SIZES (e.g. 512x512) to compile those")
            return False
        return base_model is None

    # -- models (webui/model_policy.py) ----------------------------------------------------------------------------
    def check_model_reference(self, reference: str | None, what: str) -> str | ModelSource | None:
        """A model a visitor named, checked by the deployment's policy (`ModelPolicy.check`)."""
        return self.models.check(reference, what)

    def describe_base(self, reference: str | None) -> str:
        """One line on the base model a visitor named (`ModelPolicy.describe_base`)."""
        return self.models.describe_base(reference)

    def few_step_form(self, on: bool, reference: str | None) -> list[Any]:
        """Steps, guidance and sampler for the few-step switch (`ModelPolicy.few_step_form`)."""
        return self.models.few_step_form(on, reference)

    def fidelity_note(self, steps: int, scheduler: str, reference: str | None = None) -> str:
        """What `steps` of `scheduler` cost in control where it was measured: on the demo model (the base when none
        is named in demo mode), its plugin's figures; "" elsewhere or when it keeps 90% or more."""
        if not self.demo_mode or (reference or "").strip():
            return ""
        demo = demo_model()
        return demo.fidelity_note(scheduler or "default", steps) if demo is not None else ""

    def family_guidance(self, reference: str | None, guidance: float, form_default: float | None = None) -> float:
        """The guidance field after the base model changed (`ModelPolicy.family_guidance`)."""
        return self.models.family_guidance(reference, guidance, form_default)

    def model_status(self) -> list[ModelStatus]:
        """Which models are on this machine now, and how to get the missing ones (`ModelPolicy.status`)."""
        return self.models.status()

    # -- conditions ------------------------------------------------------------------------------------------------
    def condition_map(self, unit: UnitInput, *, width: int | None = None, height: int | None = None,
                      should_stop: StopCheck | None = None, resize_mode: str = "crop_and_resize"
                      ) -> tuple[Image.Image, Image.Image | None]:
        """The map for one unit, and the photo it came from (for `auto` captions) when there is one. The annotator
        makes it at `width` x `height` when both are given and the resize mode crops (its own way); otherwise the
        engine fits it by the resize mode. With `unit.pixel_perfect` the detect resolution follows the output."""
        kind = get_kind(unit.kind)
        image = canvas_image(unit.image, what=f"{unit.source} image")
        if image is None:
            raise ImageInputError({"draw": "the canvas is empty: draw something first",
                                   "photo": "no photo: upload one first",
                                   "map": "no condition map: upload one, or use Preview map"}[unit.source])
        if unit.source == "map":
            return Image.fromarray(to_rgb_array(image, what="condition map")), None
        name = "scribble" if unit.source == "draw" else (unit.annotator or kind.annotator)
        annotator = ANNOTATORS.get(name)
        if annotator is None:
            raise AnnotatorError(f"annotator={name!r} is unknown; choose one of {sorted(ANNOTATORS)}")
        # A drawing has no detector settings; a photo's are checked by its annotator (unknown names are errors).
        params = {} if unit.source == "draw" else dict(unit.params)
        with self._accelerator:
            _raise_if_stopped(should_stop, "detection")
            made = detect_map(name, image, size=(width, height), resize_mode=resize_mode,
                              pixel_perfect=unit.pixel_perfect and unit.source == "photo",
                              detect_resolution=unit.detect_resolution, max_side=self.settings.limits.max_side,
                              params=params)
        return made, (None if unit.source == "draw" else Image.fromarray(to_rgb_array(image)))

    def detect_pose(self, photo: Any, *, width: int | None = None, height: int | None = None,
                    should_stop: StopCheck | None = None) -> Any:
        """The people OpenPose finds in a photo, as an editable pose (annotators/pose.py) on a canvas of the output's
        size when given, else the photo's (within this deployment's largest side)."""
        from annotators.pose import detect_pose

        image = canvas_image(photo, what="photo")
        if image is None:
            raise ImageInputError("no photo: upload one in the Photo tab first")
        side = self.settings.limits.max_side
        scale = min(1.0, side / max(image.size))
        with self._accelerator:
            _raise_if_stopped(should_stop, "pose detection")
            return detect_pose(image, width or round(image.width * scale), height or round(image.height * scale))

    # -- generation ------------------------------------------------------------------------------------------------
    def generate(self, units: list[UnitInput], *, progress: Callable[[int, int], None] | None = None,
                 session: str = "", base_model: str | None = None, should_stop: StopCheck | None = None,
                 save_to: tuple[Path, str] | None = None, few_step: bool = False, keep: bool = True,
                 preview_every: int = PREVIEW_EVERY, **settings: Any) -> tuple[Any, list[Path]]:
        """Make the maps, run the engine, save PNGs with metadata; return the result and the saved paths.

        `settings` are GenerationRequest fields (prompt_mode, prompt, num_inference_steps, ...), checked against
        this deployment's limits. `session` identifies whose Stop button may stop this run; `should_stop` is the
        caller's own check (an API cancel, a closed page). `few_step`: the base family's few-step LoRA and the LCM
        sampler are added (steps and guidance stay as given: the form sets 4 and 1 when the mode is chosen).
        `keep` False: nothing is saved (a live frame); `preview_every`: steps between the forming image's previews.
        """
        run = RunInProgress()  # registered first: a Stop while the models are checked or load finds it
        self._runs[session] = run
        stopped = lambda: run.stop.is_set() or bool(should_stop and should_stop())  # noqa: E731

        def on_step(step: int, total: int) -> None:
            run.step, run.total = step, total
            if progress is not None:
                progress(step, total)

        try:
            base, nets, settings = self._checked(units, base_model, few_step, settings)
            run.total = int(settings.get("num_inference_steps") or 0)
            with self._accelerator:
                _raise_if_stopped(stopped, "generation")
                control_units, photo = self._control_units(units, nets, settings, stopped)
                # The photo a map was detected from, unless the caller gave the one to caption
                request = GenerationRequest(units=control_units, **{"source_image": photo, **settings})
                request.validated(self.settings.limits)  # fail on bad settings before any model loads
                engine = self.engine_for(base)
                result = engine.generate(request, progress=on_step, should_stop=stopped,
                                         limits=self.settings.limits, preview_every=preview_every,
                                         preview=lambda image, step: setattr(run, "preview", image))
                if self.settings.public:  # visitors see the server's own models by name, not by where they live
                    result.metadata = [without_server_paths(m) for m in result.metadata]
                if save_to is not None:  # a batch: its own folder, named after the input
                    folder, stem = save_to
                    return result, result.save(folder, stem=f"{stem}-{result.seed}")
                # Under the lock: pruning never races a save.
                return result, (self.outputs.save(result, session) if keep else [])
        finally:
            if self._runs.get(session) is run:
                del self._runs[session]

    def live(self, units: list[UnitInput], *, session: str = "", superseded: StopCheck,
             should_stop: StopCheck | None = None, base_model: str | None = None, **settings: Any
             ) -> LiveFrame | None:
        """A live frame of `units` with the base family's live preset (cnet/live.py), unless `superseded` (a newer
        stroke of this session is waiting) says it is stale: at once, after the debounce, or at its next denoising
        step. None when it was dropped so; a Stop (`should_stop`, the Stop button) is raised. Nothing is saved."""
        from cnet.live import describe_preset, live_preset_for

        live = self._live_session(session)
        if superseded():  # stale when it reached the front of the queue: nothing read or loaded
            live.skipped += 1
            return None
        # The visitor's base is checked before anything reads it (a public deployment takes Hub ids only).
        base = self.check_model_reference(base_model, "base_model") if (base_model or "").strip() else None
        demo = demo_model() if self.demo_mode and base is None else None
        preset, family = live_preset_for(base, demo)
        settings.pop("few_step", None)  # the preset decides (the form's few-step switch is Generate's)
        time.sleep(self.live_debounce)
        _raise_if_stopped(should_stop, "live frame")
        if superseded():
            live.skipped += 1
            return None
        if settings.get("seed") is None:  # the picture evolves with the drawing: one seed for the session
            live.seed = live.seed if live.seed is not None else random.randrange(2**32)
            settings["seed"] = live.seed
        if not settings.get("width") and not settings.get("height"):  # "from the map": its aspect, the preset's side
            drawing = canvas_image(units[0].image, what="the drawing") if units else None
            settings["width"], settings["height"] = drawing.size if drawing is not None else (None, None)
        start = time.perf_counter()
        result = self._live_run(units, session, base_model, preset, family, settings, superseded, should_stop)
        if result is None:
            live.cancelled += 1
            return None
        live.frames += 1
        line = describe_preset(preset, "the demo model" if demo else family.label, pick_device(None))
        if family.name in self._no_tiny_vae and preset.fast_decode:
            line += (f" TAESD is not on this machine, so the full VAE decodes (slower): `hf download "
                     f"{family.tiny_vae}` where there is network.")
        return LiveFrame(result, time.perf_counter() - start, line, live)

    def _live_session(self, session: str) -> LiveSession:
        """The session's live counts and seed, kept newest last (the oldest forgotten past a bound)."""
        live = self._live.pop(session, None) or LiveSession()
        self._live[session] = live
        while len(self._live) > MAX_LIVE_SESSIONS:
            del self._live[next(iter(self._live))]
        return live

    def _live_run(self, units: list[UnitInput], session: str, base_model: str | None, preset: Any, family: Any,
                  settings: dict[str, Any], superseded: StopCheck, should_stop: StopCheck | None) -> Any:
        """One live frame through `generate`; None when a newer stroke made it stale while it ran. A Stop wins
        over staleness (it is checked first, and raised). Without TAESD on this machine the frame decodes with the
        base's VAE, and the family is remembered for the next frames."""
        from cnet.engine import GenerationCancelled, TinyVaeUnavailable
        from cnet.live import live_settings

        why: list[str] = []

        def stale() -> bool:
            if should_stop is not None and should_stop():
                why.append("stop")
                return True
            if superseded():
                why.append("newer stroke")
                return True
            return False

        fast_decode = family.name not in self._no_tiny_vae
        while True:
            try:
                result, _ = self.generate(
                    units, session=session, base_model=base_model, should_stop=stale, few_step=preset.few_step,
                    keep=False, preview_every=1,
                    **live_settings(preset, family, settings, device=pick_device(None), fast_decode=fast_decode))
                return result
            except GenerationCancelled as err:
                if why[-1:] != ["newer stroke"]:
                    raise  # a Stop, or the visitor left
                log.info("live frame of session %s cancelled (%s): a newer stroke is waiting", session[:8], err)
                return None
            except TinyVaeUnavailable:
                if not fast_decode:
                    raise
                self._no_tiny_vae.add(family.name)  # this family's TAESD is missing: the VAE decodes from now on
                fast_decode = False

    def _checked(self, units: list[UnitInput], base_model: str | None, few_step: bool, settings: dict[str, Any]
                 ) -> tuple[Any, list[Any], dict[str, Any]]:
        """The base, the units' ControlNets and the settings of a run, checked against this deployment before any
        map is made or model loaded: the visitor's model references, few-step mode's and the demo's own additions,
        the uploads read, the counts of units and references bounded, the settings validated."""
        base, nets, settings = self._visitor_models(base_model, units, settings)
        demo = self.demo_mode and base is None
        if few_step:  # the server's own LoRA for the family, added after the visitor's references are checked
            settings = few_step_on(settings, base, demo)
            self.models.check_server_lora(settings["loras"][-1])
        if demo:
            nets, settings = on_demo(nets, settings)
        for name in ("source_image", "reference_only"):  # uploads, read by content
            if settings.get(name) is not None and not isinstance(settings[name], Image.Image):
                settings[name] = canvas_image(settings[name], what=name)
        if len(units) > self.settings.limits.max_units:  # before any map is made
            raise ValueError(f"units: {len(units)} control units; at most {self.settings.limits.max_units} are "
                             "accepted here")
        references = settings.get("image_prompts") or []
        if isinstance(references, list) and len(references) > self.settings.limits.max_image_prompts:
            raise ValueError(f"image_prompts: {len(references)} reference pictures; at most "
                             f"{self.settings.limits.max_image_prompts} reference pictures are accepted here")
        settings["image_prompts"] = reference_pictures(references)
        GenerationRequest(units=[], **settings).validate_settings(self.settings.limits)  # before any map is made
        return base, nets, settings

    def _control_units(self, units: list[UnitInput], nets: list[Any], settings: dict[str, Any],
                       stopped: StopCheck) -> tuple[list[ControlUnit], Image.Image | None]:
        """Each unit's map made (drawn, detected or given) and its settings, and the first photo a map came from."""
        width, height = settings.get("width"), settings.get("height")
        control_units, photo = [], None
        for i, (unit, net) in enumerate(zip(units, nets)):
            try:
                made, source_photo = self.condition_map(unit, width=width, height=height, should_stop=stopped,
                                                        resize_mode=settings.get("resize_mode") or "crop_and_resize")
            except (ImageInputError, AnnotatorError) as err:  # which of the conditions, when there are several
                if len(units) == 1:
                    raise
                raise type(err)(f"condition {i + 1} ({unit.kind}): {err}") from None
            photo = photo or source_photo
            own = {item.field: getattr(unit, item.field) for item in declarations(ControlUnit)
                   if item.field not in ("image", "controlnet", "mask")}
            control_units.append(ControlUnit(made, controlnet=net, mask=region_mask(unit.mask, f"units[{i}].mask"),
                                             **own))
        return control_units, photo

    def _visitor_models(self, base_model: str | None, units: list[UnitInput], settings: dict[str, Any]
                        ) -> tuple[Any, list[Any], dict[str, Any]]:
        """The base model, the units' ControlNets and the settings' LoRAs and embeddings, each checked as a
        visitor's model reference (before the server fills in its own, the demo's, which are allowed). Checked
        references are kept as they were classified (a visitor's Hub id as a Hub source), so the engine never looks
        the same text up on this machine's disk."""
        base = self.check_model_reference(base_model, "base_model")
        nets = [self.check_model_reference(unit.controlnet, "controlnet") for unit in units]
        settings = dict(settings)
        if settings.get("ip_adapter"):
            settings["ip_adapter"] = self.check_model_reference(settings["ip_adapter"], "ip_adapter")
        if isinstance(settings.get("loras"), list):
            settings["loras"] = [LoraRef(self.check_model_reference(lora.source, f"loras[{i}]") or "", lora.weight)
                                 if isinstance(lora, LoraRef) else lora for i, lora in enumerate(settings["loras"])]
        if isinstance(settings.get("embeddings"), list):
            settings["embeddings"] = [self.check_model_reference(e, f"embeddings[{i}]") or ""
                                      if isinstance(e, str) else e for i, e in enumerate(settings["embeddings"])]
        return base, nets, settings

    def batch(self, folder: str, units: list[UnitInput], *, detect: bool = False, session: str = "",
              progress: Callable[[int, int], None] | None = None, should_stop: StopCheck | None = None,
              **generate_args: Any) -> Any:
        """One generation per image of `folder` on this machine (maps, or photos with `detect`), each run as
        `generate(units, **generate_args)` would run it with the image as the first unit's map (its settings kept;
        the other units as given), into outputs/batch/<folder name>-<hash of its path>/ with a JSONL/CSV of
        settings; resumable (cnet/batch.py). Local deployments only: it reads a folder of the server's disk."""
        from cnet.batch import batch_folder_name, batch_inputs, run_batch

        if self.settings.public or not self.settings.allow_local_paths:
            raise DeploymentRefused("Batches read a folder of the server's disk: not on this deployment.")
        folder = (folder or "").strip()
        if not folder:
            raise ValueError("batch folder is empty: give a folder of maps or photos")
        files = batch_inputs(Path(folder).expanduser())
        out = self.settings.output_dir / "batch" / batch_folder_name(Path(folder).expanduser())
        counter = iter(range(1, len(files) + 1))

        def make_one(path: Path, stem: str) -> tuple[list[Path], dict[str, Any]]:
            first = replace(units[0], source="photo" if detect else "map", image=str(path))
            result, paths = self.generate([first, *units[1:]], session=session, should_stop=should_stop,
                                          save_to=(out, stem), **generate_args)
            if progress is not None:
                progress(next(counter), len(files))
            return paths, result.metadata[0]

        return run_batch(folder, out, make_one, expected_errors=(ValueError, AnnotatorError, ImageInputError),
                         should_stop=should_stop)

    def edit(self, picture: Any, units: list[UnitInput], *, operation: str = "img2img", mask: Any = None,
             options: EditOptions | None = None, **generate_args: Any) -> tuple[Any, list[Path]]:
        """Edit a picture (`operation`: img2img, inpaint, outpaint or upscale; cnet/operations.py plans it) under
        the units' control, through `generate`. A unit whose image is None takes its condition from the picture
        (`condition_from_picture`: the picture itself, the tile map, or its kind's annotator, pixel perfect).
        `options`: an outpaint's sides, an upscale's factor, the tile kind's down-sampling. `generate_args` as for
        `generate` (settings included)."""
        from cnet.operations import condition_from_picture, edit_takes_units, get_operation, plan_edit

        options = options or EditOptions()
        get_operation(operation)
        image = canvas_image(picture, what="picture") if not isinstance(picture, Image.Image) else picture
        if image is None:
            raise ImageInputError("no picture: upload the picture to edit first")
        image = Image.fromarray(to_rgb_array(image, what="picture"))
        if mask is not None and not isinstance(mask, Image.Image):
            mask = canvas_image(mask, what="mask")
        planned = plan_edit(operation, image, mask, options, generate_args, self.settings.limits)
        image = planned["init_image"]
        filled = []
        base = self.models.check(generate_args.get("base_model"), "base_model")
        if not (self.demo_mode and base is None) and not edit_takes_units(base):
            units = [u for u in units if u.image is not None]  # FLUX.1 Fill edits by itself: no map is made for it
        for unit in units:
            made = None if unit.image is not None else condition_from_picture(
                get_kind(unit.kind), image, options.tile_down_sampling)
            if unit.image is not None:
                filled.append(unit)
            elif made is not None:
                filled.append(replace(unit, source="map", image=made))
            else:  # pixel perfect: detected at the output's own resolution (a 64 px picture's outline detected
                # at 512 and shrunk back faded to nothing)
                filled.append(replace(unit, source="photo", image=image,
                                      pixel_perfect=unit.detect_resolution is None))
        return self.generate(filled, **planned)

    def recent_outputs(self, session: str) -> list[str]:
        """The images this session saved, newest first, that still exist (its history)."""
        return self.outputs.recent(session)

    def preview(self, session: str = "") -> Any:
        """The image this session's run is forming (None when nothing runs or no step has ended yet)."""
        run = self._runs.get(session)
        return run.preview if run is not None else None

    def stop(self, session: str = "", scope: str = "") -> str:
        """Ask the run of `session` to stop after its current denoising step, and every run of the session's tab
        `scope` clicked before now not to start (`StopLedger`); say where it stops."""
        on_its_way = self.stops.stop(stop_key(session, scope)) if session else False
        run = self._runs.get(session)
        if run is None:
            return "Stopped before it started: nothing will be made." if on_its_way else "Nothing is running."
        run.stop.set()
        if run.total and run.step >= run.total:  # decoding and saving: no step check is left to catch the Stop
            return f"Stopped at its last step ({run.total} of {run.total}): the result may still be saved."
        if run.step > 0:
            return f"Stopped after step {run.step + 1} of {run.total}: nothing from this run is kept."
        return "Stopped before its first step ended: nothing will be made."  # loading, or in step 1

    def caption(self, image: Any, should_stop: StopCheck | None = None) -> str:
        """The BLIP caption the `auto` prompt mode would use for this image."""
        picture = canvas_image(image, what="image to caption")
        if picture is None:
            raise ImageInputError("no image to caption: upload one first")
        with self._accelerator:
            _raise_if_stopped(should_stop, "captioning")
            return self.engine.caption(Image.fromarray(to_rgb_array(picture)))


def _raise_if_stopped(should_stop: StopCheck | None, what: str) -> None:
    if should_stop is not None and should_stop():
        from cnet.engine import GenerationCancelled

        raise GenerationCancelled(f"the {what} was cancelled before it started")


def _normalise(reference: str | ModelSource) -> str:
    if isinstance(reference, ModelSource):
        return reference.spec
    path = Path(reference).expanduser()
    return str(path.resolve()) if path.exists() else reference.strip()
