"""`mos-search search` and `mos-search report`: the multi-objective search and its report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from latency.ssh import RemoteOptions
from mos_search.cli.remote import remote_options
from mos_search.cli.types import (
    COUNT,
    SEED,
    decoding_options,
    deployment_options,
)
from mos_search.search.config import ALGORITHMS

if TYPE_CHECKING:
    from mos_search.costs.elsewhere import Elsewhere


@click.command("search")
@click.option("--task", type=click.Choice(["mt", "bert"]), default="mt", show_default=True)
@click.option("--ckpt", required=True, help="Trained supernet (run folder or checkpoint).")
@click.option("--data", help="Data folder [default: the one the checkpoint was trained on].")
@click.option(
    "--device",
    "devices",
    multiple=True,
    default=["onnxruntime-cpu"],
    show_default=True,
    help="Device whose predicted latency is an objective; repeat for several.",
)
@click.option(
    "--predictor",
    "predictors",
    multiple=True,
    help="Predictor file per --device, in order [default: the one shipped for DEVICE].",
)
@click.option(
    "--objective",
    type=click.Choice(["bleu-latency", "perplexity-memory"]),
    help="[default: bleu-latency for mt, perplexity-memory for bert]",
)
@click.option(
    "--quality",
    type=click.Choice(["loss", "bleu", "perplexity"]),
    help="Oracle score searched on [default: validation loss for mt (fast; BLEU still "
    "reported), perplexity for bert].",
)
@click.option(
    "--limit", default=200, show_default=True, type=COUNT, help="Validation sentences scored."
)
@click.option("--beam", default=1, show_default=True, type=COUNT, help="Beam of --quality bleu.")
@click.option(
    "--threads", default=2, show_default=True, type=COUNT, help="Torch threads of the oracle."
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=COUNT,
    help="Score each generation's new candidates in N processes (1 thread each; same results).",
)
@click.option(
    "--max-latency-ms",
    multiple=True,
    help="Latency budget: X (first device) or DEVICE=X; repeatable.",
)
@click.option(
    "--latency-confidence",
    type=click.FloatRange(0.5, 1.0, max_open=True),
    help="Latency budgets hold with this confidence: the search constrains the upper bound of "
    "the predictor's interval, not its mean.  [default: 0.9; with --resume, the saved run's]",
)
@click.option("--max-params", type=COUNT, help="Parameter budget.")
@deployment_options
@click.option(
    "--algorithm",
    type=click.Choice(list(ALGORITHMS)),
    default="nsga2",
    show_default=True,
    help="nsga2-assisted: a quality surrogate screens each generation's candidates and sends "
    "only a quarter of the population to the oracle (mos_search/search/assisted.py).",
)
@click.option("--generations", default=20, show_default=True, type=COUNT)
@click.option(
    "--population",
    type=click.IntRange(min=2),
    help="Population [default: 40 for nsga2, 125 for hat-evo].",
)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option("--out", required=True, help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue the search saved in --out.")
@click.option("--no-verify", is_flag=True, help="Skip measuring and test-scoring the front.")
@click.option(
    "--verify-limit",
    default=300,
    show_default=True,
    type=COUNT,
    help="Test sentences (BLEU or perplexity).",
)
@click.option("--verify-beam", default=5, show_default=True, type=COUNT)
@decoding_options("verify-")
@click.option(
    "--verify-max", default=8, show_default=True, type=COUNT, help="Front archs verified (spread)."
)
@click.option(
    "--verify-passes",
    default=3,
    show_default=True,
    type=COUNT,
    help="Separated measuring passes over the verified archs (median and interval).",
)
@remote_options
@click.option(
    "--verify-export-bundles",
    metavar="DIR",
    help="Verify offline: write the front's models to DIR/PROFILE/ (with measure.sh) and stop; "
    "rerun with --resume --verify-import once measured.",
)
@click.option(
    "--verify-import",
    multiple=True,
    metavar="RESULTS",
    help="The results.jsonl of --verify-export-bundles (repeat per device): merged, then "
    "verification goes on.",
)
def search_command(
    task: str,
    ckpt: str,
    data: str | None,
    devices: tuple[str, ...],
    predictors: tuple[str, ...],
    objective: str | None,
    quality: str | None,
    limit: int,
    beam: int,
    threads: int,
    workers: int,
    max_latency_ms: tuple[str, ...],
    latency_confidence: float | None,
    max_params: int | None,
    deployment: dict[str, Any],
    algorithm: str,
    generations: int,
    population: int | None,
    seed: int,
    out: str,
    resume: bool,
    no_verify: bool,
    verify_limit: int,
    verify_beam: int,
    verify_lenpen: float,
    verify_no_repeat_ngram_size: int,
    verify_max: int,
    verify_passes: int,
    remote: RemoteOptions | None,
    verify_export_bundles: str | None,
    verify_import: tuple[str, ...],
) -> None:
    """Multi-objective search, then verify the front and report.

    mt: quality vs predicted latency per device; bert: perplexity vs parameter memory.

    \b
    Example:
      mos-search search --task mt --ckpt runs/supernet --device onnxruntime-cpu \\
          --objective bleu-latency --max-latency-ms 80 --algorithm nsga2 --out runs/search
      mos-search search --ckpt runs/supernet --max-latency-ms 80 --max-params 5000000 \\
          --max-memory-mib 60 --calibrate 20 --out runs/search-limits
      mos-search search --task bert --objective perplexity-memory --ckpt runs/bert-neuron \\
          --max-memory-mib 12 --out runs/search-bert
      mos-search search --ckpt runs/supernet --max-latency-ms 80 --out runs/search \\
          --remote ssh://pi@board.local   # the front verified on the board
    """
    from mos_search.search.config import VerifySettings
    from mos_search.search.objectives import search_task
    from mos_search.search.options import search_config

    config = search_config(
        task=task,
        checkpoint=ckpt,
        data=data,
        devices=devices,
        predictors=predictors,
        objective=objective,
        quality=quality,
        limit=limit,
        beam=beam,
        threads=threads,
        workers=workers,
        max_latency_ms=max_latency_ms,
        latency_confidence=_latency_confidence(latency_confidence, out, resume),
        max_params=max_params,
        **deployment,
        algorithm=algorithm,
        generations=generations,
        population=population,
        seed=seed,
    )
    checks = (verify_limit, verify_beam, verify_max, verify_passes, verify_lenpen)
    elsewhere = _elsewhere(task, remote, verify_export_bundles, verify_import)
    verify = None if no_verify else VerifySettings(*checks, verify_no_repeat_ngram_size, elsewhere)
    result = search_task(config, out, resume, verify, echo=click.echo)
    if result.interrupted:
        sys.exit(130)


def _latency_confidence(given: float | None, out: str, resume: bool) -> float | None:
    """--latency-confidence, or by default the resumed run's (None for a 0.1 run, which
    constrained the mean), else DEFAULT_LATENCY_CONFIDENCE."""
    from mos_search.search.config import DEFAULT_LATENCY_CONFIDENCE
    from mos_search.search.run import saved_config

    if given is not None:
        return given
    saved = saved_config(out) if resume else None
    return saved.latency_confidence if saved else DEFAULT_LATENCY_CONFIDENCE


def _elsewhere(
    task: str, remote: RemoteOptions | None, export: str | None, imports: tuple[str, ...]
) -> Elsewhere:
    """Where verification measures, from the options (BERT's memory is measured here only)."""
    from mos_search.costs.elsewhere import Elsewhere

    elsewhere = Elsewhere(remote, Path(export) if export else None, tuple(map(Path, imports)))
    if task == "bert" and elsewhere != Elsewhere():
        raise click.BadParameter(
            "BERT verification measures memory here; drop --remote/--verify-*", param_hint="--task"
        )
    return elsewhere


@click.command("report")
@click.argument("run")
@click.option(
    "--baseline",
    multiple=True,
    help="Another run on the same problem, drawn beside RUN; repeatable (up to 5).",
)
def report_command(run: str, baseline: tuple[str, ...]) -> None:
    """Pareto plots, hypervolume, HTML page, JSON and CSV of a finished search (in RUN/report);
    for a training run, its loss and router diagnostics (RUN/report/training.png).

    \b
    Example:
      mos-search report runs/search --baseline runs/search-hat
      mos-search report runs/assisted --baseline runs/nsga2 --baseline runs/hat \\
          --baseline runs/random
      mos-search report runs/neuron      # a training run: routing entropy, bank distance, ...
    """
    from mos_search.search.report import write_report

    if (Path(run) / "metrics.jsonl").is_file() and not (Path(run) / "search.json").exists():
        from mos_search.training.report import write_training_report

        if baseline:
            raise click.BadParameter("is for searches", param_hint="--baseline")
        click.echo(f"wrote {write_training_report(run)}")
        return

    click.echo(f"wrote {write_report(run, list(baseline))}")
