"""Where a training step's latents and text embeddings come from: one `DataSource` per kind of data.

- `EncodedEachStep`: folder rows and streams bring pixels and text; the VAE and text encoders run in the step.
- `Precomputed` (`--precompute`): every posterior and prompt embedding made once at the start, held in RAM.
- `CachedOnDisk` (`--latent-cache`): the batch itself brings each row's posterior and embedding, memory-mapped.

The step (train/loop.py `_loss`) asks its source and never looks at which one it has. Every random draw comes from
the run's generator in the same order whatever the source (the posterior sample first), so a run resumes bit for
bit. Adding a data source is one class here and one line in `data_source`.
"""

from __future__ import annotations

from typing import Any, Protocol

from .objectives import encode_text, scale_latents


class DataSource(Protocol):
    """A step's inputs from a batch: the scaled latents, and the text embeddings of the prompts used (where
    `empty[i]`, the prompt was replaced by "", as the paper does for half of them)."""

    def latents(self, batch: dict[str, Any], rng: Any) -> Any: ...

    def text(self, batch: dict[str, Any], texts: list[str], empty: list[bool]) -> tuple[Any, Any]: ...


class EncodedEachStep:
    """Pixels through the VAE (a sample of its posterior) and prompts through the text encoder(s), in the step."""

    def __init__(self, base: dict[str, Any], device: Any, weight_dtype: Any) -> None:
        self.base, self.device, self.weight_dtype = base, device, weight_dtype

    def latents(self, batch: dict[str, Any], rng: Any) -> Any:
        import torch

        vae = self.base["vae"]
        with torch.no_grad():
            dist = vae.encode(batch["pixel_values"].to(self.device, self.weight_dtype)).latent_dist
            eps = torch.randn(dist.mean.shape, generator=rng).to(self.device, dist.mean.dtype)
            return scale_latents(dist.mean + dist.std * eps, vae.config)

    def text(self, batch: dict[str, Any], texts: list[str], empty: list[bool]) -> tuple[Any, Any]:
        import torch

        with torch.no_grad():
            return encode_text(texts, self.base, self.device)


class _FromPosterior:
    """A sample of a stored posterior (mean + std * noise: the same distribution the VAE would give)."""

    def __init__(self, vae_config: Any, device: Any, weight_dtype: Any) -> None:
        self.vae_config, self.device, self.weight_dtype = vae_config, device, weight_dtype

    def _sample(self, mean: Any, std: Any, rng: Any) -> Any:
        import torch

        eps = torch.randn(mean.shape, generator=rng)
        return scale_latents(mean.float() + std.float() * eps, self.vae_config).to(self.device, self.weight_dtype)


class Precomputed(_FromPosterior):
    """`cache` (train/loop.py `_precompute`): posteriors by row index, embeddings by prompt text, in RAM."""

    def __init__(self, cache: dict[str, Any], vae_config: Any, device: Any, weight_dtype: Any) -> None:
        super().__init__(vae_config, device, weight_dtype)
        self.cache = cache

    def latents(self, batch: dict[str, Any], rng: Any) -> Any:
        index = batch["index"].cpu()
        return self._sample(self.cache["mean"][index], self.cache["std"][index], rng)

    def text(self, batch: dict[str, Any], texts: list[str], empty: list[bool]) -> tuple[Any, Any]:
        import torch

        hidden = torch.stack([self.cache["prompts"][t] for t in texts]).to(self.device, self.weight_dtype)
        pooled = (torch.stack([self.cache["pooled"][t] for t in texts]).to(self.device, self.weight_dtype)
                  if self.cache["pooled"] else None)
        return hidden, pooled


class CachedOnDisk(_FromPosterior):
    """A latent cache (train/latent_cache.py): each batch brings its rows' posteriors and embeddings; a dropped
    prompt takes the cached embedding of ""."""

    def __init__(self, empty_prompt: dict[str, Any], vae_config: Any, device: Any, weight_dtype: Any) -> None:
        super().__init__(vae_config, device, weight_dtype)
        self.empty_prompt = empty_prompt

    def latents(self, batch: dict[str, Any], rng: Any) -> Any:
        return self._sample(batch["mean"], batch["std"], rng)

    def text(self, batch: dict[str, Any], texts: list[str], empty: list[bool]) -> tuple[Any, Any]:
        import torch

        hidden = torch.stack([self.empty_prompt["hidden"][0] if e else h for e, h in zip(empty, batch["hidden"])])
        pooled = None
        if "pooled" in batch:
            pooled = torch.stack([self.empty_prompt["pooled"][0] if e else p for e, p in zip(empty, batch["pooled"])])
            pooled = pooled.to(self.device, self.weight_dtype)
        return hidden.to(self.device, self.weight_dtype), pooled


def data_source(base: dict[str, Any], device: Any, weight_dtype: Any, cache: dict[str, Any] | None = None,
                empty_prompt: dict[str, Any] | None = None) -> DataSource:
    """The run's source: a latent cache on disk (its "" embedding given), a RAM precompute (`cache`), or encoding
    in each step."""
    vae_config = base["vae"].config
    if empty_prompt is not None:
        return CachedOnDisk(empty_prompt, vae_config, device, weight_dtype)
    if cache is not None:
        return Precomputed(cache, vae_config, device, weight_dtype)
    return EncodedEachStep(base, device, weight_dtype)
