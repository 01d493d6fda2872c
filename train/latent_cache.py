"""`python -m train cache`: encode a dataset once into a latent cache on disk; training then reads it memory-mapped.

Each row is stored as what a training step needs: the VAE posterior's mean and standard deviation (float32; the
step draws mean + std * noise, as when it encodes the image itself), the text encoder's hidden states (float16;
SDXL's pooled text too) and the condition at the training resolution (uint8). The empty prompt's embedding is stored
once, for the 50% of steps that drop the prompt. The files are safetensors shards, written atomically by every
process for its share of the rows (`accelerate launch` runs the encoders on every GPU), plus `manifest.json`.

The cache is keyed by the sha256 of the VAE's and text encoders' weights, the resolution and the crop (centre, the
only one the trainer makes: it has no pixel augmentations, so there is nothing per variant to cache). Training with
another base, resolution or crop is refused with both keys named. A stopped `cache` run resumes: shards already
written are kept.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .data import DataError
from .weights import weights_sha256

CACHE_VERSION = 1
CROP = "centre"


def dataset_identity(dataset: str) -> str:
    """A dataset reference as the cache records it: a local folder by its absolute path, a Hub id as given."""
    path = Path(dataset).expanduser()
    return str(path.resolve()) if path.exists() else dataset


def cache_key(base: dict[str, Any], resolution: int) -> dict[str, Any]:
    """What makes cached rows valid for a run: the encoders' weights and the precision they ran in (the hashes are
    of the weights as loaded: build the cache with the run's --mixed-precision), the resolution and the crop."""
    key = {"version": CACHE_VERSION, "resolution": resolution, "crop": CROP, "family": base["family"].name,
           "dtype": str(base["vae"].dtype).removeprefix("torch."),
           "vae_sha256": weights_sha256(base["vae"]), "text_encoder_sha256": weights_sha256(base["text_encoder"])}
    for name in ("text_encoder_2", "text_encoder_3"):  # SDXL's second encoder; FLUX.1's T5, SD3.5's CLIP-G and T5
        if name in base:
            key[f"{name}_sha256"] = weights_sha256(base[name])
    return key


def check_key(folder: Path, key: dict[str, Any], dataset: str | None = None) -> dict[str, Any]:
    """The cache's manifest, if it was made for `key` (and from `dataset`, when given); else a DataError naming
    what differs."""
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file():
        raise DataError(f"latent_cache={str(folder)!r} holds no manifest.json: build it with `python -m train cache "
                        f"--out {folder} ...` (a stopped build resumes)")
    try:
        manifest = json.loads(manifest_file.read_text())
        if not isinstance(manifest.get("key"), dict) or not isinstance(manifest.get("shards"), list):
            raise ValueError("no key or shard list")
    except (ValueError, AttributeError) as err:
        raise DataError(f"latent_cache={str(folder)!r}: its manifest.json is damaged ({err}); rebuild the cache with "
                        "`python -m train cache` into an empty folder") from None
    differs = [f"{name}: cache {manifest['key'].get(name)!r}, this run {value!r}"
               for name, value in key.items() if manifest["key"].get(name) != value]
    if dataset and dataset_identity(dataset) != manifest.get("dataset"):
        differs.append(f"dataset: cache {manifest.get('dataset')!r}, this run {dataset_identity(dataset)!r}")
    if differs:
        raise DataError(f"latent_cache={str(folder)!r} was made for other settings or weights, so its latents would "
                        f"be wrong here ({'; '.join(differs)}). Rebuild it with `python -m train cache` (with this "
                        "run's base model, dataset, resolution and --mixed-precision) into an empty folder")
    return manifest


@dataclass(frozen=True)
class CacheOptions:
    """How a latent cache is built (`python -m train cache`'s flags; a training run passes its own)."""

    resolution: int = 512
    batch_size: int = 8
    rows_per_shard: int = 1024
    single_file_config: str | None = None
    image_column: str = "image"
    conditioning_image_column: str = "conditioning_image"
    caption_column: str = "text"
    skip_bad_rows: bool = False
    streaming: bool = False
    bad_row_limit: float = 0.01
    mixed_precision: str = "no"

    @property
    def columns(self) -> tuple[str, str, str]:
        return self.image_column, self.conditioning_image_column, self.caption_column


def build_cache(dataset: str, base_model: str, out: str | Path, options: CacheOptions | None = None, *,
                progress: Any = None, should_stop: Any = None, accelerator: Any = None,
                base: dict[str, Any] | None = None, **overrides: Any) -> Path | None:
    """Encode `dataset` (a folder layout or saved/Hub `datasets` dataset) into `out`, built as `options` (or its
    fields as keywords) say; every process of an `accelerate launch` encodes its own rows, in the precision training
    will use (`mixed_precision`). A training run that builds its cache first passes its own `accelerator` and loaded
    `base`. `progress(info)` hears of each shard written; `should_stop()` is asked before each (a stop returns None,
    the shards written so far kept). Returns `out`."""
    import torch
    from accelerate import Accelerator

    from .base import load_base

    opts = replace(options or CacheOptions(), **overrides)
    accelerator = accelerator or Accelerator()
    rank, world = accelerator.process_index, accelerator.num_processes
    out = Path(out)
    device = accelerator.device
    if base is None:
        precisions = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if opts.mixed_precision not in precisions:
            raise DataError(f"mixed_precision={opts.mixed_precision!r} is not one of {list(precisions)}")
        base = load_base(base_model, precisions[opts.mixed_precision], opts.single_file_config)
        for name in ("vae", "text_encoder", "text_encoder_2"):
            if name in base:
                base[name].to(device).eval()
    dtype = base["vae"].dtype
    # What the shards depend on: a stopped build resumes only into the same settings.
    key = {**cache_key(base, opts.resolution), "build": {
        "dataset": dataset_identity(dataset), "rows_per_shard": opts.rows_per_shard,
        "skip_bad_rows": opts.skip_bad_rows, "streaming": opts.streaming,
        **({"processes": world} if opts.streaming else {})}}  # a stream's shards are per process
    _claim(out, key, accelerator)
    encode = _ShardWriter(base, device, dtype, opts.batch_size)
    report = (lambda info: progress({"process": rank, **info})) if progress is not None else None
    share = (rank, world)
    build = _cache_stream if opts.streaming else _cache_folder
    stopped, skipped = build(dataset, out, opts, share, encode, report, should_stop)
    # Every process learns whether any stopped (each asked at its own shards): all return alike, none waits.
    flag = torch.tensor([float(stopped)], device=device)
    if world > 1:
        flag = accelerator.reduce(flag, reduction="sum")
    if flag.item() > 0:
        return None
    skipped = accelerator.gather_for_metrics([skipped], use_gather_object=True) if world > 1 else [skipped]
    if accelerator.is_main_process:
        _finish(out, key, dataset, base, device, [line for part in skipped for line in part])
    accelerator.wait_for_everyone()
    return out


def _claim(out: Path, key: dict[str, Any], accelerator: Any) -> None:
    """Write the build's key (the first process), or refuse a folder holding a cache made with other settings:
    every process checks, so every process stops alike."""
    key_file = out / "key.json"
    if accelerator.is_main_process and not key_file.is_file():
        out.mkdir(parents=True, exist_ok=True)
        key_file.write_text(json.dumps(key, indent=2))
    accelerator.wait_for_everyone()
    written = json.loads(key_file.read_text())
    if written != key:
        differs = sorted(k for k in {**written, **key} if written.get(k) != key.get(k))
        raise DataError(f"out={str(out)!r} holds a cache (or a stopped build) made with other settings or weights "
                        f"({', '.join(differs)} differ; see {key_file}): choose an empty folder")


def _finish(out: Path, key: dict[str, Any], dataset: str, base: dict[str, Any], device: Any,
            skipped: list[str]) -> None:
    """The main process's last writes: the embedding of "" (for dropped prompts) and the manifest of shards."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    from .objectives import encode_text

    with torch.no_grad():
        hidden, pooled = encode_text([""], base, device)
    empty = {"hidden": hidden.half().cpu().contiguous()}
    if pooled is not None:
        empty["pooled"] = pooled.half().cpu().contiguous()
    written_safely(out, lambda: save_file(empty, str(out / "empty_prompt.safetensors")))
    shards = [{"file": path.name, "rows": len(json.loads(safe_open(str(path), "pt").metadata()["texts"]))}
              for path in sorted(out.glob("shard-*.safetensors"))]
    manifest = {"key": key, "dataset": dataset_identity(dataset), "rows": sum(s["rows"] for s in shards),
                "skipped": skipped, "shards": shards}
    written_safely(out, lambda: (out / "manifest.json").write_text(json.dumps(manifest, indent=2)))


class _ShardWriter:
    """Encodes training items (pixels, condition, text) and writes them as one safetensors shard, atomically."""

    def __init__(self, base: dict[str, Any], device: Any, dtype: Any, batch_size: int) -> None:
        self.base, self.device, self.dtype, self.batch_size = base, device, dtype, batch_size

    def __call__(self, items: list[dict[str, Any]], path: Path, ids: list[Any], consumed: int = 0) -> None:
        import torch
        from safetensors.torch import save_file

        from .objectives import encode_text

        tensors: dict[str, list[Any]] = {"mean": [], "std": [], "hidden": [], "pooled": [], "condition": []}
        with torch.no_grad():
            for start in range(0, len(items), self.batch_size):
                batch = items[start:start + self.batch_size]
                pixels = torch.stack([it["pixel_values"] for it in batch]).to(self.device, self.dtype)
                posterior = self.base["vae"].encode(pixels).latent_dist
                if not torch.isfinite(posterior.mean).all():
                    raise DataError(f"the VAE gave NaN/inf latents in {self.dtype} for rows "
                                    f"{ids[start:start + self.batch_size]}: build the cache (and train) with "
                                    "--mixed-precision bf16 or no")
                hidden, pooled = encode_text([it["text"] for it in batch], self.base, self.device)
                tensors["mean"].append(posterior.mean.float().cpu())
                tensors["std"].append(posterior.std.float().cpu())
                tensors["hidden"].append(hidden.half().cpu())
                if pooled is not None:
                    tensors["pooled"].append(pooled.half().cpu())
                tensors["condition"].append(torch.stack([(it["conditioning_pixel_values"] * 255).round()
                                                         .to(torch.uint8) for it in batch]))
        arrays = {name: torch.cat(parts).contiguous() for name, parts in tensors.items() if parts}
        tmp = path.with_name(path.name + ".tmp")
        written_safely(path.parent, lambda: save_file(arrays, str(tmp), metadata={
            "texts": json.dumps([it["text"] for it in items]), "rows": json.dumps(ids), "consumed": str(consumed)}),
            tmp)
        os.replace(tmp, path)


def written_safely(out: Path, write: Any, tmp: Path | None = None) -> None:
    """Run `write()`; a full disk (or another write error) becomes a DataError naming the folder, the space left
    and how to go on, with the half-written `tmp` removed and the finished shards kept."""
    from .checkpoint import describe_write_error

    try:
        write()
    except Exception as err:  # safetensors wraps the OSError in its own SafetensorError
        if tmp is not None:
            tmp.unlink(missing_ok=True)
        if not isinstance(err, OSError) and type(err).__name__ != "SafetensorError":
            raise
        raise DataError(f"latent cache {out}: {describe_write_error(err, out)}. The shards written so far are "
                        "kept: make room and run the same command again to go on") from None


def _cache_folder(dataset, out, opts, share, encode, report, should_stop) -> tuple[bool, list[str]]:
    """A folder (or in-memory `datasets`) dataset: its checked rows cut into shards, every `world`-th one ours."""
    from .data import ControlNetDataset, load_rows

    (rank, world), columns, rows_per_shard = share, opts.columns, opts.rows_per_shard

    loaded = load_rows(dataset, image_column=columns[0], conditioning_image_column=columns[1],
                       caption_column=columns[2], skip_bad_rows=opts.skip_bad_rows)
    rows = ControlNetDataset(loaded.rows, opts.resolution)
    shards = [list(range(start, min(len(rows), start + rows_per_shard)))
              for start in range(0, len(rows), rows_per_shard)]
    mine = [(number, indices) for number, indices in enumerate(shards) if number % world == rank]
    for done, (number, indices) in enumerate(mine):
        path = out / f"shard-{number:05d}.safetensors"
        if path.is_file():  # written atomically by an earlier (stopped) run with the same key
            continue
        if should_stop is not None and should_stop():
            return True, loaded.skipped
        encode([rows[i] for i in indices], path, [loaded.rows[i].index for i in indices])
        if report is not None:
            report({"shard": number, "done": done + 1, "of": len(mine)})
    return False, loaded.skipped if rank == 0 else []


def _cache_stream(dataset, out, opts, share, encode, report, should_stop) -> tuple[bool, list[str]]:
    """A stream of shards, read once in order: this process's share (`split_dataset_by_node`), rows checked as they
    come (bad ones logged in bad_rows.jsonl), written every `rows_per_shard` good rows. A resumed build skips the
    rows its finished shards consumed (`datasets`' `skip`, without decoding)."""
    from datasets.distributed import split_dataset_by_node
    from safetensors import safe_open

    from .bad_rows import MIN_ROWS_BEFORE_LIMIT, bad_rows_file, check_bad_share, record_bad_row
    from .stream import checked_item, fields_of, open_stream, row_name, rows_of

    (rank, world), rows_per_shard, bad_row_limit = share, opts.rows_per_shard, opts.bad_row_limit
    stream = open_stream(dataset)
    fields = fields_of(stream, opts.columns)
    stream = split_dataset_by_node(stream, rank=rank, world_size=world)
    prefix = f"shard-{rank:03d}-of-{world:03d}-"
    finished = sorted(out.glob(f"{prefix}*.safetensors"))
    consumed_before = sum(int(safe_open(str(p), "pt").metadata()["consumed"]) for p in finished)
    rows = rows_of(stream.skip(consumed_before) if consumed_before else stream, dataset)
    log_file = bad_rows_file(out, rank)
    number, read, bad, consumed, pending, skipped = len(finished), consumed_before, 0, 0, [], []
    for example in rows:
        where = row_name(example, read)
        read, consumed = read + 1, consumed + 1
        try:
            pending.append(checked_item(example, fields, opts.resolution, where))
        except ValueError as err:
            bad += 1
            skipped.append(f"{where}: {err}")
            record_bad_row(dataset, where, str(err), read, bad, bad_row_limit, log_file)
            continue
        if read == MIN_ROWS_BEFORE_LIMIT:
            check_bad_share(dataset, read, bad, bad_row_limit, log_file)
        if len(pending) == rows_per_shard:
            if should_stop is not None and should_stop():
                return True, skipped
            encode(pending, out / f"{prefix}{number:05d}.safetensors", [it["id"] for it in pending], consumed)
            number, pending, consumed = number + 1, [], 0
            if report is not None:
                report({"shard": number - 1, "done": number, "of": None})
    if pending:
        encode(pending, out / f"{prefix}{number:05d}.safetensors", [it["id"] for it in pending], consumed)
    return False, skipped


class LatentCacheDataset:
    """The rows of a latent cache, read memory-mapped (safetensors): map-style, so accelerate's seeded sampler,
    the per-process split and exact resume work as for folder datasets."""

    def __init__(self, folder: str | Path) -> None:
        from safetensors.torch import load_file

        self.folder = Path(folder)
        self.manifest = manifest = check_key(self.folder, {})  # the manifest, or the "build it" message
        self.files, self.texts = [], []
        per_row: dict[str, list[int]] = {}
        for number, shard in enumerate(manifest["shards"]):
            file, texts = _open_shard(self.folder, shard, manifest["key"].get("resolution"), per_row,
                                      first=number == 0)
            self.files.append(file)
            self.texts.append(texts)
        self.starts = []
        total = 0
        for shard in manifest["shards"]:
            self.starts.append(total)
            total += shard["rows"]
        if manifest.get("rows") != total:
            raise DataError(f"latent_cache={str(self.folder)!r}: manifest.json says {manifest.get('rows')} rows, its "
                            f"shards hold {total}: {_REBUILD}")
        self.length = total
        empty = self.folder / "empty_prompt.safetensors"
        try:
            self.empty = load_file(str(empty))
        except Exception as err:  # a missing, cut or foreign file: safetensors raises its own error types
            raise DataError(f"latent cache file {empty} cannot be read ({str(err)[:200]}): {_REBUILD}") from None

    def __len__(self) -> int:
        return self.length

    def locate(self, i: int) -> tuple[int, int]:
        import bisect

        shard = bisect.bisect_right(self.starts, i) - 1
        return shard, i - self.starts[shard]

    def __getitem__(self, i: int) -> dict[str, Any]:
        shard, offset = self.locate(i)
        file = self.files[shard]

        def row(name: str) -> Any:
            return file.get_slice(name)[offset:offset + 1][0]

        item = {"mean": row("mean"), "std": row("std"), "hidden": row("hidden"),
                "conditioning_pixel_values": row("condition").float() / 255.0, "text": self.texts[shard][offset],
                "index": i}
        if "pooled" in file.keys():
            item["pooled"] = row("pooled")
        return item


_REBUILD = ("delete the damaged shard and run the same `python -m train cache` command again (a folder dataset's "
            "missing shards are written anew), or rebuild the cache into an empty folder")
_TENSORS = ("mean", "std", "hidden", "condition")


def _open_shard(folder: Path, shard: Any, resolution: Any, per_row: dict[str, list[int]],
                first: bool) -> tuple[Any, list[str]]:
    """One shard of the manifest, opened memory-mapped and checked against it before any step reads it: present,
    readable, holding the tensors a step needs with the recorded number of rows, the same shape per row as the
    first shard and the condition at the cache's resolution. DataError naming the shard and what is wrong."""
    from safetensors import safe_open

    name = shard.get("file") if isinstance(shard, dict) else None
    path = folder / str(name)
    if not isinstance(name, str) or not isinstance(shard.get("rows"), int):
        raise DataError(f"latent_cache={str(folder)!r}: manifest.json lists a shard as {str(shard)[:80]!r}: {_REBUILD}")
    if not path.is_file():
        raise DataError(f"latent cache shard {path} is missing: {_REBUILD}")
    try:
        file = safe_open(str(path), framework="pt")
        texts = json.loads(file.metadata()["texts"])
        names = set(file.keys())
        if not names >= set(_TENSORS):
            raise KeyError(f"no {sorted(set(_TENSORS) - names)}")
        # Shape per row and dtype of every tensor (SDXL's pooled text too), as the first shard has them.
        layout = {t: [*file.get_slice(t).get_shape()[1:], file.get_slice(t).get_dtype()] for t in sorted(names)}
        rows = {len(texts)} | {file.get_slice(t).get_shape()[0] for t in names}
    except Exception as err:  # safetensors, json and KeyError: a cut, foreign or damaged file
        raise DataError(f"latent cache shard {path} cannot be read ({type(err).__name__}: {str(err)[:200]}): "
                        f"{_REBUILD}") from None
    if rows != {shard["rows"]}:
        raise DataError(f"latent cache shard {path} holds {sorted(rows)} rows (texts and tensors), manifest.json "
                        f"says {shard['rows']}: {_REBUILD}")
    if first:
        per_row.update(layout)
        if resolution is not None and per_row["condition"][:3] != [3, resolution, resolution]:
            raise DataError(f"latent cache shard {path} holds conditions of shape {per_row['condition'][:3]}, the "
                            f"cache was made at resolution {resolution}: {_REBUILD}")
    if set(layout) != set(per_row):
        raise DataError(f"latent cache shard {path} holds the tensors {sorted(layout)}, the first shard "
                        f"{sorted(per_row)}: {_REBUILD}")
    for tensor, shape in layout.items():
        if shape != per_row[tensor]:
            raise DataError(f"latent cache shard {path}: its '{tensor}' is {shape[:-1]} ({shape[-1]}) per row, the "
                            f"first shard's is {per_row[tensor][:-1]} ({per_row[tensor][-1]}): {_REBUILD}")
    return file, texts


def cache_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    import torch

    out = {name: torch.stack([b[name] for b in batch]) for name in ("mean", "std", "hidden",
                                                                     "conditioning_pixel_values")}
    if "pooled" in batch[0]:
        out["pooled"] = torch.stack([b["pooled"] for b in batch])
    out["text"] = [b["text"] for b in batch]
    out["index"] = torch.tensor([b["index"] for b in batch])
    return out
