"""How a command was started, for its own help and messages: `cnet` when run through its console script, `python -m
cnet` when run as a module."""

from __future__ import annotations

import sys
from pathlib import Path


def program_name(module: str, script: str) -> str:
    """`script` (the console script's name) when that is what was run, else `python -m module`."""
    return script if Path(sys.argv[0]).name == script else f"python -m {module}"
