"""Annotation, dataset building and batch generation split over the processes of `accelerate launch` (two CPU
processes here), each taking its own share, and resumable: what is written is not made again."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from common.shares import Share


def test_shares_are_disjoint_and_cover_everything(monkeypatch):
    items = list(range(11))
    shares = []
    for rank in (0, 1, 2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        shares.append(Share.from_env().take(items))
    assert sorted(sum(shares, [])) == items and not set(shares[0]) & set(shares[1])
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    assert Share.from_env().take(items) == items and Share.from_env().suffix == ""
    monkeypatch.setenv("RANK", "4")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="RANK=4 is not within WORLD_SIZE=2"):
        Share.from_env()


def _launch(*command, processes=2):
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                           str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                           *command], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture
def photos(tmp_path, astronaut):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(astronaut[i * 40:i * 40 + 256, :256]).save(folder / f"p{i}.png")
    (folder / "broken.png").write_bytes(b"nope")
    return folder


@pytest.mark.slow
def test_two_processes_annotate_a_folder_once_and_a_rerun_resumes(photos, tmp_path):
    first = _launch("-m", "annotators", "batch", "--kind", "canny", "--input", str(photos), "--output",
                    str(tmp_path / "maps"), "--detect-resolution", "64")
    written = [line for line in first.stdout.splitlines() if "written to" in line]
    assert len(written) == 2  # one summary per process
    assert sum(int(line.split()[0]) for line in written) == 5  # every photo once, over both processes
    assert sorted(p.name for p in (tmp_path / "maps").glob("*.png")) == [f"p{i}.png" for i in range(5)]
    again = _launch("-m", "annotators", "batch", "--kind", "canny", "--input", str(photos), "--output",
                    str(tmp_path / "maps"), "--detect-resolution", "64")
    assert all(line.startswith("0 maps written") for line in again.stdout.splitlines() if "written to" in line)


@pytest.mark.slow
def test_two_processes_build_one_dataset_that_a_rerun_leaves_as_it_is(photos, tmp_path):
    from train.data import load_rows

    out = tmp_path / "set"
    _launch("-m", "train", "build-dataset", "--photos", str(photos), "--kind", "canny", "--out", str(out),
            "--caption", "none", "--text", "a photo", "--resolution", "64")
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == [f"p{i}.png" for i in range(5)]  # in photo order, from both parts
    assert len(load_rows(str(out)).rows) == 5
    before = (out / "metadata.jsonl").read_text()
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}
    _launch("-m", "train", "build-dataset", "--photos", str(photos), "--kind", "canny", "--out", str(out),
            "--caption", "none", "--text", "a photo", "--resolution", "64")
    assert (out / "metadata.jsonl").read_text() == before
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == mtimes  # nothing made again
    # A new photo: only it is made, and it takes its place in the merged list.
    Image.open(photos / "p0.png").save(photos / "a-new.png")
    _launch("-m", "train", "build-dataset", "--photos", str(photos), "--kind", "canny", "--out", str(out),
            "--caption", "none", "--text", "a photo", "--resolution", "64")
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["a-new.png"] + [f"p{i}.png" for i in range(5)]
    assert all(p.stat().st_mtime_ns == mtimes[p.name] for p in (out / "images").iterdir() if p.name in mtimes)
    # Other settings into the same folder would mix two datasets: refused, naming them.
    refused = subprocess.run([sys.executable, "-m", "train", "build-dataset", "--photos", str(photos), "--kind",
                              "depth", "--out", str(out), "--caption", "none"], capture_output=True, text=True,
                             timeout=300)
    assert refused.returncode == 2 and "was built with other settings (kind" in refused.stderr


@pytest.mark.slow
def test_two_processes_generate_a_batch_each_input_once(tiny_models, cond_map, tmp_path):
    inputs = tmp_path / "maps"
    inputs.mkdir()
    for i in range(3):
        cond_map.rotate(90 * i).save(inputs / f"m{i}.png")
    command = ["-m", "cnet", "batch", "--input", str(inputs), "--out", str(tmp_path / "out"), "--base-model",
               str(tiny_models[0]), "--controlnet", str(tiny_models[1]), "--steps", "2", "--seed", "1"]
    _launch(*command)
    tables = sorted((tmp_path / "out").glob("results.part-*-of-002.jsonl"))
    assert len(tables) == 2
    done = [json.loads(line)["input"] for table in tables for line in table.read_text().splitlines()]
    assert sorted(done) == ["m0.png", "m1.png", "m2.png"]
    again = _launch(*command)
    assert "0 input(s) done, " in again.stderr and "already done" in again.stderr
