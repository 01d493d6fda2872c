"""Reference-only: a picture's look carried into the image through self-attention, with no model of its own (the
A1111 ControlNet extension's "reference_only", after the diffusers community's `stable_diffusion_reference`).

At every denoising step the U-Net first runs on the reference's latents noised to that step ("write": each
self-attention layer keeps its input), then on the image ("read": each self-attention layer also attends to what the
reference's pass kept). `weight` picks how many layers read, the widest first (0: none, so the run is exactly the
plain one; 1: all), as the extension's weight does; `fidelity` (its "style fidelity") keeps the unconditional half of
classifier-free guidance partly plain, so the prompt still counts. Built from diffusers' own pieces: an attention
processor on the self-attention layers and a model hook on the U-Net, removed when the run ends.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

HOOK_NAME = "cnet_reference_only"


@dataclass
class ReferenceState:
    """What the processors and the hook share during one run."""

    weight: float
    fidelity: float
    mode: str = "off"  # "write" (the reference's pass), "read" (the image's), "off"
    uncond_rows: int = 0  # the unconditional half's rows of the batch (0: no classifier-free guidance)


class ReferenceAttnProcessor:
    """A self-attention layer that keeps its input in the reference's pass and attends to it in the image's."""

    def __init__(self, state: ReferenceState, order: float) -> None:
        from diffusers.models.attention_processor import AttnProcessor2_0

        self.state, self.order, self.bank = state, order, []
        self.plain = AttnProcessor2_0()

    def __call__(self, attn: Any, hidden_states: Any, encoder_hidden_states: Any = None, attention_mask: Any = None,
                 temb: Any = None, **kwargs: Any) -> Any:
        import torch

        state = self.state
        if state.mode == "write":
            self.bank.append(hidden_states.detach().clone())
        if state.mode != "read" or not self.bank or state.weight <= self.order:
            if state.mode == "read":
                self.bank.clear()
            return self.plain(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        context = torch.cat([hidden_states, *self.bank], dim=1)
        self.bank.clear()
        out = self.plain(attn, hidden_states, context, attention_mask, temb)
        rows = state.uncond_rows
        if rows and state.fidelity > 0:  # the unconditional half partly without the reference
            own = self.plain(attn, hidden_states[:rows], None, None, temb)
            kept = out.clone()
            kept[:rows] = own
            out = state.fidelity * kept + (1.0 - state.fidelity) * out
        return out


@functools.cache
def _hook_class() -> type:
    from diffusers.hooks import ModelHook

    class ReferenceHook(ModelHook):
        """Runs the U-Net on the noised reference ("write") before each of its calls on the image ("read")."""

        def __init__(self, state: ReferenceState, latents: Any, scheduler: Any, seed: int, cfg: bool) -> None:
            super().__init__()
            import torch

            self.state, self.latents, self.scheduler, self.cfg = state, latents, scheduler, cfg
            # The reference's noise comes from its own generator: the run's (the sampler's) is left as it was.
            self.generator = torch.Generator("cpu").manual_seed(seed)

        def new_forward(self, module: Any, *args: Any, **kwargs: Any) -> Any:
            import torch

            sample, timestep = args[0], args[1] if len(args) > 1 else kwargs["timestep"]
            self.state.uncond_rows = sample.shape[0] // 2 if self.cfg else 0
            reference = self.latents.expand(sample.shape[0], -1, -1, -1).to(sample.dtype)
            noise = torch.randn(reference.shape, generator=self.generator).to(sample.device, sample.dtype)
            t = timestep.reshape(1) if torch.is_tensor(timestep) else torch.tensor([timestep])
            noised = self.scheduler.scale_model_input(self.scheduler.add_noise(reference, noise, t), timestep)
            own = {k: v for k, v in kwargs.items() if k not in ("down_block_additional_residuals",
                                                                  "mid_block_additional_residual", "timestep")}
            self.state.mode = "write"  # the reference's pass, without the ControlNets' residuals
            self.fn_ref.original_forward(noised, timestep, *args[2:], **own)
            self.state.mode = "read"
            try:
                return self.fn_ref.original_forward(*args, **kwargs)
            finally:
                self.state.mode = "off"

    return ReferenceHook


@contextlib.contextmanager
def reference_only(pipe: Any, latents: Any, weight: float, fidelity: float, seed: int, cfg: bool) -> Iterator[None]:
    """Within the block, `pipe`'s U-Net reads the reference whose (scaled) VAE latents are `latents`; its own
    attention processors come back after. `cfg`: the batch is classifier-free guidance's [uncond, cond]."""
    from diffusers.hooks import HookRegistry

    unet = pipe.unet
    saved = dict(unet.attn_processors)
    state = ReferenceState(weight, fidelity)
    widths = {name: unet.get_submodule(name.removesuffix(".processor")).to_q.in_features for name in saved
              if name.endswith("attn1.processor")}
    widest = sorted(widths, key=lambda name: -widths[name])  # stable: the U-Net's own order among equal widths
    processors = dict(saved)
    for i, name in enumerate(widest):
        processors[name] = ReferenceAttnProcessor(state, i / len(widest))
    unet.set_attn_processor(processors)
    registry = HookRegistry.check_if_exists_or_initialize(unet)
    registry.register_hook(_hook_class()(state, latents, pipe.scheduler, seed, cfg), HOOK_NAME)
    try:
        yield
    finally:
        registry.remove_hook(HOOK_NAME)
        unet.set_attn_processor(saved)
