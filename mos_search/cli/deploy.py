"""`mos-search export`, `finetune`, `translate` and `demo`: deploying a sub-network."""

from __future__ import annotations

import sys

import click

from latency.ssh import RemoteOptions
from mos_search.cli.remote import remote_options
from mos_search.cli.types import (
    COUNT,
    POSITIVE,
    decoding_options,
)


@click.command("export")
@click.option("--ckpt", required=True, help="Trained supernet (run folder or checkpoint).")
@click.option("--arch", "arch_file", help="Architecture JSON file.")
@click.option("--from-search", help="A finished search run folder to pick the architecture from.")
@click.option(
    "--pick",
    default="best",
    show_default=True,
    help="With --from-search: 'best' (among verified candidates whose test BLEU is not "
    "significantly below the best, paired bootstrap p >= 0.05, the one with the most latency "
    "slack), 'best-quality' (the highest test BLEU/perplexity) or a rank of the front.",
)
@click.option("--data", help="Data folder [default: the checkpoint's].")
@click.option("--out", required=True, help="Model folder to write.")
@click.option("--device", "devices", multiple=True, default=["onnxruntime-cpu"], show_default=True)
@click.option(
    "--test-limit",
    default=300,
    show_default=True,
    type=COUNT,
    help="Test sentences scored for the card: BLEU (translation) or perplexity (BERT).",
)
@click.option("--beam", default=5, show_default=True, type=COUNT)
@decoding_options()
@click.option("--quantize", type=click.Choice(["int8"]), help="Also write an int8 model.")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the model already in --out (the new one is built aside and swapped in when "
    "complete; without this flag a folder holding files is refused).",
)
@remote_options
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
    lenpen: float,
    no_repeat_ngram_size: int,
    quantize: str | None,
    overwrite: bool,
    remote: RemoteOptions | None,
) -> None:
    """Export one sub-network as ONNX, with its tokenizer and a model card.

    Translation: encoder + decoder step with key/value cache. BERT: one encoder (tokens ->
    states), with test perplexity and measured memory in the card.

    \b
    Example:
      mos-search export --ckpt runs/neuron --from-search runs/search --pick best --out model
      mos-search export --ckpt runs/neuron --from-search runs/search --pick best-quality --out m2
      mos-search export --ckpt runs/neuron --arch arch.json --out model --quantize int8
      mos-search export --ckpt runs/neuron --from-search runs/search --out model --overwrite
      mos-search export --ckpt runs/bert-neuron --from-search runs/search-bert --out bert-model
      mos-search export --ckpt runs/neuron --from-search runs/search --out model \\
          --remote ssh://pi@board.local   # the card's latency measured on the board
    """
    from mos_search.deploy.card import card_summary
    from mos_search.deploy.package import export_checkpoint
    from mos_search.search.pick import chosen_arch

    decision = chosen_arch(arch_file, from_search, pick)
    card = export_checkpoint(
        ckpt,
        decision.arch,
        out,
        data=data,
        devices=devices,
        test_limit=test_limit,
        beam=beam,
        lenpen=lenpen,
        no_repeat_ngram_size=no_repeat_ngram_size,
        quantize=quantize,
        overwrite=overwrite,
        echo=click.echo,
        remote=remote,
    )
    decision.write_into_card(out, from_search)
    click.echo(card_summary(card, out))


@click.command("finetune")
@click.option("--ckpt", required=True, help="Trained supernet (run folder or checkpoint).")
@click.option("--arch", "arch_file", help="Architecture JSON file.")
@click.option("--from-search", help="A finished search run folder to pick the architecture from.")
@click.option("--pick", default="best", show_default=True, help="See `export --help`.")
@click.option("--data", help="Data folder [default: the checkpoint's].")
@click.option("--out", required=True, help="Run folder of the fine-tuned model.")
@click.option(
    "--minutes", default=5.0, show_default=True, type=POSITIVE, help="Wall-clock training budget."
)
@click.option("--lr", default=3e-4, show_default=True, type=POSITIVE)
@click.option("--max-tokens", default=4096, show_default=True, type=COUNT)
@click.option("--threads", default=1, show_default=True, type=COUNT)
@click.option(
    "--test-limit", default=300, show_default=True, type=COUNT, help="Test sentences for BLEU."
)
@click.option("--beam", default=5, show_default=True, type=COUNT)
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
    from mos_search.deploy.finetune import finetune
    from mos_search.search.pick import chosen_arch

    arch = chosen_arch(arch_file, from_search, pick).arch
    finetune(
        ckpt,
        arch,
        out,
        data=data,
        minutes=minutes,
        lr=lr,
        max_tokens=max_tokens,
        threads=threads,
        test_limit=test_limit,
        beam=beam,
        resume=resume,
        echo=click.echo,
    )


@click.command("translate")
@click.option("--model", "model_dir", required=True, help="An exported model folder.")
@click.option("--input", "input_file", help="Text file, one sentence per line [default: stdin].")
@click.option("--beam", default=5, show_default=True, type=COUNT)
@decoding_options()
@click.option("--threads", default=1, show_default=True, type=COUNT)
def translate_command(
    model_dir: str,
    input_file: str | None,
    beam: int,
    lenpen: float,
    no_repeat_ngram_size: int,
    threads: int,
) -> None:
    """Translate sentences with an exported model: ONNX Runtime, SentencePiece, numpy; no torch.

    One UTF-8 output line per input line, in order: lines end at "\\n" only, and a line with
    nothing to translate (empty, blank) stays empty. Input that is not UTF-8 is refused whole.

    \b
    Example:
      echo "En el principio creó Dios los cielos y la tierra." | mos-search translate --model model
      mos-search translate --model model --no-repeat-ngram 3 < sentences.es.txt
    """
    from mos_search.deploy.translate import OnnxTranslator, read_sentences

    translator = OnnxTranslator(model_dir, threads)
    lines = read_sentences(input_file, sys.stdin.buffer)
    out = translator.translate(lines, beam, lenpen, no_repeat_ngram_size)
    click.echo("".join(line + "\n" for line in out).encode("utf-8"), nl=False)


@click.command("demo")
@click.option("--out", default="runs/demo", show_default=True, help="Run folder of every stage.")
@click.option("--preset", default="cpu-tiny", show_default=True, help="Search space.")
@click.option("--vocab-size", default=4000, show_default=True, type=COUNT)
@click.option(
    "--minutes", default=8.0, show_default=True, type=POSITIVE, help="Supernet training budget."
)
@click.option("--profile-archs", default=80, show_default=True, type=COUNT)
@click.option("--generations", default=8, show_default=True, type=COUNT)
@click.option("--population", default=24, show_default=True, type=click.IntRange(min=2))
@click.option("--threads", default=2, show_default=True, type=COUNT)
@click.option(
    "--pretrained",
    help="Start from this pretrained supernet folder (its space and tokenizer; weights checked "
    "against its card)  [default: the shipped pretrained/cpu-small-neuron]",
)
@click.option(
    "--from-scratch",
    is_flag=True,
    help="Train a supernet for --minutes on --preset / --vocab-size instead.",
)
def demo_command(
    out: str,
    preset: str,
    vocab_size: int,
    minutes: float,
    profile_archs: int,
    generations: int,
    population: int,
    threads: int,
    pretrained: str | None,
    from_scratch: bool,
) -> None:
    """The whole chain on the embedded defaults, on the CPU; rerun to continue after a stop.

    Corpus, MoS supernet (the shipped pretrained one, or trained here with --from-scratch), CPU
    latency profile, predictor, NSGA-II search, verified front, report, export of the best model
    under the budget, and translations with ONNX Runtime.

    \b
    Example:
      mos-search demo                                  # from the pretrained supernet
      mos-search demo --from-scratch --out runs/demo-scratch   # trains 8 minutes first
      mos-search demo --from-scratch --preset cpu-small --vocab-size 8000 --minutes 60 \\
          --out runs/demo-60
    """
    from mos_search.demo import DemoConfig, default_pretrained, run_demo
    from mos_search.errors import ConfigError

    if from_scratch and pretrained:
        raise ConfigError("--pretrained and --from-scratch exclude each other")
    summary = run_demo(
        DemoConfig(
            pretrained=None if from_scratch else (pretrained or str(default_pretrained())),
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
        f"{model['latency_ms']:.1f} ms [{model['low_ms']:.1f}, {model['high_ms']:.1f}] on "
        f"{model['device']} (verified {model['verified_ms']:.1f} ms, upper "
        f"{model['verified_upper_ms']:.1f} ms against the {summary['budget_ms']:.1f} ms budget); "
        f"report {summary['report']}"
    )


@click.command("pack-supernet")
@click.option("--ckpt", required=True, help="Trained supernet (run folder or checkpoint).")
@click.option("--out", required=True, help="Pretrained folder to write.")
@click.option("--data", help="Corpus [default: the one the run was trained on].")
@click.option("--test-limit", default=200, show_default=True, type=COUNT)
@click.option("--beam", default=5, show_default=True, type=COUNT)
@click.option("--threads", default=2, show_default=True, type=COUNT)
@click.option("--overwrite", is_flag=True, help="Replace the pretrained folder in --out.")
@click.option(
    "--only-if-better",
    is_flag=True,
    help="Replace --out only if both members' test BLEU and validation loss beat its card.",
)
def pack_supernet_command(
    ckpt: str,
    out: str,
    data: str | None,
    test_limit: int,
    beam: int,
    threads: int,
    overwrite: bool,
    only_if_better: bool,
) -> None:
    """Pack a trained supernet to ship: fp16 weights, its spm.model and a card.

    The card holds the training command, commit, steps, wall time, the lineage of earlier runs
    with cumulative steps, target tokens and wall time, and the validation loss and test BLEU of
    the space's largest and smallest members, measured on the packed weights. Adam's second
    moments are kept in bf16 beside the weights. `demo --pretrained OUT` and `train --init OUT`
    start from it.

    \b
    Example:
      mos-search pack-supernet --ckpt runs/pretrained --out pretrained/cpu-small-neuron
      mos-search pack-supernet --ckpt runs/more --out pretrained/cpu-small-neuron --only-if-better
    """
    from mos_search.deploy.pretrained import pack_supernet

    card = pack_supernet(
        ckpt, out, data=data, test_limit=test_limit, beam=beam, threads=threads,
        overwrite=overwrite, only_if_better=only_if_better, echo=click.echo,
    )  # fmt: skip
    if not card["replaced"]:
        return
    click.echo(
        f"wrote {out}: {card['weights_bytes'] / 2**20:.1f} MiB of fp16 weights, "
        f"{card['steps']} steps"
    )
