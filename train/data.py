"""Training data: the rows of a dataset (cnet/datasets.py reads the layouts) as the tensors a step takes.

`ControlNetDataset` checks each folder row's files when it loads them (train/bad_rows.py `RowLedger`): a bad row
stops the run with its number and file, or, with `skip_bad_rows`, is skipped, counted and named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnet.datasets import (
    TRAINING_FORMATS,
    DataError,
    LoadedRows,
    Row,
    check_row_file,
    load_image,
    load_rows,
)

from .bad_rows import RowLedger

# Read from here by the trainer's modules and by callers that knew them here.
__all__ = ["TRAINING_FORMATS", "ControlNetDataset", "DataError", "LoadedRows", "Row", "collate", "load_image",
           "load_rows", "resize_and_crop"]


def resize_and_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Short side to `resolution`, then a centre crop to a square (the same geometry for image and map)."""
    w, h = image.size
    scale = resolution / min(w, h)
    resized = image.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))),
                           Image.Resampling.BICUBIC)
    left = (resized.width - resolution) // 2
    top = (resized.height - resolution) // 2
    return resized.crop((left, top, left + resolution, top + resolution))


class ControlNetDataset:
    """Rows as tensors: `pixel_values` in [-1, 1] (the VAE's range), `conditioning_pixel_values` in [0, 1].
    With `with_pixels=False` (the latents are precomputed) the target image is neither decoded nor returned.

    Each row is checked when it is loaded (`ledger`, strict unless told otherwise): a folder row whose file is
    missing, leads out of the folder or does not decode stops the run naming it, or, when bad rows are skipped, the
    next usable row takes its place (the batch keeps its size; `index` says which row was used)."""

    def __init__(self, rows: list[Row], resolution: int, with_pixels: bool = True,
                 ledger: RowLedger | None = None) -> None:
        self.rows = rows
        self.resolution = resolution
        self.with_pixels = with_pixels
        self.ledger = ledger or RowLedger("the dataset", len(rows))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        for offset in range(len(self.rows)):
            index = (i + offset) % len(self.rows)
            if self.ledger.is_bad(index):
                continue
            try:
                item = self._load(index)
            except DataError as err:
                self.ledger.found_bad(index, self.rows[index].name, str(err))
                continue
            self.ledger.good(index)
            return item
        raise DataError(f"{self.ledger.dataset}: none of its {len(self.rows)} rows could be loaded")

    def _load(self, index: int) -> dict[str, Any]:
        import torch

        row = self.rows[index]
        pictures = {}
        columns = [("image", row.image)] if self.with_pixels else []
        for column, value in (*columns, ("conditioning image", row.conditioning)):
            pictures[column] = np.asarray(resize_and_crop(_loaded(row, column, value), self.resolution), np.float32)
        item = {"conditioning_pixel_values": torch.from_numpy(pictures["conditioning image"] / 255.0).permute(2, 0, 1),
                "text": row.text, "index": index}
        if self.with_pixels:
            item["pixel_values"] = torch.from_numpy(pictures["image"] / 127.5 - 1.0).permute(2, 0, 1)
        return item


def _loaded(row: Row, column: str, value: Any) -> Image.Image:
    """One of a row's images, decoded; DataError naming what is wrong with it (the row is named by the caller)."""
    if row.root is not None and isinstance(value, (str, Path)):
        name = os.path.relpath(value, row.root)
        problem = check_row_file(row.root, name, "", column, decode=False)
        if problem:
            raise DataError(problem.removeprefix(": "))
        value = str(Path(value).resolve())  # the file just checked, not what a link might point at by now
    try:
        return load_image(value)
    except Exception as err:  # PIL's decoders raise many types for broken files
        raise DataError(f"the {column} {_name(value)} cannot be read ({err})") from err


def _name(value: Any) -> str:
    return str(value) if isinstance(value, (str, Path)) else f"in column '{getattr(value, 'column', '?')}'"


def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    out = {
        "conditioning_pixel_values": torch.stack([b["conditioning_pixel_values"] for b in batch]),
        "text": [b["text"] for b in batch],
        "index": torch.tensor([b["index"] for b in batch]),
    }
    if "pixel_values" in batch[0]:  # absent when the latents are precomputed
        out["pixel_values"] = torch.stack([b["pixel_values"] for b in batch])
    return out
