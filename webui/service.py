"""What the app does, without any UI: turn inputs into condition maps and images, report model availability.

The Gradio tabs and the public API call these functions; they never import gradio, so they are tested directly.
Errors are library errors (`RequestError`, `AnnotatorError`, `ImageInputError`, `ModelUnavailableError`), each with
a message fit to show a user.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from annotators import ANNOTATORS, AnnotatorError, ImageInputError, detect, open_image, to_rgb_array
from cnet.kinds import BASE_MODEL_ENV, KINDS, base_model_source, get_kind
from cnet.models import how_to_provide, parse_model_source
from cnet.request import ControlUnit, GenerationRequest, RequestError

from .settings import AppSettings

Source = Literal["draw", "photo", "map"]
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")
USER_ERRORS = (RequestError, AnnotatorError, ImageInputError, ValueError)


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


class Studio:
    """The app's back end: one engine (loaded lazily), the annotators, and per-session stop flags."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        self._engine: Any = None
        self._engine_lock = threading.Lock()
        self._stop_flags: dict[str, threading.Event] = {}
        self.training: Any = None  # webui.training.TrainingManager, set by app.build_app
        self._demo_mode: bool | None = None

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

    def engine_for(self, base_model: str | None) -> Any:
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
                self._engine = Engine(wanted, safety_checker=self.settings.public)
            return self._engine

    # -- models ----------------------------------------------------------------------------------------------------
    def check_model_reference(self, reference: str | None, what: str) -> str | None:
        """Accept a Hub id always, a local path only where the operator allows it; '' means the default."""
        if reference is None or not str(reference).strip():
            return None
        reference = str(reference).strip()
        if not self.settings.allow_local_paths:
            if reference.startswith(("/", ".", "~")) or "\\" in reference or reference.count("/") != 1 or \
                    ".." in reference:
                raise RequestError(f"{what}={reference!r}: this deployment accepts Hub ids (owner/name) only")
            return reference
        parse_model_source(reference, what=what)
        return reference

    def model_status(self) -> list[ModelStatus]:
        """Which models are on this machine now (no download, no loading), and how to get the missing ones."""
        rows = [_status("base model", base_model_source(), BASE_MODEL_ENV)]
        rows += [_status(f"ControlNet: {k.name}", k.controlnet_source(), k.env_var) for k in KINDS.values()]
        return rows

    # -- conditions ------------------------------------------------------------------------------------------------
    def condition_map(self, unit: UnitInput, *, width: int | None = None, height: int | None = None
                      ) -> tuple[Image.Image, Image.Image | None]:
        """The map for one unit, and the photo it came from (for `auto` captions) when there is one."""
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
        resolution = unit.detect_resolution or kind.annotator_params.get("detect_resolution")
        made = detect(name, image, detect_resolution=resolution, width=width, height=height, **params)
        return made, (None if unit.source == "draw" else Image.fromarray(to_rgb_array(image)))

    # -- generation ------------------------------------------------------------------------------------------------
    def generate(self, units: list[UnitInput], *, progress: Callable[[int, int], None] | None = None,
                 session: str = "", base_model: str | None = None, **settings: Any) -> tuple[Any, list[Path]]:
        """Make the maps, run the engine, save PNGs with metadata; return the result and the saved paths.

        `settings` are GenerationRequest fields (prompt_mode, prompt, num_inference_steps, ...), checked against
        this deployment's limits. `session` identifies whose Stop button may stop this run.
        """
        if self.demo_mode and base_model is None:
            from cnet.demo import DEMO_CONTROLNET, DEMO_SIZE

            # The demo model knows one size and one ControlNet (circle outlines).
            settings["width"], settings["height"] = DEMO_SIZE, DEMO_SIZE
            for unit in units:
                unit.controlnet = unit.controlnet or str(DEMO_CONTROLNET)
        width, height = settings.get("width"), settings.get("height")
        control_units, photo = [], None
        for unit in units:
            made, source_photo = self.condition_map(unit, width=width, height=height)
            photo = photo or source_photo
            control_units.append(ControlUnit(made, kind=unit.kind, strength=unit.strength, start=unit.start,
                                             end=unit.end,
                                             controlnet=self.check_model_reference(unit.controlnet, "controlnet")))
        request = GenerationRequest(units=control_units, source_image=photo, **settings)
        request.validated(self.settings.limits)  # fail on bad settings before any model loads
        stop = self._stop_flags.setdefault(session, threading.Event())
        stop.clear()
        engine = self.engine_for(self.check_model_reference(base_model, "base_model"))
        result = engine.generate(request, progress=progress, should_stop=stop.is_set, limits=self.settings.limits)
        folder = self.settings.output_dir / datetime.date.today().isoformat()
        stem = f"{datetime.datetime.now().strftime('%H%M%S')}-{result.seed}"
        return result, result.save(folder, stem=stem)

    def stop(self, session: str = "") -> None:
        """Ask the run of `session` to stop after its current denoising step."""
        self._stop_flags.setdefault(session, threading.Event()).set()

    def caption(self, image: Any) -> str:
        """The BLIP caption the `auto` prompt mode would use for this image."""
        picture = canvas_image(image, what="image to caption")
        if picture is None:
            raise ImageInputError("no image to caption: upload one first")
        return self.engine.caption(Image.fromarray(to_rgb_array(picture)))


def _normalise(reference: str) -> str:
    path = Path(reference).expanduser()
    return str(path.resolve()) if path.exists() else reference.strip()


def _status(role: str, reference: str, env_var: str) -> ModelStatus:
    try:
        source = parse_model_source(reference, what=env_var)
    except ValueError as err:
        return ModelStatus(role, reference, False, str(err))
    if source.kind != "hub":
        return ModelStatus(role, reference, True)
    from huggingface_hub import try_to_load_from_cache

    marker = "model_index.json" if role == "base model" else "config.json"
    found = isinstance(try_to_load_from_cache(source.location, marker, revision=source.revision), str)
    return ModelStatus(role, reference, found, "" if found else how_to_provide(source, env_var))
