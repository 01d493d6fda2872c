"""Rows found bad while a run reads them: logged in `bad_rows.jsonl`, counted, and past a share of the rows read, the
end of the run (the data is broken rather than noisy).

Streams (train/stream.py) and the latent cache's builder call `record_bad_row` / `check_bad_share` as rows come;
a folder dataset, whose rows are checked when they are loaded rather than all before the first step (a start that
does not grow with the number of rows), keeps a `RowLedger`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cnet.datasets import DataError

MIN_ROWS_BEFORE_LIMIT = 100  # the bad-row share is judged only once this many rows were read
SAID_ON_STDERR = 10  # skipped rows also printed as they are found, the first ones
_UNREAD, _GOOD, _BAD = 0, 1, 2


def bad_rows_file(out: Path, rank: int) -> Path:
    """Where process `rank` logs its bad rows: `bad_rows.jsonl` for the main one, `bad_rows.<rank>.jsonl` else."""
    return out / ("bad_rows.jsonl" if rank == 0 else f"bad_rows.{rank}.jsonl")


def record_bad_row(dataset: str, where: str, reason: str, read: int, bad: int, limit: float,
                   log_file: Path | None) -> None:
    """Log a skipped row; DataError once more than `limit` of the rows read are bad (after the first 100)."""
    if log_file is not None:
        with open(log_file, "a") as f:
            f.write(json.dumps({"row": where, "reason": reason[:300]}) + "\n")
    check_bad_share(dataset, read, bad, limit, log_file, f"the last: {where}: {reason[:200]}")


def check_bad_share(dataset: str, read: int, bad: int, limit: float, log_file: Path | None, last: str = "") -> None:
    """DataError when more than `limit` of the `read` rows are bad, judged from the 100th row on. The share can
    newly pass the limit only when a bad row comes or when the 100th row is read (3 bad rows among the first 100
    used to pass unjudged): callers call it then."""
    if read >= MIN_ROWS_BEFORE_LIMIT and bad > limit * read:
        raise DataError(f"dataset={dataset!r}: {bad} of {read} rows read are bad (more than bad_row_limit={limit})"
                        f"{'; ' + last if last else ''}. See {log_file or 'the log'} for all of them")


class RowLedger:
    """What a folder dataset's rows turned out to be when loaded: unread, good or bad (one byte a row), and the
    counts. Strict (`skip=False`, the default of `python -m train`): the first bad row stops the run, named. With
    `skip`: a bad row is logged in `log_file`, counted, never loaded again by this process, and more than `limit`
    of the rows read being bad stops the run. Each loader worker keeps its own copy (and log lines)."""

    def __init__(self, dataset: str, rows: int, *, skip: bool = False, limit: float = 0.01,
                 log_file: Path | None = None) -> None:
        self.dataset, self.skip, self.limit, self.log_file = dataset, skip, limit, log_file
        self.state = bytearray(rows)
        self.read = self.bad = 0

    def is_bad(self, index: int) -> bool:
        return self.state[index] == _BAD

    def good(self, index: int) -> None:
        if self.state[index] == _UNREAD:
            self.state[index] = _GOOD
            self.read += 1
            if self.read == MIN_ROWS_BEFORE_LIMIT:
                check_bad_share(self.dataset, self.read, self.bad, self.limit, self.log_file)

    def found_bad(self, index: int, where: str, reason: str) -> None:
        """Row `index` (named `where`) could not be loaded: DataError when strict or past the limit, else logged."""
        if not self.skip:
            raise DataError(f"{where}: {reason} (use --skip-bad-rows to skip such rows; the run can resume from its "
                            "last checkpoint)")
        self.state[index] = _BAD
        self.read, self.bad = self.read + 1, self.bad + 1
        if self.bad <= SAID_ON_STDERR:  # a CLI user sees skips as they happen; the log names every one
            more = f" (further ones only in {self.log_file})" if self.bad == SAID_ON_STDERR else ""
            print(f"skipped {where}: {reason[:200]}{more}", file=sys.stderr, flush=True)
        record_bad_row(self.dataset, where, reason, self.read, self.bad, self.limit, self.log_file)
