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
    """Write out/images, out/conditioning_images and out/metadata.jsonl; return counts and skipped files."""
    from PIL import Image
    from tqdm import tqdm

    source, target = Path(photos), Path(out)
    if not source.is_dir():
        raise ValueError(f"--photos={str(source)!r} is not a folder")
    if caption not in ("blip", "none"):
        raise ValueError(f"--caption={caption!r} must be 'blip' or 'none'")
    condition = get_kind(kind)
    if condition.needs_mask:
        raise ValueError(f"--kind={kind!r} is made from a picture and a mask when editing, not from one photo")
    captioner = None
    if caption == "blip":
        from cnet.captioner import Captioner
        from cnet.models import pick_device

        captioner = Captioner(caption_model, device=pick_device())
    (target / "images").mkdir(parents=True, exist_ok=True)
    (target / "conditioning_images").mkdir(exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    rows, skipped = [], []
    for path in tqdm(files, desc=f"building {kind} dataset", unit="photo"):
        try:
            rgb = to_rgb_array(path, what=str(path))
            made = detect(condition.annotator, rgb, detect_resolution=resolution)
        except ImageInputError as err:
            skipped.append(f"{path}: {err}")
            continue
        photo = Image.fromarray(rgb).resize(made.size, Image.Resampling.LANCZOS)
        name = f"{len(rows):06d}.png"
        photo.save(target / "images" / name)
        made.save(target / "conditioning_images" / name)
        text = captioner(photo) if captioner else default_text
        rows.append({"image": f"images/{name}", "conditioning_image": f"conditioning_images/{name}",
                     "text": text or default_text or "a photo", "source": str(path.relative_to(source))})
    (target / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"rows": len(rows), "skipped": skipped, "out": str(target)}
