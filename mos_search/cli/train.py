"""`mos-search train` and `mos-search score`: supernet training and the scoring oracle."""

from __future__ import annotations

import json
import sys

import click

from mos_search.arch import read_arch_file
from mos_search.cli.types import (
    COUNT,
    COUNT_OR_ZERO,
    FRACTION,
    POSITIVE,
    SEED,
    decoding_options,
)
from mos_search.constants import METRICS, MODES, SAMPLINGS


@click.command("train")
@click.option("--data", default="data/bible", show_default=True, help="Corpus folder.")
@click.option("--out", required=True, help="Run folder (checkpoints, metrics.jsonl).")
@click.option("--space", default="cpu-small", show_default=True, help="Preset name or .toml.")
@click.option("--mode", type=click.Choice(MODES), default="neuron", show_default=True)
@click.option("--experts", default=2, show_default=True, help="Expert banks per MoS layer (2-4).")
@click.option("--mos-attention", is_flag=True, help="Give attention projections experts too.")
@click.option(
    "--arch",
    "arch_file",
    type=click.Path(dir_okay=False),
    help="Train this one architecture alone (standalone), from a JSON file.",
)
@click.option(
    "--sampling",
    type=click.Choice(SAMPLINGS),
    default="sandwich",
    show_default=True,
    help="sandwich: largest+smallest+k random; random: k random.",
)
@click.option(
    "--random-archs",
    default=2,
    show_default=True,
    type=COUNT_OR_ZERO,
    help="k random archs per step.",
)
@click.option("--max-tokens", default=4096, show_default=True, type=COUNT, help="Tokens per batch.")
@click.option("--lr", default=1e-3, show_default=True, type=POSITIVE)
@click.option("--warmup", default=200, show_default=True, type=COUNT_OR_ZERO)
@click.option(
    "--dropout", default=0.1, show_default=True, type=FRACTION, help="Residual and FFN dropout."
)
@click.option(
    "--attention-dropout",
    default=0.0,
    show_default=True,
    type=FRACTION,
    help="Dropout on the attention weights.",
)
@click.option(
    "--router-dropout",
    default=0.1,
    show_default=True,
    type=FRACTION,
    help="Dropout inside the MoS routers (layer and neuron modes).",
)
@click.option(
    "--expert-init",
    type=click.Choice(["independent", "scaled", "copies"]),
    default="independent",
    show_default=True,
    help="How MoS expert banks start: independent (each like nn.Linear; a uniform mix's std "
    "shrinks by 1/sqrt(experts)), scaled (each x sqrt(experts): a uniform mix keeps "
    "nn.Linear's std, the router's near-uniform start within a few %), copies (one init "
    "copied, plus 1% noise). MoS supernets only.",
)
@click.option(
    "--scale-dropout",
    is_flag=True,
    help="HAT's rule: scale dropout by the sub-network's width over the largest.",
)
@click.option("--max-steps", default=1000, show_default=True, type=COUNT)
@click.option("--minutes", type=POSITIVE, help="Wall-clock budget (counts across resumes).")
@click.option("--save-every", default=100, show_default=True, type=COUNT)
@click.option("--log-every", default=10, show_default=True, type=COUNT)
@click.option("--valid-every", default=200, show_default=True, type=COUNT_OR_ZERO)
@click.option("--seed", default=1, show_default=True, type=SEED)
@click.option("--threads", default=1, show_default=True, type=COUNT, help="Torch intra-op threads.")
@click.option(
    "--device",
    default="auto",
    show_default=True,
    help="auto (this rank's GPU if any, else CPU), cpu, cuda or cuda:N.",
)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "bf16"]),
    default="auto",
    show_default=True,
    help="auto: bf16 autocast on a GPU, and on a CPU with native bf16 (AVX512-BF16, AMX) where "
    "a bf16 matmul measures at least 2x faster at start; float32 elsewhere. bf16 on a CPU "
    "without native bf16 falls back to float32 with a message.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out where it stopped.")
@click.option(
    "--init",
    "init_from",
    help="Start from this supernet (a run, checkpoint or pretrained folder): its space, mode "
    "and weights, a fresh optimizer; with --arch, that architecture's inherited weights.",
)
def train_command(arch_file: str | None, resume: bool, **options) -> None:
    """Train a supernet (or, with --arch, one standalone architecture).

    The space's task decides the objective: translation (parallel corpus) or masked-LM BERT
    (a text corpus from `mos-search data text`; 15% of tokens masked, 80/10/10).

    Under torchrun it trains data-parallel (NCCL on GPUs, gloo on CPUs): --max-tokens is the
    global batch, shared out over the ranks; rank 0 alone prints and writes the checkpoints; a run
    resumes on any number of ranks (and with every dropout at 0, matches one process).

    \b
    Example:
      mos-search train --data data/bible --out runs/neuron --mode neuron --max-steps 2000
      mos-search train --out runs/neuron --max-steps 4000 --resume
      mos-search train --init pretrained/cpu-small-neuron --out runs/more --minutes 30
      mos-search train --data data/bible-en --space bert-cpu --out runs/bert-neuron --minutes 20
      torchrun --nproc-per-node 8 -m mos_search.cli train --data data/wmt --space hat-wmt14 \\
          --out runs/hat-neuron --max-tokens 65536 --max-steps 40000
    """
    from mos_search.training.config import TrainConfig, resumed_config
    from mos_search.training.train import train

    if resume:
        ctx = click.get_current_context()
        given = {
            name: value
            for name, value in options.items()
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        }
        given.pop("out", None)
        config = resumed_config(options["out"], **given)
    else:
        config = TrainConfig(arch=read_arch_file(arch_file)[0] if arch_file else None, **options)
    result = train(config, resume=resume)
    state = "interrupted" if result.interrupted else "done"
    if result.is_main:  # under torchrun, rank 0 alone reports
        click.echo(f"{state} at step {result.step}; checkpoint {result.checkpoint}")
    if result.is_main and result.interrupted:
        click.echo(f"resume with: mos-search train --out {result.run_dir} --resume")
    if result.interrupted:
        sys.exit(130)


@click.command("score")
@click.option("--ckpt", required=True, help="Run folder or checkpoint directory.")
@click.option("--data", help="Corpus folder (default: the one the run was trained on).")
@click.option(
    "--arch",
    "arch_file",
    type=click.Path(dir_okay=False),
    help="JSON file: one architecture, or a list of them.",
)
@click.option(
    "--preset-arch",
    type=click.Choice(["largest", "smallest"]),
    multiple=True,
    help="Score the space's largest/smallest member.",
)
@click.option(
    "--metric",
    type=click.Choice(METRICS),
    multiple=True,
    help="[default: loss and bleu for translation, loss and perplexity for BERT]",
)
@click.option("--split", type=click.Choice(["valid", "test"]), default="valid", show_default=True)
@click.option(
    "--limit",
    type=COUNT,
    help="Score N sentences spread evenly over the split (fast search scoring).",
)
@click.option(
    "--beam",
    default=5,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Beam size (1 = greedy).",
)
@decoding_options()
@click.option("--threads", default=1, show_default=True, type=COUNT)
def score_command(
    ckpt: str,
    data: str | None,
    arch_file: str | None,
    preset_arch: tuple[str],
    metric: tuple[str],
    split: str,
    limit: int | None,
    beam: int,
    lenpen: float,
    no_repeat_ngram_size: int,
    threads: int,
) -> None:
    """Score architectures of a checkpoint: loss and sacreBLEU, or masked-LM perplexity.

    \b
    Example:
      mos-search score --ckpt runs/neuron --preset-arch largest --preset-arch smallest
      mos-search score --ckpt runs/neuron --arch arch.json --split test --beam 5
      mos-search score --ckpt runs/bert-neuron --preset-arch largest --metric perplexity
    """
    from mos_search.oracle.scoring import score_report

    click.echo(
        score_report(
            ckpt,
            data=data,
            arch_json=json.dumps(read_arch_file(arch_file, many=True)) if arch_file else None,
            presets=list(preset_arch),
            metrics=list(metric) or None,
            split=split,
            limit=limit,
            beam=beam,
            threads=threads,
            lenpen=lenpen,
            no_repeat_ngram_size=no_repeat_ngram_size,
        )
    )
