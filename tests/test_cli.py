"""Command line: help, version and one-line errors through click's test runner."""

from __future__ import annotations

from click.testing import CliRunner

from mos_search import __version__
from mos_search.cli import main


def test_help_lists_commands():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "space" in result.output and "Example" in result.output


def test_version():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_space_command_shows_sizes():
    result = CliRunner().invoke(main, ["space", "cpu-small"])
    assert result.exit_code == 0
    assert "largest" in result.output and "7.58 M parameters" in result.output


def test_unknown_space_is_one_line_error():
    result = CliRunner().invoke(main, ["space", "nope"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: unknown search space 'nope'; presets: bert-bottleneck, bert-cpu, cpu-small, "
        "cpu-tiny, hat-iwslt14, hat-wmt14 "
        "(or give a .toml path)"
    ]


def test_data_train_score_end_to_end(tmp_path):
    """data parallel -> train -> resume -> score, through the CLI on a tiny config."""
    from conftest import TINY_SPACE, synthetic_pairs

    raw = tmp_path / "raw"
    raw.mkdir()
    for split, n, seed in (("train", 200, 0), ("valid", 20, 1)):
        pairs = synthetic_pairs(n, seed)
        (raw / f"{split}.es").write_text("".join(s + "\n" for s, _ in pairs))
        (raw / f"{split}.en").write_text("".join(t + "\n" for _, t in pairs))
    (raw / "test.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in synthetic_pairs(20, 2)))
    runner = CliRunner()
    corpus = tmp_path / "corpus"
    result = runner.invoke(
        main,
        [
            "data",
            "parallel",
            "--langs",
            "es",
            "en",
            "--train",
            str(raw / "train"),
            "--valid",
            str(raw / "valid"),
            "--test",
            str(raw / "test.tsv"),
            "--out",
            str(corpus),
            "--vocab-size",
            "60",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "train 200, valid 20, test 20 pairs" in result.output

    run = tmp_path / "run"
    common = [
        "train",
        "--data",
        str(corpus),
        "--out",
        str(run),
        "--space",
        TINY_SPACE,
        "--mode",
        "layer",
        "--max-tokens",
        "256",
        "--valid-every",
        "0",
        "--warmup",
        "2",
    ]
    result = runner.invoke(main, [*common, "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    assert "done at step 2" in result.output
    result = runner.invoke(main, [*common, "--max-steps", "3"])
    assert result.exit_code == 2 and "pass --resume" in result.output
    resume = ["train", "--out", str(run), "--resume", "--max-steps", "3"]  # data etc. as saved
    result = runner.invoke(main, resume)
    assert result.exit_code == 0 and "done at step 3" in result.output, result.output
    result = runner.invoke(main, [*resume, "--mode", "neuron"])
    assert result.exit_code == 2 and "mode cannot change" in result.output

    arch_file = tmp_path / "arch.json"
    from mos_search.space import load_space

    arch_file.write_text(load_space(TINY_SPACE).smallest().to_json())
    result = runner.invoke(
        main,
        [
            "score",
            "--ckpt",
            str(run),
            "--preset-arch",
            "largest",
            "--arch",
            str(arch_file),
            "--split",
            "test",
            "--limit",
            "5",
            "--beam",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["arch", "params", "loss", "bleu"]
    assert lines[1].startswith("largest") and lines[2].startswith("arch0")
    assert "sacreBLEU signature: nrefs:1|case:mixed" in result.output


def test_bad_inputs_are_one_line_errors(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["score", "--ckpt", str(tmp_path), "--preset-arch", "largest"])
    assert result.exit_code == 2
    assert (
        result.output.startswith("error: no checkpoint at") and len(result.output.splitlines()) == 1
    )
    result = runner.invoke(main, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "is not a corpus folder" in result.output
    result = runner.invoke(main, ["score", "--ckpt", str(tmp_path), "--arch", str(tmp_path / "x")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_python_m_works_from_a_folder_that_shadows_the_packages(tmp_path):
    """`python -m mos_search.cli` (torchrun's form) from a folder holding `devices/` and
    `latency/` subfolders (a run folder, say) still imports the installed packages."""
    import subprocess
    import sys

    for name in ("devices", "latency"):
        (tmp_path / name).mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "mos_search.cli", "devices"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "onnxruntime-cpu" in result.stdout and "available" in result.stdout


def test_shipped_predictor_is_found_from_any_folder(tmp_path, monkeypatch):
    from latency.predictor import LatencyPredictor
    from mos_search.costs.predictors import predictor_path, shipped_path

    monkeypatch.chdir(tmp_path)
    path = predictor_path("onnxruntime-cpu", None)
    assert path == shipped_path("onnxruntime-cpu") and path.is_file()
    assert LatencyPredictor.load(path).meta["space"] == "cpu-small"
    assert shipped_path("onnxruntime-cpu", "latency.jsonl").is_file()
    assert shipped_path("no-such-device") is None
    assert predictor_path("no-such-device", "given.json").name == "given.json"
