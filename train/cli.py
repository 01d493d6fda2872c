"""`python -m train`: fine-tune a ControlNet, or build a dataset from photos.

    python -m train --base-model ID|PATH --dataset PATH|HUB_ID --output-dir DIR [--mode default|small|large] ...
    python -m train --config run.toml [--max-steps 2000]          # flags override the file
    python -m train build-dataset --photos DIR --kind canny --out DIR [--caption blip|none]
    python -m train push --run DIR [--repo-id OWNER/NAME] [--private]   # a finished run to the Hugging Face Hub
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, fields
from pathlib import Path

from cnet.kinds import DEFAULT_BASE_MODEL
from common.program import program_name

from .config import MODES, PRECISIONS, ConfigError, TrainConfig, saved_settings
from .presets import PRESETS

CHOICES = {"mode": MODES, "mixed_precision": PRECISIONS}


def build_parser() -> argparse.ArgumentParser:
    """One flag per TrainConfig field (--kebab-case); defaults stay in the dataclass, so only given flags count."""
    parser = argparse.ArgumentParser(prog=program_name("train", "cnet-train"), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="TOML or JSON file of settings (flags override it)")
    parser.add_argument("--preset", default="auto", help="memory preset: auto (from the GPU), none, "
                        f"{', '.join(PRESETS)} (light-*: a LoRA ControlNet); fills only settings not given")
    for f in fields(TrainConfig):
        if f.name == "extra":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS)
            continue
        kind = type(default) if default is not None else str
        if f.name in ("stop_after",):
            kind = int
        parser.add_argument(flag, type=kind, choices=CHOICES.get(f.name), default=argparse.SUPPRESS,
                            help=f"default: {default}")
    return parser


def build_dataset_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{program_name('train', 'cnet-train')} build-dataset")
    parser.add_argument("--photos", required=True, help="folder of photos (searched recursively)")
    parser.add_argument("--kind", required=True, help="condition kind (its annotator makes the maps)")
    parser.add_argument("--out", required=True, help="output folder (metadata.jsonl layout)")
    parser.add_argument("--caption", default="blip", choices=("blip", "none"))
    parser.add_argument("--caption-model", help="BLIP model (default: CNET_CAPTION_MODEL or BLIP base)")
    parser.add_argument("--resolution", type=int, default=512, help="short side of images and maps")
    parser.add_argument("--text", default="", help="caption for every row when --caption none")
    return parser


def build_shard_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{program_name('train', 'cnet-train')} shard",
                                     description="Write a folder dataset (metadata.jsonl or Fill50K) as shuffled "
                                     "parquet shards, for --streaming")
    parser.add_argument("--dataset", required=True, help="the folder dataset")
    parser.add_argument("--out", required=True, help="an empty folder for the shards")
    parser.add_argument("--rows-per-shard", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0, help="the shuffle before cutting")
    parser.add_argument("--skip-bad-rows", action="store_true")
    return parser


def build_cache_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{program_name('train', 'cnet-train')} cache",
        description="Encode a dataset once (VAE posteriors, text embeddings, conditions) into a latent cache for "
        "--latent-cache. Under `accelerate launch` every process encodes its own shards; a stopped build resumes.")
    parser.add_argument("--dataset", required=True, help="folder dataset, saved `datasets` folder or Hub id")
    parser.add_argument("--base-model", default=DEFAULT_BASE_MODEL, help="the base whose VAE and text encoder encode")
    parser.add_argument("--single-file-config", help="diffusers pipeline folder describing a single-file base")
    parser.add_argument("--resolution", type=int, default=512)
    parser.add_argument("--out", required=True, help="the cache folder")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rows-per-shard", type=int, default=1024)
    parser.add_argument("--skip-bad-rows", action="store_true", help="folder datasets: skip unreadable rows")
    parser.add_argument("--streaming", action="store_true",
                        help="read --dataset as a stream of shards (Hub id, or parquet / arrow / WebDataset .tar "
                        "files): no row list, each process its own shards")
    parser.add_argument("--bad-row-limit", type=float, default=0.01,
                        help="streaming: stop when more than this share of the rows read are bad (0.01)")
    parser.add_argument("--mixed-precision", choices=PRECISIONS, default="no",
                        help="encode in the precision the training runs will use (their --mixed-precision): the "
                        "cache is keyed by it")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .stop import listen_for_signals, stop_listening

    argv = sys.argv[1:] if argv is None else argv
    # (python -m train did it already) a Stop during the imports and loading is honoured; a caller in the same
    # process (a notebook, a test) gets its own handlers back afterwards.
    owns_signals = not (argv and argv[0] in ("build-dataset", "shard", "push")) and listen_for_signals()
    try:
        return _main(argv)
    finally:
        if owns_signals:
            stop_listening()


def _cache(argv: list[str]) -> int:
    """`python -m train cache`: encode a dataset into a latent cache (stoppable, resumable)."""
    from .latent_cache import build_cache

    args = build_cache_parser().parse_args(argv)
    from accelerate import Accelerator

    from .stop import StopRequest

    # This command owns the processes' group (as the training loop does): ended when the cache is, so no rank exits
    # with the group's threads still running (one aborted so under load: "terminate called without an active
    # exception").
    accelerator = Accelerator()
    try:
        # Ctrl-C / SIGTERM or a STOP file in the cache folder: the shard being written is finished first.
        out = build_cache(args.dataset, args.base_model, args.out, resolution=args.resolution,
                          batch_size=args.batch_size, rows_per_shard=args.rows_per_shard,
                          single_file_config=args.single_file_config, skip_bad_rows=args.skip_bad_rows,
                          streaming=args.streaming, bad_row_limit=args.bad_row_limit,
                          mixed_precision=args.mixed_precision, should_stop=StopRequest(Path(args.out) / "STOP"),
                          progress=lambda info: print(json.dumps({"event": "cache", **info}), flush=True),
                          accelerator=accelerator)
    finally:
        accelerator.end_training()
    if out is None:
        print(f"stopped: the shards written so far stay in {args.out}; the same command goes on")
        return 0
    print(f"latent cache written to {out}")
    return 0


def _shard(argv: list[str]) -> int:
    """`python -m train shard`: a folder dataset written as shards for streaming."""
    from .shards import write_shards

    args = build_shard_parser().parse_args(argv)
    report = write_shards(args.dataset, args.out, rows_per_shard=args.rows_per_shard, seed=args.seed,
                          skip_bad_rows=args.skip_bad_rows)
    print(f"{report['rows']} rows in {len(report['shards'])} shards written to {args.out}, "
          f"{len(report['skipped'])} skipped")
    return 0


def _build_dataset(argv: list[str]) -> int:
    """`python -m train build-dataset`: (condition, photo, prompt) rows from photos."""
    from .build import build_dataset

    args = build_dataset_parser().parse_args(argv)
    report = build_dataset(args.photos, args.kind, args.out, caption=args.caption,
                           caption_model=args.caption_model, resolution=args.resolution,
                           default_text=args.text)
    for line in report["skipped"]:
        print(f"skipped {line}", file=sys.stderr)
    rows, skipped = report["rows"], len(report["skipped"])
    where = f"{report['out']}/metadata.jsonl" if report["merged"] else \
        f"{report['out']} by this process (process 0 writes metadata.jsonl once every process has finished)"
    print(f"{rows} row{'' if rows == 1 else 's'} written to {where}, "
          f"{skipped} file{'' if skipped == 1 else 's'} skipped")
    return 0


def _train(argv: list[str]) -> int:
    """Train a ControlNet: flags over a config file over a preset; a resumed run keeps its settings."""
    args = vars(build_parser().parse_args(argv))
    config_file = args.pop("config", None)
    from .presets import apply_preset

    given = {**(TrainConfig.read_file(config_file) if config_file else {}), **args}  # flags beat the file
    if given.get("resume") and given.get("output_dir"):
        # A resumed run keeps its saved settings (base model, dataset, ...) unless a flag or file changes one.
        given = {**saved_settings(given["output_dir"]), **given}
    settings, preset = apply_preset(given, given.pop("preset"))  # the preset fills only what neither gave
    if preset:
        print(json.dumps({"event": "preset", "name": preset}), flush=True)
    config = TrainConfig(**settings)
    from .loop import train

    def report(event: str, info: dict) -> None:
        if event != "setup" and event != "step":
            print(json.dumps({"event": event, **info}), flush=True)

    result = train(config, callback=report)
    if result:
        print(f"ControlNet saved to {result}")
    return 0


def _push(argv: list[str]) -> int:
    """`python -m train push`: a finished run's result to the Hugging Face Hub (train/hub.py)."""
    from .hub import push_run

    parser = argparse.ArgumentParser(prog=f"{program_name('train', 'cnet-train')} push", description=_push.__doc__)
    parser.add_argument("--run", required=True, help="the run's output folder (holding controlnet/)")
    parser.add_argument("--repo-id", help="owner/name, or a name under your user (default: the run folder's name)")
    parser.add_argument("--private", action="store_true", help="create the repository private")
    args = parser.parse_args(argv)
    print(f"pushed to {push_run(args.run, args.repo_id, private=args.private)}")
    return 0


SUBCOMMANDS = {"cache": _cache, "shard": _shard, "build-dataset": _build_dataset, "push": _push}


def _main(argv: list[str]) -> int:
    from annotators import AnnotatorError
    from common.models import ModelUnavailableError

    from .checkpoint import CheckpointError
    from .data import DataError
    from .finite import TrainingDiverged

    try:
        command = SUBCOMMANDS.get(argv[0]) if argv else None
        return command(argv[1:]) if command else _train(argv)
    except (ConfigError, DataError, CheckpointError, ModelUnavailableError, AnnotatorError, TrainingDiverged,
            ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk anywhere else (logs, validation grids): say so, not a traceback
        from .checkpoint import describe_write_error, is_disk_full

        if not is_disk_full(err):
            raise
        print(f"error: {describe_write_error(err, Path(getattr(err, 'filename', None) or '.'))}", file=sys.stderr)
        return 2
