"""Automatic prompts: a BLIP caption of the photo (the paper's "automatic prompt" setting).

transformers 5 removed the image-to-text pipeline, so we call BlipProcessor + BlipForConditionalGeneration directly.
The model is loaded on first use, never at import.
"""

from __future__ import annotations

import threading
from typing import Any

from PIL import Image

from common.env import env_text
from common.models import load_with_hub_fallback, parse_model_source

DEFAULT_CAPTION_MODEL = "Salesforce/blip-image-captioning-base"
CAPTION_MODEL_ENV = "CNET_CAPTION_MODEL"


class Captioner:
    """Lazily loaded BLIP captioner; `model` is a Hub id or folder (default: CNET_CAPTION_MODEL, else BLIP base)."""

    def __init__(self, model: str | None = None, device: str = "cpu", dtype: Any = None,
                 max_new_tokens: int = 30) -> None:
        self.source = parse_model_source(model or env_text(CAPTION_MODEL_ENV) or DEFAULT_CAPTION_MODEL,
                                         what="caption_model")
        self.device = device
        self.dtype = dtype
        self.max_new_tokens = max_new_tokens
        self._processor: Any = None
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load processor and model now (idempotent, thread-safe)."""
        with self._lock:
            if self._model is not None:
                return
            from transformers import BlipForConditionalGeneration, BlipProcessor

            processor = load_with_hub_fallback(BlipProcessor.from_pretrained, self.source, env_var=CAPTION_MODEL_ENV)
            kwargs = {"dtype": self.dtype} if self.dtype is not None else {}
            model = load_with_hub_fallback(BlipForConditionalGeneration.from_pretrained, self.source,
                                           env_var=CAPTION_MODEL_ENV, **kwargs)
            self._processor, self._model = processor, model.to(self.device).eval()

    def __call__(self, image: Image.Image) -> str:
        """Caption one image (greedy decoding, so the same image always gets the same caption)."""
        import torch

        self.load()
        inputs = self._processor(images=image.convert("RGB"), return_tensors="pt").to(self.device)
        if self.dtype is not None:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        with torch.inference_mode():
            tokens = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self._processor.decode(tokens[0], skip_special_tokens=True).strip()
