"""`mos-search predictor memory`: fit the peak-memory model of a device on profiled records."""

from __future__ import annotations

from pathlib import Path

import click

from mos_search.cli.types import SEED


@click.command("memory")
@click.option(
    "--dataset",
    "datasets",
    required=True,
    multiple=True,
    help="Records of `mos-search profile --memory` (JSON lines); repeat for several.",
)
@click.option("--out", required=True, help="Memory model file (JSON) to write.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Of the folds.")
def predictor_memory(datasets: tuple[str, ...], out: str, seed: int) -> None:
    """Fit a peak-memory model (least squares on the weights the graphs hold, by kind) and
    report its cross-validated accuracy and conformal margins.

    A translation search takes it with `--memory-model` and `--max-memory-mib`.

    \b
    Example:
      mos-search profile --space cpu-small -n 60 --memory --out runs/profile/memory.jsonl
      mos-search predictor memory --dataset runs/profile/memory.jsonl \\
          --out runs/profile/memory-model.json
    """
    from latency.dataset import read_records
    from latency.memory_model import MemoryModel

    records = [r for path in datasets for r in read_records(path)]
    model = MemoryModel.fit(records, seed)
    model.save(out)
    m = model.meta
    click.echo(
        f"{Path(out)}: {m['records']} records, measured {m['measured_mib'][0]:.1f}-"
        f"{m['measured_mib'][1]:.1f} MiB; cross-validated MAPE {100 * m['cv_mape']:.2f}%, "
        f"largest error {m['cv_max_abs_error_mib']:.2f} MiB"
    )
    for confidence in (0.8, 0.9, 0.95):
        margin = model.margin_mib(confidence)
        click.echo(f"  upper bound at {confidence:.0%}: prediction + {margin:.2f} MiB")
