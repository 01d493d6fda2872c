"""Annotators: exact Canny, every canvas style of scribble, every weight-based detector on random weights."""

import io
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from annotators import ANNOTATORS, AnnotatorError, ImageInputError, ModelCache, detect, scribble_from_drawing
from annotators.detect import Loading
from annotators.random_weights import AUX_NAMES
from cnet.kinds import KINDS
from common.models import ModelUnavailableError


def weights_for(name, annotator_weights):
    return str(annotator_weights.get(name, annotator_weights["aux"]))


# -- canny: exactly OpenCV ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("low, high", [(100, 200), (50, 150)])
def test_canny_equals_opencv_on_a_real_photo(astronaut, low, high):
    result = np.asarray(detect("canny", astronaut, detect_resolution=512, low_threshold=low, high_threshold=high))
    expected = cv2.Canny(astronaut, low, high)
    assert result.shape == (512, 512, 3)
    assert all(np.array_equal(result[:, :, c], expected) for c in range(3))
    assert expected.mean() > 5  # a real photo has plenty of edges: the comparison is not of two black images


@pytest.mark.slow
def test_canny_contract_on_a_non_square_photo_through_the_cli(tmp_path):
    from skimage import data

    photo = data.chelsea()[:256, :448]  # 448x256: sides multiples of 64, short side = detect resolution
    Image.fromarray(photo).save(tmp_path / "cat.png")
    proc = subprocess.run([sys.executable, "-m", "annotators", "detect", "--kind", "canny", "--image",
                           str(tmp_path / "cat.png"), "--out", str(tmp_path / "edges.png"), "--detect-resolution",
                           "256", "--low", "80", "--high", "160"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = np.asarray(Image.open(tmp_path / "edges.png"))
    assert result.shape == (256, 448, 3)
    assert np.array_equal(result[:, :, 0], cv2.Canny(photo, 80, 160)) and np.array_equal(result[:, :, 0],
                                                                                         result[:, :, 2])


def test_canny_resizes_like_the_original_apps(astronaut):
    assert detect("canny", astronaut, detect_resolution=256).size == (256, 256)
    # 512x400 (HxW): short side 400 -> 512, long side 655 -> rounded to 640
    assert detect("canny", astronaut[:, :400], detect_resolution=512).size == (512, 640)
    assert detect("canny", astronaut, width=768, height=512).size == (768, 512)  # centre-cropped, not stretched
    assert detect("canny", astronaut, width=640).size == (640, 640)
    assert detect("canny", astronaut[:256], image_resolution=512).size == (1024, 512)


# -- scribble: every canvas style -----------------------------------------------------------------------------------

def stroke_mask():
    mask = np.zeros((128, 160), bool)
    cv2.line(mask.view(np.uint8), (10, 20), (150, 100), 1, 5)
    cv2.circle(mask.view(np.uint8), (60, 70), 30, 1, 4)
    return mask


def canvas(style, mask):
    h, w = mask.shape
    if style == "transparent_black":  # gr.Sketchpad: black strokes on a transparent layer
        out = np.zeros((h, w, 4), np.uint8)
        out[mask] = (0, 0, 0, 255)
    elif style == "transparent_colour":
        out = np.zeros((h, w, 4), np.uint8)
        out[mask] = (30, 200, 90, 255)
    elif style == "black_on_white":
        out = np.full((h, w, 3), 255, np.uint8)
        out[mask] = 0
    elif style == "white_on_black":
        out = np.zeros((h, w, 3), np.uint8)
        out[mask] = 255
    elif style == "colour_on_white":
        out = np.full((h, w, 3), 255, np.uint8)
        out[mask] = (220, 40, 40)
    else:  # grey strokes on a beige paper, saved as JPEG
        out = np.full((h, w, 3), (235, 225, 200), np.uint8)
        out[mask] = (90, 90, 90)
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=90)
        return Image.open(io.BytesIO(buf.getvalue()))
    return Image.fromarray(out)


@pytest.mark.parametrize("style, inverted", [
    ("transparent_black", True), ("transparent_colour", False), ("black_on_white", True),
    ("white_on_black", False), ("colour_on_white", True), ("jpeg_paper", True),
])
def test_scribble_from_every_canvas_style(style, inverted):
    mask = stroke_mask()
    result = scribble_from_drawing(canvas(style, mask))
    strokes = result.map[:, :, 0] == 255
    assert set(np.unique(result.map)) <= {0, 255}
    iou = (strokes & mask).sum() / (strokes | mask).sum()
    assert iou > 0.97, iou
    assert result.inverted is inverted
    assert result.from_alpha is style.startswith("transparent")


def test_scribble_annotator_keeps_strokes_through_resizing():
    mask = stroke_mask()
    result = np.asarray(detect("scribble", canvas("black_on_white", mask), detect_resolution=256))
    assert result.shape == (256, 320, 3) and set(np.unique(result)) == {0, 255}
    small = cv2.resize(mask.astype(np.uint8), (320, 256), interpolation=cv2.INTER_NEAREST).astype(bool)
    assert ((result[:, :, 0] == 255) & small).sum() / small.sum() > 0.95


def test_empty_drawing_is_a_clear_error():
    with pytest.raises(ImageInputError, match="empty"):
        scribble_from_drawing(Image.new("RGBA", (64, 64), (0, 0, 0, 0)))
    with pytest.raises(ImageInputError, match="empty"):
        detect("scribble", Image.new("RGB", (64, 64), "white"))


# -- weight-based annotators ----------------------------------------------------------------------------------------

WEIGHTED = [name for name, a in ANNOTATORS.items() if a.needs_weights]
EXPECTED_CLASSES = {"depth": "MidasDetector", "openpose": "OpenposeDetector", "fake_scribble": "HEDdetector",
                    "softedge": "HEDdetector", "softedge_pidinet": "PidiNetDetector", "mlsd": "MLSDdetector",
                    "lineart": "LineartDetector", "normal": "NormalBaeDetector"}


def test_every_weighted_annotator_is_covered():
    assert set(WEIGHTED) == set(AUX_NAMES) | {"depth_anything", "seg"}


@pytest.mark.parametrize("name", WEIGHTED)
def test_weighted_annotator_runs_its_real_network(name, annotator_weights, astronaut):
    cache = ModelCache(capacity=1)
    loading = Loading(weights=weights_for(name, annotator_weights), device="cpu", cache=cache)
    result = detect(name, astronaut, detect_resolution=128, loading=loading)
    assert result.mode == "RGB" and result.size == (128, 128)
    ((_, model),) = cache.items()
    if name in EXPECTED_CLASSES:
        assert type(model).__name__ == EXPECTED_CLASSES[name]
    else:  # transformers: (image processor, model)
        assert type(model[1]).__name__ == {"depth_anything": "DepthAnythingForDepthEstimation",
                                           "seg": "UperNetForSemanticSegmentation"}[name]
    sized = detect(name, astronaut[:, :384], detect_resolution=128, width=96, height=64, loading=loading)
    assert sized.size == (96, 64)
    assert len(cache) == 1  # the same detector is reused, not reloaded


def test_seg_map_uses_the_ade_palette(annotator_weights, astronaut):
    from controlnet_aux.util import ade_palette

    loading = Loading(weights=weights_for("seg", annotator_weights))
    result = np.asarray(detect("seg", astronaut, detect_resolution=128, loading=loading))
    palette = {tuple(c) for c in ade_palette()}
    assert {tuple(c) for c in result.reshape(-1, 3)} <= palette


def test_cache_keeps_one_heavy_annotator(annotator_weights, astronaut):
    cache = ModelCache(capacity=1)
    for name in ("mlsd", "softedge"):
        detect(name, astronaut, detect_resolution=128,
               loading=Loading(weights=weights_for(name, annotator_weights), cache=cache))
    assert len(cache) == 1 and cache.items()[0][0][0] == "softedge"


def test_offline_error_names_the_repository(monkeypatch, astronaut):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.delenv("CNET_ANNOTATORS", raising=False)
    with pytest.raises(ModelUnavailableError, match="cnet-tests/no-annotators") as err:
        detect("mlsd", astronaut, loading=Loading(weights="cnet-tests/no-annotators", cache=ModelCache()))
    assert "CNET_ANNOTATORS" in str(err.value)


def test_folder_without_the_weight_file_names_the_problem(tmp_path, astronaut):
    with pytest.raises(AnnotatorError, match="mlsd_large_512_fp32.pth") as err:
        detect("mlsd", astronaut, loading=Loading(weights=str(tmp_path), cache=ModelCache()))
    assert "lllyasviel/Annotators" in str(err.value)


def test_env_var_points_at_local_weights(monkeypatch, annotator_weights, astronaut):
    monkeypatch.setenv("CNET_ANNOTATORS", str(annotator_weights["aux"]))
    assert detect("mlsd", astronaut, detect_resolution=128, loading=Loading(cache=ModelCache())).size == (128, 128)


def test_each_kind_has_an_annotator():
    """Every kind whose map comes from one image has its annotator; the editing-only ones (inpaint) have none."""
    from cnet.kinds import map_kinds

    for kind in map_kinds():
        assert ANNOTATORS[kind.annotator].kind == kind.name
    assert [k.name for k in KINDS.values() if k not in map_kinds()] == ["inpaint"]
    assert KINDS["inpaint"].annotator == ""


# -- parameters and bad inputs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(low_threshold=250, high_threshold=100), "low_threshold=250 is above high_threshold=100"),
    (dict(low_threshold=0), "low_threshold=0 is out of range"),
    (dict(low_threshold="many"), "low_threshold='many' must be int"),
    (dict(sigma=2), "unknown parameter(s) ['sigma']"),
    (dict(detect_resolution=10), "detect_resolution=10"),
    (dict(width=100), "width=100 must be a multiple of 8"),
])
def test_bad_parameters_name_the_value(astronaut, kwargs, message):
    with pytest.raises(AnnotatorError) as err:
        detect("canny", astronaut, **kwargs)
    assert message in str(err.value)


def test_unknown_annotator():
    with pytest.raises(AnnotatorError, match="'sobel' is unknown"):
        detect("sobel", np.zeros((8, 8, 3), np.uint8))


def png_bytes(image, **kw):
    buf = io.BytesIO()
    image.save(buf, "PNG", **kw)
    return buf.getvalue()


def exif_rotated():
    image = Image.new("RGB", (128, 64), "white")
    image.paste((0, 0, 0), (0, 0, 64, 64))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise when displayed
    buf = io.BytesIO()
    image.save(buf, "JPEG", exif=exif)
    return buf.getvalue()


def sixteen_bit():
    ramp = (np.tile(np.linspace(0, 65535, 128), (128, 1))).astype(np.uint16)
    ramp[40:90, 40:90] = 65535 - ramp[40:90, 40:90]
    image = Image.fromarray(ramp)  # uint16: Pillow's "I;16"
    assert image.mode == "I;16"
    return image


@pytest.mark.parametrize("make, size", [
    (lambda: Image.new("L", (128, 128), 90), (128, 128)),
    (lambda: Image.new("RGBA", (128, 128), (255, 0, 0, 100)), (128, 128)),
    (lambda: Image.new("P", (128, 128)), (128, 128)),
    (lambda: Image.new("CMYK", (128, 128), (0, 100, 0, 0)), (128, 128)),
    (lambda: Image.new("1", (128, 64)), (256, 128)),
    (lambda: Image.new("RGB", (1, 1), "red"), (128, 128)),
    (sixteen_bit, (128, 128)),
    (exif_rotated, (128, 256)),  # stored 128x64, rotated on load: portrait, not landscape
    (lambda: np.random.RandomState(0).rand(128, 128), (128, 128)),  # float array in [0, 1]
])
def test_unusual_images_work(make, size):
    assert detect("canny", make(), detect_resolution=128).size == size


def test_sixteen_bit_keeps_its_contrast():
    from annotators import to_rgb_array

    array = to_rgb_array(sixteen_bit())
    assert array.dtype == np.uint8 and array.min() == 0 and array.max() == 255
    assert np.asarray(detect("canny", sixteen_bit(), detect_resolution=128)).mean() > 1  # the square's edges


@pytest.mark.parametrize("make, message", [
    (lambda: b"this is not an image", "not a readable image"),
    (lambda: png_bytes(Image.new("RGB", (256, 256), "blue"))[:200], "damaged or truncated"),
    (lambda: np.full((64, 64, 3), np.nan), "NaN"),
    (lambda: np.zeros((64, 64, 7), np.uint8), "unsupported array shape"),
])
def test_bad_images_get_clear_errors(make, message):
    with pytest.raises(ImageInputError, match=message):
        detect("canny", make())


def test_huge_image_is_refused_before_decoding(monkeypatch):
    monkeypatch.setenv("CNET_MAX_IMAGE_PIXELS", str(100 * 100))
    data = png_bytes(Image.new("L", (200, 200)))
    with pytest.raises(ImageInputError, match="200x200"):
        detect("canny", data)


# -- CLI ------------------------------------------------------------------------------------------------------------

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "annotators", *args], capture_output=True, text=True, timeout=300)


def test_cli_lists_every_annotator_with_parameters():
    proc = run_cli("list")
    assert proc.returncode == 0
    for name in ANNOTATORS:
        assert name in proc.stdout
    assert "--low_threshold int = 100 [1, 255]" in proc.stdout and "--include_hand bool = False" in proc.stdout


def test_cli_batch_skips_and_reports_unreadable_files(tmp_path, astronaut):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(astronaut).save(src / "a.jpg")
    Image.fromarray(astronaut[:256]).save(src / "sub" / "b.png")
    (src / "broken.png").write_bytes(b"\x89PNG not really")
    (src / "notes.txt").write_text("ignored: not an image suffix")
    proc = run_cli("batch", "--kind", "canny", "--input", str(src), "--output", str(tmp_path / "maps"),
                   "--detect-resolution", "128", "--low", "50")
    assert proc.returncode == 0, proc.stderr
    assert "2 maps written" in proc.stdout and "1 file skipped" in proc.stdout
    assert "broken.png" in proc.stderr
    assert Image.open(tmp_path / "maps" / "a.png").size == (128, 128)
    assert Image.open(tmp_path / "maps" / "sub" / "b.png").size == (256, 128)


def test_cli_bad_parameter_is_reported(tmp_path, astronaut):
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    proc = run_cli("detect", "--kind", "canny", "--image", str(tmp_path / "a.png"), "--out", str(tmp_path / "o.png"),
                   "--blur", "3")
    assert proc.returncode == 2 and "unknown parameter(s) ['blur']" in proc.stderr
    proc = run_cli("detect", "--kind", "canny", "--image", str(tmp_path / "none.png"), "--out",
                   str(tmp_path / "o.png"))
    assert proc.returncode == 2 and "not a readable image" in proc.stderr
