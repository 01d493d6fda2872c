"""The benchmark scripts run (on the tiny model, on the CPU) and write their tables: ready for a GPU machine."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_benchmark_runs_on_cpu_at_tiny_size(tmp_path):
    """Every path of bench/gpu.py that is not CUDA-only: interleaved variants with the stage breakdown, the fast
    path compared with diffusers where it skips, memory per variant in a fresh process, and every training preset
    in its own process (before, the second preset failed: accelerate's state is per process)."""
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", "--tiny", "--device", "cpu", "--steps", "2", "--repeats",
                           "2", "--batches", "1,2", "--train-steps", "3", "--compile"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "CNET_BENCH_RESULTS": str(results), "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text()
    assert "## Inference, tiny at 64x64, 2 DDIM steps, CFG 9, float32" in text
    for variant in ("plain diffusers", "cnet fast path", "plain diffusers, control end 0.5",
                    "cnet fast path, control end 0.5", "cnet low-VRAM (offload=model)",
                    "cnet few-step (4 LCM steps, guidance 1)", "cnet fast decode (TAESD)",
                    "cnet fast path + torch.compile"):
        assert f"| {variant} | 1 |" in text and f"| {variant} | 2 |" in text, variant
    assert "largest pixel difference 0 (0: the same image)" in text  # the fast path skips and changes nothing
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| cnet fast path | 1 |")]
    encode, denoise, decode = (float(x) for x in rows[0][4].split(" / "))
    assert encode > 0 and denoise > 0 and decode > 0  # the stage breakdown measured each stage
    assert "## Training, tiny at 64x64, per memory preset" in text
    for preset, batch in (("8gb", "1 x 4"), ("12gb", "2 x 2"), ("16gb", "4 x 1"), ("24gb", "4 x 1"),
                          ("40gb", "8 x 1")):
        assert f"| {preset} | {batch} |" in text, preset
    assert "CPU: without mixed_precision=fp16, use_8bit_adam=True" in text


def test_a_failing_child_fails_the_benchmark_loudly():
    # Before, a preset's ValueError (bitsandbytes missing) became "n/a" and a 60-character note.
    from bench.gpu import run_child

    with pytest.raises(SystemExit, match="ValueError: bitsandbytes is not installed"):
        run_child([sys.executable, "-c", "raise ValueError('bitsandbytes is not installed')"])


pytestmark = pytest.mark.slow  # subprocesses: the full suite (CI) runs them, the fast tier does not


def test_the_live_gpu_benchmark_runs_on_cpu_at_tiny_size(tmp_path):
    """bench/gpu.py --live: eager and compiled live frames, timed and recorded (ready for a GPU machine)."""
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "-m", "bench.gpu", "--live", "--tiny", "--device", "cpu", "--repeats", "2",
                           "--frames", "2", "--compile"], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "CNET_BENCH_RESULTS": str(results), "TQDM_DISABLE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = results.read_text()
    assert "## Live frames per second, tiny at 64 px, CPU" in text
    for variant in ("eager", "torch.compile (CUDA graphs on a GPU)"):
        row = next(line for line in text.splitlines() if line.startswith(f"| sd15 | 64x64 | {variant} |"))
        assert float(row.split(" | ")[-1].rstrip(" |")) > 0
    assert "the live preset on cpu (2 LCM steps" in text


def test_the_sdxl_benchmark_shapes_are_sdxls():
    """`tiny-model --preset sdxl`: the published SDXL sizes (built here on the meta device: no memory)."""
    from accelerate import init_empty_weights

    from cnet.tiny import build_sdxl_components

    with init_empty_weights():
        parts = build_sdxl_components()
    count = {name: sum(p.numel() for p in parts[name].parameters()) / 1e9
             for name in ("unet", "controlnet", "text_encoder_2")}
    assert abs(count["unet"] - 2.567) < 0.01 and abs(count["controlnet"] - 1.251) < 0.01, count
    assert abs(count["text_encoder_2"] - 0.695) < 0.01, count


def test_the_folder_start_benchmark_times_both_sizes(tmp_path):
    """bench/data_start.py at a small scale: two folder sizes, alternated, recorded with their ratio."""
    results = tmp_path / "RESULTS.md"
    proc = subprocess.run([sys.executable, "-m", "bench.data_start", "--rows", "20", "200", "--repeats", "1"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "CNET_BENCH_RESULTS": str(results)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in results.read_text().splitlines() if line.startswith(("| 20 |", "| 200 |"))]
    assert len(rows) == 2 and rows[0].endswith("| 1.00x |")
    assert float(rows[1].split(" | ")[-1].rstrip("x |")) > 0
