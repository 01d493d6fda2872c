"""`python -m shapes`: the demo domain's commands.

    python -m shapes dataset DIR --rows 2000 --seed 1      # a Fill50K-layout folder of circles
    python -m shapes pretrain vae --out DIR --steps 1200   # the base model, stage by stage (then: unet)
    python -m shapes eval [--n 32] [--json FILE]           # the shipped ControlNet on held-out circles
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    commands = {"dataset": "shapes.data", "pretrain": "shapes.pretrain", "eval": "shapes.eval"}
    if not argv or argv[0] not in commands:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(commands[argv[0]]).main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
