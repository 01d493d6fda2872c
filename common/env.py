"""Settings from environment variables: one reading of "is this flag on?" and of bounded numbers, for every module."""

from __future__ import annotations

import os

TRUE = ("1", "true", "yes", "on")


def env_flag(name: str, default: bool = False) -> bool:
    """True when `name` is 1/true/yes/on (any case), False when it is set to anything else, `default` when unset."""
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in TRUE


def env_int(name: str, default: int, low: int, high: int) -> int:
    """A whole number from `name`, clamped to [low, high]; `default` when unset or not a number."""
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        value = default
    return max(low, min(high, value))
