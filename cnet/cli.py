"""`python -m cnet`: generate images from the command line, re-run a saved PNG, build tiny test models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .control_mode import CONTROL_MODES
from .engine import OFFLOAD_MODES
from .kinds import KINDS
from .request import SCHEDULERS, PromptMode, parse_lora
from .resize import RESIZE_MODES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cnet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="condition image(s) + prompt -> images (PNG with metadata)")
    gen.add_argument("--image", action="append", help="condition map (repeat for multi-ControlNet)")
    gen.add_argument("--detect", action="store_true",
                     help="--image is a photo: run the kind's annotator on it first (the photo feeds 'auto' mode)")
    gen.add_argument("--from-png", help="re-run the request saved in a PNG written by cnet")
    _add_common_arguments(gen)

    edit = sub.add_parser("edit", help="redraw your own picture under control: img2img, inpaint, outpaint, upscale",
                          description="Without --image the condition is made from the picture by the kind's "
                          "annotator (the tile kind: the picture itself). --mask inpaints; --outpaint-* extends the "
                          "canvas and inpaints the border; --upscale re-renders at a larger size (use --kind tile).")
    edit.add_argument("--picture", required=True, help="the picture to edit")
    edit.add_argument("--mask", help="inpaint: white = repaint, black = keep (or a transparent PNG's painted area)")
    edit.add_argument("--image", action="append", help="condition map(s); default: detected from the picture")
    edit.add_argument("--denoise", type=float, default=0.75, help="how much is redrawn: 0 keeps, 1 redraws (0.75)")
    edit.add_argument("--mask-blur", type=int, default=4, help="px of feathering at the mask's edge (4)")
    edit.add_argument("--inpaint-padding", type=int,
                      help="inpaint only the masked area, cropped with this much padding, at full resolution")
    edit.add_argument("--keep-unmasked", action="store_true", help="unmasked pixels stay exactly as they were")
    for side in ("left", "right", "top", "bottom"):
        edit.add_argument(f"--outpaint-{side}", type=int, default=0, help=f"extend the canvas {side} by N px")
    edit.add_argument("--upscale", type=float, help="re-render at this factor (1-4), e.g. 2 with --kind tile")
    edit.add_argument("--tile-size", type=int,
                      help="img2img/upscale: denoise in overlapping tiles of at most N px a side, for the memory of "
                      "one tile (default with --upscale: 1024; 0: the whole image at once)")
    edit.add_argument("--tile-down-sampling", type=float, default=1.0,
                      help="tile kind: shrink the picture by this much first, for more invented detail (1)")
    _add_common_arguments(edit)
    edit.set_defaults(detect=False)  # --image maps are ready maps; without --image the picture is detected

    batch = sub.add_parser("batch", help="generate once per map or photo in a folder, with a table of settings",
                           description="Writes each image as <input name>-<seed>-<i>.png into --out, and one line "
                           "per input to --out/results.jsonl and results.csv (input, outputs, seed, prompt used, "
                           "settings). Inputs already listed there are skipped, so a stopped batch resumes.")
    batch.add_argument("--input", required=True, help="folder of condition maps (or photos with --detect)")
    batch.add_argument("--detect", action="store_true", help="the inputs are photos: run the kind's annotator")
    _add_common_arguments(batch)

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

    tiny = sub.add_parser("tiny-model", help="write a small random-weight pipeline for offline smoke tests")
    tiny.add_argument("dir", help="writes DIR/base and DIR/controlnet")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--preset", choices=("tiny", "sd15"), default="tiny",
                      help="tiny: 64x64 toy (fast tests); sd15: the real SD1.5 + ControlNet shapes (benchmarks)")
    tiny.add_argument("--family", choices=("sd15", "sd2", "sdxl"), default="sd15",
                      help="tiny preset: the model family (sdxl also writes DIR/controlnet-union)")
    return parser


def _add_common_arguments(gen: argparse.ArgumentParser) -> None:
    """The settings `generate` and `edit` share: output, conditions, prompt, sampling, models, device."""
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--kind", action="append", choices=sorted(KINDS),
                     help="condition kind per --image (default canny; one value applies to all)")
    gen.add_argument("--controlnet", action="append", help="ControlNet per --image: Hub id, folder or file")
    gen.add_argument("--lora", action="append", type=parse_lora, metavar="SOURCE[:WEIGHT]",
                     help="a LoRA for the base (Hub id, folder or .safetensors, A1111/kohya files too), at WEIGHT "
                     "(1.0); repeat for several")
    gen.add_argument("--embedding", action="append", metavar="SOURCE",
                     help="a textual-inversion embedding (file: its name is the trigger word, as in A1111; folder or "
                     "Hub id); repeat for several")
    gen.add_argument("--strength", action="append", type=float, help="control strength per --image (1.0)")
    gen.add_argument("--control-start", type=float, default=0.0, help="fraction of steps before control starts")
    gen.add_argument("--resize-mode", choices=list(RESIZE_MODES), default="crop_and_resize",
                     help="a map or picture of another shape than the output: crop_and_resize (keep the centre), "
                          "just_resize (stretch) or resize_and_fill (fit inside, fill the bands)")
    gen.add_argument("--pixel-perfect", action="store_true",
                     help="with --detect and --width/--height: detect at the resolution that makes the map the "
                          "output's size, so it is not resampled")
    gen.add_argument("--control-mode", action="append", choices=CONTROL_MODES,
                     help="per --image: balanced | prompt (my prompt is more important) | control (ControlNet is "
                          "more important), as in the A1111 extension (default balanced)")
    gen.add_argument("--control-end", type=float, default=1.0, help="fraction of steps after which control stops")
    gen.add_argument("--prompt-mode", choices=[m.value for m in PromptMode],
                     help="none | default | auto (BLIP) | custom (default: custom if --prompt, else default)")
    gen.add_argument("--prompt", default="", help="text for the custom prompt mode")
    gen.add_argument("--added-prompt", default="", help="appended to the prompt except in 'none' mode")
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--source-image", help="the photo the map came from (captioned in 'auto' mode)")
    gen.add_argument("--base-model", help="Hub id, diffusers folder or checkpoint (default: CNET_BASE_MODEL/SD1.5)")
    gen.add_argument("--single-file-config", help="diffusers pipeline folder/Hub id describing a single-file base")
    gen.add_argument("--controlnet-config", help="ControlNet folder/Hub id describing single-file ControlNets")
    gen.add_argument("--caption-model", help="BLIP model for 'auto' mode (default: CNET_CAPTION_MODEL/BLIP base)")
    gen.add_argument("--steps", type=int, help="denoising steps (20, the paper's; 4 with --few-step)")
    gen.add_argument("--guidance", type=float, help="classifier-free guidance (9.0, the paper's; 1 with --few-step)")
    gen.add_argument("--few-step", action="store_true",
                     help="few-step mode (changes the image): the base family's LCM-LoRA (CNET_FEW_STEP_LORA "
                     "overrides it), the LCM sampler, 4 steps, guidance 1 (no CFG)")
    gen.add_argument("--fast-decode", action="store_true",
                     help="decode with the family's tiny autoencoder (TAESD; CNET_TINY_VAE): a fraction of the VAE's "
                     "time, a slightly softer image")
    gen.add_argument("--eta", type=float, default=0.0)
    gen.add_argument("--seed", type=int, help="random when absent; always printed and saved")
    gen.add_argument("--num-images", type=int, default=1)
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--guess-mode", action="store_true")
    gen.add_argument("--scheduler", choices=SCHEDULERS, default="ddim")
    gen.add_argument("--device", help="cuda, mps or cpu (default: automatic)")
    gen.add_argument("--dtype", help="float16, bfloat16 or float32 (default: fp16 on GPU, fp32 on CPU)")
    gen.add_argument("--offload", choices=OFFLOAD_MODES,
                     help="'model': low-VRAM mode for ~4 GB GPUs, weights wait in CPU memory (default: CNET_OFFLOAD)")


def _per_unit(values: list | None, n: int, name: str, default: object) -> list:
    if not values:
        return [default] * n
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise ValueError(f"--{name} was given {len(values)} times for {n} --image values")
    return values


def _load_image(path: str, what: str):
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError) as err:
        raise ValueError(f"{what}={path!r} is not a readable image: {err}") from None


def _detect(kind_name: str, photo, width: int | None = None, height: int | None = None,
            resize_mode: str = "crop_and_resize", pixel_perfect: bool = False):
    """The kind's annotator with the kind's default parameters (e.g. Canny 100/200 at 512). With both `width` and
    `height` the crop mode makes the map at that size (centre-cropped, as the annotators do); the other modes
    leave it at the detection size for the engine to fit. `pixel_perfect` picks the detect resolution from them."""
    from annotators import detect

    from .resize import pixel_perfect_resolution

    kind = KINDS[kind_name]
    if width is None or height is None:
        width = height = None  # one side alone: the other follows from the map, as generation does
    resolution = None
    if pixel_perfect and width:
        size = photo.size if not isinstance(photo, str) else _load_image(photo, "--image").size
        resolution = pixel_perfect_resolution(size, (width, height), resize_mode)
    if resize_mode != "crop_and_resize":
        width = height = None
    return detect(kind.annotator, photo, width=width, height=height, detect_resolution=resolution)


def _edit_inputs(args: argparse.Namespace) -> dict:
    """The picture (extended for an outpaint, enlarged for an upscale), its mask, and the editing settings."""
    from PIL import Image

    from .edit import UPSCALE_TILE_SIZE, outpaint_canvas, upscale_size

    picture = _load_image(args.picture, "--picture")
    mask = None
    if args.mask:
        try:
            with Image.open(args.mask) as opened:
                mask = opened.copy()
        except (OSError, ValueError) as err:
            raise ValueError(f"--mask={args.mask!r} is not a readable image: {err}") from None
    sides = {side: getattr(args, f"outpaint_{side}") for side in ("left", "right", "top", "bottom")}
    if any(sides.values()):
        if mask is not None:
            raise ValueError("--mask and --outpaint-* cannot be combined: an outpaint masks the new border itself")
        picture, mask = outpaint_canvas(picture, **sides)
        args.keep_unmasked = True  # the picture's own pixels stay; only the border (and a seam) is drawn
    if args.upscale is not None:
        if mask is not None:
            raise ValueError("--upscale cannot be combined with --mask or --outpaint-*")
        size = upscale_size(picture, args.upscale)
        picture = picture.resize(size, Image.Resampling.LANCZOS)
        args.width, args.height = args.width or size[0], args.height or size[1]
    tile_size = args.tile_size if args.tile_size is not None else UPSCALE_TILE_SIZE if args.upscale else None
    return {"init_image": picture, "mask": mask, "denoise": args.denoise, "mask_blur": args.mask_blur,
            "inpaint_padding": args.inpaint_padding, "keep_unmasked": args.keep_unmasked,
            "tile_size": tile_size or None}


def _condition_of(kind: str, image, edit: dict, args: argparse.Namespace):
    """A condition map from a photo (a path, or the edited picture): the kind's annotator; for the tile kind, the
    picture at the output size through the tile preprocessor."""
    if KINDS[kind].needs_mask:  # the engine makes it from the picture and the mask
        return image if not isinstance(image, str) else _load_image(image, "--image")
    if kind == "tile":
        from .edit import tile_condition

        picture = image if not isinstance(image, str) else _load_image(image, "--image")
        return tile_condition(picture, picture.size, getattr(args, "tile_down_sampling", 1.0))
    width, height = args.width, args.height
    if edit and width is None and height is None:  # the map at the edited picture's size
        width, height = edit["init_image"].width // 8 * 8, edit["init_image"].height // 8 * 8
    return _detect(kind, image, width, height, args.resize_mode, args.pixel_perfect)


def _batch(args: argparse.Namespace) -> list[Path]:
    """One generation per image in --input (cnet/batch.py: a JSONL/CSV row per input, resumable)."""
    import copy

    from annotators import AnnotatorError, ImageInputError

    from .batch import run_batch
    from .shares import Share

    engines: dict = {}
    args.device = args.device or Share.from_env().device()  # under accelerate launch: this process's own GPU

    def make_one(path: Path, stem: str) -> tuple[list[Path], dict]:
        one = copy.copy(args)
        one.image, one.from_png, one.source_image = [str(path)], None, None
        return _generate(one, engines=engines, stem=stem)

    report = run_batch(args.input, args.out, make_one, expected_errors=(ValueError, AnnotatorError, ImageInputError))
    for line in report.failed:
        print(f"skipped {line}", file=sys.stderr)
    print(report.summary(), file=sys.stderr)
    return report.written


def _generate(args: argparse.Namespace, engines: dict | None = None,
              stem: str | None = None) -> tuple[list[Path], dict]:
    """Run one generate / edit command; return the saved images and the first image's metadata. `engines` keeps
    loaded models across calls (a batch); `stem` names the files."""
    from .engine import Engine
    from .request import ControlUnit, GenerationRequest
    from .result import GenerationResult, read_metadata, request_from_metadata

    keep = None  # --from-png: the batch is re-run whole (same pixels everywhere); only the saved image is kept
    edit: dict = {}
    if args.command == "edit":
        edit = _edit_inputs(args)
        if not args.image:  # the condition comes from the picture, by the kind's annotator
            args.image, args.detect = [edit["init_image"]], True
    if getattr(args, "from_png", None):
        request, base, keep = request_from_metadata(read_metadata(args.from_png), Path(args.from_png).parent)
        if args.controlnet:
            for unit, net in zip(request.units, _per_unit(args.controlnet, len(request.units), "controlnet", None)):
                unit.controlnet = net
        base = args.base_model or base
        if args.lora:  # --lora replaces the recorded LoRAs
            request.loras = list(args.lora)
        if args.embedding:
            request.embeddings = list(args.embedding)
    else:
        if not args.image:
            raise ValueError("give --image (a condition map) or --from-png")
        n = len(args.image)
        kinds = _per_unit(args.kind, n, "kind", "canny")
        nets = _per_unit(args.controlnet, n, "controlnet", None)
        strengths = _per_unit(args.strength, n, "strength", 1.0)
        source = _load_image(args.source_image, "--source-image") if args.source_image else None
        if args.detect:  # the annotator opens the file itself: a drawing keeps its transparency
            source = source or (args.image[0] if edit else _load_image(args.image[0], "--image"))
            images = [_condition_of(kind, path, edit, args) for kind, path in zip(kinds, args.image)]
        else:
            images = [_load_image(p, "--image") for p in args.image]
        modes = _per_unit(args.control_mode, n, "control-mode", "balanced")
        units = [ControlUnit(image, kind=k, controlnet=c, strength=s, start=args.control_start, end=args.control_end,
                             control_mode=m) for image, k, c, s, m in zip(images, kinds, nets, strengths, modes)]
        mode = args.prompt_mode or (PromptMode.CUSTOM if args.prompt else PromptMode.DEFAULT)
        sampling = {"num_inference_steps": args.steps, "guidance_scale": args.guidance, "scheduler": args.scheduler,
                    "loras": list(args.lora or [])}
        sampling = {k: v for k, v in sampling.items() if v is not None}
        if args.few_step:  # the family's few-step LoRA and sampler; steps and guidance given here are kept
            from .families import base_family, few_step_settings
            from .kinds import base_model_source

            family = base_family(args.base_model or base_model_source(), args.single_file_config)
            sampling = few_step_settings(family, sampling)
        request = GenerationRequest(
            units=units, prompt_mode=mode, prompt=args.prompt, added_prompt=args.added_prompt,
            negative_prompt=args.negative_prompt, eta=args.eta, num_images=args.num_images, seed=args.seed,
            width=args.width, height=args.height, guess_mode=args.guess_mode, source_image=source,
            fast_decode=args.fast_decode,
            resize_mode=args.resize_mode, embeddings=list(args.embedding or []), **sampling, **edit)
        base = args.base_model
    if base is None and not any(u.controlnet for u in request.units):
        from .demo import DEMO_BASE, DEMO_CONTROLNET, DEMO_NOTICE, DEMO_SIZE, use_demo

        if use_demo():
            print(f"notice: {DEMO_NOTICE}", file=sys.stderr)
            base = str(DEMO_BASE)
            for unit in request.units:
                unit.controlnet = str(DEMO_CONTROLNET)
            request.width, request.height = DEMO_SIZE, DEMO_SIZE
    engines = {} if engines is None else engines
    if base not in engines:
        engines[base] = Engine(base, device=args.device, dtype=args.dtype, caption_model=args.caption_model,
                               single_file_config=args.single_file_config,
                               controlnet_config=args.controlnet_config, offload=args.offload)
    engine = engines[base]
    result = engine.generate(request)
    if keep is not None:
        result = GenerationResult([result.images[keep]], result.condition_maps, [result.metadata[keep]],
                                  result.edit_inputs)
    print(f"prompt used: {result.prompt!r}  seed: {result.seed}", file=sys.stderr)
    paths = result.save(args.out, stem=f"{stem}-{result.seed}" if stem else None)
    return paths, result.metadata[0]


def _warm_up(args: argparse.Namespace) -> None:
    import json

    from .compiled import ShapeBuckets
    from .engine import Engine

    buckets = ShapeBuckets.parse(args.sizes, args.batches)
    engine = Engine(args.base_model, device=args.device, dtype=args.dtype, compile=True, compile_buckets=buckets)
    for row in engine.warm_up(tuple(args.kind or ["canny"])):
        print(json.dumps(row))


def main(argv: list[str] | None = None) -> int:
    from .engine import GenerationCancelled, GenerationFailed
    from .models import ModelUnavailableError

    args = build_parser().parse_args(argv)
    try:
        if args.command == "tiny-model":
            from .tiny import save_tiny_models

            for path in save_tiny_models(args.dir, seed=args.seed, preset=args.preset, family=args.family):
                print(path)
        elif args.command == "warm-up":
            _warm_up(args)
        else:
            for path in (_batch(args) if args.command == "batch" else _generate(args)[0]):
                print(path)
    except (ValueError, ModelUnavailableError, GenerationCancelled, GenerationFailed) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
