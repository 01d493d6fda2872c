"""`python -m annotators`: list the annotators, detect one map, or convert a whole folder."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from common.program import program_name

from .detect import Loading
from .images import ImageInputError
from .registry import ANNOTATORS, AnnotatorError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
ALIASES = {"low": "low_threshold", "high": "high_threshold"}  # the original apps' short names for canny


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=program_name("annotators", "cnet-annotate"), description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="each annotator with its kind, weights and parameters")
    for name, help_text in (("detect", "one image -> one map"), ("batch", "a folder of images -> a folder of maps")):
        cmd = sub.add_parser(name, help=help_text,
                             epilog="Annotator parameters go as --name value (e.g. --low 50 --include_hand true).")
        cmd.add_argument("--kind", required=True, choices=sorted(ANNOTATORS), help="the annotator to run")
        if name == "detect":
            cmd.add_argument("--image", required=True)
            cmd.add_argument("--out", required=True, help="output PNG")
        else:
            cmd.add_argument("--input", required=True, help="folder of images (searched recursively)")
            cmd.add_argument("--output", required=True, help="folder for the maps (same relative names, .png)")
        cmd.add_argument("--detect-resolution", type=int, help="short side the detector sees")
        cmd.add_argument("--width", type=int)
        cmd.add_argument("--height", type=int)
        cmd.add_argument("--weights", help="Hub repo or local folder with the weights")
        cmd.add_argument("--device", help="cuda, mps or cpu (default: automatic)")
    pose = sub.add_parser("pose", help="OpenPose JSON (the A1111 openpose-editor's) -> its openpose map, or a photo's "
                          "people -> OpenPose JSON to edit")
    pose.add_argument("--json", help="a pose to render (canvas_width, canvas_height, people)")
    pose.add_argument("--image", help="a photo whose people are detected (with hands and face) into --out as JSON")
    pose.add_argument("--out", required=True, help="the map (.png) for --json, the pose (.json) for --image")
    pose.add_argument("--width", type=int, help="--image: the pose's canvas width (default: the photo's)")
    pose.add_argument("--height", type=int, help="--image: the pose's canvas height (default: the photo's)")
    pose.add_argument("--weights", help="Hub repo or local folder with OpenPose's weights")
    return parser


def run_pose(args: argparse.Namespace) -> Path:
    """`pose`: render --json into the openpose map at --out, or detect --image's people into --out as JSON."""
    import json

    from .pose import detect_pose, parse_pose, pose_json, render_pose

    out = Path(args.out)
    if (args.json is None) == (args.image is None):
        raise AnnotatorError("pose: give --json (a pose to render) or --image (a photo to detect), one of them")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.json is not None:
        try:
            text = Path(args.json).read_text()
        except OSError as err:
            raise AnnotatorError(f"--json={args.json!r} cannot be read: {err.strerror}") from None
        render_pose(parse_pose(text)).save(out)
    else:
        found = detect_pose(args.image, args.width, args.height, loading=Loading(weights=args.weights))
        out.write_text(json.dumps([pose_json(found)]))  # a list of one canvas, as the A1111 editor exports
    return out


def parse_params(extra: list[str]) -> dict[str, str]:
    """`--name value` pairs left over by argparse, as annotator parameters (values are checked later)."""
    params: dict[str, str] = {}
    it = iter(extra)
    for token in it:
        if not token.startswith("--"):
            raise AnnotatorError(f"unexpected argument {token!r}; parameters go as --name value")
        name, _, value = token[2:].partition("=")
        if not value:
            value = next(it, None)
            if value is None:
                raise AnnotatorError(f"--{name} needs a value")
        name = name.replace("-", "_")
        params[ALIASES.get(name, name)] = value
    return params


def list_annotators() -> str:
    lines = []
    for a in ANNOTATORS.values():
        weights = a.weights or "none (no download)"
        lines.append(f"{a.name:<17} kind={a.kind:<9} detect_resolution={a.detect_resolution:<4} weights={weights}")
        lines.append(f"  {a.description}")
        for p in a.params:
            bounds = f" [{p.minimum}, {p.maximum}]" if p.minimum is not None else ""
            lines.append(f"  --{p.name} {type(p.default).__name__} = {p.default}{bounds}  {p.help}".rstrip())
    return "\n".join(lines)


def _options(args: argparse.Namespace, params: dict[str, Any]) -> dict[str, Any]:
    return dict(detect_resolution=args.detect_resolution, width=args.width, height=args.height,
                loading=Loading(weights=args.weights, device=args.device), **params)


def run_batch(args: argparse.Namespace, params: dict[str, Any]) -> tuple[int, int, list[tuple[Path, str]]]:
    """Convert every image under --input whose map is not written yet (this process's share of them, under
    `accelerate launch`: common/shares.py); unreadable files are skipped and reported, not fatal. Returns (written,
    already there, skipped)."""
    import os

    from tqdm import tqdm

    from common.shares import Share

    from .detect import detect

    source, target = Path(args.input), Path(args.output)
    if not source.is_dir():
        raise AnnotatorError(f"--input={str(source)!r} is not a folder")
    share = Share.from_env()
    files = share.take(sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
    options = _options(args, params)
    if options["loading"].device is None and share.device():  # under accelerate launch: this process's own GPU
        options["loading"] = replace(options["loading"], device=share.device())
    skipped: list[tuple[Path, str]] = []
    done = present = 0
    for path in tqdm(files, desc=f"{args.kind}", unit="image", disable=share.rank > 0):
        out = (target / path.relative_to(source)).with_suffix(".png")
        if out.is_file():  # written whole by an earlier run (renamed into place): a stopped batch resumes
            present += 1
            continue
        try:
            detected = detect(args.kind, path, **options)
        except ImageInputError as err:
            skipped.append((path, str(err)))
            continue
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(f".{out.name}.tmp")
        detected.save(partial, format="PNG")
        os.replace(partial, out)
        done += 1
    return done, present, skipped


def main(argv: list[str] | None = None) -> int:
    from common.models import ModelUnavailableError

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        if args.command == "list":
            print(list_annotators())
            return 0
        if args.command == "pose":
            print(run_pose(args))
            return 0
        params = parse_params(extra)
        ANNOTATORS[args.kind].resolve_params(params)  # fail on a bad parameter before loading anything
        if args.command == "detect":
            from .detect import detect

            out = Path(args.out)
            detected = detect(args.kind, args.image, **_options(args, params))
            out.parent.mkdir(parents=True, exist_ok=True)
            detected.save(out)
            print(out)
            return 0
        done, present, skipped = run_batch(args, params)
        for path, reason in skipped:
            print(f"skipped {path}: {reason}", file=sys.stderr)
        print(f"{_count(done, 'map')} written to {args.output}, {present} already there, "
              f"{_count(len(skipped), 'file')} skipped")
        return 0
    except (AnnotatorError, ImageInputError, ModelUnavailableError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _count(n: int, noun: str) -> str:
    """'1 file', '2 files'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"
