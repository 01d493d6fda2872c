"""The list of extra control units and the reference pictures, as the Generate and Edit tabs show them.

A tab's first unit is its main condition (the canvas, photo or map; the Edit tab's picture); the units after it are
slots of this list: each with its kind, where its map comes from (a photo to detect, or a ready map), strength,
start/end, control mode, ControlNet, and a region mask painted over its map (every painted stroke; none: the control
applies everywhere). Slots are added up to the deployment's limit (`Limits.max_units`: 4 here, 3 on a public
deployment, `CNET_MAX_UNITS` to change it), removed, and moved up. The reference pictures (IP-Adapter image prompts)
are slots of the same kind: picture, scale, InstantStyle preset and an optional mask.

Gradio cannot add components to a running page, so the slots exist from the start and are shown or hidden; a slot's
"in use" flag is a hidden checkbox the handlers read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from cnet.image_prompts import IP_PRESETS, ImagePrompt
from cnet.kinds import map_kinds
from cnet.params import as_float

from .editor import EditorLimits
from .editor_components import BoundedImageEditor
from .service import UnitInput

CONTROL_MODE_CHOICES = [("Balanced", "balanced"), ("My prompt is more important", "prompt"),
                        ("ControlNet is more important", "control")]
PRESET_LABELS = {"full": "Full (everything)", "style": "Style only (InstantStyle)",
                 "composition": "Composition only (InstantStyle)", "style_and_composition": "Style and composition"}


@dataclass
class Slots:
    """The slots of one list: each slot's components by field, its group, its in-use flag and its buttons."""

    prefix: str
    fields: list[dict[str, Any]] = field(default_factory=list)  # per slot: field name -> component
    groups: list[Any] = field(default_factory=list)
    in_use: list[Any] = field(default_factory=list)
    up: list[Any] = field(default_factory=list)
    remove: list[Any] = field(default_factory=list)
    add: Any = None
    accordion: Any = None
    reference_only: dict[str, Any] = field(default_factory=dict)  # reference-only's controls, by field name

    def inputs(self) -> set[Any]:
        """Every component a run reads from these slots."""
        return {c for slot in self.fields for c in slot.values()} | set(self.in_use)


def unit_slots(count: int, max_strength: float, editor: EditorLimits, prefix: str = "") -> Slots:
    """`count` extra unit slots (hidden until added), in an accordion, with the button that adds one."""
    slots = Slots(prefix)
    with gr.Accordion(f"More conditions (multi-ControlNet: up to {count} more)", open=False,
                      elem_id=f"{prefix}more-units") as slots.accordion:
        for i in range(count):
            n = i + 2  # the main condition is unit 1
            with gr.Group(visible=False, elem_id=f"{prefix}unit{n}") as group:
                slots.in_use.append(gr.Checkbox(False, visible=False, elem_id=f"{prefix}unit{n}-on"))
                with gr.Row():
                    gr.Markdown(f"**Condition {n}**")
                    slots.up.append(gr.Button("Move up", size="sm", visible=i > 0, elem_id=f"{prefix}unit{n}-up"))
                    slots.remove.append(gr.Button("Remove", size="sm", elem_id=f"{prefix}unit{n}-remove"))
                slots.fields.append(_unit_fields(n, max_strength, editor, prefix))
            slots.groups.append(group)
        slots.add = gr.Button("Add a condition", elem_id=f"{prefix}add-unit", visible=count > 0)
    return slots


def _unit_fields(n: int, max_strength: float, editor: EditorLimits, prefix: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    with gr.Row():
        fields["kind"] = gr.Dropdown([k.name for k in map_kinds()], value="depth", label="Kind",
                                     elem_id=f"{prefix}unit{n}-kind")
        fields["source"] = gr.Radio([("Photo → detect", "photo"), ("Ready map", "map")], value="photo",
                                    label="Source", elem_id=f"{prefix}unit{n}-source")
    gr.Markdown("Paint over the map or photo to confine this condition to the painted area (no paint: everywhere).",
                elem_classes="canvas-caption")
    fields["image"] = BoundedImageEditor(
        limits=editor, label=f"Photo or map {n}",
        type="numpy", image_mode="RGBA", brush=gr.Brush(default_size=24, colors=["#FF3030"]), height=300,
        elem_id=f"{prefix}unit{n}-image")
    with gr.Row():
        fields["strength"] = gr.Slider(0.0, max_strength, value=0.6, step=0.05, label="Strength",
                                       elem_id=f"{prefix}unit{n}-strength")
        fields["start"] = gr.Slider(0.0, 1.0, value=0.0, step=0.05, label="Start", elem_id=f"{prefix}unit{n}-start")
        fields["end"] = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="End", elem_id=f"{prefix}unit{n}-end")
    with gr.Row():
        fields["control_mode"] = gr.Radio(CONTROL_MODE_CHOICES, value="balanced", label="Control mode",
                                          elem_id=f"{prefix}unit{n}-mode")
        fields["controlnet"] = gr.Textbox(label="ControlNet (empty: the kind's default)",
                                          elem_id=f"{prefix}unit{n}-controlnet")
    return fields


def reference_slots(count: int, max_strength: float, prefix: str = "") -> Slots:
    """`count` reference-picture slots (IP-Adapter image prompts), hidden until added."""
    slots = Slots(prefix)
    with gr.Accordion(f"Reference pictures (IP-Adapter: up to {count}) and reference-only", open=False,
                      elem_id=f"{prefix}references") as slots.accordion:
        gr.Markdown("The image takes the look of each picture: its subject and style (**Full**), or with InstantStyle "
                    "only its colours and materials (**Style**) or its layout (**Composition**). A mask confines a "
                    "picture to the white area of the output.")
        for i in range(count):
            n = i + 1
            with gr.Group(visible=False, elem_id=f"{prefix}reference{n}") as group:
                slots.in_use.append(gr.Checkbox(False, visible=False, elem_id=f"{prefix}reference{n}-on"))
                with gr.Row():
                    gr.Markdown(f"**Reference {n}**")
                    slots.up.append(gr.Button("Move up", size="sm", visible=i > 0,
                                              elem_id=f"{prefix}reference{n}-up"))
                    slots.remove.append(gr.Button("Remove", size="sm", elem_id=f"{prefix}reference{n}-remove"))
                with gr.Row():
                    fields = {
                        "image": gr.Image(label=f"Reference picture {n}", type="filepath", height=200,
                                          elem_id=f"{prefix}reference{n}-image"),
                        "mask": gr.Image(label="Mask (optional: white = where it applies)", type="filepath",
                                         image_mode="L", height=200, elem_id=f"{prefix}reference{n}-mask")}
                with gr.Row():
                    fields["scale"] = gr.Slider(0.0, max_strength, value=0.6, step=0.05, label="Scale",
                                                elem_id=f"{prefix}reference{n}-scale")
                    fields["preset"] = gr.Dropdown([(PRESET_LABELS[p], p) for p in IP_PRESETS], value="full",
                                                   label="What it steers", elem_id=f"{prefix}reference{n}-preset")
                slots.fields.append(fields)
            slots.groups.append(group)
        slots.add = gr.Button("Add a reference picture", elem_id=f"{prefix}add-reference", visible=count > 0)
        slots.reference_only = reference_only_controls(prefix)
    return slots


def reference_only_controls(prefix: str = "") -> dict[str, Any]:
    """Reference-only (no model): the picture and its weight and style fidelity, named after their fields so the
    form reads them through the declarations."""
    gr.Markdown("**Reference-only** (no model: the picture's look enters the U-Net's self-attention, as the A1111 "
                "extension's reference_only; SD 1.x, 2.x and SDXL)")
    with gr.Row():
        picture = gr.Image(label="Reference-only picture", type="filepath", height=200,
                           elem_id=f"{prefix}reference-only")
        with gr.Column():
            weight = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Weight (share of layers that read it)",
                               elem_id=f"{prefix}reference-only-weight")
            fidelity = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Style fidelity",
                                 elem_id=f"{prefix}reference-only-fidelity")
    return {"reference_only": picture, "reference_only_weight": weight, "reference_only_fidelity": fidelity}


def wire_slots(slots: Slots) -> None:
    """Add shows the first unused slot (and says so when the last is taken); Remove hides and clears a slot; Move
    up swaps a slot's values with the nearest slot in use above it. Small UI reactions: no queue, no model."""
    private = dict(queue=False, api_visibility="private")
    count = len(slots.groups)

    label = slots.add.value

    def full() -> Any:  # an update, made in the handler (a component made here would be drawn on the page)
        return gr.Button(interactive=False, value=f"All {count} in use (the limit here): remove one to add another")

    def on_add(*flags: bool) -> list[Any]:
        free = next((i for i, on in enumerate(flags) if not on), None)
        if free is None:
            return [gr.skip()] * (2 * count) + [full()]
        last = sum(flags) + 1 == count
        return [True if i == free else gr.skip() for i in range(count)] + \
            [gr.Group(visible=True) if i == free else gr.skip() for i in range(count)] + \
            [full() if last else gr.skip()]

    slots.add.click(on_add, slots.in_use, [*slots.in_use, *slots.groups, slots.add], **private)
    names = list(slots.fields[0]) if slots.fields else []
    for i in range(count):
        defaults = [slots.fields[i][name].value for name in names]
        slots.remove[i].click(lambda d=defaults: [False, gr.Group(visible=False), gr.Button(interactive=True,
                                                                                             value=label), *d],
                              None, [slots.in_use[i], slots.groups[i], slots.add, *slots.fields[i].values()],
                              **private)
        if i == 0:  # nothing above the first slot of the list
            continue
        rows = [slots.fields[j][name] for j in range(i + 1) for name in names]
        slots.up[i].click(_move_up(i, names), [*slots.in_use[:i], *rows], rows, **private)


def _move_up(i: int, names: list[str]) -> Any:
    """Slot i's handler for Move up: slot i's values and the nearest in-use slot above it change places."""
    width = len(names)

    def handler(*values: Any) -> list[Any]:
        flags = values[:i]
        rows = [list(values[i + j * width: i + (j + 1) * width]) for j in range(i + 1)]
        target = max((j for j in range(i) if flags[j]), default=None)
        if target is None:
            return [gr.skip()] * (width * (i + 1))
        rows[target], rows[i] = rows[i], rows[target]
        out: list[Any] = []
        for j, row in enumerate(rows):
            out += row if j in (target, i) else [gr.skip()] * width
        return out

    return handler


def restore_outputs(slots: Slots, names: tuple[str, ...]) -> list[Any]:
    """The components a saved image's settings go back into: each slot's in-use flag, its group, its `names`."""
    return [slots.accordion, *slots.in_use, *slots.groups, *[slot[name] for slot in slots.fields for name in names]]


def restored_values(slots: Slots, names: tuple[str, ...], entries: list[dict[str, Any]]) -> list[Any]:
    """The values for `restore_outputs`: the list opened when it has entries, the first slots in use with the
    entries' settings, the others hidden."""
    count = len(slots.fields)
    used = [i < len(entries) for i in range(count)]
    values = [entries[i].get(name, gr.skip()) if used[i] else gr.skip() for i in range(count) for name in names]
    return [gr.Accordion(open=True) if entries else gr.skip(), *used, *[gr.Group(visible=on) for on in used],
            *values]


def slot_units(slots: Slots, v: dict) -> list[UnitInput]:
    """The units of the slots in use, in order, from the form's values (`v`: component -> value); the painted
    strokes over a slot's map are its region mask."""
    units = []
    for n, (on, fields) in enumerate(zip(slots.in_use, slots.fields), start=2):
        if not v.get(on):
            continue
        values = {name: v[component] for name, component in fields.items()}
        painted = values["image"] if isinstance(values["image"], dict) else None
        image = painted.get("background") if painted else values["image"]  # the strokes are the mask, not map
        units.append(UnitInput(values["source"], image, kind=values["kind"],
                               strength=as_float(values["strength"], f"condition {n} strength"),
                               start=as_float(values["start"], f"condition {n} start"),
                               end=as_float(values["end"], f"condition {n} end"),
                               control_mode=values["control_mode"], controlnet=values["controlnet"] or None,
                               mask=painted))
    return units


def slot_references(slots: Slots, v: dict) -> list[ImagePrompt]:
    """The reference pictures of the slots in use, in order (their files read by the Studio)."""
    return [ImagePrompt(v[fields["image"]], scale=as_float(v[fields["scale"]], f"reference {n} scale"),
                        preset=v[fields["preset"]], mask=v[fields["mask"]])
            for n, (on, fields) in enumerate(zip(slots.in_use, slots.fields), start=1) if v.get(on)]


__all__ = ["Slots", "reference_slots", "slot_references", "slot_units", "unit_slots", "wire_slots"]
