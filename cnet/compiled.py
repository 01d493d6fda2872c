"""`torch.compile` for the denoising loop, the way diffusers documents it for speed.

- `mode="max-autotune"` with `fullgraph=True` and `dynamic=False`: one graph per shape. On CUDA, max-autotune also
  records CUDA graphs (one replay per U-Net call instead of hundreds of kernel launches).
- What is compiled is each model's *own* `forward` (the U-Net, each ControlNet, the VAE decoder). The engine's Python
  wrappers (skipping an inactive ControlNet, the A1111 control modes) run outside the compiled region. So dynamo never
  guards on their state, and a step that skips the ControlNet does not recompile anything.
- Inductor settings from diffusers' guide: 1x1 convolutions as matmuls, coordinate-descent tuning, no epilogue fusion.
- `fuse_qkv_projections`: one matmul for q, k and v. It is taken off while LoRAs are loaded: peft wraps `to_q`, `to_k`
  and `to_v`, which a fused layer would bypass (`Engine.use_loras`).
- **Shape buckets** (`CNET_COMPILE_SIZES=512x512,768x512`, `CNET_COMPILE_BATCHES=1,2`): the shapes that are compiled,
  and warmed up at start-up on request (`Engine.warm_up`, `python -m cnet warm-up`). A shape outside the buckets runs
  uncompiled, so an odd size never pauses the server for a compile. After `warm_up`, anything else that would need a
  new graph (a LoRA, a prompt over 77 tokens) also runs uncompiled (`torch.compiler.set_stance`). Without buckets
  every new shape is compiled when it is first seen, up to dynamo's recompile limit.
- **Caches on disk**: inductor's FX-graph and autotune caches live in `CNET_COMPILE_CACHE` (default
  `~/.cache/cnet/inductor`, or `TORCHINDUCTOR_CACHE_DIR` when set), so a restart compiles from the cache instead of
  from scratch (`bench/compile.py` measures both).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.env import env_text

log = logging.getLogger(__name__)

DEFAULT_MODE = "max-autotune"
# diffusers' guide, "Accelerate inference of text-to-image diffusion models".
INDUCTOR_SETTINGS = {
    "conv_1x1_as_mm": True,
    "coordinate_descent_tuning": True,
    "coordinate_descent_check_all_directions": True,
    "epilogue_fusion": False,
    "fx_graph_cache": True,
    "autotune_local_cache": True,
}
_SIZE = re.compile(r"^\s*(\d+)\s*[x*]\s*(\d+)\s*$")


@dataclass(frozen=True)
class ShapeBuckets:
    """The output sizes (width, height in pixels) and batch sizes (images per prompt) to compile for."""

    sizes: tuple[tuple[int, int], ...]
    batches: tuple[int, ...] = (1,)

    @classmethod
    def parse(cls, sizes: str, batches: str = "1") -> ShapeBuckets:
        """From "512x512,768x512" and "1,2,4"; errors name the setting and the value."""
        parsed = []
        for part in filter(str.strip, sizes.split(",")):
            match = _SIZE.match(part)
            if not match or int(match[1]) % 8 or int(match[2]) % 8 or not int(match[1]) or not int(match[2]):
                raise ValueError(f"compile size {part.strip()!r} is not WIDTHxHEIGHT with sides that are positive "
                                 "multiples of 8 (e.g. 512x768)")
            parsed.append((int(match[1]), int(match[2])))
        try:
            counts = tuple(int(b) for b in filter(str.strip, batches.split(",")))
        except ValueError:
            raise ValueError(f"compile batches {batches!r} is not a list of whole numbers (e.g. 1,2,4)") from None
        if not parsed or not counts or min(counts) < 1:
            raise ValueError(f"compile buckets need at least one size and batch sizes >= 1 (got {sizes!r}, "
                             f"{batches!r})")
        return cls(tuple(dict.fromkeys(parsed)), tuple(sorted(set(counts))))

    @classmethod
    def from_env(cls) -> ShapeBuckets | None:
        """CNET_COMPILE_SIZES / CNET_COMPILE_BATCHES, or None (compile whatever shape comes)."""
        sizes = env_text("CNET_COMPILE_SIZES", "")
        if not sizes:
            return None
        batches = env_text("CNET_COMPILE_BATCHES", "1")
        try:
            return cls.parse(sizes, batches)
        except ValueError as err:
            raise ValueError(f"CNET_COMPILE_SIZES={sizes!r} / CNET_COMPILE_BATCHES={batches!r}: {err}") from None

    def latent_keys(self) -> frozenset[tuple[int, int, int]]:
        """(batch, latent height, latent width) of every model input these buckets produce: the U-Net and
        ControlNet see the batch doubled by classifier-free guidance (or not, at guidance 1 / guess mode); the VAE
        decoder sees the images themselves."""
        return frozenset((batch * cfg, height // 8, width // 8) for width, height in self.sizes
                         for batch in self.batches for cfg in (1, 2))

    def __len__(self) -> int:
        return len(self.latent_keys())


def cache_dir() -> Path:
    """Where inductor keeps compiled graphs and autotuning results between runs."""
    inductor_cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR")  # inductor's own variable, if the operator set it
    configured = env_text("CNET_COMPILE_CACHE") or inductor_cache
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "cnet" / "inductor"


def configure(buckets: ShapeBuckets | None) -> None:
    """Inductor's settings and on-disk caches, and a recompile limit that lets every bucket (of every compiled
    model) have its own graph. Process-wide: compiling is too."""
    import torch._dynamo.config
    import torch._inductor.config

    compile_count()  # count from the first compile on
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)  # read by inductor at each compile
    for name, value in INDUCTOR_SETTINGS.items():
        setattr(torch._inductor.config, name, value)
    # x2: ControlNets share ControlNetModel.forward's code, and two of them in one run each need their own graph.
    wanted = 2 * len(buckets) + 4 if buckets else 8
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, wanted)
    torch._dynamo.config.accumulated_recompile_limit = max(torch._dynamo.config.accumulated_recompile_limit,
                                                           16 * wanted)


class CompiledForward:
    """Stands in for a model's `forward`: the compiled forward for inputs within the buckets (every input when there
    are none), the model's own forward otherwise."""

    def __init__(self, module: Any, name: str, buckets: ShapeBuckets | None, mode: str) -> None:
        import torch

        self.name = name
        self.eager = module.forward
        self.compiled = torch.compile(module.forward, mode=mode, fullgraph=True, dynamic=False)
        self.keys = buckets.latent_keys() if buckets else None
        self._told: set[tuple[int, ...]] = set()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        sample = args[0] if args else kwargs.get("sample", kwargs.get("z"))
        key = (int(sample.shape[0]), int(sample.shape[-2]), int(sample.shape[-1]))
        if self.keys is None or key in self.keys:
            return self.compiled(*args, **kwargs)
        if key not in self._told:
            self._told.add(key)
            log.info("%s: input %s is outside the compile buckets; it runs uncompiled", self.name, key)
        return self.eager(*args, **kwargs)


def compile_forward(module: Any, name: str, buckets: ShapeBuckets | None = None, mode: str | None = None) -> Any:
    """Replace `module.forward` by a `CompiledForward` (idempotent); returns the module. Call it before wrapping the
    forward in Python (control modes, the skip), so those wrappers stay outside the graph."""
    if isinstance(module.forward, CompiledForward):
        return module
    mode = mode or env_text("CNET_COMPILE_MODE") or DEFAULT_MODE
    module.forward = CompiledForward(module, name, buckets, mode)
    return module


def set_qkv_fused(modules: list[Any], fused: bool) -> None:
    """Fuse (or unfuse) the q, k, v projections of these models' attention layers where diffusers can."""
    for module in modules:
        method = getattr(module, "fuse_qkv_projections" if fused else "unfuse_qkv_projections", None)
        if method is None or bool(getattr(module, "_cnet_qkv_fused", False)) == fused:
            continue
        method()
        module._cnet_qkv_fused = fused


_compiles = [0]


def compile_count() -> int:
    """How many graphs dynamo has started compiling in this process (first compiles and recompiles alike)."""
    from torch._dynamo.callback import on_compile_start

    if not getattr(compile_count, "_installed", False):
        on_compile_start(lambda *_: _compiles.__setitem__(0, _compiles[0] + 1))
        compile_count._installed = True  # type: ignore[attr-defined]
    return _compiles[0]
