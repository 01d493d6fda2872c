"""Training data damaged the ways disks and downloads damage it (issue 24, item 8): each case names the file and
what is wrong, or is a bad row counted like any other, never a traceback.

Stream shards: cut in half, empty, text named .parquet, of another schema, damaged inside. Images in a stream: a
float TIFF holding NaN, a 169 MP PNG (refused before decoding), 3 bad rows among the first 100 of 200. Latent-cache
shards: deleted, cut short, a tensor of another shape, a manifest whose row count is wrong, a damaged manifest; a
full disk while a cache is built. A checkpoint's stream.pt of the wrong structure."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from train.config import TrainConfig
from train.data import DataError
from train.loop import train
from train.shards import write_shards
from train.stream import StreamingRows, open_stream

COLUMNS = ("image", "conditioning_image", "text")


@pytest.fixture(autouse=True)
def quick_stream_shutdown(monkeypatch):
    import datasets.config  # datasets sleeps 5 s whenever a parquet stream closes

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.2)


@pytest.fixture(scope="module")
def shards(circles, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards")
    write_shards(str(circles), out, rows_per_shard=4, seed=0)
    return out


def png(colour=(0, 0, 0), size=(64, 64), mode="RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, colour if mode == "RGB" else 0).save(buffer, "PNG")
    return buffer.getvalue()


def write_shard(path, rows) -> None:
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "conditioning_image": ImageFeature(), "text": Value("string")})
    Dataset.from_dict({"image": [{"bytes": r[0], "path": None} for r in rows],
                       "conditioning_image": [{"bytes": r[1], "path": None} for r in rows],
                       "text": [r[2] for r in rows]}, features=features).to_parquet(str(path))


def damaged_copy(shards, tmp_path, damage):
    folder = tmp_path / "damaged"
    shutil.copytree(shards, folder)
    victim = sorted(folder.glob("*.parquet"))[1]
    damage(victim)
    return folder, victim


def other_schema(path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), str(path))


SHARD_DAMAGE = {
    "cut in half": (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "cannot be read as parquet"),
    "empty": (lambda p: p.write_bytes(b""), "cannot be read as parquet"),
    "text named .parquet": (lambda p: p.write_text("id,text\n1,a\n"), "cannot be read as parquet"),
    "another schema": (other_schema, "has the columns ['a', 'b']"),
}


@pytest.mark.parametrize("damage", list(SHARD_DAMAGE))
def test_a_damaged_stream_shard_is_named_before_the_run_reads_it(shards, tmp_path, damage):
    change, message = SHARD_DAMAGE[damage]
    folder, victim = damaged_copy(shards, tmp_path, change)
    with pytest.raises(DataError, match=re.escape(message)) as raised:
        open_stream(str(folder))
    assert str(victim) in str(raised.value)


def test_a_shard_damaged_inside_stops_the_run_naming_the_stream(shards, tmp_path):
    def scramble_the_middle(path):
        data = bytearray(path.read_bytes())
        middle = len(data) // 2
        data[middle - 2000:middle + 2000] = bytes(4000)  # the footer (schema) stays whole
        path.write_bytes(bytes(data))

    folder, _ = damaged_copy(shards, tmp_path, scramble_the_middle)
    rows = StreamingRows(str(folder), 64, columns=COLUMNS, seed=0, bad_row_limit=1.0)
    try:
        read = list(zip(range(64), rows))
    except DataError as err:  # the reader failed: named, not a pyarrow traceback
        assert "reading the stream failed" in str(err) and str(folder) in str(err)
    else:  # the damage fell inside image bytes: bad rows, counted
        assert rows.bad > 0 and len(read) == 64


def test_shards_datasets_reads_are_not_refused(tmp_path):
    """Arrow's random-access file format, and WebDataset tars whose samples sit in a folder with a dot in its name
    and lack an optional field: valid, so read (the shard check must not call them damaged)."""
    import tarfile

    import pyarrow as pa

    arrow = tmp_path / "arrow"
    arrow.mkdir()
    cells = [{"bytes": png((i, 0, 0)), "path": None} for i in range(3)]
    table = pa.table({"image": cells, "conditioning_image": cells, "text": [f"row {i}" for i in range(3)]})
    with pa.OSFile(str(arrow / "a.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    tars = tmp_path / "tars"
    tars.mkdir()
    for shard in range(2):
        with tarfile.open(tars / f"{shard}.tar", "w") as tar:
            for key in range(2):
                fields = {"image.png": png((key, 0, 0)), "conditioning_image.png": png((0, key, 0)),
                          "text.txt": f"row {shard}{key}".encode()}
                if shard == 1 and key == 1:
                    fields["extra.json"] = b"{}"  # an optional field in one sample only
                for name, data in fields.items():
                    info = tarfile.TarInfo(f"set.v1/{shard}{key:04d}.{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    for folder in (arrow, tars):
        rows = StreamingRows(str(folder), 64, columns=COLUMNS, seed=0, bad_row_limit=1.0)
        assert len(list(zip(range(3), rows))) == 3 and rows.bad == 0


def test_the_cli_says_which_shard_is_damaged_without_a_traceback(shards, tmp_path, tiny_models):
    folder, victim = damaged_copy(shards, tmp_path, SHARD_DAMAGE["cut in half"][0])
    done = subprocess.run([sys.executable, "-m", "train", "--base-model", str(tiny_models[0]), "--dataset",
                           str(folder), "--streaming", "--output-dir", str(tmp_path / "run"), "--resolution", "64",
                           "--max-steps", "2", "--preset", "none", "--validate-every", "0"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and f"error: shard {victim} cannot be read as parquet" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-2000:]


def float_tiff_with_nan() -> bytes:
    values = np.full((64, 64), 0.5, np.float32)
    values[10, 10] = np.nan
    buffer = io.BytesIO()
    Image.fromarray(values, "F").save(buffer, "TIFF")
    return buffer.getvalue()


@pytest.mark.parametrize("cell, reason", [
    (float_tiff_with_nan(), "holds NaN or infinite values"),
    (png(size=(13000, 13000), mode="1"), "169 MP, over the 40 MP limit"),
])
def test_images_the_app_refuses_are_bad_rows_in_a_stream_too(tmp_path, cell, reason):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [(png((i, 0, 0)), png((0, i, 0)), f"row {i}") for i in range(6)]
    rows[2] = (cell, rows[2][1], "row 2")
    write_shard(folder / "a.parquet", rows)
    log = tmp_path / "bad.jsonl"
    stream = StreamingRows(str(folder), 64, columns=COLUMNS, seed=0, bad_rows_file=log, bad_row_limit=1.0)
    texts = [item["text"] for _, item in zip(range(5), stream)]
    assert "row 2" not in texts and len(texts) == 5
    assert reason in json.loads(log.read_text().splitlines()[0])["reason"]


def test_a_float_tiff_with_nan_is_named_in_a_folder_dataset(circles, tmp_path):
    from train.data import load_rows

    folder = tmp_path / "data"
    shutil.copytree(circles, folder)
    target = sorted((folder / "target").iterdir())[3]
    target.write_bytes(float_tiff_with_nan())
    with pytest.raises(DataError, match=f"{target.name}.*holds NaN or infinite values"):
        load_rows(str(folder))


def test_three_bad_rows_among_the_first_100_of_200_stop_the_run(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [(png((i, 0, 0)), png((0, i, 0)), f"row {i}") for i in range(200)]
    for i in (3, 40, 77):
        rows[i] = (b"junk", rows[i][1], f"row {i}")
    write_shard(folder / "a.parquet", rows)
    stream = StreamingRows(str(folder), 64, columns=COLUMNS, seed=0, shuffle_block=1)
    with pytest.raises(DataError, match=r"3 of 100 rows read are bad \(more than bad_row_limit=0.01\)"):
        list(zip(range(200), stream))


# -- the latent cache ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(latent_cache):
    return latent_cache


def reshaped(path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), "pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    tensors["mean"] = tensors["mean"][:, :, :4, :4].contiguous()
    save_file(tensors, str(path), metadata=metadata)


def miscounted(folder):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"][0]["rows"] += 1
    manifest["rows"] += 1
    (folder / "manifest.json").write_text(json.dumps(manifest))


CACHE_DAMAGE = {
    "a deleted shard": (lambda f: (f / "shard-00001.safetensors").unlink(), "shard-00001.safetensors is missing"),
    "a shard cut short": (lambda f: (f / "shard-00001.safetensors").write_bytes(
        (f / "shard-00001.safetensors").read_bytes()[:500]), "shard-00001.safetensors cannot be read"),
    "a tensor of another shape": (lambda f: reshaped(f / "shard-00002.safetensors"),
                                  "its 'mean' is [4, 4, 4] (F32) per row, the first shard's is [4, 8, 8] (F32)"),
    "a wrong row count": (miscounted, "holds [6] rows (texts and tensors), manifest.json says 7"),
    "a wrong total": (lambda f: (f / "manifest.json").write_text((f / "manifest.json").read_text().replace(
        '"rows": 16', '"rows": 17')), "manifest.json says 17 rows, its shards hold 16"),
    "a damaged manifest": (lambda f: (f / "manifest.json").write_text("{"), "its manifest.json is damaged"),
}


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_a_damaged_latent_cache_is_named_before_a_step(tiny_models, cache, tmp_path, damage):
    change, message = CACHE_DAMAGE[damage]
    folder = tmp_path / "latents"
    shutil.copytree(cache, folder)
    change(folder)
    with pytest.raises(DataError, match=re.escape(message)):
        train(TrainConfig(base_model=str(tiny_models[0]), dataset="", latent_cache=str(folder), resolution=64,
                          output_dir=str(tmp_path / "run"), batch_size=4, max_steps=2, validate_every=0))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_full_disk_while_building_a_cache_keeps_the_shards_written(tiny_models, circles, tmp_path):
    """A 3 MB tmpfs (the tests run as root here and in CI; skipped where mounting is not allowed)."""
    from train.latent_cache import build_cache

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        (disk / "filler").write_bytes(b"\0" * (3 * 2**20 - 64 * 1024))  # 64 KB left: one shard fits, not two
        with pytest.raises(DataError, match=rf"latent cache {disk}/latents: no space left on {disk}/latents"):
            build_cache(str(circles), str(tiny_models[0]), disk / "latents", resolution=64, rows_per_shard=2)
        assert not list((disk / "latents").glob("*.tmp"))  # no half-written shard
        (disk / "filler").unlink()
        assert build_cache(str(circles), str(tiny_models[0]), disk / "latents", resolution=64, rows_per_shard=2)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_checkpoint_whose_stream_position_is_malformed_is_named(tiny_models, shards, tmp_path):
    import torch

    cfg = dict(base_model=str(tiny_models[0]), dataset=str(shards), output_dir=str(tmp_path / "run"), resolution=64,
               batch_size=2, max_steps=2, checkpoint_every=2, validate_every=0, streaming=True, shuffle_block=4)
    train(TrainConfig(**cfg))
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000002"
    torch.save([{"epoch": 0}], checkpoint / "stream.pt")
    from train.checkpoint import write_atomically  # the marker must match the new file, as a valid marker would

    write_atomically(tmp_path / "run", 2, lambda tmp: shutil.copytree(
        checkpoint, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns("COMPLETE.json")), {}, 3)
    with pytest.raises(DataError, match="its stream.pt holds no stream positions"):
        train(TrainConfig(**{**cfg, "max_steps": 3, "resume": "latest"}))
