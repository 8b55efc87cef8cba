"""Text corpora for masked-LM training: one sentence per line, split three ways, with a tokenizer.

Layout of a folder built here:
    train.txt valid.txt test.txt   one sentence (or paragraph) per line
    spm.model spm.vocab            SentencePiece model of the training split, `<mask>` = id 4
    corpus.json                    kind "text", counts, vocab, sha256 of each file
The default is the English side of the default parallel corpus (same book split, so BERT and
translation results never test on text the other trained on); any plain-text file works too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mos_search.constants import BOS_ID, EOS_ID
from mos_search.data.corpus import SPLITS, open_corpus, train_tokenizer, write_lines
from mos_search.data.encoded import EncodedSplit
from mos_search.data.manifest import TEXT_KIND, manifest_digest, read_manifest, write_manifest
from mos_search.data.parallel import read_lines
from mos_search.data.tokenizer import MASK_PIECE, Tokenizer
from mos_search.errors import DataError
from mos_search.files import check_output_dir, staged_output_dir


@dataclass(frozen=True)
class TextCorpus:
    """A built text-corpus folder."""

    root: Path
    vocab_size: int

    def lines(self, split: str) -> list[str]:
        """Sentences of a split."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return read_lines(self.root / f"{split}.txt")

    @property
    def tokenizer_path(self) -> Path:
        """The SentencePiece model file."""
        return self.root / "spm.model"

    def digest(self) -> str:
        """Digest of the manifest (which holds each file's sha256): identifies the data."""
        return manifest_digest(self.root)

    def describe(self) -> str:
        """One line: sentences per split, vocabulary."""
        counts = ", ".join(f"{s} {len(self.lines(s)):,}" for s in SPLITS)
        return f"{self.root}: {counts} sentences, vocab {self.vocab_size}"


def open_text_corpus(root: str | Path) -> TextCorpus:
    """Open a folder written by `build_text_corpus`, checking every file against its manifest."""
    root = Path(root)
    manifest = read_manifest(root, TEXT_KIND)
    corpus = TextCorpus(root, manifest.vocab_size)
    manifest.check_files([root / f"{s}.txt" for s in SPLITS] + [corpus.tokenizer_path])
    return corpus


def build_text_corpus(
    out: str | Path,
    splits: dict[str, list[str]],
    vocab_size: int,
    extra: dict | None = None,
    overwrite: bool = False,
) -> TextCorpus:
    """Write the splits, train the tokenizer (with `<mask>`) on train, write the manifest; built
    aside and swapped in (`staged_output_dir`: an existing corpus is refused unless
    `overwrite`)."""
    splits = {name: [line for line in lines if line.strip()] for name, lines in splits.items()}
    missing = [s for s in SPLITS if not splits.get(s)]
    if missing:
        raise DataError(f"no sentences for split(s): {', '.join(missing)}")
    with staged_output_dir(out, overwrite, "corpus") as folder:
        for split, lines in splits.items():
            write_lines(folder / f"{split}.txt", lines)
        train_tokenizer(splits["train"], folder / "spm", vocab_size, user_symbols=(MASK_PIECE,))
        tokenizer = Tokenizer(folder / "spm.model")
        meta = {
            "kind": TEXT_KIND,
            "vocab_size": tokenizer.vocab_size,
            "mask_id": tokenizer.mask_id,
            "sentences": {s: len(lines) for s, lines in splits.items()},
            **(extra or {}),
        }
        write_manifest(folder, meta)
    return open_text_corpus(out)


def text_from_corpus(
    out: str | Path,
    corpus_dir: str | Path,
    side: str | None = None,
    vocab_size: int = 8000,
    *,
    overwrite: bool = False,
) -> TextCorpus:
    """One side (default: the target language) of a parallel corpus, keeping its splits."""
    corpus = open_corpus(corpus_dir)
    side = side or corpus.target_lang
    if side not in (corpus.source_lang, corpus.target_lang):
        raise DataError(
            f"--side {side}: {corpus_dir} has {corpus.source_lang} and {corpus.target_lang}"
        )
    index = 0 if side == corpus.source_lang else 1
    splits = {s: [pair[index] for pair in corpus.pairs(s)] for s in SPLITS}
    extra = {"from_corpus": str(corpus_dir), "language": side}
    return build_text_corpus(out, splits, vocab_size, extra, overwrite)


def bible_text(out: str | Path, vocab_size: int = 8000, *, overwrite: bool = False) -> TextCorpus:
    """The default masked-LM corpus: the English verses of the default corpus, same book split."""
    from mos_search.data import bible

    splits: dict[str, list[str]] = {s: [] for s in SPLITS}
    for verse in bible.bible_verses():
        splits[bible.split_of(verse.book)].append(verse.target)
    extra = {"name": "bible-en", "module": bible.TARGET_MODULE, "language": "en"}
    return build_text_corpus(out, splits, vocab_size, extra, overwrite)


def text_from_file(
    out: str | Path,
    path: str | Path,
    vocab_size: int = 8000,
    held_out: float = 0.05,
    *,
    overwrite: bool = False,
) -> TextCorpus:
    """A plain-text file, one sentence per line: the last `2 * held_out` of it (in two equal,
    contiguous blocks) becomes validation and test, so held-out text never interleaves with
    training text."""
    lines = [line for line in read_lines(path) if line.strip()]
    if not 0 < held_out < 0.5:
        raise DataError(f"held-out share must be in (0, 0.5), found {held_out}")
    count = max(1, round(len(lines) * held_out))
    if len(lines) < 3 * count or len(lines) < 3:
        raise DataError(f"{path}: {len(lines)} non-empty lines are too few to split three ways")
    splits = {
        "train": lines[: -2 * count],
        "valid": lines[-2 * count : -count],
        "test": lines[-count:],
    }
    return build_text_corpus(out, splits, vocab_size, {"from_file": str(path)}, overwrite)


def encode_text_split(
    corpus: TextCorpus, split: str, tokenizer: Tokenizer, max_len: int | None = None
) -> EncodedSplit:
    """Encode a split as `BOS ids EOS` rows; longer rows are cut to `max_len` (EOS kept).

    A text split is an `EncodedSplit` whose targets are its sources (the batching and subset
    helpers of translation apply unchanged); `references` hold the raw lines.
    """
    lines = corpus.lines(split)
    out = EncodedSplit([], [], [])
    for ids, line in zip(tokenizer.encode_batch(lines), lines):
        if max_len is not None and len(ids) + 2 > max_len:
            ids = ids[: max_len - 2]
        row = np.array([BOS_ID, *ids, EOS_ID], dtype=np.int64)
        out.sources.append(row)
        out.targets.append(row)
        out.references.append(line)
    return out


def make_text_corpus(
    out: str | Path,
    vocab_size: int = 8000,
    text_file: str | None = None,
    from_corpus: str | None = None,
    side: str | None = None,
    overwrite: bool = False,
) -> TextCorpus:
    """`mos-search data text`: from a plain-text file, from one side of a parallel corpus, or
    (neither given) the English side of the default Bible corpus; not from both. An existing
    corpus in `out` is refused unless `overwrite`."""
    if text_file and from_corpus:
        raise DataError("give --file or --from-corpus, not both")
    check_output_dir(out, overwrite, "corpus")  # before reading the text
    if text_file:
        return text_from_file(out, text_file, vocab_size, overwrite=overwrite)
    if from_corpus:
        return text_from_corpus(out, from_corpus, side, vocab_size, overwrite=overwrite)
    return bible_text(out, vocab_size, overwrite=overwrite)
