"""Annotator latency at 512x512: `annotators.detect` against calling controlnet-aux (or OpenCV) directly.

Weights are random but full-size (the real network shapes), built locally, so this runs offline:
    python -m bench.annotators [--repeats 3] [--device cpu] [--only canny,mlsd]
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import cv2
import numpy as np

from annotators import ANNOTATORS, ModelCache, detect
from annotators.detect import Loading
from annotators.random_weights import AUX_NAMES, save_aux_weights, save_depth_anything, save_upernet
from bench.common import median_seconds, record

# What a user of controlnet-aux would call for the same map.
AUX_DIRECT = {"depth": ("MidasDetector", {}), "openpose": ("OpenposeDetector", {}),
              "fake_scribble": ("HEDdetector", {"scribble": True}), "softedge": ("HEDdetector", {}),
              "softedge_pidinet": ("PidiNetDetector", {}), "mlsd": ("MLSDdetector", {}),
              "lineart": ("LineartDetector", {}), "normal": ("NormalBaeDetector", {})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", help="comma-separated annotator names")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(ANNOTATORS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import controlnet_aux
    from skimage import data

    photo = data.astronaut()  # 512x512
    drawing = np.full((512, 512, 3), 255, np.uint8)
    cv2.circle(drawing, (256, 256), 120, (0, 0, 0), 6)
    work = Path(tempfile.mkdtemp(prefix="cnet-bench-ann-"))
    aux_dir = save_aux_weights(work / "Annotators", [n for n in names if n in AUX_NAMES])
    weights = {"depth_anything": str(save_depth_anything(work / "da", full=True)) if "depth_anything" in names
               else None, "seg": str(save_upernet(work / "seg", full=True)) if "seg" in names else None}
    rows = []
    for name in names:
        annotator = ANNOTATORS[name]
        image = drawing if annotator.takes_drawing else photo
        location = weights.get(name) or str(aux_dir)
        cache = ModelCache()

        def ours(name=name, image=image, location=location, cache=cache):
            return detect(name, image, detect_resolution=512,
                          loading=Loading(weights=location, device=args.device, cache=cache))

        ours_s = median_seconds(ours, args.repeats)
        direct_s = None
        if name == "canny":
            direct_s = median_seconds(lambda: cv2.Canny(photo, 100, 200), args.repeats)
        elif name in AUX_DIRECT:
            cls_name, fixed = AUX_DIRECT[name]
            model = getattr(controlnet_aux, cls_name).from_pretrained(str(aux_dir)).to(args.device)
            direct_s = median_seconds(lambda m=model, f=fixed: m(photo, detect_resolution=512,
                                                                 image_resolution=512, **f), args.repeats)
        ratio = f"{ours_s / direct_s:.2f}" if direct_s else "n/a"
        direct = f"{direct_s * 1000:.1f}" if direct_s else "n/a (no direct equivalent)"
        rows.append([name, annotator.kind, f"{ours_s * 1000:.1f}", direct, ratio])
    record("Annotator latency, 512x512 input, detect resolution 512",
           ["annotator", "kind", "ours (ms)", "direct call (ms)", "ours / direct"], rows,
           f"Median of {args.repeats} runs after one warm-up, device {args.device}, random full-size weights.")


if __name__ == "__main__":
    main()
