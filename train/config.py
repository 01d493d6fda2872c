"""Training configuration: one dataclass, one line per setting with the reason for its default (nanoGPT style)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cnet.kinds import DEFAULT_BASE_MODEL
from cnet.metrics import METRICS

MODES = ("default", "small", "large")
PRECISIONS = ("no", "fp16", "bf16")
# The validation scores: every kind's fidelity metrics (cnet/metrics.py, those `python -m cnet eval` reports).
FIDELITIES = tuple(METRICS)


class ConfigError(ValueError):
    """A setting is out of bounds; the message names it and the value."""


@dataclass
class TrainConfig:
    # -- what to train ------------------------------------------------------------------------------------------------
    base_model: str = DEFAULT_BASE_MODEL  # the locked model the ControlNet steers
    # A single-file base (.safetensors/.ckpt, as other UIs download them) is described by this diffusers pipeline
    # folder or Hub id (its architecture); diffusers reads the weights from the file.
    single_file_config: str | None = None
    dataset: str = ""  # metadata.jsonl folder, Fill50K folder, saved `datasets` folder, or a Hub dataset id
    output_dir: str = "runs/controlnet"  # checkpoints, logs, validation grids; the result: output_dir/controlnet
    init_controlnet: str | None = None  # start from an existing ControlNet (transfer learning), not the U-Net copy
    # default: all 13 links; small: the middle block only (the paper's small-scale mode; not faster here: only the 12
    # skip zero-convs' gradients are spared, 0.7% of the FLOPs, and the locked decoder's backward still runs to reach
    # the middle residual); large: unlock the base later
    mode: str = "default"
    unlock_after: int = 50_000  # large mode: steps before the base U-Net trains too (the paper: after enough steps)
    unet_lr_scale: float = 0.1  # large mode: the base learns this much slower than the ControlNet, to stay close to SD
    # -- data ---------------------------------------------------------------------------------------------------------
    image_column: str = "image"  # column names of the metadata.jsonl / datasets layout
    conditioning_image_column: str = "conditioning_image"
    caption_column: str = "text"
    resolution: int = 512  # SD1.5's native size; the short side is resized to it, then centre-cropped
    skip_bad_rows: bool = False  # skip (and count) unreadable rows instead of stopping with an error naming them
    # Read `dataset` as a stream of shards (a Hub id, or a folder of parquet / arrow / WebDataset .tar shards): no
    # row list and no up-front check, so memory stays flat at millions of rows; each process reads its own shards
    # and the stream's position is checkpointed (train/stream.py)
    streaming: bool = False
    shuffle_block: int = 256  # streaming: rows mixed at a time (held undecoded in RAM); a resume re-reads one block
    bad_row_limit: float = 0.01  # skipped bad rows (streams; folders with skip_bad_rows) past this share: broken data
    # A latent cache written by `python -m train cache` (VAE posteriors, text embeddings, conditions at
    # `resolution`): steps read it memory-mapped, no VAE or text encoder runs; refused if made by other weights.
    # A folder without one is built first from `dataset` (read as a stream with `streaming`)
    latent_cache: str | None = None
    empty_prompt_prob: float = 0.5  # the paper: half the prompts are "" so the model learns semantics from the map
    # -- optimisation -------------------------------------------------------------------------------------------------
    max_steps: int = 10_000  # optimizer steps; "sudden convergence" typically shows after 3k-7k steps at batch 4
    batch_size: int = 4  # per device; the paper's Fill50K tutorial uses 4
    grad_accum: int = 1  # the paper's answer to sudden convergence at fixed compute: larger effective batches
    lr: float = 1e-5  # the paper's learning rate (AdamW)
    lr_warmup_steps: int = 0  # constant LR after warm-up, as the paper
    adam_weight_decay: float = 1e-2
    max_grad_norm: float = 1.0  # clip to keep early zero-conv updates from spiking
    # An exponential moving average of the ControlNet's weights (diffusers' EMAModel), used for validation and saved
    # as the result: smoother weights late in training. 0 (off, the paper's way): the last weights themselves
    ema_decay: float = 0.0
    seed: int = 0  # data order, noise, timesteps and empty-prompt draws all derive from it: runs are reproducible
    # -- memory and speed ---------------------------------------------------------------------------------------------
    mixed_precision: str = "no"  # fp16/bf16 on GPUs: half the activation memory, faster matmuls
    gradient_checkpointing: bool = False  # recompute activations in backward: much less memory, ~25% slower
    use_8bit_adam: bool = False  # bitsandbytes' AdamW: optimizer state in 8 bits (saves ~1 GB for SD1.5's ControlNet)
    # > 0: train the copy as low-rank adapters of this rank on its attention, its zero layers whole (train/light.py):
    # optimizer states for a few percent of the weights; the result is still a plain ControlNet (merged)
    controlnet_lora_rank: int = 0
    precompute: bool = False  # encode latents and prompts once: the VAE encoder and text encoder leave the step
    num_workers: int = 0  # data loader workers
    # -- sharing -----------------------------------------------------------------------------------------------------
    push_to_hub: bool = False  # upload the result (model card, samples) to the Hugging Face Hub (train/hub.py)
    hub_model_id: str | None = None  # the repository: owner/name, or a name under the token's user (default: the run's)
    hub_private: bool = False  # create the repository private
    # -- monitoring ---------------------------------------------------------------------------------------------------
    checkpoint_every: int = 500  # steps between checkpoints (atomic; older ones pruned once the new one is complete)
    keep_checkpoints: int = 3  # complete checkpoints kept on disk
    validate_every: int = 500  # steps between validation grids (0: never)
    num_validation: int = 4  # conditions drawn at each validation (the first rows of the validation dataset)
    validation_dataset: str | None = None  # held-out rows for validation, same layouts as `dataset` (default: the
    # first training rows); a fixed set never trained on makes the fidelity curve an honest measure
    validation_steps: int = 20  # DDIM steps for validation images
    validation_guidance: float = 9.0  # the paper's CFG
    log_every: int = 10  # steps between metric lines (loss, lr, empty-prompt share, speed)
    fidelity: str | None = None  # a kind (or "shapes"): its metrics on the validation images (cnet/metrics.py)
    resume: str | None = None  # "latest", a checkpoint folder, or "auto" (latest if there is one: requeued jobs)
    stop_after: int | None = None  # stop (with a checkpoint) after this many steps of this run, for tests and schedules
    extra: dict[str, Any] = field(default_factory=dict)  # free-form notes copied into the model card

    def validated(self) -> TrainConfig:
        """Check every field; raise ConfigError naming the first bad one."""
        if not self.dataset and not self.latent_cache:
            raise ConfigError("dataset='' : give a dataset folder or a Hub dataset id (or a latent_cache)")
        if self.mode not in MODES:
            raise ConfigError(f"mode={self.mode!r} is not one of {list(MODES)}")
        if self.fidelity is not None and self.fidelity not in FIDELITIES:  # a typo must not silently disable it
            raise ConfigError(f"fidelity={self.fidelity!r} is not one of {list(FIDELITIES)} (or none)")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError(f"mixed_precision={self.mixed_precision!r} is not one of {list(PRECISIONS)}")
        for name, low in (("max_steps", 1), ("batch_size", 1), ("grad_accum", 1), ("checkpoint_every", 1),
                          ("keep_checkpoints", 1), ("validate_every", 0), ("num_validation", 0),
                          ("validation_steps", 1), ("log_every", 1), ("unlock_after", 0), ("num_workers", 0),
                          ("lr_warmup_steps", 0), ("shuffle_block", 1), ("controlnet_lora_rank", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name}={value!r} must be a whole number >= {low}")
        if self.resolution % 8 or not 64 <= self.resolution <= 2048:
            raise ConfigError(f"resolution={self.resolution} must be a multiple of 8 in [64, 2048]")
        if self.streaming and self.precompute:
            raise ConfigError("precompute=True holds every latent in RAM, which a stream of any size cannot: use "
                              "latent_cache (python -m train cache) with streaming, or neither")
        if self.latent_cache and self.precompute:
            raise ConfigError("latent_cache replaces precompute (the cache holds the latents on disk): set only "
                              "latent_cache")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay={self.ema_decay} must be in [0, 1) (0: off; 0.9999 is common)")
        if not 0.0 <= self.bad_row_limit <= 1.0:
            raise ConfigError(f"bad_row_limit={self.bad_row_limit} must be in [0, 1]")
        if not 0.0 <= self.empty_prompt_prob <= 1.0:
            raise ConfigError(f"empty_prompt_prob={self.empty_prompt_prob} must be in [0, 1]")
        for name in ("lr", "unet_lr_scale", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name}={getattr(self, name)} must be positive")
        return self

    @classmethod
    def read_file(cls, path: str | Path) -> dict[str, Any]:
        """The settings in a TOML or JSON file, checked for unknown names."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text()) if path.suffix == ".toml" else json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise ConfigError(f"config file {str(path)!r} cannot be read: {err}") from None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"config file {str(path)!r}: unknown setting(s) {unknown}")
        return data

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Settings that belong to one launch, not to the run: a resume must not inherit them from the saved config.
PER_LAUNCH = ("resume", "stop_after")


def saved_settings(output_dir: str | Path) -> dict[str, Any]:
    """The settings a run saved in `output_dir/config.json` (less the per-launch ones); {} when there is none."""
    path = Path(output_dir) / "config.json"
    if not path.is_file():
        return {}
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"the run's saved settings {str(path)!r} cannot be read: {err}") from None
    known = {f.name for f in fields(TrainConfig)}
    return {k: v for k, v in saved.items() if k in known and k not in PER_LAUNCH}
