"""cnet (`python -m cnet`): generate images from the command line, re-run a saved PNG, score ControlNets, build tiny
test models."""

from __future__ import annotations

import argparse
import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

from common.program import program_name

from . import evaluate
from .engine import OFFLOAD_MODES
from .kinds import KINDS
from .operations import EditOptions
from .params import Declared, declarations, from_door, given
from .request import ControlUnit, ImagePrompt, PromptMode, door_fields, door_values_of


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=program_name("cnet", "cnet"), description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="condition image(s) + prompt -> images (PNG with metadata)")
    gen.add_argument("--from-png", help="re-run the request saved in a PNG written by cnet")
    _add_declared_arguments(gen, "generate")

    edit = sub.add_parser("edit", help="redraw your own picture under control: img2img, inpaint, outpaint, upscale",
                          description="Without --image the condition is made from the picture (its kind's annotator, "
                          "at the output's resolution; the tile kind: the picture itself). Without --operation, "
                          "--mask inpaints, --outpaint-* outpaints, --upscale upscales, else img2img.")
    _add_declared_arguments(edit, "edit")

    batch = sub.add_parser("batch", help="generate once per map or photo in a folder, with a table of settings",
                           description="Writes each image as <input name>-<seed>-<i>.png into --out, and one line "
                           "per input to --out/results.jsonl and results.csv (input, outputs, seed, prompt used, "
                           "settings). Inputs already listed there are skipped, so a stopped batch resumes.")
    batch.add_argument("--input", required=True, help="folder of condition maps (or photos with --detect)")
    _add_declared_arguments(batch, "generate", skip=("image",))

    warm = sub.add_parser("warm-up", help="compile the denoiser for sizes and batches now, into the on-disk cache",
                          description="torch.compile (cnet/compiled.py) of the U-Net, ControlNet and VAE decoder for "
                          "each size and batch, with and without classifier-free guidance; the compiled graphs land "
                          "in CNET_COMPILE_CACHE, so the app (CNET_COMPILE=1 with the same CNET_COMPILE_SIZES) then "
                          "starts from them. Prints one JSON line per shape: seconds and graphs compiled.")
    warm.add_argument("--sizes", default="512x512", help="WIDTHxHEIGHT list, e.g. 512x512,768x512 (512x512)")
    warm.add_argument("--batches", default="1", help="images per prompt, e.g. 1,2,4 (1)")
    warm.add_argument("--kind", action="append", choices=sorted(KINDS),
                      help="the ControlNet kind(s) to warm, one unit each (canny)")
    warm.add_argument("--base-model", help="Hub id, diffusers folder or single file (default: CNET_BASE_MODEL)")
    warm.add_argument("--device", help="cuda, cuda:1, mps or cpu (default: automatic)")
    warm.add_argument("--dtype", help="float16, bfloat16 or float32 (default: automatic)")

    evaluate.add_parser(sub)

    tiny = sub.add_parser("tiny-model", help="write a small random-weight pipeline for offline smoke tests")
    tiny.add_argument("dir", help="writes DIR/base and DIR/controlnet")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--preset", choices=("tiny", "sd15", "sdxl"), default="tiny",
                      help="tiny: 64x64 toy (fast tests); sd15 / sdxl: the real SD1.5 / SDXL + ControlNet shapes with "
                      "random weights (benchmarks; sdxl: about 9 GB)")
    tiny.add_argument("--family", choices=("sd15", "sd2", "sdxl", "flux", "sd3"), default="sd15",
                      help="tiny preset: the model family (sdxl and flux also write DIR/controlnet-union; flux and "
                      "sd3: FLUX.1 and SD3.5 shapes)")
    return parser


def _add_declared_arguments(parser: argparse.ArgumentParser, door: str, skip: tuple[str, ...] = ()) -> None:
    """A flag per declared field of `door` (cnet/request.py `door_fields`: the same list the API takes), then the
    options of this machine (output, device, configs). A flag not given leaves the field to its default."""
    parser.add_argument("--out", required=True, help="output folder")
    for item in door_fields(door):
        if item.name not in skip:
            parser.add_argument(*_flags(item), dest=item.name, default=None, **_argument(item))
    parser.add_argument("--single-file-config", help="diffusers pipeline folder/Hub id describing a single-file base")
    parser.add_argument("--controlnet-config", help="ControlNet folder/Hub id describing single-file ControlNets")
    parser.add_argument("--caption-model", help="BLIP model for 'auto' mode (default: CNET_CAPTION_MODEL/BLIP base)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: automatic)")
    parser.add_argument("--dtype",
                        help="float16, bfloat16 or float32 (default: fp16 on GPU; on a CPU bf16 with AMX, else fp32)")
    parser.add_argument("--offload", choices=OFFLOAD_MODES,
                        help="'model': low-VRAM mode for ~4 GB GPUs, weights wait in CPU memory (default: "
                        "CNET_OFFLOAD)")


def _flags(item: Declared) -> list[str]:
    flags = ["--" + item.name.replace("_", "-")]
    return flags + ([item.param.cli_alias] if item.param.cli_alias else [])


def _argument(item: Declared) -> dict[str, Any]:
    """argparse's settings for one declared field: its type, choices, help (with the default), repetition."""
    param = item.param
    shown = item.default.value if isinstance(item.default, StrEnum) else item.default
    help_text = param.help + (f" ({shown})" if shown not in (None, "", [], False) and f"({shown}" not in param.help
                              else "")
    repeated = param.per_unit or param.type is list
    if param.per_unit and item.name not in ("image", "reference"):
        group = "--reference" if item.name.startswith("reference") else "--image"
        help_text += f"; one per {group}, or one for all"
    if param.type is bool:
        return {"action": "store_true", "help": help_text}
    out: dict[str, Any] = {"help": help_text, "action": "append" if repeated else "store"}
    if param.type in (int, float):
        out["type"] = param.type
    if param.choices is not None:
        out["choices"] = list(param.choice_list())
    if param.type == "image":
        out["metavar"] = "FILE"
    if param.type is list:
        out["metavar"] = "SOURCE[:WEIGHT]" if param.item else "SOURCE"
    return out


def _per_unit(values: list | None, n: int, name: str, default: object, group: str = "--image") -> list:
    if not values:
        return [default] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"--{name.replace('_', '-')} was given {len(values)} times for {n} {group} values")
    return values


def _load_image(path: str, what: str) -> Any:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"{what}={path!r} is not a readable image: {err}") from None


def _load_mask(path: str, name: str = "mask") -> Any:
    from PIL import Image

    try:
        with Image.open(path) as opened:
            return opened.copy()  # its transparency, if any, is the painted area
    except (OSError, ValueError) as err:
        raise ValueError(f"--{name.replace('_', '-')}={path!r} is not a readable image: {err}") from None


def _sent(args: argparse.Namespace, door: str) -> dict[str, Any]:
    """The declared flags that were given, by public name (the units' own handled apart)."""
    return {item.name: getattr(args, item.name) for item in door_fields(door)
            if not item.param.per_unit and getattr(args, item.name, None) is not None}


def _group(cls: type, args: argparse.Namespace, firsts: list[Any], group: str) -> list[Any]:
    """One `cls` (a ControlUnit, an ImagePrompt) per entry of `firsts` (its maps, its pictures), each of its other
    declared flags given once for all or once per entry; a file flag (a mask) read as an image."""
    items = [item for item in declarations(cls) if item.name not in ("image", "reference")]
    columns = {item.field: _per_unit(getattr(args, item.name, None), len(firsts), item.name, item.default, group)
               for item in items}

    def value(item: Declared, i: int) -> Any:
        sent = from_door(item, columns[item.field][i])
        return _load_mask(sent, item.name) if item.param.type == "image" and isinstance(sent, str) else sent

    return [cls(first, **given({item.field: value(item, i) for item in items})) for i, first in enumerate(firsts)]


def _units(args: argparse.Namespace, maps: list[Any]) -> list[ControlUnit]:
    """One ControlUnit per map, each declared unit flag given once for all or once per --image."""
    return _group(ControlUnit, args, maps, "--image")


def _image_prompts(args: argparse.Namespace) -> list[Any]:
    """One reference picture per --reference, each --reference-* flag given once for all or once per picture."""
    pictures = [_load_image(path, "--reference") for path in getattr(args, "reference", None) or []]
    return _group(ImagePrompt, args, pictures, "--reference")


def _maps(args: argparse.Namespace, run: dict[str, Any], settings: dict[str, Any]) -> tuple[list[Any], Any]:
    """The condition maps of `generate` (--image files, detected with --detect) and the photo they came from."""
    if not args.image and getattr(args, "reference", None):
        return [], None  # reference pictures alone steer the run
    if not args.image:
        raise ValueError("give --image (a condition map), --reference (a reference picture) or --from-png")
    if not run.get("detect"):
        return [_load_image(p, "--image") for p in args.image], None
    from .maps import detect_map

    kinds = _per_unit(args.kind, len(args.image), "kind", "canny")
    maps = [detect_map(KINDS[kind].annotator, path, size=(settings.get("width"), settings.get("height")),
                       resize_mode=settings.get("resize_mode", "crop_and_resize"),
                       pixel_perfect=run.get("pixel_perfect", False)) for kind, path in zip(kinds, args.image)]
    return maps, _load_image(args.image[0], "--image")


def _edit_maps(args: argparse.Namespace, planned: dict[str, Any], options: EditOptions) -> list[Any]:
    """The maps of `edit`: --image files, or made from the prepared picture by the library's rule (the picture
    itself, the tile map, or the kind's annotator at the output's own resolution)."""
    if args.image:
        return [_load_image(p, "--image") for p in args.image]
    from .maps import detect_map
    from .operations import condition_from_picture

    picture, maps = planned["init_image"], []
    for kind in _per_unit(args.kind, 1, "kind", "canny"):
        made = condition_from_picture(KINDS[kind], picture, options.tile_down_sampling)
        maps.append(made if made is not None else detect_map(
            KINDS[kind].annotator, picture, size=(planned["width"], planned["height"]),
            resize_mode=planned.get("resize_mode", "crop_and_resize"), pixel_perfect=True))
    return maps


def _batch(args: argparse.Namespace) -> list[Path]:
    """One generation per image in --input (cnet/batch.py: a JSONL/CSV row per input, resumable)."""
    import copy

    from annotators import AnnotatorError, ImageInputError
    from common.shares import Share

    from .batch import run_batch

    engines: dict = {}
    args.device = args.device or Share.from_env().device()  # under accelerate launch: this process's own GPU

    def make_one(path: Path, stem: str) -> tuple[list[Path], dict]:
        one = copy.copy(args)
        one.command, one.image, one.from_png, one.source_image = "generate", [str(path)], None, None
        return _generate(one, engines=engines, stem=stem)

    report = run_batch(args.input, args.out, make_one, expected_errors=(ValueError, AnnotatorError, ImageInputError))
    for line in report.failed:
        print(f"skipped {line}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    return report.written


def _request(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The request the flags ask for (`generate` or `edit`, read through the declarations) and the base model."""
    from .demo import DEMO_BASE, DEMO_NOTICE, few_step_on, on_demo, use_demo
    from .request import GenerationRequest

    door = args.command
    values = door_values_of(door, _sent(args, door))
    run, settings = values.run, values.settings
    if "prompt_mode" not in settings:  # the CLI's shortcut: a prompt alone means the custom mode
        settings["prompt_mode"] = PromptMode.CUSTOM if settings.get("prompt") else PromptMode.DEFAULT
    for name in ("source_image", "reference_only"):
        if name in settings:
            settings[name] = _load_image(settings[name], "--" + name.replace("_", "-"))
    if door == "edit":
        settings, maps = _edit_settings(args, values.edit, settings, run.get("base_model"))
    else:
        maps, photo = _maps(args, run, settings)
        settings.setdefault("source_image", photo)
    units, base = _units(args, maps), run.get("base_model")
    settings["image_prompts"] = _image_prompts(args)
    demo = base is None and use_demo()
    if run.get("few_step"):  # the family's few-step LoRA and sampler; steps and guidance given here are kept
        settings = few_step_on(settings, base, demo, args.single_file_config)
    if demo:
        print(f"notice: {DEMO_NOTICE}", file=sys.stderr)
        nets, settings = on_demo([unit.controlnet for unit in units], settings)
        for unit, net in zip(units, nets):
            unit.controlnet = net
        base = str(DEMO_BASE)
    return GenerationRequest(units=units, **settings), base


def _edit_settings(args: argparse.Namespace, edit: dict[str, Any], settings: dict[str, Any], base: str | None
                   ) -> tuple[dict[str, Any], list[Any]]:
    """An edit's request settings, planned by its operation (cnet/operations.py), and its condition maps (none
    made from the picture for a base that edits by itself: FLUX.1 Fill)."""
    from .operations import edit_operation, edit_takes_units, plan_edit
    from .request import DEFAULT_LIMITS

    if "init_image" not in settings:
        raise ValueError("give --picture (the picture to edit)")
    picture = _load_image(settings.pop("init_image"), "--picture")
    mask = _load_mask(settings.pop("mask")) if "mask" in settings else None
    options = EditOptions(**edit)
    operation = edit_operation(settings.pop("operation", None), mask, options, upscale_given="upscale" in edit)
    planned = plan_edit(operation, picture, mask, options, settings, DEFAULT_LIMITS)
    if not args.image:  # the picture is what a detected map describes: auto mode captions it
        planned.setdefault("source_image", picture)
    if not args.image and not edit_takes_units(base, args.single_file_config):
        return planned, []
    return planned, _edit_maps(args, planned, options)


def _generate(args: argparse.Namespace, engines: dict | None = None,
              stem: str | None = None) -> tuple[list[Path], dict]:
    """Run one generate / edit command; return the saved images and the first image's metadata. `engines` keeps
    loaded models across calls (a batch); `stem` names the files."""
    from .engine import Engine
    from .result import GenerationResult

    keep = None  # --from-png: the batch is re-run whole (same pixels everywhere); only the saved image is kept
    if getattr(args, "from_png", None):
        request, base, keep = _rerun(args)
    else:
        request, base = _request(args)
    engines = {} if engines is None else engines
    if base not in engines:
        engines[base] = Engine(base, device=args.device, dtype=args.dtype, caption_model=args.caption_model,
                               single_file_config=args.single_file_config,
                               controlnet_config=args.controlnet_config, offload=args.offload)
    result = engines[base].generate(request)
    if keep is not None:
        result = GenerationResult([result.images[keep]], result.condition_maps, [result.metadata[keep]],
                                  result.edit_inputs)
    print(f"prompt used: {result.prompt!r}  seed: {result.seed}", file=sys.stderr)
    paths = result.save(args.out, stem=f"{stem}-{result.seed}" if stem else None)
    return paths, result.metadata[0]


def _rerun(args: argparse.Namespace) -> tuple[Any, str, int]:
    """--from-png: the saved request, with --controlnet, --base-model, --loras and --embeddings replacing theirs."""
    from .result import read_metadata, request_from_metadata

    metadata = read_metadata(args.from_png)
    request, base, keep = request_from_metadata(metadata, Path(args.from_png).parent)
    args.dtype = args.dtype or _saved_dtype(metadata, args.device)
    if args.controlnet:
        for unit, net in zip(request.units, _per_unit(args.controlnet, len(request.units), "controlnet", None)):
            unit.controlnet = net
    sent = door_values_of("generate", _sent(args, "generate"))
    request.loras = sent.settings.get("loras", request.loras)
    request.embeddings = sent.settings.get("embeddings", request.embeddings)
    return request, sent.run.get("base_model") or base, keep


def _saved_dtype(metadata: dict[str, Any], device: str | None) -> str | None:
    """The precision a saved image was made in, when it is re-run on the same kind of device: the automatic choice
    may differ from when it was made (bfloat16 on a CPU with AMX since 2026-12), and the pixels follow it."""
    from common.models import pick_device

    dtype, made_on = metadata.get("dtype"), metadata.get("device")
    if dtype not in ("float32", "float16", "bfloat16") or not isinstance(made_on, str):
        return None
    return dtype if made_on.split(":")[0] == pick_device(device).split(":")[0] else None


def _save_tiny(args: argparse.Namespace) -> tuple[Path, Path]:
    """`tiny-model`: the U-Net families' tiny models (cnet/tiny.py) or the DiT families' (cnet/tiny_dit.py)."""
    if args.family in ("flux", "sd3"):
        from .tiny_dit import save_tiny_dit_models

        if args.preset != "tiny":
            raise ValueError(f"--family {args.family} has only the tiny preset")
        return save_tiny_dit_models(args.dir, seed=args.seed, family=args.family)
    from .tiny import save_tiny_models

    return save_tiny_models(args.dir, seed=args.seed, preset=args.preset, family=args.family)


def _warm_up(args: argparse.Namespace) -> None:
    import json

    from .compiled import ShapeBuckets
    from .engine import Engine

    buckets = ShapeBuckets.parse(args.sizes, args.batches)
    engine = Engine(args.base_model, device=args.device, dtype=args.dtype, compile=True, compile_buckets=buckets)
    for row in engine.warm_up(tuple(args.kind or ["canny"])):
        print(json.dumps(row))


def main(argv: list[str] | None = None) -> int:
    from common.models import ModelUnavailableError

    from .engine import GenerationCancelled, GenerationFailed

    args = build_parser().parse_args(argv)
    try:
        if args.command == "tiny-model":
            for path in _save_tiny(args):
                print(path)
        elif args.command == "warm-up":
            _warm_up(args)
        elif args.command == "eval":
            print(evaluate.run_cli(args))
        else:
            for path in (_batch(args) if args.command == "batch" else _generate(args)[0]):
                print(path)
    except (ValueError, ModelUnavailableError, GenerationCancelled, GenerationFailed) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
