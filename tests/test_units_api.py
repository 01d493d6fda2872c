"""Several units, region masks and reference pictures through the HTTP API (gradio_client), as a script calls it:
the mask invariants hold there too, and a public deployment bounds units, references and mask sizes."""

import numpy as np
import pytest
from PIL import Image, ImageOps

from cnet.tiny import save_tiny_ip_adapter

pytestmark = pytest.mark.slow  # two apps launched and called over HTTP: the full suite's


@pytest.fixture(scope="module")
def client(app_url):
    from gradio_client import Client

    return Client(app_url, verbose=False)


@pytest.fixture
def files(cond_map, tmp_path):
    from skimage import data

    paths = {"map": tmp_path / "map.png", "inverted": tmp_path / "inverted.png", "white": tmp_path / "white.png",
             "black": tmp_path / "black.png", "cat": tmp_path / "cat.png", "huge": tmp_path / "huge.png"}
    cond_map.save(paths["map"])
    ImageOps.invert(cond_map.convert("RGB")).save(paths["inverted"])
    Image.new("L", (64, 64), 255).save(paths["white"])
    Image.new("L", (64, 64), 0).save(paths["black"])
    Image.fromarray(data.chelsea()).save(paths["cat"])
    Image.new("L", (3000, 3000), 255).save(paths["huge"])
    return {k: str(v) for k, v in paths.items()}


def pixels(reply):
    return np.asarray(Image.open(reply[0][0]["image"]), dtype=np.int16)


def two_units(client, files, second_controlnet, **extra):
    from gradio_client import handle_file

    extra = {"strength": [1.0, 0.8], **extra}
    return client.predict(handle_file(files["map"]), more_images=[handle_file(files["inverted"])],
                          controlnet=["", str(second_controlnet)], steps=2, seed=5, api_name="/generate", **extra)


def test_two_units_and_the_mask_invariants_through_the_api(client, files, second_controlnet):
    from gradio_client import handle_file

    plain = two_units(client, files, second_controlnet)
    assert [(c["model"], c["strength"]) for c in plain[2][0]["controlnets"]][1] == (str(second_controlnet), 0.8)
    white = two_units(client, files, second_controlnet,
                      control_mask=[handle_file(files["white"]), handle_file(files["white"])])
    black = two_units(client, files, second_controlnet,
                      control_mask=[handle_file(files["white"]), handle_file(files["black"])])
    alone = client.predict(handle_file(files["map"]), steps=2, seed=5, api_name="/generate")
    assert np.array_equal(pixels(white), pixels(plain))
    assert np.array_equal(pixels(black), pixels(alone))
    assert not np.array_equal(pixels(plain), pixels(alone))
    with pytest.raises(Exception, match="strength has 3 values for 2 units"):
        two_units(client, files, second_controlnet, strength=[1.0, 0.5, 0.2])


def test_a_reference_picture_through_the_api(client, files, tiny_models, tmp_path):
    from gradio_client import handle_file

    adapter = save_tiny_ip_adapter(tiny_models[0], tmp_path / "adapter")
    images, _, metadata = client.predict(handle_file(files["map"]), reference=[handle_file(files["cat"])],
                                         reference_scale=0.7, ip_adapter=str(adapter), steps=2, seed=5,
                                         api_name="/generate")
    assert metadata[0]["image_prompts"][0]["scale"] == 0.7 and len(images) == 1
    # A reference alone (no map) runs the plain pipeline at the size asked.
    images, control_map, metadata = client.predict(reference=[handle_file(files["cat"])], ip_adapter=str(adapter),
                                                   width=64, height=64, steps=2, seed=5, api_name="/generate")
    assert control_map is None and metadata[0]["controlnets"] == []


def test_a_public_deployment_bounds_units_references_and_masks_over_http(public_app, files):
    from gradio_client import Client, handle_file

    client = Client(public_app[0], verbose=False)
    with pytest.raises(Exception, match="4 control units; at most 3"):
        client.predict(handle_file(files["map"]), more_images=[handle_file(files["map"])] * 3, steps=1,
                       api_name="/generate")
    with pytest.raises(Exception, match="at most 2 reference pictures"):
        client.predict(handle_file(files["map"]), reference=[handle_file(files["cat"])] * 3, steps=1,
                       api_name="/generate")
    with pytest.raises(Exception, match=r"mask is 3000x3000; at most 2048 px a side"):
        client.predict(handle_file(files["map"]), control_mask=[handle_file(files["huge"])], steps=1,
                       api_name="/generate")
    with pytest.raises(Exception, match=r"reference_only is 3000x3000; at most 2048 px a side"):
        client.predict(handle_file(files["map"]), reference_only=handle_file(files["huge"]), steps=1,
                       api_name="/generate")
    with pytest.raises(Exception, match="this deployment accepts Hub ids"):
        client.predict(handle_file(files["map"]), reference=[handle_file(files["cat"])], ip_adapter="/etc/passwd",
                       steps=1, api_name="/generate")


def test_a_public_deployment_bounds_the_pose_canvas_over_http(public_app, raw_ui):
    """The pose editor's value is text any client may send to the Generate event: a canvas larger than the
    deployment's side is refused by name before anything is drawn."""
    import json

    ui = raw_ui(public_app[0])
    source = next(c for c in ui.find("generate")["inputs"] if ui.components[c]["type"] == "state")
    select_pose = next(d for d in ui.config["dependencies"] for target, name in d["targets"] if name == "select"
                       and ui.components[target]["props"].get("label") == "Pose" and source in d["outputs"])
    session = "a-huge-pose"
    ui.http.post(public_app[0] + "gradio_api/run/predict", json={"data": [], "fn_index": select_pose["id"],
                                                                "session_hash": session}).raise_for_status()
    huge = json.dumps({"canvas_width": 5000, "canvas_height": 5000, "people": []})
    reply = ui.call("generate", session=session, **{"pose-editor": huge})
    assert "canvas_width=5000 must be a number of pixels from 16 to 1024" in ui.error(reply)
