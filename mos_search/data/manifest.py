"""The manifest of a corpus folder: `corpus.json`, naming the corpus's kind and every file's sha256.

A parallel (translation) corpus's manifest has no `kind` key; a text (masked-LM) corpus's says
`"kind": "text"`. Both hold `vocab_size` and `sha256` (file name -> digest, every file of the
folder when it was built). The manifest's own digest identifies the data: checkpoints and score
caches record it, so the manifest's bytes must stay as they were written.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mos_search.errors import DataError, MosSearchError
from mos_search.files import read_text, sha256_file, write_json_atomic

MANIFEST = "corpus.json"
PARALLEL_KIND, TEXT_KIND = "parallel", "text"
KINDS = {PARALLEL_KIND: "parallel (translation)", TEXT_KIND: "text (masked-LM)"}
# keys a manifest of each kind holds beyond `vocab_size` and `sha256`
KIND_KEYS = {PARALLEL_KIND: ("source_lang", "target_lang"), TEXT_KIND: ()}
# how to build a folder of each kind, for the error when a folder has none
BUILD_HINTS = {
    PARALLEL_KIND: "`mos-search data bible --out DIR` or `mos-search data parallel`",
    TEXT_KIND: "`mos-search data text --out DIR`",
}


@dataclass(frozen=True)
class Manifest:
    """What a corpus folder's manifest says."""

    root: Path
    kind: str
    vocab_size: int
    sha256: dict[str, str]
    meta: dict[str, Any]  # the whole manifest, as written

    def check_files(self, files: list[Path]) -> None:
        """Every one of `files` is there and unchanged since the manifest was written."""
        for path in files:
            if not path.is_file():
                raise DataError(f"corpus folder {self.root} lacks {path.name}")
            if self.sha256.get(path.name) != sha256_file(path):
                raise DataError(
                    f"{path} changed since the corpus was built (sha256 differs from "
                    f"{MANIFEST}); rebuild the corpus"
                )


def write_manifest(out: Path, meta: dict[str, Any]) -> None:
    """Write `corpus.json`: `meta` plus the sha256 of every file in the folder, atomically."""
    files = sorted(p.name for p in out.iterdir() if p.name != MANIFEST and p.is_file())
    meta = {**meta, "sha256": {name: sha256_file(out / name) for name in files}}
    write_json_atomic(out / MANIFEST, meta, indent=2, ensure_ascii=False)


def read_manifest(root: str | Path, kind: str) -> Manifest:
    """The manifest of corpus folder `root`, checked to be there, whole and of `kind`."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise DataError(
            f"{root} is not a corpus folder (no {MANIFEST}); build one with {BUILD_HINTS[kind]}"
        )
    try:
        text = read_text(path)
    except MosSearchError as exc:  # not UTF-8 (file and line named)
        raise DataError(str(exc)) from None
    try:
        meta = json.loads(text)
        found = meta.get("kind", PARALLEL_KIND)
        if found not in KINDS:
            raise ValueError(f"kind {found!r} is not one of {', '.join(KINDS)}")
        manifest = Manifest(root, found, int(meta["vocab_size"]), dict(meta["sha256"]), meta)
        missing = [key for key in KIND_KEYS[found] if key not in meta]
        if missing:
            raise KeyError(", ".join(missing))
    except (json.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"{path} is damaged ({type(exc).__name__}: {exc}); rebuild the corpus"
        ) from None
    if found != kind:
        advice = (
            f"; make one from it with `mos-search data text --from-corpus {root} --out DIR`"
            if kind == TEXT_KIND
            else ""
        )
        raise DataError(f"{root} is a {KINDS[found]} corpus, not a {kind} corpus{advice}")
    return manifest


def manifest_digest(root: str | Path) -> str:
    """Digest of a folder's manifest (which holds each file's sha256): identifies the data."""
    return hashlib.sha256((Path(root) / MANIFEST).read_bytes()).hexdigest()[:16]
