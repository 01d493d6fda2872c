"""The demo domain, in one place: coloured circles (the paper's Fill50K tutorial, drawn procedurally), the tiny
Stable-Diffusion-shaped model trained from scratch on it, and how that model is made and measured.

- `shapes.data`: the circles (images, outline conditions, prompts) from a seed, and the IoU/colour scores;
- `shapes.pretrain`: the base model's from-scratch pre-training (VAE, then U-Net + text encoder);
- `shapes.eval`: how well the shipped ControlNet controls, on held-out circles;
- `shapes/model/`: the shipped base and ControlNet (about 9 MB), which the app falls back to offline.

`python -m shapes dataset|pretrain|eval ...` runs each. Importing this package loads nothing: generation (`cnet`) reads
only the paths below, and never imports training code.
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_BASE = HERE / "model" / "base"
DEMO_CONTROLNET = HERE / "model" / "controlnet"
PALETTE_FILE = HERE / "palette.json"
DEMO_SIZE = 64

__all__ = ["DEMO_BASE", "DEMO_CONTROLNET", "DEMO_SIZE", "PALETTE_FILE"]
