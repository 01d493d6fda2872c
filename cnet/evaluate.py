"""`python -m cnet eval`: how faithfully ControlNets follow their conditions, on a held-out set, side by side.

Each (condition, prompt) row of the held-out set (any training layout: a `metadata.jsonl` folder, a Fill50K folder,
a `datasets` dataset) is generated once per model with the same seed (the seed plus the row's number), and the
picture is scored with its kind's metrics (cnet/metrics.py, those of the ControlNet++ paper). A training run's
folder (`--run`) adds every complete checkpoint and its result, in step order, and a plot of each metric across
them. Written to `--out`: `report.json` (every score), `report.md` (the table), a grid of [condition | picture]
per model, and `fidelity.png` for a run. The re-detecting annotators load their weights as everywhere in the studio:
`CNET_ANNOTATORS` (a folder with lllyasviel/Annotators' files), `CNET_ANNOTATOR_SEG` / `CNET_ANNOTATOR_DEPTH_ANYTHING`,
else the Hub.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .metrics import METRICS, UNIT_KINDS, metrics_for, score


@dataclass(frozen=True)
class EvalSettings:
    """How the held-out pictures are made and scored. `metric`: a kind, or a domain with its own metric (the
    demo's "shapes"); the ControlNet unit's kind follows from it."""

    metric: str
    steps: int = 20
    guidance: float | None = None  # None: the family's default (9.0 for SD 1.x, the paper's)
    scheduler: str = "ddim"
    strength: float = 1.0
    seed: int = 0
    limit: int | None = None  # the first rows only

    def __post_init__(self) -> None:
        metrics_for(self.metric)  # ValueError naming the choices
        if self.steps < 1:
            raise ValueError(f"steps={self.steps} must be at least 1")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit={self.limit} must be at least 1")


MAX_SIDE = 1024  # a held-out map larger than this is scored at this size (its aspect kept)


def held_out_rows(dataset: str, limit: int | None = None) -> list[tuple[Any, str]]:
    """(condition picture, prompt) pairs of a dataset in any training layout (cnet/datasets.py), the first `limit`
    ones, each condition decoded once and brought to the size it is generated at: sides multiples of 8, the longer
    at most MAX_SIDE. DataError naming a row whose condition cannot be read."""
    from .datasets import DataError, load_image, load_rows

    pairs = []
    for row in load_rows(dataset, check_files=False).rows[:limit]:
        try:
            condition = load_image(row.conditioning)
        except Exception as err:  # PIL's decoders raise many types for broken files
            raise DataError(f"{row.name}: its condition cannot be read ({err})") from None
        scale = min(1.0, MAX_SIDE / max(condition.size))
        size = tuple(max(8, round(side * scale) // 8 * 8) for side in condition.size)
        pairs.append((condition if size == condition.size else condition.resize(size, Image.Resampling.NEAREST),
                      row.text))
    return pairs


def evaluate(engine: Any, controlnet: str, rows: list[tuple[Any, str]], settings: EvalSettings, *,
             loading: Any = None) -> dict[str, Any]:
    """Generate each row with `controlnet` on `engine`'s base and score it: {"pictures": [...], "metrics": {name:
    {"value", "higher_is_better", "summary", "scores"}}}."""
    from .request import ControlUnit, GenerationRequest

    kind = UNIT_KINDS.get(settings.metric, settings.metric)
    metrics = metrics_for(settings.metric)
    scores: dict[str, list[float]] = {m.name: [] for m in metrics}
    pictures = []
    for i, (condition, prompt) in enumerate(rows):
        width, height = condition.size  # multiples of 8 (held_out_rows)
        result = engine.generate(GenerationRequest(
            units=[ControlUnit(condition, kind=kind, controlnet=controlnet, strength=settings.strength)],
            prompt_mode="custom" if prompt else "none", prompt=prompt, num_inference_steps=settings.steps,
            guidance_scale=settings.guidance, scheduler=settings.scheduler, seed=settings.seed + i, width=width,
            height=height))
        picture = result.images[0]
        pictures.append(picture)
        for metric in metrics:
            scores[metric.name].append(score(metric, picture, condition, prompt, loading))
    return {"pictures": pictures, "metrics": {
        m.name: {"value": m.summarise(scores[m.name]), "higher_is_better": m.higher_is_better, "summary": m.summary,
                 "unit": m.unit, "scores": [None if np.isnan(v) else v for v in scores[m.name]]}
        for m in metrics}}


def check_annotators(metric: str, row: tuple[Any, str]) -> None:
    """Each re-detecting annotator of `metric` runs once on a condition before anything is generated, so missing
    weights are named at once (AnnotatorError), not after the first model's pictures."""
    condition, prompt = row
    for each in metrics_for(metric):
        if each.annotator is not None:
            score(each, condition.convert("RGB"), condition, prompt)


def run_models(run_dir: str | Path) -> list[tuple[str, str, int | None]]:
    """(label, ControlNet folder, step) of a training run: its complete checkpoints in step order, then its result."""
    from common.runs import complete_checkpoints

    run = Path(run_dir)
    if not run.is_dir():
        raise ValueError(f"run={str(run_dir)!r} does not exist (a training run's --output-dir)")
    found = [(f"step {step}", str(folder / "controlnet"), step) for step, folder in complete_checkpoints(run)]
    if (run / "controlnet").is_dir() and not (found and _same_weights(Path(found[-1][1]), run / "controlnet")):
        progress = json.loads((run / "progress.json").read_text()) if (run / "progress.json").is_file() else {}
        found.append(("result", str(run / "controlnet"), progress.get("step")))
    if not found:
        raise ValueError(f"run={str(run_dir)!r} holds no complete checkpoint and no result (a folder written by "
                         "python -m train)")
    return found


def _same_weights(a: Path, b: Path) -> bool:
    """Two ControlNet folders holding the same weights file (the result of a run without EMA is its last
    checkpoint's: scored once)."""
    import filecmp

    name = "diffusion_pytorch_model.safetensors"
    return (a / name).is_file() and (b / name).is_file() and filecmp.cmp(a / name, b / name, shallow=False)


def report_table(results: list[dict[str, Any]]) -> str:
    """A markdown table: a row per model, a column per metric (with its direction)."""
    names = list(results[0]["metrics"])
    header = ["model", "rows", *(f"{n} {'↑' if results[0]['metrics'][n]['higher_is_better'] else '↓'}"
                                 for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        values = [_shown(r["metrics"][n]["value"], r["metrics"][n]["unit"]) for n in names]
        lines.append("| " + " | ".join([r["label"], str(r["rows"]), *values]) + " |")
    return "\n".join(lines) + "\n"


def _shown(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.3f}{unit}"


def add_parser(sub: Any) -> None:
    """The `eval` subcommand of `python -m cnet`."""
    parser = sub.add_parser("eval", help="score ControlNets on a held-out set with each kind's fidelity metric",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="held-out (condition, prompt) rows: a metadata.jsonl or "
                        "Fill50K folder, or a datasets folder / Hub id")
    parser.add_argument("--kind", required=True, choices=sorted(METRICS),
                        help="the condition kind, which picks the metric (shapes: the demo's circles)")
    parser.add_argument("--controlnet", action="append", default=[], metavar="MODEL",
                        help="a ControlNet (Hub id, folder or file); repeat to compare; LABEL=MODEL names it")
    parser.add_argument("--run", help="a training run's folder: every complete checkpoint and the result, plotted")
    parser.add_argument("--base-model", help="Hub id, diffusers folder or single file (default: CNET_BASE_MODEL)")
    parser.add_argument("--out", required=True, help="where report.json, report.md and the grids go")
    parser.add_argument("--limit", type=int, help="score only the first N rows")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps (20)")
    parser.add_argument("--guidance", type=float, help="CFG scale (the family's default: 9.0 for SD 1.x)")
    parser.add_argument("--scheduler", default="ddim", help="the sampler (ddim)")
    parser.add_argument("--seed", type=int, default=0, help="row i is generated with seed + i (0)")
    parser.add_argument("--device", help="cuda, mps or cpu (default: automatic)")
    parser.add_argument("--dtype", help="float16, bfloat16 or float32 (default: automatic)")
    parser.add_argument("--strength", type=float, default=1.0,
                        help="control strength (1.0; 0 scores the base alone, the baseline)")


def run_cli(args: argparse.Namespace) -> Path:
    """Evaluate every model the arguments name; write the report; return the report's path."""
    from .engine import Engine

    settings = EvalSettings(args.kind, steps=args.steps, guidance=args.guidance, scheduler=args.scheduler,
                            seed=args.seed, limit=args.limit, strength=args.strength)
    models = [(*_labelled(m), None) for m in args.controlnet] + (run_models(args.run) if args.run else [])
    if not models:
        raise ValueError("name at least one --controlnet, or a training --run")
    rows = held_out_rows(args.data, settings.limit)
    check_annotators(settings.metric, rows[0])
    engine = Engine(args.base_model, device=args.device, dtype=args.dtype)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for number, (label, controlnet, step) in enumerate(models):
        scored = evaluate(engine, controlnet, rows, settings)
        grid_name = f"grid-{number:02d}-{''.join(c if c.isalnum() or c in '-_.' else '-' for c in label)}.png"
        _grid(rows, scored["pictures"]).save(out / grid_name)
        results.append({"label": label, "controlnet": controlnet, "step": step, "rows": len(rows),
                        "grid": grid_name, "metrics": scored["metrics"]})
        print(json.dumps({"label": label, **{n: m["value"] for n, m in scored["metrics"].items()}}), flush=True)
    write_report(out, args.data, engine.base_source.spec, settings, results)
    stepped = [r for r in results if r["step"] is not None]
    if stepped:
        plot_across_steps(stepped, [r for r in results if r["step"] is None], out / "fidelity.png")
    return out / "report.md"


def write_report(out: Path, data: str, base: str, settings: EvalSettings, results: list[dict[str, Any]]) -> None:
    """report.json (every score) and report.md (how the pictures were made, the table, the grids); the table
    printed."""
    (out / "report.json").write_text(json.dumps({"data": data, "base_model": base, "settings": asdict(settings),
                                                 "models": results}, indent=2))
    table = report_table(results)
    guidance = settings.guidance if settings.guidance is not None else "the family's default"
    how = (f"{results[0]['rows']} rows of `{data}`, base `{base}`, {settings.scheduler} {settings.steps} steps, CFG "
           f"{guidance}, strength {settings.strength}, seed {settings.seed} + the row's number")
    grids = "\n".join(f"- {r['label']}: [{r['grid']}]({r['grid']}) ([condition | picture] per row)" for r in results)
    (out / "report.md").write_text(f"# Fidelity on {data}\n\n{how}.\n\n{table}\n{grids}\n")
    print(table)


def _labelled(model: str) -> tuple[str, str]:
    """"LABEL=MODEL" or "MODEL" (labelled by its last path part)."""
    label, sep, source = model.partition("=")
    if sep and label and "/" not in label:
        return label, source
    return Path(model.rstrip("/")).name or model, model


def _grid(rows: list[tuple[Any, str]], pictures: list[Any]) -> Any:
    """[condition | picture] a row (diffusers' grid, whose cells share one size: the first condition's)."""
    from diffusers.utils import make_image_grid

    size = rows[0][0].size
    cells = [image.convert("RGB").resize(size) for (condition, _), picture in zip(rows, pictures)
             for image in (condition, picture)]
    return make_image_grid(cells, rows=len(rows), cols=2)


def plot_across_steps(stepped: list[dict[str, Any]], references: list[dict[str, Any]], file: Path) -> None:
    """Each metric against the training step (one panel per metric), the reference models as horizontal lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(stepped[0]["metrics"])
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    for axis, name in zip(axes[0], names):
        points = sorted((r["step"], r["metrics"][name]["value"]) for r in stepped
                        if r["metrics"][name]["value"] is not None)
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label="this run")
        for ref in references:
            if ref["metrics"].get(name, {}).get("value") is not None:
                axis.axhline(ref["metrics"][name]["value"], linestyle="--", color="grey", label=ref["label"])
        higher = stepped[0]["metrics"][name]["higher_is_better"]
        axis.set(xlabel="training step", ylabel=f"{name} ({'higher' if higher else 'lower'} is better)", title=name)
        if higher and all(0 <= p[1] <= 1 for p in points):  # a share (IoU, F1, SSIM): its whole range, so a
            axis.set_ylim(0, 1)  # change in the third decimal does not look like a fall
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(file)
    plt.close(figure)
