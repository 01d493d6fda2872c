"""The condition kinds we support: one registry instead of per-kind copies.

Each kind names the ControlNet trained on it (ControlNet 1.1 for SD1.5), the annotator that turns a photo into its
map (see the `annotators` package), and that annotator's default parameters (the original apps' values).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from common.env import env_text

from .families import BASE_MODEL_ENV, DEFAULT_BASE_MODEL, FAMILIES, base_model_source  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class ConditionKind:
    """One kind of spatial condition.

    `annotator` is the name of the annotator that makes this kind's map from a photo (the annotator registry holds
    its settings and their defaults). `env_var` lets an operator point the kind at another ControlNet.
    """

    name: str
    controlnet: str  # the SD 1.x ControlNet its authors publish (lllyasviel's v1.1)
    annotator: str  # "" for a kind whose map is not made from one image (inpaint: the picture and its mask)
    description: str
    needs_mask: bool = False  # an editing kind: its map is the edited picture with the mask blanked out
    # Its control type in a ControlNet-Union model (xinsir's ControlNet++ order: 0 openpose, 1 depth, 2 soft edges
    # and scribbles, 3 canny/lineart/mlsd, 4 normal, 5 segmentation; the promax model adds 6 tile, 7 inpaint).
    union_type: int | None = None
    # The SDXL ControlNet its authors publish for this kind (None: none is published in diffusers format).
    sdxl_controlnet: str | None = None

    @property
    def controlnets(self) -> dict[str, str]:
        """Family name -> the ControlNet published for this kind (cnet/families.py names the families); a family
        without an entry has none, and a unit of this kind needs a ControlNet named for it."""
        found = {"sd15": self.controlnet, "sdxl": self.sdxl_controlnet}
        found.update({family: nets.get(self.name) for family, nets in DIT_CONTROLNETS.items()})
        return {family: net for family, net in found.items() if net}

    @property
    def union_types(self) -> dict[str, int]:
        """Family name -> this kind's control type in that family's ControlNet-Union model."""
        found = {"sdxl": self.union_type, "flux": FLUX_UNION_TYPES.get(self.name)}
        return {family: kind_type for family, kind_type in found.items() if kind_type is not None}

    @property
    def env_var(self) -> str:
        return f"CNET_CONTROLNET_{self.name.upper()}"

    def controlnet_source(self, family: str = "sd15") -> str:
        """The ControlNet to use for this kind on a base of `family`: `CNET_CONTROLNET_<KIND>` if set, else the
        family's default (ValueError naming the kind when the family has none)."""
        if env_text(self.env_var):
            return env_text(self.env_var)
        if family not in self.controlnets:
            label = FAMILIES[family].short_label if family in FAMILIES else family
            raise ValueError(f"kind={self.name!r} has no published {label} ControlNet: choose another kind, or set "
                             f"{self.env_var} (or pass a ControlNet) for {label}")
        return self.controlnets[family]


# xinsir's ControlNet++ (one SDXL model, several kinds); its six-type weights are the repository's diffusers files.
SDXL_UNION = "xinsir/controlnet-union-sdxl-1.0"

# The DiT families' ControlNets in diffusers layout, per kind. FLUX.1-dev: InstantX's canny, Shakker-Labs' depth and
# their Union Pro 2.0 (one model for soft edges and pose, without control types), jasperai's upscaler for tile.
# SD3.5: Stability's ControlNets for SD3.5 Large (8B) only; their blur model is the one made for tile upscaling.
FLUX_UNION_PRO = "Shakker-Labs/FLUX.1-dev-ControlNet-Union-Pro-2.0"
DIT_CONTROLNETS: dict[str, dict[str, str]] = {
    "flux": {"canny": "InstantX/FLUX.1-dev-Controlnet-Canny", "depth": "Shakker-Labs/FLUX.1-dev-ControlNet-Depth",
             "openpose": FLUX_UNION_PRO, "softedge": FLUX_UNION_PRO, "tile": "jasperai/Flux.1-dev-Controlnet-Upscaler"},
    "sd3": {"canny": "stabilityai/stable-diffusion-3.5-large-controlnet-canny",
            "depth": "stabilityai/stable-diffusion-3.5-large-controlnet-depth",
            "tile": "stabilityai/stable-diffusion-3.5-large-controlnet-blur"},
}
# InstantX's FLUX.1-dev ControlNet Union (a model with control types): 0 canny, 1 tile, 2 depth, 3 blur, 4 pose.
FLUX_UNION_TYPES = {"canny": 0, "tile": 1, "depth": 2, "openpose": 4}


def _kind(name: str, controlnet: str, annotator: str, description: str, needs_mask: bool = False,
          union_type: int | None = None, sdxl: str | None = None) -> ConditionKind:
    if sdxl is None and union_type is not None and union_type < 6:  # the six types of the union's diffusers weights
        sdxl = SDXL_UNION
    return ConditionKind(name, controlnet, annotator, description, needs_mask, union_type, sdxl)


KINDS: Mapping[str, ConditionKind] = MappingProxyType(
    {
        k.name: k
        for k in (
            _kind("canny", "lllyasviel/control_v11p_sd15_canny", "canny", "Canny edges, white on black",
                  union_type=3),
            _kind("depth", "lllyasviel/control_v11f1p_sd15_depth", "depth", "Depth map (MiDaS), near is bright",
                  union_type=1),
            _kind("openpose", "lllyasviel/control_v11p_sd15_openpose", "openpose", "OpenPose body skeleton",
                  union_type=0),
            _kind("scribble", "lllyasviel/control_v11p_sd15_scribble", "scribble",
                  "User scribble: white strokes on black", union_type=2),
            _kind("softedge", "lllyasviel/control_v11p_sd15_softedge", "softedge", "Soft edges (HED / PiDiNet)",
                  union_type=2),
            _kind("mlsd", "lllyasviel/control_v11p_sd15_mlsd", "mlsd", "Straight lines (M-LSD)", union_type=3),
            _kind("lineart", "lllyasviel/control_v11p_sd15_lineart", "lineart", "Line art drawing", union_type=3),
            _kind("normal", "lllyasviel/control_v11p_sd15_normalbae", "normal", "Surface normals (NormalBae)",
                  union_type=4),
            _kind("seg", "lllyasviel/control_v11p_sd15_seg", "seg", "Semantic segmentation (ADE20K colours)",
                  union_type=5),
            # For editing: the tile model re-renders a picture with more detail (upscaling).
            _kind("tile", "lllyasviel/control_v11f1e_sd15_tile", "tile_resample",
                  "The picture itself (tile): re-render with more detail, for upscaling", union_type=6,
                  sdxl="xinsir/controlnet-tile-sdxl-1.0"),
            # For inpainting: the picture with the masked pixels set to -1, as the model's authors specify.
            _kind("inpaint", "lllyasviel/control_v11p_sd15_inpaint", "",
                  "The picture with the masked area blanked (inpaint ControlNet; Edit tab, inpaint)", needs_mask=True,
                  union_type=7),
        )
    }
)


def map_kinds() -> list[ConditionKind]:
    """The kinds whose map comes from one image (a photo, a drawing, a ready map): all but the editing-only ones."""
    return [k for k in KINDS.values() if not k.needs_mask]


def get_kind(name: str) -> ConditionKind:
    """Look a kind up by name, with an error that lists the valid names."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"kind={name!r} is not a known condition kind; choose one of {sorted(KINDS)}") from None
