"""A pretrained supernet: packed in fp16 with its tokenizer and a card, checked on use, and
continued with `train --init`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file

from mos_search.cli import main

from conftest import assert_one_line_error, flip_last_byte, synthetic_pairs, tree_digests


@pytest.fixture(scope="module")
def packed(tiny_run, tiny_corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrained") / "tiny-neuron"
    args = ["pack-supernet", "--ckpt", str(tiny_run), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--test-limit", "4", "--beam", "1", "--threads", "1"])
    assert result.exit_code == 0, result.output
    return out


def test_the_pack_holds_fp16_weights_its_tokenizer_and_a_card(packed, tiny_run, tiny_corpus):
    from mos_search.files import sha256_file
    from mos_search.models.checkpoint import resolve_checkpoint
    from mos_search.oracle.scoring import Oracle

    card = json.loads((packed / "card.json").read_text())
    state = json.loads((packed / "state.json").read_text())
    source = resolve_checkpoint(tiny_run)
    weights = load_file(packed / "model.safetensors")
    assert {str(t.dtype) for t in weights.values()} == {"torch.float16"}
    assert card["weights_bytes"] < 0.6 * (source / "model.safetensors").stat().st_size
    assert (
        card["weights_sha256"] == state["model_sha256"] == sha256_file(packed / "model.safetensors")
    )
    assert sha256_file(packed / "spm.model") == sha256_file(tiny_corpus.tokenizer_path)
    assert "optimizer" not in state and state["step"] == card["steps"] == 30
    assert (
        card["command"].startswith("mos-search train --data ")
        and "--mode neuron" in card["command"]
    )
    assert card["commit"] is None or len(card["commit"]) == 40
    assert set(card["scores"]) == {"largest", "smallest"}
    oracle = Oracle(tiny_run, cache_path=None)
    fp32 = oracle.loss(oracle.space.largest())
    assert card["scores"]["largest"]["valid_loss"] == pytest.approx(fp32, abs=2e-3)  # fp16 rounding
    assert card["scores"]["largest"]["test_sentences"] == 4


def test_the_card_command_uses_only_options_train_has():
    from mos_search.cli.train import train_command
    from mos_search.training.config import TRAIN_FLAGS

    options = {p.name for p in train_command.params}
    assert set(TRAIN_FLAGS) <= options


def test_weights_changed_after_packing_are_refused(packed, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(packed, copy)
    weights = copy / "model.safetensors"
    flip_last_byte(weights)
    before = tree_digests(tmp_path)
    result = CliRunner().invoke(
        main, ["demo", "--pretrained", str(copy), "--out", str(tmp_path / "d")]
    )
    assert_one_line_error(result, str(weights), "weights changed since they were packed")
    assert tree_digests(tmp_path) == before


def test_train_init_continues_the_supernet_with_its_weights(packed, tiny_corpus, tmp_path):

    from mos_search.models.checkpoint import read_state, resolve_checkpoint

    out = tmp_path / "more"
    args = ["train", "--init", str(packed), "--data", str(tiny_corpus.root), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--max-steps", "1", "--lr", "1e-12", "--warmup", "0"])
    assert result.exit_code == 0, result.output
    continued = resolve_checkpoint(out)
    assert read_state(continued)["model"] == read_state(packed)["model"]
    start, after = (
        load_file(packed / "model.safetensors"),
        load_file(continued / "model.safetensors"),
    )
    assert max((after[k] - start[k].float()).abs().max().item() for k in start) < 1e-6


def test_train_init_refuses_a_corpus_with_another_tokenizer(packed, tmp_path):
    from mos_search.data.corpus import build_corpus

    splits = {
        "train": synthetic_pairs(300, 5),
        "valid": synthetic_pairs(20, 6),
        "test": synthetic_pairs(20, 7),
    }
    other = build_corpus(tmp_path / "other", splits, "es", "en", vocab_size=60)
    before = tree_digests(tmp_path)
    args = ["train", "--init", str(packed), "--data", str(other.root), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(main, args)
    assert_one_line_error(result, str(packed), "another tokenizer")
    assert tree_digests(tmp_path) == before


def test_a_corpus_built_with_the_packed_tokenizer_is_accepted(packed, tmp_path):
    """Other sentences, the same spm.model: the token ids mean the same words."""
    from mos_search.data.corpus import build_corpus
    from mos_search.files import sha256_file
    from mos_search.training.train import train

    from conftest import tiny_train_config

    splits = {
        "train": synthetic_pairs(200, 8),
        "valid": synthetic_pairs(20, 9),
        "test": synthetic_pairs(20, 10),
    }
    corpus = build_corpus(tmp_path / "c", splits, "es", "en", 999, tokenizer=packed / "spm.model")
    assert sha256_file(corpus.tokenizer_path) == sha256_file(packed / "spm.model")
    config = tiny_train_config(corpus.root, tmp_path / "r", init_from=str(packed), max_steps=1)
    assert train(config, progress=False).step == 1


def test_the_demo_takes_space_and_tokenizer_from_the_pretrained_folder(packed, tmp_path):
    from mos_search.demo import DemoConfig, DemoFolder
    from mos_search.demo.stages import copy_pretrained

    demo = DemoFolder(DemoConfig(out=str(tmp_path / "demo"), pretrained=str(packed)))
    card = json.loads((packed / "card.json").read_text())
    assert (demo.config.preset, demo.config.vocab_size) == (card["space"], card["vocab_size"])
    copy_pretrained(demo)
    assert (demo.supernet / "card.json").read_bytes() == (packed / "card.json").read_bytes()
    assert not (
        packed / "score_cache.jsonl"
    ).exists()  # caches go to the run, not the shipped folder


def test_a_demo_folder_of_another_setup_is_refused(packed, tmp_path):
    """Continuing runs/demo of a from-scratch demo from the pretrained supernet would reuse a
    corpus of another tokenizer: refused, nothing changed."""
    root = tmp_path / "demo"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"preset": "cpu-tiny", "vocab_size": 4000}))
    before = tree_digests(tmp_path)
    result = CliRunner().invoke(main, ["demo", "--pretrained", str(packed), "--out", str(root)])
    assert_one_line_error(result, str(root), "holds a demo of another setup", "preset 'cpu-tiny'")
    assert tree_digests(tmp_path) == before
