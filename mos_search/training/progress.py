"""Training progress: a rich bar on a terminal, plain lines when standard output is a file or a
pipe (a log, `make demo > demo.log`), where a live bar would print nothing until the end.

A plain line comes every `PLAIN_EVERY_S` seconds of wall clock and once at the end (also when
stopped early):

    train step 120/400  loss 5.123  tokens/s 2,345  elapsed 1:02  ETA 3:40

loss is the mean over the steps since the previous line, tokens/s the target tokens of those
steps over the time the steps took (as `metrics.jsonl` counts it), elapsed the training budget's
wall clock (counted across resumes, as `--minutes` is), and ETA the earlier end of the two
budgets: `--max-steps` at this session's pace so far, `--minutes`. The step total is shown when
`--max-steps` is the budget that ends first.

The bar of a terminal shows the same fields, with the last step's loss and the tokens/s of the
latest `metrics.jsonl` line (the same number, averaged over `--log-every` steps); it fills by
steps when `--max-steps` ends first and by the `--minutes` clock when that does.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.progress import Progress

PLAIN_EVERY_S = 30.0  # seconds between plain progress lines


@dataclass(frozen=True)
class StepReport:
    """One finished training step, as progress shows it."""

    step: int  # steps done, this one included
    elapsed: float  # the budget's wall clock after the step, in seconds, across resumes
    loss: float  # loss per target token of the step
    tokens: int  # target tokens of the step
    seconds: float  # wall time of the step itself
    logged_tokens_per_s: float | None = None  # of the latest metrics.jsonl line (None: none yet)


@dataclass(frozen=True)
class TrainBudget:
    """Where training ends (the first of `max_steps` and `minutes`) and where this session began."""

    max_steps: int
    minutes: float | None
    start_step: int = 0
    start_elapsed: float = 0.0

    def remaining(self, report: StepReport) -> tuple[float | None, bool]:
        """Seconds left (None before a pace is known) and whether the step budget ends first."""
        steps_done = report.step - self.start_step
        by_steps = None
        if steps_done > 0 and report.elapsed > self.start_elapsed:
            pace = (report.elapsed - self.start_elapsed) / steps_done  # seconds per step
            by_steps = (self.max_steps - report.step) * pace
        by_time = None if self.minutes is None else self.minutes * 60 - report.elapsed
        if by_time is None or (by_steps is not None and by_steps <= by_time):
            return (None if by_steps is None else max(by_steps, 0.0)), True
        return max(by_time, 0.0), False


class StepProgress(Protocol):
    """What the training loop tells after every step."""

    def update(self, report: StepReport) -> None:
        """Show (or keep) the step just done."""


def duration(seconds: float) -> str:
    """`m:ss`, or `h:mm:ss` from an hour on."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def status(budget: TrainBudget, report: StepReport, loss: float, tokens_per_s: float | None) -> str:
    """`step 120/400  loss 5.123  tokens/s 2,345  elapsed 1:02  ETA 3:40` (see the module
    docstring); the step total only when `--max-steps` ends first, `?` for what is not known."""
    left, steps_end_first = budget.remaining(report)
    total = f"/{budget.max_steps}" if steps_end_first else ""
    speed = "?" if tokens_per_s is None else f"{tokens_per_s:,.0f}"
    return (
        f"step {report.step}{total}  loss {loss:.3f}  tokens/s {speed}  "
        f"elapsed {duration(report.elapsed)}  ETA {'?' if left is None else duration(left)}"
    )


class PlainProgress:
    """Plain progress lines every `every` seconds (default `PLAIN_EVERY_S`) of `clock`, and one
    from `close`."""

    def __init__(
        self,
        budget: TrainBudget,
        every: float | None = None,
        write: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget, self.clock = budget, clock
        self.every = PLAIN_EVERY_S if every is None else every
        self.write = write or (lambda line: print(line, file=sys.stdout, flush=True))
        self._last: StepReport | None = None
        self._line_at, self._shown_step = clock(), budget.start_step
        self._losses: list[float] = []
        self._tokens, self._seconds = 0, 0.0

    def update(self, report: StepReport) -> None:
        """Count the step; write a line when `every` seconds have passed since the last one."""
        self._last = report
        self._losses.append(report.loss)
        self._tokens, self._seconds = self._tokens + report.tokens, self._seconds + report.seconds
        if self.clock() - self._line_at >= self.every:
            self._emit()

    def close(self) -> None:
        """The last line, unless the last step is shown already."""
        if self._last is not None and self._last.step != self._shown_step:
            self._emit()

    def line(self, report: StepReport) -> str:
        """The line for `report`, with the steps counted since the previous line."""
        loss = sum(self._losses) / max(len(self._losses), 1)
        speed = self._tokens / max(self._seconds, 1e-9)
        return f"train {status(self.budget, report, loss, speed)}"

    def _emit(self) -> None:
        assert self._last is not None
        self.write(self.line(self._last))
        self._line_at, self._shown_step = self.clock(), self._last.step
        self._losses, self._tokens, self._seconds = [], 0, 0.0


class RichProgress:
    """The live bar of a terminal: the fields of a plain line (`status`) with the last step's
    loss and the latest logged tokens/s; it fills by steps or by minutes, whichever ends first."""

    def __init__(self, bar: Progress, budget: TrainBudget) -> None:
        self.bar, self.budget = bar, budget
        self.task = bar.add_task(
            "train",
            total=budget.max_steps,
            completed=budget.start_step,
            status=f"step {budget.start_step}",
        )

    def update(self, report: StepReport) -> None:
        """Move the bar to the step (or to the elapsed minutes) and rewrite its fields."""
        _, steps_end_first = self.budget.remaining(report)
        if steps_end_first or self.budget.minutes is None:
            completed, total = float(report.step), float(self.budget.max_steps)
        else:
            completed, total = report.elapsed, self.budget.minutes * 60
        text = status(self.budget, report, report.loss, report.logged_tokens_per_s)
        self.bar.update(self.task, completed=completed, total=total, status=text)


class _Silent:
    def update(self, report: StepReport) -> None:
        pass


def is_terminal(stream: object) -> bool:
    """Whether `stream` is an interactive terminal (False for files, pipes, captured output)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


@contextmanager
def training_progress(enabled: bool, budget: TrainBudget) -> Iterator[StepProgress]:
    """Progress of a training run: nothing unless `enabled`; a rich bar when standard output is
    a terminal, else plain lines (see the module docstring)."""
    if not enabled:
        yield _Silent()
    elif is_terminal(sys.stdout):
        with _rich_bar() as bar:
            yield RichProgress(bar, budget)
    else:
        plain = PlainProgress(budget)
        try:
            yield plain
        finally:
            plain.close()


def _rich_bar() -> Progress:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    columns = [TextColumn("train"), BarColumn(), TextColumn("{task.fields[status]}")]
    return Progress(*columns, console=Console(), transient=False)
