"""Corpus folders: aligned splits on disk, a joint SentencePiece model, and a manifest.

Layout of a folder built by `build_corpus`:
    train.SRC train.TGT valid.SRC valid.TGT test.SRC test.TGT   one sentence per line
    spm.model spm.vocab                                          joint subword model (train split)
    corpus.json                                                  languages, counts, vocab, digests
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mos_search.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from mos_search.data.manifest import PARALLEL_KIND, manifest_digest, read_manifest, write_manifest
from mos_search.data.parallel import read_parallel, read_tsv
from mos_search.errors import DataError
from mos_search.files import (
    check_output_dir,
    check_writable_dir,
    staged_output_dir,
    write_lines_atomic,
)

SPLITS = ("train", "valid", "test")
TOKENIZER_SAMPLE = 2_000_000  # SentencePiece trains on at most this many sentences


@dataclass(frozen=True)
class Corpus:
    """A built corpus folder."""

    root: Path
    source_lang: str
    target_lang: str
    vocab_size: int

    def split_paths(self, split: str) -> tuple[Path, Path]:
        """(source file, target file) of a split."""
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        return (
            self.root / f"{split}.{self.source_lang}",
            self.root / f"{split}.{self.target_lang}",
        )

    def pairs(self, split: str) -> list[tuple[str, str]]:
        """Sentence pairs of a split."""
        return read_parallel(*self.split_paths(split))

    @property
    def tokenizer_path(self) -> Path:
        """The SentencePiece model file."""
        return self.root / "spm.model"

    def digest(self) -> str:
        """Digest of the manifest (which holds each file's sha256): identifies the data."""
        return manifest_digest(self.root)

    def describe(self) -> str:
        """One line: languages, pairs per split, vocabulary."""
        pairs = read_manifest(self.root, PARALLEL_KIND).meta["pairs"]
        counts = ", ".join(f"{k} {v:,}" for k, v in pairs.items())
        languages = f"{self.source_lang}->{self.target_lang}"
        return f"{self.root}: {languages}, {counts} pairs, vocab {self.vocab_size}"


def open_corpus(root: str | Path) -> Corpus:
    """Open a corpus folder written by `build_corpus`, checking every file against its manifest."""
    root = Path(root)
    manifest = read_manifest(root, PARALLEL_KIND)
    meta = manifest.meta
    corpus = Corpus(root, meta["source_lang"], meta["target_lang"], manifest.vocab_size)
    files = [p for split in SPLITS for p in corpus.split_paths(split)] + [corpus.tokenizer_path]
    manifest.check_files(files)
    return corpus


def write_lines(path: Path, lines: list[str]) -> None:
    """Write one line per item atomically (newlines inside an item become spaces)."""
    write_lines_atomic(path, (line.replace("\n", " ") for line in lines))


def train_tokenizer(
    sentences: list[str], model_prefix: Path, vocab_size: int, user_symbols: tuple[str, ...] = ()
) -> None:
    """Train a joint unigram SentencePiece model with pad/unk/bos/eos = 0/1/2/3.

    `vocab_size` is an upper bound: a small corpus gets the vocabulary it can support.
    `user_symbols` (the masked-LM `<mask>`) take the ids right after eos: 4, 5, ...
    """
    import sentencepiece as spm

    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.writelines(s + "\n" for s in sentences)
        text_path = f.name
    spm.set_random_generator_seed(1)  # the sample of a large corpus is the same every build
    try:
        spm.SentencePieceTrainer.train(
            input=text_path,
            model_prefix=str(model_prefix),
            vocab_size=vocab_size,
            model_type="unigram",
            character_coverage=1.0,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            num_threads=1,
            minloglevel=2,
            # all sentences of a corpus up to 2 M lines (reproducible); a sample of larger ones
            input_sentence_size=0 if len(sentences) <= TOKENIZER_SAMPLE else TOKENIZER_SAMPLE,
            shuffle_input_sentence=len(sentences) > TOKENIZER_SAMPLE,
            hard_vocab_limit=False,
            user_defined_symbols=list(user_symbols),
        )
    except RuntimeError as exc:
        raise DataError(f"SentencePiece training failed: {exc}") from exc
    finally:
        os.unlink(text_path)


def build_corpus(
    out: str | Path,
    splits: dict[str, list[tuple[str, str]]],
    source_lang: str,
    target_lang: str,
    vocab_size: int,
    extra: dict | None = None,
    overwrite: bool = False,
    tokenizer: str | Path | None = None,
) -> Corpus:
    """Write aligned splits, train the joint tokenizer on the training split (or copy the given
    `tokenizer` spm.model: the one a pretrained supernet's token ids belong to), write the
    manifest.

    The folder is built aside and swapped in at the end (`staged_output_dir`): an existing,
    non-empty `out` is refused unless `overwrite`, and a failed build leaves it as it was.
    """
    from mos_search.data.tokenizer import Tokenizer

    missing = [s for s in SPLITS if not splits.get(s)]
    if missing:
        raise DataError(f"no sentence pairs for split(s): {', '.join(missing)}")
    with staged_output_dir(out, overwrite, "corpus") as folder:
        for split, pairs in splits.items():
            write_lines(folder / f"{split}.{source_lang}", [s for s, _ in pairs])
            write_lines(folder / f"{split}.{target_lang}", [t for _, t in pairs])
        train = splits["train"]
        if tokenizer is not None:
            Tokenizer(tokenizer)  # a DataError naming it when it is not a SentencePiece model
            shutil.copyfile(tokenizer, folder / "spm.model")
        else:
            sentences = [s for s, _ in train] + [t for _, t in train]
            train_tokenizer(sentences, folder / "spm", vocab_size)
        meta = {
            "source_lang": source_lang,
            "target_lang": target_lang,
            "vocab_size": Tokenizer(folder / "spm.model").vocab_size,
            "pairs": {s: len(p) for s, p in splits.items()},
            **(extra or {}),
        }
        write_manifest(folder, meta)
        tokenize_training_split(open_corpus(folder))
    return open_corpus(out)


def tokenize_training_split(corpus: Corpus) -> Path:
    """Write the corpus's memory-mapped training token store (`tokens/`), one streaming pass."""
    from mos_search.data.tokenized import STORE, build_token_store
    from mos_search.data.tokenizer import Tokenizer

    check_writable_dir(corpus.root / STORE)  # before the pass, which is long for a big corpus
    files = [path.name for path in corpus.split_paths("train")]
    return build_token_store(corpus.root, files, Tokenizer(corpus.tokenizer_path))


def build_bible_corpus(
    out: str | Path,
    vocab_size: int = 8000,
    overwrite: bool = False,
    tokenizer: str | Path | None = None,
) -> Corpus:
    """The default corpus (Spanish -> English Bible), split by whole books; an existing corpus
    in `out` is refused unless `overwrite`; `tokenizer`: use this spm.model, not a new one."""
    from mos_search.data import bible

    check_output_dir(out, overwrite, "corpus")  # before reading the Bible
    splits: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for verse in bible.bible_verses():
        splits[bible.split_of(verse.book)].append((verse.source, verse.target))
    extra = {
        "name": "bible-es-en",
        "source_module": bible.SOURCE_MODULE,
        "target_module": bible.TARGET_MODULE,
        "books": {
            "valid": list(bible.VALID_BOOKS),
            "test": list(bible.TEST_BOOKS),
            "train": "every other book present in both texts",
        },
    }
    return build_corpus(out, splits, "es", "en", vocab_size, extra, overwrite, tokenizer)


def read_split(path: str, source_lang: str, target_lang: str) -> list[tuple[str, str]]:
    """A split given as a .tsv file or as a prefix of PREFIX.SRC / PREFIX.TGT files."""
    if path.endswith(".tsv"):
        return read_tsv(path)
    return read_parallel(f"{path}.{source_lang}", f"{path}.{target_lang}")


def build_parallel_corpus(
    out: str | Path,
    source_lang: str,
    target_lang: str,
    train: str,
    valid: str,
    test: str,
    vocab_size: int = 8000,
    overwrite: bool = False,
) -> Corpus:
    """A corpus folder from your own parallel text (each split a .tsv or a file prefix); an
    existing corpus in `out` is refused unless `overwrite`."""
    check_output_dir(out, overwrite, "corpus")  # before reading the text
    splits = {
        name: read_split(path, source_lang, target_lang)
        for name, path in (("train", train), ("valid", valid), ("test", test))
    }
    return build_corpus(out, splits, source_lang, target_lang, vocab_size, overwrite=overwrite)
