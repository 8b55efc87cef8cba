"""BERT: space, supernet parity, masking, fixed-mask perplexity, memory, search and export."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mos_search.arch import BertArch
from mos_search.cli import main
from mos_search.constants import BOS_ID, EOS_ID, PAD_ID
from mos_search.errors import ArchError, DataError, SpaceError
from mos_search.models.bert import MaskedLM, bert_parameter_bytes, count_bert_parameters
from mos_search.models.supernet import BertSupernet, SupernetConfig, build_supernet
from mos_search.space import load_space, space_from_toml

from conftest import tiny_train_config

TINY_BERT = str(Path(__file__).with_name("tiny-bert.toml"))
VOCAB = 61
WORDS = [
    "the", "dog", "cat", "sees", "eats", "big", "red", "green",
    "house", "sun", "water", "sea", "and", "one", "two", "three",
]  # fmt: skip


def text_lines(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def text_corpus(tmp_path_factory):
    from mos_search.data.text import text_from_file

    root = tmp_path_factory.mktemp("text")
    source = root / "all.txt"
    source.write_text("".join(line + "\n" for line in text_lines(600, 0)))
    return text_from_file(root / "corpus", source, vocab_size=48)


@pytest.fixture(scope="module")
def bert_run(text_corpus, tmp_path_factory):
    """A tiny neuron-wise BERT supernet trained for a few steps."""
    from mos_search.training.train import train

    out = tmp_path_factory.mktemp("bert-run")
    config = tiny_train_config(text_corpus.root, out, space=TINY_BERT, max_steps=20)
    train(config, progress=False)
    return out


# ---------------------------------------------------------------------------- space


def test_presets_are_shaped_as_published_and_cpu_sized():
    bottleneck = load_space("bert-bottleneck")
    assert bottleneck.choices["hidden_dims"] == (120, 240, 360, 480, 540, 600, 768)
    assert bottleneck.choices["layers"] == (12,) and bottleneck.choices["heads"] == (12,)
    assert bottleneck.choices["ffn_dims"] == (3072,)
    cpu = load_space("bert-cpu")
    assert cpu.task == "bert"
    assert count_bert_parameters(cpu.largest(), 8000) < 10_000_000


def test_heads_must_divide_every_hidden_width():
    text = """name = "bad"\ntask = "bert"\n[choices]\nembed_dim = [16]\nlayers = [1]
hidden_dims = [12, 16]\nheads = [8]\nffn_dims = [16]\n"""
    with pytest.raises(SpaceError, match="12 by 8"):
        space_from_toml(text)


def test_bert_arch_round_trips_and_validates():
    space = load_space("bert-cpu")
    arch = space.sample(random.Random(3))
    assert space.arch_from_json(arch.to_json()) == arch
    assert space.from_gene(space.to_gene(arch)) == arch
    with pytest.raises(ArchError, match="hidden_dims"):
        BertArch(embed_dim=128, layers=2, hidden_dims=(64,), heads=(4, 4), ffn_dims=(256, 256))


# ---------------------------------------------------------------------------- supernet


@pytest.mark.parametrize("mode", ["shared", "layer", "neuron"])
def test_extracted_encoder_matches_the_supernet(mode):
    torch.manual_seed(0)
    space = load_space("bert-cpu")
    net = build_supernet(SupernetConfig(space=space, vocab_size=VOCAB, mode=mode)).eval()
    assert isinstance(net, BertSupernet)
    tokens = torch.randint(5, VOCAB, (3, 11))
    tokens[1, 7:] = PAD_ID
    for arch in (space.largest(), space.smallest(), space.sample(random.Random(1))):
        with torch.no_grad():
            inside = net(tokens, None, arch)
            model = net.extract(arch)
            alone = model(tokens)
        assert torch.equal(alone, inside), (alone - inside).abs().max()  # README: max diff 0.0
        total = sum(p.numel() for p in model.parameters())
        assert total == count_bert_parameters(arch, VOCAB, head=True)


def test_neuron_mode_generates_different_ffn_weights_per_arch():
    torch.manual_seed(0)
    space = load_space(TINY_BERT)
    net = build_supernet(SupernetConfig(space=space, vocab_size=VOCAB, mode="neuron")).eval()
    a = BertArch(embed_dim=24, layers=1, hidden_dims=(16,), heads=(2,), ffn_dims=(32,))
    b = BertArch(embed_dim=16, layers=1, hidden_dims=(16,), heads=(2,), ffn_dims=(32,))
    key = "encoder.layers.0.block.ffn.fc1.weight"
    wa, wb = net.materialize(a)[key], net.materialize(b)[key]
    assert wa.shape == wb.shape and not torch.allclose(wa, wb)


def test_masked_positions_only_logits_equal_the_full_ones():
    torch.manual_seed(0)
    arch = load_space(TINY_BERT).largest()
    model = MaskedLM(arch, VOCAB).eval()
    tokens = torch.randint(5, VOCAB, (2, 9))
    positions = torch.zeros(2, 9, dtype=torch.bool)
    positions[0, 3] = positions[1, 5] = True
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, positions), model(tokens)[positions])


# ---------------------------------------------------------------------------- masking


@settings(max_examples=60, deadline=None)
@given(length=st.integers(1, 80), seed=st.integers(0, 2**31))
def test_masking_follows_the_bert_recipe(length, seed):
    from mos_search.models.mlm import FIRST_WORD_ID, mask_row

    rng = np.random.default_rng(seed)
    row = np.array([BOS_ID, *rng.integers(FIRST_WORD_ID, 500, size=length), EOS_ID])
    inputs, targets = mask_row(row, 500, 4, np.random.default_rng(seed))
    chosen = targets != PAD_ID
    assert chosen.sum() == max(1, round(0.15 * length))
    assert not chosen[0] and not chosen[-1]  # specials are never chosen
    np.testing.assert_array_equal(targets[chosen], row[chosen])
    np.testing.assert_array_equal(inputs[~chosen], row[~chosen])  # unchosen tokens untouched
    changed = chosen & (inputs != row)
    masked = inputs == 4
    # a changed token is <mask> or a random ordinary word, never a special id
    assert np.all(masked[changed] | (inputs[changed] >= FIRST_WORD_ID))
    assert inputs.max() < 500 and not np.any(masked[~chosen])


def test_masking_mix_is_80_10_10():
    from mos_search.models.mlm import mask_row

    row = np.array([BOS_ID, *range(10, 2010), EOS_ID])
    inputs, targets = mask_row(row, 3000, 4, np.random.default_rng(0))
    chosen = targets != PAD_ID
    masked = (inputs[chosen] == 4).mean()
    kept = (inputs[chosen] == row[chosen]).mean()
    assert 0.74 < masked < 0.86 and 0.05 < kept < 0.15


# ---------------------------------------------------------------------------- data


def test_text_corpus_has_a_mask_token_and_three_splits(text_corpus):
    from mos_search.data.text import open_text_corpus
    from mos_search.data.tokenizer import Tokenizer

    corpus = open_text_corpus(text_corpus.root)
    assert Tokenizer(corpus.tokenizer_path).mask_id == 4
    sizes = [len(corpus.lines(s)) for s in ("train", "valid", "test")]
    assert sizes == [540, 30, 30]


def test_wrong_corpus_kinds_are_clear_errors(text_corpus, tiny_corpus):
    from mos_search.data.corpus import open_corpus
    from mos_search.data.text import open_text_corpus

    with pytest.raises(DataError, match="text corpus"):
        open_text_corpus(tiny_corpus.root)
    with pytest.raises(DataError, match="text"):
        open_corpus(text_corpus.root)


# ---------------------------------------------------------------------------- oracle, memory


def test_fixed_mask_perplexity_is_deterministic_and_cached(bert_run, tmp_path):
    from mos_search.oracle.scoring import Oracle

    space = load_space(TINY_BERT)
    archs = [space.largest(), space.smallest()]
    first = Oracle(bert_run, split="valid", cache_path=None)
    values = [first.perplexity(a) for a in archs]
    # a fresh process state (new oracle, different batching) gives the same numbers
    second = Oracle(bert_run, split="valid", cache_path=tmp_path / "cache.jsonl", max_tokens=64)
    assert [second.perplexity(a) for a in archs] == pytest.approx(values, rel=1e-5)
    assert all(1.0 < v < VOCAB * 2 for v in values)
    third = Oracle(bert_run, split="valid", cache_path=tmp_path / "cache.jsonl")
    third.perplexity(archs[0])
    assert third.cache.hits == 1


def test_training_lowers_the_masked_lm_loss(bert_run):
    records = [json.loads(line) for line in (bert_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_memory_bytes_equal_an_independent_count(seed, tmp_path):
    """Formula vs the model's tensors vs the exported ONNX file's initializers."""
    import onnx

    from mos_search.models.onnx import export_bert_onnx

    space = load_space("bert-cpu")
    arch = space.sample(random.Random(seed))
    model = MaskedLM(arch, 300).eval()
    with torch.no_grad():  # distinct values, so the exporter cannot merge equal tensors
        for p in model.parameters():
            p.normal_()
    counted = sum(p.numel() * p.element_size() for p in model.encoder.parameters())
    assert bert_parameter_bytes(arch, 300) == counted
    assert bert_parameter_bytes(arch, 300, 2) * 2 == counted
    graph = onnx.load(str(export_bert_onnx(model, tmp_path)))
    stored = sum(int(np.prod(t.dims)) * 4 for t in graph.graph.initializer)
    assert stored == counted


def test_peak_memory_grows_with_the_model(tmp_path):
    from devices.memory import peak_memory
    from mos_search.models.onnx import export_bert_onnx

    space = load_space("bert-cpu")
    small = export_bert_onnx(MaskedLM(space.smallest(), 8000), tmp_path / "small")
    large = export_bert_onnx(MaskedLM(space.largest(), 8000), tmp_path / "large")
    small_mib = peak_memory(small)["peak_inference_mib"]
    large_mib = peak_memory(large)["peak_inference_mib"]
    weights_mib = bert_parameter_bytes(space.largest(), 8000) / 2**20
    assert small_mib > 0 and large_mib > small_mib
    assert large_mib > 0.8 * weights_mib  # the weights are resident while it runs


def test_peak_memory_of_a_missing_file_is_a_clear_error(tmp_path):
    from devices.base import DeviceError
    from devices.memory import peak_memory

    with pytest.raises(DeviceError, match="not found"):
        peak_memory(tmp_path / "none.onnx")


# ---------------------------------------------------------------------------- CLI end to end


def test_cli_bert_search_verify_report_export(bert_run, text_corpus, tmp_path):
    out = tmp_path / "search"
    args = [
        "search",
        "--task",
        "bert",
        "--objective",
        "perplexity-memory",
        "--ckpt",
        str(bert_run),
        "--generations",
        "2",
        "--population",
        "6",
        "--verify-limit",
        "10",
        "--verify-max",
        "2",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "verified: test perplexity" in result.output
    front = json.loads((out / "front.json").read_text())
    assert all(set(p["costs"]) == {"params-fp32"} and "perplexity" in p for p in front)
    settings = json.loads((out / "search.json").read_text())
    assert settings["task"] == "bert" and settings["devices"] == []
    verified = json.loads((out / "verified.json").read_text())["archs"]
    assert len(verified) == 2
    for row in verified:
        memory = row["memory"]
        assert memory["params_fp16_mib"] * 2 == pytest.approx(memory["params_fp32_mib"])
        assert memory["onnxruntime_peak_mib"] > 0 and memory["sequence_length"] == 128
    table = json.loads((out / "report" / "front.json").read_text())
    assert "test_perplexity" in table[0] and (out / "report" / "verified.svg").exists()

    model = tmp_path / "model"
    exported = CliRunner().invoke(
        main,
        ["export", "--ckpt", str(bert_run), "--from-search", str(out), "--out", str(model)],
    )
    assert exported.exit_code == 0, exported.output
    card = json.loads((model / "card.json").read_text())
    assert card["task"] == "bert" and card["parity"]["states_max_abs_diff"] < 1e-4
    assert card["params"] == count_bert_parameters(
        BertArch.from_dict(card["arch"]), card["vocab_size"]
    )
    assert set(card["files"]) == {"encoder.onnx", "spm.model", "arch.json"}


def test_cli_bert_refuses_translation_options(bert_run, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "search",
            "--task",
            "bert",
            "--ckpt",
            str(bert_run),
            "--max-latency-ms",
            "5",
            "--out",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 2 and "--max-memory-mib" in result.output
    wrong = CliRunner().invoke(
        main,
        [
            "search",
            "--task",
            "mt",
            "--objective",
            "perplexity-memory",
            "--ckpt",
            str(bert_run),
            "--out",
            str(tmp_path / "t"),
        ],
    )
    assert wrong.exit_code == 2 and "not an objective" in wrong.output


def test_cli_bert_training_on_a_parallel_corpus_is_one_clear_line(tiny_corpus, tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(tiny_corpus.root),
            "--space",
            TINY_BERT,
            "--out",
            str(tmp_path / "r"),
            "--max-steps",
            "1",
        ],
    )
    assert result.exit_code != 0
    assert "text corpus" in result.output and "Traceback" not in result.output


def test_cli_data_text_from_a_file(tmp_path):
    source = tmp_path / "t.txt"
    source.write_text("".join(line + "\n" for line in text_lines(200, 5)))
    result = CliRunner().invoke(
        main,
        ["data", "text", "--file", str(source), "--out", str(tmp_path / "c"), "--vocab-size", "40"],
    )
    assert result.exit_code == 0, result.output
    assert "train 180" in result.output


def test_bert_resume_gives_the_uninterrupted_weights(text_corpus, tmp_path):
    from mos_search.models.checkpoint import load_tensors
    from mos_search.training.train import train

    def config(out, steps):
        return tiny_train_config(
            text_corpus.root,
            out,
            space=TINY_BERT,
            mode="layer",
            max_tokens=256,
            max_steps=steps,
            warmup=2,
            lr=1e-3,
            save_every=3,
            log_every=10,
        )

    train(config(tmp_path / "straight", 6), progress=False)
    train(config(tmp_path / "split", 3), progress=False)
    train(config(tmp_path / "split", 6), resume=True, progress=False)
    a, b = load_tensors(tmp_path / "straight"), load_tensors(tmp_path / "split")
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0)


def test_supernet_config_for_the_wrong_task_is_refused():
    from mos_search.errors import ConfigError
    from mos_search.models.supernet import Supernet

    with pytest.raises(ConfigError, match="not translation"):
        Supernet(SupernetConfig(space=load_space("bert-cpu"), vocab_size=VOCAB))


def test_cli_score_reports_perplexity_for_bert(bert_run):
    result = CliRunner().invoke(
        main, ["score", "--ckpt", str(bert_run), "--preset-arch", "largest"]
    )
    assert result.exit_code == 0, result.output
    assert "perplexity" in result.output and "masked token" in result.output
    bleu = CliRunner().invoke(
        main, ["score", "--ckpt", str(bert_run), "--preset-arch", "largest", "--metric", "bleu"]
    )
    assert bleu.exit_code == 2 and "translation metric" in bleu.output
