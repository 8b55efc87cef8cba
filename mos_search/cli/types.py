"""Click types of the numeric options (ranges, numbers that must be finite) and shared options.

A bad value is a `click.BadParameter`, which the `mos-search` group prints as one line
(`error: invalid value for '--beam': 0 is not in the range x>=1.`) with exit code 2.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import click


class FiniteFloat(click.FloatRange):
    """A `click.FloatRange` that also refuses nan and the infinities (a range alone lets nan
    through: every comparison with it is false)."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The number, checked against the range and for being finite."""
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


COUNT = click.IntRange(min=1)  # beams, sentences, steps, architectures, threads, processes
COUNT_OR_ZERO = click.IntRange(min=0)  # warm-up steps, "every N steps" where 0 turns it off
SEED = click.IntRange(min=0)
POSITIVE = FiniteFloat(min=0, min_open=True)  # minutes, learning rates, budgets
NON_NEGATIVE = FiniteFloat(min=0)  # length penalties
FRACTION = FiniteFloat(min=0, max=1, max_open=True)  # dropout
OPEN_FRACTION = FiniteFloat(min=0, max=1, min_open=True, max_open=True)  # held-out shares

# the decoding options of `score`, `translate`, `export` and `search` (mos_search/oracle/beam.py)
LENPEN_HELP = (
    "Length penalty of beam search: the finished hypothesis of best log-probability / "
    "length**lenpen wins (fairseq's; 1 = per token, lower favours shorter translations, higher "
    "longer; no effect at beam 1)."
)
NO_REPEAT_HELP = (
    "Block any token that would repeat an n-gram of this many tokens within a translation "
    "(fairseq's no_repeat_ngram_size; 0 = off; 3 stops loops such as 'of the children of the "
    "children of')."
)


def decoding_options(prefix: str = "") -> Any:
    """The `--{prefix}lenpen` and `--{prefix}no-repeat-ngram` options of every command that
    decodes (one definition: the same defaults and help everywhere)."""
    lenpen = click.option(
        f"--{prefix}lenpen", default=1.0, show_default=True, type=NON_NEGATIVE, help=LENPEN_HELP
    )
    no_repeat = click.option(
        f"--{prefix}no-repeat-ngram",
        f"{prefix.replace('-', '_')}no_repeat_ngram_size",
        default=0,
        show_default=True,
        type=COUNT_OR_ZERO,
        help=NO_REPEAT_HELP,
    )
    return lambda command: lenpen(no_repeat(command))


def deployment_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add --max-memory-mib, --memory-model and --calibrate to a search command, which then
    takes `deployment`: those three as keyword arguments of `search_config`."""

    @functools.wraps(command)
    def wrapper(
        *args: Any,
        max_memory_mib: float | None,
        memory_model: str | None,
        calibrate: int | None,
        **kwargs: Any,
    ) -> Any:
        deployment = {
            "max_memory_mib": max_memory_mib,
            "memory_model": memory_model,
            "calibrate": calibrate,
        }
        return command(*args, deployment=deployment, **kwargs)

    limit = click.option(
        "--max-memory-mib",
        type=POSITIVE,
        help="Memory budget (MiB). mt: the deployment's peak memory on ONNX Runtime (CPU), "
        "predicted by --memory-model and measured in verification; bert: parameter memory (fp32).",
    )
    model = click.option(
        "--memory-model",
        help="mt: the peak-memory model (`mos-search predictor memory`) [default: the shipped "
        "one of onnxruntime-cpu].",
    )
    calibrate = click.option(
        "--calibrate",
        type=click.IntRange(min=3),
        metavar="N",
        help="mt: first measure N architectures on each device and calibrate its predictor on "
        "them (today's machine, today's load), then search with it.",
    )
    return limit(model(calibrate(wrapper)))
