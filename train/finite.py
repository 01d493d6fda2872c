"""A run that diverges stops as a failure: a loss, a gradient or a weight that is not a finite number.

With too high a learning rate (`--lr 1e6`), a NaN in a latent-cache shard or a float image, the loss becomes NaN and,
one optimizer step later, every weight too. Carrying on would end "ControlNet saved" with NaN weights, and the
checkpoints written on the way would prune the good ones. So the step whose loss or gradient is not finite is not
taken, no checkpoint or result is written from weights that are not finite, and `--resume latest` never picks a
checkpoint that holds one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class TrainingDiverged(RuntimeError):
    """The run stopped because a loss, gradient or weight stopped being a finite number; the message names the
    step, what was not finite, the last finite checkpoint and what to change."""


def first_nonfinite(values: Iterable[float]) -> float | None:
    """The first value of `values` that is NaN or infinite, or None."""
    return next((v for v in values if not math.isfinite(v)), None)


def nonfinite_tensors(named: Iterable[tuple[str, Any]], limit: int = 3) -> list[str]:
    """Names of (at most `limit`) tensors holding a NaN or an infinity, e.g. from `model.named_parameters()`."""
    import torch

    found = []
    for name, tensor in named:
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            found.append(name)
            if len(found) >= limit:
                break
    return found


def nonfinite_weights_in(folder: str | Path) -> str | None:
    """What is not finite in the weights files (`*.safetensors`) under `folder`, or None when all are finite.

    Raises ValueError when a weights file cannot be read as safetensors."""
    from safetensors import SafetensorError, safe_open

    for path in sorted(Path(folder).rglob("*.safetensors")):
        try:
            with safe_open(str(path), framework="pt") as weights:
                bad = nonfinite_tensors((name, weights.get_tensor(name)) for name in weights.keys())
        except (SafetensorError, OSError) as err:
            raise ValueError(f"{path.relative_to(folder)} is not a readable weights file ({err})") from None
        if bad:
            return f"{path.relative_to(folder)} holds NaN or infinite weights ({', '.join(bad)})"
    return None


def divergence_message(step: int, what: str, lr: float, last_checkpoint: str | None) -> str:
    """The message of a run stopped at `step` because `what` (e.g. "the loss is nan") was not finite."""
    kept = (f"the last checkpoint with finite weights, {last_checkpoint}, is kept (--resume latest goes on from it)"
            if last_checkpoint else "no checkpoint was written before it")
    return (f"training diverged at step {step}: {what}, so the run stopped without taking that step or saving "
            f"anything from it; {kept}. Lower the learning rate (--lr {lr:g}) or check the data: a NaN in an "
            "image, a float TIFF or a latent-cache shard makes the loss NaN too")
