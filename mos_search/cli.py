"""The `mos-search` command line: thin click wrappers, one library call per command."""

from __future__ import annotations

import sys

import click

from mos_search import __version__
from mos_search.errors import MosSearchError


class FriendlyGroup(click.Group):
    """A click group that prints toolkit errors as one line and exits non-zero."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except MosSearchError as exc:
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


if __name__ == "__main__":
    main()
