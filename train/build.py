"""`python -m train build-dataset`: a folder of photos -> a training set in the metadata.jsonl layout.

Each photo gets the kind's condition map (through `annotators`) and, optionally, a BLIP caption (through cnet's
captioner); unreadable photos are skipped and reported.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from annotators import ImageInputError, detect, to_rgb_array
from annotators.cli import IMAGE_SUFFIXES
from annotators.detect import Loading
from cnet.kinds import get_kind


def build_dataset(photos: str | Path, kind: str, out: str | Path, *, caption: str = "blip",
                  caption_model: str | None = None, resolution: int = 512, default_text: str = "") -> dict:
    """Write out/images, out/conditioning_images and out/metadata.jsonl; return counts and skipped files.

    Under `accelerate launch` each process takes every n-th photo (common/shares.py) and records its rows in its own
    `metadata.part-*.jsonl` as it goes; the first process merges them into metadata.jsonl once all have finished.
    Rows are known by their photo's path, so a stopped build (or one given new photos) makes only what is missing;
    the folder keeps its settings (`build.json`) and refuses others."""
    from PIL import Image
    from tqdm import tqdm

    from common.shares import Share

    source, target = Path(photos), Path(out)
    if not source.is_dir():
        raise ValueError(f"--photos={str(source)!r} is not a folder")
    if caption not in ("blip", "none"):
        raise ValueError(f"--caption={caption!r} must be 'blip' or 'none'")
    condition = get_kind(kind)
    if condition.needs_mask:
        raise ValueError(f"--kind={kind!r} is made from a picture and a mask when editing, not from one photo")
    share = Share.from_env()
    target.mkdir(parents=True, exist_ok=True)
    _check_settings(target, {"kind": kind, "resolution": resolution, "caption": caption,
                             "caption_model": caption_model, "text": default_text})
    captioner = _captioner(caption_model, share) if caption == "blip" else None
    (target / "images").mkdir(parents=True, exist_ok=True)
    (target / "conditioning_images").mkdir(exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    # Rows are known by their photo (its path under --photos), whichever process or launch made them.
    recorded = {row["source"] for part in target.glob("metadata.part-*.jsonl") for row in _read_rows(part)}
    part = target / f"metadata{share.suffix or '.part-000-of-001'}.jsonl"
    written, skipped = 0, []
    loading = Loading(device=share.device())  # None: automatic
    for path in tqdm(share.take(files), desc=f"building {kind} dataset", unit="photo", disable=share.rank > 0):
        relative = str(path.relative_to(source))
        if relative in recorded:
            continue
        try:
            rgb = to_rgb_array(path, what=str(path))
            made = detect(condition.annotator, rgb, detect_resolution=resolution, loading=loading)
        except ImageInputError as err:
            skipped.append(f"{path}: {err}")
            continue
        photo = Image.fromarray(rgb).resize(made.size, Image.Resampling.LANCZOS)
        name = f"{path.stem[:40]}-{hashlib.sha1(relative.encode()).hexdigest()[:10]}.png"
        photo.save(target / "images" / name)
        made.save(target / "conditioning_images" / name)
        text = captioner(photo) if captioner else default_text
        row = {"image": f"images/{name}", "conditioning_image": f"conditioning_images/{name}",
               "text": text or default_text or "a photo", "source": relative}
        with open(part, "a") as f:  # the row after its files: a row on record always has them
            f.write(json.dumps(row) + "\n")
        written += 1
    rows = _merge(target, share)
    return {"rows": rows if rows is not None else written, "merged": rows is not None, "skipped": skipped,
            "out": str(target)}


def _captioner(caption_model: str | None, share: Any) -> Any:
    """BLIP on this process's own device (cnet/captioner.py)."""
    from cnet.captioner import Captioner
    from common.models import pick_device

    return Captioner(caption_model, device=share.device() or pick_device())


def _check_settings(target: Path, settings: dict) -> None:
    """A folder keeps the settings it was built with: resuming with others would mix two datasets."""
    saved_file = target / "build.json"
    if saved_file.is_file():
        saved = json.loads(saved_file.read_text())
        differs = sorted(k for k in {**saved, **settings} if saved.get(k) != settings.get(k))
        if differs:
            raise ValueError(f"--out={str(target)!r} was built with other settings ({', '.join(differs)}: "
                             f"{ {k: saved.get(k) for k in differs} }): choose an empty folder, or the same settings")
        return
    tmp = target / f".build.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(settings, indent=2))
    os.replace(tmp, saved_file)  # every process writes the same content


def _read_rows(part: Path) -> list[dict]:
    """A part's rows; a line cut short (a run killed mid-write) is dropped, and its photo made again."""
    rows = []
    if part.is_file():
        for line in part.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
    return rows


def _merge(target: Path, share: Any, wait_seconds: float = 3600.0) -> int | None:
    """metadata.jsonl from every process's rows, in photo order. The first process merges once every process of
    this launch has finished (each leaves a marker naming the launch); the others return None. A merge that waited
    too long is left to the next run of the same command (it resumes and merges)."""
    import time

    launch = os.environ.get("TORCHELASTIC_RUN_ID") or str(os.getppid())
    marker = target / f"done{share.suffix or '.part-000-of-001'}"
    marker.write_text(launch)
    if share.rank != 0:
        return None
    markers = [target / f"done.part-{rank:03d}-of-{share.world:03d}" for rank in range(share.world)]
    deadline = time.monotonic() + wait_seconds
    while not all(m.is_file() and m.read_text() == launch for m in markers):
        if time.monotonic() > deadline:
            return None
        time.sleep(1.0)
    rows = {row["source"]: row for part in sorted(target.glob("metadata.part-*.jsonl")) for row in _read_rows(part)}
    tmp = target / f".metadata.jsonl.{os.getpid()}.tmp"
    tmp.write_text("".join(json.dumps(rows[k]) + "\n" for k in sorted(rows)))
    os.replace(tmp, target / "metadata.jsonl")
    return len(rows)
