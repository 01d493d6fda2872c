"""cnet: Stable Diffusion + ControlNet generation through diffusers, with the paper's prompt modes.

Importing this package loads no model and does not import torch; `Engine` does the work on first use.
"""

from .kinds import KINDS, ConditionKind, get_kind
from .request import (
    DEFAULT_PROMPT,
    ControlUnit,
    GenerationRequest,
    Limits,
    PromptMode,
    RequestError,
    resolve_prompt,
)

__all__ = [
    "DEFAULT_PROMPT", "KINDS", "ConditionKind", "ControlUnit", "Engine", "GenerationRequest", "GenerationResult",
    "Limits", "PromptMode", "RequestError", "get_kind", "resolve_prompt",
]


def __getattr__(name: str):
    # Engine pulls in diffusers lazily so that `import cnet` stays fast (the app imports it at start-up).
    if name in ("Engine", "GenerationCancelled"):
        from . import engine

        return getattr(engine, name)
    if name == "GenerationResult":
        from .result import GenerationResult

        return GenerationResult
    raise AttributeError(f"module 'cnet' has no attribute {name!r}")
