"""Bad configuration through the real CLI: unknown or misspelt keys in space files and device
profiles, options a backend does not read, weights replaced in place, spaces that share a name
but not their choices, datasets of another space, and numeric options out of range. Each is one
`error:` line naming the file (and line) and what was expected, exit code 2, and leaves every
earlier file as it was."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from mos_search.cli import main

from conftest import TINY_SPACE, assert_one_line_error, tree_digests

SHIPPED = Path(__file__).resolve().parents[1] / "mos_search" / "shipped" / "onnxruntime-cpu"
TINY = Path(TINY_SPACE).read_text(encoding="utf-8")


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_unchanged(before: dict[str, str], *roots: Path) -> None:
    """Every file of `before` (a `tree_digests`) is still there with the same bytes, and no
    file was added."""
    assert tree_digests(*roots) == before


# ---------------------------------------------------------------- space files
SPACE_FILES = {
    "unknown-top-level-key": (
        TINY.replace("[choices]", "dropout = 0.3\n\n[choices]").encode(),
        ["unknown key(s): dropout", "known: name, task, description, choices, qkv_dim"],
    ),
    "misspelt-top-level-key": (
        TINY.replace("description =", "descripton =").encode(),
        ["unknown key(s): descripton", "(did you mean description?)"],
    ),
    "misspelt-choice-key": (
        TINY.replace("encoder_heads =", "encoder_head =").encode(),
        ["choices: unknown field(s): encoder_head", "(did you mean encoder_heads?)"],
    ),
    "latin1": (
        TINY.replace("fast tests", "caf\xe9 tests").encode("latin-1"),
        [":3: not UTF-8 text (byte 0xe9 at column", "save the file as UTF-8"],
    ),
}


@pytest.mark.parametrize("case", sorted(SPACE_FILES))
def test_a_bad_space_file_is_one_line(case, tiny_corpus, tmp_path):
    content, fragments = SPACE_FILES[case]
    space = tmp_path / "space.toml"
    space.write_bytes(content)
    before = tree_digests(tmp_path, tiny_corpus.root)
    args = ["train", "--data", tiny_corpus.root, "--space", space, "--out", tmp_path / "run"]
    line = assert_one_line_error(invoke(*args, "--max-steps", "1"), str(space), *fragments)
    assert "missing" not in line  # a misspelling is named as such
    assert_unchanged(before, tmp_path, tiny_corpus.root)


# ---------------------------------------------------------------- device profiles
PROFILES = {
    "float16-on-a-cpu-backend": (
        b'backend = "torch-cpu"\n\n[options]\ndtype = "float16"\n',
        ["[options] dtype is not read by backend 'torch-cpu'", "it reads no options"],
    ),
    "unknown-option": (
        b'backend = "onnxruntime-cpu"\n\n[options]\nprovider = ["CPUExecutionProvider"]\n',
        [
            "[options] provider",
            "'onnxruntime-cpu' (it reads: providers)",
            "(did you mean providers",
        ],
    ),
    "option-value": (
        b'backend = "cuda"\n\n[options]\ndtype = "float64"\n',
        ["[options] dtype of backend 'cuda'", "expected one of float32, float16, bfloat16"],
    ),
    "misspelt-setting": (
        b'backend = "onnxruntime-cpu"\nthreds = 2\n',
        ["unknown setting(s): threds", "known: name, backend, threads", "did you mean threads?"],
    ),
    "latin1": (
        '# caf\xe9\nbackend = "onnxruntime-cpu"\n'.encode("latin-1"),
        [":1: not UTF-8 text (byte 0xe9 at column 6)", "save the file as UTF-8"],
    ),
}


@pytest.mark.parametrize("case", sorted(PROFILES))
def test_a_bad_device_profile_is_one_line(case, tmp_path):
    content, fragments = PROFILES[case]
    profile = tmp_path / "device.toml"
    profile.write_bytes(content)
    before = tree_digests(tmp_path)
    dataset = tmp_path / "latency.jsonl"
    args = ["profile", "--device", profile, "--space", TINY_SPACE, "-n", "1", "--out", dataset]
    assert_one_line_error(invoke(*args), str(profile), *fragments)
    assert_unchanged(before, tmp_path)


# ---------------------------------------------------------------- integrity and identity
def test_weights_replaced_in_place_are_refused_and_never_scored_from_the_cache(
    tiny_run, tiny_corpus, tmp_path
):
    from safetensors.torch import load_file, save_file

    from mos_search.files import sha256_file
    from mos_search.models.checkpoint import resolve_checkpoint

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    args = ["score", "--ckpt", run, "--data", tiny_corpus.root, "--preset-arch", "smallest"]
    args += ["--metric", "loss", "--limit", "4"]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert (run / "score_cache.jsonl").is_file()
    weights = resolve_checkpoint(run) / "model.safetensors"
    save_file({k: v + 0.5 for k, v in load_file(weights).items()}, weights)  # same path
    before = tree_digests(tmp_path, tiny_corpus.root)
    assert_one_line_error(
        invoke(*args),
        str(weights),
        "weights changed since they were saved (sha256 ",
        " != recorded ",
    )
    assert_unchanged(before, tmp_path, tiny_corpus.root)  # the cache was not read nor appended
    # re-saved on purpose (the recorded digest follows the file): scored anew, not from the cache
    state_path = weights.with_name("state.json")
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "model_sha256": sha256_file(weights)}))
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert again.output != first.output  # another loss: the old cached score was not returned


def _custom_cpu_small(tmp_path: Path) -> Path:
    """A space file named like the cpu-small preset, with other choices."""
    from importlib import resources

    text = resources.files("mos_search.presets").joinpath("cpu-small.toml").read_text("utf-8")
    path = tmp_path / "cpu-small.toml"
    path.write_text(text.replace("encoder_embed_dim = [128, 192, 256]", "encoder_embed_dim = [64]"))
    return path


def test_a_custom_space_reusing_a_shipped_name_is_another_space(tmp_path):
    space = _custom_cpu_small(tmp_path)
    before = tree_digests(tmp_path)
    predictor = SHIPPED / "predictor.json"
    args = ["predictor", "eval", "--predictor", predictor, "--dataset", SHIPPED / "latency.jsonl"]
    assert_one_line_error(
        invoke(*args, "--space", space),
        str(predictor),
        "trained for space 'cpu-small' (choices ",
        "not 'cpu-small' (choices ",
        "same name, other choices",
    )
    assert_unchanged(before, tmp_path)


def test_a_search_refuses_a_predictor_of_another_space_of_the_same_name(tiny_run, tmp_path):
    """The checkpoint's space is `tiny`; the predictor says `tiny` too, with other choices."""
    header = json.loads((SHIPPED / "predictor.json").read_text(encoding="utf-8"))
    header["meta"] = {**header["meta"], "space": "tiny", "space_digest": "0123456789ab"}
    predictor = tmp_path / "predictor.json"
    predictor.write_text(json.dumps(header))
    shutil.copy(SHIPPED / "predictor.npz", tmp_path / "predictor.npz")
    before = tree_digests(tmp_path, tiny_run)
    args = ["search", "--ckpt", tiny_run, "--predictor", predictor, "--generations", "1"]
    args += ["--population", "4", "--limit", "4", "--no-verify", "--out", tmp_path / "search"]
    assert_one_line_error(
        invoke(*args), str(predictor), "choices 0123456789ab", "not 'tiny' (choices "
    )
    assert {k: v for k, v in tree_digests(tmp_path, tiny_run).items() if k in before} == before


def _cpu_tiny_dataset(path: Path, n: int = 24) -> Path:
    """Records as `mos-search profile --space cpu-tiny` writes them (times made up)."""
    from mos_search.space import load_space

    space, rng = load_space("cpu-tiny"), random.Random(0)
    archs = [space.sample(rng) for _ in range(n)]
    lines = [
        json.dumps({"arch": a.to_dict(), "features": space.features(a), "latency_ms": 10.0 + i})
        for i, a in enumerate(archs)
    ]
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("command", ["eval", "train", "profile"])
def test_a_dataset_of_another_space_is_refused_not_scored(command, tmp_path):
    dataset = _cpu_tiny_dataset(tmp_path / "latency.jsonl")
    before = tree_digests(tmp_path)
    if command == "eval":
        args = ["predictor", "eval", "--predictor", SHIPPED / "predictor.json"]
    elif command == "train":
        args = ["predictor", "train", "--members", "2", "--out", tmp_path / "p.json"]
    if command == "profile":  # appending cpu-small records would mix two feature sets
        args = ["profile", "--device", "onnxruntime-cpu", "-n", "1", "--out", dataset]
    else:
        args = [*args, "--dataset", dataset]
    result = invoke(*args, "--space", "cpu-small")
    assert_one_line_error(
        result,
        str(dataset),
        "was profiled on preset space 'cpu-tiny' (choices ",
        "not 'cpu-small' (choices ",
        "give the --space it was profiled on",
    )
    assert "MAPE" not in result.output
    assert_unchanged(before, tmp_path)


# ---------------------------------------------------------------- option values
BEAM_COMMANDS = {  # every command with --beam, with the other options it needs
    "search": "search --ckpt {run} --out {tmp}/search",
    "score": "score --ckpt {run} --preset-arch smallest",
    "export": "export --ckpt {run} --arch {tmp}/arch.json --out {tmp}/model",
    "finetune": "finetune --ckpt {run} --arch {tmp}/arch.json --out {tmp}/ft",
    "translate": "translate --model {tmp}/model",
    "search --verify-beam": "search --ckpt {run} --out {tmp}/search --verify-beam",
}


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize("command", sorted(BEAM_COMMANDS))
def test_a_beam_below_one_is_refused_everywhere(command, value, tiny_run, tmp_path):
    words = BEAM_COMMANDS[command].format(run=tiny_run, tmp=tmp_path).split()
    flag = [] if words[-1] == "--verify-beam" else ["--beam"]
    before = tree_digests(tmp_path, tiny_run)
    result = invoke(*words, *flag, value)
    allowed = "1<=x<=64" if command == "score" else "x>=1"  # score's beam is also capped
    name = (flag or words)[-1]
    assert_one_line_error(result, f"'{name}': {value} is not in the range {allowed}")
    assert_unchanged(before, tmp_path, tiny_run)


@pytest.mark.parametrize(
    "args, fragments",
    [
        (
            ["--max-latency-ms", "nan"],
            ["--max-latency-ms nan: must be positive (a finite number of ms)"],
        ),
        (
            ["--max-latency-ms", "-5"],
            ["--max-latency-ms -5: must be positive (a finite number of ms)"],
        ),
        (
            ["--max-latency-ms", "inf"],
            ["--max-latency-ms inf: must be positive (a finite number of ms)"],
        ),
        (["--max-memory-mib", "nan", "--task", "bert"], ["'nan' is not a finite number"]),
        (["--population", "1"], ["'--population': 1 is not in the range x>=2"]),
        (["--generations", "0"], ["'--generations': 0 is not in the range x>=1"]),
        (["--limit", "0"], ["'--limit': 0 is not in the range x>=1"]),
        (["--verify-passes", "0"], ["'--verify-passes': 0 is not in the range x>=1"]),
    ],
    ids=[
        "latency-nan",
        "latency-negative",
        "latency-inf",
        "memory-nan",
        "population",
        "gens",
        "limit",
        "passes",
    ],
)
def test_a_search_budget_or_count_out_of_range_is_one_line(args, fragments, tiny_run, tmp_path):
    before = tree_digests(tmp_path, tiny_run)
    result = invoke("search", "--ckpt", tiny_run, "--out", tmp_path / "search", *args)
    line = assert_one_line_error(result, *fragments)
    assert "cannot be met" not in line
    assert_unchanged(before, tmp_path, tiny_run)


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["train", "--lr", "nan"], "'--lr': 'nan' is not a finite number"),
        (["train", "--minutes", "0"], "'--minutes': 0.0 is not in the range x>0"),
        (["train", "--dropout", "1.5"], "'--dropout': 1.5 is not in the range 0<=x<1"),
        (["profile", "-n", "0"], "'-n': 0 is not in the range x>=1"),
        (["profile", "--near-budget-ms", "-1"], "'--near-budget-ms': -1.0 is not in the range"),
        (["predictor", "train", "--dataset", "x", "--test-fraction", "1"], "0<x<1"),
        (["translate", "--model", "m", "--lenpen", "inf"], "'inf' is not a finite number"),
        (["demo", "--threads", "0"], "'--threads': 0 is not in the range x>=1"),
        (["space", "--vocab-size", "0"], "'--vocab-size': 0 is not in the range x>=1"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v[:2]),
)
def test_other_numeric_options_are_checked(args, fragment, tmp_path):
    before = tree_digests(tmp_path)
    assert_one_line_error(invoke(*args), fragment)
    assert_unchanged(before, tmp_path)
