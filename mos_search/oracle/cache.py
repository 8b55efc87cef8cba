"""The oracle's score cache: append-only JSON lines, hypotheses in text files beside them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mos_search.files import append_jsonl, read_text, split_lines, write_lines_atomic

SCORE_VERSION = 3  # bump when scoring or decoding changes, so old cached scores are not reused


class ScoreCache:
    """Append-only JSON-lines cache of scores; long texts (hypotheses) in files beside it."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.values = path, {}
        if path is not None and path.is_file():
            for line in split_lines(read_text(path)):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a crash: ignore it
                self.values[record["key"]] = record
        self._lines: dict[str, list[str]] = {}
        self.hits = 0

    @staticmethod
    def key(**parts: object) -> str:
        """Stable digest of the scoring parameters (and of the scoring code's version)."""
        text = json.dumps({"version": SCORE_VERSION, **parts}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def get(self, key: str) -> dict | None:
        """A cached record, or None."""
        record = self.values.get(key)
        self.hits += record is not None
        return record

    def put(self, key: str, record: dict, lines: list[str] | None = None) -> None:
        """Store a record (appended to the file) and, optionally, lines of text beside it."""
        record = {"key": key, **record}
        self.values[key] = record
        if lines is not None:
            self._lines[key] = lines
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if lines is not None:
                self._lines_path(key).parent.mkdir(exist_ok=True)
                write_lines_atomic(self._lines_path(key), lines)
            append_jsonl(self.path, record)

    def lines(self, key: str) -> list[str] | None:
        """The text stored with a record, or None."""
        if key in self._lines:
            return self._lines[key]
        if self.path is not None and self._lines_path(key).is_file():
            return split_lines(read_text(self._lines_path(key)))
        return None

    def _lines_path(self, key: str) -> Path:
        return self.path.with_suffix(".texts") / f"{key}.txt"
