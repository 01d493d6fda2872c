"""One hash of a model's weights, for the latent cache's key and for checking that every process of a run ended with
the same weights."""

from __future__ import annotations

import hashlib
from typing import Any


def weights_sha256(model: Any) -> str:
    """sha256 over a model's parameter and buffer names and bytes, in name order: the same weights, the same hash.
    The bytes are read as raw bytes, so bf16 and fp8 weights hash too (numpy has no bfloat16)."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
