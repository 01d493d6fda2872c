"""Training data of any size, read as a stream of shards: memory stays flat however many rows there are.

`datasets` does the reading: a Hub dataset with `streaming=True`, or a local folder of shards in a format it
streams (parquet, arrow, or WebDataset `.tar` files, whose fields are named like `0001.image.png`). Each process
reads its own share (`datasets.distributed.split_dataset_by_node`: whole shards when their number divides by the
processes, else every n-th row), so two processes never see the same row.

Rows are checked as they are read: a row whose image or condition cannot be decoded, or whose text is empty, is
skipped, counted and named (shard and key) in `bad_rows.jsonl`; when more than `bad_row_limit` of the rows read are
bad (after the first 100), the run stops, since the data is broken rather than noisy.

Order and resume: see `StreamingRows`. The stream's position (`datasets`' own `state_dict` at a block's start, and
the rows taken from that block) is part of every checkpoint, so a resumed run reads exactly the rows an
uninterrupted one would (datasets' shuffle buffer is not used: its contents are not saved, and a resume would
refill it differently). A process whose share ends first starts its next epoch: every process takes part in every
step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .bad_rows import MIN_ROWS_BEFORE_LIMIT, check_bad_share, record_bad_row
from .data import DataError, load_image, resize_and_crop

SHARD_FORMATS = {".parquet": "parquet", ".arrow": "arrow", ".tar": "webdataset"}


def open_stream(dataset: str, check_shards_first: bool = True) -> Any:
    """`dataset` (a folder of shards or a Hub id) as a `datasets.IterableDataset` that does not decode images; a
    folder's shards are checked first (`check_shards`) unless the caller already did (each epoch reopens it)."""
    import datasets

    path = Path(dataset).expanduser()
    check_streamable(dataset)
    try:
        if path.is_dir():
            shards = {fmt: sorted(str(p) for p in path.rglob(f"*{suffix}")) for suffix, fmt in SHARD_FORMATS.items()}
            found = {fmt: files for fmt, files in shards.items() if files}
            if len(found) != 1:
                raise DataError(f"dataset={dataset!r}: a streamed folder holds shards of one format "
                                f"({', '.join(SHARD_FORMATS)}); found {sorted(found) or 'none'}")
            (fmt, files), = found.items()
            if check_shards_first:
                check_shards(files, fmt)
            stream = datasets.load_dataset(fmt, data_files=files, split="train", streaming=True)
        elif path.exists() or dataset.startswith((".", "/", "~")):
            raise DataError(f"dataset={dataset!r} is not a folder of shards")
        else:
            stream = datasets.load_dataset(dataset, split="train", streaming=True)
    except DataError:
        raise
    except Exception as err:  # datasets raises many types for a missing or unreadable source
        raise DataError(f"dataset={dataset!r} could not be streamed: {err}") from None
    return stream.decode(False)  # images arrive as bytes: a broken one is a bad row, not a crash


def check_shards(files: list[str], fmt: str) -> None:
    """Each local shard opens as its format (its footer or headers only) and has the first shard's columns;
    DataError naming the file and what is wrong otherwise (a truncated, empty or foreign shard used to surface as
    pyarrow's "Could not open Parquet input source '<Buffer>'" mid-run)."""
    first: tuple[str, list[str]] | None = None
    for file in files:
        try:
            columns = _shard_columns(file, fmt)
        except Exception as err:  # pyarrow and tarfile raise many types for a damaged file
            raise DataError(f"shard {file} cannot be read as {fmt} ({type(err).__name__}: {str(err)[:200]}): it is "
                            "damaged, cut short or of another format. Remove it, or write the shards again "
                            "(python -m train shard)") from None
        if first is None:
            first = (file, columns)
        elif fmt != "webdataset" and columns != first[1]:  # a sample of a tar may lack an optional field
            raise DataError(f"shard {file} has the columns {columns}, shard {first[0]} has {first[1]}: the shards "
                            "of one stream share one schema. Remove the odd one, or write the shards again")


def _shard_columns(file: str, fmt: str) -> list[str]:
    """A shard's columns from its schema (parquet's footer, arrow's stream header) or, for a WebDataset tar, the
    field names of its members (`key.field.ext` -> `field.ext`)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return sorted(pq.read_schema(file).names)
    if fmt == "arrow":  # datasets writes the streaming format; Arrow's random-access file format is read too
        import pyarrow as pa

        with pa.memory_map(file) as source:
            try:
                return sorted(pa.ipc.open_stream(source).schema.names)
            except pa.ArrowInvalid:
                source.seek(0)
                return sorted(pa.ipc.open_file(source).schema.names)
    import tarfile

    with tarfile.open(file) as tar:  # fields by the file name's first dot, as datasets splits them
        return sorted({Path(m.name).name.split(".", 1)[1] for m in tar.getmembers()
                       if m.isfile() and "." in Path(m.name).name})


def rows_of(stream: Any, dataset: str) -> Any:
    """The stream's rows; an error while `datasets` reads a shard becomes a DataError naming the dataset and what
    failed, instead of a traceback from pyarrow."""
    rows = iter(stream)
    while True:
        try:
            example = next(rows)
        except StopIteration:
            return
        except Exception as err:  # pyarrow, fsspec and datasets raise many types for a damaged shard
            raise DataError(f"dataset={dataset!r}: reading the stream failed ({type(err).__name__}: "
                            f"{str(err)[:300]}); a shard is damaged or cut short. Remove it, or write the shards "
                            "again (python -m train shard)") from None
        yield example


def check_streamable(dataset: str) -> None:
    """A local folder must hold shards to be streamed (cheap: no `datasets` import); a Hub id is left to `datasets`.
    DataError with what to do otherwise."""
    path = Path(dataset).expanduser()
    if not path.is_dir():
        return
    if not any(next(path.rglob(f"*{suffix}"), None) for suffix in SHARD_FORMATS):
        layout = "a metadata.jsonl folder" if (path / "metadata.jsonl").is_file() else \
            "a Fill50K folder" if (path / "prompt.json").is_file() else "a folder without shards"
        raise DataError(f"dataset={dataset!r} is {layout}, not a stream of shards ({', '.join(SHARD_FORMATS)}): "
                        f"train it without streaming, or write shards first: python -m train shard --dataset "
                        f"{dataset} --out {dataset.rstrip('/')}-shards")


def column_of(features: Any, wanted: str) -> str:
    """The stream's field for a configured column: its exact name, or WebDataset's `name.ext`."""
    names = list(features or [])
    if wanted in names:
        return wanted
    matches = [n for n in names if n.split(".", 1)[0] == wanted]
    if len(matches) != 1:
        raise DataError(f"the stream has no column {wanted!r} (it has {names}); set --image-column / "
                        "--conditioning-image-column / --caption-column")
    return matches[0]


def decode_image(value: Any) -> Image.Image:
    """An image cell as `datasets` streams it undecoded: its bytes, decoded as folder rows are (`load_image`: the
    pixel limit, NaN refused). A cell that holds only a path is refused: a stream from elsewhere must not make the
    trainer open files on this machine."""
    if isinstance(value, dict) and value.get("bytes"):
        value = value["bytes"]
    elif isinstance(value, dict) and value.get("path"):
        raise ValueError(f"the cell holds a path ({str(value['path'])[:80]!r}), not the image's bytes")
    elif not isinstance(value, (bytes, Image.Image)):
        raise ValueError(f"not an image cell ({type(value).__name__})")
    return load_image(value)


class StreamingRows(torch.utils.data.IterableDataset):
    """A torch IterableDataset over this process's share of a stream: checked rows as training items, forever
    (epoch after epoch), with `state_dict` / `load_state_dict` for exact resume.

    Order: each epoch shuffles the shards anew (`datasets`, seed + epoch), and rows are mixed in blocks of
    `shuffle_block` by a permutation seeded by (seed, epoch, block). The position saved is the stream's state at
    the block's start and how far into the block the run got: a resume re-reads at most one block and goes on with
    exactly the rows an uninterrupted run would read. Items are those of `ControlNetDataset` plus `id` (shard and
    key for WebDataset, else the row's place in this process's stream)."""

    def __init__(self, dataset: str, resolution: int, *, columns: tuple[str, str, str], seed: int,
                 shuffle_block: int = 256, share: tuple[int, int] = (0, 1), bad_row_limit: float = 0.01,
                 bad_rows_file: Path | None = None) -> None:
        """`share`: this process's (rank, world size); every process reads its own part of the stream. Items carry
        pixels unless `with_pixels` is set False (a run that precomputed its latents)."""
        super().__init__()
        rank, world_size = share
        self.fields = fields_of(open_stream(dataset), columns)
        self.dataset, self.resolution, self.with_pixels, self.seed = dataset, resolution, True, seed
        self.rank, self.world_size, self.block = rank, world_size, max(1, shuffle_block)
        self.bad_row_limit, self.bad_rows_file = bad_row_limit, bad_rows_file
        self.read, self.bad = 0, 0
        # Where the next row comes from: the epoch, the stream's state at the current block's start (None: the
        # epoch's beginning), the block's number in the epoch and the rows of it already taken.
        self.epoch, self.block_state, self.block_number, self.taken = 0, None, 0, 0

    def _epoch_stream(self) -> Any:
        from datasets.distributed import split_dataset_by_node

        stream = open_stream(self.dataset, check_shards_first=False).shuffle(  # checked when the rows were made
            seed=self.seed * 1_000_003 + self.epoch, buffer_size=1)
        return split_dataset_by_node(stream, rank=self.rank, world_size=self.world_size)

    def __iter__(self) -> Any:
        from itertools import islice

        barren = 0  # epochs in a row that gave no usable row
        while True:
            stream = self._epoch_stream()
            if self.block_state is not None:
                stream.load_state_dict(self.block_state)
            rows = rows_of(stream, self.dataset)
            yielded = False
            while True:
                state = self.block_state if self.block_state is not None else stream.state_dict()
                block = list(islice(rows, self.block))
                if not block:
                    break
                order = np.random.default_rng([self.seed, self.epoch, self.block_number]).permutation(len(block))
                while self.taken < len(block):
                    example = block[order[self.taken]]
                    self.block_state, self.taken = state, self.taken + 1
                    item = self._item(example)
                    if item is not None:
                        yielded = True
                        yield item
                self.block_state, self.block_number, self.taken = None, self.block_number + 1, 0
            barren = 0 if yielded else barren + 1
            if barren >= 2:  # a whole epoch without one usable row (a resume may start at an epoch's very end)
                raise DataError(f"dataset={self.dataset!r}: this process's share has no usable rows (rank "
                                f"{self.rank} of {self.world_size}; {self.bad} bad of {self.read} read)")
            self.epoch, self.block_state, self.block_number, self.taken = self.epoch + 1, None, 0, 0

    def _item(self, example: dict[str, Any]) -> dict[str, Any] | None:
        where = row_name(example, self.read)
        self.read += 1
        try:
            item = checked_item(example, self.fields, self.resolution, where, self.with_pixels)
        except ValueError as err:
            self.bad += 1
            record_bad_row(self.dataset, where, str(err), self.read, self.bad, self.bad_row_limit, self.bad_rows_file)
            return None
        if self.read == MIN_ROWS_BEFORE_LIMIT:
            check_bad_share(self.dataset, self.read, self.bad, self.bad_row_limit, self.bad_rows_file)
        return item

    def state_dict(self) -> dict[str, Any]:
        """The position in the stream (exact at a batch boundary with no loader workers) and the counts."""
        return {"epoch": self.epoch, "block_state": self.block_state, "block_number": self.block_number,
                "taken": self.taken, "read": self.read, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("epoch", "block_state", "block_number", "taken", "read", "bad"):
            setattr(self, name, state[name])


def checked_item(example: dict[str, Any], fields: tuple[str, str, str], resolution: int, where: str,
                 with_pixels: bool = True) -> dict[str, Any]:
    """A streamed row as a training item (`ControlNetDataset`'s tensors, the text, `id`); ValueError if it is bad."""
    image_field, cond_field, text_field = fields
    text = example.get(text_field)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"column '{text_field}' is empty")
    try:
        cond = np.asarray(resize_and_crop(decode_image(example.get(cond_field)), resolution), np.float32)
        pixels = np.asarray(resize_and_crop(decode_image(example.get(image_field)), resolution),
                            np.float32) if with_pixels else None
    except Exception as err:  # PIL raises many types for broken files
        raise ValueError(str(err)) from None
    item = {"conditioning_pixel_values": torch.from_numpy(cond / 255.0).permute(2, 0, 1), "text": text.strip(),
            "id": where}
    if pixels is not None:
        item["pixel_values"] = torch.from_numpy(pixels / 127.5 - 1.0).permute(2, 0, 1)
    return item


def fields_of(stream: Any, columns: tuple[str, str, str]) -> tuple[str, str, str]:
    """The stream's fields for the configured columns (read from a first row when the stream does not say)."""
    features = stream.features
    if features is None:
        first = next(rows_of(stream, "the stream"), None)
        if first is None:
            raise DataError("the stream holds no rows")
        features = first.keys()
    return tuple(column_of(features, c) for c in columns)


def row_name(example: dict[str, Any], position: int) -> str:
    """WebDataset rows by shard and key; others by their position in this process's stream."""
    if example.get("__url__") and example.get("__key__"):
        return f"{Path(str(example['__url__'])).name}:{example['__key__']}"
    return f"row {position}"


def stream_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """`data.collate` for stream items: ids are names (strings), not positions."""
    out = {"conditioning_pixel_values": torch.stack([b["conditioning_pixel_values"] for b in batch]),
           "text": [b["text"] for b in batch], "id": [b["id"] for b in batch]}
    if "pixel_values" in batch[0]:
        out["pixel_values"] = torch.stack([b["pixel_values"] for b in batch])
    return out
