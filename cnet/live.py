"""Live mode: a picture after each stroke, with the fastest recipe per family that keeps the control.

A live frame is a normal generation with the family's live preset applied to the request's settings: its few-step
LoRA and sampler (the few-step mode's), fewer steps, the tiny autoencoder for the decode, and a smaller size on a
CPU. The seed stays the caller's, so the picture evolves with the drawing instead of jumping. What a preset costs in
time and in control is measured (`python -m bench.live`, `python -m bench.fidelity`; README "Live mode").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .families import FAMILIES, Family, LivePreset, base_family

# A live frame that keeps less of the default's control than this (on the demo model's circle IoU) says so where
# live mode is switched on.
FIDELITY_WARNING_BELOW = 0.9


def live_size(width: int | None, height: int | None, side: int, multiple: int = 8, default: int = 512
              ) -> tuple[int, int]:
    """The output size of a live frame: the asked size (or `default` square) scaled down so its longer side is at
    most `side`, in multiples of `multiple`; never scaled up."""
    w, h = width or default, height or default
    scale = min(1.0, side / max(w, h))
    return (max(multiple, int(w * scale) // multiple * multiple), max(multiple, int(h * scale) // multiple * multiple))


def live_settings(preset: LivePreset, family: Family, settings: Mapping[str, Any], *, device: str,
                  fast_decode: bool = True) -> dict[str, Any]:
    """The request settings of a live frame: `settings` with the preset's steps, size and TAESD decode (when
    `fast_decode`: the tiny autoencoder is on this machine). With `preset.few_step` the sampler and guidance are
    left for the few-step mode to set (the caller runs it with few-step on: `few_step_settings` adds the family's
    LoRA). The caller's prompt, seed and units' settings are kept."""
    out = dict(settings)
    if preset.few_step:
        out.pop("guidance_scale", None)  # the LoRA's own guidance (1: no CFG, half the work)
        out["scheduler"] = "default"
    out["num_inference_steps"] = preset.steps_on(device)
    out["width"], out["height"] = live_size(out.get("width"), out.get("height"), preset.side_on(device),
                                            family.size_multiple, family.default_side)
    out["fast_decode"] = bool(preset.fast_decode and fast_decode)
    out["num_images"] = 1
    return out


def live_preset_for(base_model: Any, demo: Any = None, single_file_config: str | None = None
                    ) -> tuple[LivePreset, Family]:
    """The live preset and family of a run: the demo's own (`demo`, a `DemoModel`, when the run is on it), else the
    base family's (`base_model` None: the configured default). RequestError naming the family when it has none."""
    from .kinds import base_model_source
    from .params import RequestError

    if demo is not None:
        return demo.live, FAMILIES["sd15"]
    family = base_family(base_model or base_model_source(), single_file_config)
    if family.live is None:
        raise RequestError(f"live mode has no preset for {family.label} (a frame there takes far longer than a "
                           "stroke); use Generate, or an SD 1.x or SDXL base")
    return family.live, family


def describe_preset(preset: LivePreset, family_label: str, device: str) -> str:
    """One line for people: what a live frame runs (shown where live mode is switched on)."""
    side = preset.side_on(device)
    steps = preset.steps_on(device)
    recipe = f"{steps} step{'s' if steps > 1 else ''}" + (", the few-step LoRA" if preset.few_step else "") + \
        (", TAESD decode" if preset.fast_decode else "") + f", at most {side} px"
    line = f"Live preset for {family_label} on {device.split(':')[0].upper()}: {recipe}."
    if preset.fidelity_kept is not None:
        line += f" It keeps {preset.fidelity_kept:.0%} of the default's control (measured)"
        line += (": expect looser control than Generate." if preset.fidelity_kept < FIDELITY_WARNING_BELOW else ".")
    return line


__all__ = ["FIDELITY_WARNING_BELOW", "LivePreset", "describe_preset", "live_preset_for", "live_settings",
           "live_size"]
