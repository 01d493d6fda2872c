"""A real browser (Debian's chromium via playwright): draw, pick a prompt mode, generate, see the image."""

import json
import os
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                       reason="Debian chromium is not installed (.ci/run installs it; CI never skips)"),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield browser
        browser.close()


def set_numbers(page, **values):
    """Type each value into the number box of the element with that id, as a user would (Enter commits it)."""
    for elem, value in values.items():
        box = page.locator(f"#{elem} input[type=number]")
        box.fill(value)
        box.press("Enter")


def upload_to(page, tab, elem_id, path, settle_ms=1500):
    """Open the Generate tab's `tab` (Photo, Map) and upload `path` into its image component."""
    page.get_by_role("tab", name=tab, exact=True).click()
    page.locator(f"#{elem_id} input[type=file]").set_input_files(str(path))
    page.wait_for_timeout(settle_ms)


def generate_and_read(page, app_url, tmp_path):
    """Two steps, Generate, then the first saved PNG fetched from the app as a user's download: its metadata."""
    import urllib.parse
    import urllib.request

    from cnet.result import read_metadata

    set_numbers(page, steps="2")
    page.locator("#generate").click()
    page.wait_for_selector("#files a", timeout=90_000)
    href = page.locator("#files a").first.get_attribute("href")
    (tmp_path / "out.png").write_bytes(urllib.request.urlopen(urllib.parse.urljoin(app_url, href)).read())
    return read_metadata(tmp_path / "out.png")


def open_app(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(app_url)
    page.wait_for_selector("#sketch canvas", timeout=60_000)
    return page


@pytest.fixture(scope="module")
def page(browser, app_url):
    """One page the tests below share, in order (a drawing, then a stopped run)."""
    return open_app(browser, app_url)


@pytest.fixture
def fresh_page(browser, app_url):
    page = open_app(browser, app_url)
    yield page
    page.close()


def test_the_canny_thresholds_show_on_first_load(fresh_page):
    fresh_page.get_by_text("Annotator settings").click()
    fresh_page.wait_for_timeout(500)
    for label in ("low threshold", "high threshold"):
        assert fresh_page.get_by_text(label, exact=True).first.is_visible(), label


def test_no_label_covers_a_canvas_and_no_dropdown_text_runs_under_its_caret(fresh_page):
    page = fresh_page
    for tab, canvas, caption in (("Draw", "#sketch", "Sketch: black strokes"),
                                 ("Photo", "#photo", "Photo: the annotator extracts the map"),
                                 ("Map", "#map-editor", "Condition map: upload a ready map")):
        page.get_by_role("tab", name=tab, exact=True).click()
        page.wait_for_timeout(300)
        covered = page.evaluate("""(sel) => {
            const box = document.querySelector(sel).querySelector('.image-container, canvas, .upload-container')
                .getBoundingClientRect();
            return [...document.querySelector(sel).querySelectorAll('label')].filter(l => {
                const r = l.getBoundingClientRect();
                return r.width > 0 && r.bottom > box.top + 1 && r.top < box.bottom && r.right > box.left
                    && r.left < box.right && getComputedStyle(l).display !== 'none' && l.innerText.trim();
            }).map(l => l.innerText);
        }""", canvas)
        assert covered == [], (tab, covered)
        label = page.locator(".canvas-caption").get_by_text(caption)
        assert label.is_visible()  # its caption, above it
        assert label.bounding_box()["y"] < page.locator(canvas).bounding_box()["y"]
    page.get_by_role("tab", name="Draw", exact=True).click()
    for dropdown in ("#kind", "#annotator"):
        gap = page.evaluate("""(sel) => {
            const input = document.querySelector(sel + ' input');
            const caret = document.querySelector(sel + ' .icon-wrap').getBoundingClientRect();
            const textEnd = input.getBoundingClientRect().right - parseFloat(getComputedStyle(input).paddingRight);
            return caret.left - textEnd;
        }""", dropdown)
        assert gap >= 0, (dropdown, gap)


def test_loading_examples_keeps_the_custom_prompt_visible_and_editable(fresh_page):
    """Example 1 (custom) then example 4 (custom again): the box must show the prompt that will be sent."""
    rows = json.loads((Path(__file__).resolve().parents[1] / "examples" / "examples.json").read_text())["photos"]
    examples = fresh_page.locator("tr.tr-body")  # the photo examples' rows come first
    box = fresh_page.locator("#prompt textarea")
    for index in (0, 3, 1, 3):  # custom, custom, auto (hidden), custom
        examples.nth(index).click()
        fresh_page.wait_for_timeout(1000)
        if rows[index]["prompt_mode"] == "custom":
            assert box.is_visible() and box.input_value() == rows[index]["prompt"], index
            box.fill("my own words")
            assert box.input_value() == "my own words"
        else:
            assert not box.is_visible(), index


def test_draw_choose_prompt_mode_generate(page, tmp_path):
    page.locator("#sketch button[aria-label='Brush']").click()
    box = page.locator("#sketch canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx - 80, cy - 60)
    page.mouse.down()
    for step in range(1, 21):
        page.mouse.move(cx - 80 + step * 8, cy - 60 + step * 6)
    page.mouse.up()

    page.locator("#prompt-mode label", has_text="No prompt").click()
    # Set a small size and few steps as a user would, in Advanced settings (the tiny model's output is noise).
    page.locator("#advanced").get_by_text("Advanced settings").click()
    set_numbers(page, steps="2", width="64", height="64")
    page.locator("#generate").click()
    page.wait_for_selector("#gallery img", timeout=60_000)
    page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2", timeout=60_000)

    shots = Path(os.environ.get("CNET_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "generate.png"), full_page=True)

    assert page.locator("#used-prompt textarea").input_value() == ""  # No prompt: a truly empty text condition
    sources = [img.get_attribute("src") for img in page.locator("#gallery img").all()]
    assert len(sources) >= 2  # the image and the condition map
    # The condition map is the drawn stroke as white on black: fetch it and check it has strokes.
    response = page.request.get(sources[-1])
    path = tmp_path / "map.png"
    path.write_bytes(response.body())
    drawn = np.asarray(Image.open(path).convert("L"))
    assert 0 < (drawn > 127).mean() < 0.2 and drawn[0, 0] == 0
    if os.environ.get("CNET_SCREENSHOT_DIR"):
        shutil.copy(path, shots / "map.png")


def test_stop_ends_a_long_generation_and_the_next_one_runs_at_once(page):
    """Stop during an 80-step run at 1024x1024 (~70 s here): the next request must not wait for it to finish."""
    import time

    set_numbers(page, steps="80", width="1024", height="1024")
    shown_before = page.locator("#gallery img").count()
    page.locator("#generate").click()
    page.wait_for_timeout(4000)  # a few denoising steps in
    page.locator("#stop").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped after step')",
                           timeout=10_000)
    assert re.search(r"Stopped after step \d+ of 80", page.locator("#status").inner_text())
    assert page.locator("#gallery img").count() == shown_before >= 2  # the previous results stay
    page.locator("#prompt-mode label", has_text="Custom").click()
    page.locator("#prompt textarea").fill("after the stop")
    set_numbers(page, steps="2", width="64", height="64")
    started = time.monotonic()
    page.locator("#generate").click()
    page.wait_for_function("document.querySelector('#used-prompt textarea').value === 'after the stop'",
                           timeout=60_000)
    assert time.monotonic() - started < 25  # the stopped run had over a minute left: it let go at once


def test_an_error_is_shown_once_and_the_last_result_stays(page):
    """Custom mode with an empty prompt: one notice and the message in the status line; the images stay."""
    shown_before = page.locator("#gallery img").count()
    assert shown_before >= 2
    page.locator("#prompt textarea").fill("")
    page.locator("#generate").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('needs a non-empty prompt')",
                           timeout=30_000)
    assert page.locator("#gallery img").count() == shown_before
    assert page.get_by_text("Error", exact=True).count() == 0  # no error badge over every pane
    assert page.locator(".toast-body").count() == 1


@contextmanager
def demo_page(browser, tmp_path, monkeypatch, **env):
    """A page of the app in demo mode (no CNET_* models but `env`'s, the Hub offline), 1400x1000."""
    from conftest import launched

    for name in [k for k in os.environ if k.startswith("CNET_") and k != "CNET_DTYPE"]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with launched(False, tmp_path / "out", tmp_path / "ws") as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#sketch canvas", timeout=60_000)
        yield page


def test_in_demo_mode_the_first_screen_shows_one_status_line_and_the_generate_button(browser, tmp_path, monkeypatch):
    """Offline without Stable Diffusion: one line says the demo is running; Generate is on the first screen."""
    with demo_page(browser, tmp_path, monkeypatch) as page:
        summary = page.locator("#model-summary").inner_text()
        assert summary.startswith("Demo mode") and "Model details" in summary
        assert not page.locator("#model-status").is_visible()  # the download hints are folded
        box = page.locator("#generate").bounding_box()
        assert box["y"] + box["height"] <= 1000, box  # no scrolling to find Generate
        page.screenshot(path=str(tmp_path / "first-screen.png"))
        # The form starts with what the demo understands: a scribble, a circle prompt, its size.
        assert page.locator("#kind input").first.input_value().startswith("scribble")
        assert page.locator("#prompt textarea").input_value() == "red circle with blue background"
        page.locator("#advanced").get_by_text("Advanced settings").click()
        assert page.locator("#width input[type=number]").input_value() == "64"
        # Draw a circle outline and generate as is: the circle prompt is what is sent.
        page.locator("#sketch button[aria-label='Brush']").click()
        canvas = page.locator("#sketch canvas").first.bounding_box()
        cx, cy = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
        page.mouse.move(cx + 90, cy)
        page.mouse.down()
        for degrees in range(0, 370, 10):
            page.mouse.move(cx + 90 * np.cos(np.radians(degrees)), cy + 90 * np.sin(np.radians(degrees)))
        page.mouse.up()
        page.locator("#generate").click()
        page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2", timeout=60_000)
        assert page.locator("#used-prompt textarea").input_value() == "red circle with blue background"
        page.close()


def test_the_train_tab_restores_the_shown_run_and_hands_its_result_to_generate(browser, tiny_models, circles,
                                                                               tmp_path):
    """A finished run in the workspace, a fresh page (a reload, or an app restart): the form shows that run's
    settings, the fidelity curve is plotted, and "Use in Generate" switches tab, opens the fields it fills (the
    ControlNet and its base model) and says so."""
    from conftest import launched

    from train.config import TrainConfig
    from train.loop import train

    workspace = tmp_path / "ws"
    out = workspace / "runs" / "lab"
    train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(out), resolution=64,
                      batch_size=2, max_steps=4, validate_every=4, num_validation=2, validation_steps=2,
                      fidelity="shapes", checkpoint_every=100))  # one validation: a plot of one point
    with launched(False, tmp_path / "out", workspace) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.wait_for_selector("#sketch canvas", timeout=60_000)
        page.get_by_role("tab", name="Train").click()
        page.wait_for_function("document.querySelector('#train-status').innerText.includes('lab finished')",
                               timeout=30_000)
        assert page.locator("#train-name textarea").input_value() == "lab"
        assert page.locator("#train-base-model textarea").input_value() == str(tiny_models[0])
        assert page.locator("#train-dataset textarea").input_value() == str(circles)
        assert "Validation circle IoU (higher is better)" in page.locator("#train-status").inner_text()
        assert page.locator("#train-fidelity").is_visible()
        # A plot of one point labelled its axes with that point ("0.177480", "4.000000"): now the run's length and
        # the share's range, in short numbers.
        import re

        page.wait_for_function("document.querySelector('#train-fidelity').innerText.includes('step')",
                               timeout=30_000)
        for plot in ("#train-fidelity", "#train-loss"):  # and no "2e+2" for step 200 ("~g" gave that on 1,000 steps)
            text = page.locator(plot).inner_text()
            assert not re.search(r"\d\.\d{5}|\de[+-]\d", text), text
        page.get_by_text("More", exact=True).first.click()  # the accordion with transfer and light training
        assert page.locator("#train-lora-rank input").input_value() == "0"  # light training's field, at its default
        page.screenshot(path=str(tmp_path / "train-tab.png"))

        # Push to Hub offline (the app was started with HF_HUB_OFFLINE): the status says so and how to push later.
        page.locator("#train-repo-id textarea").fill("me/lab")
        page.locator("#train-push").click()
        page.wait_for_function("document.body.innerText.includes('Hugging Face Hub is unreachable')", timeout=30_000)
        assert f"python -m train push --run {out} --repo-id me/lab" in page.locator("body").inner_text()
        assert (out / "controlnet" / "samples.png").is_file()  # the result as it was

        page.locator("#train-use").click()
        page.wait_for_function("document.querySelector('#controlnet textarea')?.value.endsWith('controlnet')",
                               timeout=30_000)
        assert page.locator("#generate").is_visible()  # the Generate tab is the one shown
        assert page.locator("#controlnet textarea").is_visible()  # in Advanced settings, opened
        assert page.locator("#controlnet textarea").input_value() == str(out / "controlnet")
        assert page.locator("#base-model textarea").input_value() == str(tiny_models[0])
        assert page.get_by_text("Generate now uses the run's ControlNet, its finished result").first.is_visible()

        # A run stopped before its end (the trainer's STOP file, as the tab's Stop writes it) has checkpoints and
        # no result: "Use in Generate" hands over the newest checkpoint and says which (it used to stay on the
        # Train tab with an error).
        half = workspace / "runs" / "half"
        half.mkdir(parents=True)

        def stop_after_step_one(event, info):
            if event == "log":
                (half / "STOP").touch()  # what the tab's Stop writes: the trainer checkpoints and ends

        train(TrainConfig(base_model=str(tiny_models[0]), dataset=str(circles), output_dir=str(half),
                          resolution=64, batch_size=2, max_steps=4, checkpoint_every=100, log_every=1),
              stop_after_step_one)
        assert not (half / "controlnet").exists()
        page.reload()
        page.wait_for_selector("#sketch canvas", timeout=60_000)
        page.get_by_role("tab", name="Train").click()
        page.wait_for_function("document.querySelector('#train-name textarea').value === 'half'", timeout=30_000)
        page.locator("#train-use").click()
        page.wait_for_function("document.querySelector('#controlnet textarea')?.value.includes('half')",
                               timeout=30_000)
        assert page.locator("#generate").is_visible()
        assert page.locator("#controlnet textarea").input_value() == str(half / "use-in-generate" /
                                                                         "step-00000001" / "controlnet")
        assert page.get_by_text("its newest checkpoint (step 1; the run has not finished)").first.is_visible()

        page.get_by_role("tab", name="Train").click()
        page.locator("#train-quick").click()  # the quick start fills the form with the demo's 12-minute recipe
        page.wait_for_function("document.querySelector('#train-name textarea').value === 'demo-circles-quick'",
                               timeout=30_000)
        assert page.get_by_label("Max steps").input_value() == "600"
        assert page.get_by_label("Gradient accumulation").input_value() == "2"
        page.close()


def test_paint_a_mask_and_inpaint_in_the_edit_tab(browser, app_url, tmp_path):
    """Upload a picture in the Edit tab, paint over part of it, preview the mask, inpaint: the unpainted pixels of
    the saved result are the picture's."""
    import urllib.parse
    import urllib.request

    yy, xx = np.mgrid[:128, :128]
    photo = np.stack([xx * 2, yy * 2, (xx + yy)], axis=-1).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "picture.png")
    page = open_app(browser, app_url)
    page.get_by_role("tab", name="Edit", exact=True).click()
    page.locator("#edit-picture input[type=file]").set_input_files(str(tmp_path / "picture.png"))
    page.wait_for_timeout(1500)
    page.locator("#edit-operation label", has_text="inpaint").click()
    page.locator("#edit-picture button[aria-label='Brush']").click()
    canvas = page.locator("#edit-picture canvas").first.bounding_box()
    cx, cy = canvas["x"] + canvas["width"] / 2, canvas["y"] + canvas["height"] / 2
    page.mouse.move(cx - 20, cy)
    page.mouse.down()
    for step in range(11):
        page.mouse.move(cx - 20 + step * 4, cy + (step % 2) * 4)
    page.mouse.up()
    page.locator("#edit-preview").click()
    page.wait_for_selector("#edit-preview-image img", timeout=30_000)
    box = page.locator("#edit-steps input[type=number]")
    page.get_by_text("Steps, guidance, seed").click()
    box.fill("2")
    box.press("Enter")
    page.locator("#edit-run").click()
    page.wait_for_function("document.querySelectorAll('#edit-gallery img').length >= 2", timeout=90_000)
    page.screenshot(path=str(tmp_path / "edit.png"), full_page=True)
    page.wait_for_selector("#edit-files a", timeout=30_000)
    href = page.locator("#edit-files a").first.get_attribute("href")
    data = urllib.request.urlopen(urllib.parse.urljoin(app_url, href)).read()
    (tmp_path / "out.png").write_bytes(data)
    from cnet.result import read_metadata

    meta = read_metadata(tmp_path / "out.png")
    assert meta["mode"] == "inpaint" and meta["keep_unmasked"] is True
    out = np.asarray(Image.open(tmp_path / "out.png").convert("RGB"), dtype=np.int16)
    assert out.shape == (128, 128, 3)
    same = (out == photo.astype(np.int16)).all(axis=-1)
    assert 0.5 < same.mean() < 1.0  # the painted stroke was redrawn; the rest is the picture, exactly
    page.close()


def test_the_edit_preview_follows_the_operation_the_sides_and_the_picture(browser, app_url, astronaut, tmp_path):
    """"Picture and mask" showed the last Preview whatever changed after it. The operation and an outpaint side
    redraw it; a new picture clears it."""
    Image.fromarray(astronaut).resize((128, 96)).save(tmp_path / "picture.png")
    Image.fromarray(astronaut).resize((64, 64)).save(tmp_path / "other.png")
    page = open_app(browser, app_url)
    page.get_by_role("tab", name="Edit", exact=True).click()
    page.locator("#edit-picture input[type=file]").set_input_files(str(tmp_path / "picture.png"))
    page.wait_for_timeout(1500)
    shown = "document.querySelector('#edit-preview-image img')?.naturalWidth"
    page.locator("#edit-preview").click()
    page.wait_for_function(f"{shown} === 128", timeout=30_000)
    page.locator("#edit-operation label", has_text="outpaint").click()  # 128 px more on the right by default
    page.wait_for_function(f"{shown} === 256", timeout=30_000)
    box = page.locator("#edit-outpaint-right input[type=number]")
    box.fill("64")
    box.press("Enter")
    page.wait_for_function(f"{shown} === 192", timeout=30_000)
    page.locator("#edit-operation label", has_text="img2img").click()
    page.wait_for_function(f"{shown} === 128", timeout=30_000)
    page.locator("#edit-picture input[type=file]").set_input_files(str(tmp_path / "other.png"))
    page.wait_for_function("!document.querySelector('#edit-preview-image img')", timeout=30_000)
    page.locator("#edit-preview").click()
    page.wait_for_function(f"{shown} === 64", timeout=30_000)
    page.close()


def test_dropping_a_saved_png_restores_the_form(browser, app_url, tiny_models, cond_map, tmp_path):
    """A PNG made with custom settings, dropped on a fresh page: the form takes them back."""
    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest, ImagePrompt
    from cnet.tiny import save_tiny_ip_adapter

    adapter = save_tiny_ip_adapter(tiny_models[0], tmp_path / "adapter")
    result = Engine(str(tiny_models[0]), device="cpu").generate(GenerationRequest(
        units=[ControlUnit(cond_map, kind="scribble", controlnet=str(tiny_models[1]), strength=0.65,
                           control_mode="prompt"),
               ControlUnit(cond_map, kind="depth", controlnet=str(tiny_models[1]), strength=0.45, end=0.7)],
        image_prompts=[ImagePrompt(cond_map, scale=0.35)], ip_adapter=str(adapter),
        prompt_mode="custom", prompt="a lighthouse at dusk", negative_prompt="blurry", num_inference_steps=7,
        guidance_scale=6.5, seed=4242, width=64, height=64, scheduler="unipc", resize_mode="resize_and_fill"))
    saved = result.save(tmp_path)[0]
    page = open_app(browser, app_url)
    # The drop zone shows its whole text (at 90 px high "Click to Upload" was cut off; issue 30).
    inside = page.evaluate("""() => {
        const zone = document.querySelector('#settings-png'), box = zone.getBoundingClientRect();
        const walker = document.createTreeWalker(zone, NodeFilter.SHOW_TEXT);
        for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            if (node.textContent.includes('Click to Upload')) {
                const range = document.createRange(); range.selectNodeContents(node);
                const text = range.getBoundingClientRect();
                return text.bottom <= box.bottom && text.top >= box.top;
            }
        }
        return null;
    }""")
    assert inside is True
    page.locator("#settings-png input[type=file]").set_input_files(str(saved))
    page.wait_for_function("document.querySelector('#prompt textarea')?.value === 'a lighthouse at dusk'",
                           timeout=30_000)
    assert page.locator("#prompt textarea").is_visible()  # custom mode: the box shows
    page.locator("#advanced").get_by_text("Advanced settings").click()
    assert page.locator("#steps input[type=number]").input_value() == "7"
    assert page.get_by_label("Seed", exact=True).input_value() == "4242"
    assert not page.get_by_label("Random seed").is_checked()
    assert page.get_by_label("Control strength").first.input_value() == "0.65"
    # The ControlNet was the kind's default here (CNET_CONTROLNET_SCRIBBLE): the field stays empty, following the kind
    assert page.locator("#controlnet textarea").input_value() == ""
    assert page.locator("#kind input").first.input_value().startswith("scribble")
    assert "Settings restored" in page.locator("#status").inner_text()
    # The second unit comes back in the list, the reference in its slot; their files are named for upload.
    assert page.locator("#unit2").first.is_visible() and page.locator("#reference1").first.is_visible()
    assert page.locator("#unit2-kind input").input_value() == "depth"
    assert page.locator("#unit2-strength input[type=number]").input_value() == "0.45"
    assert page.locator("#unit2-end input[type=number]").input_value() == "0.7"
    assert page.locator("#reference1-scale input[type=number]").input_value() == "0.35"
    assert "-control1.png" in page.locator("#status").inner_text()
    page.close()


def test_history_sends_a_result_to_edit_and_back_as_a_condition(browser, app_url, tmp_path):
    from skimage import data

    Image.fromarray(data.astronaut()).resize((128, 128)).save(tmp_path / "photo.png")
    page = open_app(browser, app_url)
    upload_to(page, "Photo", "photo", tmp_path / "photo.png", settle_ms=1000)
    page.locator("#advanced").get_by_text("Advanced settings").click()
    set_numbers(page, steps="2", width="64", height="64")
    page.locator("#generate").click()
    page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2", timeout=60_000)
    page.locator("#history").get_by_text("History (this session)").click()
    page.wait_for_selector("#history-gallery img", timeout=30_000)
    page.locator("#history-gallery img").first.click()
    page.wait_for_timeout(500)
    page.locator("#history-upscale").click()
    page.wait_for_selector("#edit-run", state="visible", timeout=30_000)
    assert page.locator("#edit-operation input[value=upscale]").is_checked()
    page.wait_for_timeout(1000)
    assert page.locator("#edit-picture canvas").first.is_visible()  # the picture is in the editor
    page.get_by_text("Sent to the Edit tab (upscale)").first.wait_for(timeout=10_000)

    page.locator("#history-condition").click()  # the History section is below the tabs: still there
    page.wait_for_selector("#generate", state="visible", timeout=30_000)
    page.get_by_text("Set as the condition map").first.wait_for(timeout=10_000)
    page.close()


def test_the_demo_edits_a_circle_from_its_example(browser, tmp_path, monkeypatch):
    """Offline, without Stable Diffusion: the Edit tab's demo example recolours a circle, start to finish."""
    with demo_page(browser, tmp_path, monkeypatch) as page:
        page.get_by_role("tab", name="Edit", exact=True).click()
        page.get_by_text("Demo model examples (recolour)").wait_for(timeout=10_000)
        page.locator("#edit-prompt-mode").scroll_into_view_if_needed()
        page.locator("tr.tr-body").filter(visible=True).first.click()  # the Edit tab's first example
        page.wait_for_function("document.querySelector('#edit-prompt textarea')?.value.includes('circle')",
                               timeout=30_000)
        page.wait_for_timeout(1000)
        page.locator("#edit-run").click()
        page.wait_for_function("document.querySelectorAll('#edit-gallery img').length >= 2", timeout=90_000)
        assert page.locator("#edit-used-prompt textarea").input_value() == "blue circle with yellow background"

        # Outpaint and upscale change the picture's size, which the 64 px demo cannot: said under the operation
        # before the run, and refused by name at it (they used to return a 64x64 crop or circle, silently).
        shown = page.locator("#edit-gallery img").count()
        for operation in ("outpaint", "upscale"):
            page.locator("#edit-operation label", has_text=operation).click()
            page.wait_for_function("document.querySelector('#edit-operation').innerText.includes('not on the "
                                   "offline demo model')", timeout=10_000)
            if operation == "outpaint":
                page.locator("#edit-outpaint-right input[type=number]").fill("32")
            page.locator("#edit-run").click()
            page.get_by_text(f"operation='{operation}' needs Stable Diffusion").first.wait_for(timeout=30_000)
        assert page.locator("#edit-gallery img").count() == shown  # nothing new came back
        page.close()


def selected_tabs(page, names):
    return [n for n in names if page.get_by_role("tab", name=n, exact=True).get_attribute("aria-selected") == "true"]


def test_the_tab_shown_and_the_picture_edited_follow_the_last_thing_done(browser, astronaut, tmp_path, monkeypatch):
    """What a newcomer reported (issue 30, item 3), as a regression test: Generate from the Photo tab stays on it;
    Preview map shows the Map tab, also a second time after going back to Photo; an Edit-tab example replaces a
    picture already loaded and painted on."""
    Image.fromarray(astronaut).resize((96, 96)).save(tmp_path / "photo.png")
    sources = ("Draw", "Photo", "Pose", "Map")
    with demo_page(browser, tmp_path, monkeypatch) as page:
        upload_to(page, "Photo", "photo", tmp_path / "photo.png")
        page.locator("#generate").click()
        page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2", timeout=90_000)
        page.wait_for_timeout(1000)
        assert selected_tabs(page, sources) == ["Photo"]
        for _ in range(2):
            page.get_by_role("tab", name="Photo", exact=True).click()
            page.get_by_role("button", name="Preview map").click()
            page.wait_for_function("[...document.querySelectorAll('[role=tab]')].some(t => t.innerText === 'Map' "
                                   "&& t.getAttribute('aria-selected') === 'true')", timeout=30_000)

        page.get_by_role("tab", name="Edit", exact=True).click()
        page.locator("#edit-picture input[type=file]").set_input_files(str(tmp_path / "photo.png"))
        page.wait_for_timeout(1500)
        page.locator("#edit-operation label", has_text="inpaint").click()
        paint_stroke(page, "edit-picture")
        page.locator("tr.tr-body").filter(visible=True).nth(1).click()  # a 64 px circle, img2img
        page.wait_for_function("document.querySelector('#edit-prompt textarea')?.value.includes('green')",
                               timeout=30_000)
        page.wait_for_timeout(1000)
        page.locator("#edit-preview").click()
        page.wait_for_function("document.querySelector('#edit-preview-image img')?.naturalWidth === 64",
                               timeout=30_000)
        page.close()


def test_the_edit_tabs_output_size_renders_img2img_at_another_size(browser, app_url, tmp_path):
    """Output size (img2img, inpaint): width alone keeps the aspect ratio; the field hides for an upscale."""
    import urllib.parse
    import urllib.request

    from cnet.result import read_metadata

    yy, xx = np.mgrid[:256, :128]
    Image.fromarray(np.stack([xx * 2, yy, (xx + yy) // 2], axis=-1).astype(np.uint8)).save(tmp_path / "tall.png")
    page = open_app(browser, app_url)
    page.get_by_role("tab", name="Edit", exact=True).click()
    page.locator("#edit-picture input[type=file]").set_input_files(str(tmp_path / "tall.png"))
    page.wait_for_timeout(1500)
    page.get_by_text("Steps, guidance, seed").click()
    set_numbers(page, **{"edit-steps": "2"})
    page.get_by_text("Output size").click()
    width = page.locator("#edit-width input[type=number]")
    for attempt in range(3):  # on a loaded machine a keystroke can land before the opened accordion settles
        width.fill("64")
        width.press("Enter")
        width.press("Tab")  # leaving the box commits it, as a user moving on does
        try:
            page.wait_for_function("document.querySelector('#edit-width input[type=range]').value === '64'",
                                   timeout=15_000)
            break
        except Exception:
            if attempt == 2:
                raise
    page.wait_for_timeout(500)
    page.locator("#edit-run").click()
    page.wait_for_selector("#edit-files a", timeout=90_000)
    href = page.locator("#edit-files a").first.get_attribute("href")
    (tmp_path / "out.png").write_bytes(urllib.request.urlopen(urllib.parse.urljoin(app_url, href)).read())
    meta = read_metadata(tmp_path / "out.png")
    assert (meta["width"], meta["height"]) == (64, 128) and meta["mode"] == "img2img"
    assert Image.open(tmp_path / "out.png").size == (64, 128)
    page.locator("#edit-operation label", has_text="upscale").click()
    page.wait_for_function("!document.querySelector('#edit-width')?.checkVisibility()", timeout=10_000)
    page.close()


def test_an_sdxl_base_its_family_and_a_lora_from_the_generate_tab(browser, app_url, cond_map, tmp_path):
    """Advanced settings: name an SDXL base (its family shows when the field is left), its ControlNet and a LoRA;
    upload a ready map; generate: the saved PNG says SDXL and lists the LoRA."""
    from cnet.tiny import save_tiny_lora, save_tiny_models

    base, controlnet = save_tiny_models(tmp_path / "xl", family="sdxl")
    lora = save_tiny_lora(base, tmp_path / "lora")
    cond_map.save(tmp_path / "map.png")
    page = open_app(browser, app_url)
    upload_to(page, "Map", "map-editor", tmp_path / "map.png")
    page.locator("#advanced").get_by_text("Advanced settings").click()
    page.locator("#base-model textarea").fill(str(base))
    page.locator("#controlnet textarea").click()  # leaving the base model field shows its family
    page.wait_for_function("document.querySelector('#base-family')?.innerText.includes('Stable Diffusion XL')",
                           timeout=30_000)
    page.locator("#controlnet textarea").fill(str(controlnet))
    page.locator("#loras textarea").fill(f"{lora}:0.6")
    meta = generate_and_read(page, app_url, tmp_path)
    assert meta["family"] == "sdxl" and meta["base_model"]["model"] == str(base)
    assert meta["loras"][0]["model"] == str(lora) and meta["loras"][0]["weight"] == 0.6
    page.close()


def test_the_image_forming_shows_while_a_run_goes_and_hides_after(browser, app_url, cond_map, tmp_path):
    cond_map.save(tmp_path / "map.png")
    page = open_app(browser, app_url)
    upload_to(page, "Map", "map-editor", tmp_path / "map.png")
    page.locator("#advanced").get_by_text("Advanced settings").click()
    set_numbers(page, steps="30", width="512", height="512")
    page.locator("#generate").click()
    # A few steps in, the preview shows a picture; when the run ends it hides and the result is in the gallery.
    page.wait_for_selector("#live img", state="visible", timeout=60_000)
    assert page.locator("#live img").get_attribute("src")
    page.wait_for_selector("#files a", timeout=120_000)
    page.wait_for_selector("#live", state="hidden", timeout=10_000)
    assert page.locator("#gallery img").count() >= 2
    page.close()


def test_a_stop_that_overtakes_its_runs_request_ends_that_run(browser, app_url, cond_map, tmp_path):
    """The browser sends a run's request only after uploading its pictures, so a Stop pressed in the first second
    can reach the server first. Here the run's request is held until the Stop has been answered: the Stop must
    say the run is stopped, and the run, arriving after it, must make nothing. The next click runs."""
    cond_map.save(tmp_path / "map.png")
    page = open_app(browser, app_url)
    upload_to(page, "Map", "map-editor", tmp_path / "map.png")
    page.locator("#advanced").get_by_text("Advanced settings").click()
    set_numbers(page, steps="2")
    held = []
    page.route("**/queue/join*", lambda route: held.append(route))
    page.locator("#generate").click()
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the run's request never left the page"
    page.locator("#stop").click()
    page.wait_for_function("document.querySelector('#status').innerText.includes('Stopped before it started')",
                           timeout=10_000)
    held[0].continue_()
    page.unroute("**/queue/join*")
    page.wait_for_timeout(8000)  # a 2-step run of the tiny model takes about a second here
    assert page.locator("#gallery img").count() == 0 and page.locator("#files a").count() == 0
    assert page.locator("#status").inner_text().startswith("Stopped")  # the run's own word when it arrived
    page.locator("#generate").click()
    page.wait_for_selector("#files a", timeout=60_000)
    page.close()


def test_a_flux_base_in_the_generate_tab_sets_its_guidance_and_generates(browser, app_url, cond_map, tmp_path):
    """Name a FLUX.1 base: its family and notes show when the field is left, the guidance moves from SD's CFG 9 to
    FLUX.1's distilled 3.5; with its ControlNet and a ready map it generates, and the PNG says so."""
    from cnet.tiny_dit import save_tiny_dit_models

    base, controlnet = save_tiny_dit_models(tmp_path / "flux", family="flux")
    cond_map.save(tmp_path / "map.png")
    page = open_app(browser, app_url)
    upload_to(page, "Map", "map-editor", tmp_path / "map.png")
    page.locator("#advanced").get_by_text("Advanced settings").click()
    assert page.locator("#guidance input[type=number]").input_value() == "9"
    page.locator("#base-model textarea").fill(str(base))
    page.locator("#controlnet textarea").click()
    page.wait_for_function("document.querySelector('#base-family')?.innerText.includes('FLUX.1')", timeout=30_000)
    assert "needs True CFG" in page.locator("#base-family").inner_text()
    page.wait_for_function("document.querySelector('#guidance input[type=number]').value === '3.5'", timeout=10_000)
    page.locator("#controlnet textarea").fill(str(controlnet))
    meta = generate_and_read(page, app_url, tmp_path)
    assert (meta["family"], meta["scheduler"], meta["guidance_scale"]) == ("flux", "flow_euler", 3.5)
    page.close()


def test_the_edit_tab_outpaints_with_a_flux_base_and_its_own_controlnet(browser, app_url, tmp_path):
    """The Edit tab with a FLUX.1 base (named in Generate's advanced settings) and a ControlNet for it in the Edit
    tab's own field: an outpaint runs on FLUX.1's inpaint pipeline and the PNG says so."""
    import urllib.parse
    import urllib.request

    from cnet.result import read_metadata
    from cnet.tiny_dit import save_tiny_dit_models

    base, controlnet = save_tiny_dit_models(tmp_path / "flux", family="flux")
    Image.fromarray(np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).astype(np.uint8)).save(tmp_path / "p.png")
    page = open_app(browser, app_url)
    page.locator("#advanced").get_by_text("Advanced settings").click()
    page.locator("#base-model textarea").fill(str(base))
    page.get_by_role("tab", name="Edit", exact=True).click()
    page.locator("#edit-picture input[type=file]").set_input_files(str(tmp_path / "p.png"))
    page.wait_for_timeout(1500)
    page.locator("#edit-operation label", has_text="outpaint").click()
    page.locator("#edit-controlnet textarea").fill(str(controlnet))
    page.get_by_text("Steps, guidance, seed").click()
    set_numbers(page, **{"edit-steps": "2"})
    page.locator("#edit-run").click()
    page.wait_for_selector("#edit-files a", timeout=90_000)
    href = page.locator("#edit-files a").first.get_attribute("href")
    (tmp_path / "out.png").write_bytes(urllib.request.urlopen(urllib.parse.urljoin(app_url, href)).read())
    meta = read_metadata(tmp_path / "out.png")
    assert meta["family"] == "flux" and meta["operation"] == "outpaint"
    assert meta["controlnets"][0]["model"] == str(controlnet)
    page.close()


def pick(page, elem_id, option):
    """Choose `option` in the dropdown with this id, as a user does: open it, click the option."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def paint_stroke(page, elem_id, dx=0):
    """Choose the brush of the image editor with this id and paint a short stroke across its middle."""
    page.locator(f"#{elem_id} button[aria-label='Brush']").click()
    canvas = page.locator(f"#{elem_id} canvas").first.bounding_box()
    cx, cy = canvas["x"] + canvas["width"] / 2 + dx, canvas["y"] + canvas["height"] / 2
    page.mouse.move(cx - 30, cy)
    page.mouse.down()
    for step in range(13):
        page.mouse.move(cx - 30 + step * 5, cy + (step % 2) * 4)
    page.mouse.up()


def test_the_units_list_adds_three_removes_one_moves_one_up_and_generates(browser, app_url, cond_map, tmp_path):
    """More conditions: add three (then Add says the limit of 4 units is reached), remove the middle one,
    give the last a map, another kind and a painted mask, move it above the first, generate: the saved PNG lists the
    main condition and the two units in their new order, the mask with the moved unit."""
    cond_map.save(tmp_path / "map.png")
    cond_map.transpose(0).save(tmp_path / "other.png")
    page = open_app(browser, app_url)
    upload_to(page, "Map", "map-editor", tmp_path / "map.png")
    page.locator("#more-units").get_by_text("More conditions").click()
    for _ in range(3):
        page.locator("#add-unit").click()
        page.wait_for_timeout(300)
    assert all(page.locator(f"#unit{n}").first.is_visible() for n in (2, 3, 4))  # a group carries its id twice
    assert page.locator("#add-unit").is_disabled() and "All 3 in use" in page.locator("#add-unit").inner_text()
    page.locator("#unit3-remove").click()
    page.wait_for_function("!document.querySelector('#unit3')?.offsetParent", timeout=10_000)  # hidden or gone
    assert page.locator("#add-unit").is_enabled()
    for n, image in ((2, "map.png"), (4, "other.png")):
        page.locator(f"#unit{n}-source label", has_text="Ready map").click()
        page.locator(f"#unit{n}-image input[type=file]").set_input_files(str(tmp_path / image))
        page.wait_for_timeout(1500)
    pick(page, "unit4-kind", "openpose")
    paint_stroke(page, "unit4-image")
    page.locator("#unit4-up").click()
    page.wait_for_timeout(1000)
    page.locator("#advanced").get_by_text("Advanced settings").click()
    meta = generate_and_read(page, app_url, tmp_path)
    assert [c["kind"] for c in meta["controlnets"]] == ["canny", "openpose", "depth"]
    assert meta["control_masks"][:2] == [None, meta["control_masks"][1]] and meta["control_masks"][1]
    assert meta["control_masks"][2] is None
    page.close()


def test_a_reference_picture_from_the_generate_tab(browser, app_url, cond_map, tiny_models, tmp_path):
    """Reference pictures: add one, upload it, choose its scale, name the IP-Adapter, and a reference-only picture
    with its weight; the saved PNG records both."""
    from skimage import data

    from cnet.tiny import save_tiny_ip_adapter

    adapter = save_tiny_ip_adapter(tiny_models[0], tmp_path / "adapter")
    cond_map.save(tmp_path / "map.png")
    Image.fromarray(data.chelsea()).save(tmp_path / "cat.png")
    page = open_app(browser, app_url)
    upload_to(page, "Map", "map-editor", tmp_path / "map.png")
    page.locator("#references").get_by_text("Reference pictures").click()
    page.locator("#add-reference").click()
    page.locator("#reference1-image input[type=file]").set_input_files(str(tmp_path / "cat.png"))
    page.wait_for_timeout(1500)
    set_numbers(page, **{"reference1-scale": "0.8"})
    page.locator("#reference-only input[type=file]").set_input_files(str(tmp_path / "cat.png"))
    page.wait_for_timeout(1000)
    set_numbers(page, **{"reference-only-weight": "0.6"})
    page.locator("#advanced").get_by_text("Advanced settings").click()
    page.locator("#ip-adapter textarea").fill(str(adapter))
    meta = generate_and_read(page, app_url, tmp_path)
    assert meta["image_prompts"][0]["scale"] == 0.8 and meta["image_prompts"][0]["model"] == str(adapter)
    assert meta["reference_images"][0].endswith("-reference0.png")
    assert meta["reference_only_weight"] == 0.6 and meta["reference_only_image"].endswith("-reference_only.png")
    page.close()


def test_the_pose_editor_drags_a_wrist_and_the_map_follows(browser, app_url, tmp_path):
    """Pose tab: drag the right wrist of the default skeleton across the canvas, generate: the condition map the
    run was made from shows the wrist's OpenPose colour where it was dropped, and no longer where it was. Undo and
    Mirror change the pose the page holds; Export gives the OpenPose JSON."""
    import urllib.parse
    import urllib.request

    page = open_app(browser, app_url)
    page.get_by_role("tab", name="Pose", exact=True).click()
    canvas = page.locator("#pose-editor canvas")
    canvas.wait_for(timeout=10_000)
    box = canvas.bounding_box()
    start = (box["x"] + 0.35 * box["width"], box["y"] + 0.55 * box["height"])
    end = (box["x"] + 0.8 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.move(*start)
    page.mouse.down()
    for step in range(1, 11):
        page.mouse.move(start[0] + (end[0] - start[0]) * step / 10, start[1] + (end[1] - start[1]) * step / 10)
    page.mouse.up()
    assert page.locator("#kind input").input_value().startswith("openpose")
    with page.expect_download() as download:
        page.locator("#pose-editor .pose-export").click()
    exported = json.loads(open(download.value.path()).read())[0]
    wrist = exported["people"][0]["pose_keypoints_2d"][12:14]
    assert abs(wrist[0] - 0.8 * 512) < 6 and abs(wrist[1] - 0.2 * 512) < 6
    page.locator("#advanced").get_by_text("Advanced settings").click()
    generate_and_read(page, app_url, tmp_path)
    page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2", timeout=30_000)
    source = page.locator("#gallery img").nth(1).get_attribute("src")
    (tmp_path / "map.png").write_bytes(urllib.request.urlopen(urllib.parse.urljoin(app_url, source)).read())
    rendered = np.asarray(Image.open(tmp_path / "map.png").convert("RGB"))
    found = np.argwhere((rendered == (170, 255, 0)).all(axis=-1))  # OpenPose's colour of the right wrist
    assert rendered.shape[:2] == (512, 512) and len(found)
    assert np.abs(found.mean(axis=0) - (0.2 * 512, 0.8 * 512)).max() < 8
    assert not (np.abs(found - (0.55 * 512, 0.35 * 512)).max(axis=1) < 4).any()
    page.locator("#pose-editor .pose-mirror").click()
    page.locator("#pose-editor .pose-add").click()
    assert "2 person(s)" in page.locator("#pose-editor .pose-status").inner_text()
    page.locator("#pose-editor .pose-undo").click()
    assert "1 person(s)" in page.locator("#pose-editor .pose-status").inner_text()
    page.close()


def draw_arc(page, elem_id, start_degrees, end_degrees, radius=90):
    """One stroke along a circle's arc on a canvas (the brush already chosen)."""
    box = page.locator(f"#{elem_id} canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx + radius * np.cos(np.radians(start_degrees)), cy + radius * np.sin(np.radians(start_degrees)))
    page.mouse.down()
    for degrees in range(start_degrees, end_degrees + 1, 10):
        page.mouse.move(cx + radius * np.cos(np.radians(degrees)), cy + radius * np.sin(np.radians(degrees)))
    page.mouse.up()


def live_frame(page, n):
    """Wait until the status says the live frame `n` came."""
    page.wait_for_function(f"document.querySelector('#status').innerText.includes('Live frame {n},')",
                           timeout=60_000)


def test_live_mode_shows_a_new_picture_after_each_stroke_and_drops_the_stale_one(browser, tmp_path, monkeypatch):
    """Live mode on, no Generate: a stroke shows a frame; two quick strokes show one more frame (the newest), and the
    status says the first of them was made stale (skipped or cancelled); Undo, a stroke ending off the canvas and a
    stroke on the Map tab each show a frame; nothing is saved for download; Generate keeps the frames' seed."""
    # Each stroke's event reaches the server a second or two after the last (the page encodes and uploads the
    # canvas's layers; slower on a loaded machine): a long debounce keeps the first of two strokes waiting.
    with demo_page(browser, tmp_path, monkeypatch, CNET_LIVE_DEBOUNCE_MS="5000") as page:
        posts = []  # the editors' images must travel as uploaded files, never as blobs (webui/editor.py)
        page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
        page.locator("#live-mode input").check()
        page.locator("#sketch button[aria-label='Brush']").click()
        draw_arc(page, "sketch", 0, 180)
        live_frame(page, 1)
        first = page.locator("#gallery img").first.get_attribute("src")
        draw_arc(page, "sketch", 180, 270)  # two strokes within the debounce: the first one's frame is stale
        draw_arc(page, "sketch", 270, 360)
        live_frame(page, 2)
        status = page.locator("#status").inner_text()
        assert re.search(r"made stale by newer strokes: \d+ cancelled while running, \d+ skipped", status), status
        assert "1 cancelled" in status or "1 skipped" in status, status
        assert page.locator("#gallery img").first.get_attribute("src") != first  # the picture was replaced
        assert page.locator("#gallery img").count() == 1  # the frame alone, in place
        assert page.locator("#files a").count() == 0  # nothing saved: Generate makes the picture to keep
        page.locator("#sketch button[aria-label='Undo']").click()  # taking a stroke back is a change too
        live_frame(page, 3)
        box = page.locator("#sketch canvas").first.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] - 40, box["y"] + box["height"] / 2, steps=8)  # the pen lifts off the canvas
        page.mouse.up()
        live_frame(page, 4)
        page.get_by_role("tab", name="Map").click()  # the Map tab's editor is live too
        page.locator("#map-editor button[aria-label='Brush']").click()
        draw_arc(page, "map-editor", 0, 360, radius=60)
        live_frame(page, 5)
        assert any("/upload" in url for url in posts)
        assert not [url for url in posts if "component_server" in url], posts
        page.get_by_role("tab", name="Draw").click()
        page.locator("#live-mode input").uncheck()
        draw_arc(page, "sketch", 0, 90, radius=40)
        page.wait_for_timeout(2500)
        assert "Live frame 5," in page.locator("#status").inner_text()  # off: strokes run nothing
        # Generate keeps the frames' seed: the form took it, with random off.
        page.locator("#advanced").get_by_text("Advanced settings").click()
        live_seed = page.locator("#seed input").input_value()
        assert not page.locator("#random-seed input").is_checked() and live_seed not in ("", "0")
        page.locator("#generate").click()
        page.wait_for_function("document.querySelectorAll('#files a').length >= 1", timeout=60_000)
        assert str(int(float(live_seed))) in page.locator("#files").inner_text()  # cnet-<seed>-0.png
        # A fast setting that keeps under 90% of the control says so under the steps (measured on the demo).
        assert not page.locator("#fidelity-note").is_visible()
        set_numbers(page, steps="2")
        page.wait_for_function("document.querySelector('#fidelity-note') && "
                               "document.querySelector('#fidelity-note').innerText.includes('kept 57%')",
                               timeout=10_000)
        set_numbers(page, steps="20")
        page.wait_for_function("!document.querySelector('#fidelity-note') || "
                               "!document.querySelector('#fidelity-note').innerText.includes('kept')", timeout=10_000)
        page.close()
