"""Batches over a folder: one generation per map or photo, a JSONL and a CSV of the settings per input, resumable.

`run_batch(folder, out, make_one)` walks the folder's images in name order, skips those already recorded in
`out/results.jsonl`, calls `make_one(path)` for the rest (it generates and saves, returning the saved paths and the
first image's metadata) and records one row per input; an input that fails is reported and the batch goes on.
The CLI (`python -m cnet batch`) and the app's Batch section both run through it. Under `accelerate launch` each
process takes every n-th input (common/shares.py) and keeps its own table (`results.part-*.jsonl` / `.csv`); an
input recorded in any table is done.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BATCH_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
COLUMNS = ("input", "outputs", "seed", "prompt_used", "kinds", "strengths", "num_inference_steps",
           "guidance_scale", "width", "height", "scheduler")
MakeOne = Callable[[Path, str], tuple[list[Path], dict[str, Any]]]  # (input, file stem) -> (saved, metadata)


@dataclass
class BatchReport:
    done: int = 0
    already_done: int = 0
    failed: list[str] = field(default_factory=list)  # "name: reason"
    written: list[Path] = field(default_factory=list)
    table: Path | None = None

    def summary(self) -> str:
        return (f"{self.done} input(s) done, {self.already_done} already done, {len(self.failed)} failed; "
                f"table: {self.table}")


def batch_inputs(folder: str | Path) -> list[Path]:
    """The images of `folder` (not its subfolders) in name order; ValueError naming the folder if none."""
    source = Path(folder)
    if not source.is_dir():
        raise ValueError(f"input folder {str(source)!r} is not a folder")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in BATCH_SUFFIXES)
    if not files:
        raise ValueError(f"input folder {str(source)!r} holds no {'/'.join(BATCH_SUFFIXES)} images")
    return files


def batch_folder_name(folder: str | Path) -> str:
    """An output folder's name for a batch over `folder`: its name and a hash of its full path, so two folders
    of the same name (2023/maps, 2024/maps) never share outputs or a table."""
    import hashlib

    resolved = Path(folder).expanduser().resolve()
    return f"{resolved.name}-{hashlib.sha256(str(resolved).encode()).hexdigest()[:8]}"


def run_batch(folder: str | Path, out: str | Path, make_one: MakeOne,
              expected_errors: tuple[type[BaseException], ...] = (ValueError,),
              should_stop: Callable[[], bool] | None = None) -> BatchReport:
    """Run `make_one` on each input not yet recorded in `out/results.jsonl`; record a row per input. `out` holds
    the batch of one input folder (recorded in `out/batch.json`): rows are keyed by the input's file name, which is
    unique in its folder, and another folder's batch is refused there."""
    from common.shares import Share

    files = batch_inputs(folder)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _claim(out, Path(folder))
    share = Share.from_env()
    report = BatchReport(table=out / f"results{share.suffix}.jsonl")
    tables = sorted(out.glob("results*.jsonl"))
    for table in (*tables, report.table, report.table.with_suffix(".csv")):
        if table.exists() and not table.is_file():
            raise ValueError(f"{table} is not a file: the batch records its rows there; move it away")
    done = set().union(*(_recorded(table) for table in tables))
    stems = _unique_stems(files)  # from every input, so the names are the same whichever process makes them
    for path in share.take(files):
        if should_stop is not None and should_stop():
            break
        if path.name in done:
            report.already_done += 1
            continue
        try:
            paths, meta = make_one(path, stems[path])
        except expected_errors as err:
            report.failed.append(f"{path.name}: {err}")
            continue
        _record(report.table, path.name, paths, meta)
        report.done += 1
        report.written += paths
    return report


def _recorded(table: Path) -> set[str]:
    """The inputs already in the table; a line cut short (a run killed mid-write) does not count, and is redone."""
    done = set()
    if table.exists():
        for line in table.read_text().splitlines():
            try:
                done.add(json.loads(line)["input"])
            except (ValueError, KeyError, TypeError):
                continue
    return done


def _claim(out: Path, folder: Path) -> None:
    """Record which input folder `out` holds the batch of, or refuse another one (its file names would meet the
    recorded ones: `x.png` of a second folder skipped as done, or written over)."""
    record, source = out / "batch.json", str(folder.expanduser().resolve())
    if record.is_file():
        try:
            claimed = json.loads(record.read_text()).get("input")
        except (ValueError, AttributeError):
            claimed = None
        if claimed and claimed != source:
            raise ValueError(f"output folder {str(out)!r} holds the batch of {claimed!r}; give the batch of "
                             f"{source!r} another output folder")
        if claimed:
            return
    record.write_text(json.dumps({"input": source}) + "\n")


def _unique_stems(files: list[Path]) -> dict[Path, str]:
    """File stems for the outputs, one per input and never the same twice, case aside: the input's stem, or its
    whole file name where stems meet (a.png and a.jpg; a.png and a.png.jpg), repeated until no two meet. It ends:
    each name changes at most once, and whole names are unique (a folder holding both a.png and A.png on a
    case-sensitive disk keeps those two names, which differ)."""
    from collections import Counter

    names = {path: path.stem for path in files}
    while True:  # compared without case: a.png and A.jpg would meet on Windows and macOS disks
        counts = Counter(name.lower() for name in names.values())
        clashing = [path for path in files if counts[names[path].lower()] > 1 and names[path] != path.name]
        if not clashing:
            return names
        for path in clashing:
            names[path] = path.name


def _record(table: Path, name: str, paths: list[Path], meta: dict[str, Any]) -> None:
    row = {"input": name, "outputs": [p.name for p in paths], "seed": meta["seed"],
           "prompt_used": meta["prompt_used"], "kinds": [c["kind"] for c in meta["controlnets"]],
           "strengths": [c["strength"] for c in meta["controlnets"]], **{k: meta[k] for k in COLUMNS[6:]}}
    cut = False
    if table.exists() and table.stat().st_size:
        with open(table, "rb") as f:
            f.seek(-1, 2)
            cut = f.read(1) != b"\n"
    with open(table, "a") as f:
        # after a line cut short, start a new one: the cut line stays unreadable, this row does not
        f.write(("\n" if cut else "") + json.dumps({**row, "metadata": meta}) + "\n")
    spreadsheet = table.with_suffix(".csv")
    new = not spreadsheet.exists()
    with open(spreadsheet, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
