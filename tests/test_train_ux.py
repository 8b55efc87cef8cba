"""Training as its user sees it, through the CLI: progress against the budget that ends first
with the tokens/s `metrics.jsonl` logs, rank 0 alone reporting under torchrun, what a resume
says, and every dropout settable (2 gloo ranks then 1 process equal 1 process throughout)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from mos_search.cli import main
from mos_search.models.checkpoint import read_state, resolve_checkpoint
from mos_search.training import progress
from mos_search.training.config import TrainConfig

from conftest import TINY_SPACE

ROOT = Path(__file__).resolve().parents[1]
NO_DROPOUT = ["--dropout", "0", "--attention-dropout", "0", "--router-dropout", "0"]


def train_options(corpus, out: Path, steps: int, *extra: str) -> list[str]:
    """`train` options of a tiny neuron-wise run that logs every step, in float32 (runs are
    compared to 1e-6, which bf16 autocast, `auto` on a CPU with native bf16, would not hold)."""
    return [
        "--data", str(corpus.root), "--out", str(out), "--space", TINY_SPACE,
        "--mode", "neuron", "--max-tokens", "512", "--max-steps", str(steps),
        "--warmup", "2", "--save-every", "2", "--log-every", "1", "--valid-every", "0",
        "--random-archs", "1", "--device", "cpu", "--precision", "fp32", *extra,
    ]  # fmt: skip


def logged_speeds(out: Path) -> list[int]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r["tokens_per_s"] for r in map(json.loads, lines) if "tokens_per_s" in r]


def progress_lines(output: str) -> list[str]:
    """The progress lines of a run: plain lines, or the bar's last frame (`train ━━━ step ...`)."""
    return [line for line in output.splitlines() if line.startswith("train ")]


def invoke_train(monkeypatch, terminal: bool, args: list[str]):
    """`mos-search train` with standard output taken for a terminal (the rich bar, its last
    frame printed when it stops) or not (plain lines, one after every step)."""
    monkeypatch.setattr(progress, "is_terminal", lambda stream: terminal)
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    monkeypatch.setenv("COLUMNS", "250")  # the bar's fields on one line
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "bar"])
def test_progress_shows_the_tokens_per_s_metrics_logs(terminal, tiny_corpus, tmp_path, monkeypatch):
    """Plain lines (one a step here) and metrics.jsonl (every step) count tokens/s alike; the
    bar shows the latest metrics line's figure, an average over --log-every steps, not the
    last step's."""
    out = tmp_path / "run"
    every = "2" if terminal else "1"
    args = train_options(tiny_corpus, out, 4, "--log-every", every)
    result = invoke_train(monkeypatch, terminal, args)
    speeds = [f"tokens/s {speed:,}  " for speed in logged_speeds(out)]
    shown = progress_lines(result.output)
    if not terminal:
        assert len(shown) == len(speeds) == 4 and all(s in line for s, line in zip(speeds, shown))
    assert len(speeds) == (2 if terminal else 4) and speeds[-1] in shown[-1], (speeds, shown)
    assert "step 4/4  " in shown[-1] and shown[-1].endswith("ETA 0:00"), shown[-1]


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "bar"])
def test_progress_under_a_time_budget_counts_the_minutes(
    terminal, tiny_corpus, tmp_path, monkeypatch
):
    """--minutes ends long before --max-steps: no step total, and the ETA is the minutes'."""
    out = tmp_path / "run"
    args = train_options(tiny_corpus, out, 100_000, "--minutes", "0.01")
    result = invoke_train(monkeypatch, terminal, args)
    step = read_state(out)["step"]
    assert 0 < step < 100_000
    last = progress_lines(result.output)[-1]
    assert f"step {step}  loss " in last and "/100000" not in last, last
    assert last.endswith("ETA 0:00"), last


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    """`torchrun --nproc-per-node 2 -m mos_search.cli train ARGS`: two gloo ranks on the CPU."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", "2", "-m", "mos_search.cli", "train", *args]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done


def resumed_line(output: str) -> tuple[int, int, int]:
    """(step, tokens, epoch) of the one `resumed from step N (M tokens, epoch E)` line."""
    found = re.findall(r"^resumed from step (\d+) \(([\d,]+) tokens, epoch (\d+)\)$", output, re.M)
    assert len(found) == 1, output
    return tuple(int(part.replace(",", "")) for part in found[0])


def test_two_ranks_then_one_process_equal_one_process(tiny_corpus, tmp_path):
    """Neuron mode with every dropout 0 (the routers' too): 2 steps on 2 gloo ranks, 2 more on
    2 ranks resumed, 2 more in one process resumed == 6 steps in one process. Rank 0 alone
    prints; each resume says where it goes on from, and a resumed torchrun run its ranks."""
    out = tmp_path / "ddp"
    first = torchrun(train_options(tiny_corpus, out, 2, *NO_DROPOUT))
    assert first.stdout.count("data-parallel training on 2 ranks (cpu)") == 1, first.stdout
    assert first.stdout.count("done at step") == 1, first.stdout
    assert f"done at step 2; checkpoint {resolve_checkpoint(out)}\n" in first.stdout
    saved = read_state(out)
    model = saved["model"]["supernet"]
    assert model["dropout"] == model["attention_dropout"] == model["router_dropout"] == 0.0

    second = torchrun(["--out", str(out), "--max-steps", "4", "--resume"])
    assert second.stdout.count("data-parallel training on 2 ranks (cpu)") == 1, second.stdout
    assert resumed_line(second.stdout) == (2, saved["tokens_seen"], saved["epoch"])
    assert second.stdout.count("done at step") == 1, second.stdout
    at_four = read_state(out)

    third = CliRunner().invoke(main, ["train", "--out", str(out), "--max-steps", "6", "--resume"])
    assert third.exit_code == 0, third.output
    assert resumed_line(third.output) == (4, at_four["tokens_seen"], at_four["epoch"])
    assert "data-parallel" not in third.output

    one = train_options(tiny_corpus, tmp_path / "one", 6, *NO_DROPOUT)
    alone = CliRunner().invoke(main, ["train", *one])
    assert alone.exit_code == 0, alone.output
    switched = load_file(resolve_checkpoint(out) / "model.safetensors")
    straight = load_file(resolve_checkpoint(tmp_path / "one") / "model.safetensors")
    assert switched.keys() == straight.keys()
    # attention key biases aside: softmax ignores them, so their gradient is rounding noise
    # that Adam scales up to full steps (see test_distributed.py)
    gaps = {
        name: float((switched[name] - straight[name]).abs().max())
        for name in straight
        if not name.endswith("k_proj.bias")
    }
    assert max(gaps.values()) < 1e-6, sorted(gaps.items(), key=lambda kv: -kv[1])[:3]
    assert any(".router." in name for name in gaps)  # the routers were compared too


def test_dropouts_reach_the_model_and_old_configs_keep_theirs(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    args = train_options(
        tiny_corpus, out, 1, "--attention-dropout", "0.2", "--router-dropout", "0.3"
    )
    result = CliRunner().invoke(main, ["train", *args])
    assert result.exit_code == 0, result.output
    state = read_state(out)
    model = state["model"]["supernet"]
    assert (model["dropout"], model["attention_dropout"], model["router_dropout"]) == (
        0.1,
        0.2,
        0.3,
    )
    old = {
        k: v
        for k, v in state["train_config"].items()
        if k not in ("attention_dropout", "router_dropout")
    }
    config = TrainConfig.from_dict(old)  # a run saved before the options existed
    assert (config.attention_dropout, config.router_dropout) == (0.0, 0.1)  # what it trained with
    changed = CliRunner().invoke(
        main, ["train", "--out", str(out), "--resume", "--router-dropout", "0"]
    )
    assert changed.exit_code == 2 and "router_dropout cannot change" in changed.output
