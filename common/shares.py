"""Work split across the processes of `accelerate launch` (torchrun underneath): each takes every n-th item.

`accelerate launch --num_processes 8 -m annotators batch ...` (or `-m train build-dataset`, `-m cnet batch`) runs the
same command once per GPU; torchrun gives each process RANK, WORLD_SIZE and LOCAL_RANK. Items are split by position
in a sorted list, so the shares are disjoint and the same on every restart; outputs are written per item, so a
stopped job resumes by skipping what is already written. One process (no launcher) takes everything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Share:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Share:
        """This process's place among those a launcher started (RANK / WORLD_SIZE / LOCAL_RANK), or the whole."""
        given = {name: os.environ.get(name) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
        try:
            world = int(given["WORLD_SIZE"] or 1)
            rank = int(given["RANK"] or 0)
            local = int(given["LOCAL_RANK"] or rank)
        except ValueError:
            raise ValueError(f"RANK={given['RANK']!r}, WORLD_SIZE={given['WORLD_SIZE']!r}, LOCAL_RANK="
                             f"{given['LOCAL_RANK']!r}: must be whole numbers (set by accelerate launch or "
                             "torchrun)") from None
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is not within WORLD_SIZE={world}")
        return cls(rank, world, local)

    def take(self, items: list[T]) -> list[T]:
        """This process's items: every `world`-th one from position `rank`."""
        return items[self.rank::self.world]

    def device(self) -> str | None:
        """This process's own GPU when several share a machine (None: the automatic choice)."""
        if self.world == 1:
            return None
        import torch

        return f"cuda:{self.local_rank}" if torch.cuda.is_available() else "cpu"

    @property
    def suffix(self) -> str:
        """For files each process writes alone: '' for a lone process."""
        return "" if self.world == 1 else f".part-{self.rank:03d}-of-{self.world:03d}"
