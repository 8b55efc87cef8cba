"""Decoding options: n-gram blocking and the length penalty, scripted and on a real model (the
same tokens from PyTorch and ONNX Runtime), in the score cache's key and on the command line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from mos_search.cli import main
from mos_search.constants import BOS_ID, EOS_ID
from mos_search.errors import ConfigError
from mos_search.models.build import load_model
from mos_search.oracle.beam import beam_search, block_repeated_ngrams, greedy_search

from conftest import assert_one_line_error

A, B, C, D = 4, 5, 6, 7  # word ids after the special ones
VOCAB = 8
SOURCE = np.array([[A, B, C, D, A, B, C, D, EOS_ID]])  # 9 tokens: up to 23 target tokens


class ScriptedStepper:
    """Next-token probabilities looked up by the hypothesis so far (`script`, keyed by its words)
    or, for any other hypothesis, by its last token (`after`); no state."""

    def __init__(self, script: dict[tuple[int, ...], dict[int, float]], after=None) -> None:
        self.script, self.after = script, after or {}

    def start(self, src: np.ndarray) -> None:
        return None

    def step(self, prefix: np.ndarray, state: None) -> tuple[np.ndarray, None]:
        logits = np.full((len(prefix), VOCAB), np.log(1e-9), dtype=np.float32)
        for row, tokens in enumerate(prefix.tolist()):
            words = tuple(tokens[1:])
            probs = self.script.get(words) or self.after.get(words[-1] if words else BOS_ID, {})
            for token, p in probs.items():
                logits[row, token] = np.log(p)
        return logits, state

    def reorder(self, state: None, order: np.ndarray) -> None:
        return state


def looping_stepper() -> ScriptedStepper:
    """Prefers "A B A B ...": after A comes B, after B comes A; C and D are second choices, and
    EOS is the least likely of all."""
    prefer = {A: B, B: A, C: A, D: B, BOS_ID: A}
    after = {}
    for last, best in prefer.items():
        others = [t for t in (A, B, C, D) if t != best]
        after[last] = {best: 0.6, others[0]: 0.2, others[1]: 0.1, others[2]: 0.07, EOS_ID: 0.03}
    return ScriptedStepper({}, after)


def repeated(tokens: list[int], n: int) -> bool:
    """Whether an n-gram occurs twice in `tokens`."""
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("beam", [1, 3])
def test_blocking_stops_a_loop_that_decoding_without_it_repeats(beam):
    def search(size):
        if beam == 1:
            return greedy_search(looping_stepper(), SOURCE, no_repeat_ngram_size=size)[0]
        return beam_search(looping_stepper(), SOURCE, beam, no_repeat_ngram_size=size)[0]

    loop = search(0)
    assert loop[:6] == [A, B, A, B, A, B] and repeated(loop, 2)
    for size in (2, 3):
        blocked = search(size)
        assert blocked and not repeated(blocked, size), blocked
    assert repeated(search(3), 2)  # only n-grams of the size given are blocked


def test_block_repeated_ngrams_follows_fairseq():
    prefix = np.array([[BOS_ID, A, B, C, A, B], [BOS_ID, A, B, C, A, D]])
    lprobs = np.zeros((2, VOCAB), dtype=np.float32)
    blocked = block_repeated_ngrams(lprobs.copy(), prefix, 3)  # (A, B) was followed by C
    assert np.isneginf(blocked[0, C]) and np.isfinite(np.delete(blocked[0], C)).all()
    assert np.isfinite(blocked[1]).all()
    bigram = block_repeated_ngrams(lprobs.copy(), prefix, 2)  # B was followed by C
    assert np.isneginf(bigram[0, C]) and np.isfinite(bigram[1]).all()  # D never seen before
    single = block_repeated_ngrams(lprobs.copy(), prefix, 1)  # every token already generated
    assert np.isneginf(single[0, [BOS_ID, A, B, C]]).all() and np.isfinite(single[0, D])
    assert np.array_equal(block_repeated_ngrams(lprobs.copy(), prefix, 0), lprobs)
    assert np.array_equal(block_repeated_ngrams(lprobs.copy(), prefix, 7), lprobs)  # too short
    with pytest.raises(ConfigError, match="no-repeat-ngram: expected 0"):
        block_repeated_ngrams(lprobs, prefix, -1)


def test_lenpen_decides_between_a_short_and_a_long_finished_hypothesis():
    """'A' ends at once (log-prob -0.62 over 2 tokens with EOS); 'B C C C' is less likely
    (-0.92) but over 5 tokens: by the raw sum (lenpen 0) the short one wins, per token (1) the
    long one, as in fairseq (score / length**lenpen)."""
    script = {
        (): {A: 0.6, B: 0.4},
        (A,): {EOS_ID: 0.9, C: 0.1},
        (B,): {C: 1.0},
        (B, C): {C: 1.0},
        (B, C, C): {C: 1.0},
        (B, C, C, C): {EOS_ID: 1.0},
    }
    stepper = ScriptedStepper(script, after={C: {C: 0.5, B: 0.5}, B: {C: 0.5, B: 0.5}})
    short, long = [A], [B, C, C, C]
    assert beam_search(stepper, SOURCE, 2, lenpen=0.0) == [short]
    assert beam_search(stepper, SOURCE, 2, lenpen=1.0) == [long]
    assert beam_search(stepper, SOURCE, 2, lenpen=2.0) == [long]
    assert greedy_search(stepper, SOURCE) == [short]  # one hypothesis: no length to weigh


@pytest.fixture(scope="module")
def onnx_model(tiny_run, tiny_corpus, tmp_path_factory):
    """The tiny supernet's largest sub-network and a folder of its two ONNX graphs and the
    tokenizer (what `translate` reads; the card and its measurements are not needed here)."""
    from mos_search.models.onnx import export_onnx

    out = tmp_path_factory.mktemp("onnx")
    loaded = load_model(tiny_run)
    model = loaded.sub_network(loaded.space.largest())
    export_onnx(model, out)
    shutil.copy(tiny_corpus.tokenizer_path, out / "spm.model")
    return model, out


@pytest.mark.parametrize("beam", [1, 4])
def test_pytorch_and_onnx_runtime_decode_the_same_tokens_with_the_options_on(
    onnx_model, tiny_corpus, beam
):
    from mos_search.data.batches import encode_split
    from mos_search.data.tokenizer import Tokenizer
    from mos_search.deploy.translate import OnnxTranslator
    from mos_search.oracle.decode import translate_ids

    model, folder = onnx_model
    data = encode_split(tiny_corpus, "valid", Tokenizer(tiny_corpus.tokenizer_path)).subset(10)
    translator = OnnxTranslator(folder)
    sources = [list(s[:-1]) for s in data.sources]
    changed = []
    for lenpen, size in ((0.6, 2), (1.5, 3)):
        expected = translate_ids(model, data, beam, lenpen, no_repeat_ngram_size=size)
        got = translator.translate_ids(sources, beam, lenpen, no_repeat_ngram_size=size)
        assert got == expected
        assert not any(repeated(hyp, size) for hyp in got)
        changed.append(got != translate_ids(model, data, beam, lenpen))
    assert changed[0] or beam > 1  # greedy repeats bigrams: blocking them changes its output


def test_the_score_cache_key_holds_the_options(tiny_run, tmp_path):
    from mos_search.oracle.scoring import Oracle

    oracle = Oracle(tiny_run, split="valid", limit=4, cache_path=tmp_path / "cache.jsonl")
    arch = oracle.space.smallest()
    plain = oracle._cache_key(arch, "bleu", 2, 1.0)
    assert plain == oracle._key(arch, "bleu", beam=2, lenpen=1.0)  # earlier scores stay valid
    assert oracle._cache_key(arch, "bleu", 2, 1.0, 0) == plain
    keys = {plain, oracle._cache_key(arch, "bleu", 2, 1.0, 2)}
    keys |= {oracle._cache_key(arch, "bleu", 2, 1.0, 3), oracle._cache_key(arch, "bleu", 2, 0.5)}
    assert len(keys) == 4
    assert oracle._cache_key(arch, "loss", 2, 1.0, 3) == oracle._cache_key(arch, "loss", 5, 1.0)
    blocked = oracle.bleu(arch, 2, no_repeat_ngram_size=2)
    oracle.bleu(arch, 2)
    records = list(oracle.cache.values.values())
    assert sorted(r.get("no_repeat_ngram_size") for r in records) == [0, 2]
    assert oracle.bleu(arch, 2, no_repeat_ngram_size=2) == blocked and oracle.cache.hits == 1


def test_score_and_translate_take_the_options(tiny_run, onnx_model, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("score_cache*"))
    runner = CliRunner()
    score = ["score", "--ckpt", str(run), "--preset-arch", "smallest", "--limit", "4"]
    result = runner.invoke(
        main,
        [*score, "--metric", "bleu", "--beam", "2", "--lenpen", "0.5", "--no-repeat-ngram", "3"],
    )
    assert result.exit_code == 0, result.output
    assert "beam 2, lenpen 0.5, no-repeat-ngram 3" in result.output
    help_text = runner.invoke(main, ["translate", "--help"]).output
    assert "--no-repeat-ngram" in help_text and "[default: 0; x>=0]" in help_text
    _, folder = onnx_model
    translate = ["translate", "--model", str(folder), "--beam", "2"]
    done = runner.invoke(main, [*translate, "--no-repeat-ngram", "2"], input="a b\nc\n")
    assert done.exit_code == 0 and len(done.output.splitlines()) == 2
    bad = runner.invoke(main, [*translate, "--no-repeat-ngram", "-1"], input="a\n")
    assert_one_line_error(bad, "--no-repeat-ngram")
    assert runner.invoke(main, [*translate, "--lenpen", "nan"], input="a\n").exit_code == 2


def test_the_search_verifies_with_the_options():
    from mos_search.search.config import VerifySettings

    settings = VerifySettings(300, 5, 8, 3, 0.8, 3)
    assert (settings.lenpen, settings.no_repeat_ngram_size) == (0.8, 3)
    assert VerifySettings().no_repeat_ngram_size == 0 and VerifySettings().lenpen == 1.0
    with pytest.raises(ConfigError, match="--verify-no-repeat-ngram"):
        VerifySettings(no_repeat_ngram_size=-1)
    help_text = CliRunner().invoke(main, ["search", "--help"]).output
    assert "--verify-lenpen" in help_text and "--verify-no-repeat-ngram" in help_text
