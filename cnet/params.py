"""One declaration per request field, from which every door is derived.

A field of `GenerationRequest`, `ControlUnit` or a run's options is declared once with `declared(default, Param(...))`:
its public name, type, bounds (a number, or the name of a `Limits` attribute: the deployment's own bound), choices,
help text, and which requests take it. The CLI's flags (`cnet/cli.py`), the named API's parameters (`webui/api.py`),
the forms' value mapping (`webui/generate_tab.py`, `webui/edit_tab.py`), the request's own checks
(`cnet/request.py`) and the PNG round trip (`cnet/result.py`) all read these declarations, as ComfyUI's nodes
declare their typed inputs once. Adding a field is one declaration (plus a form control, if it needs one).

This module is a ground floor: it imports nothing of the project but the text helper.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from common.text import short_repr

Scope = Literal["generate", "txt2img", "edit", "img2img", "inpaint"]
_NOT_GIVEN = object()


class RequestError(ValueError):
    """A request field is out of bounds, or a door's value is not of its type; the message names the field (or
    the public name the caller used) and the value."""


@dataclass(frozen=True)
class Param:
    """How one field meets every door.

    `name` is the public name (CLI `--name`, API parameter, form control; "" for the field's own name). `type` is
    one of int, float, str, bool, list (lines of text) or "image" (a file). `low`/`high` bound numbers (`high` may
    name a `Limits` attribute); `choices` bound text (a tuple, or a callable returning one, read when used, so
    registries filled later count). `unset` is the number a door sends for "not given" (the API's seed -1, width
    0; a negative `unset` stands for every negative value) and leaves the field to its default; `none` is the
    number that asks for None explicitly (tile_size 0: the whole image). `scope` says which requests take it
    ("edit": only with a picture; "img2img" / "inpaint": only in that mode; "txt2img": only without a picture),
    `record` whether the request's settings record it, `restore` whether a form takes it back from a PNG."""

    help: str
    type: Any = str
    name: str = ""
    low: float | str | None = None
    high: float | str | None = None
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None
    multiple_of: int | None = None
    optional: bool = False  # None is a valid value (e.g. a random seed, the map's own size)
    unset: float | None = None
    none: float | None = None
    scope: Scope = "generate"
    record: bool = True
    restore: bool = True
    cli_alias: str | None = None  # an older or shorter flag also accepted (e.g. --lora beside --loras)
    per_unit: bool = False  # a ControlUnit field: the CLI takes one value per --image
    item: Callable[[str], Any] | None = None  # a list's entries from text (e.g. `parse_lora`); None: the text

    def choice_list(self) -> tuple[str, ...]:
        return self.choices() if callable(self.choices) else tuple(self.choices or ())

    def bound(self, limits: Any) -> float | None:
        """The upper bound under `limits` (a Limits attribute's value where `high` names one)."""
        return getattr(limits, self.high) if isinstance(self.high, str) else self.high

    def lower(self, limits: Any) -> float:
        """The lower bound under `limits` (0 when none is declared)."""
        return getattr(limits, self.low) if isinstance(self.low, str) else (self.low or 0)


@dataclass(frozen=True)
class Declared:
    """A declared field: its name on the dataclass, its default, and its Param (with the public name filled)."""

    field: str
    default: Any
    param: Param

    @property
    def name(self) -> str:
        return self.param.name or self.field


def declared(default: Any, param: Param) -> Any:
    """A dataclass field with its declaration (a list default gets a fresh list per instance)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=list, metadata={"param": param})
    return dataclasses.field(default=default, metadata={"param": param})


def declarations(cls: type, door: Literal["generate", "edit"] | None = None) -> list[Declared]:
    """The declared fields of `cls` in order; for the `generate` door (no picture) those every request takes and
    the txt2img-only ones; for the `edit` door all but the txt2img-only ones."""
    out = []
    for f in dataclasses.fields(cls):
        param = f.metadata.get("param")
        if param is None or (door == "generate" and param.scope not in ("generate", "txt2img")) or (
                door == "edit" and param.scope == "txt2img"):
            continue
        default = [] if f.default_factory is not dataclasses.MISSING else f.default
        out.append(Declared(f.name, default, param))
    return out


def from_door(item: Declared, value: Any) -> Any:
    """A value as a door sent it (JSON from the API, a form's widget value, CLI text already typed) in the field's
    type; `_NOT_GIVEN` (see `given`) when it means "not given". Raises RequestError naming the public name."""
    param, name = item.param, item.name
    if value is None and param.type in (int, float) and not param.optional:
        raise RequestError(f"{name}=None must be a number")  # null is not a value; "not given" is leaving it out
    if value is None or (isinstance(value, str) and value == "" and (param.type is not str or param.optional)):
        return _NOT_GIVEN
    if param.type is list:
        entries = lines_of(value, name) if isinstance(value, str) else list(value)
        return [param.item(e) if param.item and isinstance(e, str) else e for e in entries]
    if param.type in (int, float):
        number = as_int(value, name) if param.type is int else as_float(value, name)
        if param.none is not None and number == param.none:
            return None
        if param.unset is not None and (number == param.unset or param.unset < 0 and number < 0):
            return _NOT_GIVEN
        return number
    if param.type is bool:
        if not isinstance(value, bool):
            raise RequestError(f"{name}={short_repr(value, 40)} must be true or false")
        return value
    return value


MAX_LINES = 8  # a list field's entries (LoRAs, embeddings)


def lines_of(text: Any, what: str, max_lines: int = MAX_LINES) -> list[str]:
    """A multi-line field's non-blank lines, stripped: at most `max_lines` lines of 1,000 characters, refused before
    anything is parsed (200,000 LoRA lines once took 5 s of the accelerator's queue to refuse)."""
    text = text or ""
    if not isinstance(text, str):
        raise RequestError(f"{what} must be text, one entry a line")
    if len(text) > max_lines * 1001:
        raise RequestError(f"{what} is {len(text)} characters long; at most {max_lines} lines of 1,000 are accepted")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) > max_lines:
        raise RequestError(f"{what} has {len(lines)} entries; at most {max_lines} are accepted")
    return lines


def given(values: dict[str, Any]) -> dict[str, Any]:
    """`values` without the entries `from_door` marked as not given."""
    return {k: v for k, v in values.items() if v is not _NOT_GIVEN}


def door_values(items: list[Declared], sent: dict[str, Any]) -> dict[str, Any]:
    """Field name -> typed value for the items whose public name is in `sent` (and that were given)."""
    return given({item.field: from_door(item, sent[item.name]) for item in items if item.name in sent})


def public_names(items: list[Declared]) -> dict[str, str]:
    """Field name -> public name, for the fields whose names differ (errors speak the caller's names)."""
    return {item.field: item.name for item in items if item.name != item.field}


def check_value(where: str, value: Any, param: Param, limits: Any) -> None:
    """RequestError naming `where` and the value unless it fits `param` (type, bounds under `limits`, choices)."""
    if value is None and param.optional:
        return
    kind = param.type
    if kind is int:
        check_int(where, value, int(param.lower(limits)), int(param.bound(limits)))
        if param.multiple_of and value % param.multiple_of:
            raise RequestError(f"{where}={value} must be a multiple of {param.multiple_of}")
    elif kind is float:
        check_float(where, value, float(param.lower(limits)), float(param.bound(limits)))
    elif kind is bool:
        if not isinstance(value, bool):
            raise RequestError(f"{where}={short_repr(value)} must be true or false")
    elif kind is str and param.choices is not None:
        if value not in param.choice_list():
            raise RequestError(f"{where}={short_repr(value)} is not one of {list(param.choice_list())}")


def check_side(name: str, image: Any, limits: Any) -> None:
    """RequestError unless a mask or reference picture is at most `limits.max_mask_side` a side (its header's size:
    nothing is decoded to check it)."""
    if max(image.size) > limits.max_mask_side:
        raise RequestError(f"{name} is {image.width}x{image.height}; at most {limits.max_mask_side} px a side is "
                           "accepted here (it is read at the output's size): scale it down")


def check_int(name: str, value: Any, low: int, high: int) -> None:
    """RequestError unless `value` is a whole number (not a bool) in [low, high]."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and not low <= value <= high:
        raise RequestError(f"{name}={value:g} is out of range [{low}, {high}]")  # 1e300 is whole, and far out
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(f"{name}={short_repr(value)} must be a whole number")
    if not low <= value <= high:
        raise RequestError(f"{name}={value} is out of range [{low}, {high}]")


def check_float(name: str, value: Any, low: float, high: float) -> None:
    """RequestError unless `value` is a finite number (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RequestError(f"{name}={short_repr(value)} must be a number")
    if not math.isfinite(value) or not low <= value <= high:
        raise RequestError(f"{name}={value} is out of range [{low}, {high}]")


def as_float(value: Any, name: str) -> float:
    """A number from JSON: 9, 9.0 or "9" (gradio_client may send text); never null, text or NaN."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        number = float("nan")
    if isinstance(value, bool) or number != number:
        raise RequestError(f"{name}={short_repr(value, 40)} must be a number")
    return number


def as_int(value: Any, name: str) -> int:
    """A whole number from JSON: 7, 7.0 or "7"; anything else is refused naming the field."""
    try:
        if float(value) == int(float(value)):
            return int(float(value))
    except (TypeError, ValueError, OverflowError):
        pass
    raise RequestError(f"{name}={short_repr(value, 40)} must be a whole number")
