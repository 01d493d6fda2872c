"""Datasets of (picture, condition, prompt) rows in the layouts people bring, read for training (train/data.py) and
for scoring ControlNets on held-out rows (`python -m cnet eval`).

Layouts: (a) a folder with `metadata.jsonl` (image, conditioning_image, text; the diffusers / Hugging Face layout),
(b) lllyasviel's Fill50K folder (`prompt.json` lines with source, target, prompt), (c) a `datasets` dataset: a Hub id
or a folder written by `save_to_disk`. `load_rows` checks every row, its images decoded, unless told to leave the
files to the reader (`check_files=False`, what training does: its start then does not grow with the number of rows,
and each row is checked when it is loaded, train/bad_rows.py `RowLedger`). A bad row stops the reading with its
number and file, or, with `skip_bad_rows`, is skipped and counted.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image


class DataError(ValueError):
    """A dataset or row cannot be used; the message names the row and the file or column."""


@dataclass(frozen=True)
class Row:
    index: int  # position in the source (line number for jsonl / prompt.json, 0-based)
    image: Any  # a path (str), or a lazily decoded cell of a `datasets` table
    conditioning: Any
    text: str
    where: str = ""  # the row in its source, for messages ("metadata.jsonl line 7")
    root: Path | None = None  # a folder dataset's folder: its files must stay inside it

    @property
    def name(self) -> str:
        """How messages name the row: where it is in its source, or its number."""
        return self.where or f"row {self.index}"


@dataclass
class LoadedRows:
    rows: list[Row]
    skipped: list[str]  # one message per skipped row
    layout: str


def load_rows(dataset: str, *, image_column: str = "image", conditioning_image_column: str = "conditioning_image",
              caption_column: str = "text", skip_bad_rows: bool = False, check_files: bool = True) -> LoadedRows:
    """Read and check the rows of `dataset` (folder or Hub id). With `check_files=False` a folder's files are
    neither opened nor looked up (their names are checked to stay inside the folder): `ControlNetDataset` checks
    each row when it loads it."""
    columns = (image_column, conditioning_image_column, caption_column)
    path = Path(dataset).expanduser()
    if path.is_dir():
        if (path / "metadata.jsonl").is_file():
            layout, raw = "metadata.jsonl", _jsonl(path / "metadata.jsonl", path, columns, check_files)
        elif (path / "prompt.json").is_file():
            layout, raw = "fill50k", _jsonl(path / "prompt.json", path, ("target", "source", "prompt"), check_files)
        elif any((path / name).is_file() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
            layout, raw = "datasets (disk)", _datasets_rows(_load_from_disk(path), columns, str(path))
        else:
            raise DataError(f"dataset={dataset!r}: the folder has no metadata.jsonl, prompt.json or saved dataset")
    elif path.exists() or dataset.startswith((".", "/", "~")):
        raise DataError(f"dataset={dataset!r} is not a folder")
    else:
        layout, raw = "datasets (hub)", _datasets_rows(_load_hub(dataset), columns, dataset)
    rows, skipped = [], []
    for _, row_or_error in raw:
        if isinstance(row_or_error, str):
            if not skip_bad_rows:
                raise DataError(row_or_error + " (use --skip-bad-rows to skip such rows)")
            skipped.append(row_or_error)
        else:
            rows.append(row_or_error)
    if not rows:
        raise DataError(f"dataset={dataset!r} has no usable rows ({len(skipped)} skipped)")
    return LoadedRows(rows, skipped, layout)


def _jsonl(file: Path, root: Path, columns: tuple[str, str, str], check_files: bool = True):
    image_col, cond_col, text_col = columns
    folder = str(root)
    for number, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file.name} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            yield number, f"{where}: not valid JSON ({err.msg})"
            continue
        problem = None
        for col in columns:
            if not isinstance(record.get(col), str) or not record[col].strip():
                problem = f"{where}: column '{col}' is missing or empty"
                break
        for col in (image_col, cond_col) if problem is None else ():
            problem = check_row_file(root, record[col], where, col) if check_files else \
                _check_name(root, record[col], where, col)
            if problem:
                break
        if problem:
            yield number, problem
        else:
            # Strings, not Paths: building 80,000 Path objects took most of a 40,000-row folder's start.
            yield number, Row(number, os.path.join(folder, record[image_col]), os.path.join(folder, record[cond_col]),
                              record[text_col].strip(), where, root)


def _check_name(root: Path, name: str, where: str, column: str) -> str | None:
    """The name alone, without touching the disk: a relative path that stays inside the folder (a link that leads
    out is found when the file is loaded, `check_row_file`)."""
    if os.path.isabs(name) or ".." in name.replace("\\", "/").split("/"):
        return f"{where}: column '{column}' points outside the dataset folder ({name})"
    return None


def check_row_file(root: Path, name: str, where: str, column: str, decode: bool = True) -> str | None:
    """What is wrong with a row's file `name` (inside `root`, a file, and unless `decode` is False an image that
    decodes), named by the row's place `where` and its `column`; None when nothing is."""
    path = (root / name).resolve()
    if root.resolve() not in path.parents:
        return f"{where}: column '{column}' points outside the dataset folder ({name})"
    if not path.is_file():
        return f"{where}: file {name} (column '{column}') does not exist"
    if not decode:
        return None
    try:
        # Decoded, not only verified: `verify()` checks a PNG's checksums but reads no pixel data, so a corrupt
        # deflate stream or a truncated JPEG passes it and fails mid-run. Decoding costs far less than a step.
        load_image(path)
    except Exception as err:  # PIL raises many types for broken files
        return f"{where}: file {name} (column '{column}') is not a usable image ({err})"
    return None


def _load_from_disk(path: Path) -> Any:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    return loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded


def _load_hub(dataset_id: str) -> Any:
    import datasets
    from huggingface_hub import constants

    from common.models import hub_is_offline

    try:
        return datasets.load_dataset(dataset_id, split="train")
    except Exception as err:
        hint = (" The Hugging Face Hub is unreachable: download it where there is network "
                f"(`hf download --repo-type dataset {dataset_id}`) or point --dataset at a local folder."
                if constants.HF_HUB_OFFLINE or hub_is_offline() else "")
        raise DataError(f"dataset={dataset_id!r} could not be loaded: {err}.{hint}") from None


def _datasets_rows(table: Any, columns: tuple[str, str, str], name: str):
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise DataError(f"dataset={name!r} has no column(s) {missing}; it has {table.column_names} "
                        "(set --image-column / --conditioning-image-column / --caption-column)")
    image_col, cond_col, text_col = columns
    texts = table[text_col]
    for index, text in enumerate(texts):
        if not isinstance(text, str) or not text.strip():
            yield index, f"{name} row {index}: column '{text_col}' is empty"
        else:
            yield index, Row(index, _LazyCell(table, index, image_col), _LazyCell(table, index, cond_col), text.strip())


@dataclass(frozen=True)
class _LazyCell:
    """An image inside a datasets table, decoded only when the row is used."""

    table: Any
    index: int
    column: str

    def load(self) -> Image.Image:
        return self.table[self.index][self.column]


# Formats a training image may have (16-bit and float TIFFs included); not ICO or ICNS, whose readers decode on open
# or whose header can state a smaller size than the image holds.
TRAINING_FORMATS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP", "GIF")


def load_image(value: Any) -> Image.Image:
    """A row's image as RGB, decoded as the app decodes uploads (annotators.to_rgb_array): refused over the pixel
    limit (CNET_MAX_IMAGE_PIXELS, 40 MP) before decoding, and when a float image holds NaN or infinite values
    (ImageInputError, a ValueError); 16-bit and float images scaled to 8 bits, EXIF rotation applied (as the maps
    made from the photo by the annotators have it), transparency composited over white."""
    from annotators.images import to_rgb_array

    if isinstance(value, _LazyCell):
        value = value.load()
    return Image.fromarray(to_rgb_array(value, what="image", formats=TRAINING_FORMATS))
