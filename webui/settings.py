"""App settings, read once from flags and the environment, clamped to safe bounds."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from cnet.request import Limits
from common.env import env_flag, env_int, env_text

# A public deployment (a Space, or --public) gets tighter bounds: one visitor must not hold the GPU for minutes.
PUBLIC_LIMITS = Limits(max_side=1024, max_steps=50, max_images=4, max_units=3, max_prompt_chars=2000,
                       max_image_prompts=2, max_mask_side=2048)


@dataclass(frozen=True)
class AppSettings:
    """Everything the app needs to know about its deployment."""

    host: str = "127.0.0.1"  # localhost only unless asked (--host 0.0.0.0 or --public)
    port: int = 7860
    share: bool = False
    public: bool = False  # anyone may call every endpoint: tighter limits, Hub ids only, no local paths
    allow_local_paths: bool = True  # may requests name local model folders/files?
    max_queue: int = 16  # waiting requests beyond this get "queue full"
    output_dir: Path = Path("outputs")
    # outputs/ is pruned, oldest first, to this size (and, if set, this age) after each save; 0 turns a bound off.
    output_max_mb: float = 20_000
    output_max_age_hours: float = 0
    max_file_size: str = "20mb"
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_env(cls, **overrides: object) -> AppSettings:
        """Read CNET_* variables (and Spaces' SPACE_ID); keyword overrides (from flags) win."""
        on_space = bool(os.environ.get("SPACE_ID"))
        public = bool(overrides.pop("public", None)) or env_flag("CNET_PUBLIC") or on_space
        gradio_port = int(os.environ.get("GRADIO_SERVER_PORT", 7860))  # Gradio's own variable, as Spaces set it
        limits = PUBLIC_LIMITS if public else Limits()
        settings = cls(
            host="0.0.0.0" if public or on_space else env_text("CNET_HOST", "127.0.0.1"),
            port=env_int("CNET_PORT", gradio_port, 1, 65535),
            share=env_flag("CNET_SHARE"),
            public=public,
            allow_local_paths=not public or env_flag("CNET_ALLOW_LOCAL_PATHS"),
            max_queue=env_int("CNET_MAX_QUEUE", 16, 1, 256),
            output_dir=Path(env_text("CNET_OUTPUT_DIR", "outputs")),
            # A public Space keeps a day of results in at most 1 GB; a laptop keeps 20 GB, with no age limit.
            output_max_mb=env_int("CNET_OUTPUT_MAX_MB", 1000 if public else 20_000, 0, 10**7),
            output_max_age_hours=env_int("CNET_OUTPUT_MAX_AGE_HOURS", 24 if public else 0, 0, 10**6),
            limits=replace(limits, max_units=env_int("CNET_MAX_UNITS", limits.max_units, 1, 16)),
        )
        clean = {k: v for k, v in overrides.items() if v is not None}
        if "output_dir" in clean:
            clean["output_dir"] = Path(clean["output_dir"])
        return replace(settings, **clean)


def editor_bounds(public: bool) -> dict[str, int]:
    """What one image-editor payload may hold on a deployment (webui/editor.py): layers, and megapixels over the
    background, the composite and the layers together (public: a 12 MP photo with one painted layer).
    CNET_EDITOR_MAX_LAYERS and CNET_EDITOR_MAX_MP override them."""
    layers, megapixels = (4, 36) if public else (16, 160)
    return {"editor_max_layers": env_int("CNET_EDITOR_MAX_LAYERS", layers, 1, 64),
            "editor_max_mp": env_int("CNET_EDITOR_MAX_MP", megapixels, 1, 1000)}
