"""The README's screenshots, taken from the running app in chromium, offline (demo mode: no CNET_* models, the Hub
unreachable), so they show what a newcomer's first run shows.

    python docs/screenshots.py [--workspace W] [--first-screen]     (from the repository root; needs Debian's
                                                                     chromium and playwright)

- docs/screenshot-generate.png: the Generate tab, a circle outline drawn on the canvas, Generate, the picture and its
  condition map.
- docs/screenshot-train.png, with --workspace: the Train tab showing that workspace's newest run (its fidelity curve,
  validation grids and log), e.g. the Quick start trained by `python -m bench.quick_start --workspace W`.
- docs/first-screen-demo.png, with --first-screen: the first screen as it loads, in a 1400x1000 window (#14).
"""

import argparse
import math
import os
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for name in [k for k in os.environ if k.startswith("CNET_")]:
    os.environ.pop(name)
from huggingface_hub import constants  # noqa: E402

constants.HF_HUB_OFFLINE = True  # demo mode, whatever the network


def draw_circle(page, radius: float = 80) -> None:
    """A circle outline on the Draw tab's canvas, with the brush, as a user would draw it."""
    page.locator("#sketch button[aria-label='Brush']").click()
    box = page.locator("#sketch canvas").first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(cx + radius, cy)
    page.mouse.down()
    for degrees in range(0, 370, 10):
        page.mouse.move(cx + radius * math.cos(math.radians(degrees)), cy + radius * math.sin(math.radians(degrees)))
    page.mouse.up()


def generate_tab(page, out: Path) -> None:
    draw_circle(page)
    page.locator("#prompt textarea").fill("yellow circle with purple background")
    page.locator("#generate").click()
    page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2", timeout=120_000)
    page.wait_for_timeout(1500)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": 1400, "height": 1100})


def train_tab(page, out: Path) -> None:
    page.get_by_role("tab", name="Train", exact=True).click()
    page.wait_for_function("document.querySelector('#train-status').innerText.includes('finished')", timeout=60_000)
    page.wait_for_timeout(3000)  # the plots draw
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": 1400, "height": 1100})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", help="a workspace whose newest run the Train tab shows")
    parser.add_argument("--first-screen", action="store_true", help="also docs/first-screen-demo.png")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from app import build_app, launch_options
    from webui.settings import AppSettings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    scratch = Path(tempfile.mkdtemp())
    settings = AppSettings.from_env(port=port, output_dir=scratch / "outputs")
    demo, studio = build_app(settings, workspace=args.workspace or str(scratch / "workspace"))
    if not studio.demo_mode:
        raise SystemExit("not in demo mode: Stable Diffusion is on this machine; run where it is not")
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(settings))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium",
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000 if args.first_screen else 1100})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("#sketch canvas", timeout=60_000)
            if args.first_screen:
                page.wait_for_timeout(2500)
                page.screenshot(path=str(ROOT / "docs" / "first-screen-demo.png"))
            generate_tab(page, ROOT / "docs" / "screenshot-generate.png")
            if args.workspace:
                train_tab(page, ROOT / "docs" / "screenshot-train.png")
            browser.close()
    finally:
        demo.close()


if __name__ == "__main__":
    main()
