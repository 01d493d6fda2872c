"""Weighted and long prompts: A1111 notation read here, embeddings made by compel.

People bring prompts from the AUTOMATIC1111 web UI and ComfyUI: `(word)` is 1.1x attention, `[word]` is 1/1.1x,
`(word:1.3)` sets it, nesting multiplies, `\\(` is a literal bracket; and they are longer than CLIP's 77 tokens.
`parse_weights` reads that notation into (text, weight) fragments (the rules of A1111's `parse_prompt_attention`);
compel (a maintained library) turns the fragments into embeddings: weights applied the way it applies its own,
prompts over 75 tokens encoded in 77-token chunks and joined, both text encoders for SDXL.

A prompt with no weight and within one chunk is not touched: the pipeline encodes its text itself, exactly as a
direct diffusers call does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

A1111_TOKENS = re.compile(r"\\\(|\\\)|\\\[|\\]|\\\\|\\|\(|\[|:\s*([+-]?[.\d]+)\s*\)|\)|]|[^\\()\[\]:]+|:")
UP, DOWN = 1.1, 1 / 1.1


def parse_weights(text: str) -> list[tuple[str, float]]:
    """A1111 attention notation to (text, weight) fragments, neighbours of equal weight merged. Unbalanced
    brackets apply to the rest of the text, as in A1111."""
    fragments: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for fragment in fragments[start:]:
            fragment[1] *= factor

    for match in A1111_TOKENS.finditer(text):
        token, weight = match.group(0), match.group(1)
        if token.startswith("\\") and len(token) == 2:
            fragments.append([token[1], 1.0])
        elif token == "(":
            round_open.append(len(fragments))
        elif token == "[":
            square_open.append(len(fragments))
        elif weight is not None and round_open:
            multiply(round_open.pop(), float(weight))
        elif token == ")" and round_open:
            multiply(round_open.pop(), UP)
        elif token == "]" and square_open:
            multiply(square_open.pop(), DOWN)
        else:
            fragments.append([token, 1.0])
    for start in round_open:
        multiply(start, UP)
    for start in square_open:
        multiply(start, DOWN)
    merged: list[list[Any]] = []
    for fragment_text, weight in fragments:
        if merged and merged[-1][1] == weight:
            merged[-1][0] += fragment_text
        else:
            merged.append([fragment_text, weight])
    return [(t, w) for t, w in merged] or [("", 1.0)]


@dataclass
class PromptEmbeddings:
    """What the pipeline takes instead of the texts (`as_kwargs()`), and what was done, for the metadata."""

    prompt_embeds: Any
    negative_prompt_embeds: Any
    pooled_prompt_embeds: Any = None
    negative_pooled_prompt_embeds: Any = None
    chunks: int = 1  # 77-token windows the longer of the two texts took

    def as_kwargs(self) -> dict[str, Any]:
        names = ("prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


def needs_compel(tokenizer: Any, *texts: str) -> bool:
    """True when a text carries weights or is longer than one chunk (model_max_length - 2 tokens)."""
    for text in texts:
        fragments = parse_weights(text)
        if any(weight != 1.0 for _, weight in fragments):
            return True
        plain = "".join(t for t, _ in fragments)
        if len(tokenizer(plain, add_special_tokens=False).input_ids) > tokenizer.model_max_length - 2:
            return True
    return False


def _conjunction(text: str) -> Any:
    from compel.prompt_parser import Conjunction, FlattenedPrompt, Fragment

    return Conjunction([FlattenedPrompt([Fragment(t, w) for t, w in parse_weights(text)])])


def _embed(compel: Any, prompt: str, negative: str) -> tuple[Any, Any]:
    positive, _ = compel.build_conditioning_tensor_for_conjunction(_conjunction(prompt))
    negative_embeds, _ = compel.build_conditioning_tensor_for_conjunction(_conjunction(negative))
    return tuple(compel.pad_conditioning_tensors_to_same_length([positive, negative_embeds]))


def encode_prompts(pipe: Any, prompt: str, negative_prompt: str, device: Any,
                   zero_empty_negative: bool = False) -> PromptEmbeddings:
    """Embeddings of a weighted or long prompt and negative prompt for `pipe` (one text encoder, or SDXL's two:
    penultimate hidden states side by side, the second's pooled output). `zero_empty_negative`: an empty negative
    prompt is zeros, as SDXL pipelines with `force_zeros_for_empty_prompt` make it."""
    import torch
    from compel import Compel, ReturnedEmbeddingsType

    with torch.no_grad():
        if getattr(pipe, "text_encoder_2", None) is None:
            compel = Compel(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, truncate_long_prompts=False,
                            device=device)
            positive, negative = _embed(compel, prompt, negative_prompt)
            return PromptEmbeddings(positive, negative, chunks=_chunks(positive, pipe.tokenizer))
        penultimate = ReturnedEmbeddingsType.PENULTIMATE_HIDDEN_STATES_NON_NORMALIZED
        first = Compel(tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, truncate_long_prompts=False,
                       returned_embeddings_type=penultimate, device=device)
        second = Compel(tokenizer=pipe.tokenizer_2, text_encoder=pipe.text_encoder_2, truncate_long_prompts=False,
                        returned_embeddings_type=penultimate, requires_pooled=True, device=device)
        left, left_negative = _embed(first, prompt, negative_prompt)
        right, right_negative = _embed(second, prompt, negative_prompt)
        if left.shape[1] != right.shape[1]:
            raise ValueError("the two text encoders split this prompt into different numbers of chunks; shorten it")
        provider = second.conditioning_provider
        plain = ["".join(t for t, _ in parse_weights(text)) for text in (prompt, negative_prompt)]
        pooled = provider.get_pooled_embeddings([plain[0]], device=device)
        negative_pooled = provider.get_pooled_embeddings([plain[1]], device=device)
        embeds = torch.cat([left, right], dim=-1)
        negative = torch.cat([left_negative, right_negative], dim=-1)
        if zero_empty_negative and not negative_prompt:
            negative, negative_pooled = torch.zeros_like(negative), torch.zeros_like(negative_pooled)
        return PromptEmbeddings(embeds, negative, pooled, negative_pooled, chunks=_chunks(embeds, pipe.tokenizer))


def _chunks(embeds: Any, tokenizer: Any) -> int:
    return max(1, embeds.shape[1] // tokenizer.model_max_length)
