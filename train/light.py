"""Light ControlNet training: low-rank adapters on the copy instead of training all of it (`controlnet_lora_rank`).

As Stability's Control-LoRAs do, the copy's attention projections learn a low-rank update (peft's LoRA, B at zero so
training still starts from the copy itself), while the layers that start at zero (the paper's zero convolutions, a
DiT ControlNet's output blocks) and the condition's embedding train whole: they are small, and they are what connects
the map. Everything else of the copy stays as copied. The optimizer then holds states for a few percent of the
weights: what lets a FLUX.1 ControlNet train beside its locked 12B transformer.

What is saved: the merged ControlNet (a plain diffusers folder the studio and diffusers load as any other), and the
trained weights alone (`controlnet_lora.safetensors`, the light file; with the copy rebuilt from the base it is the
exact state, so a checkpoint resumes bit for bit from it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cnet.light_controlnet import LIGHT_FILE, add_adapters, light_metadata, merged_state


def add_lora(controlnet: Any, rank: int, frozen_dtype: Any = None) -> int:
    """Freeze the copy, give its attention projections a rank-`rank` LoRA (B at zero: the output is unchanged at
    the start), and train the zero layers and the condition embedding whole (cnet/light_controlnet.py
    `add_adapters`); the frozen weights are held in `frozen_dtype` (the run's half precision: they take no
    gradient). Return the trainable parameter count."""
    add_adapters(controlnet, rank)
    if frozen_dtype is not None:
        for param in controlnet.parameters():
            if not param.requires_grad:
                param.data = param.data.to(frozen_dtype)
    return sum(p.numel() for p in controlnet.parameters() if p.requires_grad)


def has_lora(controlnet: Any) -> bool:
    return any("lora_" in name for name, _ in controlnet.named_parameters())


def trained_state(controlnet: Any) -> dict[str, Any]:
    """The weights that train (the LoRA's and the whole layers'), by their names in the adapted copy."""
    return {name: param.detach().cpu().contiguous() for name, param in controlnet.named_parameters()
            if param.requires_grad}


def save(controlnet: Any, folder: Path, rank: int, made_from: str | None = None) -> None:
    """The merged ControlNet in diffusers layout (its config and weights, as `save_pretrained` writes them), and
    the light file beside it, which alone rebuilds it on its base (cnet/light_controlnet.py; `made_from`: the
    ControlNet the copy started from, None for the base's denoiser)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    controlnet.save_config(folder)
    save_file(merged_state(controlnet), str(folder / "diffusion_pytorch_model.safetensors"))
    if made_from and Path(made_from).expanduser().exists():  # a local folder: found from any working directory
        made_from = str(Path(made_from).expanduser().resolve())
    save_file(trained_state(controlnet), str(folder / LIGHT_FILE), metadata=light_metadata(controlnet, rank,
                                                                                             made_from))


def load_trained(controlnet: Any, folder: Path) -> None:
    """Put a checkpoint's trained weights (its light file) into the adapted copy; the rest is the copy as rebuilt
    from the base, which never changed."""
    from safetensors.torch import load_file

    from .checkpoint import CheckpointError

    path = Path(folder) / LIGHT_FILE
    if not path.is_file():
        raise CheckpointError(f"checkpoint {folder} holds no {LIGHT_FILE}: it was not made by a LoRA run; resume it "
                              "with --controlnet-lora-rank 0")
    state = load_file(str(path))
    params = dict(controlnet.named_parameters())
    trained = {name for name, param in params.items() if param.requires_grad}
    if trained != set(state) or any(state[n].shape != params[n].shape for n in trained):
        raise CheckpointError(f"checkpoint {folder}: its {LIGHT_FILE} holds other weights than this run trains: it "
                              "was made with another --controlnet-lora-rank or mode")
    for name, value in state.items():
        params[name].data.copy_(value.to(params[name].device, params[name].dtype))
