"""Which models a request may name, and which are on this machine: the model-reference policy of a deployment.

A visitor's model (base, ControlNet, LoRA, embedding) is a Hub id on a public deployment, never a path on this
machine; the server's own (CNET_* settings, the demo) are trusted. The status lists what is missing, and how to get
it, without loading or downloading anything."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cnet.kinds import BASE_MODEL_ENV, KINDS, base_model_source
from cnet.request import LoraRef, RequestError
from common.env import env_text
from common.models import ModelSource, how_to_provide, parse_hub_id, parse_model_source

from .settings import AppSettings

log = logging.getLogger("cnet.app")


@dataclass(frozen=True)
class ModelStatus:
    role: str
    reference: str
    available: bool
    hint: str = ""


class ModelPolicy:
    """The model references of one deployment (`settings`); `demo_mode()` says whether the demo stands in."""

    def __init__(self, settings: AppSettings, demo_mode: Callable[[], bool]) -> None:
        self.settings, self.demo_mode = settings, demo_mode

    def check(self, reference: str | None, what: str) -> str | ModelSource | None:
        """A model a visitor named: '' means the default. Where local paths are not allowed (public deployments)
        it must be a Hub id, and it is returned as a Hub source, so nothing looks for it on this machine's disk
        (a relative `folder/model` is a Hub id, never the working folder's). Models the server itself configured
        (CNET_* variables, the demo) are not visitors' references and are not checked here."""
        if reference is None or not str(reference).strip():
            return None
        reference = str(reference).strip()
        if not self.settings.allow_local_paths:
            try:
                return parse_hub_id(reference, what=what)
            except ValueError as err:
                raise RequestError(str(err)) from None
        parse_model_source(reference, what=what)
        return reference

    def describe_base(self, reference: str | None) -> str:
        """One line on the base model a visitor named (empty: the default): its family and trained size, read from
        its config without loading weights, or why it cannot be read."""
        from cnet.families import base_default_side, base_family
        from common.models import ModelUnavailableError

        try:
            checked = self.check(reference, "base_model")
            if checked is None and self.demo_mode():
                return "Base model: the demo model (Stable Diffusion 1.x layout, 64 px)"
            source = checked or base_model_source()  # a visitor's Hub id stays a Hub source: never read from disk
            family = base_family(source)
            side = base_default_side(source, family)
        except (ModelUnavailableError, ValueError, OSError) as err:
            return f"Base model: {err}"
        if not family.generates:
            return (f"Base model family: **{family.label}** ({side} px): recognised, but the studio cannot generate "
                    f"with {family.short_label} yet; choose a Stable Diffusion 1.x, 2.x or XL base")
        notes = f". {family.notes}" if family.notes else ""
        return f"Base model family: **{family.label}** ({side} px; ControlNets must be made for it){notes}"

    def few_step_form(self, on: bool, reference: str | None) -> list[Any]:
        """Steps, guidance and sampler the form shows when few-step mode is switched on (the base family's: SD's
        LCM-LoRA 4 steps at guidance 1; FLUX.1's Turbo LoRA 8 steps at 3.5) or off (20 steps, its default)."""
        from cnet.families import FAMILIES

        family = self._family(reference) or FAMILIES["sd15"]
        if on:
            return [family.few_steps, family.few_step_guidance, family.few_step_scheduler]
        return [20, family.default_guidance, "default"]

    def _family(self, reference: str | None) -> Any:
        """The family of the base a visitor named (the default when none), or None when it cannot be read."""
        from cnet.families import FAMILIES, base_family
        from common.models import ModelUnavailableError

        try:
            checked = self.check(reference, "base_model")
            if checked is None and self.demo_mode():
                return FAMILIES["sd15"]
            return base_family(checked or base_model_source())
        except (ModelUnavailableError, ValueError, OSError):
            return None

    def family_guidance(self, reference: str | None, guidance: float, form_default: float | None = None) -> float:
        """The guidance to show after the base model changed: the new family's default where the field holds a
        default (a family's: CFG 9 for SD, 3.5 for FLUX.1 and SD3.5; or the form's own, `form_default`: the demo's 5),
        else the user's own value. Back on the demo model, the form's default."""
        from cnet.families import FAMILIES

        defaults = {f.default_guidance for f in FAMILIES.values()} | {form_default}
        if guidance not in defaults:
            return guidance
        if self.demo_mode() and form_default is not None and self.check(reference, "base_model") is None:
            return form_default
        family = self._family(reference)
        return guidance if family is None else family.default_guidance

    def status(self) -> list[ModelStatus]:
        """Which models are on this machine now (no download, no loading), and how to get the missing ones."""
        from annotators.registry import ANNOTATORS_ENV, ANNOTATORS_REPO
        from cnet.captioner import CAPTION_MODEL_ENV, DEFAULT_CAPTION_MODEL

        rows = [_status("base model", base_model_source(), BASE_MODEL_ENV, "model_index.json")]
        rows += [_status(f"ControlNet: {k.name}", k.controlnet_source(), k.env_var) for k in KINDS.values()]
        # They fail offline just the same: the automatic prompt mode's captioner and the photo annotators' weights.
        rows.append(_status("captioner (automatic prompt)", env_text(CAPTION_MODEL_ENV) or DEFAULT_CAPTION_MODEL,
                            CAPTION_MODEL_ENV))
        rows.append(_status("annotator weights (depth, pose, edges...)", env_text(ANNOTATORS_ENV) or
                            ANNOTATORS_REPO, ANNOTATORS_ENV, "ControlNetHED.pth"))
        rows.append(_adapter_status())
        return rows

    def check_server_lora(self, lora: LoraRef) -> None:
        """The server's own few-step LoRA must exist before a visitor's run uses it: a missing one is the operator's
        setting, named as such (and, on public deployments, without its path), never the visitor's loras[i]."""
        try:
            parse_model_source(lora.source, what=lora.origin)  # few_step_settings' own text, never a ModelSource
        except ValueError as err:
            log.warning("few-step mode unavailable: %s", err)
            detail = f" ({err})" if not self.settings.public else ""
            raise RequestError(f"few-step mode is not available here: {lora.origin} names a LoRA this server does "
                               f"not have{detail}; the operator must set it to an existing one") from None


def _adapter_status() -> ModelStatus:
    """The IP-Adapter of reference pictures for SD 1.x (the default base's family): its weights file and image
    encoder, and the command that fetches only those two from the authors' large repository."""
    from huggingface_hub import try_to_load_from_cache

    from cnet.families import FAMILIES
    from cnet.image_prompts import IP_ADAPTER_ENV, adapter_location, download_hint

    role = "IP-Adapter (reference pictures, SD 1.x)"
    try:
        location = adapter_location(env_text(IP_ADAPTER_ENV), FAMILIES["sd15"])
    except ValueError as err:
        return ModelStatus(role, env_text(IP_ADAPTER_ENV) or "", False, str(err))
    if location.source.kind != "hub":
        return ModelStatus(role, location.spec, True)
    repo, folder = location.source.location, location.subfolder
    found = all(isinstance(try_to_load_from_cache(repo, name), str)
                for name in (location.weight, f"{folder}/image_encoder/config.json".lstrip("/")))
    return ModelStatus(role, location.spec, found, "" if found else download_hint(location))


def _status(role: str, reference: str, env_var: str, marker: str = "config.json") -> ModelStatus:
    try:
        source = parse_model_source(reference, what=env_var)
    except ValueError as err:
        return ModelStatus(role, reference, False, str(err))
    if source.kind != "hub":
        return ModelStatus(role, reference, True)
    from huggingface_hub import try_to_load_from_cache

    found = isinstance(try_to_load_from_cache(source.location, marker, revision=source.revision), str)
    return ModelStatus(role, reference, found, "" if found else how_to_provide(source, env_var))
