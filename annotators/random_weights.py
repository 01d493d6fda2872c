"""Random-weight annotator models in the exact layouts their loaders expect, for offline tests and benchmarks.

The controlnet-aux files mirror `lllyasviel/Annotators` (same names, same state-dict keys), so `from_pretrained(folder)`
runs the real loading code. The transformers models are saved with `save_pretrained`, at their published sizes
(`full=True`) or tiny ones for fast tests. None of these maps mean anything: they only exercise the code.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path


def _strip_first(sd: dict) -> dict:
    # OpenPose checkpoints store keys without the first module name (`conv1_1.weight`, not `model0.conv1_1.weight`).
    return {".".join(k.split(".")[1:]): v for k, v in sd.items()}


def _aux_builders() -> dict[str, list[tuple[str, Callable[[], dict]]]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from controlnet_aux.hed import ControlNetHED_Apache2
        from controlnet_aux.lineart import Generator
        from controlnet_aux.midas.midas.dpt_depth import DPTDepthModel
        from controlnet_aux.mlsd.models.mbv2_mlsd_large import MobileV2_MLSD_Large
        from controlnet_aux.normalbae.nets.NNET import NNET
        from controlnet_aux.open_pose.body import bodypose_model
        from controlnet_aux.open_pose.face import FaceNet
        from controlnet_aux.open_pose.hand import handpose_model
        from controlnet_aux.pidi.model import pidinet

    normal_args = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4,
                                        importance_ratio=0.7)
    hed = [("ControlNetHED.pth", lambda: ControlNetHED_Apache2().state_dict())]
    return {
        "softedge": hed,
        "fake_scribble": hed,
        "softedge_pidinet": [("table5_pidinet.pth", lambda: {"state_dict": pidinet().state_dict()})],
        "mlsd": [("mlsd_large_512_fp32.pth", lambda: MobileV2_MLSD_Large().state_dict())],
        "lineart": [("sk_model.pth", lambda: Generator(3, 1, 3).state_dict()),
                    ("sk_model2.pth", lambda: Generator(3, 1, 3).state_dict())],
        "openpose": [("body_pose_model.pth", lambda: _strip_first(bodypose_model().state_dict())),
                     ("hand_pose_model.pth", lambda: _strip_first(handpose_model().state_dict())),
                     ("facenet.pth", lambda: FaceNet().state_dict())],
        "depth": [("dpt_hybrid-midas-501f0c75.pt",
                   lambda: DPTDepthModel(path=None, backbone="vitb_rn50_384", non_negative=True).state_dict())],
        "normal": [("scannet.pt", lambda: {"model": NNET(normal_args).state_dict()})],
    }


AUX_NAMES = ("depth", "openpose", "fake_scribble", "softedge", "softedge_pidinet", "mlsd", "lineart", "normal")


def save_aux_weights(folder: str | Path, names: Iterable[str] = AUX_NAMES, seed: int = 0) -> Path:
    """Write random weights for the controlnet-aux annotators `names` into `folder` (lllyasviel/Annotators names)."""
    import torch

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    builders = _aux_builders()
    torch.manual_seed(seed)
    for name in names:
        for filename, build in builders[name]:
            if not (out / filename).exists():
                torch.save(build(), out / filename)
    return out


def save_depth_anything(folder: str | Path, full: bool = False, seed: int = 0) -> Path:
    """A random Depth Anything model (V2-small shapes when `full`) with its image processor."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(seed)
    stages = ["stage3", "stage6", "stage9", "stage12"] if full else ["stage1", "stage2", "stage3", "stage4"]
    backbone = Dinov2Config(hidden_size=384 if full else 32, num_hidden_layers=12 if full else 4,
                            num_attention_heads=6 if full else 4, intermediate_size=1536 if full else 64,
                            image_size=518, patch_size=14, out_features=stages, reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=384 if full else 32, patch_size=14,
                                 neck_hidden_sizes=[48, 96, 192, 384] if full else [16, 16, 32, 32],
                                 fusion_hidden_size=64 if full else 16, head_hidden_size=32 if full else 16)
    side = 518 if full else 56
    processor = DPTImageProcessor(size={"height": side, "width": side}, keep_aspect_ratio=True,
                                  ensure_multiple_of=14, do_pad=False)
    out = Path(folder)
    DepthAnythingForDepthEstimation(config).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def save_upernet(folder: str | Path, full: bool = False, seed: int = 0) -> Path:
    """A random UperNet-ConvNeXt ADE20K segmenter (convnext-small shapes when `full`) with its processor."""
    import torch
    from transformers import ConvNextConfig, SegformerImageProcessor, UperNetConfig, UperNetForSemanticSegmentation

    torch.manual_seed(seed)
    backbone = ConvNextConfig(hidden_sizes=[96, 192, 384, 768] if full else [8, 16, 32, 64],
                              depths=[3, 3, 27, 3] if full else [1, 1, 1, 1],
                              out_features=["stage1", "stage2", "stage3", "stage4"])
    config = UperNetConfig(backbone_config=backbone, hidden_size=512 if full else 16, num_labels=150,
                           auxiliary_in_channels=384 if full else 32, use_auxiliary_head=False)
    side = 512 if full else 64
    out = Path(folder)
    UperNetForSemanticSegmentation(config).save_pretrained(out)
    SegformerImageProcessor(size={"height": side, "width": side}).save_pretrained(out)
    return out
