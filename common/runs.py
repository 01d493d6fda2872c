"""The on-disk layout of a training run's checkpoints, read by the trainer (train/checkpoint.py, which writes them)
and by `python -m cnet eval --run` (which scores each one): `OUTPUT_DIR/checkpoints/step-00000100/`, complete once
its marker is written."""

from __future__ import annotations

import re
from pathlib import Path

MARKER = "COMPLETE.json"  # written last: a folder without it is an interrupted write and is never resumed from
NAME = re.compile(r"^step-(\d{8})$")


def checkpoint_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoints"


def complete_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of every complete checkpoint, oldest first."""
    folder = checkpoint_dir(output_dir)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = NAME.match(child.name)
        if match and (child / MARKER).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)
