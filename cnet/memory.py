"""How much memory a model's parts need, from their configs alone: the first half of a memory plan.

Each part of a diffusers pipeline (the denoiser, the text encoders, the VAE, a ControlNet) is built on PyTorch's meta
device from its `config.json` (accelerate's `init_empty_weights`: shapes without storage, so a 12B-parameter
transformer costs nothing), its parameters counted, and its size given for each way of holding the weights
(fp32, bf16/fp16, int8, NF4). Choosing a placement for the card found (quantise, offload) builds on these numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Bytes a weight takes when held as each format; NF4 stores 4 bits plus one fp32 scale per 64 weights (bitsandbytes'
# blockwise quantisation), about 0.5625 bytes.
BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0, "nf4": 0.5 + 4 / 64}
# A pipeline's parts that hold weights (tokenizers, schedulers and feature extractors do not).
WEIGHTED_LIBRARIES = ("diffusers", "transformers")


@dataclass(frozen=True)
class PartSize:
    """One part of a model: its name (the pipeline's subfolder), class, and parameter count."""

    name: str
    class_name: str
    params: int

    def gigabytes(self, weights: str = "bfloat16") -> float:
        """Its weights' size in GB (10^9 bytes) when held as `weights` (BYTES_PER_PARAM)."""
        if weights not in BYTES_PER_PARAM:
            raise ValueError(f"weights={weights!r} is not one of {list(BYTES_PER_PARAM)}")
        return self.params * BYTES_PER_PARAM[weights] / 1e9


def count_params(library: str, class_name: str, config: dict[str, Any]) -> int:
    """The parameter count of `class_name` (from `library`: diffusers or transformers) built from `config` on the
    meta device; no weight is allocated or read."""
    import importlib

    from accelerate import init_empty_weights

    if library not in WEIGHTED_LIBRARIES:
        raise ValueError(f"library={library!r} is not one of {list(WEIGHTED_LIBRARIES)}")
    cls = getattr(importlib.import_module(library), class_name)
    with init_empty_weights():
        if library == "diffusers":
            model = cls.from_config(config)
        else:
            config_class = cls.config_class
            model = cls(config_class(**{k: v for k, v in config.items() if not k.startswith("_")}))
    return sum(p.numel() for p in model.parameters())


def model_parts(folder: str | Path) -> list[PartSize]:
    """Every weighted part of a diffusers pipeline folder (its model_index.json), or of a single model folder (a
    ControlNet), with its parameter count read from its config."""
    root = Path(folder)
    index_file = root / "model_index.json"
    if not index_file.is_file():
        config = json.loads((root / "config.json").read_text())
        return [PartSize(root.name, config["_class_name"], count_params("diffusers", config["_class_name"], config))]
    parts = []
    for name, entry in json.loads(index_file.read_text()).items():
        if name.startswith("_") or not isinstance(entry, list) or entry[0] not in WEIGHTED_LIBRARIES:
            continue
        config_file = root / name / "config.json"
        if config_file.is_file():
            parts.append(PartSize(name, entry[1], count_params(entry[0], entry[1],
                                                               json.loads(config_file.read_text()))))
    return parts


# -- the plan: where each part lives on the card found ----------------------------------------------------------------

# Room kept for what is not weights (activations, the VAE decode, CUDA's context), by family, at the family's own side
# (1024 px for SDXL and the DiTs). Estimates, to be checked by bench/gpu.py's memory variants on a real card.
ACTIVATION_GB = {"sd15": 1.5, "sd2": 2.0, "sdxl": 3.0, "flux": 4.0, "sd3": 4.0}
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")
# A denoiser's quantised weights through diffusers' quantization config (bitsandbytes: CUDA cards).
QUANT_BACKENDS = {"int8": ("bitsandbytes_8bit", {"load_in_8bit": True}),
                  "nf4": ("bitsandbytes_4bit", {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"})}


@dataclass(frozen=True)
class Placement:
    """One part's place: its weights' format, and where they live while the pipeline runs: "gpu", "offloaded"
    (kept in CPU memory, moved to the card layer by layer as it runs, on a CUDA stream: diffusers' group
    offloading)."""

    part: PartSize
    weights: str = "bfloat16"
    where: str = "gpu"

    @property
    def card_gb(self) -> float:
        """What it holds on the card (an offloaded part: nothing between its runs)."""
        return self.part.gigabytes(self.weights) if self.where == "gpu" else 0.0

    def describe(self) -> str:
        size = f"{self.part.gigabytes(self.weights):.1f} GB"
        return f"{self.part.name} {self.weights} {size}" if self.where == "gpu" else \
            f"{self.part.name} offloaded ({size} in CPU memory)"


@dataclass(frozen=True)
class MemoryPlan:
    """A placement for every part, for a card of `card_gb`; `fits` False when even the last step does not."""

    label: str
    card_gb: float
    reserve_gb: float
    placements: tuple[Placement, ...]
    fits: bool

    @property
    def used_gb(self) -> float:
        return sum(p.card_gb for p in self.placements) + self.reserve_gb

    def status_line(self) -> str:
        """e.g. "FLUX.1: transformer nf4 6.7 GB, text_encoder_2 offloaded (9.5 GB in CPU memory), ...; 12.0 of
        16 GB"."""
        parts = ", ".join(p.describe() for p in self.placements)
        verdict = "" if self.fits else " (does not fit even so: choose a smaller model or size)"
        return f"{self.label}: {parts}; {self.used_gb:.1f} of {self.card_gb:.0f} GB{verdict}"

    def offloaded(self) -> list[str]:
        return [p.part.name for p in self.placements if p.where == "offloaded"]

    def quantized(self) -> dict[str, str]:
        """Part name -> its quantised format (int8, nf4)."""
        return {p.part.name: p.weights for p in self.placements if p.weights in QUANT_BACKENDS}

    def quantization_config(self) -> Any:
        """diffusers' PipelineQuantizationConfig for the quantised parts (one format per plan), or None."""
        quantized = self.quantized()
        if not quantized:
            return None
        from diffusers import PipelineQuantizationConfig

        backend, kwargs = QUANT_BACKENDS[next(iter(quantized.values()))]
        return PipelineQuantizationConfig(quant_backend=backend, quant_kwargs=dict(kwargs),
                                          components_to_quantize=sorted(quantized))


def plan_memory(label: str, parts: list[PartSize], card_gb: float, family: str, denoiser: str = "unet",
                half: str = "bfloat16") -> MemoryPlan:
    """The first placement that fits `card_gb`, trying in order what costs the least quality and time: everything
    on the card in `half`; the text encoders offloaded (they run once per prompt), largest first; the denoiser in
    int8, then NF4 (its quality cost is the quantisation's); then the denoiser offloaded as well (slowest: its
    weights stream in at every step). ControlNets and the VAE stay on the card in `half`."""
    reserve = ACTIVATION_GB.get(family, 4.0)
    current = {p.name: Placement(p, half) for p in parts}
    steps: list[dict[str, Placement]] = [dict(current)]
    encoders = sorted((p for p in parts if p.name in TEXT_ENCODERS), key=lambda p: -p.params)
    for encoder in encoders:
        current[encoder.name] = Placement(encoder, half, "offloaded")
        steps.append(dict(current))
    if denoiser in current:
        for weights in ("int8", "nf4"):
            current[denoiser] = Placement(current[denoiser].part, weights)
            steps.append(dict(current))
        current[denoiser] = Placement(current[denoiser].part, "nf4", "offloaded")
        steps.append(dict(current))
    for step in steps:
        used = sum(p.card_gb for p in step.values()) + reserve
        if used <= card_gb:
            return MemoryPlan(label, card_gb, reserve, tuple(step.values()), True)
    return MemoryPlan(label, card_gb, reserve, tuple(steps[-1].values()), False)
