"""Start-up: process start to the first page served by `python app.py` (models load lazily, so none are loaded).

    python -m bench.startup [--repeats 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench.common import record

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_to_first_page(timeout: float = 120.0) -> float:
    port = free_port()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200 and b"<html" in response.read(2048).lower():
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("the app did not serve its page in time")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    times = [time_to_first_page() for _ in range(args.repeats)]
    record("App start-up: process start to first page served", ["median (s)", "min (s)", "max (s)", "runs"],
           [[f"{statistics.median(times):.2f}", f"{min(times):.2f}", f"{max(times):.2f}", args.repeats]],
           "`python app.py` in a subprocess, polling GET / every 50 ms; no model is loaded at start-up.")


if __name__ == "__main__":
    main()
