"""Data: reader error paths, OSIS cleaning, corpus folders and token-budget batches."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from mos_search.constants import BOS_ID, EOS_ID, PAD_ID
from mos_search.data.batches import collate, encode_split, token_batches
from mos_search.data.bible import clean_osis, parse_imp, split_of
from mos_search.data.corpus import open_corpus
from mos_search.data.parallel import read_parallel, read_tsv
from mos_search.data.tokenizer import Tokenizer
from mos_search.errors import DataError


def write(path, data: bytes | str):
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def test_read_parallel_ok(tmp_path):
    src = write(tmp_path / "a.es", "hola\nadiós\n")
    tgt = write(tmp_path / "a.en", "hello\r\nbye\n")
    assert read_parallel(src, tgt) == [("hola", "hello"), ("adiós", "bye")]


def test_mismatched_line_counts(tmp_path):
    src = write(tmp_path / "a.es", "uno\ndos\ntres\n")
    tgt = write(tmp_path / "a.en", "one\ntwo\n")
    with pytest.raises(DataError, match=r"line counts differ: .*a\.es has 3, .*a\.en has 2"):
        read_parallel(src, tgt)


def test_empty_file(tmp_path):
    src = write(tmp_path / "a.es", "")
    with pytest.raises(DataError, match=r"a\.es: file is empty"):
        read_parallel(src, src)


def test_bad_encoding_names_file_and_line(tmp_path):
    src = write(tmp_path / "a.es", b"bien\nmal \xff\xfe aqui\n")
    with pytest.raises(DataError, match=r"a\.es:2: not UTF-8 text \(byte 0xff at column 5\)"):
        read_parallel(src, src)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_parallel(tmp_path / "x.es", tmp_path / "x.en")


def test_empty_sentence_named(tmp_path):
    src = write(tmp_path / "a.es", "uno\n   \n")
    tgt = write(tmp_path / "a.en", "one\ntwo\n")
    with pytest.raises(DataError, match="line 2: empty source sentence"):
        read_parallel(src, tgt)


def test_tsv(tmp_path):
    good = write(tmp_path / "a.tsv", "uno\tone\ndos\ttwo\n")
    assert read_tsv(good) == [("uno", "one"), ("dos", "two")]
    bad = write(tmp_path / "b.tsv", "uno\tone\ndos two\n")
    with pytest.raises(DataError, match=r"b\.tsv:2: expected 2 tab-separated fields, found 1"):
        read_tsv(bad)


def test_clean_osis_notes_headings_and_tags():
    raw = (
        '<title type="x-gen">Heading</title><w lemma="x">In</w> <w>the</w> <w>beginning</w>, '
        '<w>God</w><note placement="foot"><reference>1:1 </reference>A note.</note><w>created'
        '</w> the <transChange type="added">earth</transChange> &amp; sea .'
    )
    assert clean_osis(raw) == "In the beginning, God created the earth & sea."
    psalm = '<title canonical="true">A Psalm by David.</title> Yahweh is my shepherd.'
    assert clean_osis(psalm) == "A Psalm by David. Yahweh is my shepherd."


def test_parse_imp_keys():
    dump = (
        "$$$[ Module Heading ]\nintro\n$$$Genesis 0:0\ntitle\n$$$Genesis 1:0\n\n"
        "$$$Genesis 1:1\nIn the beginning\n$$$I Samuel 3:4\n<w>Here</w>\nI am\n"
    )
    assert parse_imp(dump) == {
        ("Genesis", 1, 1): "In the beginning",
        ("I Samuel", 3, 4): "Here I am",
    }


def test_book_split():
    assert (split_of("Mark"), split_of("John"), split_of("Genesis")) == ("test", "valid", "train")


def test_corpus_folder(tiny_corpus, tmp_path):
    assert len(tiny_corpus.pairs("train")) == 400
    tok = Tokenizer(tiny_corpus.tokenizer_path)
    assert (tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id) == (PAD_ID, 1, BOS_ID, EOS_ID)
    assert tok.decode(tok.encode("uno dos casa")) == "uno dos casa"
    broken = tmp_path / "broken"
    shutil.copytree(tiny_corpus.root, broken)
    (broken / "test.en").unlink()
    with pytest.raises(DataError, match=r"lacks test\.en"):
        open_corpus(broken)
    with pytest.raises(DataError, match="not a corpus folder"):
        open_corpus(tmp_path)


def test_token_batches_cover_fit_and_repeat(tiny_corpus):
    data = encode_split(tiny_corpus, "train", Tokenizer(tiny_corpus.tokenizer_path))
    batches = token_batches(data, 200, seed=3, epoch=0)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(data)))
    for b in batches:
        batch = collate(data, b)
        assert batch.src.numel() <= 200 and batch.target.numel() <= 200
        assert (batch.prev[:, 0] == BOS_ID).all()
        shifted = batch.prev[:, 1:] != PAD_ID  # prev is the target shifted right by one
        assert torch.equal(batch.prev[:, 1:][shifted], batch.target[:, :-1][shifted])
        assert ((batch.target == EOS_ID).sum(1) == 1).all()
    assert batches == token_batches(data, 200, seed=3, epoch=0)
    assert batches != token_batches(data, 200, seed=3, epoch=1)


def test_max_len_drops_long_pairs(tiny_corpus):
    tok = Tokenizer(tiny_corpus.tokenizer_path)
    full = encode_split(tiny_corpus, "train", tok)
    short = encode_split(tiny_corpus, "train", tok, max_len=8)
    assert 0 < len(short) < len(full)
    assert all(len(s) <= 8 and len(t) <= 8 for s, t in zip(short.sources, short.targets))


@pytest.mark.slow
def test_bible_corpus_builds(tmp_path):
    from mos_search.data.corpus import build_bible_corpus

    corpus = build_bible_corpus(tmp_path / "bible", vocab_size=8000)
    sizes = {s: len(corpus.pairs(s)) for s in ("train", "valid", "test")}
    assert sizes == {"train": 28340, "valid": 1544, "test": 1193}
    train = corpus.pairs("train")
    assert train[0] == (
        "EN el principio crió Dios los cielos y la tierra.",
        "In the beginning, God created the heavens and the earth.",
    )
    assert not any("<" in s or "<" in t for s, t in train)


def test_edited_or_damaged_corpus_is_refused(tiny_corpus, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_corpus.root, copy)
    (copy / "valid.en").write_text("edited\n" * 40)
    with pytest.raises(DataError, match=r"valid\.en changed since the corpus was built"):
        open_corpus(copy)
    (copy / "corpus.json").write_text("{")
    with pytest.raises(DataError, match=r"corpus\.json is damaged"):
        open_corpus(copy)


def test_subset_spreads_over_the_split(tiny_corpus):
    data = encode_split(tiny_corpus, "valid", Tokenizer(tiny_corpus.tokenizer_path))
    part = data.subset(4)
    assert len(part) == 4 and part.references[0] == data.references[0]
    assert part.references[-1] == data.references[-1]
    assert data.subset(None) is data and data.subset(10_000) is data


def test_memory_mapped_training_split_equals_the_in_memory_one(tiny_corpus):
    from mos_search.data.batches import encode_split, token_batches
    from mos_search.data.tokenized import MemmapSplit, open_training_split
    from mos_search.data.tokenizer import Tokenizer

    tokenizer = Tokenizer(tiny_corpus.tokenizer_path)
    assert (tiny_corpus.root / "tokens" / "meta.json").is_file()  # built with the corpus
    for max_len in (128, 9):
        mapped = open_training_split(tiny_corpus.root, "train.es", "train.en", max_len)
        memory = encode_split(tiny_corpus, "train", tokenizer, max_len)
        assert isinstance(mapped, MemmapSplit) and len(mapped) == len(memory)
        for i in range(len(memory)):
            np.testing.assert_array_equal(mapped.sources[i], memory.sources[i])
            np.testing.assert_array_equal(mapped.targets[i], memory.targets[i])
        assert token_batches(mapped, 200, seed=3, epoch=1) == token_batches(
            memory, 200, seed=3, epoch=1
        )
        picked = mapped.subset(7)
        np.testing.assert_array_equal(picked.sources[6], memory.subset(7).sources[6])


def test_a_stale_token_store_is_ignored(tiny_corpus, tmp_path):

    from mos_search.data.corpus import open_corpus
    from mos_search.data.tokenized import open_training_split

    copy = tmp_path / "copy"
    shutil.copytree(tiny_corpus.root, copy)
    meta = copy / "tokens" / "meta.json"
    meta.write_text(meta.read_text().replace('"tokenizer": "', '"tokenizer": "0'))
    open_corpus(copy)  # the corpus itself is intact
    assert open_training_split(copy, "train.es", "train.en", 128) is None


def test_training_reads_the_store_with_the_same_result(tiny_corpus, tmp_path):

    from mos_search.models.checkpoint import load_tensors
    from mos_search.training.train import Trainer, train

    from conftest import tiny_train_config

    plain = tmp_path / "plain"
    shutil.copytree(tiny_corpus.root, plain, ignore=shutil.ignore_patterns("tokens"))
    runs = {}
    for name, data in (("mapped", tiny_corpus.root), ("plain", plain)):
        config = tiny_train_config(
            data, tmp_path / f"run-{name}", mode="shared", max_tokens=256, max_steps=3, warmup=1,
            lr=1e-3, save_every=3, log_every=10, device="cpu",
        )  # fmt: skip
        if name == "mapped":
            assert type(Trainer(config).task.train_data).__name__ == "MemmapSplit"
            shutil.rmtree(config.out)
        train(config, progress=False)
        runs[name] = load_tensors(config.out)
    for key, value in runs["plain"].items():
        assert torch.equal(value, runs["mapped"][key]), key
