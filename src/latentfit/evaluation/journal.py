"""Append-only JSON-lines journals: one record per finished piece of work, so a run that stops resumes.

`eval`'s `cells.jsonl` and the benchmarks' journals are all `Journal`s: each record is one line,
flushed and synced to disk as it is written; reading skips a line cut by a crash (that work simply
runs again) and keeps the line numbers, so a bad record can be named `file:line`; writing after such
a line first ends it, so the resumed run's records are not glued to it and lost.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator


class Journal:
    """The journal at `path` (it need not exist yet)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def lines(self) -> Iterator[tuple[int, dict]]:
        """(line number, record) of every whole line; a torn line is skipped."""
        if not self.path.exists():
            return
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError:
                continue

    def records(self) -> list[dict]:
        return [record for _, record in self.lines()]

    @contextmanager
    def writer(self) -> Iterator[Callable[[dict], None]]:
        """An `append(record)` for a run of writes to one open file (each line flushed and synced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+b") as handle:
            if handle.tell() and (handle.seek(-1, os.SEEK_END), handle.read(1))[1] != b"\n":
                handle.write(b"\n")  # after a line torn by a crash: the next record starts a line of its own

            def append(record: dict) -> None:
                handle.write((json.dumps(record) + "\n").encode())
                handle.flush()
                os.fsync(handle.fileno())

            yield append

    def append(self, record: dict) -> None:
        """Add one record."""
        with self.writer() as append:
            append(record)
