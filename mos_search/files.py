"""Small file helpers: reading with one clear error, content digests and crash-safe writes.

An atomic write goes to `.NAME.tmp` in the target's folder, is flushed and fsynced, then renamed
over the target (`os.replace`): a crash at any moment leaves either the old file or the new one,
never a half-written one. Appends (`append_jsonl`) write one whole line and fsync it, so a crash
cuts at most the last line short.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mos_search.errors import MosSearchError


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8) atomically, through `.NAME.tmp` in the same folder."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(
    path: str | Path, data: Any, indent: int | None = 1, ensure_ascii: bool = True
) -> None:
    """Replace `path` with `data` as JSON (no trailing newline) atomically."""
    write_text_atomic(path, json.dumps(data, indent=indent, ensure_ascii=ensure_ascii))


def write_lines_atomic(path: str | Path, lines: Iterable[str]) -> None:
    """Replace `path` with one line per item (each ended by a newline) atomically."""
    write_text_atomic(path, "".join(line + "\n" for line in lines))


def append_jsonl(path: str | Path, record: Any) -> None:
    """Append `record` as one compact JSON line, then flush and fsync it."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text(path: str | Path) -> str:
    """The UTF-8 text of `path`; a MosSearchError naming the file when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise MosSearchError(f"cannot read {path}: {exc.strerror}") from None


def read_json(path: str | Path) -> Any:
    """The JSON value in `path`; a MosSearchError naming the file when it is not JSON."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise MosSearchError(f"{path} is not valid JSON: {exc}") from None
