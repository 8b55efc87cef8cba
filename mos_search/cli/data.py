"""`mos-search space` and `mos-search data ...`: search spaces and corpus folders."""

from __future__ import annotations

from pathlib import Path

import click

from mos_search.cli.types import COUNT

overwrite_option = click.option(
    "--overwrite",
    is_flag=True,
    help="Replace the corpus already in --out (the new one is built aside and swapped in at the "
    "end; without this flag a folder holding files is refused).",
)


class SpaceGroup(click.Group):
    """`space NAME` is short for `space show NAME`: arguments that do not start with a
    subcommand's name (a preset, a .toml path, an option, or none) go to `show`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Put `show` in front unless the first argument names a subcommand or asks for help."""
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group("space", cls=SpaceGroup)
def space_command() -> None:
    """Show a search space; import a HAT SubTransformer config as an architecture of one.

    `mos-search space NAME` is short for `mos-search space show NAME` (NAME: a preset or a
    .toml path; cpu-small when left out).

    \b
    Example:
      mos-search space hat-wmt14 --vocab-size 32000
      mos-search space import-hat HAT_wmt14ende_xeon@450.9ms_bleu@28.5.yml \\
          --space hat-wmt14 --out arch.json
    """


@space_command.command("show", short_help="Choices and size range of a space (the default).")
@click.argument("name", default="cpu-small")
@click.option(
    "--vocab-size",
    default=8000,
    show_default=True,
    type=COUNT,
    help="Vocabulary size used for the parameter counts.",
)
def space_show(name: str, vocab_size: int) -> None:
    """Show a search space (preset name or .toml path): choices and size range.

    \b
    Example:
      mos-search space hat-wmt14 --vocab-size 32000
      mos-search space show my-space.toml
    """
    from mos_search.models.build import describe_space

    click.echo(describe_space(name, vocab_size))


@space_command.command("import-hat", short_help="A HAT SubTransformer YAML as architecture JSON.")
@click.argument("config_file", metavar="FILE.yml")
@click.option(
    "--space",
    "space_name",
    required=True,
    help="Space (preset name or .toml path) the architecture must belong to, e.g. hat-wmt14.",
)
@click.option("--out", help="Architecture JSON file to write [default: print it].")
def space_import_hat(config_file: str, space_name: str, out: str | None) -> None:
    """A HAT SubTransformer config (HAT's configs/*/subtransformer/*.yml) as architecture JSON.

    The JSON is what `score --arch` and `export --arch` read. A value outside the space is an
    error naming the YAML key, the value and the space's choices; nothing is written then.

    \b
    Example:
      mos-search space import-hat HAT_wmt14ende_xeon@450.9ms_bleu@28.5.yml \\
          --space hat-wmt14 --out arch.json
      mos-search space import-hat HAT_iwslt14deen_titanxp@45.6ms_bleu@33.4.yml --space hat-iwslt14
    """
    from mos_search.files import check_output_file, write_text_atomic
    from mos_search.interop.hat import arch_json_text, import_hat_file
    from mos_search.space import load_space

    space = load_space(space_name)
    if out is not None:
        check_output_file(out)
    text = arch_json_text(import_hat_file(config_file, space))
    if out is None:
        click.echo(text, nl=False)
    else:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text)
        click.echo(f"wrote {out}: an architecture of space {space.name!r}")


@click.group("data")
def data_group() -> None:
    """Build corpus folders: parallel (translation) or text (masked-LM), with a tokenizer.

    \b
    Example:
      mos-search data bible --out data/bible
      mos-search data text --out data/bible-en
    """


@data_group.command("bible")
@click.option("--out", default="data/bible", show_default=True, help="Corpus folder to write.")
@click.option(
    "--vocab-size", default=8000, show_default=True, type=COUNT, help="SentencePiece vocabulary."
)
@click.option(
    "--tokenizer",
    type=click.Path(dir_okay=False),
    help="Use this spm.model instead of training one (a pretrained supernet's, so its token ids "
    "mean the same words).",
)
@overwrite_option
def data_bible(out: str, vocab_size: int, tokenizer: str | None, overwrite: bool) -> None:
    """The default corpus: Spanish (Reina-Valera 1909) -> English (World English Bible).

    Reads Debian's SWORD modules (apt-get install libsword-utils sword-text-sparv sword-text-web).

    \b
    Example:
      mos-search data bible --out data/bible --vocab-size 8000
      mos-search data bible --out data/bible --vocab-size 16000 --overwrite
      mos-search data bible --out data/bible --tokenizer pretrained/cpu-small-neuron/spm.model
    """
    from mos_search.data.corpus import build_bible_corpus

    corpus = build_bible_corpus(out, vocab_size, overwrite, tokenizer)
    click.echo(f"wrote {corpus.describe()}")


@data_group.command("parallel")
@click.option("--langs", nargs=2, required=True, metavar="SRC TGT", help="Language suffixes.")
@click.option(
    "--train", required=True, help="PREFIX (reads PREFIX.SRC, PREFIX.TGT) or a .tsv file."
)
@click.option("--valid", required=True, help="Validation split, as --train.")
@click.option("--test", required=True, help="Test split, as --train.")
@click.option("--out", required=True, help="Corpus folder to write.")
@click.option("--vocab-size", default=8000, show_default=True, type=COUNT)
@overwrite_option
def data_parallel(
    langs: tuple[str, str],
    train: str,
    valid: str,
    test: str,
    out: str,
    vocab_size: int,
    overwrite: bool,
) -> None:
    """A corpus folder from your own parallel text.

    \b
    Example:
      mos-search data parallel --langs de en --train raw/train --valid raw/valid \\
          --test raw/test.tsv --out data/my-corpus
    """
    from mos_search.data.corpus import build_parallel_corpus

    corpus = build_parallel_corpus(
        out, langs[0], langs[1], train, valid, test, vocab_size, overwrite
    )
    click.echo(f"wrote {corpus.describe()}")


@data_group.command("text")
@click.option("--out", default="data/bible-en", show_default=True, help="Corpus folder to write.")
@click.option("--file", "text_file", help="Plain text, one sentence per line (last 10% held out).")
@click.option("--from-corpus", help="A parallel corpus folder: take one side, keep its splits.")
@click.option("--side", help="Language of --from-corpus [default: its target language].")
@click.option(
    "--vocab-size", default=8000, show_default=True, type=COUNT, help="SentencePiece vocabulary."
)
@overwrite_option
def data_text(
    out: str,
    text_file: str | None,
    from_corpus: str | None,
    side: str | None,
    vocab_size: int,
    overwrite: bool,
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
    from mos_search.data.text import make_text_corpus

    corpus = make_text_corpus(out, vocab_size, text_file, from_corpus, side, overwrite)
    click.echo(f"wrote {corpus.describe()}")


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
    from mos_search.data.corpus import open_corpus, tokenize_training_split
    from mos_search.data.tokenized import describe_store

    for line in describe_store(tokenize_training_split(open_corpus(data))):
        click.echo(line)
