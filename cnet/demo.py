"""The built-in demo model: what runs when Stable Diffusion is not on this machine and cannot be fetched.

A tiny Stable-Diffusion-shaped pipeline and its ControlNet, trained from scratch with this project's own code on
coloured circles (the `shapes` package; recipe in examples/shapes/recipe.sh). It makes 64x64 images of one circle.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from common.env import env_text

from .families import LivePreset
from .kinds import BASE_MODEL_ENV, DEFAULT_BASE_MODEL

# A demo's live mode unless its plugin says otherwise: the default sampler at a few steps (a demo has no few-step
# LoRA), its own VAE.
DEMO_LIVE = LivePreset(steps=4, cpu_steps=4, side=64, cpu_side=64, few_step=False, fast_decode=False)

# The package that offers the offline demo model: it plugs itself in through a `demo_model()` function returning
# {"base": folder, "controlnet": folder, "size": px}. The studio ships `shapes` (coloured circles); generation
# never imports it by name, so another demo (or none) is a setting.
DEMO_PLUGIN_ENV = "CNET_DEMO_PLUGIN"
DEFAULT_DEMO_PLUGIN = "shapes"


@dataclass(frozen=True)
class DemoModel:
    """The offline demo: a base model folder, its ControlNet, and the one size it makes."""

    base: Path
    controlnet: Path
    size: int
    live: LivePreset = DEMO_LIVE  # its live mode: its own steps, no few-step LoRA or TAESD, its one size
    # sampler -> steps -> the share of the default's control kept there (measured by the plugin's author)
    fidelity_kept: Mapping[str, Mapping[int, float]] = field(default_factory=dict)

    def fidelity_note(self, scheduler: str, steps: int) -> str:
        """A line for people when `steps` of `scheduler` were measured to keep less than 90% of the default's control
        on this demo ("" otherwise, or when not measured)."""
        from .live import FIDELITY_WARNING_BELOW

        sampler = "ddim" if scheduler in ("", "default") else scheduler
        kept = self.fidelity_kept.get(sampler, {}).get(int(steps))
        if kept is None or kept >= FIDELITY_WARNING_BELOW:
            return ""
        effect = "the circle is mostly lost" if kept < 0.5 else "expect the circle to be followed loosely"
        return (f"On the demo model, {sampler.upper()} at {int(steps)} step{'s' if steps != 1 else ''} kept "
                f"{kept:.0%} of the 20-step default's control (circle IoU, measured): {effect}.")


@functools.cache
def demo_model() -> DemoModel | None:
    """The demo plugged in (CNET_DEMO_PLUGIN, default `shapes`), or None when that package is not importable."""
    name = env_text(DEMO_PLUGIN_ENV) or DEFAULT_DEMO_PLUGIN
    try:
        offered = importlib.import_module(name).demo_model()
    except (ImportError, AttributeError):
        return None
    live = offered.get("live") or {}
    steps = int(live.get("steps", DEMO_LIVE.steps))
    return DemoModel(Path(offered["base"]), Path(offered["controlnet"]), int(offered["size"]),
                     replace(DEMO_LIVE, steps=steps, cpu_steps=steps, side=int(offered["size"]),
                             cpu_side=int(offered["size"]), fidelity_kept=live.get("fidelity_kept")),
                     {name: {int(k): float(v) for k, v in by_steps.items()}
                      for name, by_steps in (offered.get("fidelity_kept") or {}).items()})


def __getattr__(name: str) -> Any:
    """DEMO_BASE, DEMO_CONTROLNET and DEMO_SIZE: the plugged-in demo's, read when first asked for."""
    fields = {"DEMO_BASE": "base", "DEMO_CONTROLNET": "controlnet", "DEMO_SIZE": "size"}
    if name in fields:
        demo = demo_model()
        if demo is None:
            raise AttributeError(f"no demo model is plugged in ({DEMO_PLUGIN_ENV}={env_text(DEMO_PLUGIN_ENV)!r})")
        return getattr(demo, fields[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

DEMO_NOTICE = (
    "Stable Diffusion is not on this machine and the Hugging Face Hub is unreachable, so the built-in demo model "
    "is running: a tiny model trained from scratch on coloured circles (64x64). Draw a circle outline and prompt, "
    "for example, 'red circle with blue background'. To use Stable Diffusion: `hf download "
    f"{DEFAULT_BASE_MODEL}` (and the ControlNet you need) where there is network, or set {BASE_MODEL_ENV} to a "
    "local copy."
)


def demo_available() -> bool:
    """True when a demo is plugged in and its base and ControlNet are on disk."""
    demo = demo_model()
    return demo is not None and (demo.base / "model_index.json").is_file() and (
        demo.controlnet / "config.json").is_file()


def default_base_missing() -> bool:
    """True when the user asked for nothing special (no CNET_BASE_MODEL) and SD1.5 is neither cached nor reachable."""
    if env_text(BASE_MODEL_ENV):
        return False
    from huggingface_hub import try_to_load_from_cache

    from common.models import hub_is_offline

    cached = isinstance(try_to_load_from_cache(DEFAULT_BASE_MODEL, "model_index.json"), str)
    return not cached and hub_is_offline()


def use_demo() -> bool:
    """Fall back to the demo model? (SD1.5 is missing, and the demo is shipped.)"""
    return demo_available() and default_base_missing()


def on_demo(controlnets: list[str | None], settings: dict[str, Any]) -> tuple[list[str | None], dict[str, Any]]:
    """A run on the demo model (no base model was named and Stable Diffusion is missing): each unit without a
    ControlNet takes the demo's (circle outlines), and the size is the one the demo knows. The CLI and the app both
    decide this here. Returns the ControlNets and the settings, changed copies; a RequestError for an edit that
    changes the picture's size (outpaint, upscale), which one size cannot do."""
    from .operations import get_operation
    from .params import RequestError

    demo = demo_model()
    operation = settings.get("operation")
    if operation and get_operation(str(operation)).resizes:  # it would come back at the one size, unchanged in size
        raise RequestError(f"operation={operation!r} needs Stable Diffusion: the offline demo model makes "
                           f"{demo.size}x{demo.size} pictures only, so it can neither extend nor enlarge one. On the "
                           "demo, img2img and inpaint work; 'Model details' says how to get Stable Diffusion")
    return ([net or str(demo.controlnet) for net in controlnets], {**settings, "width": demo.size, "height": demo.size})


def few_step_on(settings: dict[str, Any], base_model: Any, demo: bool, single_file_config: str | None = None
                ) -> dict[str, Any]:
    """The settings with few-step mode added (the base family's LCM-LoRA and sampler; cnet.families'
    `few_step_settings`), or a RequestError naming why it cannot run: the demo model has no few-step LoRA, or the
    family has none. `base_model` None: the configured default."""
    from .families import base_family, few_step_settings
    from .kinds import base_model_source
    from .params import RequestError

    if demo:
        raise RequestError("few-step mode needs Stable Diffusion and its LCM-LoRA; the offline demo model has no "
                           "few-step LoRA")
    try:
        return few_step_settings(base_family(base_model or base_model_source(), single_file_config), settings)
    except ValueError as err:
        raise RequestError(str(err)) from None


__all__ = ["DEMO_NOTICE", "DemoModel", "demo_model", "demo_available", "default_base_missing",
           "use_demo", "on_demo", "few_step_on"]
