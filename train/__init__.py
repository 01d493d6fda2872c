"""Fine-tune ControlNets the paper's way: a trainable copy of the U-Net encoder, a locked base, zero convolutions,
50% empty prompts; small-scale and large-scale modes; accelerate for one GPU or many. Nothing loads at import (not
even the config, so `python -m train` listens for a Stop before its first heavy import)."""

__all__ = ["TrainConfig", "train"]


def __getattr__(name: str):
    if name == "train":
        from .loop import train

        return train
    if name == "TrainConfig":
        from .config import TrainConfig

        return TrainConfig
    raise AttributeError(name)
