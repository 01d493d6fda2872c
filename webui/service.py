"""What the app does, without any UI: turn inputs into condition maps and images, report model availability.

The Gradio tabs and the public API call these functions; they never import gradio, so they are tested directly.
Errors are library errors (`RequestError`, `AnnotatorError`, `ImageInputError`, `ModelUnavailableError`), each with
a message fit to show a user.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from annotators import ANNOTATORS, AnnotatorError, ImageInputError, open_image, to_rgb_array
from cnet.demo import few_step_on, on_demo
from cnet.kinds import BASE_MODEL_ENV, KINDS, base_model_source, get_kind
from cnet.maps import detect_map
from cnet.operations import EditOptions
from cnet.params import declarations
from cnet.request import ControlUnit, GenerationRequest, LoraRef, RequestError
from common.env import env_text
from common.models import ModelSource, how_to_provide, parse_hub_id, parse_model_source

from .settings import AppSettings

Source = Literal["draw", "photo", "map"]
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")
StopCheck = Callable[[], bool]
PRUNE_EVERY_SECONDS = 60.0
RECENT_SESSIONS, RECENT_PER_SESSION = 256, 24  # the history: sessions remembered, images per session
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


@dataclass(frozen=True)
class ModelStatus:
    role: str
    reference: str
    available: bool
    hint: str = ""


def canvas_image(value: Any, what: str = "image") -> Image.Image | None:
    """The image inside a Gradio value: the editor's composite, or the image itself; None when empty."""
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("composite") if value.get("composite") is not None else value.get("background")
        if value is None:
            return None
    if isinstance(value, Image.Image):
        return value
    if isinstance(value, (str, Path, bytes)):  # an upload: judged by content, only common photo formats
        return open_image(value, what=what, formats=UPLOAD_FORMATS)
    if isinstance(value, np.ndarray) and value.ndim == 3 and value.shape[2] == 4:
        return Image.fromarray(value.astype(np.uint8), "RGBA")  # keep transparency: drawings need it
    return Image.fromarray(to_rgb_array(value, what=what))



def editor_picture_and_mask(value: Any) -> tuple[Image.Image | None, Image.Image | None]:
    """From gr.ImageEditor's value: the picture (its background) and the mask (every painted layer's opaque
    pixels; None when nothing was painted). A plain image or upload is a picture without a mask."""
    if not isinstance(value, dict):
        picture = canvas_image(value, what="picture")
        return (None if picture is None else Image.fromarray(to_rgb_array(picture, what="picture"))), None
    background = value.get("background")
    if background is None:
        return None, None
    picture = Image.fromarray(to_rgb_array(canvas_image(background, what="picture"), what="picture"))
    painted = None
    for layer in value.get("layers") or []:
        array = np.asarray(canvas_image(layer, what="mask layer"))
        if array.ndim == 3 and array.shape[2] == 4:
            alpha = array[..., 3] > 0
            painted = alpha if painted is None else painted | alpha
    if painted is None or not painted.any():
        return picture, None
    return picture, Image.fromarray(painted.astype(np.uint8) * 255)


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
        # Each session's newest saved images, for its history (the server's record, never a visitor's paths).
        self._recent: OrderedDict[str, list[str]] = OrderedDict()
        self._secret = secrets.token_bytes(32)  # names each public session's output folder; new each start
        self._pruned_at = -float("inf")
        self.training = training  # webui.training.TrainingManager: the Train tab's runs
        self._demo_mode: bool | None = None
        self._told_compile = False  # the log says once why a public deployment runs uncompiled

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

    # -- models ----------------------------------------------------------------------------------------------------
    def check_model_reference(self, reference: str | None, what: str) -> str | ModelSource | None:
        """A model a visitor named: '' means the default. Where local paths are not allowed (public deployments)
        it must be a Hub id, and it is returned as a Hub source, so nothing looks for it on this machine's disk
        (a relative `folder/model` is a Hub id, never the working folder's). Models the server itself configured
        (CNET_* variables, the demo) are not visitors' references and are not checked here."""
        if reference is None or not str(reference).strip():
            return None
        reference = str(reference).strip()
        if not self.settings.allow_local_paths:
            try:
                return parse_hub_id(reference, what=what)
            except ValueError as err:
                raise RequestError(str(err)) from None
        parse_model_source(reference, what=what)
        return reference

    def describe_base(self, reference: str | None) -> str:
        """One line on the base model a visitor named (empty: the default): its family and trained size, read from
        its config without loading weights, or why it cannot be read."""
        from cnet.families import base_default_side, base_family
        from common.models import ModelUnavailableError

        try:
            checked = self.check_model_reference(reference, "base_model")
            if checked is None and self.demo_mode:
                return "Base model: the demo model (Stable Diffusion 1.x layout, 64 px)"
            source = checked or base_model_source()  # a visitor's Hub id stays a Hub source: never read from disk
            family = base_family(source)
            side = base_default_side(source, family)
        except (ModelUnavailableError, ValueError, OSError) as err:
            return f"Base model: {err}"
        return f"Base model family: **{family.label}** ({side} px; ControlNets must be made for it)"

    def model_status(self) -> list[ModelStatus]:
        """Which models are on this machine now (no download, no loading), and how to get the missing ones."""
        from annotators.registry import ANNOTATORS_ENV, ANNOTATORS_REPO
        from cnet.captioner import CAPTION_MODEL_ENV, DEFAULT_CAPTION_MODEL

        rows = [_status("base model", base_model_source(), BASE_MODEL_ENV, "model_index.json")]
        rows += [_status(f"ControlNet: {k.name}", k.controlnet_source(), k.env_var) for k in KINDS.values()]
        # They fail offline just the same: the automatic prompt mode's captioner and the photo annotators' weights.
        rows.append(_status("captioner (automatic prompt)", env_text(CAPTION_MODEL_ENV) or DEFAULT_CAPTION_MODEL,
                            CAPTION_MODEL_ENV))
        rows.append(_status("annotator weights (depth, pose, edges...)", env_text(ANNOTATORS_ENV) or
                            ANNOTATORS_REPO, ANNOTATORS_ENV, "ControlNetHED.pth"))
        return rows

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
            made = detect_map(name, image, width=width, height=height, resize_mode=resize_mode,
                              pixel_perfect=unit.pixel_perfect and unit.source == "photo",
                              detect_resolution=unit.detect_resolution, max_side=self.settings.limits.max_side,
                              params=params)
        return made, (None if unit.source == "draw" else Image.fromarray(to_rgb_array(image)))

    # -- generation ------------------------------------------------------------------------------------------------
    def generate(self, units: list[UnitInput], *, progress: Callable[[int, int], None] | None = None,
                 session: str = "", base_model: str | None = None, should_stop: StopCheck | None = None,
                 save_to: tuple[Path, str] | None = None, few_step: bool = False,
                 **settings: Any) -> tuple[Any, list[Path]]:
        """Make the maps, run the engine, save PNGs with metadata; return the result and the saved paths.

        `settings` are GenerationRequest fields (prompt_mode, prompt, num_inference_steps, ...), checked against
        this deployment's limits. `session` identifies whose Stop button may stop this run; `should_stop` is the
        caller's own check (an API cancel, a closed page). `few_step`: the base family's few-step LoRA and the LCM
        sampler are added (steps and guidance stay as given: the form sets 4 and 1 when the mode is chosen).
        """
        base, nets, settings = self._visitor_models(base_model, units, settings)
        demo = self.demo_mode and base is None
        if few_step:  # the server's own LoRA for the family, added after the visitor's references are checked
            settings = few_step_on(settings, base, demo)
            self._check_server_lora(settings["loras"][-1])
        if demo:
            nets, settings = on_demo(nets, settings)
        if settings.get("source_image") is not None and not isinstance(settings["source_image"], Image.Image):
            settings["source_image"] = canvas_image(settings["source_image"], what="source_image")  # an upload
        GenerationRequest(units=[], **settings).validate_settings(self.settings.limits)  # before any map is made
        run = RunInProgress(total=int(settings.get("num_inference_steps") or 0))
        self._runs[session] = run
        stopped = lambda: run.stop.is_set() or bool(should_stop and should_stop())  # noqa: E731

        def on_step(step: int, total: int) -> None:
            run.step, run.total = step, total
            if progress is not None:
                progress(step, total)

        try:
            with self._accelerator:
                _raise_if_stopped(stopped, "generation")
                width, height = settings.get("width"), settings.get("height")
                control_units, photo = [], None
                for unit, net in zip(units, nets):
                    made, source_photo = self.condition_map(
                        unit, width=width, height=height, should_stop=stopped,
                        resize_mode=settings.get("resize_mode") or "crop_and_resize")
                    photo = photo or source_photo
                    control_units.append(ControlUnit(made, controlnet=net, **{
                        item.field: getattr(unit, item.field) for item in declarations(ControlUnit)
                        if item.field not in ("image", "controlnet")}))
                # The photo a map was detected from, unless the caller gave the one to caption
                request = GenerationRequest(units=control_units, **{"source_image": photo, **settings})
                request.validated(self.settings.limits)  # fail on bad settings before any model loads
                engine = self.engine_for(base)
                result = engine.generate(request, progress=on_step, should_stop=stopped,
                                         limits=self.settings.limits, preview_every=PREVIEW_EVERY,
                                         preview=lambda image, step: setattr(run, "preview", image))
                if self.settings.public:  # visitors see the server's own models by name, not by where they live
                    result.metadata = [_without_server_paths(m) for m in result.metadata]
                if save_to is not None:  # a batch: its own folder, named after the input
                    folder, stem = save_to
                    return result, result.save(folder, stem=f"{stem}-{result.seed}")
                return result, self._save(result, session)  # under the lock: pruning never races a save
        finally:
            if self._runs.get(session) is run:
                del self._runs[session]

    def _visitor_models(self, base_model: str | None, units: list[UnitInput], settings: dict[str, Any]
                        ) -> tuple[Any, list[Any], dict[str, Any]]:
        """The base model, the units' ControlNets and the settings' LoRAs and embeddings, each checked as a
        visitor's model reference (before the server fills in its own, the demo's, which are allowed). Checked
        references are kept as they were classified (a visitor's Hub id as a Hub source), so the engine never looks
        the same text up on this machine's disk."""
        base = self.check_model_reference(base_model, "base_model")
        nets = [self.check_model_reference(unit.controlnet, "controlnet") for unit in units]
        settings = dict(settings)
        if isinstance(settings.get("loras"), list):
            settings["loras"] = [LoraRef(self.check_model_reference(lora.source, f"loras[{i}]") or "", lora.weight)
                                 if isinstance(lora, LoraRef) else lora for i, lora in enumerate(settings["loras"])]
        if isinstance(settings.get("embeddings"), list):
            settings["embeddings"] = [self.check_model_reference(e, f"embeddings[{i}]") or ""
                                      if isinstance(e, str) else e for i, e in enumerate(settings["embeddings"])]
        return base, nets, settings

    def _check_server_lora(self, lora: LoraRef) -> None:
        """The server's own few-step LoRA must exist before a visitor's run uses it: a missing one is the operator's
        setting, named as such (and, on public deployments, without its path), never the visitor's loras[i]."""
        try:
            parse_model_source(lora.source, what=lora.origin)  # few_step_settings' own text, never a ModelSource
        except ValueError as err:
            log.warning("few-step mode unavailable: %s", err)
            detail = f" ({err})" if not self.settings.public else ""
            raise RequestError(f"few-step mode is not available here: {lora.origin} names a LoRA this server does "
                               f"not have{detail}; the operator must set it to an existing one") from None

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
        from cnet.operations import condition_from_picture, get_operation, plan_edit

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

    def _save(self, result: Any, session: str) -> list[Path]:
        """Save under outputs/<date>/ locally; on public deployments under a folder per session whose name only the
        server can derive (HMAC of the session with a secret), with a random part in each name, so nobody fetches
        another visitor's images by guessing. Then prune the folder to its size and age bounds."""
        now = datetime.datetime.now()
        folder = self.settings.output_dir
        stem = f"{now.strftime('%H%M%S')}-{result.seed}"
        if self.settings.public:
            key = hmac.new(self._secret, session.encode() or secrets.token_bytes(16), hashlib.sha256).hexdigest()
            folder = folder / "sessions" / key[:32]
            stem += "-" + secrets.token_hex(8)
        folder = folder / now.date().isoformat()
        taken, n = stem, 1
        while (folder / f"{taken}-0.png").exists():  # same second, same seed: never overwrite an earlier image
            n += 1
            taken = f"{stem}-{n}"
        paths = result.save(folder, stem=taken)
        recent = self._recent.pop(session, [])
        self._recent[session] = ([str(p) for p in paths] + recent)[:RECENT_PER_SESSION]
        while len(self._recent) > RECENT_SESSIONS:  # the least recently active session is forgotten
            self._recent.popitem(last=False)
        if time.monotonic() - self._pruned_at >= PRUNE_EVERY_SECONDS:  # a walk of the folder, at most once a minute
            self._pruned_at = time.monotonic()
            removed = prune_outputs(self.settings.output_dir, max_bytes=self.settings.output_max_mb * 2**20,
                                    max_age_seconds=self.settings.output_max_age_hours * 3600, keep=paths)
            if removed:
                log.warning("pruned the %d oldest output file(s) from %s (CNET_OUTPUT_MAX_MB=%s, "
                            "CNET_OUTPUT_MAX_AGE_HOURS=%s)", removed, self.settings.output_dir,
                            self.settings.output_max_mb, self.settings.output_max_age_hours)
        return paths

    def recent_outputs(self, session: str) -> list[str]:
        """The images this session saved, newest first (at most RECENT_PER_SESSION), that still exist."""
        return [p for p in self._recent.get(session, []) if Path(p).is_file()]

    def preview(self, session: str = "") -> Any:
        """The image this session's run is forming (None when nothing runs or no step has ended yet)."""
        run = self._runs.get(session)
        return run.preview if run is not None else None

    def stop(self, session: str = "") -> str:
        """Ask the run of `session` to stop after its current denoising step; say where it stops."""
        run = self._runs.get(session)
        if run is None:
            return "Nothing is running."
        run.stop.set()
        if run.total and run.step < run.total:
            return f"Stopped after step {run.step + 1} of {run.total}; the results shown are from before."
        return "Stopped; the results shown are from before."

    def caption(self, image: Any, should_stop: StopCheck | None = None) -> str:
        """The BLIP caption the `auto` prompt mode would use for this image."""
        picture = canvas_image(image, what="image to caption")
        if picture is None:
            raise ImageInputError("no image to caption: upload one first")
        with self._accelerator:
            _raise_if_stopped(should_stop, "captioning")
            return self.engine.caption(Image.fromarray(to_rgb_array(picture)))


def _without_server_paths(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata with each local model path (the server's own models: the demo, CNET_* folders) replaced by
    `server:<folder name>`; Hub ids and hashes stay."""
    def label(described: dict[str, Any]) -> dict[str, Any]:
        model = str(described.get("model") or "")
        return {**described, "model": f"server:{Path(model).name}"} if Path(model).is_absolute() else described

    return {**meta, "base_model": label(meta["base_model"]),
            "controlnets": [label(net) for net in meta.get("controlnets", [])]}


def _raise_if_stopped(should_stop: StopCheck | None, what: str) -> None:
    if should_stop is not None and should_stop():
        from cnet.engine import GenerationCancelled

        raise GenerationCancelled(f"the {what} was cancelled before it started")


# What `Studio._save` writes (images and their condition maps), and nothing else: pruning never touches a file it
# did not make, even when CNET_OUTPUT_DIR points at a folder with other things in it.
# Our saved files: images, their condition maps, and an edit's picture and mask (all pruned alike).
OUTPUT_NAME = re.compile(r"^\d{6}-\d+(-[0-9a-f]{16})?(-\d+)?-(\d+|control\d+|init|mask)\.png$")


def prune_outputs(root: Path, *, max_bytes: float, max_age_seconds: float = 0, keep: list[Path] = ()) -> int:
    """Delete the oldest of our outputs under `root` until they total at most `max_bytes` (0: no bound), and those
    older than `max_age_seconds` (0: no bound); never the files in `keep`, never a file of another name. Returns how
    many were removed."""
    if not root.is_dir() or (max_bytes <= 0 and max_age_seconds <= 0):
        return 0
    kept = {Path(p).resolve() for p in keep}
    files = []
    for path in root.rglob("*.png"):
        try:
            if OUTPUT_NAME.match(path.name) and path.is_file() and not path.is_symlink():
                info = path.stat()
                files.append((info.st_mtime, info.st_size, path))
        except OSError:  # removed meanwhile by another request
            continue
    files.sort()
    total = sum(size for _, size, _ in files)
    cutoff = time.time() - max_age_seconds if max_age_seconds > 0 else None
    removed = 0
    for mtime, size, path in files:
        too_big = max_bytes > 0 and total > max_bytes
        too_old = cutoff is not None and mtime < cutoff
        if not (too_big or too_old):
            break  # oldest first: every later file is newer, and the total already fits
        if path.resolve() in kept:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed += 1
    if removed:
        for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()  # only empty ones (saves happen under the same lock: none is being filled)
            except OSError:
                pass
    return removed


def _normalise(reference: str | ModelSource) -> str:
    if isinstance(reference, ModelSource):
        return reference.spec
    path = Path(reference).expanduser()
    return str(path.resolve()) if path.exists() else reference.strip()


def _status(role: str, reference: str, env_var: str, marker: str = "config.json") -> ModelStatus:
    try:
        source = parse_model_source(reference, what=env_var)
    except ValueError as err:
        return ModelStatus(role, reference, False, str(err))
    if source.kind != "hub":
        return ModelStatus(role, reference, True)
    from huggingface_hub import try_to_load_from_cache

    found = isinstance(try_to_load_from_cache(source.location, marker, revision=source.revision), str)
    return ModelStatus(role, reference, found, "" if found else how_to_provide(source, env_var))
