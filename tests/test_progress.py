"""Training progress when output is not a terminal: plain periodic lines, no escape codes."""

from __future__ import annotations

import re

from click.testing import CliRunner

from mos_search.cli import main
from mos_search.training import progress
from mos_search.training.progress import PlainProgress, StepReport, TrainBudget, duration

from conftest import TINY_SPACE

LINE = re.compile(
    r"^train step (\d+)(/\d+)?  loss \d+\.\d{3}  tokens/s [\d,]+  "
    r"elapsed \d+:\d\d  ETA (\d+:\d\d|\?)$"
)


def test_redirected_training_prints_plain_lines(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)  # a line after every step
    options = ["--data", str(tiny_corpus.root), "--out", str(tmp_path / "run")]
    options += ["--space", TINY_SPACE, "--max-tokens", "512", "--max-steps", "4"]
    options += ["--warmup", "1", "--save-every", "2", "--valid-every", "0"]
    result = CliRunner().invoke(main, ["train", *options])  # stdout is not a terminal here
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "━" not in result.output  # no bar, no ANSI codes
    lines = [line for line in result.output.splitlines() if line.startswith("train step")]
    assert [LINE.match(line).group(1) for line in lines] == ["1", "2", "3", "4"], lines
    assert lines[-1].startswith("train step 4/4  ") and lines[-1].endswith("ETA 0:00")
    assert result.output.splitlines()[-1].startswith("done at step 4")


def test_lines_come_every_interval_and_at_the_end():
    now = [0.0]
    lines: list[str] = []
    shown = PlainProgress(TrainBudget(10, None), every=30, write=lines.append, clock=lambda: now[0])
    for step in range(1, 8):  # 10 s a step
        now[0] += 10
        shown.update(StepReport(step, now[0], loss=2.0 + step, tokens=1000, seconds=5.0))
    assert [line.split()[2] for line in lines] == ["3/10", "6/10"]
    assert "loss 4.000" in lines[0]  # the mean of the steps since the previous line
    assert "tokens/s 200" in lines[0] and "elapsed 0:30  ETA 1:10" in lines[0]
    shown.close()
    assert len(lines) == 3 and lines[2].startswith("train step 7/10  loss 9.000")
    shown.close()
    assert len(lines) == 3  # the last step is shown once


def test_eta_is_the_budget_that_ends_first():
    resumed = TrainBudget(max_steps=1000, minutes=10, start_step=100, start_elapsed=60.0)
    shown = PlainProgress(resumed, every=1e9, write=lambda _: None, clock=lambda: 0.0)
    report = StepReport(step=110, elapsed=80.0, loss=3.0, tokens=10, seconds=1.0)  # 2 s a step
    shown.update(report)
    assert resumed.remaining(report) == (520.0, False)  # the minutes end before 890 more steps
    assert "train step 110  " in shown.line(report) and "ETA 8:40" in shown.line(report)
    steps_first = TrainBudget(max_steps=120, minutes=10, start_step=100, start_elapsed=60.0)
    assert steps_first.remaining(report) == (20.0, True)
    assert TrainBudget(120, None).remaining(StepReport(0, 0.0, 1.0, 1, 1.0)) == (None, True)
    assert (duration(59.6), duration(61), duration(3725)) == ("1:00", "1:01", "1:02:05")


def test_redirected_profiling_prints_plain_lines(monkeypatch, capsys):
    """The profiler's bar, when the output is not a terminal: a plain line every interval and
    one at the end, no escape codes."""
    from latency import profiler

    now = [0.0]
    monkeypatch.setattr(profiler, "PLAIN_EVERY_S", 10.0)
    bar = profiler.PlainProgress("profile onnxruntime-cpu", clock=lambda: now[0])
    with bar:
        task = bar.add_task("profile", total=4, status="")
        for step in range(4):
            now[0] += 6.0
            bar.update(task, advance=1, status=f"{10 + step:.1f} ms")
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "profile onnxruntime-cpu 2/4  11.0 ms  elapsed 0:12  ETA 0:12",
        "profile onnxruntime-cpu 4/4  13.0 ms  elapsed 0:24  ETA 0:00",
    ]
    assert "\x1b" not in "".join(lines)
