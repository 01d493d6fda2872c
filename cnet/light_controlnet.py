"""Light ControlNets: a ControlNet trained as low-rank adapters (`python -m train --controlnet-lora-rank N`,
train/light.py), kept as its trained weights alone and rebuilt from its base when loaded.

The light file (`controlnet_lora.safetensors`) holds the LoRA of the copy's attention and the layers trained whole
(the zero convolutions, the condition's embedding); its metadata names the ControlNet's class and config, the rank,
and what the copy was made from (the base's denoiser, or the ControlNet a transfer run started from). Loading takes
the frozen weights from that source by name (the copy's layers carry the denoiser's names: `from_unet` and
`from_transformer` copy them as they are), adds the same adapters, puts the trained weights in and merges them: the
ControlNet the run saved, from a file of a few percent of its size. The studio loads such a file (or a folder holding
only it) wherever a ControlNet is asked for.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LIGHT_FILE = "controlnet_lora.safetensors"
FORMAT = "cnet-controlnet-lora/1"  # the light file's `format` metadata: what `light_file` recognises
# The copy's layers that start at zero or read the map: trained whole (U-Net ControlNets, FLUX.1's and SD3's).
WHOLE_LAYERS = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding", "controlnet_blocks",
                "controlnet_single_blocks", "controlnet_x_embedder", "pos_embed_input")
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")  # attention projections, in every family's ControlNet
WEIGHTS_NAMES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def add_adapters(controlnet: Any, rank: int) -> None:
    """Freeze `controlnet` and give its attention projections a rank-`rank` LoRA (peft; B at zero, so the output
    is unchanged), the layers of WHOLE_LAYERS trainable whole."""
    from peft import LoraConfig

    controlnet.requires_grad_(False)
    controlnet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=list(LORA_TARGETS)))
    for name, param in controlnet.named_parameters():
        if name.split(".")[0] in WHOLE_LAYERS:
            param.requires_grad_(True)


def merged_state(controlnet: Any) -> dict[str, Any]:
    """The weights of a plain ControlNet of the same class with the LoRA merged in (each adapted layer's weight plus
    its low-rank update), in fp32 on the CPU: no copy of the model is made on its device."""
    import torch
    from peft.tuners.lora import LoraLayer

    # A copy always (`copy=True`): on the CPU in fp32, `.to` would hand back the model's own tensor, and the update
    # below would change the weights being trained.
    state = {key: value.detach().to("cpu", torch.float32, copy=True) for key, value in controlnet.state_dict().items()
             if "lora_" not in key}
    for name, module in controlnet.named_modules():
        if isinstance(module, LoraLayer):
            for adapter in module.active_adapters:
                state[f"{name}.base_layer.weight"] += module.get_delta_weight(adapter).detach().to("cpu",
                                                                                                   torch.float32)
    return {key.replace(".base_layer", ""): value.contiguous() for key, value in state.items()}


def light_metadata(controlnet: Any, rank: int, made_from: str | None) -> dict[str, str]:
    """What a light file must say to be rebuilt: its format, the ControlNet's class and config, the rank, and the
    ControlNet the copy started from (None: the base's denoiser)."""
    config = {k: v for k, v in dict(controlnet.config).items() if not k.startswith("_")}
    return {"format": FORMAT, "class": type(controlnet).__name__, "config": json.dumps(config), "rank": str(rank),
            "made_from": made_from or ""}


def light_file(location: str | Path) -> Path | None:
    """The light file at `location` (the file itself, or a folder that holds one and no full weights); None when
    `location` is something else (a full ControlNet, a Hub id)."""
    path = Path(location).expanduser()
    if path.is_dir():
        if any((path / name).is_file() for name in WEIGHTS_NAMES) or not (path / LIGHT_FILE).is_file():
            return None
        path = path / LIGHT_FILE
    if not (path.is_file() and path.suffix == ".safetensors"):
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            metadata = f.metadata() or {}
    except Exception:  # not a safetensors file after all: left to the ordinary loaders, which say so
        return None
    return path if metadata.get("format") == FORMAT else None


def read_light(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """The trained weights and the metadata of a light file."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}, f.metadata()


def light_class(path: Path, metadata: dict[str, str]) -> Any:
    """The diffusers ControlNet class a light file names; ValueError for a file that names none (damaged, or
    written by something else)."""
    import diffusers

    found = getattr(diffusers, metadata.get("class", ""), None)
    if not (isinstance(found, type) and issubclass(found, diffusers.ModelMixin) and "ControlNet" in found.__name__
            and "config" in metadata and str(metadata.get("rank", "")).isdigit()):
        raise ValueError(f"controlnet={str(path)!r}: its metadata does not describe a light ControlNet (class "
                         f"{metadata.get('class')!r}); the file is damaged or was not written by python -m train")
    return found


def build_light_controlnet(path: Path, frozen: dict[str, Any]) -> Any:
    """The ControlNet a light file stands for, in fp32 on the CPU: built from its config, the frozen weights taken
    from `frozen` (the state dict of what the copy was made from) by name, the trained weights put in its adapters
    and merged. ValueError naming the file when `frozen` lacks a weight or holds one of another shape (another
    base)."""
    import torch

    trained, metadata = read_light(path)
    cls = light_class(path, metadata)
    net = cls.from_config(json.loads(metadata["config"]))
    own = net.state_dict()
    wrong = [k for k in own if k.split(".")[0] not in WHOLE_LAYERS
             and (k not in frozen or tuple(frozen[k].shape) != tuple(own[k].shape))]
    if wrong:
        raise ValueError(f"controlnet={str(path)!r} is a light ControlNet made from another base (or ControlNet): "
                         f"{len(wrong)} of its frozen weights are missing or shaped otherwise here, e.g. {wrong[0]!r}")
    # One tensor at a time, onto the CPU in fp32 (the base may sit on a GPU in half precision).
    net.load_state_dict({k: (own[k] if k.split(".")[0] in WHOLE_LAYERS else frozen[k].to("cpu", torch.float32))
                         for k in own})
    add_adapters(net, int(metadata["rank"]))
    params = dict(net.named_parameters())
    expected = {name for name, param in params.items() if param.requires_grad}
    if set(trained) != expected:
        raise ValueError(f"controlnet={str(path)!r}: its weights are not those of a rank-{metadata['rank']} light "
                         "ControlNet of this class (a damaged or foreign file)")
    with torch.no_grad():
        for name, value in trained.items():
            params[name].copy_(value)
    plain = cls.from_config(json.loads(metadata["config"]))
    plain.load_state_dict(merged_state(net))
    return plain
