"""Training from a stream of shards (train/stream.py): exact resume, each process its own rows, bad rows skipped and
named, and memory that does not grow with the dataset."""

import io
import json
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from train.config import ConfigError, TrainConfig
from train.data import DataError
from train.loop import train
from train.shards import write_shards
from train.stream import StreamingRows

COLUMNS = ("image", "conditioning_image", "text")


@pytest.fixture(scope="module")
def shards(circles, tmp_path_factory):
    """The 16 circles as 4 shuffled parquet shards."""
    out = tmp_path_factory.mktemp("shards")
    report = write_shards(str(circles), out, rows_per_shard=4, seed=0)
    assert report["rows"] == 16 and len(report["shards"]) == 4
    return out


@pytest.fixture(scope="module")
def numbered(tmp_path_factory):
    """16 rows named "row 0" ... "row 15" in 4 parquet shards: rows are told apart by their text."""
    out = tmp_path_factory.mktemp("numbered")
    for shard in range(4):
        _write_shard(out / f"shard-{shard}.parquet",
                     [(_png((i, 0, 0)), _png((0, i, 0)), f"row {i}") for i in range(4 * shard, 4 * shard + 4)])
    return out


@pytest.fixture(autouse=True)
def quick_stream_shutdown(monkeypatch):
    # datasets sleeps 5 s whenever a parquet stream closes (an arrow threads workaround); these tests close many.
    import datasets.config

    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0.2)


def config(tiny_models, dataset, out, **kw):
    base = dict(base_model=str(tiny_models[0]), dataset=str(dataset), output_dir=str(out), resolution=64,
                batch_size=3, max_steps=6, lr=1e-3, checkpoint_every=100, validate_every=0, log_every=1, seed=3,
                streaming=True, shuffle_block=5)
    return TrainConfig(**{**base, **kw})


def weights(path):
    from diffusers import ControlNetModel

    return ControlNetModel.from_pretrained(path).state_dict()


def test_a_stream_resumes_exactly_across_an_epoch_end(numbered):
    rows = StreamingRows(str(numbered), 64, columns=COLUMNS, seed=0, shuffle_block=5)
    read = iter(rows)
    first = [next(read)["text"] for _ in range(7)]
    state = rows.state_dict()
    rest = [next(read)["text"] for _ in range(30)]  # past the end of the 16 rows: the next epoch
    again = StreamingRows(str(numbered), 64, columns=COLUMNS, seed=0, shuffle_block=5)
    again.load_state_dict(state)
    assert [item["text"] for _, item in zip(range(30), again)] == rest
    epoch = first + rest[:9]
    assert sorted(epoch) == sorted(f"row {i}" for i in range(16))  # each row once per epoch
    assert rest[9:25] != epoch and sorted(rest[9:25]) == sorted(epoch)  # the next epoch: shuffled anew


def test_two_processes_read_disjoint_rows_that_cover_the_stream(numbered):
    seen = []
    for rank in (0, 1):
        rows = StreamingRows(str(numbered), 64, columns=COLUMNS, seed=0, share=(rank, 2))
        seen.append({item["text"] for _, item in zip(range(8), rows)})
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 16


def test_stopped_and_resumed_stream_run_matches_an_uninterrupted_one(tiny_models, shards, tmp_path):
    whole = train(config(tiny_models, shards, tmp_path / "whole", grad_accum=2))
    cfg = config(tiny_models, shards, tmp_path / "parts", grad_accum=2)
    assert train(TrainConfig(**{**cfg.to_dict(), "stop_after": 3})) is None
    assert (tmp_path / "parts" / "checkpoints" / "step-00000003" / "stream.pt").is_file()
    resumed = train(TrainConfig(**{**cfg.to_dict(), "resume": "latest"}))
    a, b = weights(whole), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    card = (tmp_path / "whole" / "controlnet" / "README.md").read_text()
    assert "stream" in card


def _png(colour):
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, "PNG")
    return buffer.getvalue()


def _write_shard(path, rows):
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "conditioning_image": ImageFeature(), "text": Value("string")})
    Dataset.from_dict({"image": [{"bytes": None, "path": r[0][5:]} if isinstance(r[0], str) else
                                 {"bytes": r[0], "path": None} for r in rows],
                       "conditioning_image": [{"bytes": r[1], "path": None} for r in rows],
                       "text": [r[2] for r in rows]}, features=features).to_parquet(str(path))


def test_bad_rows_are_skipped_counted_and_named_and_too_many_stop_the_run(tmp_path):
    good = [(_png((i, 0, 0)), _png((0, i, 0)), f"row {i}") for i in range(200)]
    data = tmp_path / "mostly-good"
    data.mkdir()
    broken = list(good)
    broken[5] = (b"not a png", good[5][1], "row 5")
    broken[9] = (good[9][0], good[9][1], "")
    broken[11] = ("PATH:/etc/hostname", good[11][1], "row 11")  # a cell that names a file on this machine
    _write_shard(data / "a.parquet", broken)
    log = tmp_path / "bad.jsonl"
    rows = StreamingRows(str(data), 64, columns=COLUMNS, seed=0, bad_rows_file=log, bad_row_limit=0.05)
    texts = [item["text"] for _, item in zip(range(197), rows)]
    assert len(set(texts)) == 197 and "row 5" not in texts and "row 11" not in texts
    reasons = [json.loads(line)["reason"] for line in log.read_text().splitlines()]
    assert len(reasons) == 3 and any("cannot identify image" in r for r in reasons) \
        and any("column 'text' is empty" in r for r in reasons) \
        and any("holds a path ('/etc/hostname'), not the image's bytes" in r for r in reasons)
    # Mostly broken: the run stops once more than bad_row_limit of the rows read are bad, naming the limit.
    awful = tmp_path / "awful"
    awful.mkdir()
    _write_shard(awful / "a.parquet", [(b"junk", b"junk", f"row {i}") for i in range(150)] + good[:10])
    with pytest.raises(DataError, match=r"\d+ of 10\d rows read are bad \(more than bad_row_limit=0.01\)"):
        list(zip(range(20), StreamingRows(str(awful), 64, columns=COLUMNS, seed=0)))


def test_stream_settings_are_checked(tiny_models, shards, tmp_path):
    with pytest.raises(ConfigError, match="precompute=True holds every latent in RAM"):
        config(tiny_models, shards, tmp_path, precompute=True).validated()
    with pytest.raises(DataError, match="no column 'picture'"):
        StreamingRows(str(shards), 64, columns=("picture", "conditioning_image", "text"), seed=0)
    with pytest.raises(DataError, match="is a folder without shards"):
        StreamingRows(str(tmp_path), 64, columns=COLUMNS, seed=0)
    (tmp_path / "a.parquet").write_bytes(b"")
    (tmp_path / "b.tar").write_bytes(b"")
    with pytest.raises(DataError, match="shards of one format"):
        StreamingRows(str(tmp_path), 64, columns=COLUMNS, seed=0)


def test_a_webdataset_tar_streams_with_its_shard_and_key_named(tmp_path):
    import tarfile

    with tarfile.open(tmp_path / "part-0.tar", "w") as tar:
        for i in range(3):
            for name, data in ((f"{i:04d}.image.png", _png((i, 0, 0))), (f"{i:04d}.conditioning_image.png",
                                                                           _png((0, i, 0))),
                               (f"{i:04d}.text.txt", f"row {i}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    items = [item for _, item in zip(range(3), StreamingRows(str(tmp_path), 64, columns=COLUMNS, seed=0))]
    assert sorted(i["id"] for i in items) == ["part-0.tar:0000", "part-0.tar:0001", "part-0.tar:0002"]
    assert items[0]["pixel_values"].shape == (3, 64, 64)


def _launch(tiny_models, shards, out, processes, *extra):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no"]
    launcher += ["--multi_gpu", "--num_processes", str(processes)] if processes > 1 else ["--num_processes", "1"]
    proc = subprocess.run(
        [*launcher, "-m", "train", "--base-model", str(tiny_models[0]), "--dataset", str(shards), "--streaming",
         "--shuffle-block", "5", "--output-dir", str(out), "--resolution", "64", "--batch-size", "2",
         "--max-steps", "6", "--checkpoint-every", "100", "--validate-every", "0", "--log-every", "1",
         "--preset", "none", *extra], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_two_processes_stop_and_resume_a_stream_like_an_uninterrupted_run(tiny_models, shards, tmp_path):
    whole = _launch(tiny_models, shards, tmp_path / "whole", 2)
    hashes = next(json.loads(line) for line in whole.splitlines() if '"event": "end"' in line)["weights_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]  # both ranks end with the same weights
    _launch(tiny_models, shards, tmp_path / "parts", 2, "--stop-after", "3")
    positions = torch.load(tmp_path / "parts" / "checkpoints" / "step-00000003" / "stream.pt", weights_only=False)
    assert len(positions) == 2  # each rank's own place in its own shards
    _launch(tiny_models, shards, tmp_path / "parts", 2, "--resume", "latest")
    a, b = weights(tmp_path / "whole" / "controlnet"), weights(tmp_path / "parts" / "controlnet")
    assert all(torch.equal(a[k], b[k]) for k in a)


def _peak_rss_mb(tiny_models, shards, out):
    script = ("import resource, sys; from train.cli import main; code = main(sys.argv[1:]); "
              "print('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)")
    proc = subprocess.run(
        [sys.executable, "-c", script, "--base-model", str(tiny_models[0]), "--dataset", str(shards), "--streaming",
         "--output-dir", str(out), "--resolution", "64", "--batch-size", "4", "--max-steps", "3",
         "--checkpoint-every", "100", "--validate-every", "0", "--preset", "none"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return int(proc.stdout.split("peak")[-1].split()[0]) / 1024


@pytest.mark.slow
def test_peak_memory_is_flat_in_the_datasets_size(tiny_models, tmp_path):
    """2,000 and 40,000 rows (64 px, written here as parquet shards): the peak RSS of a short run differs by less
    than 10%. The in-RAM layouts hold a row list (and, with precompute, every latent); a stream holds a block."""
    pictures = [_png((i % 251, (7 * i) % 253, 0)) for i in range(64)]
    for rows in (2_000, 40_000):
        folder = tmp_path / f"rows-{rows}"
        folder.mkdir()
        for shard in range(0, rows, 2_000):
            _write_shard(folder / f"shard-{shard // 2000:03d}.parquet",
                         [(pictures[i % 64], pictures[(i + 1) % 64], f"circle {i}")
                          for i in range(shard, shard + 2000)])
    small = _peak_rss_mb(tiny_models, tmp_path / "rows-2000", tmp_path / "run-small")
    large = _peak_rss_mb(tiny_models, tmp_path / "rows-40000", tmp_path / "run-large")
    assert abs(large - small) / small < 0.10, (small, large)
