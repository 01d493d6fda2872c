"""The annotator registry: one entry per detector, with its parameters, weights and condition kind.

Detectors come from controlnet-aux, transformers and OpenCV; nothing here re-implements one. Each entry says how to
load its model (lazily, from `lllyasviel/Annotators`, a transformers model id, or a local folder with the same file
names) and how to run it on an RGB array already resized to the detection resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

from common.cache import LRUCache
from common.env import env_int, env_text

ANNOTATORS_REPO = "lllyasviel/Annotators"
ANNOTATORS_ENV = "CNET_ANNOTATORS"  # a local folder (or another repo) holding lllyasviel/Annotators' files


class AnnotatorError(ValueError):
    """Bad annotator name or parameter, or weights that cannot be loaded; the message says which."""


@dataclass(frozen=True)
class Param:
    """One tunable parameter: its type follows `default`; numbers are bounded by `minimum`/`maximum`."""

    name: str
    default: bool | int | float
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""

    def coerce(self, value: Any, owner: str) -> bool | int | float:
        """Convert and check a user value (text from the CLI included), naming annotator, parameter and value."""
        kind = type(self.default)
        try:
            if kind is bool:
                if isinstance(value, str):
                    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    value = value.lower() in ("true", "1", "yes")
                result = bool(value)
            elif kind is int:
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                result = int(value)
            else:
                result = float(value)
        except (TypeError, ValueError):
            raise AnnotatorError(f"{owner}: {self.name}={value!r} must be {kind.__name__}") from None
        if kind is not bool:
            if not np.isfinite(result) or (self.minimum is not None and result < self.minimum) or (
                    self.maximum is not None and result > self.maximum):
                raise AnnotatorError(f"{owner}: {self.name}={value!r} is out of range [{self.minimum}, {self.maximum}]")
        return result


@dataclass(frozen=True)
class Annotator:
    """A detector: `run(model, rgb, params) -> map` on an RGB array at detection resolution."""

    name: str
    kind: str  # the condition kind (ControlNet) its map feeds
    description: str
    run: Callable[[Any, np.ndarray, Mapping[str, Any]], np.ndarray]
    load: Callable[[str, str], Any] | None = None  # (weights location, device) -> model; None: no weights
    weights: str | None = None  # default weights location (Hub repo or model id)
    env_var: str | None = None  # environment variable overriding `weights`
    params: tuple[Param, ...] = ()
    detect_resolution: int = 512
    interpolation: int = cv2.INTER_LINEAR  # how the map is resized to the output size
    takes_drawing: bool = False  # gets the raw canvas (with transparency) instead of a photo

    @property
    def needs_weights(self) -> bool:
        return self.load is not None

    def weights_location(self, override: str | None = None) -> str | None:
        """Where weights come from: `override`, else the env var, else the default."""
        if not self.needs_weights:
            return None
        return override or (env_text(self.env_var) if self.env_var else None) or self.weights

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with `given`, each checked; unknown names are an error listing the valid ones."""
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise AnnotatorError(f"{self.name}: unknown parameter(s) {unknown}; valid: {sorted(known) or 'none'}")
        return {name: p.coerce(given[name], self.name) if name in given else p.default for name, p in known.items()}


# -- runners -------------------------------------------------------------------------------------------------------

def _hwc3(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    return np.ascontiguousarray(np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array[:, :, :3])


def _run_canny(model: Any, rgb: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    if p["low_threshold"] > p["high_threshold"]:
        raise AnnotatorError(f"canny: low_threshold={p['low_threshold']} is above high_threshold={p['high_threshold']}")
    return _hwc3(cv2.Canny(rgb, p["low_threshold"], p["high_threshold"]))


def _run_aux(**fixed: Any) -> Callable[[Any, np.ndarray, Mapping[str, Any]], np.ndarray]:
    """Call a controlnet-aux detector at the resolution it was handed (our resizing already happened)."""
    def run(model: Any, rgb: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
        side = min(rgb.shape[:2])
        return _hwc3(model(rgb, detect_resolution=side, image_resolution=side, output_type="np", **fixed, **p))
    return run


def _run_scribble(model: Any, drawing: Any, p: Mapping[str, Any]) -> np.ndarray:
    from .scribble import scribble_from_drawing

    return scribble_from_drawing(drawing).map


def _run_tile_resample(model: Any, rgb: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    """The tile ControlNet's preprocessor ("tile_resample" in the original extension): the picture shrunk by
    `down_sampling_rate` and blown back up, so the model re-invents the detail that was lost."""
    rate = float(p["down_sampling_rate"])
    if rate <= 1.0:
        return rgb
    h, w = rgb.shape[:2]
    small = cv2.resize(rgb, (max(1, round(w / rate)), max(1, round(h / rate))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _run_depth_transformers(model: Any, rgb: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    import torch
    from PIL import Image

    processor, net = model
    inputs = processor(images=Image.fromarray(rgb), return_tensors="pt").to(net.device)
    with torch.inference_mode():
        depth = net(**inputs).predicted_depth[:, None].float()
        depth = torch.nn.functional.interpolate(depth, size=rgb.shape[:2], mode="bicubic", align_corners=False)[0, 0]
    depth = depth - depth.min()
    depth = depth / depth.max().clamp_min(1e-8)  # relative inverse depth: near is bright, as MiDaS maps are
    return _hwc3((depth.cpu().numpy() * 255.0 + 0.5).astype(np.uint8))


def _run_segmentation(model: Any, rgb: np.ndarray, p: Mapping[str, Any]) -> np.ndarray:
    import torch
    from controlnet_aux.util import ade_palette
    from PIL import Image

    processor, net = model
    inputs = processor(images=Image.fromarray(rgb), return_tensors="pt").to(net.device)
    with torch.inference_mode():
        logits = net(**inputs).logits.float()
        logits = torch.nn.functional.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    labels = logits.argmax(dim=1)[0].cpu().numpy()
    palette = np.asarray(ade_palette(), dtype=np.uint8)  # the ADE20K colours the seg ControlNet was trained on
    return palette[labels % len(palette)]


# -- loaders -------------------------------------------------------------------------------------------------------

def _load_aux(class_name: str) -> Callable[[str, str], Any]:
    def load(location: str, device: str) -> Any:
        import warnings

        with warnings.catch_warnings():  # its import warns about optional extras (mediapipe) and timm renames
            warnings.simplefilter("ignore")
            import controlnet_aux

        from common.models import load_with_hub_fallback, parse_model_source

        loader = getattr(controlnet_aux, class_name).from_pretrained
        model = load_with_hub_fallback(loader, parse_model_source(location, what="annotator weights"),
                                       env_var=ANNOTATORS_ENV)
        return model.to(device)
    return load


def _load_transformers(model_class: str, env_var: str) -> Callable[[str, str], Any]:
    def load(location: str, device: str) -> Any:
        import transformers

        from common.models import load_with_hub_fallback, parse_model_source

        source = parse_model_source(location, what="annotator model")
        processor = load_with_hub_fallback(transformers.AutoImageProcessor.from_pretrained, source, env_var=env_var)
        net = load_with_hub_fallback(getattr(transformers, model_class).from_pretrained, source, env_var=env_var)
        return processor, net.to(device).eval()
    return load


def _aux(name: str, kind: str, description: str, class_name: str, *, params: tuple[Param, ...] = (),
         fixed: Mapping[str, Any] = MappingProxyType({}), **options: Any) -> Annotator:
    return Annotator(name, kind, description, _run_aux(**fixed), _load_aux(class_name), ANNOTATORS_REPO,
                     ANNOTATORS_ENV, params, **options)


def _hf(name: str, kind: str, description: str, model_class: str, model_id: str, run: Callable, **options: Any
        ) -> Annotator:
    env_var = f"CNET_ANNOTATOR_{name.upper()}"
    return Annotator(name, kind, description, run, _load_transformers(model_class, env_var), model_id, env_var,
                     **options)


SAFE = Param("safe", False, help="quantise edges into a few steps (more robust to noise)")

ANNOTATORS: Mapping[str, Annotator] = MappingProxyType({a.name: a for a in (
    Annotator("canny", "canny", "OpenCV Canny edges, white on black", _run_canny, params=(
        Param("low_threshold", 100, 1, 255, "lower hysteresis threshold"),
        Param("high_threshold", 200, 1, 255, "upper hysteresis threshold"))),
    _aux("depth", "depth", "MiDaS DPT-hybrid depth (controlnet-aux), near is bright", "MidasDetector",
         detect_resolution=384),
    _hf("depth_anything", "depth", "Depth Anything V2 small (transformers), near is bright",
        "AutoModelForDepthEstimation", "depth-anything/Depth-Anything-V2-Small-hf", _run_depth_transformers,
        detect_resolution=384),
    _aux("openpose", "openpose", "OpenPose body skeleton, optional hands and face (controlnet-aux)",
         "OpenposeDetector", params=(Param("include_hand", False, help="draw hand keypoints"),
                                     Param("include_face", False, help="draw face keypoints")),
         fixed={"include_body": True}, interpolation=cv2.INTER_NEAREST),
    Annotator("scribble", "scribble", "Your drawing as white strokes on black (any canvas style; inverted "
              "drawings fixed)", _run_scribble, takes_drawing=True, interpolation=cv2.INTER_AREA),
    _aux("fake_scribble", "scribble", "Scribbles synthesised from a photo (HED, thinned and cleaned as the "
         "original app)", "HEDdetector", fixed={"scribble": True}, params=(SAFE,), interpolation=cv2.INTER_AREA),
    _aux("softedge", "softedge", "Soft edges from HED (controlnet-aux)", "HEDdetector", params=(SAFE,)),
    _aux("softedge_pidinet", "softedge", "Soft edges from PiDiNet (controlnet-aux)", "PidiNetDetector",
         params=(SAFE,)),
    _aux("mlsd", "mlsd", "Straight lines from M-LSD (controlnet-aux)", "MLSDdetector", params=(
        Param("thr_v", 0.1, 0.01, 2.0, "score threshold"), Param("thr_d", 0.1, 0.01, 20.0, "distance threshold"))),
    _aux("lineart", "lineart", "Line art from a photo (controlnet-aux)", "LineartDetector",
         params=(Param("coarse", False, help="the coarser model"),)),
    _aux("normal", "normal", "Surface normals from NormalBae (controlnet-aux)", "NormalBaeDetector",
         detect_resolution=384),
    Annotator("tile_resample", "tile", "The picture itself, optionally shrunk and blown back up (for upscaling "
              "with the tile ControlNet)", _run_tile_resample, interpolation=cv2.INTER_CUBIC, params=(
                  Param("down_sampling_rate", 1.0, 1.0, 8.0, "shrink by this much first: more invented detail"),)),
    _hf("seg", "seg", "ADE20K semantic segmentation from UperNet (transformers), in the ADE palette",
        "UperNetForSemanticSegmentation", "openmmlab/upernet-convnext-small", _run_segmentation,
        interpolation=cv2.INTER_NEAREST),
)})


def get_annotator(name: str) -> Annotator:
    """Look an annotator up by name, with an error listing the valid names."""
    try:
        return ANNOTATORS[name]
    except KeyError:
        raise AnnotatorError(f"annotator={name!r} is unknown; choose one of {sorted(ANNOTATORS)}") from None


class ModelCache(LRUCache):
    """Loaded detectors, at most `capacity` at once (default 1, CNET_ANNOTATOR_CACHE: one heavy annotator)."""

    def __init__(self, capacity: int | None = None) -> None:
        super().__init__(capacity or env_int("CNET_ANNOTATOR_CACHE", 1, 1, 64))

    def get(self, annotator: Annotator, location: str, device: str) -> Any:  # type: ignore[override]
        return super().get((annotator.name, location, device), lambda: _load(annotator, location, device))


def _load(annotator: Annotator, location: str, device: str) -> Any:
    from common.models import ModelUnavailableError

    try:
        return annotator.load(location, device)
    except ModelUnavailableError:
        raise
    except Exception as err:  # controlnet-aux loads with bare torch.load: turn any failure into a clear message
        hint = f" (a folder must hold {ANNOTATORS_REPO}'s file names)" if annotator.env_var == ANNOTATORS_ENV else ""
        raise AnnotatorError(f"{annotator.name}: could not load weights from {location!r}: "
                             f"{type(err).__name__}: {err}{hint}") from err
