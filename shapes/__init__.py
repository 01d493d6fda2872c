"""The demo domain, in one place: coloured circles (the paper's Fill50K tutorial, drawn procedurally), the tiny
Stable-Diffusion-shaped model trained from scratch on it, and how that model is made and measured.

- `shapes.data`: the circles (images, outline conditions, prompts) from a seed, and the IoU/colour scores;
- `shapes.pretrain`: the base model's from-scratch pre-training (VAE, then U-Net + text encoder);
- `shapes.eval`: how well the shipped ControlNet controls, on held-out circles;
- `shapes/model/`: the shipped base and ControlNet (about 9 MB), which the app falls back to offline.

`python -m shapes dataset|pretrain|eval ...` runs each. Importing this package loads nothing. Generation (`cnet`) never
imports it by name: it plugs in as the offline demo through `demo_model()` (cnet/demo.py), and its circle score
plugs into training's validation by reference (train/validate.py).
"""

from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_BASE = HERE / "model" / "base"
DEMO_CONTROLNET = HERE / "model" / "controlnet"
PALETTE_FILE = HERE / "palette.json"
DEMO_SIZE = 64



def demo_model() -> dict:
    """The studio's offline demo, plugged in by name (cnet/demo.py, CNET_DEMO_PLUGIN): the shipped models."""
    # Live mode: DDIM 4 steps (no few-step LoRA was distilled for it), which kept 93% of the 20-step circle IoU
    # (0.844 vs 0.904; `python -m bench.fidelity`); 2 steps kept 57%.
    # The share of the 20-step circle IoU each sampler kept at fewer steps (same command), shown beside the steps.
    return {"base": DEMO_BASE, "controlnet": DEMO_CONTROLNET, "size": DEMO_SIZE,
            "live": {"steps": 4, "fidelity_kept": 0.93},
            "fidelity_kept": {"ddim": {1: 0.14, 2: 0.57, 4: 0.93, 20: 1.0}, "lcm": {4: 0.89}}}


__all__ = ["DEMO_BASE", "DEMO_CONTROLNET", "DEMO_SIZE", "PALETTE_FILE", "demo_model"]
