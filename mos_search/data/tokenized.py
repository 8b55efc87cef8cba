"""Pre-tokenised, memory-mapped training data: tokenise a corpus once, read it from disk after.

`build_token_store` streams each training file through the tokenizer in chunks and writes, under
`tokens/` in the corpus folder, one flat id file per side (`train.SRC.bin`, uint16 when the
vocabulary fits, else uint32) and its row offsets (`train.SRC.idx`, int64), plus `meta.json`
naming the sha256 of the text and tokenizer it was built from. Training then opens the files with
`numpy.memmap`: a multi-million-sentence corpus is neither loaded into RAM nor re-tokenised, and
only the rows of the current batch are read. A store whose text or tokenizer changed is ignored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from devices.text import NotUtf8, decode_utf8
from mos_search.constants import EOS_ID
from mos_search.data.encoded import EncodedSplit
from mos_search.data.manifest import PARALLEL_KIND, read_manifest
from mos_search.errors import DataError, MosSearchError
from mos_search.files import read_json, sha256_file, write_json_atomic

STORE = "tokens"
CHUNK_LINES = 20_000


def _lines(path: Path) -> Iterator[list[str]]:
    """Chunks of a text file's lines, split on "\\n" only, as `read_lines` splits them; a
    DataError names the line and column of a byte that is not UTF-8."""
    chunk: list[str] = []
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            try:
                chunk.append(decode_utf8(line.removesuffix(b"\n")).removesuffix("\r"))
            except NotUtf8 as exc:
                raise DataError(f"{path}:{number}: {exc}") from None
            if len(chunk) == CHUNK_LINES:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def build_token_store(root: str | Path, files: list[str], tokenizer: object) -> Path:
    """Tokenise `files` of the corpus folder `root` into `root/tokens/` (one streaming pass)."""
    root = Path(root)
    store = root / STORE
    store.mkdir(exist_ok=True)
    vocab = tokenizer.vocab_size
    dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max + 1 else np.uint32
    meta = {"dtype": np.dtype(dtype).name, "tokenizer": sha256_file(tokenizer.path), "files": {}}
    for name in files:
        bin_tmp, idx_tmp = store / f".{name}.bin.tmp", store / f".{name}.idx.tmp"
        offsets, total = [0], 0
        with bin_tmp.open("wb") as out:
            for chunk in _lines(root / name):
                for ids in tokenizer.encode_batch(chunk):
                    np.asarray(ids, dtype=dtype).tofile(out)
                    total += len(ids)
                    offsets.append(total)
        with idx_tmp.open("wb") as f:
            np.save(f, np.asarray(offsets, dtype=np.int64), allow_pickle=False)
        os.replace(bin_tmp, store / f"{name}.bin")
        os.replace(idx_tmp, store / f"{name}.idx.npy")
        meta["files"][name] = {
            "source_sha256": sha256_file(root / name),
            "sentences": len(offsets) - 1,
            "tokens": total,
        }
    write_json_atomic(store / "meta.json", meta)
    return store


class MemmapRows:
    """Rows of a token store read on demand: `rows[i]` is sentence i's ids followed by EOS."""

    def __init__(self, bin_path: Path, idx_path: Path, dtype: str, keep: np.ndarray) -> None:
        self.ids = np.memmap(bin_path, dtype=dtype, mode="r")
        self.offsets = np.load(idx_path, mmap_mode="r")
        self.keep = keep  # row numbers of this view, in order

    def __len__(self) -> int:
        return len(self.keep)

    def __getitem__(self, i: int) -> np.ndarray:
        row = int(self.keep[i])
        ids = self.ids[self.offsets[row] : self.offsets[row + 1]]
        return np.concatenate([ids.astype(np.int64), [EOS_ID]])

    def lengths(self) -> np.ndarray:
        """Length of every row (EOS included), without reading the ids."""
        offsets = np.asarray(self.offsets)
        return (offsets[self.keep + 1] - offsets[self.keep]) + 1

    def view(self, keep: np.ndarray) -> MemmapRows:
        """The rows `keep` (positions in this view)."""
        out = MemmapRows.__new__(MemmapRows)
        out.ids, out.offsets, out.keep = self.ids, self.offsets, self.keep[keep]
        return out


class MemmapSplit(EncodedSplit):
    """An `EncodedSplit` whose sources and targets stay on disk (training has no references)."""

    def __init__(self, sources: MemmapRows, targets: MemmapRows) -> None:
        super().__init__(sources, targets, [])  # type: ignore[arg-type]

    def lengths(self, by_source: bool = False) -> np.ndarray:
        """Per-pair batching length: the source's, or the longer side's."""
        source = self.sources.lengths()
        return source if by_source else np.maximum(source, self.targets.lengths())

    def subset(self, limit: int | None) -> MemmapSplit:
        """`limit` pairs spread evenly over the split."""
        if limit is None or limit >= len(self):
            return self
        picked = np.linspace(0, len(self) - 1, limit).round().astype(int)
        return MemmapSplit(self.sources.view(picked), self.targets.view(picked))


def open_training_split(
    root: str | Path, source_file: str, target_file: str, max_len: int
) -> MemmapSplit | None:
    """The memory-mapped training pairs of a corpus folder (pairs with a side longer than
    `max_len` dropped, as in memory), or None when there is no store or it is out of date
    (checked against the digests of the corpus manifest, which `open_corpus` verified). A
    `meta.json` that is not UTF-8 JSON is refused (DataError naming it and how to rebuild it)."""
    store = Path(root) / STORE
    meta_path = store / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = read_json(meta_path)
    except MosSearchError as exc:
        raise DataError(
            f"{exc} (the token store's index: `mos-search data tokenize --data {root}` rebuilds it)"
        ) from None
    try:
        files, dtype = meta["files"], meta["dtype"]
        digests = read_manifest(root, PARALLEL_KIND).sha256
        current = all(
            files[name]["source_sha256"] == digests[name] for name in (source_file, target_file)
        )
    except (KeyError, TypeError, OSError, DataError):
        return None  # from another version, or stale: tokenise in memory instead
    counts = {files[source_file]["sentences"], files[target_file]["sentences"]}
    if not current or meta.get("tokenizer") != digests.get("spm.model") or len(counts) != 1:
        return None
    source, target = (
        _open_rows(root, name, files[name], dtype) for name in (source_file, target_file)
    )
    keep = np.flatnonzero((source.lengths() <= max_len) & (target.lengths() <= max_len))
    return MemmapSplit(source.view(keep), target.view(keep))


def _open_rows(root: str | Path, name: str, info: dict, dtype: str) -> MemmapRows:
    """Every row of the id file of `name`, checked to hold the sentences and ids `meta.json`
    says, and its offsets to end at its last id (a truncated or foreign file is a DataError
    naming it)."""
    bin_path, idx_path = Path(root) / STORE / f"{name}.bin", Path(root) / STORE / f"{name}.idx.npy"
    sentences, tokens = info["sentences"], info.get("tokens")
    try:
        rows = MemmapRows(bin_path, idx_path, dtype, np.arange(sentences))
        found = (len(rows.offsets) - 1, len(rows.ids))
        problem = f"found {found[0]} sentences and {found[1]} ids"
        whole = int(rows.offsets[-1]) == found[1] and found[0] == sentences
    except (OSError, ValueError, IndexError, TypeError) as exc:
        whole, problem = False, str(exc)
    if not whole or tokens not in (None, found[1]):
        raise DataError(
            f"{bin_path} or {idx_path.name} is damaged: expected {sentences} sentences and "
            f"{tokens} ids as {STORE}/meta.json says ({problem}); rebuild them with "
            f"`mos-search data tokenize --data {root}`"
        )
    return rows


def describe_store(store: Path) -> list[str]:
    """One line per id file of a token store: sentences and tokens."""
    meta = read_json(store / "meta.json")
    return [
        f"{store}/{name}.bin: {info['sentences']:,} sentences, {info['tokens']:,} tokens"
        for name, info in meta["files"].items()
    ]
