"""The `mos-search` command line: thin click wrappers, one library call per command."""

from __future__ import annotations

import sys

import click

from devices.base import DeviceError
from devices.profile import ProfileError
from latency.predictor import PredictorError
from mos_search import __version__
from mos_search.constants import METRICS, MODES, SAMPLINGS
from mos_search.errors import MosSearchError


class FriendlyGroup(click.Group):
    """A click group that prints toolkit errors as one line and exits non-zero."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a toolkit error becomes `error: ...` on stderr and exit code 2."""
        try:
            return super().invoke(ctx)
        except (MosSearchError, DeviceError, ProfileError, PredictorError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mos-search")
def main() -> None:
    """Hardware-aware architecture search for Transformers with Mixture-of-Supernets.

    \b
    Example:
      mos-search space cpu-small
    """


@main.command("space")
@click.argument("name", default="cpu-small")
@click.option(
    "--vocab-size",
    default=8000,
    show_default=True,
    help="Vocabulary size used for the parameter counts.",
)
def space_command(name: str, vocab_size: int) -> None:
    """Show a search space (preset name or .toml path): choices and size range.

    \b
    Example:
      mos-search space hat-wmt14 --vocab-size 32000
    """
    from mos_search.space import describe_space

    click.echo(describe_space(name, vocab_size))


@main.group("data")
def data_group() -> None:
    """Build corpus folders: parallel (translation) or text (masked-LM), with a tokenizer.

    \b
    Example:
      mos-search data bible --out data/bible
      mos-search data text --out data/bible-en
    """


@data_group.command("bible")
@click.option("--out", default="data/bible", show_default=True, help="Corpus folder to write.")
@click.option("--vocab-size", default=8000, show_default=True, help="SentencePiece vocabulary.")
def data_bible(out: str, vocab_size: int) -> None:
    """The default corpus: Spanish (Reina-Valera 1909) -> English (World English Bible).

    Reads Debian's SWORD modules (apt-get install libsword-utils sword-text-sparv sword-text-web).

    \b
    Example:
      mos-search data bible --out data/bible --vocab-size 8000
    """
    from mos_search.data.corpus import build_bible_corpus

    corpus = build_bible_corpus(out, vocab_size)
    click.echo(_corpus_summary(corpus))


@data_group.command("parallel")
@click.option("--langs", nargs=2, required=True, metavar="SRC TGT", help="Language suffixes.")
@click.option(
    "--train", required=True, help="PREFIX (reads PREFIX.SRC, PREFIX.TGT) or a .tsv file."
)
@click.option("--valid", required=True, help="Validation split, as --train.")
@click.option("--test", required=True, help="Test split, as --train.")
@click.option("--out", required=True, help="Corpus folder to write.")
@click.option("--vocab-size", default=8000, show_default=True)
def data_parallel(
    langs: tuple[str, str], train: str, valid: str, test: str, out: str, vocab_size: int
) -> None:
    """A corpus folder from your own parallel text.

    \b
    Example:
      mos-search data parallel --langs de en --train raw/train --valid raw/valid \\
          --test raw/test.tsv --out data/my-corpus
    """
    from mos_search.data.corpus import build_parallel_corpus

    corpus = build_parallel_corpus(out, langs[0], langs[1], train, valid, test, vocab_size)
    click.echo(_corpus_summary(corpus))


@data_group.command("text")
@click.option("--out", default="data/bible-en", show_default=True, help="Corpus folder to write.")
@click.option("--file", "text_file", help="Plain text, one sentence per line (last 10% held out).")
@click.option("--from-corpus", help="A parallel corpus folder: take one side, keep its splits.")
@click.option("--side", help="Language of --from-corpus [default: its target language].")
@click.option("--vocab-size", default=8000, show_default=True, help="SentencePiece vocabulary.")
def data_text(
    out: str, text_file: str | None, from_corpus: str | None, side: str | None, vocab_size: int
) -> None:
    """A text corpus for masked-LM (BERT) training, with a `<mask>` token.

    Without --file or --from-corpus: the English side of the default corpus (World English
    Bible verses, the same book split as `data bible`).

    \b
    Example:
      mos-search data text --out data/bible-en
      mos-search data text --file my_text.txt --out data/my-text
      mos-search data text --from-corpus data/bible --side en --out data/bible-en
    """
    from mos_search.data import text

    if text_file and from_corpus:
        raise click.UsageError("give --file or --from-corpus, not both")
    if text_file:
        corpus = text.text_from_file(out, text_file, vocab_size)
    elif from_corpus:
        corpus = text.text_from_corpus(out, from_corpus, side, vocab_size)
    else:
        corpus = text.bible_text(out, vocab_size)
    counts = ", ".join(f"{s} {len(corpus.lines(s)):,}" for s in ("train", "valid", "test"))
    click.echo(f"wrote {corpus.root}: {counts} sentences, vocab {corpus.vocab_size}")


@data_group.command("tokenize")
@click.option("--data", default="data/bible", show_default=True, help="Parallel corpus folder.")
def data_tokenize(data: str) -> None:
    """(Re)build a corpus's memory-mapped training tokens (`DIR/tokens/`).

    `data bible` and `data parallel` build them already; run this for a corpus built by an
    older version, or after replacing its files. Training reads these instead of the text.

    \b
    Example:
      mos-search data tokenize --data data/wmt14-en-de
    """
    import json

    from mos_search.data.corpus import open_corpus, tokenize_training_split

    store = tokenize_training_split(open_corpus(data))
    meta = json.loads((store / "meta.json").read_text())
    for name, info in meta["files"].items():
        click.echo(
            f"{store}/{name}.bin: {info['sentences']:,} sentences, {info['tokens']:,} tokens"
        )


def _corpus_summary(corpus) -> str:
    import json

    meta = json.loads((corpus.root / "corpus.json").read_text())
    pairs = ", ".join(f"{k} {v:,}" for k, v in meta["pairs"].items())
    return (
        f"wrote {corpus.root}: {corpus.source_lang}->{corpus.target_lang}, {pairs} pairs, "
        f"vocab {corpus.vocab_size}"
    )


@main.command("train")
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
@click.option("--random-archs", default=2, show_default=True, help="k random archs per step.")
@click.option("--max-tokens", default=4096, show_default=True, help="Tokens per batch.")
@click.option("--lr", default=1e-3, show_default=True)
@click.option("--warmup", default=200, show_default=True)
@click.option("--dropout", default=0.1, show_default=True)
@click.option(
    "--scale-dropout",
    is_flag=True,
    help="HAT's rule: scale dropout by the sub-network's width over the largest.",
)
@click.option("--max-steps", default=1000, show_default=True)
@click.option("--minutes", type=float, help="Wall-clock budget (counts across resumes).")
@click.option("--save-every", default=100, show_default=True)
@click.option("--log-every", default=10, show_default=True)
@click.option("--valid-every", default=200, show_default=True)
@click.option("--seed", default=1, show_default=True)
@click.option("--threads", default=1, show_default=True, help="Torch intra-op threads.")
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
    help="auto: bf16 autocast on a GPU, float32 on the CPU.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out where it stopped.")
def train_command(arch_file: str | None, resume: bool, **options) -> None:
    """Train a supernet (or, with --arch, one standalone architecture).

    The space's task decides the objective: translation (parallel corpus) or masked-LM BERT
    (a text corpus from `mos-search data text`; 15% of tokens masked, 80/10/10).

    Under torchrun it trains data-parallel (NCCL on GPUs, gloo on CPUs): --max-tokens is the
    global batch, shared out over the ranks; rank 0 writes the checkpoints; a run resumes on any
    number of ranks.

    \b
    Example:
      mos-search train --data data/bible --out runs/neuron --mode neuron --max-steps 2000
      mos-search train --out runs/neuron --max-steps 4000 --resume
      mos-search train --data data/bible-en --space bert-cpu --out runs/bert-neuron --minutes 20
      torchrun --nproc-per-node 8 -m mos_search.cli train --data data/wmt --space hat-wmt14 \\
          --out runs/hat-neuron --max-tokens 65536 --max-steps 40000
    """
    from mos_search.train import TrainConfig, resumed_config, train

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
        arch = _read_json(arch_file) if arch_file else None
        config = TrainConfig(arch=arch, **options)
    result = train(config, resume=resume)
    state = "interrupted" if result.interrupted else "done"
    click.echo(f"{state} at step {result.step}; checkpoint {result.checkpoint}")
    if result.interrupted:
        click.echo(f"resume with: mos-search train --out {result.run_dir} --resume")
        sys.exit(130)


@main.command("score")
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
    type=click.IntRange(min=1),
    help="Score N sentences spread evenly over the split (fast search scoring).",
)
@click.option(
    "--beam",
    default=5,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Beam size (1 = greedy).",
)
@click.option("--threads", default=1, show_default=True)
def score_command(
    ckpt: str,
    data: str | None,
    arch_file: str | None,
    preset_arch: tuple[str],
    metric: tuple[str],
    split: str,
    limit: int | None,
    beam: int,
    threads: int,
) -> None:
    """Score architectures of a checkpoint: loss and sacreBLEU, or masked-LM perplexity.

    \b
    Example:
      mos-search score --ckpt runs/neuron --preset-arch largest --preset-arch smallest
      mos-search score --ckpt runs/neuron --arch arch.json --split test --beam 5
      mos-search score --ckpt runs/bert-neuron --preset-arch largest --metric perplexity
    """
    from mos_search.oracle import score_report

    click.echo(
        score_report(
            ckpt,
            data,
            _read_text(arch_file) if arch_file else None,
            list(preset_arch),
            list(metric) or None,
            split,
            limit,
            beam,
            threads,
        )
    )


@main.command("devices")
def devices_command() -> None:
    """List every registered device and whether it can run here.

    \b
    Example:
      mos-search devices
    """
    from devices import availability

    for name, reason in availability().items():
        click.echo(f"{name:<18}{'available' if reason is None else 'unavailable: ' + reason}")


@main.command("profile")
@click.option(
    "--device",
    "device_profile",
    default="onnxruntime-cpu",
    show_default=True,
    help="Device profile: a shipped name (see `mos-search devices`) or a .toml path.",
)
@click.option("--space", default="cpu-small", show_default=True)
@click.option("-n", "count", default=100, show_default=True, help="Architectures to measure.")
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--vocab-size",
    default=8000,
    show_default=True,
    help="Vocabulary of the measured models (ignored with --ckpt).",
)
@click.option("--ckpt", help="Measure sub-networks extracted from this checkpoint.")
@click.option("--out", help="Dataset file [default: devices/PROFILE/latency.jsonl].")
@click.option("--no-reference", is_flag=True, help="Skip the interleaved reference workload.")
def profile_command(
    device_profile: str,
    space: str,
    count: int,
    seed: int,
    vocab_size: int,
    ckpt: str | None,
    out: str | None,
    no_reference: bool,
) -> None:
    """Measure architectures on a device; appends to its dataset and resumes where it stopped.

    \b
    Example:
      mos-search profile --device onnxruntime-cpu --space cpu-small -n 500
    """
    from mos_search.profile import run_profile

    run = run_profile(
        device_profile, space, count, seed, vocab_size, ckpt, out, reference=not no_reference
    )
    click.echo(
        f"{run.dataset}: measured {run.measured}, already there {run.skipped}, "
        f"flagged (spread too wide) {run.flagged}"
    )
    if run.interrupted:
        click.echo("interrupted: rerun the same command to continue")
        sys.exit(130)


@main.group("predictor")
def predictor_group() -> None:
    """Per-device latency predictors (MLP on architecture features).

    \b
    Example:
      mos-search predictor train --dataset devices/onnxruntime-cpu/latency.jsonl
    """


@predictor_group.command("train")
@click.option("--dataset", required=True, help="Latency dataset (JSON lines).")
@click.option("--out", help="Predictor file [default: beside the dataset, predictor.json].")
@click.option("--space", default="cpu-small", show_default=True)
@click.option("--test-fraction", default=0.2, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--hidden",
    default="400,400,400",
    show_default=True,
    help="Hidden layer widths (HAT: 400,400,400).",
)
@click.option("--raw", is_flag=True, help="Train on raw times, without drift correction.")
def predictor_train(
    dataset: str,
    out: str | None,
    space: str,
    test_fraction: float,
    seed: int,
    hidden: str,
    raw: bool,
) -> None:
    """Train a predictor on a split by architecture and report held-out accuracy.

    \b
    Example:
      mos-search predictor train --dataset devices/onnxruntime-cpu/latency.jsonl --space cpu-small
    """
    from pathlib import Path

    from mos_search.latency_model import (
        ACCURACY_HEADER,
        format_accuracy,
        train_latency_predictor,
    )

    out = out or str(Path(dataset).with_name("predictor.json"))
    try:
        widths = tuple(int(w) for w in hidden.split(","))
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated integers, found {hidden!r}", param_hint="--hidden"
        ) from None
    report = train_latency_predictor(
        dataset, out, space, test_fraction, seed, not raw, hidden=widths
    )
    click.echo(
        f"wrote {out} (trained on {report.n_train} archs, "
        + (
            f"labels drift-corrected with elasticity {report.elasticity:.2f})"
            if report.elasticity is not None
            else "raw labels)"
        )
    )
    click.echo(ACCURACY_HEADER)
    click.echo(format_accuracy("test", report.test))
    for size, acc in report.curve.items():
        click.echo(format_accuracy(f"train {size}", acc))


@predictor_group.command("eval")
@click.option("--predictor", "predictor_path", required=True)
@click.option("--dataset", required=True)
@click.option("--space", default="cpu-small", show_default=True)
@click.option("--raw", is_flag=True, help="Compare with raw times, without drift correction.")
def predictor_eval(predictor_path: str, dataset: str, space: str, raw: bool) -> None:
    """Accuracy of a saved predictor on a dataset.

    \b
    Example:
      mos-search predictor eval --predictor devices/onnxruntime-cpu/predictor.json \\
          --dataset other-pass.jsonl
    """
    from mos_search.latency_model import ACCURACY_HEADER, evaluate_predictor, format_accuracy

    click.echo(ACCURACY_HEADER)
    click.echo(format_accuracy("all", evaluate_predictor(predictor_path, dataset, space, not raw)))


@main.command("search")
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
    help="Predictor file per --device, in order [default: devices/DEVICE/predictor.json].",
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
@click.option("--limit", default=200, show_default=True, help="Validation sentences scored.")
@click.option("--beam", default=1, show_default=True, help="Beam of --quality bleu.")
@click.option("--threads", default=2, show_default=True, help="Torch threads of the oracle.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    help="Score each generation's new candidates in N processes (1 thread each; same results).",
)
@click.option(
    "--max-latency-ms",
    multiple=True,
    help="Latency budget: X (first device) or DEVICE=X; repeatable.",
)
@click.option("--max-params", type=int, help="Parameter budget.")
@click.option("--max-memory-mib", type=float, help="bert: parameter memory budget (MiB, fp32).")
@click.option(
    "--algorithm", type=click.Choice(["nsga2", "hat-evo"]), default="nsga2", show_default=True
)
@click.option("--generations", default=20, show_default=True)
@click.option("--population", type=int, help="Population [default: 40 for nsga2, 125 for hat-evo].")
@click.option("--seed", default=0, show_default=True)
@click.option("--out", required=True, help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue the search saved in --out.")
@click.option("--no-verify", is_flag=True, help="Skip measuring and test-scoring the front.")
@click.option(
    "--verify-limit", default=300, show_default=True, help="Test sentences (BLEU or perplexity)."
)
@click.option("--verify-beam", default=5, show_default=True)
@click.option("--verify-max", default=8, show_default=True, help="Front archs verified (spread).")
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
    max_params: int | None,
    max_memory_mib: float | None,
    algorithm: str,
    generations: int,
    population: int | None,
    seed: int,
    out: str,
    resume: bool,
    no_verify: bool,
    verify_limit: int,
    verify_beam: int,
    verify_max: int,
) -> None:
    """Multi-objective search, then verify the front and report.

    Translation (mt): quality vs predicted latency per device. BERT: masked-LM perplexity vs the
    encoder's parameter memory; the front is verified with test perplexity and peak memory
    measured with ONNX Runtime at length 128.

    \b
    Example:
      mos-search search --task mt --ckpt runs/supernet --device onnxruntime-cpu \\
          --objective bleu-latency --max-latency-ms 80 --algorithm nsga2 \\
          --generations 20 --population 40 --out runs/search
      mos-search search --task bert --objective perplexity-memory --ckpt runs/bert-neuron \\
          --max-memory-mib 12 --out runs/search-bert
    """
    from mos_search.objectives import latency_budgets, search_task
    from mos_search.problem import MEMORY_COST
    from mos_search.search import SearchConfig

    bert = task == "bert"
    objective = objective or ("perplexity-memory" if bert else "bleu-latency")
    if bert != (objective == "perplexity-memory"):
        raise click.UsageError(f"--objective {objective} is not an objective of --task {task}")
    quality = quality or ("perplexity" if bert else "loss")
    if (bert and quality == "bleu") or (not bert and quality == "perplexity"):
        raise click.UsageError(f"--quality {quality} is not a metric of --task {task}")
    if bert and (max_latency_ms or predictors):
        raise click.UsageError("--task bert searches memory: use --max-memory-mib, not latency")
    if not bert and max_memory_mib is not None:
        raise click.UsageError("--max-memory-mib is for --task bert")
    if max_memory_mib is not None and max_memory_mib <= 0:
        raise click.UsageError("--max-memory-mib must be positive")
    if bert:
        devices = (MEMORY_COST,)
        budgets = {} if max_memory_mib is None else {MEMORY_COST: max_memory_mib}
    else:
        budgets = latency_budgets(max_latency_ms, devices)
    config = SearchConfig(
        algorithm=algorithm,
        generations=generations,
        population=population or (125 if algorithm == "hat-evo" else 40),
        seed=seed,
        metric=quality,
        devices=devices,
        max_latency_ms=budgets,
        max_params=max_params,
        extra={
            "task": task,
            "objective": objective,
            "checkpoint": ckpt,
            "data": data,
            "limit": limit,
            "beam": beam,
            "threads": threads,
            "workers": workers,
            "predictors": list(predictors),
        },
    )
    verify = (
        None
        if no_verify
        else {"test_limit": verify_limit, "beam": verify_beam, "max_archs": verify_max}
    )
    result = search_task(config, out, resume, verify, echo=click.echo)
    if result.interrupted:
        sys.exit(130)


@main.command("report")
@click.argument("run")
@click.option("--baseline", help="A second run on the same problem, drawn beside RUN.")
def report_command(run: str, baseline: str | None) -> None:
    """Pareto plots, hypervolume, HTML page, JSON and CSV of a finished search (in RUN/report).

    \b
    Example:
      mos-search report runs/search --baseline runs/search-hat
    """
    from mos_search.report import write_report

    click.echo(f"wrote {write_report(run, baseline)}")


@main.command("export")
@click.option("--ckpt", required=True, help="Trained supernet (run folder or checkpoint).")
@click.option("--arch", "arch_file", help="Architecture JSON file.")
@click.option("--from-search", help="A finished search run folder to pick the architecture from.")
@click.option(
    "--pick",
    default="best",
    show_default=True,
    help="With --from-search: 'best' (best test BLEU/perplexity, else best quality) or a rank.",
)
@click.option("--data", help="Data folder [default: the checkpoint's].")
@click.option("--out", required=True, help="Model folder to write.")
@click.option("--device", "devices", multiple=True, default=["onnxruntime-cpu"], show_default=True)
@click.option("--test-limit", default=300, show_default=True, help="Test sentences for BLEU.")
@click.option("--beam", default=5, show_default=True)
@click.option("--quantize", type=click.Choice(["int8"]), help="Also write an int8 model.")
def export_command(
    ckpt: str,
    arch_file: str | None,
    from_search: str | None,
    pick: str,
    data: str | None,
    out: str,
    devices: tuple[str, ...],
    test_limit: int,
    beam: int,
    quantize: str | None,
) -> None:
    """Export one sub-network as ONNX, with its tokenizer and a model card.

    Translation: encoder + decoder step with key/value cache. BERT: one encoder (tokens ->
    states), with test perplexity and measured memory in the card.

    \b
    Example:
      mos-search export --ckpt runs/neuron --from-search runs/search --pick best --out model
      mos-search export --ckpt runs/neuron --arch arch.json --out model --quantize int8
      mos-search export --ckpt runs/bert-neuron --from-search runs/search-bert --out bert-model
    """
    from mos_search.deploy import export_bert_model, export_model
    from mos_search.models import checkpoint_task

    arch = _chosen_arch(arch_file, from_search, pick)
    if checkpoint_task(ckpt) == "bert":
        if quantize:
            raise click.UsageError("--quantize is for translation models")
        card = export_bert_model(ckpt, arch, out, data, test_limit, echo=click.echo)
        memory = card["memory"]
        click.echo(
            f"wrote {out}: test perplexity {card['perplexity']['pytorch']:.2f}, parameters "
            f"{memory['params_fp32_mib']:.1f} MiB fp32, ONNX Runtime peak "
            f"{memory['onnxruntime_peak_mib']:.1f} MiB at length {memory['sequence_length']}"
        )
        return
    card = export_model(ckpt, arch, out, data, devices, test_limit, beam, quantize, echo=click.echo)
    bleu = card["bleu"]
    click.echo(
        f"wrote {out}: test BLEU {bleu['onnxruntime']:.2f} (PyTorch {bleu['pytorch']:.2f}), "
        + ", ".join(f"{d} {v['latency_ms']:.1f} ms" for d, v in card["latency"].items())
    )


@main.command("finetune")
@click.option("--ckpt", required=True, help="Trained supernet (run folder or checkpoint).")
@click.option("--arch", "arch_file", help="Architecture JSON file.")
@click.option("--from-search", help="A finished search run folder to pick the architecture from.")
@click.option("--pick", default="best", show_default=True, help="See `export --help`.")
@click.option("--data", help="Data folder [default: the checkpoint's].")
@click.option("--out", required=True, help="Run folder of the fine-tuned model.")
@click.option("--minutes", default=5.0, show_default=True, help="Wall-clock training budget.")
@click.option("--lr", default=3e-4, show_default=True)
@click.option("--max-tokens", default=4096, show_default=True)
@click.option("--threads", default=1, show_default=True)
@click.option("--test-limit", default=300, show_default=True, help="Test sentences for BLEU.")
@click.option("--beam", default=5, show_default=True)
@click.option("--resume", is_flag=True, help="Continue an interrupted fine-tuning run.")
def finetune_command(
    ckpt: str,
    arch_file: str | None,
    from_search: str | None,
    pick: str,
    data: str | None,
    out: str,
    minutes: float,
    lr: float,
    max_tokens: int,
    threads: int,
    test_limit: int,
    beam: int,
    resume: bool,
) -> None:
    """Continue training one extracted sub-network alone, then report the BLEU gained per minute.

    \b
    Example:
      mos-search finetune --ckpt runs/neuron --from-search runs/search --minutes 10 \\
          --out runs/finetuned
      mos-search export --ckpt runs/finetuned --arch runs/finetuned/arch.json --out model
    """
    import json as _json
    from pathlib import Path

    from mos_search.finetune import finetune

    arch = _chosen_arch(arch_file, from_search, pick)
    Path(out).mkdir(parents=True, exist_ok=True)
    Path(out, "arch.json").write_text(_json.dumps(arch) + "\n")
    finetune(
        ckpt,
        arch,
        out,
        data,
        minutes,
        lr,
        max_tokens,
        threads,
        test_limit,
        beam,
        resume,
        echo=click.echo,
    )


@main.command("translate")
@click.option("--model", "model_dir", required=True, help="An exported model folder.")
@click.option("--input", "input_file", help="Text file, one sentence per line [default: stdin].")
@click.option("--beam", default=5, show_default=True)
@click.option("--lenpen", default=1.0, show_default=True)
@click.option("--threads", default=1, show_default=True)
def translate_command(
    model_dir: str, input_file: str | None, beam: int, lenpen: float, threads: int
) -> None:
    """Translate sentences with an exported model: ONNX Runtime, SentencePiece, numpy; no torch.

    \b
    Example:
      echo "En el principio creó Dios los cielos y la tierra." | mos-search translate --model model
    """
    from mos_search.onnx_translate import OnnxTranslator, read_lines

    translator = OnnxTranslator(model_dir, threads)
    text = _read_text(input_file).splitlines() if input_file else sys.stdin
    lines = read_lines(text)
    for line in translator.translate(lines, beam, lenpen):
        click.echo(line)


@main.command("demo")
@click.option("--out", default="runs/demo", show_default=True, help="Run folder of every stage.")
@click.option("--preset", default="cpu-tiny", show_default=True, help="Search space.")
@click.option("--vocab-size", default=4000, show_default=True)
@click.option("--minutes", default=8.0, show_default=True, help="Supernet training budget.")
@click.option("--profile-archs", default=80, show_default=True)
@click.option("--generations", default=8, show_default=True)
@click.option("--population", default=24, show_default=True)
@click.option("--threads", default=2, show_default=True)
def demo_command(
    out: str,
    preset: str,
    vocab_size: int,
    minutes: float,
    profile_archs: int,
    generations: int,
    population: int,
    threads: int,
) -> None:
    """The whole chain on the embedded defaults, on the CPU; rerun to continue after a stop.

    Corpus, MoS supernet, CPU latency profile, predictor, NSGA-II search, verified front,
    report, export of the best model under the budget, and translations with ONNX Runtime.

    \b
    Example:
      mos-search demo                                  # about 20 minutes on 2 cores
      mos-search demo --preset cpu-small --vocab-size 8000 --minutes 60 --out runs/demo-60
    """
    from mos_search.demo import DemoConfig, run_demo

    summary = run_demo(
        DemoConfig(
            out=out,
            preset=preset,
            vocab_size=vocab_size,
            minutes=minutes,
            profile_archs=profile_archs,
            generations=generations,
            population=population,
            threads=threads,
        ),
        echo=click.echo,
    )
    model = summary["model"]
    click.echo(
        f"demo done in {summary['total_seconds'] / 60:.1f} min: model "
        f"{model['params'] / 1e6:.2f} M params, test BLEU {model['test_bleu']:.2f}, "
        f"{model['latency_ms']:.1f} ms on {model['device']}; report {summary['report']}"
    )


def _chosen_arch(arch_file: str | None, from_search: str | None, pick: str) -> dict:
    """The architecture of `--arch FILE` or `--from-search DIR --pick`, exactly one of them."""
    from mos_search.deploy import pick_from_search

    if bool(arch_file) == bool(from_search):
        raise MosSearchError("give exactly one of --arch FILE and --from-search DIR")
    if from_search:
        return pick_from_search(from_search, pick)
    arch = _read_json(arch_file)
    if not isinstance(arch, dict):
        raise MosSearchError(f"{arch_file}: expected one architecture (a JSON object)")
    return arch


def _read_json(path: str) -> object:
    import json

    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise MosSearchError(f"{path} is not valid JSON: {exc}") from None


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise MosSearchError(f"cannot read {path}: {exc.strerror}") from None


if __name__ == "__main__":
    main()
