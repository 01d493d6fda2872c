"""The trainer attacked as a flaky disk and an impatient user would: damaged checkpoints, images broken inside,
a Stop pressed while the run loads, a real full filesystem. Each test tries several members of its class."""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image

from train.checkpoint import CheckpointError, find_resume, verify_checkpoint, write_atomically
from train.config import TrainConfig
from train.data import DataError, load_rows
from train.loop import train

# -- damaged checkpoints ---------------------------------------------------------------------------------------------


def write_checkpoint(out, step, weight=1.0):
    """A checkpoint with the files a real one holds (weights, optimizer state, trainer state)."""
    import torch
    from safetensors.torch import save_file

    def write(folder):
        (folder / "controlnet").mkdir()
        save_file({"conv.weight": torch.randn(32, 32), "conv.bias": torch.full((32,), weight)},
                  str(folder / "controlnet" / "diffusion_pytorch_model.safetensors"))
        (folder / "controlnet" / "config.json").write_text('{"x": 1}')
        (folder / "optimizer.pt").write_bytes(os.urandom(8192))
        (folder / "trainer_state.json").write_text(json.dumps({"step": step, "stats": {}}))
    return write_atomically(out, step, write, {}, keep=5)


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGES = {
    "truncated weights": lambda c: truncate(c / "controlnet" / "diffusion_pytorch_model.safetensors"),
    "truncated optimizer": lambda c: truncate(c / "optimizer.pt"),
    "empty trainer state": lambda c: (c / "trainer_state.json").write_text(""),
    "flipped byte, same size": lambda c: flip_a_byte(c / "optimizer.pt"),
    "missing file": lambda c: (c / "controlnet" / "config.json").unlink(),
    "unreadable marker": lambda c: (c / "COMPLETE.json").write_text("{not json"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_newest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, damage):
    write_checkpoint(tmp_path, 2)
    newest = write_checkpoint(tmp_path, 4)
    assert verify_checkpoint(newest) is None
    DAMAGES[damage](newest)
    warnings = []
    assert find_resume(tmp_path, "latest", warn=warnings.append).name == "step-00000002"
    assert len(warnings) == 1 and "step-00000004" in warnings[0] and "damaged" in warnings[0]
    with pytest.raises(CheckpointError, match="damaged"):
        find_resume(tmp_path, str(newest))  # named explicitly: refused, never silently replaced


def test_every_checkpoint_damaged_is_a_clear_error(tmp_path):
    for step in (1, 2):
        truncate(write_checkpoint(tmp_path, step) / "optimizer.pt")
    with pytest.raises(CheckpointError, match="every checkpoint .* is damaged: step-00000002: optimizer.pt"):
        find_resume(tmp_path, "latest", warn=lambda m: None)


def test_checkpoint_files_and_folders_reach_the_disk_before_the_marker(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    final = write_checkpoint(tmp_path, 7)
    tmp = str(tmp_path / "checkpoints" / ".tmp-step-00000007")
    data_files = ["controlnet/diffusion_pytorch_model.safetensors", "controlnet/config.json", "optimizer.pt",
                  "trainer_state.json"]
    marker_at = synced.index(f"{tmp}/COMPLETE.json")
    assert {f"{tmp}/{name}" for name in data_files} <= set(synced[:marker_at])  # data first, marker after
    assert f"{tmp}/controlnet" in synced[:marker_at] and tmp in synced[marker_at:]
    assert str(tmp_path / "checkpoints") in synced[marker_at:]  # the rename itself
    marker = json.loads((final / "COMPLETE.json").read_text())
    assert sorted(marker["files"]) == sorted(data_files)
    assert marker["files"]["optimizer.pt"]["size"] == 8192 and len(marker["files"]["optimizer.pt"]["sha256"]) == 64


@pytest.mark.slow
def test_a_real_run_resumes_past_its_damaged_newest_checkpoint(tiny_models, circles, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "train", "--base-model", str(tiny_models[0]), "--dataset", str(circles),
            "--output-dir", str(out), "--resolution", "64", "--batch-size", "2", "--checkpoint-every", "2",
            "--keep-checkpoints", "3", "--validate-every", "0", "--preset", "none"]
    first = subprocess.run(args + ["--max-steps", "4"], capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    truncate(out / "checkpoints" / "step-00000004" / "optimizer.pt")
    resumed = subprocess.run(args + ["--max-steps", "5", "--resume", "latest"], capture_output=True, text=True,
                             timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert '"event": "resume", "step": 2' in resumed.stdout
    assert "step-00000004 is damaged (optimizer.pt is" in resumed.stdout


# -- images broken inside --------------------------------------------------------------------------------------------


def png_with_corrupt_pixels():
    """A PNG whose IDAT deflate stream is corrupt while every chunk checksum is valid: `Image.verify()` passes it."""
    import io

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buf, "PNG")
    data = bytearray(buf.getvalue())
    at = data.index(b"IDAT")
    length = struct.unpack(">I", data[at - 4:at])[0]
    body = bytearray(data[at + 4:at + 4 + length])
    body[2:] = bytes(b ^ 0x5A for b in body[2:])  # keep the zlib header, scramble the compressed data
    data[at + 4:at + 4 + length] = body
    data[at + 4 + length:at + 8 + length] = struct.pack(">I", zlib.crc32(b"IDAT" + bytes(body)) & 0xFFFFFFFF)
    return bytes(data)


def truncated_jpeg():
    import io

    buf = io.BytesIO()
    Image.effect_noise((128, 128), 50).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()[: len(buf.getvalue()) * 2 // 3]


BROKEN = {
    "png with corrupt pixel data": png_with_corrupt_pixels,
    "truncated jpeg": truncated_jpeg,
    "empty file": lambda: b"",
    "text named png": lambda: b"this is not an image",
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_the_dataset_check_decodes_images(circles, tmp_path, kind):
    with Image.open(__import__("io").BytesIO(png_with_corrupt_pixels())) as probe:
        probe.verify()  # the old check's blind spot: checksums are fine
    data = tmp_path / "data"
    shutil.copytree(circles, data)
    rows = [json.loads(line) for line in (data / "prompt.json").read_text().splitlines()]
    victim = rows[3]["source"]
    (data / victim).write_bytes(BROKEN[kind]())
    with pytest.raises(DataError, match=rf"prompt.json line 4: file {victim} \(column 'source'\) is not a usable "):
        load_rows(str(data))
    loaded = load_rows(str(data), skip_bad_rows=True)
    assert len(loaded.rows) == len(rows) - 1 and len(loaded.skipped) == 1 and victim in loaded.skipped[0]


def test_an_image_broken_after_the_check_names_its_row_and_file(circles, tmp_path):
    from train.data import ControlNetDataset

    data = tmp_path / "data"
    shutil.copytree(circles, data)
    loaded = load_rows(str(data))
    row = loaded.rows[5]
    Path(row.conditioning).write_bytes(truncated_jpeg())  # the disk changed under the run
    with pytest.raises(DataError, match=rf"prompt.json line {row.index}: the conditioning image {row.conditioning} "
                                        r"cannot be read .*use --skip-bad-rows"):
        ControlNetDataset(loaded.rows, 64)[5]


# -- a folder's rows checked as they are loaded ----------------------------------------------------------------------


def many_rows(circles, folder, rows, broken=()):
    """A metadata.jsonl folder of `rows` rows over the 16 circles; the rows numbered in `broken` (0-based) point at
    a truncated JPEG."""
    shutil.copytree(circles, folder)
    (folder / "broken.jpg").write_bytes(truncated_jpeg())
    pairs = [json.loads(line) for line in (circles / "prompt.json").read_text().splitlines()]
    with open(folder / "metadata.jsonl", "w") as f:
        for n in range(rows):
            pair = pairs[n % len(pairs)]
            f.write(json.dumps({"image": pair["target"], "text": pair["prompt"],
                                "conditioning_image": "broken.jpg" if n in broken else pair["source"]}) + "\n")
    return folder


def test_a_training_start_decodes_no_image_of_the_rows_it_has_not_reached(tiny_models, circles, tmp_path,
                                                                           monkeypatch):
    """2,000 rows: before the first step only the validation rows' images are decoded (the old start decoded all
    4,000 images first); two steps of batch 2 decode their rows (and the batch read ahead)."""
    from train import data as train_data

    decoded = []
    real = train_data.load_image
    monkeypatch.setattr(train_data, "load_image", lambda value: decoded.append(value) or real(value))
    data = many_rows(circles, tmp_path / "data", 2_000)
    at_start = []
    cfg = TrainConfig(base_model=str(tiny_models[0]), dataset=str(data), output_dir=str(tmp_path / "run"),
                      resolution=64, batch_size=2, max_steps=2, validate_every=0, num_validation=2)
    train(cfg, lambda event, info: at_start.append(len(decoded)) if event == "start" else None)
    assert at_start == [4]  # the two validation rows, image and condition
    assert len(decoded) == 4 + 3 * 2 * 2  # accelerate's loader reads one batch ahead of the two steps
    # The names were checked without the disk: a row that leads out of the folder is refused at once, by name.
    (data / "metadata.jsonl").write_text('{"image": "../x.png", "conditioning_image": "a.png", "text": "t"}\n')
    with pytest.raises(DataError, match=r"metadata.jsonl line 1: column 'image' points outside the dataset folder"):
        load_rows(str(data), check_files=False)


def test_a_bad_row_met_while_training_stops_the_run_by_name_or_is_skipped_logged_and_counted(tiny_models, circles,
                                                                                                tmp_path, capsys):
    data = many_rows(circles, tmp_path / "data", 16, broken={5})
    base = dict(base_model=str(tiny_models[0]), dataset=str(data), resolution=64, batch_size=4, max_steps=8,
                validate_every=0, checkpoint_every=2, num_validation=0)
    with pytest.raises(DataError, match=r"metadata.jsonl line 6: the conditioning image .*broken.jpg cannot be "
                                        r"read .*use --skip-bad-rows"):
        train(TrainConfig(output_dir=str(tmp_path / "strict"), **base))
    sizes = []
    out = tmp_path / "skipping"
    result = train(TrainConfig(output_dir=str(out), skip_bad_rows=True, **base),
                   lambda event, info: sizes.append(info["loss"]) if event == "step" else None)
    assert result is not None and len(sizes) == 8
    logged = [json.loads(line) for line in (out / "bad_rows.jsonl").read_text().splitlines()]
    assert [entry["row"] for entry in logged] == ["metadata.jsonl line 6"]  # once, though read in every epoch
    assert "broken.jpg cannot be read" in logged[0]["reason"]
    assert json.loads((out / "progress.json").read_text())["rows_skipped"] == 1
    assert "(metadata.jsonl, 16 rows, 1 skipped)" in (out / "controlnet" / "README.md").read_text()  # the card
    assert "skipped metadata.jsonl line 6: the conditioning image" in capsys.readouterr().err  # said as it happened


def test_past_the_bad_row_limit_a_folder_run_stops_naming_the_last_bad_row(circles, tmp_path):
    from train.bad_rows import RowLedger
    from train.data import ControlNetDataset

    data = many_rows(circles, tmp_path / "data", 300, broken={10, 150})
    rows = load_rows(str(data), check_files=False).rows
    ledger = RowLedger(str(data), len(rows), skip=True, limit=0.01, log_file=tmp_path / "bad_rows.jsonl")
    dataset = ControlNetDataset(rows, 64, ledger=ledger)
    used = [dataset[i]["index"] for i in range(100)]  # one bad row in the first 100 read: within 1%
    assert 10 not in used and used[10] == 11  # the next row took the bad one's place
    assert ledger.read == 100 and ledger.bad == 1
    with pytest.raises(DataError, match=r"2 of 151 rows read are bad \(more than bad_row_limit=0.01\); the "
                                        r"last: metadata.jsonl line 151"):
        for i in range(100, 200):
            dataset[i]


# -- Stop whenever it arrives -----------------------------------------------------------------------------------------


def train_args(tiny_models, circles, out, *extra):
    return [sys.executable, "-m", "train", "--base-model", str(tiny_models[0]), "--dataset", str(circles),
            "--output-dir", str(out), "--resolution", "64", "--batch-size", "2", "--max-steps", "400",
            "--validate-every", "0", "--log-every", "1", "--preset", "none", *extra]


@pytest.mark.slow
def test_a_stop_file_written_before_the_run_starts_is_honoured(tiny_models, circles, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "STOP").write_text("pressed early\n")
    proc = subprocess.run(train_args(tiny_models, circles, out), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"event": "stopped", "step": 0' in proc.stdout and not (out / "controlnet").exists()
    assert not (out / "STOP").exists()  # consumed: a Resume is not stopped again at once


@pytest.mark.slow
def catches_sigterm(pid):
    """Has process `pid` installed a SIGTERM handler yet? (its SigCgt mask in /proc)"""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


@pytest.mark.parametrize("delay", [0.0, 2.0])
def test_sigterm_while_loading_stops_cleanly(tiny_models, circles, tmp_path, delay):
    out = tmp_path / "run"
    proc = subprocess.Popen(train_args(tiny_models, circles, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not catches_sigterm(proc.pid) and time.monotonic() < deadline:  # as soon as it listens
        time.sleep(0.01)
    time.sleep(delay)  # then at once (importing torch, diffusers, ...), or later (loading data or models)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    assert '"event": "stopped"' in stdout and '"event": "end"' not in stdout


@pytest.mark.slow
def test_stop_pressed_in_the_app_while_the_run_loads_reads_stopped(tiny_models, circles, tmp_path):
    from webui.settings import AppSettings
    from webui.training import TrainingManager

    manager = TrainingManager(AppSettings(), workspace=tmp_path)
    manager.start("early", {"base_model": str(tiny_models[0]), "dataset": str(circles), "resolution": 64,
                            "batch_size": 2, "max_steps": 400, "validate_every": 0, "preset": "none"})
    assert "checkpoint is written first" in manager.stop()  # at once: the trainer is still importing
    assert manager.wait(timeout=300) == 0
    status = manager.status()
    assert "stopped at step 0/400" in status.message and "error" not in status.message


# -- a real full filesystem ------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (the tests run as root here and in CI); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk, leave=0):
    """Fill the filesystem until `leave` bytes are free."""
    with open(disk / "filler", "ab") as f:
        free = shutil.disk_usage(disk).free - leave
        while free > 0:
            try:
                f.write(b"\0" * min(free, 1 << 20))
                f.flush()
            except OSError:
                break
            free = shutil.disk_usage(disk).free - leave


@pytest.mark.parametrize("leave", [0, 64 * 1024])
def test_full_disk_at_a_checkpoint_keeps_nothing_half_written(tiny_models, circles, small_disk, leave):
    out = small_disk / "run"

    def fill_after_setup(event, info):
        if event == "start":
            fill(small_disk, leave)

    with pytest.raises(CheckpointError, match=f"no space left on {out}/checkpoints"):
        train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out), resolution=64,
                          batch_size=2, max_steps=3, checkpoint_every=2, validate_every=0, log_every=1),
              callback=fill_after_setup)
    assert not list((out / "checkpoints").glob(".tmp-*")) and not list((out / "checkpoints").glob("step-*"))


def test_full_disk_at_the_final_save_keeps_the_last_checkpoint(tiny_models, circles, small_disk):
    out = small_disk / "run"

    def fill_after_last_checkpoint(event, info):
        if event == "checkpoint" and info["step"] == 3:
            fill(small_disk)

    with pytest.raises(CheckpointError, match=rf"final ControlNet: no space left on {out}.*step-00000003 is intact"):
        train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out), resolution=64,
                          batch_size=2, max_steps=3, checkpoint_every=3, validate_every=0, log_every=1),
              callback=fill_after_last_checkpoint)
    assert not (out / ".tmp-controlnet").exists() and not (out / "controlnet").exists()
    assert verify_checkpoint(out / "checkpoints" / "step-00000003") is None
    (small_disk / "filler").unlink()  # space again: resuming from it finishes the run
    result = train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out),
                               resolution=64, batch_size=2, max_steps=3, checkpoint_every=3, validate_every=0,
                               resume="latest"))
    assert (result / "diffusion_pytorch_model.safetensors").is_file()


@pytest.mark.slow
def test_a_kill_during_a_real_checkpoint_write_leaves_the_previous_one(tiny_models, tmp_path):
    """SIGKILL while the weights of a real ControlNet are being written: the half-written folder is never
    resumed from, the previous checkpoint verifies, and the next write cleans up after it."""
    out = tmp_path / "run"
    script = f"""
import sys, time, torch
from diffusers import ControlNetModel
from train.checkpoint import write_atomically
net = ControlNetModel.from_pretrained({str(tiny_models[1])!r})
def write(folder, slow):
    net.save_pretrained(folder / "controlnet")
    torch.save({{"state": net.state_dict()}}, folder / "optimizer.pt")
    if slow:
        print("writing", flush=True)
        time.sleep(60)
    (folder / "trainer_state.json").write_text("{{}}")
write_atomically({str(out)!r}, 1, lambda f: write(f, False), {{}}, keep=3)
write_atomically({str(out)!r}, 2, lambda f: write(f, True), {{}}, keep=3)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    assert (out / "checkpoints" / ".tmp-step-00000002" / "controlnet").is_dir()  # killed mid-write
    assert find_resume(out, "latest").name == "step-00000001"
    assert verify_checkpoint(out / "checkpoints" / "step-00000001") is None
    write_atomically(out, 2, lambda f: (f / "trainer_state.json").write_text("{}"), {}, keep=3)
    assert not (out / "checkpoints" / ".tmp-step-00000002").exists()


@pytest.mark.slow
def test_sigterm_mid_run_writes_a_checkpoint_first(tiny_models, circles, tmp_path):
    from train.checkpoint import complete_checkpoints

    out = tmp_path / "run"
    proc = subprocess.Popen(train_args(tiny_models, circles, out, "--checkpoint-every", "1000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not (out / "progress.json").exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    stopped = [json.loads(line) for line in stdout.splitlines() if '"event": "stopped"' in line]
    assert stopped and stopped[0]["step"] >= 1
    checkpoints = complete_checkpoints(out)
    assert [step for step, _ in checkpoints] == [stopped[0]["step"]]  # written at the step it stopped at
    assert verify_checkpoint(checkpoints[0][1]) is None


def test_a_trainer_that_outlives_its_launcher_is_still_running_and_then_killed(tmp_path):
    """accelerate's launcher dies at SIGTERM, the trainer under it may not (it catches SIGTERM to checkpoint, and
    can be stuck): the run reads as running until the whole group is gone, and SIGKILL follows."""
    import threading

    from webui.settings import AppSettings
    from webui.training import TrainingManager, _group_alive

    manager = TrainingManager(AppSettings(), workspace=tmp_path)
    # A "launcher" shell that SIGTERM ends, with a "trainer" child that ignores SIGTERM.
    manager._process = subprocess.Popen(["bash", "-c", "(trap '' TERM; exec sleep 120) & wait"],
                                        start_new_session=True)
    manager._run = tmp_path / "runs" / "stuck"
    ender = threading.Thread(target=manager._terminate_later, args=(manager._process, 0.5, 3.0))
    ender.start()
    deadline = time.monotonic() + 10
    while manager._process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert manager._process.poll() is not None  # the launcher went at SIGTERM ...
    assert manager._alive() and manager.status().running  # ... the trainer did not: still running
    ender.join(timeout=20)
    assert not _group_alive(manager._process.pid) and not manager._alive()  # SIGKILL ended it


@pytest.mark.parametrize("keep", [1, 2])
def test_the_checkpoint_just_written_is_never_pruned_for_a_stale_newer_one(tmp_path, keep):
    """Resumed from step 2 past a damaged step 4: the new step 3 stays, step 4 is set aside (never resumed from)."""
    write_checkpoint(tmp_path, 2)
    truncate(write_checkpoint(tmp_path, 4) / "optimizer.pt")
    assert find_resume(tmp_path, "latest", warn=lambda m: None).name == "step-00000002"
    written = write_atomically(tmp_path, 3, lambda f: (f / "trainer_state.json").write_text("{}"), {}, keep=keep)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert written.is_dir() and find_resume(tmp_path, "latest").name == "step-00000003"
    assert [n for n in names if n.startswith("step-")] == (["step-00000003"] if keep == 1 else
                                                           ["step-00000002", "step-00000003"])
    assert any(n.startswith("superseded-step-00000004") for n in names)  # set aside, not deleted


# -- a run that diverges ---------------------------------------------------------------------------------------------


def test_a_run_whose_loss_becomes_nan_stops_naming_the_step_and_saves_nothing_from_it(tiny_models, circles,
                                                                                       tmp_path):
    from train.checkpoint import complete_checkpoints
    from train.finite import TrainingDiverged, nonfinite_weights_in

    out = tmp_path / "run"
    losses = []
    cfg = TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out), resolution=64,
                      batch_size=2, max_steps=12, lr=1e6, checkpoint_every=1, keep_checkpoints=2, validate_every=0,
                      log_every=1)
    with pytest.raises(TrainingDiverged, match=r"diverged at step (\d+): the loss is (nan|inf)") as raised:
        train(cfg, callback=lambda event, info: losses.append(info["loss"]) if event == "step" else None)
    step = int(raised.value.args[0].split("step ")[1].split(":")[0])
    assert step == len(losses) + 1  # the step that met the NaN was not taken
    kept = complete_checkpoints(out)
    assert kept and kept[-1][0] == step - 1 and f"step-{step - 1:08d}, is kept" in str(raised.value)
    assert all(nonfinite_weights_in(folder) is None for _, folder in kept)  # nothing non-finite was written
    # Checked when written, and recorded so: a resume does not read every weight again.
    assert all(json.loads((folder / "COMPLETE.json").read_text())["finite"] is True for _, folder in kept)
    assert not (out / "controlnet").exists()  # no result from a diverged run
    assert find_resume(out, "latest").name == f"step-{step - 1:08d}"
    assert "--lr 1e+06" in str(raised.value)


def test_resume_never_picks_a_checkpoint_with_nonfinite_weights(tmp_path):
    write_checkpoint(tmp_path, 2)
    for step, weight in ((4, float("nan")), (6, float("inf"))):
        write_checkpoint(tmp_path, step, weight=weight)  # as a run before this check would have left them
    warnings = []
    assert find_resume(tmp_path, "latest", warn=warnings.append).name == "step-00000002"
    assert len(warnings) == 2 and all("NaN or infinite weights (conv.bias)" in w for w in warnings)
    with pytest.raises(CheckpointError, match="NaN or infinite weights"):
        find_resume(tmp_path, str(tmp_path / "checkpoints" / "step-00000006"))


@pytest.mark.slow
def test_the_cli_and_the_train_tab_report_a_diverged_run_as_an_error(tiny_models, circles, tmp_path):
    from webui.settings import AppSettings
    from webui.training import TrainingManager

    out = tmp_path / "cli"
    args = [sys.executable, "-m", "train", "--base-model", str(tiny_models[0]), "--dataset", str(circles),
            "--output-dir", str(out), "--resolution", "64", "--batch-size", "2", "--checkpoint-every", "1",
            "--validate-every", "0", "--preset", "none", "--max-steps", "12", "--lr", "1e6"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "error: training diverged at step" in done.stderr and "Traceback" not in done.stderr
    assert "ControlNet saved" not in done.stdout and not (out / "controlnet").exists()
    manager = TrainingManager(AppSettings(), workspace=tmp_path / "ws")
    manager.start("nan", {"base_model": str(tiny_models[0]), "dataset": str(circles), "resolution": 64,
                          "batch_size": 2, "max_steps": 12, "lr": 1e6, "checkpoint_every": 1, "validate_every": 0,
                          "log_every": 1, "preset": "none"})
    assert manager.wait(timeout=300) not in (None, 0)
    status = manager.status()
    assert "ended with an error" in status.message and "training diverged at step" in status.message


@pytest.mark.slow
def test_a_bad_row_met_by_one_of_two_processes_stops_both_within_the_step(tiny_models, circles, tmp_path):
    """The bad row is in one process's share of the epoch: that process names it, and the other stops at the same
    batch instead of waiting at the next collective until the launcher's timeout (30 minutes by default)."""
    import re

    from conftest import launch_two_processes

    data = many_rows(circles, tmp_path / "data", 16, broken={5})
    started = time.monotonic()
    proc = launch_two_processes(
        "-m", "train", "--base-model", str(tiny_models[0]), "--dataset", str(data), "--output-dir",
        str(tmp_path / "run"), "--resolution", "64", "--batch-size", "2", "--max-steps", "8", "--checkpoint-every",
        "100", "--validate-every", "0", "--log-every", "1", "--preset", "none")
    assert proc.returncode != 0 and time.monotonic() - started < 300, proc.stderr[-3000:]
    # Both processes write to one stderr, so their lines can run together: found by pattern, not by line.
    assert len(re.findall(r"error: metadata.jsonl line 6: the conditioning image \S+broken.jpg cannot", proc.stderr)) \
        == 1, proc.stderr[-3000:]
    assert len(re.findall(r"error: another process stopped on its data at step \d+", proc.stderr)) == 1
    assert not (tmp_path / "run" / "controlnet").exists()


def test_with_a_loader_worker_a_bad_row_is_named_without_the_workers_traceback_and_logged_once(tiny_models, circles,
                                                                                                tmp_path):
    data = many_rows(circles, tmp_path / "data", 16, broken={5})
    base = dict(base_model=str(tiny_models[0]), dataset=str(data), resolution=64, batch_size=4, max_steps=8,
                validate_every=0, checkpoint_every=100, num_validation=0, num_workers=1)
    with pytest.raises(DataError) as raised:
        train(TrainConfig(output_dir=str(tmp_path / "strict"), **base))
    assert str(raised.value).startswith("metadata.jsonl line 6: the conditioning image ")
    assert "Traceback" not in str(raised.value)
    out = tmp_path / "skipping"
    assert train(TrainConfig(output_dir=str(out), skip_bad_rows=True, **base)) is not None  # two epochs
    assert len((out / "bad_rows.jsonl").read_text().splitlines()) == 1  # the worker's ledger outlived the epoch
    assert json.loads((out / "progress.json").read_text())["rows_skipped"] == 1
