"""Resumable multi-stage jobs: each stage writes into its own directory and marks itself done with a summary, so a
rerun skips finished stages and redoes an interrupted one."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable

DONE = "stage.json"


class Stages:
    def __init__(self, root: str | os.PathLike, log: Callable[[str], None] = print) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = log
        self.summaries: dict[str, Any] = {}

    def done(self, name: str) -> bool:
        return (self.root / name / DONE).is_file()

    def run(self, name: str, fn: Callable[[Path], Any]) -> Any:
        """Runs `fn(stage_dir)` unless the stage is done; its JSON-able return value is the stage's summary."""
        directory = self.root / name
        marker = directory / DONE
        if marker.is_file():
            summary = json.loads(marker.read_text())["summary"]
            self.log(f"[{name}] done earlier, kept")
        else:
            directory.mkdir(parents=True, exist_ok=True)
            self.log(f"[{name}] running")
            t0 = time.time()
            summary = fn(directory)
            tmp = directory / f".{DONE}.tmp"
            tmp.write_text(json.dumps({"seconds": round(time.time() - t0, 1), "summary": summary}, indent=1,
                                      default=str))
            os.replace(tmp, marker)
            self.log(f"[{name}] finished in {time.time() - t0:.0f}s")
        self.summaries[name] = summary
        return summary

    def seconds(self, name: str) -> float | None:
        marker = self.root / name / DONE
        return json.loads(marker.read_text())["seconds"] if marker.is_file() else None
