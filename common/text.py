"""Text helpers every layer's messages use (the ground floor: it imports nothing of the project)."""

from __future__ import annotations

from typing import Any


def short_repr(value: Any, limit: int = 80) -> str:
    """`repr(value)`, cut to `limit` characters: an error message names a value without repeating a 10 MB one."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
