"""What a request does with a picture: the operations, one registry entry each (as `KINDS` holds the conditions).

txt2img draws from noise; img2img, inpaint, outpaint and upscale edit the user's own picture (the paper's "image
editing"). Each entry says which diffusers pipeline mode runs it, whether it takes the user's mask, and how it
prepares its picture (an outpaint's larger canvas and border mask, an upscale's enlarged picture and tile size).
The CLI, the app and the API all plan an edit through `plan_edit`, and make a unit's missing map through
`condition_from_picture`, so the rules live here once. Adding an operation is one entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from common.text import short_repr

from .params import Param, RequestError, check_value, declarations, declared

# An upscale denoises in tiles of at most this many px a side (cnet/tiles.py): a 2048 px result then needs about the
# memory of a 1024 px one (measured: bench/RESULTS.md).
UPSCALE_TILE_SIZE = 1024
DEFAULT_UPSCALE = 2.0
SIDES = ("left", "right", "top", "bottom")


@dataclass
class EditOptions:
    """What shapes an edit's picture beyond the request's own fields (declared once: the CLI and API derive from
    these as from the request's)."""

    outpaint_left: int = declared(0, Param("outpaint: extend the canvas left by N px", type=int, high=2048,
                                           scope="edit", record=False, restore=False))
    outpaint_right: int = declared(0, Param("outpaint: extend the canvas right by N px", type=int, high=2048,
                                            scope="edit", record=False, restore=False))
    outpaint_top: int = declared(0, Param("outpaint: extend the canvas upward by N px", type=int, high=2048,
                                          scope="edit", record=False, restore=False))
    outpaint_bottom: int = declared(0, Param("outpaint: extend the canvas downward by N px", type=int, high=2048,
                                             scope="edit", record=False, restore=False))
    upscale: float = declared(DEFAULT_UPSCALE, Param(
        "upscale: re-render at this factor (1-4), e.g. with the tile kind", type=float, low=1.0, high=4.0,
        scope="edit", record=False, restore=False))
    tile_down_sampling: float = declared(1.0, Param(
        "tile kind: shrink the picture by this much first, for more invented detail", type=float, low=1.0,
        high=8.0, scope="edit", record=False, restore=False))

    @property
    def sides(self) -> dict[str, int]:
        return {side: getattr(self, f"outpaint_{side}") for side in SIDES}

    def check(self, *names: str) -> None:
        """RequestError naming the first of the fields `names` whose value does not fit its declaration (an
        operation checks the options it reads)."""
        for item in declarations(EditOptions):
            if item.field in names:
                check_value(item.field, getattr(self, item.field), item.param, None)


@dataclass(frozen=True)
class Prepared:
    """An operation's picture and mask as the pipeline takes them, the settings it fixes (`forced`) and those it
    suggests where the caller set none (`defaults`)."""

    picture: Image.Image | None
    mask: Image.Image | None
    forced: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """One thing a request can do. `pipeline_mode` picks the diffusers pipeline (txt2img, img2img, inpaint);
    `takes_mask`: the user's mask is used (an outpaint makes its own); `prepare` makes the picture and mask the
    pipeline takes from the user's, and checks the result's size against the deployment's `max_side` first."""

    name: str
    help: str
    pipeline_mode: str
    takes_mask: bool = False
    prepare: Callable[[Image.Image, Image.Image | None, EditOptions, int], Prepared] | None = None
    resizes: bool = False  # its result is larger than the picture (a model of one size cannot do it: the demo)


def _as_is(picture: Image.Image, mask: Image.Image | None, options: EditOptions, max_side: int) -> Prepared:
    return Prepared(picture, mask)


def _outpaint(picture: Image.Image, mask: Image.Image | None, options: EditOptions, max_side: int) -> Prepared:
    from .edit import outpaint_canvas

    options.check(*(f"outpaint_{side}" for side in SIDES))
    sides = options.sides
    width = picture.width + sides["left"] + sides["right"]
    height = picture.height + sides["top"] + sides["bottom"]
    if max(width, height) > max_side:
        raise RequestError(f"outpaint makes {width}x{height}: at most {max_side} px a side here; extend less")
    canvas, border = outpaint_canvas(picture, **sides)
    # The picture's own pixels stay; only the border (and a seam) is drawn.
    return Prepared(canvas, border, forced={"keep_unmasked": True})


def _upscale(picture: Image.Image, mask: Image.Image | None, options: EditOptions, max_side: int) -> Prepared:
    from .edit import upscale_size

    options.check("upscale")
    width, height = upscale_size(picture, options.upscale)
    if max(width, height) > max_side:
        raise RequestError(f"upscale={options.upscale} makes {width}x{height}: at most {max_side} px a side here; "
                           "use a smaller factor or a smaller picture")
    # Tiles of at most UPSCALE_TILE_SIZE px: the memory of a 1024 px image at most.
    return Prepared(picture.resize((width, height), Image.Resampling.LANCZOS), None,
                    defaults={"tile_size": UPSCALE_TILE_SIZE})


OPERATIONS: dict[str, Operation] = {op.name: op for op in (
    Operation("txt2img", "draw from noise under the maps' control", "txt2img"),
    Operation("img2img", "redraw the picture under control (denoise: how much)", "img2img", prepare=_as_is),
    Operation("inpaint", "repaint the masked area (white = repaint)", "inpaint", takes_mask=True, prepare=_as_is),
    Operation("outpaint", "extend the canvas and draw the new border", "inpaint", prepare=_outpaint, resizes=True),
    Operation("upscale", "re-render larger, tile by tile (best with the tile kind)", "img2img", prepare=_upscale,
              resizes=True),
)}
EDIT_OPERATIONS = tuple(name for name, op in OPERATIONS.items() if op.prepare is not None)


def get_operation(name: Any) -> Operation:
    """The registry entry; RequestError naming the known ones otherwise."""
    if not isinstance(name, str) or name not in OPERATIONS:
        raise RequestError(f"operation={short_repr(name)} is not one of {list(OPERATIONS)}")
    return OPERATIONS[name]


def implied_operation(init_image: Any, mask: Any) -> str:
    """The operation a request's inputs imply when none is named (a library caller's shortcut)."""
    if init_image is None:
        return "txt2img"
    return "inpaint" if mask is not None else "img2img"


def edit_operation(named: str | None, mask: Any, options: EditOptions, upscale_given: bool = False) -> str:
    """The edit operation: as named, else what the inputs imply (a mask: inpaint; a side to extend: outpaint; an
    upscale factor given: upscale; none of them: img2img), the same rule for the CLI and the API. Inputs that
    imply two operations are refused by name."""
    if named:
        return get_operation(named).name
    sides = {f"outpaint_{k}": v for k, v in options.sides.items() if v}
    implied = {"inpaint": "mask" if mask is not None else "",
               "outpaint": ", ".join(f"{k}={v}" for k, v in sides.items()),
               "upscale": f"upscale={options.upscale}" if upscale_given else ""}
    chosen = [op for op, why in implied.items() if why]
    if len(chosen) > 1:
        raise RequestError(f"{' and '.join(implied[op] for op in chosen)} cannot be combined: they ask for "
                           f"{' and '.join(chosen)}; give the inputs of one operation")
    return chosen[0] if chosen else "img2img"


def plan_edit(operation: str, picture: Image.Image, mask: Image.Image | None, options: EditOptions,
              settings: dict[str, Any], limits: Any) -> dict[str, Any]:
    """The request settings of an edit: the prepared picture and mask, the operation's own settings (where the
    caller did not set them), and the output size (as given; one side alone keeps the picture's aspect ratio; none:
    the prepared picture's, refused as the picture's beyond the deployment's sides). `settings` are the caller's
    GenerationRequest fields; the result holds them too."""
    op = get_operation(operation)
    if op.prepare is None:
        raise RequestError(f"operation={operation!r} draws from noise: give an edit operation, one of "
                           f"{list(EDIT_OPERATIONS)}")
    if op.takes_mask and mask is None:
        raise RequestError(f"operation={operation!r} needs a mask: paint over what should change")
    if mask is not None and not op.takes_mask:
        raise RequestError(f"operation={operation!r} makes its own mask (or needs none): give no mask, or use "
                           "operation='inpaint'")
    prepared = op.prepare(picture, mask, options, limits.max_side)
    out = {**prepared.defaults, **{k: v for k, v in settings.items() if v is not None or k not in prepared.defaults},
           **prepared.forced}
    if out.get("tile_size") == 0:
        out["tile_size"] = None  # 0: the whole image at once
    size = (prepared.picture.width // 8 * 8, prepared.picture.height // 8 * 8)
    out["width"], out["height"] = _output_size(picture, size, out.get("width"), out.get("height"), limits)
    return {**out, "operation": operation, "init_image": prepared.picture, "mask": prepared.mask}


def _output_size(picture: Image.Image, size: tuple[int, int], width: int | None, height: int | None,
                 limits: Any) -> tuple[int, int]:
    if not width and not height and not all(limits.min_side <= side <= limits.max_side for side in size):
        raise size_refused("picture", *picture.size, limits)
    if bool(width) != bool(height):
        width = width or max(8, round(height * size[0] / size[1] / 8) * 8)
        height = height or max(8, round(width * size[1] / size[0] / 8) * 8)
    return width or size[0], height or size[1]


def size_refused(what: str, width: int, height: int, limits: Any) -> RequestError:
    """The error for an output size taken from a picture (none was given) that this deployment does not make."""
    other = "a larger" if min(width, height) < limits.min_side else "a smaller"
    return RequestError(f"the {what} is {width}x{height} px, and with no width or height given the output takes its "
                        f"size; this deployment makes {limits.min_side}-{limits.max_side} px a side. Give a width "
                        f"or height (the picture is scaled to fit), or use {other} picture")


def edit_takes_units(base_model: Any = None, single_file_config: str | None = None) -> bool:
    """Whether an edit on `base_model` (None: the configured default) runs under control units: False for a base
    that edits by itself (FLUX.1 Fill), whose edit doors then make no unit from the picture. A base whose config
    cannot be read counts as taking them: the engine then names what is missing."""
    from common.models import ModelUnavailableError

    from .families import base_family, base_model_source

    try:
        return base_family(base_model or base_model_source(), single_file_config).takes_controlnets
    except (ModelUnavailableError, ValueError, OSError):
        return True


def condition_from_picture(kind: Any, picture: Image.Image, down_sampling: float = 1.0) -> Image.Image | None:
    """The map of a unit given no map, made from the edited picture: the picture itself for a kind the engine
    masks (inpaint), the tile kind's resampled picture (at the picture's size: the engine fits it to the output),
    or None: the kind's annotator detects it (at the output's own resolution, pixel perfect)."""
    if kind.needs_mask:
        return picture
    if kind.name == "tile":
        from .edit import tile_condition

        return tile_condition(picture, picture.size, down_sampling)
    return None
