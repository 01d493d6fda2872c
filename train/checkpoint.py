"""Checkpoints that lose nothing: written to a temporary folder, flushed to disk, marked complete with the size and
SHA-256 of every file, renamed into place; old ones are pruned only after the new one is complete; `latest` only ever
picks a complete one whose files still match their marker, falling back to an older one when the newest is damaged."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from common.runs import MARKER, checkpoint_dir, complete_checkpoints


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the previous complete one is untouched."""


def verify_checkpoint(folder: str | Path) -> str | None:
    """None when the checkpoint is intact, else what is wrong with it: no marker, an unreadable marker, a file
    missing, of another size or with another SHA-256 than the marker recorded (a flaky disk, a copy cut short), or
    weights that are not finite (a run that diverged before this project stopped such runs; a marker that records
    its weights were checked finite when written spares reading them again)."""
    folder = Path(folder)
    try:
        marker = json.loads((folder / MARKER).read_text())
    except FileNotFoundError:
        return f"no {MARKER} (an interrupted write?)"
    except (OSError, ValueError) as err:
        return f"its {MARKER} is unreadable ({err})"
    files = marker.get("files") if isinstance(marker, dict) else None
    if not isinstance(files, dict):  # written before markers listed their files: check what resuming reads
        files = {"trainer_state.json": None}
    for name, expected in sorted(files.items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if expected is None:
            continue
        size = path.stat().st_size
        if size != expected["size"]:
            return f"{name} is {size} bytes, {expected['size']} were written"
        if _sha256(path) != expected["sha256"]:
            return f"{name} is damaged (its SHA-256 differs from the one written)"
    # Checked finite when written, and the files are those written (their SHA-256 above).
    if isinstance(marker, dict) and marker.get("finite") is True:
        return None
    from .finite import nonfinite_weights_in

    try:
        return nonfinite_weights_in(folder)
    except ValueError as err:
        return str(err)


def find_resume(output_dir: str | Path, resume: str, warn: Callable[[str], None] | None = None) -> Path:
    """The checkpoint named by `resume`: 'latest' (the newest intact one; damaged newer ones are named through
    `warn` and skipped) or a folder, which must be intact."""
    warn = warn or (lambda message: print(f"warning: {message}", file=sys.stderr, flush=True))
    if resume == "latest":
        found = complete_checkpoints(output_dir)
        if not found:
            raise CheckpointError(f"--resume latest: no complete checkpoint in {checkpoint_dir(output_dir)}")
        problems = []
        for _, folder in reversed(found):
            problem = verify_checkpoint(folder)
            if problem is None:
                return folder
            problems.append(f"{folder.name}: {problem}")
            warn(f"checkpoint {folder} is damaged ({problem}); trying an older one")
        raise CheckpointError(f"--resume latest: every checkpoint in {checkpoint_dir(output_dir)} is damaged: "
                              + "; ".join(problems))
    path = Path(resume)
    if not (path / MARKER).is_file():
        raise CheckpointError(f"--resume {resume}: not a complete checkpoint (no {MARKER}; an interrupted write?)")
    problem = verify_checkpoint(path)
    if problem:
        raise CheckpointError(f"--resume {resume}: the checkpoint is damaged: {problem}")
    return path


def is_disk_full(err: BaseException) -> bool:
    """True when `err` (or what caused it) says the disk is full, in any of the ways libraries say it: OSError
    ENOSPC, safetensors' and torch's own wrappers ("No space left", "unexpected pos" from torch's zip writer)."""
    return _says_enospc(err) or any("No space left" in str(e) or "unexpected pos" in str(e)
                                    or "Disk quota exceeded" in str(e) for e in _causes(err))


def describe_write_error(err: BaseException, path: Path) -> str:
    """What to tell the user when writing under `path` failed."""
    if is_disk_full(err):
        try:
            free_mb = shutil.disk_usage(path if path.exists() else path.parent).free / 2**20
        except OSError:
            free_mb = None
        # torch's "unexpected pos" also follows other write failures: only a nearly full disk is called full.
        if free_mb is None or free_mb < 64 or _says_enospc(err):
            return f"no space left on {path}" + (f" ({free_mb:.1f} MB free)" if free_mb is not None else "")
    return f"{type(err).__name__}: {err}"


def _says_enospc(err: BaseException) -> bool:
    return any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT) for e in _causes(err))


def _causes(err: BaseException | None) -> Iterator[BaseException]:
    """`err`, then what caused it, and so on (libraries wrap the OSError that says what happened)."""
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def write_atomically(output_dir: str | Path, step: int, write: Any, info: dict[str, Any], keep: int) -> Path:
    """Call `write(tmp_folder)`, flush every file to disk, add the marker (with each file's size and SHA-256),
    rename to `step-XXXXXXXX`, then prune to the `keep` newest.

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
        files = {}
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            _fsync(path)
            files[path.relative_to(tmp).as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
        for folder in sorted((p for p in tmp.rglob("*") if p.is_dir()), reverse=True):
            _fsync(folder)
        with open(tmp / MARKER, "w") as f:
            json.dump({"step": step, **info, "files": files}, f)
            f.flush()
            os.fsync(f.fileno())
        _fsync(tmp)
        if final.exists():  # a re-run of the same step: replace it only now that the new one is complete
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync(root)  # the rename itself reaches the disk
    except Exception as err:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = complete_checkpoints(output_dir)
        kept = f"; the previous checkpoint {previous[-1][1].name} is intact" if previous else ""
        raise CheckpointError(f"could not write the checkpoint for step {step}: "
                              f"{describe_write_error(err, root)}{kept}") from err
    # Checkpoints of later steps belong to a timeline this run left (it resumed from an older one, perhaps past a
    # damaged newer one): set aside, never resumed from or counted, never deleted. Then keep the `keep` newest,
    # the one just written always among them.
    for later_step, later in complete_checkpoints(output_dir):
        if later_step > step:
            os.replace(later, root / f"superseded-{later.name}-{os.getpid()}")
    for _, old in complete_checkpoints(output_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's entries') data to the disk, so a power cut cannot leave a marked checkpoint
    whose files were still in the page cache. (Windows cannot open a folder for this; there, files only.)"""
    if os.name == "nt" and path.is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
