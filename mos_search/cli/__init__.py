"""The `mos-search` command line: thin click wrappers, one library call per command.

One module per command group (`data`, `train`, `latency`, `search`, `deploy`), gathered by
`main.py`. A command parses its options, builds the library's typed settings and calls one library
function; checks that combine options and defaults that depend on other options live in the
library. Toolkit errors become one line on stderr and exit code 2.

May import: every unit of mos_search, `latency` and `devices`.
"""

from mos_search.cli.main import main

__all__ = ["main"]
