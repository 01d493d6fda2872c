"""Where generated images go: saved with their metadata, remembered per session for its history, and pruned to
the deployment's size and age bounds. On public deployments each session's folder has a name only the server can
derive, and the metadata names the server's own models by folder name, never by where they live."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from .settings import AppSettings

PRUNE_EVERY_SECONDS = 60.0
RECENT_SESSIONS, RECENT_PER_SESSION = 256, 24  # the history: sessions remembered, images per session
log = logging.getLogger("cnet.app")


class OutputStore:
    """The app's outputs: `save` a result for a session, `recent` images of a session."""

    def __init__(self, settings: AppSettings) -> None:
        self.settings = settings
        # Each session's newest saved images, for its history (the server's record, never a visitor's paths).
        self._recent: OrderedDict[str, list[str]] = OrderedDict()
        self._secret = secrets.token_bytes(32)  # names each public session's output folder; new each start
        self._pruned_at = -float("inf")

    def save(self, result: Any, session: str) -> list[Path]:
        """Save under outputs/<date>/ locally; on public deployments under a folder per session whose name only
        the server can derive (HMAC of the session with a secret), with a random part in each name, so nobody
        fetches another visitor's images by guessing. Then prune the folder to its size and age bounds."""
        now = datetime.datetime.now()
        folder = self.settings.output_dir
        stem = f"{now.strftime('%H%M%S')}-{result.seed}"
        if self.settings.public:
            key = hmac.new(self._secret, session.encode() or secrets.token_bytes(16), hashlib.sha256).hexdigest()
            folder = folder / "sessions" / key[:32]
            stem += "-" + secrets.token_hex(8)
        folder = folder / now.date().isoformat()
        taken, n = stem, 1
        while (folder / f"{taken}-0.png").exists():  # same second, same seed: never overwrite an earlier image
            n += 1
            taken = f"{stem}-{n}"
        paths = result.save(folder, stem=taken)
        recent = self._recent.pop(session, [])
        self._recent[session] = ([str(p) for p in paths] + recent)[:RECENT_PER_SESSION]
        while len(self._recent) > RECENT_SESSIONS:  # the least recently active session is forgotten
            self._recent.popitem(last=False)
        self._prune(paths)
        return paths

    def _prune(self, just_saved: list[Path]) -> None:
        """A walk of the folder, at most once a minute: the oldest outputs past the size and age bounds go."""
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = time.monotonic()
        settings = self.settings
        removed = prune_outputs(settings.output_dir, max_bytes=settings.output_max_mb * 2**20,
                                max_age_seconds=settings.output_max_age_hours * 3600, keep=just_saved)
        if removed:
            log.warning("pruned the %d oldest output file(s) from %s (CNET_OUTPUT_MAX_MB=%s, "
                        "CNET_OUTPUT_MAX_AGE_HOURS=%s)", removed, settings.output_dir, settings.output_max_mb,
                        settings.output_max_age_hours)

    def recent(self, session: str) -> list[str]:
        """The images this session saved, newest first (at most RECENT_PER_SESSION), that still exist."""
        return [p for p in self._recent.get(session, []) if Path(p).is_file()]


def without_server_paths(meta: dict[str, Any]) -> dict[str, Any]:
    """The metadata with each local model path (the server's own models: the demo, CNET_* folders) replaced by
    `server:<folder name>`; Hub ids and hashes stay."""
    def label(described: dict[str, Any]) -> dict[str, Any]:
        model = str(described.get("model") or "")
        return {**described, "model": f"server:{Path(model).name}"} if Path(model).is_absolute() else described

    return {**meta, "base_model": label(meta["base_model"]),
            "controlnets": [label(net) for net in meta.get("controlnets", [])]}


# What `OutputStore.save` writes (images and their condition maps), and nothing else: pruning never touches a file it
# did not make, even when CNET_OUTPUT_DIR points at a folder with other things in it.
# Our saved files: images, their condition maps, and an edit's picture and mask (all pruned alike).
OUTPUT_NAME = re.compile(r"^\d{6}-\d+(-[0-9a-f]{16})?(-\d+)?-(\d+|control\d+|init|mask)\.png$")


def prune_outputs(root: Path, *, max_bytes: float, max_age_seconds: float = 0, keep: list[Path] = ()) -> int:
    """Delete the oldest of our outputs under `root` until they total at most `max_bytes` (0: no bound), and those
    older than `max_age_seconds` (0: no bound); never the files in `keep`, never a file of another name. Returns how
    many were removed."""
    if not root.is_dir() or (max_bytes <= 0 and max_age_seconds <= 0):
        return 0
    kept = {Path(p).resolve() for p in keep}
    files = []
    for path in root.rglob("*.png"):
        try:
            if OUTPUT_NAME.match(path.name) and path.is_file() and not path.is_symlink():
                info = path.stat()
                files.append((info.st_mtime, info.st_size, path))
        except OSError:  # removed meanwhile by another request
            continue
    files.sort()
    total = sum(size for _, size, _ in files)
    cutoff = time.time() - max_age_seconds if max_age_seconds > 0 else None
    removed = 0
    for mtime, size, path in files:
        too_big = max_bytes > 0 and total > max_bytes
        too_old = cutoff is not None and mtime < cutoff
        if not (too_big or too_old):
            break  # oldest first: every later file is newer, and the total already fits
        if path.resolve() in kept:
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed += 1
    if removed:
        for folder in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                folder.rmdir()  # only empty ones (saves happen under the same lock: none is being filled)
            except OSError:
                pass
    return removed
