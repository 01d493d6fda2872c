"""The benchmark scripts run (on the tiny model, on the CPU) and write their tables: ready for a GPU machine."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_on_cpu_at_tiny_size(tmp_path):
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", "--tiny", "--device", "cpu", "--steps", "2", "--repeats",
                           "1", "--batches", "1,2", "--train-steps", "3"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "CNET_BENCH_RESULTS": str(results), "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text()
    assert "## Inference, tiny at 64x64, 2 DDIM steps, CFG 9, float32" in text
    assert "| plain diffusers | 1 |" in text and "| cnet fast path | 2 |" in text
    assert "## Training, tiny at 64x64, per memory preset" in text and "| cpu | 2 x 1 |" in text


pytestmark = pytest.mark.slow  # subprocesses: the full suite (CI) runs them, the fast tier does not
