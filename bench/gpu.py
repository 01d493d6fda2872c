"""GPU benchmark (no internet needed; about 8 minutes on an H100): SD1.5 + ControlNet shapes with random weights.

    python -m bench.gpu                       # 512x512, 20 DDIM steps, CFG 9, batch 1 and 4, fp16, training presets
    python -m bench.gpu --tiny --device cpu   # the same code on the tiny model, to check it runs (CI does this)
    python -m bench.gpu --live                # live frames per second, SD1.5 and SDXL (bench/gpu_live.py)

Inference: every variant is loaded once, then timed in rounds whose order flips (A B C, C B A, ...), so clocks
and a shared machine shift them alike; min / median / max seconds per image, it/s, and a stage breakdown (text
encoder, denoising, VAE decode) from CUDA events. Variants: plain diffusers (its own modules, fp16, SDPA), the
engine (channels-last on CUDA, the skip-inactive fast path), the engine with control end 0.5 (where the fast path
skips: compared with diffusers at the same setting, pixels included), the low-VRAM mode, few-step mode (4 LCM steps
at guidance 1, a random LoRA of the LCM-LoRA's shape), the TAESD fast decode, and torch.compile when asked
(cnet/compiled.py: max-autotune with CUDA graphs, fullgraph, the benchmark's size and batches as buckets, warmed
first). Memory is measured per variant in a fresh process (one variant's weights only): the allocator's peak, the
reserved peak, and the card's used memory from `mem_get_info` (the CUDA context and workspaces included), which is
what "fits a 4 GB card" needs.

Training: one fresh process per memory preset (accelerate's state is per process), samples/s with the GPU
synchronised before each time stamp, and the same memory figures. A failure fails the benchmark, loudly.
Prints the card and appends the tables to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, record

PROMPT = "a professional, detailed, high-quality image"


# -- memory -----------------------------------------------------------------------------------------------------------
class MemoryProbe:
    """Peak memory of what runs between `reset()` and `read()`. CUDA: the allocator's peak, the reserved peak and
    the card's used memory (`mem_get_info`: context and workspaces included). CPU: the process's peak RSS."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")

    def reset(self) -> None:
        import torch

        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict[str, float]:
        import resource

        import torch

        if not self.cuda:
            return {"rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        return {"allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
                "reserved_gib": torch.cuda.max_memory_reserved() / 2**30, "device_used_gib": (total - free) / 2**30}


def memory_text(peaks: dict[str, float]) -> str:
    if "rss_gib" in peaks:
        return f"RSS {peaks['rss_gib']:.2f}"
    return f"{peaks['allocated_gib']:.2f} / {peaks['reserved_gib']:.2f} / {peaks['device_used_gib']:.2f}"


# -- stage timing -----------------------------------------------------------------------------------------------------
class StageClock:
    """Seconds spent in the text encoder and in the VAE decoder during a call (CUDA events on a GPU, the wall
    clock on the CPU); denoising is the rest of the call."""

    def __init__(self, pipe: Any, cuda: bool) -> None:
        self.cuda, self.spans, self.handles = cuda, {"text encoder": [], "VAE decode": []}, []
        for stage, module in (("text encoder", pipe.text_encoder), ("VAE decode", pipe.vae.decoder)):
            self.handles.append(module.register_forward_pre_hook(lambda m, a, stage=stage: self._start(stage)))
            self.handles.append(module.register_forward_hook(lambda m, a, o, stage=stage: self._stop(stage)))

    def _now(self) -> Any:
        import torch

        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _start(self, stage: str) -> None:
        self.spans[stage].append([self._now(), None])

    def _stop(self, stage: str) -> None:
        self.spans[stage][-1][1] = self._now()

    def take(self) -> dict[str, float]:
        """The seconds per stage since the last take."""
        import torch

        if self.cuda:
            torch.cuda.synchronize()
        out = {}
        for stage, spans in self.spans.items():
            out[stage] = sum((a.elapsed_time(b) / 1000 if self.cuda else b - a) for a, b in spans)
            spans.clear()
        return out


# -- inference --------------------------------------------------------------------------------------------------------
def inference(args: argparse.Namespace, base: Path, net: Path, resolution: int) -> None:
    import numpy as np
    import torch
    from PIL import Image

    cuda = args.device.startswith("cuda")
    cond = Image.fromarray(((np.random.default_rng(0).random((resolution, resolution, 3)) > 0.9) * 255)
                           .astype(np.uint8))
    batches = [int(b) for b in args.batches.split(",")]
    names = list(variant_builders(args, base, net, cond))
    runners = {name: build() for name, build in variant_builders(args, base, net, cond).items()}
    runners_steps = {name: runner.steps for name, runner in runners.items()}
    # The fast path must give diffusers' pixels where it skips: compared before any timing.
    ours = np.asarray(runners["cnet fast path, control end 0.5"](1).images[0], dtype=np.int16)
    theirs = np.asarray(runners["plain diffusers, control end 0.5"](1).images[0], dtype=np.int16)
    pixel_gap = int(np.abs(ours - theirs).max())
    for runner in runners.values():  # warm-up (and compile) at every batch size
        for batch in batches:
            runner(batch)
    times: dict[tuple[str, int], list[float]] = {(n, b): [] for n in names for b in batches}
    stages: dict[tuple[str, int], list[dict[str, float]]] = {(n, b): [] for n in names for b in batches}
    for round_ in range(args.repeats):
        for name in (names if round_ % 2 == 0 else names[::-1]):
            for batch in batches:
                gc.collect()
                clock = runners[name].clock
                clock.take()
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                runners[name](batch)
                if cuda:
                    torch.cuda.synchronize()
                times[name, batch].append(time.perf_counter() - start)
                stages[name, batch].append(clock.take())
    del runners
    gc.collect()
    rows = []
    for name in names:
        peaks = memory_child(args, name)
        for batch in batches:
            per_image = [t / batch for t in times[name, batch]]
            median = statistics.median(times[name, batch])
            encode = statistics.median(s["text encoder"] for s in stages[name, batch])
            decode = statistics.median(s["VAE decode"] for s in stages[name, batch])
            rows.append([name, batch, f"{min(per_image):.3f} / {statistics.median(per_image):.3f} / "
                         f"{max(per_image):.3f}", f"{runners_steps[name] / median:.1f}",
                         f"{encode:.3f} / {median - encode - decode:.3f} / {decode:.3f}",
                         memory_text(peaks[str(batch)])])
            print(rows[-1], flush=True)
    units = "allocated / reserved / card used GiB" if cuda else "peak GiB"
    record(f"Inference, {'tiny' if args.tiny else 'SD1.5 + ControlNet'} at {resolution}x{resolution}, "
           f"{args.steps} DDIM steps, CFG 9, {'float16' if cuda else 'float32'}",
           ["variant", "batch", "s / image min / median / max", "it/s", "text / denoise / decode (s)", units], rows,
           f"{args.repeats} rounds after a warm-up per batch size, the order of the variants flipping every round; "
           f"random weights with the published architectures. Memory: each variant alone in a fresh process. "
           f"The fast path at control end 0.5 against diffusers at control end 0.5: largest pixel difference "
           f"{pixel_gap} (0: the same image).")


def variant_builders(args: argparse.Namespace, base: Path, net: Path, cond: Any) -> dict[str, Any]:
    """Name -> a function that loads the variant and returns `run(batch)` (with `.clock`, its stage timer)."""
    import torch
    from diffusers import ControlNetModel, DDIMScheduler, StableDiffusionControlNetPipeline

    from cnet.engine import Engine
    from cnet.request import ControlUnit, GenerationRequest

    cuda = args.device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32

    def plain(end: float = 1.0) -> Any:
        pipe = StableDiffusionControlNetPipeline.from_pretrained(
            base, controlnet=ControlNetModel.from_pretrained(net, dtype=dtype), dtype=dtype, safety_checker=None,
            requires_safety_checker=False).to(args.device)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)

        def run(batch: int) -> Any:
            return pipe(PROMPT, image=cond, num_inference_steps=args.steps, guidance_scale=9.0, negative_prompt="",
                        num_images_per_prompt=batch, control_guidance_end=end,
                        generator=[torch.Generator().manual_seed(i) for i in range(batch)])

        run.clock = StageClock(pipe, cuda)
        run.steps = args.steps
        return run

    def engine(end: float = 1.0, settings: dict[str, Any] | None = None, **options: Any) -> Any:
        cnet = Engine(str(base), device=args.device, dtype=str(dtype).removeprefix("torch."), **options)
        unit = ControlUnit(cond, controlnet=str(net), end=end)
        settings = {"num_inference_steps": args.steps, **(settings or {})}

        def run(batch: int) -> Any:
            return cnet.generate(GenerationRequest(units=[unit], num_images=batch, seed=0, **settings))

        pipe = cnet.pipeline([unit], fast_decode=bool(settings.get("fast_decode")))
        run.clock = StageClock(pipe, cuda)  # the shared modules: the same hooks every run
        run.steps = settings["num_inference_steps"]
        return run

    def few_step() -> Any:
        import os

        from cnet.families import FAMILIES, few_step_settings
        from cnet.tiny import save_tiny_lora

        lora = Path(args.models) / "few-step-lora"
        if not lora.exists():  # random weights of the LCM-LoRA's shape (the cost is the same; the image is not)
            save_tiny_lora(base, lora)
        os.environ["CNET_FEW_STEP_LORA"] = str(lora / "pytorch_lora_weights.safetensors")
        return engine(settings=few_step_settings(FAMILIES["sd15"], {}), channels_last=cuda)

    def fast_decode() -> Any:
        import os

        from diffusers import AutoencoderTiny

        from cnet.tiny import save_tiny_taesd

        taesd = Path(args.models) / "taesd"
        if not taesd.exists():  # TAESD's own architecture (the default config) with random weights
            save_tiny_taesd(taesd) if args.tiny else AutoencoderTiny().save_pretrained(taesd)
        os.environ["CNET_TINY_VAE"] = str(taesd)
        return engine(settings={"fast_decode": True}, channels_last=cuda)

    def compiled() -> Any:
        import os

        from cnet.compiled import ShapeBuckets

        os.environ.setdefault("CNET_COMPILE_CACHE", str(Path(args.models) / "inductor"))
        buckets = ShapeBuckets.parse(f"{cond.width}x{cond.height}", args.batches)
        return engine(channels_last=cuda, compile=True, compile_buckets=buckets)

    variants = {
        "plain diffusers": plain,
        "cnet fast path": lambda: engine(channels_last=cuda),
        "plain diffusers, control end 0.5": lambda: plain(0.5),
        "cnet fast path, control end 0.5": lambda: engine(0.5, channels_last=False),
        "cnet low-VRAM (offload=model)": lambda: engine(offload="model"),
        "cnet few-step (4 LCM steps, guidance 1)": few_step,
        "cnet fast decode (TAESD)": fast_decode,
    }
    if args.compile:
        variants["cnet fast path + torch.compile"] = compiled
    return variants


def memory_child(args: argparse.Namespace, name: str) -> dict[str, dict[str, float]]:
    """Peak memory of one variant per batch size, in a fresh process (only its weights loaded)."""
    command = [sys.executable, "-m", "bench.gpu", "--memory-of", name, *child_arguments(args)]
    return run_child(command)


def memory_main(args: argparse.Namespace, base: Path, net: Path, resolution: int) -> dict[str, dict[str, float]]:
    import numpy as np
    from PIL import Image

    cond = Image.fromarray(((np.random.default_rng(0).random((resolution, resolution, 3)) > 0.9) * 255)
                           .astype(np.uint8))
    probe = MemoryProbe(args.device)
    probe.reset()
    run = variant_builders(args, base, net, cond)[args.memory_of]()
    peaks = {}
    for batch in (int(b) for b in args.batches.split(",")):
        probe.reset()
        run(batch)
        peaks[str(batch)] = probe.read()
    return peaks


# -- training ---------------------------------------------------------------------------------------------------------
def training(args: argparse.Namespace, resolution: int) -> None:
    from train.presets import PRESETS

    cuda = args.device.startswith("cuda")
    rows = []
    for name in PRESETS:
        result = run_child([sys.executable, "-m", "bench.gpu", "--train-preset", name, *child_arguments(args)])
        rows.append([name, result["batch"], f"{result['samples_per_s']:.2f}", memory_text(result["peaks"]),
                     result["note"]])
        print(rows[-1], flush=True)
    units = "allocated / reserved / card used GiB" if cuda else "peak GiB"
    record(f"Training, {'tiny' if args.tiny else 'SD1.5 ControlNet'} at {resolution}x{resolution}, per memory preset",
           ["preset", "batch x accumulation", "samples/s", units, "note"], rows,
           f"One fresh process per preset; {args.train_steps} steps each through train/loop.py, the GPU "
           "synchronised before each time stamp, median step after the first.")


def train_main(args: argparse.Namespace, base: Path, work: Path, resolution: int) -> dict[str, Any]:
    import torch

    from shapes.data import write_dataset
    from train.config import TrainConfig
    from train.loop import train
    from train.presets import PRESETS

    cuda = args.device.startswith("cuda")
    settings, note = dict(PRESETS[args.train_preset]), ""
    if not cuda:  # what the CPU cannot run is left out, and said
        dropped = {k: settings.pop(k) for k in ("mixed_precision", "use_8bit_adam") if k in settings}
        note = "CPU: without " + ", ".join(f"{k}={v}" for k, v in dropped.items()) if dropped else "CPU"
    batch, accumulation = settings.get("batch_size", 2), settings.get("grad_accum", 1)
    data = write_dataset(work / f"data-{args.train_preset}", batch * accumulation * (args.train_steps + 2), seed=0)
    stamps: list[float] = []

    def stamp(event: str, info: dict) -> None:
        if event in ("start", "step"):
            if cuda:
                torch.cuda.synchronize()
            stamps.append(time.perf_counter())

    probe = MemoryProbe(args.device)
    probe.reset()
    train(TrainConfig(**{**settings, "base_model": str(base), "dataset": str(data),
                         "output_dir": str(work / f"run-{args.train_preset}"), "resolution": resolution,
                         "max_steps": args.train_steps, "checkpoint_every": 10**6, "validate_every": 0,
                         "log_every": 10**6}), callback=stamp)
    per_step = statistics.median(b - a for a, b in zip(stamps[1:], stamps[2:]))
    peaks = probe.read()
    import shutil

    shutil.rmtree(work, ignore_errors=True)  # an SD1.5 run leaves gigabytes (weights, optimizer state)
    return {"batch": f"{batch} x {accumulation}", "samples_per_s": batch * accumulation / per_step,
            "peaks": peaks, "note": note}


# -- processes --------------------------------------------------------------------------------------------------------
def child_arguments(args: argparse.Namespace) -> list[str]:
    out = ["--device", args.device, "--steps", str(args.steps), "--batches", args.batches, "--train-steps",
           str(args.train_steps), "--models", str(args.models)]
    if args.resolution:
        out += ["--resolution", str(args.resolution)]
    return out + (["--tiny"] if args.tiny else []) + (["--compile"] if args.compile else [])


def run_child(command: list[str]) -> Any:
    """Run a child of this script; its last stdout line is JSON. A failure stops the benchmark, with its error."""
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(command[2:5])} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model (for a CPU smoke run)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,4")
    parser.add_argument("--compile", action="store_true", help="also time the torch.compile fast path")
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--live", action="store_true", help="only live frames per second (bench/gpu_live.py)")
    parser.add_argument("--frames", type=int, default=10, help="--live: frames per round")
    parser.add_argument("--models", help=argparse.SUPPRESS)  # the children reuse the parent's model folder
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)
    parser.add_argument("--train-preset", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from cnet.tiny import save_tiny_models

    if args.live:  # its own models per family (bench/gpu_live.py)
        from bench.gpu_live import live_frames

        work = Path(tempfile.mkdtemp(prefix="cnet-bench-live-"))
        try:
            return live_frames(args, work)
        finally:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    resolution = args.resolution or (64 if args.tiny else 512)
    made_models = args.models is None
    if made_models:
        args.models = tempfile.mkdtemp(prefix="cnet-bench-gpu-")
        save_tiny_models(Path(args.models) / "m", preset="tiny" if args.tiny else "sd15")
    base, net = Path(args.models) / "m" / "base", Path(args.models) / "m" / "controlnet"
    if args.memory_of:
        print(json.dumps(memory_main(args, base, net, resolution)))
        return
    if args.train_preset:
        print(json.dumps(train_main(args, base, Path(tempfile.mkdtemp(prefix="cnet-bench-train-")), resolution)))
        return
    print(f"device: {machine() if args.device.startswith('cuda') else args.device}", flush=True)
    try:
        inference(args, base, net, resolution)
        if not args.skip_training:
            training(args, resolution)
    finally:
        if made_models:  # the SD1.5 shapes take 5 GB of disk
            import shutil

            shutil.rmtree(args.models, ignore_errors=True)


if __name__ == "__main__":
    main()
