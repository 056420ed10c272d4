"""Progress for the commands: rich bars on a terminal, plain lines otherwise (CI, container logs, `| tee`).

`PlainProgress` has the part of rich's `Progress` interface the commands use. It prints a line when a step
starts, at every further 10% (at most one line per 5 s), when it ends, and, while a step runs without
reporting (LightGBM's rounds, for instance), a "still running" line every minute, so a long retrain is never
silent for twenty minutes.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import TaskID


@dataclass
class _Task:
    name: str
    total: float
    completed: float = 0.0
    started: float | None = None
    finished: bool = False
    shown: float = 0.0  # share last printed (lines at every further 10%)
    shown_at: float = 0.0


class PlainProgress:
    def __init__(self, console: Console, heartbeat: float = 60.0, min_gap: float = 5.0) -> None:
        self.console = console
        self.heartbeat = heartbeat
        self.min_gap = min_gap
        self.tasks: list[_Task] = []
        self.t0 = time.monotonic()
        self.last_line = self.t0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PlainProgress:
        self._thread = threading.Thread(target=self._beat, name="progress-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _line(self, text: str) -> None:
        now = time.monotonic()
        minutes, seconds = divmod(int(now - self.t0), 60)
        self.console.print(f"[{minutes:02d}:{seconds:02d}] {text}", markup=False, highlight=False, soft_wrap=True)
        self.last_line = now

    def _beat(self) -> None:
        while not self._stop.wait(min(self.heartbeat, 5.0)):
            with self._lock:
                if time.monotonic() - self.last_line < self.heartbeat:
                    continue
                running = [t for t in self.tasks if t.started is not None and not t.finished]
                for t in running:
                    self._line(f"{t.name}: still running ({self._share(t)})")

    @staticmethod
    def _share(t: _Task) -> str:
        if t.total <= 1:
            return "started" if not t.finished else "done"
        return f"{100 * t.completed / t.total:.0f}% of {t.total:,.0f}"

    def add_task(self, description: str, total: float | None = 1, start: bool = True, **_: Any) -> TaskID:
        with self._lock:
            self.tasks.append(_Task(description.strip(), float(total or 1)))
            task = TaskID(len(self.tasks) - 1)
        if start:
            self.start_task(task)
        return task

    def start_task(self, task: TaskID) -> None:
        with self._lock:
            t = self.tasks[task]
            if t.started is None:
                t.started = time.monotonic()
                self._line(f"{t.name}: started")

    def update(
        self, task: TaskID, completed: float | None = None, total: float | None = None, advance: float = 0.0, **_: Any
    ) -> None:
        with self._lock:
            t = self.tasks[task]
            if t.started is None:
                t.started = time.monotonic()
                self._line(f"{t.name}: started")
            if total is not None:
                t.total = float(total)
            t.completed = float(completed) if completed is not None else t.completed + advance
            self._report(t)

    def advance(self, task: TaskID, advance: float = 1.0) -> None:
        self.update(task, advance=advance)

    def _report(self, t: _Task) -> None:
        if t.finished:
            return
        now = time.monotonic()
        if t.completed >= t.total:
            t.finished = True
            self._line(f"{t.name}: done in {now - (t.started or now):.1f} s")
            return
        share = t.completed / t.total if t.total else 0.0
        if t.total > 1 and share - t.shown >= 0.1 - 1e-9 and now - t.shown_at >= self.min_gap:
            t.shown, t.shown_at = share, now
            self._line(f"{t.name}: {self._share(t)}")

    def log(self, text: str) -> None:
        with self._lock:
            self._line(text)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=1.0)


def progress_for(console: Console) -> Any:
    """A rich bar on a terminal; plain lines otherwise (CI, container logs, `| tee`)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if not console.is_terminal:
        return PlainProgress(console)
    return Progress(
        TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    )
