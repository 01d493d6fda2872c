"""Results you can reproduce: images, condition maps and the full metadata, saved as PNGs with a text chunk."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image
from PIL.PngImagePlugin import PngInfo

METADATA_KEY = "cnet"  # our JSON, read back by `python -m cnet generate --from-png`
PARAMETERS_KEY = "parameters"  # a one-line summary in the style other SD tools show


@dataclass
class GenerationResult:
    """The output of one request: `metadata[i]` describes `images[i]` (each image has its own seed)."""

    images: list[Image.Image]
    condition_maps: list[Image.Image]
    metadata: list[dict[str, Any]]
    # The edited picture and its mask ("init", "mask"), saved beside the images so a re-run finds them.
    edit_inputs: dict[str, Image.Image] = field(default_factory=dict)
    map_files: list[Path] = field(default_factory=list)  # the condition maps as `save` wrote them

    @property
    def prompt(self) -> str:
        """The text that was actually sent to the text encoder."""
        return self.metadata[0]["prompt_used"]

    @property
    def seed(self) -> int:
        return self.metadata[0]["seed"]

    def save(self, out_dir: str | Path, stem: str | None = None) -> list[Path]:
        """Write each image (PNG with metadata) and the condition maps into `out_dir`; return the image paths."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        stem = stem or f"cnet-{self.seed}"
        map_names = [f"{stem}-control{j}.png" for j in range(len(self.condition_maps))]
        for name, cond in zip(map_names, self.condition_maps):
            cond.save(out / name)
        self.map_files = [out / name for name in map_names]
        inputs = {f"{role}_image": f"{stem}-{role}.png" for role in self.edit_inputs}  # init_image, mask_image
        for role, image in self.edit_inputs.items():
            image.save(out / inputs[f"{role}_image"])
        paths = []
        for i, (image, meta) in enumerate(zip(self.images, self.metadata)):
            meta = {**meta, "control_images": map_names, **inputs}
            path = out / f"{stem}-{i}.png"
            image.save(path, pnginfo=png_info(meta))
            paths.append(path)
        return paths


# Texts stored once, in the summary line; the JSON records their lengths so they are cut back out exactly.
_SUMMARY_TEXTS = ("prompt_used", "negative_prompt")
_NEGATIVE = "\nNegative prompt: "


def _summary(meta: dict[str, Any]) -> str:
    return (f"{meta.get('prompt_used', '')}{_NEGATIVE}{meta.get('negative_prompt', '')}\n"
            f"Steps: {meta.get('num_inference_steps')}, Sampler: {meta.get('scheduler')}, "
            f"CFG scale: {meta.get('guidance_scale')}, Seed: {meta.get('seed')}, "
            f"Size: {meta.get('width')}x{meta.get('height')}")


def png_info(meta: dict[str, Any]) -> PngInfo:
    """PNG text chunks: a summary in the style other SD tools read (the prompt sent, the negative prompt, the main
    settings), and our JSON with everything else. Each text is stored once, in the summary: the JSON keeps their
    lengths, `read_metadata` cuts them back out, and derives from the text sent the one the mode sent it for (the
    custom prompt, or the BLIP caption), which the JSON then leaves out."""
    record = {k: v for k, v in meta.items() if k not in _SUMMARY_TEXTS}
    derived = _DERIVED.get(meta.get("prompt_mode"))
    if derived and meta.get(derived) == _text_before_added(meta.get("prompt_used") or "", meta.get("added_prompt")):
        del record[derived]
    record["text_lengths"] = {k: len(meta.get(k) or "") for k in _SUMMARY_TEXTS}
    info = PngInfo()
    info.add_text(METADATA_KEY, json.dumps(record, sort_keys=True))
    info.add_text(PARAMETERS_KEY, _summary(meta))
    return info


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The metadata saved in a PNG by `GenerationResult.save`; ValueError if the file carries none."""
    with Image.open(path) as image:
        texts = dict(getattr(image, "text", {}))
    if texts.get(METADATA_KEY) is None:
        raise ValueError(f"{path}: this PNG carries no '{METADATA_KEY}' metadata (was it saved by cnet?)")
    meta = json.loads(texts[METADATA_KEY])
    lengths = meta.pop("text_lengths", None)
    if lengths is not None:  # the texts live in the summary line
        summary = texts.get(PARAMETERS_KEY, "")
        sent = summary[: lengths["prompt_used"]]
        start = len(sent) + len(_NEGATIVE)
        meta.update(prompt_used=sent, negative_prompt=summary[start: start + lengths["negative_prompt"]])
        if _summary(meta) != summary:
            raise ValueError(f"{path}: its '{PARAMETERS_KEY}' text was changed; the prompts cannot be read back")
        derived = _DERIVED.get(meta.get("prompt_mode"))
        if derived and derived not in meta:
            meta[derived] = _text_before_added(sent, meta.get("added_prompt"))
        meta.setdefault("prompt", "")
    return meta


# The field whose text the prompt mode sends (followed by ", <added prompt>"): stored once, inside the text sent.
_DERIVED = {"custom": "prompt", "auto": "caption"}


def _text_before_added(sent: str, added: str | None) -> str:
    added = (added or "").strip()
    return sent[: -len(", " + added)] if added and sent.endswith(", " + added) else sent


# What a form can take back from a saved image: the request's scalar settings and its first ControlNet's.
RESTORABLE = ("prompt_mode", "prompt", "added_prompt", "negative_prompt", "num_inference_steps", "guidance_scale",
              "num_images", "width", "height", "guess_mode", "scheduler", "resize_mode", "fast_decode")


def settings_from_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The settings a form restores from a saved image's metadata (`read_metadata`): the request's, the first
    ControlNet's kind, strength, start, end and control mode, and the model references (`base_model`,
    `controlnet`). The seed and image count are those of the batch the image was made in (its first seed), which
    gives the same pixels again, as `request_from_metadata` does. Keys missing from older files are left out."""
    out = {k: meta[k] for k in RESTORABLE if k in meta}
    if "batch_size" in meta:
        out["num_images"] = meta["batch_size"]
    if "seed" in meta:
        out["seed"] = meta["seed"] - int(meta.get("image_index", 0))
    from .kinds import KINDS, base_model_source

    nets = meta.get("controlnets") or []
    if nets:
        first = nets[0]
        out.update({k: first[k] for k in ("kind", "strength", "start", "end", "control_mode") if k in first})
        kind = KINDS.get(first.get("kind"))
        # Today's default for its kind is left out: the field stays empty and follows the kind when it changes.
        if first.get("model") and not (kind and first["model"] == kind.controlnet_source()):
            out["controlnet"] = first["model"]
    base = meta.get("base_model")
    if isinstance(base, dict) and base.get("model") and base["model"] != base_model_source():
        out["base_model"] = base["model"]
    loras = [lora for lora in meta.get("loras") or [] if isinstance(lora, dict) and lora.get("model")]
    if loras:  # as the form writes them: one source:weight a line
        out["loras"] = "\n".join(f"{lora['model']}:{lora.get('weight', 1.0)}" for lora in loras)
    embeddings = [e["model"] for e in meta.get("embeddings") or [] if isinstance(e, dict) and e.get("model")]
    if embeddings:
        out["embeddings"] = "\n".join(embeddings)
    return out


class Rerun(NamedTuple):
    """What re-runs a saved image: the request (the whole batch it was made in), the base model, and which image
    of the batch it is."""

    request: Any
    base_model: str
    index: int


def request_from_metadata(meta: dict[str, Any], folder: str | Path) -> Rerun:
    """Rebuild the request (and the base model reference) that produced a saved image.

    Condition maps are read from `folder` (saved beside the image). The `auto` mode reuses the recorded caption,
    so a re-run needs no captioner. The request is the whole batch the image was made in (same size, first seed):
    float kernels may round differently at another batch size, so only the same batch composition gives the same
    pixels bit for bit on every machine. Take `images[index]` of the result.
    """
    from .request import ControlUnit, GenerationRequest, LoraRef

    folder = Path(folder)
    maps = meta.get("control_images") or []
    nets = meta.get("controlnets") or []
    if not maps or len(maps) != len(nets):
        raise ValueError("metadata lists no condition maps to re-run from (control_images / controlnets)")
    units = []
    for name, net in zip(maps, nets):
        path = folder / Path(name).name  # never follow a path out of the image's folder
        if not path.is_file():
            raise ValueError(f"condition map {path} is missing; it is saved beside the image")
        with Image.open(path) as image:
            units.append(ControlUnit(image.convert("RGB"), kind=net["kind"], controlnet=net["model"],
                                     strength=net["strength"], start=net["start"], end=net["end"],
                                     control_mode=net.get("control_mode", "balanced")))
    edit = {}
    for role in ("init_image", "mask"):
        name = meta.get("mask_image" if role == "mask" else role)
        if name:
            path = folder / Path(name).name
            if not path.is_file():
                raise ValueError(f"{role.replace('_', ' ')} {path} is missing; it is saved beside the image")
            with Image.open(path) as image:
                edit[role] = image.copy()
    fields = ("prompt_mode", "prompt", "caption", "added_prompt", "negative_prompt", "num_inference_steps",
              "guidance_scale", "eta", "width", "height", "guess_mode", "scheduler", "resize_mode", "denoise",
              "mask_blur",
              "inpaint_padding", "keep_unmasked", "tile_size", "fast_decode")
    index = int(meta.get("image_index", 0))
    loras = [LoraRef(lora["model"], float(lora["weight"])) for lora in meta.get("loras") or []]
    embeddings = [e["model"] for e in meta.get("embeddings") or []]
    request = GenerationRequest(units=units, num_images=int(meta.get("batch_size", 1)), seed=meta["seed"] - index,
                                loras=loras, embeddings=embeddings, **edit,
                                **{k: meta[k] for k in fields if k in meta})
    return Rerun(request, meta["base_model"]["model"], index)
