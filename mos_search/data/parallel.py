"""Readers for parallel text: two aligned plain-text files, or one tab-separated file.

The line contract of every text the toolkit reads (corpora, references, `translate` input;
`mos_search.files.split_lines`):
lines end at "\\n" only, never at a form feed, U+2028 or another character `str.splitlines`
treats as a line end; one "\\r" before the "\\n" is dropped (CRLF files read as LF files); a
final line without "\\n" counts; a UTF-8 byte-order mark at the start of a file is dropped.
"""

from __future__ import annotations

import codecs
from pathlib import Path

from devices.text import NotUtf8, decode_utf8
from mos_search.errors import DataError


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 text file under the contract above; errors name the file and line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = []
    for number, raw in enumerate(lines, start=1):
        try:
            out.append(decode_utf8(raw).removesuffix("\r"))
        except NotUtf8 as exc:
            raise DataError(f"{path}:{number}: {exc}") from None
    if not out or not any(line.strip() for line in out):
        raise DataError(f"{path}: file is empty")
    return out


def read_parallel(source_path: str | Path, target_path: str | Path) -> list[tuple[str, str]]:
    """Sentence pairs from two files, one sentence per line, aligned by line number."""
    source, target = read_lines(source_path), read_lines(target_path)
    if len(source) != len(target):
        raise DataError(
            f"line counts differ: {source_path} has {len(source)}, {target_path} has {len(target)}"
        )
    return _check_pairs(list(zip(source, target)), f"{source_path} / {target_path}")


def read_tsv(path: str | Path) -> list[tuple[str, str]]:
    """Sentence pairs from a file of `source<TAB>target` lines."""
    pairs = []
    for number, line in enumerate(read_lines(path), start=1):
        fields = line.split("\t")
        if len(fields) != 2:
            raise DataError(
                f"{path}:{number}: expected 2 tab-separated fields, found {len(fields)}"
            )
        pairs.append((fields[0], fields[1]))
    return _check_pairs(pairs, str(path))


def _check_pairs(pairs: list[tuple[str, str]], where: str) -> list[tuple[str, str]]:
    for number, (source, target) in enumerate(pairs, start=1):
        if not source.strip() or not target.strip():
            side = "source" if not source.strip() else "target"
            raise DataError(f"{where}: line {number}: empty {side} sentence")
    return pairs
