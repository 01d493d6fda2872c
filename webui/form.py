"""A form's values read through the request's declarations (cnet/params.py): each declared field whose public name
is a control of the tab (`ui.steps`, `ui.control_start`, ...) is taken from it, typed and checked as the API's
parameter of the same name is. A new field reaches a form by a control of that name; nothing else changes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gradio as gr

from cnet.request import DoorValues, door_fields, door_values_of


def form_controls(ui: SimpleNamespace, door: str) -> dict[str, Any]:
    """Public name -> the tab's control, for every declared field of `door` the tab has a control for."""
    controls = {item.name: getattr(ui, item.name, None) for item in door_fields(door)}
    return {name: c for name, c in controls.items() if isinstance(c, gr.components.Component)}


def form_values(ui: SimpleNamespace, v: dict, door: str, leave_out: tuple[str, ...] = ()) -> DoorValues:
    """The form's declared fields from `v` (component -> value), minus `leave_out` (controls whose value another
    control overrides, e.g. the seed when "random" is ticked)."""
    sent = {name: v[control] for name, control in form_controls(ui, door).items()
            if control in v and name not in leave_out}
    return door_values_of(door, sent)
