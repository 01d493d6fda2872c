"""Memory at upscale sizes: peak RSS of one VAE decode (whole-image vs tiled) and of a whole 2x tile upscale.

Cases `SIDE:whole` / `SIDE:tiled`: one decode of the Stable Diffusion 1.5 VAE architecture with random weights
(`cnet.tiny.build_sd15_vae`: the true shapes). Cases `SIDE:upscale` (whole) and `SIDE:upscale-N` (denoised in tiles of N
px, `--tile-size N`, the default being 1024): `python -m cnet edit --upscale 2 --kind tile` of a SIDE/2 photo to SIDE,
exactly as a user runs it, on the SD1.5 + ControlNet architectures with random weights
(`python -m cnet tiny-model --preset sd15`), one denoising step (memory, not time, is measured: more steps reuse the
same buffers). fp32 on the CPU, one fresh process per case so each peak is its own. The engine tiles the VAE (encode
and decode) of every image with a side over 1024 (cnet.engine.AUTO_TILING_SIDE).

    python -m bench.upscale_memory [--cases 1024:whole,2048:tiled,2048:whole,1024:upscale,2048:upscale-1024,...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench.common import record


def child(side: int, tiled: bool) -> dict:
    import torch

    from cnet.tiny import build_sd15_vae

    torch.manual_seed(0)
    vae = build_sd15_vae().eval()
    if tiled:
        vae.enable_tiling()
    latents = torch.randn(1, 4, side // 8, side // 8)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB: the model and the interpreter
    start = time.perf_counter()
    with torch.no_grad():
        image = vae.decode(latents).sample
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert image.shape[-2:] == (side, side)
    return {"side": side, "tiled": tiled, "peak_gib": peak / 2**20, "decode_gib": (peak - before) / 2**20,
            "seconds": seconds}


def upscale_child(side: int, models: str, tile_size: int) -> dict:
    """One 2x upscale of a SIDE/2 photo through the CLI, in this process (`tile_size` 0: the whole image)."""
    import tempfile

    import numpy as np
    from PIL import Image
    from skimage import data

    from cnet.cli import main as cli

    work = Path(tempfile.mkdtemp(prefix="cnet-upscale-"))
    photo = Image.fromarray(np.asarray(data.astronaut())).resize((side // 2, side // 2), Image.Resampling.LANCZOS)
    photo.save(work / "photo.png")
    start = time.perf_counter()
    cli(["edit", "--picture", str(work / "photo.png"), "--upscale", "2", "--kind", "tile", "--controlnet",
         f"{models}/controlnet", "--base-model", f"{models}/base", "--denoise", "0.5", "--steps", "2",
         "--tile-size", str(tile_size), "--prompt-mode", "default", "--seed", "0", "--out", str(work / "out"),
         "--device", "cpu"])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    made = [Image.open(p).size for p in (work / "out").rglob("*-0.png")]
    assert made == [(side, side)], made
    return {"side": side, "case": "upscale", "tile_size": tile_size, "peak_gib": peak / 2**20, "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="1024:whole,2048:tiled,2048:whole,1024:upscale,2048:upscale-1024,"
                        "2048:upscale")
    parser.add_argument("--models", help="an SD1.5-shaped model folder (made once with random weights if not given)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        side, how = args.child.split(":")
        if how.startswith("upscale"):  # upscale: the whole image; upscale-N: denoised in tiles of N px
            row = upscale_child(int(side), args.models, int(how.partition("-")[2] or 0))
        else:
            row = child(int(side), how == "tiled")
        print(json.dumps(row))
        return
    cases = args.cases.split(",")
    models = args.models
    if any(":upscale" in c for c in cases) and not models:
        import tempfile

        from cnet.tiny import save_tiny_models

        models = tempfile.mkdtemp(prefix="cnet-sd15-")
        save_tiny_models(models, preset="sd15")
    rows = []
    for case in cases:
        proc = subprocess.run([sys.executable, "-m", "bench.upscale_memory", "--child", case,
                               *(["--models", models] if models else [])], capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"case {case} failed:\n{proc.stderr[-3000:]}")
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    decodes = [r for r in rows if r.get("case") != "upscale"]
    upscales = [r for r in rows if r.get("case") == "upscale"]
    if upscales:
        record("Upscale memory: a whole 2x tile upscale, `python -m cnet edit --upscale 2` (SD1.5 shapes, fp32, CPU)",
               ["picture", "output", "denoised", "peak RSS (GiB)", "run (s)"],
               [[f"{r['side'] // 2} px", f"{r['side']} px",
                 f"in tiles of {r['tile_size']} px" if r.get("tile_size") else "whole", f"{r['peak_gib']:.2f}",
                 f"{r['seconds']:.0f}"] for r in upscales],
               "One fresh process per case; one denoising step (denoise 0.5 of 2), which is what memory needs. The "
               "peak includes the weights (U-Net, ControlNet, VAE, text encoder: about 5 GiB in fp32).")
    if not decodes:
        return
    rows = decodes
    record("Upscale memory: one VAE decode, whole vs tiled (SD1.5 VAE shapes, fp32, CPU)",
           ["output side", "VAE", "peak RSS (GiB)", "added by the decode (GiB)", "decode (s)"],
           [[r["side"], "tiled" if r["tiled"] else "whole", f"{r['peak_gib']:.2f}", f"{r['decode_gib']:.2f}",
             f"{r['seconds']:.0f}"] for r in rows],
           "One fresh process per case (a peak is per process; memory, not speed, is the point: one run each). "
           "The U-Net at 2048 px is not tiled: a tile-by-tile U-Net (Ultimate SD upscale style) is not built yet.")


if __name__ == "__main__":
    main()
