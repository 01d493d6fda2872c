"""Speed-ups that change no pixel.

`skip_inactive_controlnet`: outside [control start, control end] (or at strength 0) diffusers still runs the
ControlNet and multiplies its outputs by zero. We return the zeros without running it: the same numbers, and on a
run with control end 0.5 about 13% of the denoising FLOPs saved: the ControlNet is 25.6% of a step's FLOPs (SD1.5 at
512x512 with CFG: 0.466 of 1.820 TFLOP, counted with torch's FlopCounterMode), skipped on half the steps.
"""

from __future__ import annotations

from typing import Any


def skip_inactive_controlnet(controlnet: Any) -> Any:
    """Patch this ControlNet instance so that a call with conditioning_scale == 0 returns zero residuals at once.

    The residual shapes are learnt from the first real call for each input shape (a call at scale 0 before any real
    one simply runs normally). Idempotent; returns the model.
    """
    if getattr(controlnet, "_cnet_skips_inactive", False):
        return controlnet
    original = controlnet.forward
    # Per input shape: the residual shapes and the output class, both learnt from a real call (so no import path
    # of diffusers' output class is relied on).
    shapes: dict[tuple, tuple[list[Any], Any, type]] = {}

    def forward(sample: Any, timestep: Any, encoder_hidden_states: Any, controlnet_cond: Any,
                conditioning_scale: float = 1.0, *args: Any, return_dict: bool = True, **kwargs: Any) -> Any:
        key = (tuple(sample.shape), sample.dtype, str(sample.device), bool(kwargs.get("guess_mode", False)))
        known = shapes.get(key)
        if not args and isinstance(conditioning_scale, (int, float)) and conditioning_scale == 0 and known and \
                (not return_dict or known[2] is not tuple):
            down_shapes, mid_shape, output_class = known
            down = [sample.new_zeros(s) for s in down_shapes]
            mid = sample.new_zeros(mid_shape)
            if not return_dict:
                return down, mid
            return output_class(down_block_res_samples=down, mid_block_res_sample=mid)
        out = original(sample, timestep, encoder_hidden_states, controlnet_cond, conditioning_scale, *args,
                       return_dict=return_dict, **kwargs)
        down, mid = (out.down_block_res_samples, out.mid_block_res_sample) if return_dict else out
        if return_dict or key not in shapes:
            shapes[key] = ([d.shape for d in down], mid.shape, type(out) if return_dict else tuple)
        return out

    controlnet.forward = forward
    controlnet._cnet_skips_inactive = True
    return controlnet
