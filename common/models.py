"""Where models come from: Hub ids, local diffusers folders and single-file checkpoints.

Loading is explicit and lazy (nothing here runs at import). Offline is a normal state: when weights are neither on
disk nor reachable we fail within seconds, naming the repository and how to provide it, instead of letting the Hub
client retry for half a minute.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import socket
import time
import urllib.parse
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .env import env_text

# diffusers' `load_config` still hands huggingface_hub its deprecated `local_dir_use_symlinks`, and huggingface_hub
# warns about it on every Hub config it reads: a line a user can do nothing about (issue 30), silenced by its text.
warnings.filterwarnings("ignore", message=r"The `local_dir_use_symlinks` argument is deprecated", category=UserWarning)

log = logging.getLogger("common.models")
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")


class ModelUnavailableError(RuntimeError):
    """Weights are not on this machine and cannot be fetched now. The message says how to provide them."""


@dataclass(frozen=True)
class ModelSource:
    """A model reference, classified once: `hub` id (optionally `id@revision`), local `folder`, or single `file`."""

    spec: str
    kind: Literal["hub", "folder", "file"]
    revision: str | None = None

    @property
    def location(self) -> str:
        """What to hand to `from_pretrained` / `from_single_file`."""
        return self.spec.split("@", 1)[0] if self.kind == "hub" else self.spec


# owner/name[@revision] as the Hub spells them: no "..", no leading dot or slash, nothing else.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}(@[A-Za-z0-9][\w./-]{0,127})?$", re.ASCII)


def parse_hub_id(spec: str, *, what: str = "model") -> ModelSource:
    """A Hub id (owner/name, optionally @revision) and nothing else, never looked up on this machine's disk: what a
    public deployment accepts from visitors. ValueError naming `what` otherwise."""
    spec = spec.strip() if isinstance(spec, str) else spec
    if not isinstance(spec, str) or not HUB_ID.match(spec) or ".." in spec:
        from .text import short_repr

        raise ValueError(f"{what}={short_repr(spec)}: this deployment accepts Hub ids (owner/name) only")
    repo, _, revision = spec.partition("@")
    return ModelSource(spec, "hub", revision or None)


def parse_model_source(spec: str | ModelSource, *, what: str = "model") -> ModelSource:
    """Classify `spec` as a local file, a local folder or a Hub id; raise ValueError naming `what` otherwise.
    A ModelSource is returned as it is (already classified, e.g. by `parse_hub_id`)."""
    if isinstance(spec, ModelSource):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"{what}={spec!r}: give a Hub id (owner/name), a local folder or a checkpoint file")
    spec = spec.strip()
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
            raise ValueError(f"{what}={spec!r} is a file but not a checkpoint ({', '.join(SINGLE_FILE_SUFFIXES)})")
        return ModelSource(str(path.resolve()), "file")
    if path.is_dir():
        return ModelSource(str(path.resolve()), "folder")
    looks_local = spec.startswith(("/", ".", "~")) or spec.endswith(SINGLE_FILE_SUFFIXES) or spec.count("/") > 1
    if looks_local:
        raise ValueError(f"{what}={spec!r}: no such file or folder")
    try:
        return parse_hub_id(spec, what=what)
    except ValueError:
        raise ValueError(f"{what}={spec!r} is neither a local path nor a Hub id of the form owner/name") from None


def hub_is_offline() -> bool:
    """True when the Hub cannot be used now: HF_HUB_OFFLINE is set, or its host does not answer within 3 s."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return True
    return not _endpoint_reachable(constants.ENDPOINT, int(time.monotonic() // 60))


@functools.lru_cache(maxsize=4)
def _endpoint_reachable(endpoint: str, _minute: int) -> bool:
    # Cached per minute so a UI that loads several models asks the network once, yet notices when it comes back.
    url = urllib.parse.urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=3):
            return True
    except OSError:
        return False


def how_to_provide(source: ModelSource, env_var: str | None = None) -> str:
    """One sentence telling a user how to make `source` available offline."""
    hint = f"Download it with `hf download {source.location}`"
    if env_var:
        flag = next((f for prefix, f in _FLAGS.items() if env_var.startswith(prefix)), None)
        hint += f", or point {env_var}" + (f" (or {flag})" if flag else "") + " at a local copy"
    return hint + "."


# Which command-line flag overrides each environment variable (for error messages).
_FLAGS = {"CNET_BASE_MODEL": "--base-model", "CNET_CONTROLNET_": "--controlnet",
          "CNET_CAPTION_MODEL": "--caption-model"}


def load_with_hub_fallback(
    loader: Callable[..., Any], source: ModelSource, *, env_var: str | None = None, **kwargs: Any
) -> Any:
    """Call `loader(location, **kwargs)` (a `from_pretrained`), trying the local Hub cache before the network.

    Raises ModelUnavailableError at once when the weights are not cached and the Hub is unreachable.
    """
    if source.kind != "hub":
        return loader(source.location, **kwargs)
    if os.path.exists(source.location):
        # A file or folder in the working directory has the id's name, and `from_pretrained` would read it instead
        # of the Hub's: a Hub source is resolved against the Hub cache only.
        return loader(hub_snapshot(source, env_var), **kwargs)
    if source.revision:
        kwargs["revision"] = source.revision
    try:
        return loader(source.location, local_files_only=True, **kwargs)
    except OSError:
        pass  # not (completely) in the cache: try the network below
    if hub_is_offline():
        raise _unavailable(source, env_var)
    try:
        return loader(source.location, **kwargs)
    except OSError as err:
        raise _download_failed(source, env_var, err) from err


def _download_failed(source: ModelSource, env_var: str | None, err: BaseException) -> ModelUnavailableError:
    """One message for every failed download, whatever failed: the libraries' own texts differ between a name that
    a local folder shadows and one that does not, which would tell a visitor what is on this machine's disk. The
    details go to the log."""
    log.warning("download of %r failed: %s: %s", source.location, type(err).__name__, err)
    return ModelUnavailableError(f"Could not load {source.location!r} from the Hugging Face Hub (it may not exist, be "
                                 "private, or the download failed; the server log has the details). "
                                 + how_to_provide(source, env_var))


def _unavailable(source: ModelSource, env_var: str | None) -> ModelUnavailableError:
    return ModelUnavailableError(f"Model {source.location!r} is not on this machine and the Hugging Face Hub is "
                                 "unreachable. " + how_to_provide(source, env_var))


def hub_snapshot(source: ModelSource, env_var: str | None = None) -> str:
    """The Hub cache folder of `source` (downloaded first when missing and the Hub is reachable)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(source.location, revision=source.revision, local_files_only=True)
    except LocalEntryNotFoundError:
        pass
    if hub_is_offline():
        raise _unavailable(source, env_var)
    try:  # weights and configs only: not the single-file checkpoints some repositories also carry
        return snapshot_download(source.location, revision=source.revision,
                                 allow_patterns=["*.json", "*.txt", "*/*.safetensors", "*.safetensors"],
                                 ignore_patterns=["*.fp16.*", "*non_ema*", "*.ema.*", "v1-*"])
    except Exception as err:  # noqa: BLE001 - the Hub client raises many kinds
        raise _download_failed(source, env_var, err) from err


def hub_revision(source: ModelSource) -> str | None:
    """The commit hash of a cached Hub model, for reproducible metadata; None for local models."""
    if source.kind != "hub":
        return None
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(source.location, revision=source.revision, local_files_only=True,
                                 allow_patterns=["*.json"])
        return Path(path).name
    except Exception:  # the revision is informative only; a missing one must not break generation
        return source.revision


@functools.lru_cache(maxsize=16)
def file_sha256(path: str, _mtime: float) -> str:
    """SHA-256 of a checkpoint file (cached by path and modification time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_source(source: ModelSource) -> dict[str, str | None]:
    """What metadata records about a model: its reference and a revision (commit hash or file hash)."""
    if source.kind == "file":
        return {"model": source.location, "revision": "sha256:" + file_sha256(source.location,
                                                                              os.path.getmtime(source.location))}
    return {"model": source.location, "revision": hub_revision(source)}


def pick_device(device: str | None = None) -> str:
    """The device to run on: `device` if given, else CNET_DEVICE, else CUDA, Apple mps or CPU."""
    import torch

    choice = device or env_text("CNET_DEVICE")
    if choice:
        try:
            torch.device(choice)
        except (RuntimeError, TypeError):
            raise ValueError(f"device={choice!r} is not a torch device (try 'cuda', 'mps' or 'cpu')") from None
        return choice
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16"}


def cpu_has_bf16_matrix_unit() -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (Intel AMX, Sapphire Rapids and later). There,
    bfloat16 runs an SD1.5 U-Net + ControlNet step about 3x faster than float32 (bench/RESULTS.md, "Live frames");
    without AMX (AVX512-BF16 alone, or none) it was not measured faster, so float32 stays."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe and probe() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def pick_dtype(device: str, dtype: str | None = None) -> Any:
    """Half precision on accelerators; on a CPU, bfloat16 where it has a bfloat16 matrix unit (AMX: ~3x faster,
    measured) and float32 elsewhere (float16 is slow and lossy on CPUs); `dtype`/CNET_DTYPE override."""
    import torch

    choice = dtype or env_text("CNET_DTYPE")
    if choice:
        if choice not in _DTYPES:
            raise ValueError(f"dtype={choice!r} is not supported; choose one of {sorted(set(_DTYPES))}")
        return getattr(torch, _DTYPES[choice])
    if torch.device(device).type in ("cuda", "mps"):
        return torch.float16
    return torch.bfloat16 if cpu_has_bf16_matrix_unit() else torch.float32
