"""Oracle and decoding: cache, beam search with/without the cache, supernet vs extracted, BLEU."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pytest
import torch

from mos_search.models.build import load_model
from mos_search.oracle.beam import beam_search, greedy_search
from mos_search.oracle.decode import CachedStepper, FullStepper
from mos_search.oracle.scoring import Oracle, corpus_bleu


def test_bleu_of_reference_against_itself_is_100():
    refs = ["The earth was formless and empty.", "God said, “Let there be light,” and there was."]
    score, signature = corpus_bleu(refs, refs)
    assert score == pytest.approx(100.0)
    assert signature.startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")


def test_cached_score_equals_fresh_score(tiny_run, tmp_path):
    cache = tmp_path / "cache.jsonl"
    space = load_model(tiny_run).space
    arch = space.sample(random.Random(1))
    first = Oracle(tiny_run, cache_path=cache)
    fresh_loss, fresh_bleu = first.loss(arch), first.bleu(arch, beam=2)
    assert first.cache.hits == 0
    again = Oracle(tiny_run, cache_path=cache)  # a new process would read the same file
    assert again.loss(arch) == fresh_loss
    assert again.bleu(arch, beam=2) == fresh_bleu
    assert again.cache.hits == 2
    uncached = Oracle(tiny_run, cache_path=None)
    assert uncached.loss(arch) == fresh_loss
    assert uncached.bleu(arch, beam=2).hypotheses == fresh_bleu.hypotheses


def test_cache_key_separates_slices_and_metrics(tiny_run, tmp_path):
    cache = tmp_path / "cache.jsonl"
    arch = load_model(tiny_run).space.largest()
    whole = Oracle(tiny_run, cache_path=cache).loss(arch)
    part = Oracle(tiny_run, limit=5, cache_path=cache)
    assert part.loss(arch) != whole and part.cache.hits == 0


def test_cache_key_follows_the_weights_and_the_corpus(tiny_run, tiny_corpus, tmp_path):
    """The key holds the weights' content digest and the corpus digest: another checkpoint or
    another corpus is another key, so its scores are never served from the cache; the same
    weights and corpus copied to other folders are the same key."""
    from mos_search.data.corpus import build_corpus

    from conftest import synthetic_pairs

    cache = tmp_path / "cache.jsonl"
    base = Oracle(tiny_run, cache_path=cache)
    arch = base.space.largest()
    whole = base.loss(arch)
    options = [("loss", 5, 1.0), ("bleu", 2, 1.0)]

    def keys(oracle: Oracle) -> list[str]:
        return [oracle._cache_key(arch, *option) for option in options]

    earlier_ckpt = sorted((tiny_run / "checkpoints").glob("step_*"))[0]
    assert earlier_ckpt != base.checkpoint
    splits = {"train": synthetic_pairs(400, 0), "valid": synthetic_pairs(40, 1)}
    other_data = build_corpus(
        tmp_path / "other-data", {**splits, "test": synthetic_pairs(40, 3)}, "es", "en", 64
    )  # the same training and validation pairs; another test split
    assert other_data.digest() != tiny_corpus.digest()
    same = Oracle(
        shutil.copytree(base.checkpoint, tmp_path / "ckpt-copy"),
        data=shutil.copytree(tiny_corpus.root, tmp_path / "data-copy"),
        cache_path=cache,
    )
    earlier = Oracle(earlier_ckpt, cache_path=cache)
    other = Oracle(tiny_run, data=other_data.root, cache_path=cache)
    assert earlier.loaded.digest != base.loaded.digest
    assert keys(same) == keys(base)
    assert not set(keys(earlier)) & set(keys(base))
    assert not set(keys(other)) & set(keys(base))
    assert not set(keys(other)) & set(keys(earlier))
    assert same.loss(arch) == whole and same.cache.hits == 1
    assert earlier.loss(arch) != whole and earlier.cache.hits == 0
    other.loss(arch)
    assert other.cache.hits == 0  # scored afresh, though on the same validation pairs


@pytest.fixture(scope="module")
def random_supernet():
    """An untrained supernet: its outputs are long and varied, which makes equality meaningful."""
    from mos_search import Supernet, SupernetConfig, load_space

    from conftest import TINY_SPACE

    torch.manual_seed(0)
    return Supernet(
        SupernetConfig(space=load_space(TINY_SPACE), mode="neuron", vocab_size=40)
    ).eval()


def random_sources(n: int = 6) -> np.ndarray:
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, 40, (n, 9), generator=g)
    src[0, 5:] = 0  # one shorter, padded source
    src[:, -1] = 3
    return src.numpy()


def test_beam_search_with_cache_equals_without(random_supernet):
    space = random_supernet.config.space
    src = random_sources()
    for arch in (space.largest(), space.smallest(), space.sample(random.Random(3))):
        model = random_supernet.extract(arch)
        for beam in (1, 3, 5):
            cached = beam_search(CachedStepper(model), src, beam=beam, lenpen=1.0)
            full = beam_search(FullStepper(model), src, beam=beam, lenpen=1.0)
            assert cached == full
            assert sum(len(h) for h in cached) > 10


def test_greedy_supernet_equals_extracted(random_supernet):
    src = random_sources()
    for seed in range(3):
        arch = random_supernet.config.space.sample(random.Random(seed))
        supernet_out = greedy_search(
            FullStepper(lambda s, p, a=arch: random_supernet(s, p, a)), src
        )
        extracted_out = greedy_search(CachedStepper(random_supernet.extract(arch)), src)
        assert supernet_out == extracted_out
        assert sum(len(h) for h in supernet_out) > 10


def test_beam_one_is_greedy(random_supernet):
    model = random_supernet.extract(random_supernet.config.space.largest())
    src = random_sources()
    assert beam_search(CachedStepper(model), src, beam=1) == greedy_search(
        CachedStepper(model), src
    )


def test_decoding_length_is_bounded(random_supernet):
    model = random_supernet.extract(random_supernet.config.space.smallest())
    for hyp in beam_search(CachedStepper(model), random_sources(), beam=2, max_len=4):
        assert len(hyp) <= 3


@pytest.mark.slow
def test_pipeline_learns_a_word_for_word_task(tiny_corpus, tmp_path):
    """Train longer on the synthetic task: BLEU must rise well above zero."""
    from mos_search.training.train import train

    from conftest import tiny_train_config

    config = tiny_train_config(
        tiny_corpus.root,
        tmp_path,
        max_steps=600,
        warmup=20,
        lr=5e-3,
        dropout=0.0,
        save_every=600,
        log_every=10,
    )
    train(config, progress=False)
    oracle = Oracle(tmp_path, cache_path=None)
    assert oracle.bleu(oracle.space.largest(), beam=3).score > 30.0


class TableStepper:
    """Next-token log-probabilities from a fixed random table per (prefix): a toy decoder."""

    def __init__(self, vocab: int, seed: int) -> None:
        self.vocab, self.seed = vocab, seed

    def logits_of(self, prefix: tuple[int, ...]) -> torch.Tensor:
        g = torch.Generator().manual_seed(hash((self.seed, prefix)) % (2**31))
        return torch.randn(self.vocab, generator=g) * 2

    def start(self, src):
        return None

    def step(self, prefix, state):
        return torch.stack([self.logits_of(tuple(row.tolist())) for row in prefix]).numpy(), state

    def reorder(self, state, order):
        return state


def brute_force_best(stepper: TableStepper, max_len: int, lenpen: float) -> list[int]:
    """Score every hypothesis up to `max_len` tokens (EOS included) exhaustively."""
    from mos_search.constants import BOS_ID, EOS_ID, PAD_ID

    best, best_score = None, -float("inf")
    frontier = [((BOS_ID,), 0.0)]
    for t in range(max_len):
        grown = []
        for prefix, score in frontier:
            lprobs = torch.log_softmax(stepper.logits_of(prefix), -1)
            for tok in range(stepper.vocab):
                if tok in (PAD_ID, BOS_ID) or (t == max_len - 1 and tok != EOS_ID):
                    continue
                total = score + float(lprobs[tok])
                if tok == EOS_ID:
                    if total / (t + 1) ** lenpen > best_score:
                        best, best_score = list(prefix[1:]), total / (t + 1) ** lenpen
                else:
                    grown.append(((*prefix, tok), total))
        frontier = grown
    return best


@pytest.mark.parametrize(("seed", "lenpen"), [(0, 1.0), (1, 0.6), (2, 1.0), (3, 2.0)])
def test_wide_beam_finds_the_exhaustive_best(seed, lenpen):
    stepper = TableStepper(vocab=7, seed=seed)  # UNK, EOS and three more tokens are allowed
    src = np.full((1, 2), 5)
    got = beam_search(stepper, src, beam=64, lenpen=lenpen, max_len=4)
    assert got == [brute_force_best(stepper, 4, lenpen)]
