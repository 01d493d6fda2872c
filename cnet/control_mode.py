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
diffusers' ControlNetModel, whose forward is wrapped once; the engine sets each model's mode before each run.
"""

from __future__ import annotations

from typing import Any

CONTROL_MODES = ("balanced", "prompt", "control")
SOFT_RATIO = 0.825


def soft_weights(count: int = 13) -> list[float]:
    """0.825^(count - 1 - i) for each of the ControlNet's `count` outputs (the middle block last, at 1.0)."""
    return [SOFT_RATIO ** float(count - 1 - i) for i in range(count)]


def install_control_modes(controlnet: Any) -> Any:
    """Wrap this ControlNet instance's forward so that `set_control_mode` takes effect; idempotent."""
    if getattr(controlnet, "_cnet_control_modes", False):
        return controlnet
    original = controlnet.forward
    controlnet._cnet_mode = ("balanced", False)

    def forward(*args: Any, return_dict: bool = True, **kwargs: Any) -> Any:
        out = original(*args, return_dict=return_dict, **kwargs)
        mode, cfg_batch = controlnet._cnet_mode
        if mode == "balanced":
            return out
        down, mid = (out.down_block_res_samples, out.mid_block_res_sample) if return_dict else out
        weights = soft_weights(len(down) + 1)
        down = [d * w for d, w in zip(down, weights)]
        mid = mid * weights[-1]
        if mode == "control" and cfg_batch:  # [unconditional, conditional]: no control on the first half
            half = mid.shape[0] // 2
            down = [_zero_first(d, half) for d in down]
            mid = _zero_first(mid, half)
        if not return_dict:
            return down, mid
        return type(out)(down_block_res_samples=down, mid_block_res_sample=mid)

    controlnet.forward = forward
    controlnet._cnet_control_modes = True
    return controlnet


def set_control_mode(controlnet: Any, mode: str, cfg_batch: bool) -> None:
    """The mode for the next runs of this ControlNet; `cfg_batch`: its input is the [uncond, cond] batch of
    classifier-free guidance (guidance > 1 and not diffusers' guess mode)."""
    if mode not in CONTROL_MODES:
        raise ValueError(f"control_mode={mode!r} is not one of {list(CONTROL_MODES)}")
    install_control_modes(controlnet)
    controlnet._cnet_mode = (mode, cfg_batch)


def _zero_first(tensor: Any, half: int) -> Any:
    import torch

    return torch.cat([torch.zeros_like(tensor[:half]), tensor[half:]])
