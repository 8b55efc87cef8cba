"""Small file helpers: reading with one clear error, content digests and crash-safe writes.

An atomic write goes to `.NAME.tmp` in the target's folder, is flushed and fsynced, then renamed
over the target (`os.replace`): a crash at any moment leaves either the old file or the new one,
never a half-written one. Appends (`append_jsonl`) write one whole line and fsync it, so a crash
cuts at most the last line short.

Outputs are checked before any long work (`check_output_dir`, `check_output_file`). A new output
folder is built in the sibling `.NAME.partial` (`staged_output_dir`); only when the build ends
without an error is the earlier folder (refused unless `overwrite`) renamed to `.NAME.old`, the
new one renamed into place and the old one removed: at every moment `NAME` is either the earlier
folder whole or the new one whole, and nothing of the earlier one stays beside the new files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from devices import text
from devices.digest import sha256_file as sha256_file  # the one file digest, re-exported
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


def split_lines(text: str) -> list[str]:
    """Lines of `text` (the line contract of every text the toolkit reads:
    `mos_search.data.parallel`): "a\\nb" and "a\\nb\\n" are both ["a", "b"],
    "" is [], "\\n" is [""], "a\\x0cb\\r\\n" is ["a\\x0cb"]."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def decode_utf8(data: bytes, path: str | Path) -> str:
    """`data` (the bytes of `path`) as text, without a leading byte-order mark; a MosSearchError
    naming `path`, the line and the column of the first byte that is not UTF-8."""
    try:
        return text.decode_utf8(data)
    except text.NotUtf8 as exc:
        raise MosSearchError(f"{path}:{exc.line}: {exc}") from None


def read_text(path: str | Path) -> str:
    """The UTF-8 text of `path` (a leading byte-order mark dropped); a MosSearchError naming the
    file (and line, for bytes that are not UTF-8) when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise MosSearchError(f"cannot read {path}: {exc.strerror}") from None
    return decode_utf8(data, path)


def read_json(path: str | Path) -> Any:
    """The JSON value in `path`; a MosSearchError naming the file when it is not JSON."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise MosSearchError(f"{path} is not valid JSON: {exc}") from None


def check_writable_dir(path: str | Path) -> None:
    """Raise a MosSearchError unless `path` is, or can become, a folder this process can write:
    a file in its place, a file among its parents, or a folder that refuses a new file (read-only,
    immutable, or a read-only mount: probed by creating and removing a file, since permission
    bits do not bind root) are each named in one line. Creates nothing that stays."""
    path = Path(path)
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        where = "" if existing == path else f" (needed for {path})"
        raise MosSearchError(f"cannot write to {existing}{where}: it is a file, not a folder")
    probe = existing / f".mos-search-probe-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise MosSearchError(f"cannot write to {existing}: {exc.strerror}") from None


def prepare_output_dir(path: str | Path, overwrite: bool, what: str = "output") -> Path:
    """The folder `path`, checked writable, ready for a new `what`: an existing non-empty folder is
    refused (MosSearchError, exit 2 in the CLI) unless `overwrite`, which empties it first so
    nothing stale (an old `int8/`, an old token file) stays beside the new files. Prefer
    `staged_output_dir`, which keeps the earlier folder whole until the new one is complete."""
    path = check_output_dir(path, overwrite, what)
    if path.is_dir():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_output_dir(path: str | Path, overwrite: bool, what: str) -> Path:
    """`path`, checked to be able to receive a new `what`: writable (`check_writable_dir`), and
    absent or empty unless `overwrite`; a MosSearchError naming the path otherwise. Changes
    nothing."""
    path = Path(path)
    check_writable_dir(path)
    if overwrite and Path.cwd().resolve().is_relative_to(path.resolve()):
        raise MosSearchError(
            f"--overwrite would replace {path}, which holds the current folder; choose another"
        )
    if not overwrite and path.is_dir() and any(path.iterdir()):
        raise MosSearchError(
            f"{path} already holds files; choose another folder, or add --overwrite to "
            f"replace the {what} there"
        )
    return path


def check_output_file(path: str | Path) -> Path:
    """`path`, checked to be a file this process can write or append to: not a folder, in a
    writable folder, and (when it exists) open for appending; a MosSearchError naming the path
    otherwise. Creates nothing."""
    path = Path(path)
    if path.is_dir():
        raise MosSearchError(f"cannot write to {path}: it is a folder, not a file")
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise MosSearchError(
            f"cannot write to {blocker} (needed for {path}): it is a file, not a folder"
        )
    check_writable_dir(path.parent)
    if path.exists():
        try:
            path.open("a").close()  # appends nothing: the file and its times stay as they are
        except OSError as exc:
            raise MosSearchError(f"cannot write to {path}: {exc.strerror}") from None
    return path


@contextlib.contextmanager
def staged_output_dir(path: str | Path, overwrite: bool, what: str) -> Iterator[Path]:
    """A fresh folder to build a `what` in, which becomes `path` when the block ends without an
    error (see the module docstring); an error or Ctrl-C in the block removes it and leaves
    `path` as it was. A writable folder inside a read-only one cannot be swapped: it is emptied
    (with `overwrite`) and built in place."""
    path = check_output_dir(path, overwrite, what)
    target = path.resolve()  # a symlinked folder is swapped where it points
    if not _writable(target.parent):
        yield prepare_output_dir(path, overwrite, what)
        return
    partial = target.with_name(f".{target.name}.partial")
    old = target.with_name(f".{target.name}.old")
    for leftover in (partial, old):  # left by a build that was killed
        if leftover.exists():
            shutil.rmtree(leftover)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():
        os.rename(target, old)
    os.rename(partial, target)
    shutil.rmtree(old, ignore_errors=True)


def _writable(folder: Path) -> bool:
    try:
        check_writable_dir(folder)
    except MosSearchError:
        return False
    return True
