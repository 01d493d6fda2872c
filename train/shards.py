"""`python -m train shard`: turn a folder dataset (metadata.jsonl, Fill50K) into parquet shards for streaming.

The rows are shuffled once (seeded) before they are cut into shards, so the stream's per-epoch shard shuffle and its
block mixing (train/stream.py) start from well-mixed shards. The images keep their encoded bytes (no re-encoding);
`datasets` writes the parquet files, with `image` / `conditioning_image` as its Image feature.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .data import DataError, load_rows


def write_shards(dataset: str, out: str | Path, *, rows_per_shard: int = 1000, seed: int = 0,
                 skip_bad_rows: bool = False) -> dict[str, Any]:
    """Write `dataset`'s checked rows, shuffled, as `out/shard-00000.parquet`, ...; returns the counts."""
    import numpy as np
    from datasets import Dataset, Features, Image, Value

    if rows_per_shard < 1:
        raise DataError(f"rows_per_shard={rows_per_shard} must be >= 1")
    loaded = load_rows(dataset, skip_bad_rows=skip_bad_rows)
    out = Path(out)
    if out.exists() and any(out.glob("*.parquet")):
        raise DataError(f"out={str(out)!r} already holds parquet shards; choose an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(seed).permutation(len(loaded.rows))
    features = Features({"image": Image(), "conditioning_image": Image(), "text": Value("string")})
    shards = []
    for number, start in enumerate(range(0, len(order), rows_per_shard)):
        rows = [loaded.rows[i] for i in order[start:start + rows_per_shard]]
        table = Dataset.from_dict({"image": [_cell(r.image) for r in rows],
                                   "conditioning_image": [_cell(r.conditioning) for r in rows],
                                   "text": [r.text for r in rows]}, features=features)
        path = out / f"shard-{number:05d}.parquet"
        table.to_parquet(str(path))
        shards.append(path)
    return {"rows": len(order), "skipped": loaded.skipped, "shards": [str(p) for p in shards]}


def _cell(value: Any) -> Any:
    """A file's own bytes (no re-encoding), or a PIL image from a `datasets` table."""
    if isinstance(value, (str, Path)):
        return {"bytes": Path(value).read_bytes(), "path": Path(value).name}
    from .data import load_image

    return load_image(value)
