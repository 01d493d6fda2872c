"""The built-in demo model: what runs when Stable Diffusion is not on this machine and cannot be fetched.

A tiny Stable-Diffusion-shaped pipeline and its ControlNet, trained from scratch with this project's own code on
coloured circles (the `shapes` package; recipe in examples/shapes/recipe.sh). It makes 64x64 images of one circle.
"""

from __future__ import annotations

import os

from shapes import DEMO_BASE, DEMO_CONTROLNET, DEMO_SIZE  # paths only: the demo package imports nothing heavy

from .kinds import BASE_MODEL_ENV, DEFAULT_BASE_MODEL

DEMO_NOTICE = (
    "Stable Diffusion is not on this machine and the Hugging Face Hub is unreachable, so the built-in demo model "
    "is running: a tiny model trained from scratch on coloured circles (64x64). Draw a circle outline and prompt, "
    "for example, 'red circle with blue background'. To use Stable Diffusion: `hf download "
    f"{DEFAULT_BASE_MODEL}` (and the ControlNet you need) where there is network, or set {BASE_MODEL_ENV} to a "
    "local copy."
)


def demo_available() -> bool:
    """True when the demo base and ControlNet are present in examples/shapes/."""
    return (DEMO_BASE / "model_index.json").is_file() and (DEMO_CONTROLNET / "config.json").is_file()


def default_base_missing() -> bool:
    """True when the user asked for nothing special (no CNET_BASE_MODEL) and SD1.5 is neither cached nor reachable."""
    if os.environ.get(BASE_MODEL_ENV):
        return False
    from huggingface_hub import try_to_load_from_cache

    from .models import hub_is_offline

    cached = isinstance(try_to_load_from_cache(DEFAULT_BASE_MODEL, "model_index.json"), str)
    return not cached and hub_is_offline()


def use_demo() -> bool:
    """Fall back to the demo model? (SD1.5 is missing, and the demo is shipped.)"""
    return demo_available() and default_base_missing()


__all__ = ["DEMO_BASE", "DEMO_CONTROLNET", "DEMO_NOTICE", "DEMO_SIZE", "demo_available", "default_base_missing",
           "use_demo"]
