"""A public deployment's peak memory under image-editor payloads a visitor can send (issue 24, items 1-2).

    python -m bench.editor_payloads [--app-dir DIR] [--no-record]

Starts the app (`python app.py --public`; offline, the built-in demo model answers) in its own process from
`--app-dir` (default: this checkout; point it at another checkout to measure the code before a change), one fresh
server per payload. After a first small edit (which imports torch and loads the models), it resets the server's
peak RSS (`/proc/PID/clear_refs`), sends the payload over HTTP as a visitor would and reads the peak (VmHWM) and the
resident memory afterwards. Payloads:

- the Edit tab's event with one 46 KB upload of a flat 10 MP PNG listed as 16 layers (and as 1 layer),
- a 36 MP image as background, composite and 3 layers,
- `accept_blobs` posted to /gradio_api/component_server with `index` 20,000,000 and a 1-byte file.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import record

MB = 1 << 20


def _status(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024 / MB
    raise KeyError(key)


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux 4.0+)


def _flat_png(width: int, height: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (width, height), (255, 255, 255, 0)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


class Visitor:
    """What anyone can send: uploads, an event by its button's elem_id, and blobs to component_server."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url, self.http = url, httpx.Client(timeout=600)
        self.config = self.http.get(url + "config").json()
        self.components = {c["id"]: c for c in self.config["components"]}

    def upload(self, data: bytes) -> dict:
        path = self.http.post(self.url + "gradio_api/upload", files={"files": ("x.png", data)}).json()[0]
        return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": "x.png"}

    def event(self, button: str, editor: str, value: dict) -> str:
        # The click's run: the handler with the most inputs (the live preview's timer start shares the click).
        dep = max((d for d in self.config["dependencies"] for target, name in d["targets"]
                   if name == "click" and self.components[target]["props"].get("elem_id") == button),
                  key=lambda d: len(d["inputs"]))
        data = [value if self.components[c]["props"].get("elem_id") == editor else
                self.components[c]["props"].get("value") for c in dep["inputs"]]
        session = secrets.token_hex(6)
        self.http.post(self.url + "gradio_api/queue/join", json={"data": data, "fn_index": dep["id"],
                                                                 "session_hash": session, "trigger_id": None})
        with self.http.stream("GET", self.url + "gradio_api/queue/data", params={"session_hash": session}) as reply:
            for line in reply.iter_lines():
                if line.startswith("data:") and json.loads(line[5:]).get("msg") == "process_completed":
                    message = json.loads(line[5:])
                    return (message.get("output") or {}).get("error") or "completed"
        return "no reply"

    def blob(self, editor: str, index: int) -> str:
        component = next(c for c in self.config["components"] if c["props"].get("elem_id") == editor)
        reply = self.http.post(self.url + "gradio_api/component_server", data={
            "session_hash": secrets.token_hex(6), "component_id": str(component["id"]), "fn_name": "accept_blobs",
            "type": "layer", "index": str(index), "id": "bench"},
            files={"file": ("layer.png", b"\0")})
        return f"HTTP {reply.status_code} {reply.text[:160]}"


def _start(app_dir: Path, port: int, workdir: str) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": tempfile.mkdtemp(prefix="bench-hf-"), "CNET_PORT": str(port),
           "CNET_OUTPUT_DIR": workdir, "PYTHONPATH": str(app_dir)}
    server = subprocess.Popen([sys.executable, str(app_dir / "app.py"), "--public", "--port", str(port)],
                              cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import httpx

    for _ in range(240):
        try:
            httpx.get(f"http://127.0.0.1:{port}/config", timeout=2)
            return server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("the app did not start within 2 minutes")


CASES = {
    "10 MP flat PNG (46 KB) as 16 layers": ("edit", (3873, 2582), 16),
    "10 MP flat PNG as 1 layer": ("edit", (3873, 2582), 1),
    "36 MP image with 3 layers": ("edit", (7348, 4899), 3),
    "accept_blobs index=20,000,000": ("blob", None, 20_000_000),
}


def measure(app_dir: Path, name: str) -> list[object]:
    """One payload sent to a freshly started app: what the visitor was told, the server's RSS before, its peak
    while the payload was handled, and its RSS after."""
    kind, size, count = CASES[name]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = _start(app_dir, port, tempfile.mkdtemp(prefix="bench-editor-"))
    try:
        visitor = Visitor(f"http://127.0.0.1:{port}/")
        upload = visitor.upload(_flat_png(*size)) if size else None
        small = visitor.upload(_flat_png(64, 64))
        # A first small edit imports torch and loads the (demo) models: the baseline is a server that has served.
        visitor.event("edit-run", "edit-picture", {"background": small, "composite": small, "layers": [small]})
        before = _status(server.pid, "VmRSS")
        _reset_peak(server.pid)
        if kind == "edit":
            reply = visitor.event("edit-run", "edit-picture",
                                  {"background": upload, "composite": upload, "layers": [upload] * count})
        else:
            reply = visitor.blob("edit-picture", count)
        peak, after = _status(server.pid, "VmHWM"), _status(server.pid, "VmRSS")
        return [name, reply.replace("|", "/")[:110], f"{before:.0f}", f"{peak:.0f}", f"+{peak - before:.0f}",
                f"+{after - before:.0f}"]
    finally:
        server.kill()
        server.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--app-dir", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--no-record", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args(argv)
    rows = [measure(args.app_dir.resolve(), name) for name in CASES]
    header = ["payload", "the visitor is told", "RSS before (MB)", "peak (MB)", "peak growth (MB)",
              "kept after (MB)"]
    if args.no_record:
        print(json.dumps([dict(zip(header, row)) for row in rows], indent=1))
        return
    record(f"Editor payloads on a public deployment ({args.app_dir.name})", header, rows,
           "A fresh server per payload; peak: VmHWM, reset just before the payload was sent.")


if __name__ == "__main__":
    main()
