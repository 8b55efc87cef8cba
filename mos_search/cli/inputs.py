"""Reading the files that command-line options name: one clear error line each."""

from __future__ import annotations

import json

from mos_search.errors import MosSearchError


def read_text(path: str) -> str:
    """The UTF-8 text of `path`; a MosSearchError naming the file when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as exc:
        raise MosSearchError(f"cannot read {path}: {exc.strerror}") from None


def read_json(path: str) -> object:
    """The JSON value in `path`; a MosSearchError naming the file when it is not JSON."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise MosSearchError(f"{path} is not valid JSON: {exc}") from None


def read_arch(path: str | None) -> dict | None:
    """One architecture (a JSON object) from `--arch FILE`, or None without the option."""
    if path is None:
        return None
    arch = read_json(path)
    if not isinstance(arch, dict):
        raise MosSearchError(f"{path}: expected one architecture (a JSON object)")
    return arch
