"""Checkpoints that lose nothing: written to a temporary folder, marked complete, renamed into place; old ones are
pruned only after the new one is complete; `latest` only ever picks a complete one."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

MARKER = "COMPLETE.json"  # written last: a folder without it is an interrupted write and is never resumed from
NAME = re.compile(r"^step-(\d{8})$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the previous complete one is untouched."""


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


def find_resume(output_dir: str | Path, resume: str) -> Path:
    """The checkpoint named by `resume`: 'latest' (newest complete one) or a folder that must be complete."""
    if resume == "latest":
        found = complete_checkpoints(output_dir)
        if not found:
            raise CheckpointError(f"--resume latest: no complete checkpoint in {checkpoint_dir(output_dir)}")
        return found[-1][1]
    path = Path(resume)
    if not (path / MARKER).is_file():
        raise CheckpointError(f"--resume {resume}: not a complete checkpoint (no {MARKER}; an interrupted write?)")
    return path


def write_atomically(output_dir: str | Path, step: int, write: Any, info: dict[str, Any], keep: int) -> Path:
    """Call `write(tmp_folder)`, add the marker, rename to `step-XXXXXXXX`, then prune to the `keep` newest.

    If anything fails (a full disk, say) the temporary folder is removed and every earlier checkpoint stays as it was.
    """
    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = root / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write(tmp)
        with open(tmp / MARKER, "w") as f:
            json.dump({"step": step, **info}, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():  # a re-run of the same step: replace it only now that the new one is complete
            shutil.rmtree(final)
        os.replace(tmp, final)
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = complete_checkpoints(output_dir)
        kept = f"; the previous checkpoint {previous[-1][1].name} is intact" if previous else ""
        raise CheckpointError(f"could not write the checkpoint for step {step}: {err}{kept}") from err
    for _, old in complete_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final
