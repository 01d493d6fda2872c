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
