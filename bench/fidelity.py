"""Control fidelity of every fast setting against the default, on the demo model's held-out circles.

    python -m bench.fidelity [--n 32]

Each row generates the same held-out circles (`shapes.eval`, fixed seeds) with one fast setting and scores how well
the picture follows its condition: the median IoU of the generated circle with the true one, the share above 0.5,
and the share whose colour is right. "Kept" is the row's median IoU over the default's (DDIM 20 steps, CFG 5, fp32):
the share of the control that the speed costs. The runs are deterministic; one run per row.

Not here, and why: fast decode (the demo has its own small VAE; TAESD is distilled for Stable Diffusion's) and tiled
upscaling (the demo makes 64x64 images only); both are scored on Stable Diffusion's real weights, which this
offline machine does not have.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.common import record

# (row name, engine precision, sampling): the sampling keys are `shapes.eval.Sampling`'s.
SETTINGS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("default: DDIM 20 steps, CFG 5, float32", "float32", {"steps": 20}),
    ("bfloat16 (the default on a CPU with AMX), 20 steps", "bfloat16", {"steps": 20}),
    ("DDIM 4 steps", "float32", {"steps": 4}),
    ("DDIM 2 steps", "float32", {"steps": 2}),
    ("DDIM 1 step", "float32", {"steps": 1}),
    ("LCM sampler, 4 steps (no LoRA)", "float32", {"steps": 4, "scheduler": "lcm"}),
    ("live preset on the demo: DDIM 4 steps, bfloat16", "bfloat16", {"steps": 4}),
    ("live preset on the demo: DDIM 4 steps, float32", "float32", {"steps": 4}),
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=32, help="held-out circles per row (default 32)")
    args = parser.parse_args(argv)
    from cnet.engine import Engine
    from shapes import DEMO_BASE, DEMO_CONTROLNET
    from shapes.eval import evaluate_shapes

    engines = {dtype: Engine(str(DEMO_BASE), device="cpu", dtype=dtype) for dtype in ("float32", "bfloat16")}
    rows, default_iou = [], None
    for name, dtype, sampling in SETTINGS:
        scores = evaluate_shapes(DEMO_BASE, DEMO_CONTROLNET, n=args.n, engine=engines[dtype], guidance=5.0,
                                 **sampling)
        default_iou = default_iou or scores["median_iou"]
        rows.append([name, f"{scores['median_iou']:.3f}", f"{scores['share_iou_above_0.5']:.0%}",
                     f"{scores['colour_right']:.0%}", f"{scores['median_iou'] / default_iou:.0%}"])
        print(rows[-1], flush=True)
    record(f"Control fidelity of the fast settings (demo model, {args.n} held-out circles, CFG 5)",
           ["setting", "median IoU", "IoU > 0.5", "colour right", "kept (IoU vs default)"], rows,
           "Deterministic (fixed seeds), one run per row. The fast settings that need Stable Diffusion's weights "
           "(a few-step LoRA, TAESD, tiles) are not scored here: this machine has none of them.")


if __name__ == "__main__":
    main()
