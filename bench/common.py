"""Shared helpers for the benchmarks: machine description, medians, and appending tables to RESULTS.md."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(os.environ.get("CNET_BENCH_RESULTS", Path(__file__).with_name("RESULTS.md")))


def machine() -> str:
    """The GPU name when there is one, else the CPU model and core count."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
    except ImportError:  # pragma: no cover
        pass
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median wall time of `fn` over `repeats` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def record(title: str, header: list[str], rows: list[list[object]], notes: str = "") -> str:
    """Print a markdown table and append it, with date, machine and command, to bench/RESULTS.md."""
    lines = [f"## {title}", "",
             f"{datetime.date.today().isoformat()} · {machine()} · `{' '.join(['python', *sys.argv])}`", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    if notes:
        lines += ["", notes]
    text = "\n".join(lines) + "\n\n"
    print(text)
    with RESULTS.open("a") as f:
        f.write(text)
    return text
