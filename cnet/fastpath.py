"""Speed-ups that change no pixel.

`skip_inactive_controlnet`: outside [control start, control end] (or at strength 0) diffusers still runs the
ControlNet and multiplies its outputs by zero. We return the zeros without running it: the same numbers, and on a
run with control end 0.5 about 13% of the denoising FLOPs saved: the ControlNet is 25.6% of a step's FLOPs (SD1.5 at
512x512 with CFG: 0.466 of 1.820 TFLOP, counted with torch's FlopCounterMode), skipped on half the steps.
"""

from __future__ import annotations

import functools
from typing import Any

HOOK_NAME = "cnet_skip_inactive"


@functools.cache
def _hook_class() -> type:
    """The hook class, made on first use (diffusers' hooks import torch)."""
    from diffusers.hooks import ModelHook

    class SkipInactiveHook(ModelHook):
        """Returns zero residuals at once for a call with conditioning_scale == 0 (diffusers' model hooks: the
        hook's `new_forward` runs instead of the model's and calls it through `fn_ref.original_forward`)."""

        def __init__(self) -> None:
            super().__init__()
            # Per input shape: the residual shapes and the output class, both learnt from a real call (so no
            # import path of diffusers' output class is relied on).
            self.shapes: dict[tuple, tuple[list[Any], Any, type]] = {}

        def new_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
            sample = args[0] if args else kwargs["sample"]
            scale = args[4] if len(args) > 4 else kwargs.get("conditioning_scale", 1.0)
            return_dict = kwargs.get("return_dict", True)
            key = (tuple(sample.shape), sample.dtype, str(sample.device), bool(kwargs.get("guess_mode", False)))
            known = self.shapes.get(key)
            if len(args) <= 5 and isinstance(scale, (int, float)) and scale == 0 and known and \
                    (not return_dict or known[2] is not tuple):
                down_shapes, mid_shape, output_class = known
                down = [sample.new_zeros(s) for s in down_shapes]
                mid = sample.new_zeros(mid_shape)
                if not return_dict:
                    return down, mid
                return output_class(down_block_res_samples=down, mid_block_res_sample=mid)
            out = self.fn_ref.original_forward(*args, **kwargs)
            down, mid = (out.down_block_res_samples, out.mid_block_res_sample) if return_dict else out
            if return_dict or key not in self.shapes:
                self.shapes[key] = ([d.shape for d in down], mid.shape, type(out) if return_dict else tuple)
            return out

    return SkipInactiveHook


def skip_inactive_controlnet(controlnet: Any) -> Any:
    """Register the skip on this ControlNet: a call with conditioning_scale == 0 returns zero residuals at once.

    The residual shapes are learnt from the first real call for each input shape (a call at scale 0 before any real
    one simply runs normally). Idempotent; returns the model.
    """
    from diffusers.hooks import HookRegistry

    registry = HookRegistry.check_if_exists_or_initialize(controlnet)
    if registry.get_hook(HOOK_NAME) is None:
        registry.register_hook(_hook_class()(), HOOK_NAME)
    return controlnet
