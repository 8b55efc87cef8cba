"""Output paths every writing command refuses in one line, before its long work, changing nothing;
and `export`/`data` into an earlier result: refused, or with --overwrite replaced leaving nothing
stale (and, when the new build fails, the earlier one whole)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mos_search.cli import main

from conftest import (
    TINY_SPACE,
    assert_one_line_error,
    immutable,
    synthetic_pairs,
    tree_digests,
)

FAST_PROFILE = (
    'backend = "onnxruntime-cpu"\nwarmups = 0\nrepeats = 2\ndecoder_steps = 2\nretries = 0\n'
)


@pytest.fixture(scope="module")
def inputs(tiny_corpus, tiny_run, tmp_path_factory):
    """Valid inputs for every writing command (so only the output path can fail): the tiny
    corpus and run, raw text, an arch file, a fast device profile, a latency dataset measured
    on the tiny run's sub-networks and a predictor trained on it."""
    from mos_search.models.build import load_model

    root = tmp_path_factory.mktemp("inputs")
    for split, n, seed in (("train", 120, 0), ("valid", 12, 1), ("test", 12, 2)):
        pairs = synthetic_pairs(n, seed)
        (root / f"{split}.es").write_text("".join(s + "\n" for s, _ in pairs))
        (root / f"{split}.en").write_text("".join(t + "\n" for _, t in pairs))
    (root / "text.txt").write_text("".join(t + "\n" for _, t in synthetic_pairs(120, 3)))
    (root / "arch.json").write_text(load_model(tiny_run).space.largest().to_json())
    (root / "fast.toml").write_text(FAST_PROFILE)
    runner = CliRunner()
    dataset, predictor = root / "lat.jsonl", root / "predictor.json"
    profile = ["profile", "--device", str(root / "fast.toml"), "--ckpt", str(tiny_run)]
    result = runner.invoke(main, [*profile, "-n", "12", "--no-reference", "--out", str(dataset)])
    assert result.exit_code == 0, result.output
    train = ["predictor", "train", "--dataset", str(dataset), "--space", TINY_SPACE]
    result = runner.invoke(main, [*train, "--hidden", "8", "--members", "2"])
    assert result.exit_code == 0 and predictor.is_file(), result.output
    return {"root": root, "corpus": tiny_corpus.root, "run": tiny_run}


def argv(command: str, out: Path, inputs: dict) -> list[str]:
    """A cheap, valid command line of `command` writing to `out`."""
    root, corpus, run = inputs["root"], str(inputs["corpus"]), str(inputs["run"])
    fast, arch = str(root / "fast.toml"), str(root / "arch.json")
    predictor, dataset = str(root / "predictor.json"), str(root / "lat.jsonl")
    splits = [f"--{s}={root / s}" for s in ("train", "valid", "test")]
    lines = {
        "train": ["train", "--data", corpus, "--space", TINY_SPACE, "--max-steps", "1"],
        "search": ["search", "--ckpt", run, "--predictor", predictor, "--generations", "1",
                   "--population", "4", "--limit", "4", "--no-verify"],
        "profile": ["profile", "--device", fast, "--space", TINY_SPACE, "-n", "2",
                    "--vocab-size", "40", "--no-reference"],
        "predictor train": ["predictor", "train", "--dataset", dataset, "--space", TINY_SPACE,
                            "--hidden", "8", "--members", "2"],
        "predictor transfer": ["predictor", "transfer", "--from", predictor, "--dataset", dataset],
        "export": ["export", "--ckpt", run, "--arch", arch, "--device", fast, "--test-limit", "2",
                   "--beam", "1"],
        "finetune": ["finetune", "--ckpt", run, "--arch", arch, "--minutes", "0.01",
                     "--test-limit", "2", "--beam", "1"],
        "data bible": ["data", "bible", "--vocab-size", "100"],
        "data parallel": ["data", "parallel", "--langs", "es", "en", "--vocab-size", "60", *splits],
        "data text": ["data", "text", "--file", str(root / "text.txt"), "--vocab-size", "48"],
    }  # fmt: skip
    return [*lines[command], "--out", str(out)]


FOLDER_OUTPUTS = [
    "train",
    "search",
    "export",
    "finetune",
    "data bible",
    "data parallel",
    "data text",
]
FILE_OUTPUTS = ["profile", "predictor train", "predictor transfer"]


def snapshot(*roots: Path) -> tuple[dict[str, str], list[str]]:
    """Every file's digest and every path (folders too) under `roots`."""
    paths = sorted(str(p) for root in roots for p in root.rglob("*"))
    return tree_digests(*roots), paths


IN_THE_WAY = [(c, "in place of the output folder") for c in FOLDER_OUTPUTS] + [
    (c, "above the output") for c in FOLDER_OUTPUTS + FILE_OUTPUTS
]


@pytest.mark.parametrize("command, where", IN_THE_WAY)
def test_a_file_in_the_way_is_one_line_and_changes_nothing(command, where, inputs, tmp_path):
    blocker = tmp_path / "results"
    blocker.write_text("an earlier result\n")
    out = blocker if where == "in place of the output folder" else blocker / "sub" / "out"
    before = snapshot(tmp_path, inputs["root"], inputs["corpus"], inputs["run"])
    result = CliRunner().invoke(main, argv(command, out, inputs))
    assert_one_line_error(result, f"cannot write to {blocker}", "it is a file, not a folder")
    assert snapshot(tmp_path, inputs["root"], inputs["corpus"], inputs["run"]) == before


@pytest.mark.parametrize("command", FILE_OUTPUTS)
def test_a_folder_where_a_file_output_goes_is_one_line(command, inputs, tmp_path):
    out = tmp_path / "lat.jsonl"
    out.mkdir()
    (out / "keep.txt").write_text("mine\n")
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, argv(command, out, inputs))
    assert_one_line_error(result, f"cannot write to {out}", "it is a folder, not a file")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [*FOLDER_OUTPUTS, *FILE_OUTPUTS, "data tokenize"])
def test_an_immutable_folder_is_one_line_and_changes_nothing(command, inputs, tmp_path):
    locked = tmp_path / "locked"
    if command == "data tokenize":  # rebuilds DIR/tokens of an existing corpus
        shutil.copytree(inputs["corpus"], tmp_path / "corpus")
        locked = tmp_path / "corpus" / "tokens"
        args = ["data", "tokenize", "--data", str(tmp_path / "corpus")]
    else:
        locked.mkdir()
        (locked / "keep.txt").write_text("mine\n")
        name = "out.json" if command in FILE_OUTPUTS else "out"
        args = argv(command, locked / name, inputs)
    guard = immutable(locked)
    if guard is None:
        pytest.skip("chattr +i needs root and a filesystem with the immutable attribute")
    with guard:
        before = snapshot(tmp_path)
        result = CliRunner().invoke(main, args)
        assert_one_line_error(result, f"cannot write to {locked}", "Operation not permitted")
        assert snapshot(tmp_path) == before


def earlier_result(folder: Path) -> None:
    """A folder as an earlier export or corpus left it, with files the new one does not write."""
    (folder / "int8").mkdir(parents=True)
    (folder / "int8" / "encoder.onnx").write_text("old int8 graph")
    (folder / "card.json").write_text('{"old": true}')
    (folder / "tokens").mkdir()
    (folder / "tokens" / "old.bin").write_text("old tokens")
    (folder / "notes.txt").write_text("written by hand\n")


OVERWRITTEN = {
    "export": ("model", "card.json"),
    "data bible": ("corpus", "corpus.json"),
    "data parallel": ("corpus", "corpus.json"),
    "data text": ("corpus", "corpus.json"),
}


@pytest.mark.parametrize("command", list(OVERWRITTEN))
def test_an_earlier_result_is_refused_without_overwrite(command, inputs, tmp_path):
    out = tmp_path / "earlier"
    earlier_result(out)
    before = snapshot(tmp_path)
    result = CliRunner().invoke(main, argv(command, out, inputs))
    replace = f"add --overwrite to replace the {OVERWRITTEN[command][0]} there"
    assert_one_line_error(result, f"{out} already holds files", replace)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["export", "data parallel", "data text"])
def test_overwrite_replaces_the_earlier_result_leaving_nothing_stale(command, inputs, tmp_path):
    out = tmp_path / "earlier"
    earlier_result(out)
    args = [*argv(command, out, inputs), "--overwrite"]
    before = snapshot(tmp_path)
    failing = [*args, "--data", str(tmp_path / "missing")] if command == "export" else None
    if failing:  # the new build fails: the earlier model stays whole, nothing is left beside it
        result = CliRunner().invoke(main, failing)
        assert result.exit_code == 2 and "missing" in result.output, result.output
        assert snapshot(tmp_path) == before
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["earlier"]  # no .partial, no .old
    names = {str(p.relative_to(out)) for p in out.rglob("*")}
    stale = {"int8", "int8/encoder.onnx", "notes.txt", "tokens/old.bin"}
    assert not names & (stale if command == "export" else {*stale, "card.json"})
    manifest = json.loads((out / OVERWRITTEN[command][1]).read_text())
    assert "old" not in manifest
