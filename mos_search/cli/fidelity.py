"""`mos-search fidelity` and `mos-search size-quality`: how far the supernet's scores can be
trusted, against standalone training and by whether quality grows with size."""

from __future__ import annotations

import click

from mos_search.cli.types import COUNT, COUNT_OR_ZERO, POSITIVE, SEED


@click.command("fidelity")
@click.option(
    "--ckpt",
    "supernets",
    multiple=True,
    required=True,
    help="A supernet (run folder or checkpoint); repeat to compare several (each labelled by "
    "its folder's name).",
)
@click.option(
    "--standalone", "standalones", multiple=True, help="A run of one architecture; repeatable."
)
@click.option(
    "--train-standalone",
    type=COUNT,
    help="Train this many architectures alone first (largest, smallest, then sampled with "
    "--seed), in OUT/standalone-I, for --steps each; resumable.",
)
@click.option(
    "--space",
    "space_file",
    help="With --train-standalone: the supernet's space as a preset name or .toml [default: its "
    "name]; checked against the supernet's.",
)
@click.option("--steps", default=400, show_default=True, type=COUNT, help="Of each standalone.")
@click.option("--lr", default=1e-3, show_default=True, type=POSITIVE)
@click.option("--warmup", default=200, show_default=True, type=COUNT_OR_ZERO)
@click.option("--max-tokens", default=4096, show_default=True, type=COUNT)
@click.option("--threads", default=1, show_default=True, type=COUNT)
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option(
    "--data",
    help="Data folder whose validation split scores every run [default: the first supernet's].",
)
@click.option("--bleu-limit", default=500, show_default=True, type=COUNT)
@click.option("--resamples", default=2000, show_default=True, type=COUNT, help="Bootstrap.")
@click.option("--out", required=True, help="Folder for fidelity.json, fidelity.png (and runs).")
def fidelity_command(
    supernets: tuple[str, ...],
    standalones: tuple[str, ...],
    train_standalone: int | None,
    space_file: str | None,
    steps: int,
    lr: float,
    warmup: int,
    max_tokens: int,
    threads: int,
    seed: int,
    data: str | None,
    bleu_limit: int,
    resamples: int,
    out: str,
) -> None:
    """Supernet vs standalone: the gap of each architecture's inherited score from its score
    trained alone (mean absolute and signed), and Kendall tau of the rankings, each with a
    bootstrap interval over architectures; each supernet's change of the gap beside weight
    sharing (the first weight-sharing supernet, else the first one); a scatter plot and JSON
    in --out.

    \b
    Example:
      mos-search fidelity --ckpt runs/shared --ckpt runs/neuron --standalone runs/alone-0 \\
          --standalone runs/alone-1 --standalone runs/alone-2 --out runs/fidelity
      mos-search fidelity --ckpt runs/neuron --train-standalone 6 --steps 400 --out runs/fid
    """
    from pathlib import Path

    from mos_search.costs.profiling import sample_archs
    from mos_search.fidelity import fidelity, table_lines, train_standalones
    from mos_search.files import check_writable_dir
    from mos_search.models.build import checkpoint_space
    from mos_search.models.checkpoint import read_state
    from mos_search.space import load_space

    labels = [Path(s).name for s in supernets]
    if len(set(labels)) != len(labels):
        raise click.BadParameter(
            f"two supernets share a folder name: {labels}", param_hint="--ckpt"
        )
    if bool(standalones) == bool(train_standalone):
        raise click.BadParameter(
            "give --standalone runs, or --train-standalone K", param_hint="--standalone"
        )
    check_writable_dir(Path(out))
    spaces = [checkpoint_space(s) for s in supernets]
    space = spaces[0]
    for other, path in zip(spaces[1:], supernets[1:]):
        if other.digest != space.digest:
            raise click.BadParameter(
                f"{path} has space {other.name}, {supernets[0]} has {space.name}: compare "
                "supernets of one space",
                param_hint="--ckpt",
            )
    # one validation split for every run: the first supernet's corpus unless --data is given
    data = data or read_state(supernets[0]).get("train_config", {}).get("data")
    runs = [Path(s) for s in standalones]
    if train_standalone:
        if load_space(space_file or space.name).digest != space.digest:
            raise click.BadParameter(
                f"not the supernet's space ({space.name}); give its .toml", param_hint="--space"
            )
        archs = sample_archs(space, train_standalone, seed)
        options = dict(max_steps=steps, lr=lr, warmup=warmup, max_tokens=max_tokens)
        space_arg = space_file or space.name
        runs = train_standalones(archs, space_arg, data, Path(out), threads=threads, **options)
    result = fidelity(
        dict(zip(labels, map(Path, supernets))), runs, out, data, bleu_limit, resamples
    )
    for line in table_lines(result):
        click.echo(line)
    click.echo(f"wrote {Path(out) / 'fidelity.json'} and fidelity.png")


@click.command("size-quality")
@click.option("--ckpt", required=True, help="A supernet (run folder, checkpoint or pretrained).")
@click.option("--data", help="Data folder whose validation split scores [default: the run's].")
@click.option("--archs", default=30, show_default=True, type=COUNT, help="Architectures scored.")
@click.option("--seed", default=0, show_default=True, type=SEED)
@click.option(
    "--predictor",
    "predictors",
    multiple=True,
    help="DEVICE=PATH: correlate with this latency predictor's milliseconds too; repeatable.",
)
@click.option("--threads", default=2, show_default=True, type=COUNT)
@click.option("--out", required=True, help="Folder for size_quality.json and the score cache.")
def size_quality_command(
    ckpt: str,
    data: str | None,
    archs: int,
    seed: int,
    predictors: tuple[str, ...],
    threads: int,
    out: str,
) -> None:
    """Does quality grow with size? Spearman rho of validation loss against parameter count
    (and predicted latency) over architectures spread evenly over the space's size range, with
    a bootstrap interval over architectures. No standalone training needed; reruns resume.

    \b
    Example:
      mos-search size-quality --ckpt pretrained/cpu-small-neuron --data data/bible \\
          --predictor onnxruntime-cpu=mos_search/shipped/onnxruntime-cpu/predictor.json \\
          --out runs/size-quality
    """
    from mos_search.fidelity.size_quality import size_quality, size_quality_lines

    parsed = {}
    for item in predictors:
        device, sep, path = item.partition("=")
        if not sep or not device or not path:
            raise click.BadParameter(
                f"expected DEVICE=PATH, found {item!r}", param_hint="--predictor"
            )
        parsed[device] = path
    result = size_quality(
        ckpt, out, data=data, archs=archs, seed=seed, predictors=parsed, threads=threads,
        echo=click.echo,
    )  # fmt: skip
    for line in size_quality_lines(result):
        click.echo(line)
