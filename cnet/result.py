"""Results you can reproduce: images, condition maps and the full metadata, saved as PNGs with a text chunk."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from common.text import short_repr

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
    unit_masks: list[Image.Image | None] = field(default_factory=list)  # each unit's region mask (None: none)
    references: list[Image.Image] = field(default_factory=list)  # the reference pictures (image prompts)
    reference_masks: list[Image.Image | None] = field(default_factory=list)

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
        inputs.update(self._save_attachments(out, stem))
        paths = []
        for i, (image, meta) in enumerate(zip(self.images, self.metadata)):
            meta = {**meta, "control_images": map_names, **inputs}
            path = out / f"{stem}-{i}.png"
            image.save(path, pnginfo=png_info(meta))
            paths.append(path)
        return paths


    def _save_attachments(self, out: Path, stem: str) -> dict[str, list[str | None]]:
        """The units' masks and the reference pictures with their masks, saved beside the images; their file names
        by metadata key (a list per kind, None where a unit or reference has no mask), only for those present."""
        groups = {"control_masks": (self.unit_masks, "control{}-mask"), "reference_images": (self.references,
                  "reference{}"), "reference_masks": (self.reference_masks, "reference{}-mask")}
        names: dict[str, list[str | None]] = {}
        for key, (images, pattern) in groups.items():
            if any(image is not None for image in images):
                names[key] = [None if image is None else f"{stem}-{pattern.format(j)}.png"
                              for j, image in enumerate(images)]
                for name, image in zip(names[key], images):
                    if image is not None:
                        image.save(out / name)
        return names


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
    try:
        meta = json.loads(texts[METADATA_KEY])
    except RecursionError:
        raise ValueError(f"{path}: its '{METADATA_KEY}' metadata is nested too deep to be settings") from None
    except ValueError as err:
        raise ValueError(f"{path}: its '{METADATA_KEY}' metadata is not JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: its '{METADATA_KEY}' metadata is a {type(meta).__name__}, not settings")
    lengths = meta.pop("text_lengths", None)
    if lengths is not None and not (isinstance(lengths, dict) and all(
            type(lengths.get(k)) is int and lengths[k] >= 0 for k in _SUMMARY_TEXTS)):
        raise ValueError(f"{path}: its text_lengths {short_repr(lengths)} are not the lengths of its two texts")
    if lengths is not None:  # the texts live in the summary line
        summary = texts.get(PARAMETERS_KEY, "")
        sent = summary[: lengths["prompt_used"]]
        start = len(sent) + len(_NEGATIVE)
        negative = summary[start: start + lengths["negative_prompt"]]
        meta.update(prompt_used=sent, negative_prompt=negative)
        # The texts must sit where their lengths say; the numbers after them are for other tools to read (the
        # JSON holds the values), so a seed written 1e300 there instead of 1e+300 does not lose the file.
        if summary[len(sent):start] != _NEGATIVE or not summary[start + len(negative):].startswith("\nSteps: "):
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


def _declared(restorable: bool) -> tuple[str, ...]:
    """The request's declared settings recorded in metadata (cnet/params.py); `restorable`: those a form takes back
    (every request's, not an edit's). The seed and the batch size are read on their own (seed of the first image)."""
    from .params import declarations
    from .request import GenerationRequest

    return tuple(item.field for item in declarations(GenerationRequest, "generate" if restorable else None)
                 if item.param.record and (item.param.restore or not restorable)
                 and item.field != "seed" and (restorable or item.field != "num_images"))


def _unit_settings() -> tuple[str, ...]:
    """A ControlNet entry's declared settings (kind, strength, start, end, control_mode); its model on its own."""
    from .params import declarations
    from .request import ControlUnit

    return tuple(item.field for item in declarations(ControlUnit) if item.param.record)


class Restored(NamedTuple):
    """The settings a form takes back from a saved image, and what was refused (one message per setting, naming
    it and its value, as a request's check names them)."""

    settings: dict[str, Any]
    refused: list[str]


def settings_from_metadata(meta: dict[str, Any], limits: Any = None) -> Restored:
    """The settings a form restores from a saved image's metadata (`read_metadata`): the request's, the first
    ControlNet's kind, strength, start, end and control mode, and the model references (`base_model`,
    `controlnet`). The seed and image count are those of the batch the image was made in (its first seed), which
    gives the same pixels again, as `request_from_metadata` does. Keys missing from older files are left out.

    Each value is checked as a request checks it (within `limits`, the library's by default): a value of the wrong
    type, out of range or holding a lone surrogate is refused by name and the others are restored."""
    out: dict[str, Any] = {k: meta[k] for k in _declared(restorable=True) if k in meta}
    if "batch_size" in meta:
        out["num_images"] = meta["batch_size"]
    if "seed" in meta:
        index = meta.get("image_index", 0)
        out["seed"] = meta["seed"] - index if _is_int(meta["seed"]) and _is_int(index) else meta["seed"]
    refused: list[str] = []
    first = _entries(meta, "controlnets", refused)[:1]
    if first:
        from .kinds import KINDS

        out.update({k: first[0][k] for k in _unit_settings() if k in first[0]})
        kind = KINDS.get(first[0].get("kind")) if isinstance(first[0].get("kind"), str) else None
        # Today's default for its kind is left out: the field stays empty and follows the kind when it changes.
        if first[0].get("model") and not (kind and first[0]["model"] == kind.controlnet_source()):
            out["controlnet"] = first[0]["model"]
    base = _model_of(meta.get("base_model"))
    from .kinds import base_model_source

    if base and base != base_model_source():
        out["base_model"] = base
    loras = _checked_loras(_entries(meta, "loras", refused), refused)
    if loras:  # as the form writes them: one source:weight a line
        out["loras"] = "\n".join(f"{lora.source}:{lora.weight}" for lora in loras)
    embeddings = [_model_of(e) for e in _entries(meta, "embeddings", refused)]
    if any(embeddings):
        out["embeddings"] = "\n".join(e for e in embeddings if e)
    kept = {}
    for key, value in out.items():
        try:
            _check_restored(key, value, limits)
        except ValueError as err:
            refused.append(str(err))
            continue
        kept[key] = value
    return Restored(kept, refused)


def more_units_from_metadata(meta: dict[str, Any], limits: Any = None) -> Restored:
    """The settings of a saved image's units after the first (kind, strength, start, end, control mode, and the
    ControlNet where it is not the kind's default) and of its reference pictures (scale, preset), as lists of dicts
    under "units" and "references"; each unit's checked as a request checks it (one refused is named and left out).
    Their maps, masks and pictures are files saved beside the image, which a form cannot read from a dropped PNG."""
    from .kinds import KINDS
    from .request import DEFAULT_LIMITS, ControlUnit, GenerationRequest, ImagePrompt

    refused: list[str] = []
    units, references = [], []
    for i, entry in enumerate(_entries(meta, "controlnets", refused)[1:], start=1):
        settings = {k: entry[k] for k in _unit_settings() if k in entry}
        kind = KINDS.get(settings.get("kind")) if isinstance(settings.get("kind"), str) else None
        model = entry.get("model")
        if model and isinstance(model, str) and not (kind and model == kind.controlnet_source()):
            settings["controlnet"] = model
        try:
            GenerationRequest(units=[ControlUnit(Image.new("RGB", (8, 8)), **settings)]).validated(
                limits or DEFAULT_LIMITS)
        except (TypeError, ValueError) as err:
            refused.append(f"controlnets[{i}]: {err}")
            continue
        units.append(settings)
    for i, entry in enumerate(_entries(meta, "image_prompts", refused)):
        settings = {k: entry[k] for k in ("scale", "preset") if k in entry}
        try:
            GenerationRequest(units=[], image_prompts=[ImagePrompt(Image.new("RGB", (8, 8)), **settings)]
                              ).validate_settings(limits or DEFAULT_LIMITS)
        except (TypeError, ValueError) as err:
            refused.append(f"image_prompts[{i}]: {err}")
            continue
        references.append(settings)
    return Restored({"units": units, "references": references}, refused)


def _checked_loras(entries: list[dict[str, Any]], refused: list[str]) -> list[Any]:
    """The LoRAs of the metadata that pass the request's own check of a LoRA; the others named in `refused`."""
    from .request import LoraRef, RequestError, check_lora

    kept = []
    for i, entry in enumerate(entries):
        lora = LoraRef(_model_of(entry), entry.get("weight", 1.0))
        try:
            check_lora(i, lora)
        except RequestError as err:
            refused.append(str(err))
            continue
        kept.append(lora)
    return kept


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entries(meta: dict[str, Any], key: str, refused: list[str]) -> list[dict[str, Any]]:
    """The dicts of a list entry of the metadata (controlnets, loras, embeddings); anything else is refused."""
    value = meta.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        refused.append(f"{key}={short_repr(value)} is not a list of entries")
        return []
    return value


def _model_of(entry: Any) -> Any:
    """The model reference of a metadata entry ({"model": ..., "revision": ...}, or the reference itself)."""
    return entry.get("model") if isinstance(entry, dict) else entry


_MODEL_SETTINGS = ("base_model", "controlnet", "loras", "embeddings")


def _check_restored(key: str, value: Any, limits: Any) -> None:
    """RequestError (a ValueError naming the setting and the value) when `value` would not pass a request's check."""
    from .request import DEFAULT_LIMITS, ControlUnit, GenerationRequest, check_text

    limits = limits or DEFAULT_LIMITS
    if key in _unit_settings():
        unit = ControlUnit(Image.new("RGB", (8, 8)), **{key: value})
        if key == "kind" and not isinstance(value, str):
            raise ValueError(f"kind={short_repr(value)} must be text")
        GenerationRequest(units=[unit]).validated(limits)
    elif key in _MODEL_SETTINGS:
        check_text(key, value, 10_000)
    else:  # a request's own setting, over the defaults (custom mode's prompt is checked as the prompt)
        trial = {key: value, **({"prompt": "x"} if key == "prompt_mode" else {})}
        GenerationRequest(units=[], **trial).validate_settings(limits)


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

    A re-run must be the run recorded, so a malformed entry is a ValueError naming it (not a partial re-run); the
    settings themselves are checked when the request runs, as any request's are.
    """
    from .request import ControlUnit, GenerationRequest, LoraRef

    folder = Path(folder)
    maps, nets = meta.get("control_images") or [], _strict_entries(meta, "controlnets")
    if not isinstance(maps, list) or not (maps or meta.get("image_prompts")) or len(maps) != len(nets):
        raise ValueError("metadata lists no condition maps to re-run from (control_images / controlnets)")
    units = []
    for i, (name, net) in enumerate(zip(maps, nets)):
        image = _saved_beside(folder, name, f"condition map {i}")
        settings = {k: net[k] for k in _unit_settings() if k in net}
        settings["kind"] = _field(net, "kind", str, f"controlnets[{i}]")
        units.append(ControlUnit(image.convert("RGB"), controlnet=_field(net, "model", str, f"controlnets[{i}]"),
                                 **settings))
    for unit, mask in zip(units, _optional_files(meta, "control_masks", len(units), folder)):
        unit.mask = mask
    image_prompts, adapter = _image_prompts(meta, folder)
    edit = {role: _saved_beside(folder, meta[key], role.replace("_", " "))
            for role, key in (("init_image", "init_image"), ("mask", "mask_image"),
                              ("reference_only", "reference_only_image")) if meta.get(key)}
    index, seed = _field(meta, "image_index", int, "", 0), _field(meta, "seed", int, "")
    batch_size = _field(meta, "batch_size", int, "", 1)
    if not 0 <= index < batch_size:
        raise ValueError(f"metadata: image_index={index} is not an image of its batch of {batch_size}; "
                         "it cannot be re-run")
    loras = [LoraRef(_field(lora, "model", str, f"loras[{i}]"), lora.get("weight", 1.0))
             for i, lora in enumerate(_strict_entries(meta, "loras"))]
    embeddings = [_field(e, "model", str, f"embeddings[{i}]")
                  for i, e in enumerate(_strict_entries(meta, "embeddings"))]
    base = meta.get("base_model")  # {"model": ..., "revision": ...}, or the reference itself
    if not isinstance(base, str):
        base = _field(base if isinstance(base, dict) else {}, "model", str, "base_model")
    request = GenerationRequest(units=units, num_images=batch_size, seed=seed - index,
                                loras=loras, embeddings=embeddings, **edit, image_prompts=image_prompts,
                                ip_adapter=adapter,
                                **{k: meta[k] for k in _declared(restorable=False) if k in meta})
    return Rerun(request, base, index)


def _optional_files(meta: dict[str, Any], key: str, count: int, folder: Path) -> list[Image.Image | None]:
    """The images a metadata list of file names holds (None where an entry has none), `count` of them; all None
    when the list is absent (a file saved before masks existed, or a run without them)."""
    names = meta.get(key)
    if names is None:
        return [None] * count
    if not isinstance(names, list) or len(names) != count:
        raise ValueError(f"metadata: {key}={short_repr(names)} is not a list of {count} file names; it cannot be "
                         "re-run")
    return [None if name is None else _saved_beside(folder, name, f"{key}[{j}]") for j, name in enumerate(names)]


def _image_prompts(meta: dict[str, Any], folder: Path) -> tuple[list[Any], str | None]:
    """The reference pictures of a saved run (their scales, presets and masks) and the IP-Adapter they used."""
    from .image_prompts import ImagePrompt

    entries = _strict_entries(meta, "image_prompts")
    pictures = _optional_files(meta, "reference_images", len(entries), folder) if entries else []
    masks = _optional_files(meta, "reference_masks", len(entries), folder)
    prompts = []
    for j, (entry, picture, mask) in enumerate(zip(entries, pictures, masks)):
        if picture is None:
            raise ValueError(f"metadata: image_prompts[{j}] has no reference picture; it cannot be re-run")
        prompts.append(ImagePrompt(picture.convert("RGB"), **{k: entry[k] for k in ("scale", "preset") if k in entry},
                                   mask=mask))
    return prompts, _field(entries[0], "model", str, "image_prompts[0]") if entries else None


def _strict_entries(meta: dict[str, Any], key: str) -> list[dict[str, Any]]:
    refused: list[str] = []
    found = _entries(meta, key, refused)
    if refused:
        raise ValueError(f"metadata: {refused[0]}; it cannot be re-run")
    return found


_MISSING = object()


def _field(entry: dict[str, Any], name: str, kind: type, where: str, default: Any = _MISSING) -> Any:
    """`entry[name]`, which must be of `kind` (an int is not a bool); ValueError naming it otherwise."""
    label = f"{where}.{name}" if where else name
    if name not in entry and default is not _MISSING:
        return default
    value = entry.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)) or (kind is str and not value):
        wanted = "text" if kind is str else "a whole number"
        what = "missing" if name not in entry else f"{short_repr(value)}, not {wanted}"
        raise ValueError(f"metadata: {label} is {what}; it cannot be re-run")
    return value


def _saved_beside(folder: Path, name: Any, what: str) -> Image.Image:
    """An image saved beside the PNG, by its recorded name (never a path out of that folder)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"metadata: the {what}'s file name {short_repr(name)} is not a file name")
    path = folder / Path(name).name
    if not path.is_file():
        raise ValueError(f"{what} {path} is missing; it is saved beside the image")
    with Image.open(path) as image:
        image.load()
        return image.copy()
