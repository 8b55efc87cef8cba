"""`python -m mos_search.cli ...` (as torchrun starts it): the same as the `mos-search` script."""

from mos_search.cli.main import main

main(prog_name="mos-search")
