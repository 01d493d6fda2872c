"""The first screen in demo mode (1400x1000 window), for docs/first-screen-demo*.png (#14's before/after).

    python docs/screenshot_first_screen.py OUT.png    (from the repository root of the commit to show; needs
                                                       Debian's chromium and playwright)
"""

import os
import socket
import sys

sys.path.insert(0, os.getcwd())
for k in [k for k in os.environ if k.startswith("CNET_")]:
    os.environ.pop(k)
from huggingface_hub import constants  # noqa: E402

constants.HF_HUB_OFFLINE = True  # demo mode, whatever the network
from playwright.sync_api import sync_playwright  # noqa: E402

from app import build_app, launch_options  # noqa: E402
from webui.settings import AppSettings  # noqa: E402

with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
settings = AppSettings.from_env(port=port, output_dir="/tmp/first-out")
demo, studio = build_app(settings, workspace="/tmp/first-ws")
demo.launch(prevent_thread_lock=True, quiet=True, **launch_options(settings))
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium",
                          args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
    page = b.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"http://127.0.0.1:{port}/")
    page.wait_for_selector("#sketch canvas", timeout=60000)
    page.wait_for_timeout(2500)
    page.screenshot(path=sys.argv[1])
    b.close()
demo.close()
