"""`mos-search predictor calibrate`: the day's correction of a predictor from a few measurements."""

from __future__ import annotations

import click

from mos_search.cli.latency import SPACE_OF_PREDICTOR


@click.command("calibrate")
@click.option("--predictor", "predictor_path", required=True, help="The predictor to calibrate.")
@click.option(
    "--dataset",
    required=True,
    help="Today's measurements of a few architectures (`mos-search profile -n 20`).",
)
@click.option("--out", required=True, help="The calibrated predictor file to write.")
@click.option("--space", "space_option", help=SPACE_OF_PREDICTOR)
def predictor_calibrate(
    predictor_path: str, dataset: str, out: str, space_option: str | None
) -> None:
    """Calibrate a predictor to today's machine from a few of today's measurements.

    The predictor's log-latency is mapped by a line plus a ridge-penalised linear term fitted
    on today's records (`LatencyPredictor.transfer`), its intervals from their leave-one-out
    residuals; `search --calibrate N` does the same at the start of a search. Prints the
    predictor's accuracy on today's records before, and the calibrated one's in-sample.

    \b
    Example:
      mos-search profile --space cpu-small -n 20 --seed 3 --out runs/profile/today.jsonl
      mos-search predictor calibrate --dataset runs/profile/today.jsonl \\
          --predictor mos_search/shipped/onnxruntime-cpu/predictor.json --out today.json
    """
    from latency.predictor import LatencyPredictor
    from mos_search.costs.predictors import (
        ACCURACY_HEADER,
        evaluate_predictor,
        format_accuracy,
        predictor_space,
        transfer_predictor,
    )

    space = predictor_space(
        predictor_path, LatencyPredictor.load(predictor_path).meta, space_option
    )
    before = evaluate_predictor(predictor_path, dataset, space)
    report = transfer_predictor(predictor_path, dataset, out, space=space)
    click.echo(f"wrote {out} (calibrated on {report.n_train} of today's records)")
    click.echo(ACCURACY_HEADER)
    click.echo(format_accuracy("before", before))
    click.echo(format_accuracy("in-sample", report.test))
