"""The studio's settings from environment variables: every `CNET_*` variable is declared once here (its kind and what
it does), and read only through `env_text`, `env_flag` and `env_int`, which refuse a name that is not declared.

So the list below is the whole truth about what an operator can set: the README's settings table is checked against
it (tests/test_settings.py), and a module that invents a variable fails at its first read. A variable is read when
the code that uses it runs (an engine when it is made, the app when it starts), so the same process can be pointed
elsewhere between runs, as the tests do; nothing is read when a module is imported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name (a trailing `<...>` stands for a family: CNET_CONTROLNET_<KIND>), its kind
    (text, flag, number) and what it does."""

    name: str
    kind: str  # "text", "flag" or "int"
    help: str

    def matches(self, name: str) -> bool:
        if "<" in self.name:
            return name.startswith(self.name[: self.name.index("<")])
        return name == self.name


SETTINGS: tuple[Setting, ...] = (
    # models
    Setting("CNET_BASE_MODEL", "text", "the base model (Hub id, folder or single file); default SD1.5"),
    Setting("CNET_CONTROLNET_<KIND>", "text", "the ControlNet of a condition kind (Hub id, folder or file)"),
    Setting("CNET_CAPTION_MODEL", "text", "the BLIP model of the automatic prompt mode"),
    Setting("CNET_ANNOTATORS", "text", "where the annotators' weights come from (Hub repo or folder)"),
    Setting("CNET_ANNOTATOR_<NAME>", "text", "the weights of one annotator (Hub repo or folder)"),
    Setting("CNET_SINGLE_FILE_CONFIG", "text", "the diffusers pipeline folder describing a single-file base"),
    Setting("CNET_CONTROLNET_CONFIG", "text", "the ControlNet folder describing single-file ControlNets"),
    Setting("CNET_FEW_STEP_LORA", "text", "few-step mode's LoRA (default: the family's LCM-LoRA)"),
    Setting("CNET_IP_ADAPTER", "text", "the IP-Adapter of reference pictures (default: the family's, h94/IP-Adapter)"),
    Setting("CNET_TINY_VAE", "text", "fast decode's tiny autoencoder (default: the family's TAESD)"),
    Setting("CNET_HALF_VAE", "text", "the VAE used in fp16 where the base's overflows (SDXL); none: the base's"),
    Setting("CNET_DEMO_PLUGIN", "text", "the package offering the offline demo model (default shapes)"),
    # the machine
    Setting("CNET_DEVICE", "text", "cuda, cuda:1, mps or cpu (default: automatic)"),
    Setting("CNET_DTYPE", "text", "float16, bfloat16 or float32 (default: automatic)"),
    Setting("CNET_OFFLOAD", "text", "model: low-VRAM mode, weights wait in CPU memory"),
    Setting("CNET_MEMORY_PLAN", "text", "auto: quantise and offload parts so the base fits the card (FLUX.1, SDXL)"),
    Setting("CNET_MEMORY_CARD_GB", "text", "the card size the memory plan plans for (default: the free memory)"),
    Setting("CNET_CHANNELS_LAST", "flag", "channels-last memory format (default on CUDA, and on a CPU in bfloat16)"),
    Setting("CNET_VAE_TILING", "flag", "decode every image tile by tile (large images always are)"),
    Setting("CNET_COMPILE", "flag", "torch.compile the denoiser"),
    Setting("CNET_COMPILE_SIZES", "text", "the sizes compiled (and warmed at start), e.g. 512x512,768x512"),
    Setting("CNET_COMPILE_BATCHES", "text", "the batch sizes compiled, e.g. 1,2"),
    Setting("CNET_COMPILE_CACHE", "text", "where compiled graphs are kept"),
    Setting("CNET_COMPILE_MODE", "text", "torch.compile's mode"),
    Setting("CNET_ANNOTATOR_CACHE", "int", "how many heavy annotators stay in memory (1)"),
    Setting("CNET_MAX_IMAGE_PIXELS", "int", "the largest image decoded anywhere (40 MP)"),
    # the app
    Setting("CNET_HOST", "text", "interface to listen on (127.0.0.1)"),
    Setting("CNET_PORT", "int", "port (7860)"),
    Setting("CNET_SHARE", "flag", "also open a temporary gradio.live link"),
    Setting("CNET_PUBLIC", "flag", "public deployment rules"),
    Setting("CNET_ALLOW_LOCAL_PATHS", "flag", "public deployments: let visitors name local model folders"),
    Setting("CNET_MAX_UNITS", "int", "control units one run may stack (4; public deployments 3)"),
    Setting("CNET_MAX_QUEUE", "int", "waiting requests beyond this are refused (16)"),
    Setting("CNET_LIVE_DEBOUNCE_MS", "int", "live mode: strokes closer than this make one frame (300)"),
    Setting("CNET_OUTPUT_DIR", "text", "where generated PNGs are saved (outputs/)"),
    Setting("CNET_OUTPUT_MAX_MB", "int", "outputs are pruned to this size"),
    Setting("CNET_OUTPUT_MAX_AGE_HOURS", "int", "outputs older than this are pruned"),
    Setting("CNET_EDITOR_MAX_LAYERS", "int", "layers one editor payload may hold"),
    Setting("CNET_EDITOR_MAX_MP", "int", "megapixels one editor payload may hold"),
    Setting("CNET_WORKSPACE", "text", "where the Train tab's runs live (workspace/)"),
    Setting("CNET_ALLOW_TRAINING", "flag", "training on a public deployment"),
)


def declared(name: str) -> Setting:
    """The declaration of `name`; KeyError naming it when the studio has no such setting (a typo in the code)."""
    for setting in SETTINGS:
        if setting.matches(name):
            return setting
    raise KeyError(f"{name} is not a setting of the studio (common/env.py SETTINGS)")


def env_text(name: str, default: str | None = None) -> str | None:
    """The text of `name` (a declared setting), stripped; `default` when unset or empty."""
    declared(name)
    value = (os.environ.get(name) or "").strip()
    return value or default


def choice_or_env(value: str | None, field: str, name: str, choices: tuple[str, ...], default: str) -> str:
    """A mode given as `value` (the option `field`), else the setting `name`, else `default`; lower-cased and checked
    against `choices` (ValueError naming where the bad value came from)."""
    mode = (value if value is not None else env_text(name, default)).strip().lower()
    if mode not in choices:
        raise ValueError(f"{field if value is not None else name}={mode!r} is not one of {list(choices)}")
    return mode


def env_flag(name: str, default: bool = False) -> bool:
    """True when `name` is 1/true/yes/on (any case), False when it is set to anything else, `default` when unset."""
    declared(name)
    value = os.environ.get(name)
    return default if value is None else value.strip().lower() in TRUE


def env_int(name: str, default: int, low: int, high: int) -> int:
    """A whole number from `name`, clamped to [low, high]; `default` when unset or not a number."""
    declared(name)
    try:
        value = int(os.environ.get(name, default))
    except ValueError:
        value = default
    return max(low, min(high, value))
