"""Control modes as the AUTOMATIC1111 ControlNet extension defines them, per ControlNet.

With w the unit's strength and i = 0..12 the ControlNet's outputs (the 12 skip connections, then the middle block):

- ``balanced``: every output times w, on both halves of the classifier-free-guidance batch (plain diffusers);
- ``prompt`` ("My prompt is more important"): output i times w * 0.825^(12 - i), so the shallow skips that fix
  the layout are damped most (0.825^12 = 0.099) and the middle block keeps its full weight; both halves;
- ``control`` ("ControlNet is more important"): the same weights, and the unconditional half gets no control at
  all, so classifier-free guidance pushes towards the condition as well as the prompt.

The extension sets ``soft_injection = mode != balanced`` and ``cfg_injection = mode == control`` and applies
exactly these factors (its scripts/hook.py). diffusers' own ``guess_mode`` is the ``control`` mode for every
ControlNet at once, with 10^(-1 + i/12) (the same 0.8254 ratio). Here the factors are applied to the outputs of
diffusers' ControlNetModel by a diffusers model hook (`diffusers.hooks`), registered once; the engine sets each
model's modes before each run. The hook sits outside the skip of inactive steps (cnet/fastpath.py), so it counts
every call, and weights the zeros a skipped call returns (nothing).
"""

from __future__ import annotations

import functools
from typing import Any

CONTROL_MODES = ("balanced", "prompt", "control")
SOFT_RATIO = 0.825


def soft_weights(count: int = 13) -> list[float]:
    """0.825^(count - 1 - i) for each of the ControlNet's `count` outputs (the middle block last, at 1.0)."""
    return [SOFT_RATIO ** float(count - 1 - i) for i in range(count)]


HOOK_NAME = "cnet_control_mode"


def weighted_outputs(output: Any, mode: str, cfg_batch: bool) -> Any:
    """A ControlNet's output (diffusers' ControlNetOutput, or its `return_dict=False` tuple) weighted by `mode`."""
    if mode == "balanced":
        return output
    as_tuple = isinstance(output, tuple)
    down, mid = output if as_tuple else (output.down_block_res_samples, output.mid_block_res_sample)
    weights = soft_weights(len(down) + 1)
    down = [d * w for d, w in zip(down, weights)]
    mid = mid * weights[-1]
    if mode == "control" and cfg_batch:  # [unconditional, conditional]: no control on the first half
        half = mid.shape[0] // 2
        down = [_zero_first(d, half) for d in down]
        mid = _zero_first(mid, half)
    return (down, mid) if as_tuple else type(output)(down_block_res_samples=down, mid_block_res_sample=mid)


@functools.cache
def _hook_class() -> type:
    """The hook class, made on first use (diffusers' hooks import torch: the request module must not)."""
    from diffusers.hooks import ModelHook

    from .regions import masked_outputs

    class UnitOutputsHook(ModelHook):
        """Weights a ControlNet's outputs by its unit's control mode, then by its region mask (cnet/regions.py),
        after each forward (diffusers' model hooks, so the model's own forward is never replaced by hand, and other
        hooks compose with it). One model serving several units of a multi-ControlNet is called once per unit, in
        the units' order: it takes their settings in turn."""

        def __init__(self) -> None:
            super().__init__()
            self.units: list[tuple[str, Any]] = [("balanced", None)]  # (mode, mask) per unit served
            self.cfg_batch, self.calls = False, 0

        def post_forward(self, module: Any, output: Any) -> Any:
            mode, mask = self.units[self.calls % len(self.units)]
            self.calls += 1
            return masked_outputs(weighted_outputs(output, mode, self.cfg_batch), mask)

    return UnitOutputsHook


def install_control_modes(controlnet: Any) -> Any:
    """Register the control-mode hook on this ControlNet (idempotent), so `set_control_mode` takes effect."""
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(controlnet)
    if registry.get_hook(HOOK_NAME) is None:
        registry.register_hook(_hook_class()(), HOOK_NAME)
    return controlnet


def set_unit_outputs(controlnet: Any, units: list[tuple[str, Any]], cfg_batch: bool) -> None:
    """The (control mode, region mask or None) of each unit this ControlNet serves in the next run, in the units'
    order, taken in turn by its calls; `cfg_batch`: its input is the [uncond, cond] batch of classifier-free
    guidance (guidance > 1 and not diffusers' guess mode)."""
    from diffusers.hooks import HookRegistry

    for mode, _ in units:
        if mode not in CONTROL_MODES:
            raise ValueError(f"control_mode={mode!r} is not one of {list(CONTROL_MODES)}")
    install_control_modes(controlnet)
    hook = HookRegistry.check_if_exists_or_initialize(controlnet).get_hook(HOOK_NAME)
    hook.units, hook.cfg_batch, hook.calls = list(units) or [("balanced", None)], cfg_batch, 0


def set_control_mode(controlnet: Any, mode: str, cfg_batch: bool) -> None:
    """One mode (and no mask) for the next runs of this ControlNet."""
    set_unit_outputs(controlnet, [(mode, None)], cfg_batch)


def _zero_first(tensor: Any, half: int) -> Any:
    import torch

    return torch.cat([torch.zeros_like(tensor[:half]), tensor[half:]])
