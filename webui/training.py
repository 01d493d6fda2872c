"""Training runs started from the app: one subprocess at a time, `accelerate launch -m train ...`, watched through
the files the trainer writes (progress.json, metrics.jsonl, validation/, train.log). No gradio here.

Every Gradio event is an HTTP endpoint, hidden or not, so the permission check lives in these functions: on a public
deployment nothing starts unless the operator set CNET_ALLOW_TRAINING=1, and every path stays inside the workspace.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cnet.demo import DEMO_BASE
from common.env import env_flag, env_text
from common.models import parse_hub_id

from .settings import AppSettings

RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LOG_LINES = 12  # the Log box's height: the newest lines, so the box never needs scrolling to show them
DEMO_FOLDER = DEMO_BASE.parent  # the shipped demo models and data recipe: read-only inputs


# Training the demo ControlNet on circles from the Train tab. Measured on a 2-core VM without a GPU over three seeds
# (docs/demo-model.md, "The quick start"; python -m bench.quick_start): with "quick", about 12 minutes; at step 600
# the held-out circle IoU was 0.66 and 0.64 for seeds 0 (the tab's) and 2, which jumped by step 450, and 0.12 for
# seed 1, which had not jumped yet: when the sudden convergence comes depends on the seed.
# "full" is the first stage of the shipped model's recipe (examples/shapes/recipe.sh): 2,000 steps of batch 32.
DEMO_RECIPES: dict[str, dict[str, Any]] = {
    "quick": {"max_steps": 600, "batch_size": 32, "grad_accum": 2, "lr": 3e-3, "checkpoint_every": 100,
              "validate_every": 50},
    "full": {"max_steps": 2000, "batch_size": 32, "grad_accum": 1, "lr": 1e-3, "checkpoint_every": 250,
             "validate_every": 250},
}


class UsableResult(NamedTuple):
    """What "Use in Generate" hands over: the ControlNet, the base model it goes with, and which one it is."""

    controlnet: str
    base_model: str
    what: str


class TrainingRefused(PermissionError):
    """This deployment does not let the caller start or touch training runs."""


@dataclass
class RunStatus:
    name: str | None = None
    running: bool = False
    step: int = 0
    max_steps: int = 0
    loss: float | None = None
    eta_seconds: float | None = None
    message: str = ""
    log_tail: str = ""
    metrics: list[dict[str, Any]] = field(default_factory=list)
    fidelity: list[dict[str, Any]] = field(default_factory=list)  # {"step", "fidelity"} from validation.jsonl
    fidelity_error: str = ""  # why the last validation has no score (an annotator's weights missing, say)
    checkpoint: str | None = None  # the newest complete checkpoint's folder name
    config: dict[str, Any] = field(default_factory=dict)  # the run's saved settings (config.json)
    validation: list[str] = field(default_factory=list)  # newest first
    controlnet: str | None = None  # the finished ControlNet folder, when there is one
    progress: dict[str, Any] = field(default_factory=dict)  # progress.json of this run's own part
    error: str | None = None  # the trainer's own error message, when it ended with one


class TrainingManager:
    """Starts, watches, stops and resumes training runs under `workspace/runs/<name>`."""

    def __init__(self, settings: AppSettings, workspace: str | Path | None = None) -> None:
        self.settings = settings
        self.workspace = Path(workspace or env_text("CNET_WORKSPACE", "workspace")).resolve()
        self.allowed = not settings.public or env_flag("CNET_ALLOW_TRAINING")
        self._process: subprocess.Popen | None = None
        self._run: Path | None = None
        self._stop_requested = False  # for the current run: a forced end after Stop still reads "stopped"
        self._started = 0.0  # when the current run was launched: older progress files belong to its previous part
        self._lock = threading.Lock()

    # -- checks ------------------------------------------------------------------------------------------------------
    def ensure_allowed(self) -> None:
        if not self.allowed:
            raise TrainingRefused("Training is off on this public deployment; its operator can enable it with "
                                  "CNET_ALLOW_TRAINING=1.")

    def run_dir(self, name: str) -> Path:
        """workspace/runs/<name>, for a plain folder name only."""
        if not isinstance(name, str) or not RUN_NAME.match(name) or ".." in name:
            raise ValueError(f"run name {name!r}: use letters, digits, '-', '_' or '.' (at most 64)")
        return self.workspace / "runs" / name

    def resolve_input(self, value: str, what: str) -> str:
        """A dataset or model reference: Hub ids pass; paths must stay in the workspace on public deployments."""
        value = (value or "").strip()
        if not value:
            raise ValueError(f"{what} is empty")
        candidate = Path(value).expanduser()
        in_workspace = (self.workspace / value).resolve()
        if candidate.is_absolute() or value.startswith(".") or candidate.exists() or in_workspace.exists():
            path = candidate.resolve() if candidate.is_absolute() else in_workspace
            inside = self.workspace in (path, *path.parents) or DEMO_FOLDER in (path, *path.parents)
            if self.settings.public and not inside:
                raise ValueError(f"{what}={value!r}: on this deployment paths must stay inside the workspace")
            if not path.exists():
                raise ValueError(f"{what}={value!r}: no such file or folder")
            return str(path)
        try:
            return parse_hub_id(value, what=what).spec
        except ValueError:
            raise ValueError(f"{what}={value!r} is neither an existing path nor a Hub id (owner/name)") from None

    def output_folder(self, value: str, what: str) -> Path:
        """A folder the run writes (it may not exist yet): relative paths are the workspace's, and on a public
        deployment it must stay inside the workspace."""
        path = Path(str(value)).expanduser()
        path = (path if path.is_absolute() else self.workspace / path).resolve()
        if self.settings.public and self.workspace not in (path, *path.parents):
            raise ValueError(f"{what}={value!r}: on this deployment paths must stay inside the workspace")
        return path

    def demo_settings(self, recipe: str = "quick") -> tuple[str, dict[str, Any]]:
        """A run that trains the demo ControlNet on circles: (run name, settings) for `recipe` in DEMO_RECIPES.
        Writes the circles datasets into the workspace the first time."""
        from shapes.data import write_dataset

        self.ensure_allowed()  # it writes datasets: the same rule as starting a run
        if recipe not in DEMO_RECIPES:
            raise ValueError(f"recipe={recipe!r} is not one of {sorted(DEMO_RECIPES)}")
        data = self.workspace / "datasets" / "circles"
        held_out = self.workspace / "datasets" / "circles-held-out"
        if not (data / "prompt.json").exists():
            write_dataset(data, 2000, seed=1)
        if not (held_out / "prompt.json").exists():
            write_dataset(held_out, 16, seed=12345)  # the evaluation's held-out circles (shapes/eval.py)
        return f"demo-circles-{recipe}", {
            "base_model": str(DEMO_BASE), "dataset": str(data), "validation_dataset": str(held_out),
            "mode": "default", "resolution": 64, "fidelity": "shapes", "streaming": False, "latent_cache": False,
            **DEMO_RECIPES[recipe]}  # the circles are a folder dataset: not streamed

    # -- actions -----------------------------------------------------------------------------------------------------
    def start(self, name: str, settings: dict[str, Any], resume: bool = False) -> Path:
        """Launch `accelerate launch -m train` for run `name` with `settings` (TrainConfig field names)."""
        self.ensure_allowed()
        with self._lock:
            if self._alive():
                raise ValueError(f"run {self._run.name!r} is still going: stop it first")
            out, command = self.command(name, settings, resume)
            out.mkdir(parents=True, exist_ok=True)
            (out / "STOP").unlink(missing_ok=True)
            root = Path(__file__).resolve().parents[1]
            with open(out / "train.log", "a") as log:  # the child keeps its own handle; ours closes here
                log.write(f"\n$ {' '.join(command)}\n")
                log.flush()
                self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=root,
                                                 start_new_session=True,
                                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
            self._run = out
            self._stop_requested = False
            self._started = time.time()
            return out

    def command(self, name: str, settings: dict[str, Any], resume: bool = False) -> tuple[Path, list[str]]:
        """(run folder, launch command) for run `name` with `settings`: inputs resolved and the settings checked,
        nothing started. What `start` runs; the benchmarks run the same."""
        self.ensure_allowed()
        out = self.run_dir(name)
        given = dict(settings)
        for optional in ("init_controlnet", "validation_dataset"):
            if given.get(optional):
                given[optional] = self.resolve_input(given[optional], optional)
        given["output_dir"] = str(out)
        # The tab's box asks for a cache; its place is the run's own folder (inside the workspace, and a Resume
        # finds it again). A path from elsewhere (the API, a script) is resolved like any input.
        if given.get("latent_cache") is True:
            given["latent_cache"] = str(out / "latent-cache")
        elif given.get("latent_cache"):
            given["latent_cache"] = str(self.output_folder(given["latent_cache"], "latent_cache"))
        else:
            given["latent_cache"] = None
        if resume:
            given["resume"] = "latest"
            from train.config import saved_settings

            saved = saved_settings(out)  # a run continues on its own base model and data, whatever the form says
            for key in ("base_model", "dataset"):
                if saved.get(key):
                    given[key] = saved[key]
        given["dataset"] = self.resolve_input(given.get("dataset", ""), "dataset")
        if given.get("streaming"):
            from train.stream import check_streamable

            check_streamable(given["dataset"])  # a folder of images is not a stream: said now, not in the log
        given["base_model"] = self.resolve_input(given.get("base_model", ""), "base_model")
        preset = given.pop("preset", "auto")
        from train.config import TrainConfig

        TrainConfig(**given).validated()  # refuse bad settings here, not in a log line later
        return out, _command(given, preset, resume)

    def _alive(self) -> bool:
        """Is anything of the current run still running? The launcher (accelerate) or the trainer under it: they
        share a process group, and the trainer can outlive a launcher that a signal ended."""
        if self._process is None:
            return False
        if self._process.poll() is None:
            return True
        return _group_alive(self._process.pid)

    def stop(self, grace_seconds: float = 120.0) -> str:
        """Ask the run to stop: it writes a checkpoint at the end of the current step, then exits."""
        self.ensure_allowed()
        if not self._alive():
            return "No run is going."
        # The trainer honours the file whenever it arrives, even while it is still loading.
        (self._run / "STOP").write_text("stop requested from the app\n")
        self._stop_requested = True
        threading.Thread(target=self._terminate_later, args=(self._process, grace_seconds), daemon=True).start()
        return f"Stopping {self._run.name}: a checkpoint is written first."

    def _terminate_later(self, process: subprocess.Popen, grace: float, kill_after: float = 30.0) -> None:
        """After `grace` seconds, SIGTERM the whole process group (the trainer checkpoints first); `kill_after`
        seconds later, SIGKILL whatever of it is left. Waits on the group, not only the launcher, which a signal
        ends at once while the trainer under it goes on."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if process.poll() is not None and not _group_alive(process.pid):
                    return
                time.sleep(0.5)
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            grace = kill_after

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait for the run (launcher and trainer) to end; the launcher's exit code."""
        if self._process is None:
            return None
        code = self._process.wait(timeout=timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while _group_alive(self._process.pid) and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.2)
        return code

    def result_for_generate(self) -> str:
        """The ControlNet of the run being shown for the Generate tab's ControlNet field (`result_and_base`)."""
        return self.result_and_base().controlnet

    def result_and_base(self) -> UsableResult:
        """The ControlNet of the run being shown and the base model it was trained on: its finished result, or,
        before the run ends (running, stopped, or failed later; also a resumed run whose newer checkpoints follow an
        older result), a stable copy of its newest complete checkpoint's (`_handed_over`)."""
        from train.checkpoint import complete_checkpoints

        self.ensure_allowed()
        status = self.status()
        base = status.config.get("base_model") or ""
        found = complete_checkpoints(self.shown_run()) if status.name else []
        result = Path(status.controlnet) if status.controlnet else None
        if result is not None and not status.running and not (found and _newer(found[-1][1], result)):
            trained_base = result.parent / "base"  # large mode trained the base too: that one
            return UsableResult(str(result), str(trained_base) if (trained_base / "model_index.json").is_file()
                                else base, "its finished result")
        if not found:
            raise ValueError("The run has no ControlNet yet: the first comes with its first checkpoint (every "
                             f"{status.config.get('checkpoint_every', '?')} steps), the last when it ends.")
        step, folder = found[-1]
        if any((folder / name / "config.json").is_file() for name in ("unet", "transformer")):
            raise ValueError(f"Checkpoint step {step} trained the base model too (large mode): Generate needs the "
                             "whole trained base, which the run saves when it ends.")
        state = "is still going" if status.running else "has not finished"
        raw = "; its raw weights: the EMA's come with the result" if status.config.get("ema_decay") else ""
        return UsableResult(str(_handed_over(folder, step)), base,
                            f"its newest checkpoint (step {step}; the run {state}{raw})")

    def push(self, name: str, repo_id: str = "", private: bool = False) -> str:
        """The finished ControlNet of run `name` to the Hugging Face Hub (train/hub.py), with the machine's
        token (HF_TOKEN or `hf auth login`); a line saying where it went. Refused on a public deployment (as
        starting a run), offline (HubUnavailable, with the command for later), and before the run has a result.
        On a public deployment it is off even where training is allowed: it would publish with the server's token,
        to any repository a visitor names, any visitor's run."""
        self.ensure_allowed()
        if self.settings.public:
            raise TrainingRefused("Pushing to the Hub is off on a public deployment (it would use the server's "
                                  "token); download the result and push it from your machine.")
        from train.hub import push_run

        run = self.run_dir(name)  # the run named in the form (a plain name inside the workspace)
        if not (run / "config.json").is_file():
            raise ValueError(f"No run named {name!r} in the workspace: train it first (its name is the folder under "
                             "workspace/runs).")
        return f"Pushed to {push_run(run, repo_id.strip() or None, private=private)}"

    def shown_run(self) -> Path | None:
        """The run the tab shows: the one started here, else the newest in the workspace (after an app restart)."""
        if self._run is not None:
            return self._run
        runs = [p.parent for p in (self.workspace / "runs").glob("*/config.json") if RUN_NAME.match(p.parent.name)]
        return max(runs, key=lambda p: (p / "config.json").stat().st_mtime, default=None)

    # -- watching ----------------------------------------------------------------------------------------------------
    def status(self, name: str | None = None) -> RunStatus:
        """What the run's files say now (the current run, or run `name`)."""
        from train.checkpoint import complete_checkpoints

        out = self.run_dir(name) if name else self.shown_run()
        if out is None:
            return RunStatus(message="No run started yet.")
        running = self._run == out and self._alive()
        status = RunStatus(name=out.name, running=running)
        progress = _read_json(out / "progress.json")
        if progress:
            status.step, status.loss = progress.get("step", 0), progress.get("loss")  # no loss while caching
            # A resumed run reads its previous part's file until its own first step: no ETA from that one.
            fresh = not running or _mtime(out / "progress.json") >= self._started
            status.eta_seconds = progress.get("eta_seconds") if fresh else None
            status.progress = progress if fresh else {}
        status.config = _read_json(out / "config.json") or {}
        status.max_steps = status.config.get("max_steps", 0)
        status.metrics = _read_jsonl(out / "metrics.jsonl")
        validations = _read_jsonl(out / "validation.jsonl")
        status.fidelity = [{"step": r["step"], "fidelity": r["fidelity"]} for r in validations
                           if isinstance(r.get("fidelity"), (int, float))]
        status.fidelity_error = validations[-1].get("fidelity_error", "") if validations else ""
        status.validation = [str(p) for p in sorted((out / "validation").glob("step-*.png"), reverse=True)]
        lines = (out / "train.log").read_text(errors="replace").splitlines() if (out / "train.log").exists() else []
        status.log_tail = "\n".join(readable_log_line(line) for line in lines[-LOG_LINES:])
        found = complete_checkpoints(out)
        status.checkpoint = found[-1][1].name if found else None
        if (out / "controlnet" / "config.json").exists():
            status.controlnet = str(out / "controlnet")
        exit_code = None if running or self._process is None or self._run != out else self._process.poll()
        if exit_code not in (None, 0):  # the trainer's own "error: ..." line, not accelerate's traceback after it
            errors = [line for line in lines if line.startswith("error: ")]
            status.error = errors[-1].removeprefix("error: ") if errors else None
        status.message = _describe(status, exit_code, stop_requested=self._stop_requested and self._run == out)
        return status


def _newer(checkpoint: Path, result: Path) -> bool:
    """Was `checkpoint` written after the result (a finished run resumed to train on)?"""
    return _mtime(checkpoint / "COMPLETE.json") > _mtime(result / "config.json")


HANDOVERS_KEPT = 2  # the newest copies: the one Generate may still be loading stays while the next is made


def _handed_over(checkpoint: Path, step: int) -> Path:
    """The checkpoint's ControlNet as `RUN/use-in-generate/step-N/controlnet`: the trainer prunes old checkpoints
    (`--keep-checkpoints`) while Generate may be loading one. Hard links where the disk allows (no bytes copied),
    else a copy; older copies beyond HANDOVERS_KEPT (this one included) are removed."""
    import shutil

    folder = checkpoint.parent.parent / "use-in-generate"
    target = folder / f"step-{step:08d}" / "controlnet"
    if not (target / "config.json").is_file():
        staging = target.with_name(".controlnet")
        shutil.rmtree(staging, ignore_errors=True)
        try:
            shutil.copytree(checkpoint / "controlnet", staging, copy_function=os.link)
        except OSError:  # another file system, or no hard links here
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(checkpoint / "controlnet", staging)
        os.replace(staging, target)
    # The one returned, and the newest others: a resume from an older checkpoint hands over a lower step.
    others = sorted(p for p in folder.glob("step-*") if p != target.parent)
    for old in others[:len(others) - (HANDOVERS_KEPT - 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def _command(given: dict[str, Any], preset: str, resume: bool) -> list[str]:
    """`accelerate launch -m train` with a flag per setting. A new run leaves out the settings at their defaults,
    so that the memory preset fills them, as the form says ("fills only what you leave at default"); a resumed run
    passes them all (its saved settings would otherwise come back)."""
    from dataclasses import fields

    from train.config import TrainConfig

    command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
               "--mixed_precision", given.get("mixed_precision", "no"), "--dynamo_backend", "no", "-m", "train",
               "--preset", str(preset)]
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    for key, value in given.items():
        flag = "--" + key.replace("_", "-")
        if not resume and key in defaults and value == defaults[key]:
            continue
        if isinstance(value, bool):
            command.append(flag if value else "--no-" + key.replace("_", "-"))
        elif value is not None and key != "extra":
            command += [flag, str(value)]
    return command


# The trainer's JSON events as one short line each (the Log box is LOG_LINES high: a wrapped line of raw JSON pushed
# the newest ones out of sight). Each: the event's name, and how its fields read.
_EVENTS: dict[str, Callable[[dict[str, Any]], str]] = {
    "log": lambda e: (f"step {e.get('step')} · loss {e.get('loss', float('nan')):.4f} · lr {e.get('lr', 0):.2g} · "
                      f"{e.get('seconds_per_step', 0):.2f} s/step · empty prompts "
                      f"{e.get('empty_prompt_fraction', 0):.0%}"),
    "validation": lambda e: (f"validation at step {e.get('step')}: fidelity "
                             f"{'n/a' if e.get('fidelity') is None else format(e['fidelity'], '.3f')}"),
    "checkpoint": lambda e: f"checkpoint saved at step {e.get('step')}",
    "start": lambda e: (f"started at step {e.get('step')} of {e.get('max_steps')}: "
                        f"{'a stream' if e.get('rows') is None else format(e['rows'], ',') + ' rows'} "
                        f"({e.get('layout')}), {e.get('processes')} process(es)"),
    "end": lambda e: f"finished at step {e.get('step')}: {e.get('path')}",
    "stopped": lambda e: f"stopped at step {e.get('step')} (a checkpoint holds it: Resume goes on)",
    "warning": lambda e: f"warning: {e.get('message')}",
    "pushed": lambda e: f"pushed to {e.get('url')}",
    "resume": lambda e: f"resumed at step {e.get('step')} from {Path(str(e.get('checkpoint'))).name}",
    "cache": lambda e: f"latent cache: shard {e.get('done')} of {e.get('of') or '?'} written",
}


def readable_log_line(line: str) -> str:
    """A line of train.log as the Log box shows it: a trainer event in words, anything else as it is."""
    if not line.startswith('{"event"'):
        return line
    try:
        event = json.loads(line)
        show = _EVENTS.get(event.get("event"))
        return show(event) if show else f"{event.pop('event')}: " + ", ".join(f"{k} {v}" for k, v in event.items())
    except (ValueError, TypeError, AttributeError):  # a line cut short, or a field of another type: as it is
        return line


def _describe(status: RunStatus, exit_code: int | None, stop_requested: bool = False) -> str:
    where = f"step {status.step}/{status.max_steps}" if status.max_steps else f"step {status.step}"
    progress = status.progress
    if status.running and stop_requested:
        return f"Stopping {status.name} at {where}: a checkpoint is written first."
    if status.running and not progress:
        return f"Running {status.name}: loading the models and data before the first step."
    if status.running and progress.get("phase") == "caching":
        done, of = progress.get("cache_done", 0), progress.get("cache_of")
        if not of:  # a stream: its length is not known until it ends
            return f"Running {status.name}: encoding the latent cache from the stream before the first step, " \
                   f"{done} shard{'' if done == 1 else 's'} written."
        return (f"Running {status.name}: encoding the latent cache before the first step, shard {done} of {of} "
                f"{progress_bar(done / max(1, of))}.")
    if status.running:
        eta = f", about {time.strftime('%H:%M:%S', time.gmtime(status.eta_seconds))} left" \
            if status.eta_seconds is not None else ""
        loss = f", loss {status.loss:.4f}" if status.loss is not None else ""
        speed = f", {progress['images_per_second']:.1f} images/s" if progress.get("images_per_second") else ""
        bar = f" {progress_bar(status.step / status.max_steps)}" if status.max_steps else ""
        return f"Running {status.name}: {where}{bar}{loss}{speed}{eta}.{_data_counts(progress)}"
    if status.controlnet:
        return f"{status.name} finished at {where}: the ControlNet is in {status.controlnet}."
    if exit_code not in (None, 0) and stop_requested and exit_code < 0:  # ended by our own SIGTERM/SIGKILL
        return f"{status.name} stopped at {where} (it did not stop in time and was ended); Resume continues " \
               "from its last checkpoint."
    if exit_code not in (None, 0):
        if status.error:
            return f"{status.name} ended with an error at {where}: {status.error}"
        return f"{status.name} ended with an error (exit {exit_code}) at {where}: see the log."
    if status.step == 0:
        return f"{status.name} stopped at {where}, before its first training step."
    saved = f" from {status.checkpoint}" if status.checkpoint else " from its last checkpoint"
    return f"{status.name} stopped at {where}; Resume continues{saved}."


def progress_bar(fraction: float, width: int = 20) -> str:
    """`[██████░░░░░░] 30%` for a status line."""
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    return f"[{'█' * filled}{'░' * (width - filled)}] {fraction:.0%}"


def _data_counts(progress: dict[str, Any]) -> str:
    """' Data: 1,234 rows read, 3 skipped.' (a stream) or ' Data: 16 rows, 1 skipped.' (a folder); '' unknown."""
    skipped = progress.get("rows_skipped", 0)
    if "rows_read" in progress:
        about = "about " if progress.get("rows_estimated") else ""
        return f" Data: {about}{progress['rows_read']:,} rows read, {about}{skipped:,} skipped."
    if "rows" in progress:
        return f" Data: {progress['rows']:,} rows, {skipped:,} skipped."
    return ""


def _group_alive(pgid: int) -> bool:
    """Does a live (not zombie) process of group `pgid` remain? /proc where there is one, else a null signal."""
    proc = Path("/proc")
    if proc.is_dir():
        for stat in proc.glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # ended meanwhile
            if fields[0] != "Z" and int(fields[2]) == pgid:  # state, ppid, pgrp
                return True
        return False
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a JSON-lines file the trainer appends to (a line being written is skipped)."""
    try:
        text = path.read_text()
    except OSError:
        return []
    rows = []
    for line in text.splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return rows


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
