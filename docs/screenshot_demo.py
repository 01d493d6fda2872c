"""The README's demo screenshot: the app in demo mode (no SD1.5, Hub offline), an example circle, Generate.

    python docs/screenshot_demo.py docs/screenshot-demo.png     (needs Debian's chromium and playwright, and the
                                                                  project installed: pip install -e .)
"""

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    os.environ.pop("CNET_BASE_MODEL", None)
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True  # before the app decides whether SD1.5 is reachable
    from playwright.sync_api import sync_playwright

    from app import build_app, launch_options
    from webui.settings import AppSettings

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = AppSettings.from_env(port=port, output_dir="/tmp/demo-out")
    demo, studio = build_app(settings, workspace="/tmp/demo-ws")
    assert studio.demo_mode
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(settings))
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium",
                              args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = b.new_page(viewport={"width": 1400, "height": 1400})
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector("#sketch canvas", timeout=60000)
        page.get_by_role("tab", name="Photo").click()
        page.locator("#photo input[type=file]").set_input_files(str(ROOT / "examples/shapes/circle-0.png"))
        page.wait_for_timeout(1500)
        page.locator("#kind input").first.click()
        page.get_by_role("option", name="scribble", exact=False).first.click()
        page.locator("#prompt-mode label", has_text="Custom").click()
        page.locator("#prompt textarea").fill(sys.argv[2] if len(sys.argv) > 2 else "red circle with blue background")
        page.wait_for_timeout(500)
        page.locator("#generate").click()
        page.wait_for_function("document.querySelectorAll('#gallery img').length >= 2", timeout=120000)
        page.wait_for_timeout(1000)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        page.screenshot(path=sys.argv[1], clip={"x": 0, "y": 0, "width": 1400, "height": 1400})
        print("prompt sent:", page.locator("#used-prompt textarea").input_value())
        b.close()
    demo.close()


if __name__ == "__main__":
    main()
