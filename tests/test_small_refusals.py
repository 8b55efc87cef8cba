"""Three small refusals: an option `profile --ckpt` would ignore, a predictor of a custom space
file refitted or transferred, and an unknown key in a run's own saved files. Each is one
`error:` line naming the option or the file; nothing is written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mos_search.cli import main

from conftest import TINY_SPACE, assert_one_line_error, tree_digests

ROOT = Path(__file__).resolve().parents[1]


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


# ------------------------------------------------------------ profile --ckpt with --space
def test_profile_of_a_checkpoint_refuses_another_space(tiny_run, tmp_path):
    before = tree_digests(tmp_path)
    out = tmp_path / "lat.jsonl"
    result = invoke("profile", "--ckpt", tiny_run, "--space", "cpu-small", "-n", "1", "--out", out)
    assert_one_line_error(result, "--space cpu-small is not the space of", "drop --space")
    result = invoke("profile", "--ckpt", tiny_run, "--vocab-size", "99", "-n", "1", "--out", out)
    assert_one_line_error(result, "--vocab-size 99 is ignored with --ckpt", "drop --vocab-size")
    assert tree_digests(tmp_path) == before


def test_profile_of_a_checkpoint_takes_its_own_space_given_again(tiny_run, tmp_path, fast_profile):
    out = tmp_path / "lat.jsonl"
    args = ["profile", "--device", fast_profile, "--ckpt", tiny_run, "-n", "1", "--out", out]
    result = invoke(*args, "--space", TINY_SPACE)
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 1


# ------------------------------------------------------------ predictors of a custom space
@pytest.fixture
def custom_space_predictor(tmp_path):
    """A predictor trained for a space file whose name is no preset: cpu-small's choices under
    another name (so the shipped cpu-small records are its records)."""
    from latency.dataset import read_records
    from mos_search.costs.predictors import shipped_path, train_latency_predictor

    text = (ROOT / "mos_search" / "presets" / "cpu-small.toml").read_text()
    space = tmp_path / "my-space.toml"
    space.write_text(text.replace('name = "cpu-small"', 'name = "my-space"'))
    assert 'name = "my-space"' in space.read_text()
    records = read_records(shipped_path("onnxruntime-cpu", "latency.jsonl"))
    dataset = tmp_path / "latency.jsonl"
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records[:60]))
    predictor = tmp_path / "predictor.json"
    train_latency_predictor(dataset, predictor, str(space), curve_sizes=(), members=2)
    return space, dataset, predictor


def test_a_custom_space_predictor_is_updated_and_transferred(custom_space_predictor, tmp_path):
    _, dataset, predictor = custom_space_predictor
    assert json.loads(predictor.read_text())["meta"]["space"] == "my-space"
    updated = invoke("predictor", "update", "--predictor", predictor, "--out", tmp_path / "u.json")
    assert updated.exit_code == 0, updated.output
    args = ["predictor", "transfer", "--from", predictor, "--dataset", dataset]
    transferred = invoke(*args, "--out", tmp_path / "t.json")
    assert transferred.exit_code == 0, transferred.output
    meta = json.loads((tmp_path / "t.json").read_text())["meta"]
    assert meta["space_definition"]["name"] == "my-space"


def test_an_old_custom_space_predictor_asks_for_its_space(custom_space_predictor, tmp_path):
    """Saved before predictors kept their space: named by a non-preset name only."""
    space, dataset, predictor = custom_space_predictor
    header = json.loads(predictor.read_text())
    del header["meta"]["space_definition"]
    predictor.write_text(json.dumps(header))
    before = tree_digests(tmp_path)
    out = tmp_path / "u.json"
    result = invoke("predictor", "update", "--predictor", predictor, "--out", out)
    assert_one_line_error(result, str(predictor), "'my-space', which is not a preset", "--space")
    args = ["predictor", "transfer", "--from", predictor, "--dataset", dataset, "--out", out]
    assert_one_line_error(invoke(*args), str(predictor), "give --space FILE.toml")
    assert tree_digests(tmp_path) == before
    result = invoke("predictor", "update", "--predictor", predictor, "--out", out, "--space", space)
    assert result.exit_code == 0, result.output
    other = invoke(*args, "--space", "cpu-tiny")  # the choices it recorded decide
    assert_one_line_error(other, f"{predictor} was trained for space 'my-space', not 'cpu-tiny'")


# ------------------------------------------------------------ unknown keys in saved files
def test_an_unknown_key_in_state_json_names_the_file(tiny_run, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    from mos_search.models.checkpoint import resolve_checkpoint

    state = resolve_checkpoint(run) / "state.json"
    data = json.loads(state.read_text())
    data["train_config"]["dropuot"] = 0.3
    state.write_text(json.dumps(data))
    before = tree_digests(run)
    result = invoke("train", "--out", run, "--data", tiny_corpus.root, "--resume")
    assert_one_line_error(
        result, f"{state} (train_config): ", "unknown key(s): dropuot", "did you mean dropout"
    )
    data["train_config"].pop("dropuot")
    data["model"]["supernet"]["expertz"] = 2
    state.write_text(json.dumps(data))
    args = ["score", "--ckpt", run, "--data", tiny_corpus.root, "--preset-arch", "smallest"]
    assert_one_line_error(invoke(*args), f"{state} (model): ", "unknown key(s): expertz")
    assert set(tree_digests(run)) == set(before)


def test_an_unknown_key_in_search_json_names_the_file(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    saved = json.loads(
        (ROOT / "bench" / "results" / "search-cpu-small" / "search.json").read_text()
    )
    saved["populaton"] = 8
    (run / "search.json").write_text(json.dumps(saved))
    before = tree_digests(run)
    monkeypatch.chdir(tmp_path)
    args = ["search", "--ckpt", "runs/x", "--max-latency-ms", "80", "--out", run, "--resume"]
    result = invoke(*args)
    assert_one_line_error(result, f"{run / 'search.json'}: ", "unknown key(s): populaton")
    assert tree_digests(run) == before
