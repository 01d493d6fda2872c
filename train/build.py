"""`python -m train build-dataset`: a folder of photos -> a training set in the metadata.jsonl layout.

Each photo gets the kind's condition map (through `annotators`) and, optionally, a BLIP caption (through cnet's
captioner); unreadable photos are skipped and reported.
"""

from __future__ import annotations

import json
from pathlib import Path

from annotators import ImageInputError, detect, to_rgb_array
from annotators.cli import IMAGE_SUFFIXES
from cnet.kinds import get_kind


def build_dataset(photos: str | Path, kind: str, out: str | Path, *, caption: str = "blip",
                  caption_model: str | None = None, resolution: int = 512, default_text: str = "") -> dict:
    """Write out/images, out/conditioning_images and out/metadata.jsonl; return counts and skipped files.

    Under `accelerate launch` each process takes every n-th photo (cnet/shares.py) and records its rows in its own
    `metadata.part-*.jsonl` as it goes; the last process to finish merges them into metadata.jsonl. A photo's files
    are named by its place in the sorted list, so a stopped build resumes where it was (recorded rows are kept)."""
    from PIL import Image
    from tqdm import tqdm

    from cnet.shares import Share

    source, target = Path(photos), Path(out)
    if not source.is_dir():
        raise ValueError(f"--photos={str(source)!r} is not a folder")
    if caption not in ("blip", "none"):
        raise ValueError(f"--caption={caption!r} must be 'blip' or 'none'")
    condition = get_kind(kind)
    if condition.needs_mask:
        raise ValueError(f"--kind={kind!r} is made from a picture and a mask when editing, not from one photo")
    share = Share.from_env()
    captioner = None
    if caption == "blip":
        from cnet.captioner import Captioner
        from cnet.models import pick_device

        captioner = Captioner(caption_model, device=share.device() or pick_device())
    (target / "images").mkdir(parents=True, exist_ok=True)
    (target / "conditioning_images").mkdir(exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    part = target / f"metadata{share.suffix or '.part-000-of-001'}.jsonl"
    recorded = {row["index"] for row in _read_rows(part)}
    written, skipped = 0, []
    options = {"device": share.device()} if share.device() else {}
    for index, path in tqdm(share.take(list(enumerate(files))), desc=f"building {kind} dataset", unit="photo",
                            disable=share.rank > 0):
        if index in recorded:
            continue
        try:
            rgb = to_rgb_array(path, what=str(path))
            made = detect(condition.annotator, rgb, detect_resolution=resolution, **options)
        except ImageInputError as err:
            skipped.append(f"{path}: {err}")
            continue
        photo = Image.fromarray(rgb).resize(made.size, Image.Resampling.LANCZOS)
        name = f"{index:06d}.png"
        photo.save(target / "images" / name)
        made.save(target / "conditioning_images" / name)
        text = captioner(photo) if captioner else default_text
        row = {"index": index, "image": f"images/{name}", "conditioning_image": f"conditioning_images/{name}",
               "text": text or default_text or "a photo", "source": str(path.relative_to(source))}
        with open(part, "a") as f:  # the row after its files: a row on record always has them
            f.write(json.dumps(row) + "\n")
        written += 1
    (target / f"{part.stem}.done").write_text("")
    rows = _merge_when_all_done(target, share.world)
    return {"rows": rows if rows is not None else written, "merged": rows is not None, "skipped": skipped,
            "out": str(target)}


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


def _merge_when_all_done(target: Path, world: int) -> int | None:
    """metadata.jsonl from every process's part, in photo order, once all of them finished (None before). Written
    to a temporary file and renamed: two processes finishing together write the same file."""
    import os

    parts = sorted(target.glob(f"metadata.part-*-of-{world:03d}.jsonl"))
    if len(list(target.glob(f"metadata.part-*-of-{world:03d}.done"))) < world:
        return None
    rows = sorted((row for part in parts for row in _read_rows(part)), key=lambda row: row["index"])
    tmp = target / f".metadata.jsonl.{os.getpid()}.tmp"
    tmp.write_text("".join(json.dumps({k: v for k, v in row.items() if k != "index"}) + "\n" for row in rows))
    os.replace(tmp, target / "metadata.jsonl")
    return len(rows)
