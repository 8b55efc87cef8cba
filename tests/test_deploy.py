"""Deployment: export parity and card, torch-free translate, fine-tuning, bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from mos_search.cli import main
from mos_search.files import sha256_file
from mos_search.models.build import load_model

BLOCK_TORCH = """
import sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, BlockTorch())
from mos_search.cli import main
try:
    main(sys.argv[1:])
finally:
    assert "torch" not in sys.modules
"""


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    """The tiny supernet's largest sub-network, exported with an int8 copy."""
    out = tmp_path_factory.mktemp("model")
    arch = load_model(tiny_run).space.largest()
    arch_file = out.parent / "arch.json"
    arch_file.write_text(arch.to_json())
    result = CliRunner().invoke(
        main,
        [
            "export",
            "--ckpt",
            str(tiny_run),
            "--arch",
            str(arch_file),
            "--out",
            str(out),
            "--test-limit",
            "12",
            "--beam",
            "3",
            "--quantize",
            "int8",
        ],
    )
    assert result.exit_code == 0, result.output
    return out


def test_card_holds_checks_scores_and_checksums(exported):
    card = json.loads((exported / "card.json").read_text())
    assert card["opset"] == 17 and card["params"] > 0
    assert card["parity"]["encoder_max_abs_diff"] < 1e-4
    assert card["parity"]["decoder_logits_max_abs_diff"] < 1e-3
    assert card["parity"]["greedy_tokens_identical"]
    bleu = card["bleu"]
    assert abs(bleu["onnxruntime"] - bleu["pytorch"]) <= 0.1
    assert "tok:13a" in bleu["signature"] and bleu["sentences"] == 12
    assert card["latency"]["onnxruntime-cpu"]["latency_ms"] > 0
    for name, digest in card["files"].items():
        assert sha256_file(exported / name) == digest
    int8 = card["int8"]
    assert int8["speedup"]["onnxruntime-cpu"] > 0
    assert "bleu_change" in int8 and (exported / "int8" / "encoder.onnx").exists()


def test_translate_runs_without_torch(exported, tiny_corpus):
    sources = [s for s, _ in tiny_corpus.pairs("test")[:4]]
    run = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "translate", "--model", str(exported), "--beam", "3"],
        input="\n".join(sources) + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 4 and all(lines)
    from mos_search.deploy.translate import OnnxTranslator

    assert lines == OnnxTranslator(exported).translate(sources, beam=3)


def test_onnx_translation_equals_pytorch(exported, tiny_run, tiny_corpus):
    from mos_search.data.batches import encode_split
    from mos_search.data.tokenizer import Tokenizer
    from mos_search.deploy.translate import OnnxTranslator
    from mos_search.oracle.decode import translate_ids

    loaded = load_model(tiny_run)
    data = encode_split(tiny_corpus, "valid", Tokenizer(tiny_corpus.tokenizer_path)).subset(10)
    model = loaded.sub_network(loaded.space.largest())
    translator = OnnxTranslator(exported)
    for beam in (1, 4):
        expected = translate_ids(model, data, beam)
        got = translator.translate_ids([list(s[:-1]) for s in data.sources], beam)
        assert got == expected


def test_bad_inputs_are_one_line_errors(exported, tiny_run, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(main, ["translate", "--model", str(tmp_path)], input="hola\n")
    assert missing.exit_code == 2 and "missing encoder.onnx" in missing.output
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for name in ("encoder.onnx", "decoder_step.onnx", "spm.model"):
        (corrupt / name).write_bytes((exported / name).read_bytes())
    (corrupt / "decoder_step.onnx").write_bytes(b"not an onnx file")
    broken = runner.invoke(main, ["translate", "--model", str(corrupt)], input="hola\n")
    assert broken.exit_code == 2 and "cannot be loaded" in broken.output
    assert "Traceback" not in broken.output
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"encoder_embed_dim": 999}))
    bad_arch = runner.invoke(
        main,
        ["export", "--ckpt", str(tiny_run), "--arch", str(wrong), "--out", str(tmp_path / "m")],
    )
    assert bad_arch.exit_code == 2 and "error:" in bad_arch.output
    both = runner.invoke(main, ["export", "--ckpt", str(tiny_run), "--out", str(tmp_path / "m")])
    assert both.exit_code == 2 and "exactly one of --arch" in both.output


def test_finetune_starts_from_the_inherited_weights(tiny_run, tmp_path):
    import torch

    from mos_search.deploy.finetune import finetune

    loaded = load_model(tiny_run)
    arch = loaded.space.smallest()
    report = finetune(
        str(tiny_run),
        arch.to_dict(),
        tmp_path / "ft",
        minutes=0.05,
        test_limit=8,
        beam=1,
        max_tokens=512,
        echo=lambda _: None,
    )
    assert report["steps"] >= 1 and report["minutes"] > 0
    assert (
        json.loads((tmp_path / "ft" / "finetune.json").read_text())["bleu_before"]
        == (report["bleu_before"])
    )
    # training moved the weights, but a little, from the supernet's weights for this arch
    inherited = loaded.sub_network(arch).state_dict()
    tuned = load_model(tmp_path / "ft").model.state_dict()
    torch.manual_seed(5)
    fresh = type(loaded.sub_network(arch))(arch, loaded.vocab_size, loaded.space.qkv_dim)
    fresh_state = fresh.state_dict()

    def distance(a, b):
        return sum(float((a[k] - b[k]).abs().sum()) for k in a)

    moved = distance(inherited, tuned)
    assert 0 < moved < 0.2 * distance(inherited, fresh_state)


def test_demo_runs_every_stage_and_resumes(tiny_corpus, tmp_path):
    import shutil

    from mos_search.demo import DemoConfig, run_demo

    from conftest import TINY_SPACE

    root = tmp_path / "demo"
    shutil.copytree(tiny_corpus.root, root / "data")  # the corpus stage finds its output there
    config = DemoConfig(
        out=str(root),
        preset=TINY_SPACE,
        minutes=0.1,
        threads=1,
        profile_archs=12,
        generations=2,
        population=6,
        search_limit=10,
        test_limit=8,
        verify_max=2,
        translate_sentences=2,
        budget_quantile=0.9,  # 12 profiled archs: a predictor of wide intervals
        latency_confidence=0.5,
    )
    lines: list[str] = []
    summary = run_demo(config, echo=lines.append)
    assert summary["model"]["latency_ms"] > 0 and summary["model"]["test_sentences"] == 8
    assert (
        summary["model"]["meets_budget"]
        and summary["model"]["low_ms"] <= summary["model"]["high_ms"]
    )
    for path in ("search/report/index.html", "model/card.json", "translations.txt"):
        assert (root / path).exists(), path
    assert "[corpus] already done, skipped" in lines
    again: list[str] = []
    run_demo(config, echo=again.append)
    skipped = [line for line in again if line.endswith("already done, skipped")]
    assert len(skipped) == 6  # every stage but the translations


def test_card_latency_has_passes_interval_reference_and_a_paired_int8_speedup(exported):
    card = json.loads((exported / "card.json").read_text())
    entry = card["latency"]["onnxruntime-cpu"]
    assert entry["profile"] == "onnxruntime-cpu" and entry["passes"] == 3
    assert len(entry["passes_ms"]) == 3 and entry["interval_of"] == "pass medians"
    assert (entry["low_ms"], entry["high_ms"]) == (min(entry["passes_ms"]), max(entry["passes_ms"]))
    assert entry["low_ms"] <= entry["latency_ms"] <= entry["high_ms"]
    assert entry["interval_coverage"] == 0.75 and entry["reference_ms"] > 0
    assert isinstance(entry["flagged"], bool) and entry["spread"] >= 0
    int8 = card["int8"]
    low, high = int8["speedup_interval"]["onnxruntime-cpu"]
    assert low <= int8["speedup"]["onnxruntime-cpu"] <= high
    for side in (int8["latency"], int8["fp32_latency_paired"]):
        one = side["onnxruntime-cpu"]
        assert one["passes"] == 1 and one["interval_of"] == "repeats" and one["reference_ms"] > 0
        assert one["low_ms"] <= one["latency_ms"] <= one["high_ms"]
