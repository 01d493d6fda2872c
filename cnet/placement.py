"""The memory plan applied: a base model's parts placed on the card found (cnet/memory.py decides, this module does).

With `CNET_MEMORY_PLAN=auto` the engine counts the base's parts from their configs (no weight read), plans for the
card's free memory (or `CNET_MEMORY_CARD_GB`), loads the parts the plan quantises through diffusers' quantization
config (bitsandbytes int8 / NF4), and offloads the parts it offloads with diffusers' group offloading (weights in CPU
memory, moved layer by layer as they run, on a CUDA stream so the copy overlaps the compute). The plan's one-line
summary is the engine's `memory_status`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .memory import MemoryPlan, PartSize, model_parts, plan_memory

log = logging.getLogger("cnet.placement")

MEMORY_PLANS = ("none", "auto")
# Room for the ControlNets a run adds to the base, per family: one ControlNet as bench/family_memory.py counts them
# (SD1.5's 361M, SD 2.x's 364M, SDXL's 1.25B; FLUX.1's and SD3.5 Large's at diffusers' default depth, 2.95B and
# 2.65B), in 16 bits; FLUX.1 Fill takes none.
CONTROLNET_PARAMS = {"sd15": 361_278_404, "sd2": 364_234_372, "sdxl": 1_251_014_160, "flux": 2_952_654_336,
                     "sd3": 2_654_723_200}


def memory_plan_mode(value: str | None) -> str:
    """The plan mode: `value` if given, else CNET_MEMORY_PLAN, else "none"; ValueError naming a bad one."""
    from common.env import choice_or_env

    return choice_or_env(value, "memory_plan", "CNET_MEMORY_PLAN", MEMORY_PLANS, "none")


def card_gigabytes(device: str) -> float | None:
    """The memory to plan for: CNET_MEMORY_CARD_GB if set, else the CUDA card's free memory; None elsewhere."""
    from common.env import env_text

    given = env_text("CNET_MEMORY_CARD_GB")
    if given:
        try:
            return float(given)
        except ValueError:
            raise ValueError(f"CNET_MEMORY_CARD_GB={given!r} is not a number of GB") from None
    if not device.startswith("cuda"):
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return free / 1e9


def plan_base(folder: str | Path, family: Any, label: str, card_gb: float, half: str) -> MemoryPlan:
    """The plan for the base pipeline at `folder` (its configs counted on the meta device) and one ControlNet of
    its family, on a card of `card_gb`."""
    parts = model_parts(folder)
    parts.append(PartSize("controlnet", "ControlNet", CONTROLNET_PARAMS.get(family.name, 0)))
    return plan_memory(label, parts, card_gb, family.name, denoiser=family.denoiser, half=half)


def place(pipe: Any, plan: MemoryPlan, device: str) -> None:
    """Put each of the pipeline's parts where the plan says: offloaded ones stay in CPU memory behind diffusers'
    group-offloading hooks (a CUDA stream where there is one), quantised ones where their quantiser put them, the
    rest moved to `device`."""
    from diffusers.hooks import apply_group_offloading

    offloaded, quantized = set(plan.offloaded()), set(plan.quantized())
    for name, module in pipe.components.items():
        if not hasattr(module, "parameters") or name in quantized and name not in offloaded:
            continue
        if name in offloaded:
            apply_group_offloading(module, onload_device=device, offload_type="leaf_level",
                                   use_stream=device.startswith("cuda"))
        else:
            module.to(device)
    log.info("memory plan: %s", plan.status_line())
