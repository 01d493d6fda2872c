"""A region mask per control: outside its mask a ControlNet has no effect (the A1111 extension's "effective region
mask"), and an image prompt's attention is confined to its mask (diffusers' `ip_adapter_masks`).

A ControlNet's residuals (the 12 skip connections and the middle block of a U-Net ControlNet; the token blocks of a
FLUX.1 or SD3.5 one) are multiplied by the unit's mask, resized to each residual's grid by area averaging, so a soft
(feathered) mask fades the control out. An all-black mask gives exactly the run without that unit (its residuals are
zeros, which the multi-ControlNet sum adds to the others'), an all-white mask exactly the run without a mask (every
residual times 1.0). The weighting runs in the same diffusers model hook as the control modes (cnet/control_mode.py),
after them; the engine sets each model's units (mode and mask) before each run.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

# A DiT ControlNet's residuals are tokens: one per patch of this many pixels a side (FLUX.1's 2x2 packed latents of
# an 8x VAE, SD3.5's 2x2 patches: 16 px), tried in order until the token count fits the output's shape.
TOKEN_PATCHES = (16, 8, 32)


def mask_tensor(mask: Image.Image, size: tuple[int, int]) -> Any:
    """A mask (white = the control applies; grey values fade it; a transparent layer's painted area counts as white)
    as a float tensor of shape (1, 1, height, width) in [0, 1], at the output's `size` (width, height)."""
    import numpy as np
    import torch

    from .edit import mask_channel

    grey = mask_channel(mask)
    if grey.size != size:
        grey = grey.resize(size, Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(grey, dtype=np.float32) / 255.0)[None, None]


def fitted_mask(mask: Image.Image | None, size: tuple[int, int], resize_mode: str) -> Image.Image | None:
    """A mask at the output's `size`, fitted by the request's resize mode (the geometry of its map), as one grey
    channel; None stays None."""
    if mask is None:
        return None
    from .edit import mask_channel
    from .resize import fit

    return fit(mask_channel(mask).convert("RGB"), *size, resize_mode).convert("L")


def masked_outputs(output: Any, mask: Any) -> Any:
    """A ControlNet's output (a diffusers output class, or its `return_dict=False` tuple, nested lists of tensors)
    with every residual multiplied by `mask` (1, 1, H, W) resized to the residual's grid."""
    if mask is None or output is None:
        return output
    if hasattr(output, "to_tuple"):  # diffusers' BaseOutput: rebuilt with the same fields
        return type(output)(**{key: masked_outputs(value, mask) for key, value in output.items()})
    if isinstance(output, (tuple, list)):
        return type(output)(masked_outputs(value, mask) for value in output)
    return output * _mask_for(output, mask)


def _mask_for(residual: Any, mask: Any) -> Any:
    """`mask` on the grid of one residual: (B, C, h, w) for a U-Net's, (B, tokens, C) for a DiT's."""
    import torch.nn.functional as F

    height, width = mask.shape[-2:]
    if residual.ndim == 4:
        grid = F.interpolate(mask, size=residual.shape[-2:], mode="area")
        return grid.to(device=residual.device, dtype=residual.dtype)
    if residual.ndim == 3:
        for patch in TOKEN_PATCHES:
            rows, columns = height // patch, width // patch
            if rows * columns == residual.shape[1]:
                grid = F.interpolate(mask, size=(rows, columns), mode="area")
                return grid.reshape(1, rows * columns, 1).to(device=residual.device, dtype=residual.dtype)
    raise ValueError(f"a ControlNet output of shape {tuple(residual.shape)} does not fit a {width}x{height} mask")
