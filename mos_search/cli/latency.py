"""`mos-search devices`, `profile` and `predictor ...`: measured latency and its predictors."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from latency.ssh import RemoteOptions
from mos_search.cli.remote import remote_options
from mos_search.cli.types import COUNT, OPEN_FRACTION, POSITIVE, SEED
from mos_search.files import check_output_file

if TYPE_CHECKING:
    from mos_search.costs.profiling import ProfilePlan


@click.command("devices")
def devices_command() -> None:
    """List every registered device and whether it can run here.

    \b
    Example:
      mos-search devices
    """
    from devices import availability

    for name, reason in availability().items():
        click.echo(f"{name:<18}{'available' if reason is None else 'unavailable: ' + reason}")


@click.command("profile")
@click.option(
    "--device",
    "device_profile",
    default="onnxruntime-cpu",
    show_default=True,
    help="Device profile: a shipped name (see `mos-search devices`) or a .toml path.",
)
@click.option("--space", default="cpu-small", show_default=True)
@click.option(
    "-n", "count", default=100, show_default=True, type=COUNT, help="Architectures to measure."
)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option(
    "--vocab-size",
    default=8000,
    show_default=True,
    type=COUNT,
    help="Vocabulary of the measured models (ignored with --ckpt).",
)
@click.option("--ckpt", help="Measure sub-networks extracted from this checkpoint.")
@click.option("--out", help="Dataset file [default: runs/profile/PROFILE/latency.jsonl].")
@click.option("--no-reference", is_flag=True, help="Skip the interleaved reference workload.")
@click.option(
    "--near-budget-ms",
    type=POSITIVE,
    help="Active profiling: measure the members whose predicted interval contains this budget "
    "(needs --predictor), closest first.",
)
@click.option("--predictor", "predictor_path", help="Predictor for --near-budget-ms.")
@remote_options
@click.option(
    "--export-bundles",
    metavar="DIR",
    help="Measure offline: write the models, the agent and measure.sh to DIR instead of "
    "measuring (for a target SSH cannot reach).",
)
@click.option("--overwrite", is_flag=True, help="Replace the folder of --export-bundles.")
@click.option(
    "--import",
    "import_path",
    metavar="RESULTS",
    help="Merge the results.jsonl measure.sh wrote (checked against the job.json beside it) "
    "into the dataset, and stop.",
)
@click.option("--job", "job_file", help="The job.json of --import [default: beside RESULTS].")
@click.option(
    "--memory",
    is_flag=True,
    help="Also measure each model's peak memory on the device (ONNX Runtime on this machine, a "
    "fresh process per model), for `mos-search predictor memory`.",
)
def profile_command(
    device_profile: str,
    space: str,
    count: int,
    seed: int,
    vocab_size: int,
    ckpt: str | None,
    out: str | None,
    no_reference: bool,
    near_budget_ms: float | None,
    predictor_path: str | None,
    remote: RemoteOptions | None,
    export_bundles: str | None,
    overwrite: bool,
    import_path: str | None,
    job_file: str | None,
    memory: bool,
) -> None:
    """Measure architectures on a device; appends to its dataset and resumes where it stopped.

    Here, on another machine over SSH (--remote), or offline (--export-bundles, then --import).

    \b
    Example:
      mos-search profile --device onnxruntime-cpu --space cpu-small -n 500
      mos-search profile --space cpu-small -n 20 --near-budget-ms 60 \\
          --predictor runs/profile/onnxruntime-cpu/predictor.json   # where the budget is decided
      mos-search profile --space cpu-small -n 200 --remote ssh://pi@board.local \\
          --remote-python /home/pi/agent/bin/python --out runs/profile/board/latency.jsonl
      mos-search profile --space cpu-small -n 200 --export-bundles board-bundles
      mos-search profile --import board-bundles/results.jsonl --out runs/profile/board/latency.jsonl
      mos-search profile --space cpu-small -n 60 --memory --out runs/profile/memory.jsonl
    """
    from mos_search.costs.profiling import profile_plan

    if memory and (remote is not None or export_bundles or import_path):
        raise click.BadParameter(
            "measures on this machine: drop --remote/--export-bundles/--import",
            param_hint="--memory",
        )
    if import_path is not None:
        _profile_import(import_path, job_file, out, remote, export_bundles)
        return
    if ckpt is not None:
        _check_options_of_the_checkpoint(click.get_current_context(), ckpt, space, vocab_size)
    plan = profile_plan(
        device_profile, space, count, seed, vocab_size, ckpt, out, near_budget_ms, predictor_path
    )
    if export_bundles is not None:
        _profile_export(export_bundles, plan, overwrite, not no_reference, remote)
        return
    if remote is None:
        from mos_search.costs.profiling import measure_archs

        run = measure_archs(
            plan.profile, plan.archs, plan.models, plan.dataset, not no_reference, memory=memory
        )
    else:
        from mos_search.costs.elsewhere import measure_on_remote

        run = measure_on_remote(
            remote, plan.profile, plan.archs, plan.models, plan.dataset, not no_reference
        )
    click.echo(
        f"{run.dataset}: measured {run.measured}, already there {run.skipped}, "
        f"flagged (spread too wide) {run.flagged}"
    )
    if run.interrupted:
        click.echo("interrupted: rerun the same command to continue")
        sys.exit(130)


def _profile_export(
    folder: str, plan: ProfilePlan, overwrite: bool, reference: bool, remote: RemoteOptions | None
) -> None:
    """`profile --export-bundles`: write what `plan` (`costs.profiling.profile_plan`) measures
    as a folder to measure offline."""
    from mos_search.costs.elsewhere import export_bundles

    if remote is not None:
        raise click.BadParameter("measures offline; drop --remote", param_hint="--export-bundles")
    dataset = plan.dataset
    command = f"mos-search profile --import {folder}/results.jsonl --out {dataset}"
    built = export_bundles(
        folder,
        plan.profile,
        plan.archs,
        plan.models,
        dataset,
        command,
        overwrite,
        reference=reference,
    )
    click.echo(
        f"{folder}: {len(built.job.items)} architecture(s) to measure ({built.skipped} already "
        f"in {dataset}); on the target: {folder}/measure.sh, then here: {command}"
    )


def _profile_import(
    results: str,
    job_file: str | None,
    out: str | None,
    remote: RemoteOptions | None,
    export_bundles: str | None,
) -> None:
    """`profile --import`: merge an agent's results into the dataset."""
    from mos_search.costs.elsewhere import import_results

    if remote is not None or export_bundles is not None:
        raise click.BadParameter(
            "merges results; drop --remote/--export-bundles", param_hint="--import"
        )
    merge = import_results(results, out, job_file)
    click.echo(
        f"{merge.dataset}: merged {merge.added}, already there {merge.duplicates}, "
        f"not measured yet {merge.missing()}"
    )


@click.group("predictor")
def predictor_group() -> None:
    """Per-device latency predictors (MLP on architecture features).

    \b
    Example:
      mos-search predictor train --dataset runs/profile/onnxruntime-cpu/latency.jsonl
    """


@predictor_group.command("train")
@click.option(
    "--dataset",
    "datasets",
    required=True,
    multiple=True,
    help="Latency dataset (JSON lines); repeat to train on several.",
)
@click.option("--out", help="Predictor file [default: beside the first dataset, predictor.json].")
@click.option("--space", default="cpu-small", show_default=True)
@click.option("--test-fraction", default=0.2, show_default=True, type=OPEN_FRACTION)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option(
    "--hidden",
    default="32",
    show_default=True,
    help="Hidden widths of each member's MLP (on a quadratic model; HAT's MLP: 400,400,400).",
)
@click.option(
    "--members", default=8, show_default=True, type=COUNT, help="Ensemble members (bootstrap)."
)
@click.option("--raw", is_flag=True, help="Train on raw times, without drift correction.")
def predictor_train(
    datasets: tuple[str, ...],
    out: str | None,
    space: str,
    test_fraction: float,
    seed: int,
    hidden: str,
    members: int,
    raw: bool,
) -> None:
    """Train a predictor (an ensemble with intervals) and report held-out accuracy.

    The table gives RMSE, MAPE, the share within +-5% and +-10%, Kendall tau, and the share of
    held-out measurements inside the nominal 80% and 95% prediction intervals.

    \b
    Example:
      mos-search predictor train --dataset runs/profile/onnxruntime-cpu/latency.jsonl \\
          --space cpu-small
    """
    from mos_search.costs.predictors import train_latency_predictor

    try:
        widths = tuple(int(w) for w in hidden.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers, found {hidden!r}", param_hint="--hidden"
        ) from None
    if out is not None:
        check_output_file(out)  # before the fit, not after it
    report = train_latency_predictor(
        datasets, out, space, test_fraction, seed, not raw, hidden=widths, members=members
    )
    for line in report.lines():
        click.echo(line)


@predictor_group.command("eval")
@click.option("--predictor", "predictor_path", required=True)
@click.option("--dataset", required=True)
@click.option("--space", default="cpu-small", show_default=True)
@click.option("--raw", is_flag=True, help="Compare with raw times, without drift correction.")
def predictor_eval(predictor_path: str, dataset: str, space: str, raw: bool) -> None:
    """Accuracy and interval calibration of a saved predictor on a dataset.

    \b
    Example:
      mos-search predictor eval --predictor runs/profile/onnxruntime-cpu/predictor.json \\
          --dataset other-pass.jsonl
    """
    from mos_search.costs.predictors import ACCURACY_HEADER, evaluate_predictor, format_accuracy

    accuracy = evaluate_predictor(predictor_path, dataset, space, not raw)  # may refuse: no header
    click.echo(ACCURACY_HEADER)
    click.echo(format_accuracy("all", accuracy))


SPACE_OF_PREDICTOR = (
    "The predictor's space (preset or .toml), checked against the choices it records "
    "[default: the definition it keeps, or the preset it names]."
)


def _check_options_of_the_checkpoint(
    ctx: click.Context, ckpt: str, space: str, vocab_size: int
) -> None:
    """With --ckpt the checkpoint's space and vocabulary are profiled: a --space or
    --vocab-size given that differs from them is refused, not ignored."""
    from click.core import ParameterSource

    from mos_search.errors import ConfigError
    from mos_search.models.build import checkpoint_space
    from mos_search.space import load_space

    given = {
        name
        for name in ("space", "vocab_size")
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    }
    if not given:
        return
    theirs = checkpoint_space(ckpt)
    if "space" in given and load_space(space).digest != theirs.digest:
        raise ConfigError(
            f"--space {space} is not the space of {ckpt} ({theirs.identity}); with --ckpt the "
            "checkpoint's own space is profiled: drop --space"
        )
    if "vocab_size" in given:
        raise ConfigError(
            f"--vocab-size {vocab_size} is ignored with --ckpt (its sub-networks keep the "
            f"vocabulary of {ckpt}): drop --vocab-size"
        )


@predictor_group.command("update")
@click.option("--predictor", "predictor_path", required=True, help="The predictor to refit.")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    help="Datasets to refit on; repeatable [default: the ones it was trained on, which a "
    "search's verification appends to].",
)
@click.option("--out", help="Where to write [default: over --predictor].")
@click.option("--space", "space_option", help=SPACE_OF_PREDICTOR)
def predictor_update(
    predictor_path: str, datasets: tuple[str, ...], out: str | None, space_option: str | None
) -> None:
    """Refit a predictor with its settings on more measurements (closing the loop).

    \b
    Example:
      mos-search predictor update --predictor runs/profile/onnxruntime-cpu/predictor.json
      mos-search predictor update --predictor shipped.json --dataset mine.jsonl \\
          --dataset runs/search/measured_onnxruntime-cpu.jsonl --out runs/predictor.json
    """
    from mos_search.costs.predictors import update_predictor

    check_output_file(out or predictor_path)
    for line in update_predictor(predictor_path, datasets, out, space_option).lines():
        click.echo(line)


@predictor_group.command("transfer")
@click.option("--from", "source", required=True, help="A predictor of another device.")
@click.option("--dataset", required=True, help="A few measurements on the new device.")
@click.option("--out", required=True, help="Predictor file to write.")
@click.option("--raw", is_flag=True, help="Fit raw times, without drift correction.")
@click.option("--space", "space_option", help=SPACE_OF_PREDICTOR)
def predictor_transfer(
    source: str, dataset: str, out: str, raw: bool, space_option: str | None
) -> None:
    """A predictor for a new device from a few measurements there and an existing predictor
    (its log-latency mapped by a fitted line).

    \b
    Example:
      mos-search profile --device torch-cpu -n 30 --out runs/profile/torch-cpu/latency.jsonl
      mos-search predictor transfer --from mos_search/shipped/onnxruntime-cpu/predictor.json \\
          --dataset runs/profile/torch-cpu/latency.jsonl --out runs/profile/torch-cpu/predictor.json
    """
    from mos_search.costs.predictors import transfer_predictor

    check_output_file(out)
    for line in transfer_predictor(source, dataset, out, not raw, space_option).lines():
        click.echo(line)
