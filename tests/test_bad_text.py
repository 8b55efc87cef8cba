"""Damaged inputs through the real CLI: text that is not UTF-8, empty or truncated files, wrongly
shaped predictor arrays and bad latency-dataset lines each give one `error:` line naming the file
(and line), what was expected, exit code 2, and leave every existing file as it was."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mos_search.cli import main

from conftest import TINY_SPACE, assert_one_line_error, tree_digests

SHIPPED = Path(__file__).resolve().parents[1] / "mos_search" / "shipped" / "onnxruntime-cpu"
LATIN1 = "caf\xe9".encode("latin-1")  # the 0xe9 of Latin-1, not UTF-8
UTF8_HINT = "not UTF-8 text (byte 0xe9 at column"
ARCH = {
    "encoder_embed_dim": 16,
    "encoder_layers": 2,
    "encoder_ffn_dims": [16, 16],
    "encoder_heads": [2, 2],
    "decoder_embed_dim": 16,
    "decoder_layers": 1,
    "decoder_ffn_dims": [16],
    "decoder_self_heads": [2],
    "decoder_cross_heads": [2],
    "decoder_ende_layers": [1],
}
ARCH_TEXT = "{\n" + ",\n".join(f' "{k}": {json.dumps(v)}' for k, v in ARCH.items()) + "\n}\n"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_unchanged(before: dict[str, str], *roots: Path) -> None:
    """Every file of `before` (a `tree_digests`) is still there with the same bytes."""
    after = tree_digests(*roots)
    assert {path: after.get(path) for path in before} == before


def records(n: int = 12) -> list[str]:
    """The first `n` lines of the shipped cpu-small dataset."""
    return (SHIPPED / "latency.jsonl").read_text(encoding="utf-8").splitlines()[:n]


# ---------------------------------------------------------------- architecture files
ARCH_COMMANDS = {  # every command that reads --arch FILE
    "score": "score --ckpt {tmp}/run --arch {arch}",
    "export": "export --ckpt {tmp}/run --arch {arch} --out {tmp}/model",
    "finetune": "finetune --ckpt {tmp}/run --arch {arch} --out {tmp}/ft",
    "train": "train --space {space} --arch {arch} --out {tmp}/standalone",
}


@pytest.mark.parametrize("command", sorted(ARCH_COMMANDS))
@pytest.mark.parametrize(
    "content, fragments",
    [
        (
            ARCH_TEXT.encode().replace(b'"decoder_layers"', b'"d' + LATIN1 + b'"'),
            [":7: ", UTF8_HINT + " 7)", "save the file as UTF-8"],
        ),
        (b"", ["is empty: expected an architecture as JSON", "mos-search space NAME"]),
        (b" \n", ["is empty: expected an architecture as JSON"]),
        (b'{"encoder_layers": 2,\n', [":2: not JSON", "expected an architecture as JSON"]),
        (b"[1, 2]", ["expected an architecture as JSON", "found [1, 2]"]),
    ],
    ids=["latin1", "empty", "blank", "truncated", "not-objects"],
)
def test_a_bad_arch_file_is_one_line(command, content, fragments, tmp_path):
    arch = tmp_path / "arch.json"
    arch.write_bytes(content)
    before = tree_digests(tmp_path)
    words = ARCH_COMMANDS[command].split()
    result = invoke(*(w.format(tmp=tmp_path, arch=arch, space=TINY_SPACE) for w in words))
    assert_one_line_error(result, str(arch), *fragments)
    assert_unchanged(before, tmp_path)


def test_an_empty_list_of_archs_is_not_nothing_to_score(tmp_path):
    arch = tmp_path / "archs.json"
    arch.write_text("[]")
    result = invoke("score", "--ckpt", tmp_path / "run", "--arch", arch)
    assert_one_line_error(result, str(arch), "or a list of them, found []")


# ---------------------------------------------------------------- latency datasets
def _with_line(line: str | bytes, at: int = 5) -> bytes:
    lines = [r.encode() for r in records()]
    lines.insert(at, line if isinstance(line, bytes) else line.encode())
    return b"\n".join(lines) + b"\n"


def _record(**changes) -> str:
    record = json.loads(records()[3])
    for key, value in changes.items():
        if value is None:
            record.pop(key)
        else:
            record[key] = value
    return json.dumps(record)


DATASET_LINES = {
    "latin1": (records()[3].encode().replace(b'"flagged"', b'"fl' + LATIN1 + b'"'), UTF8_HINT),
    "string-latency": (
        _record(latency_ms="12"),
        "'latency_ms' must be a positive finite number, found '12'",
    ),
    "missing-features": (_record(features=None), "no 'features' (a list of numbers)"),
    "missing-latency": (_record(latency_ms=None), "no 'latency_ms' (a positive number)"),
    "array": ("[1.0, 2.0]", "expected a JSON object, found list"),
    "nan": (_record(latency_ms=float("nan")), "found nan"),
    "infinity": (_record(latency_ms=float("inf")), "found inf"),
    "huge-int": (_record(latency_ms=10**400), "'latency_ms' must be a positive finite number"),
    "string-feature": (_record(features=["1.0"] * 10), "'features' must be a list of finite"),
    "few-features": (_record(features=[1.0, 2.0]), "expected 10 features"),
    "torn-middle": (records()[3][:50], "not JSON (Unterminated string starting at: column"),
    "text-middle": ("hello", "not JSON (Expecting value: column 1)"),
}


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("case", sorted(DATASET_LINES))
def test_a_bad_dataset_line_is_named_by_its_number(command, case, tmp_path):
    line, expected = DATASET_LINES[case]
    dataset = tmp_path / "latency.jsonl"
    dataset.write_bytes(_with_line(line))
    before = tree_digests(tmp_path)
    if command == "train":
        args = ["predictor", "train", "--dataset", dataset, "--space", "cpu-small"]
        args += ["--members", "2", "--out", tmp_path / "p.json"]
    else:
        args = ["predictor", "eval", "--predictor", SHIPPED / "predictor.json"]
        args += ["--dataset", dataset]
    result = invoke(*args)
    assert_one_line_error(result, f"{dataset}:6: ", expected)
    assert_unchanged(before, tmp_path)
    assert not (tmp_path / "p.json").exists()


def test_only_a_torn_last_line_is_skipped_with_a_warning(tmp_path):
    """... and a byte-order mark starting a line is dropped (two such files concatenated)."""
    lines = records(13)
    lines[5] = "\ufeff" + lines[5]
    dataset = tmp_path / "latency.jsonl"
    dataset.write_bytes(("\ufeff" + "\n".join(lines)).encode()[:-40])  # torn: no newline
    args = ["predictor", "eval", "--predictor", SHIPPED / "predictor.json", "--dataset", dataset]
    with pytest.warns(UserWarning, match=r"latency\.jsonl:13: skipped a torn last line"):
        result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert "all" in result.output


# ---------------------------------------------------------------- predictor files
def _predictor_copy(tmp_path: Path, change_arrays=None, change_header=None) -> Path:
    """The shipped predictor copied into `tmp_path`, its arrays or header changed (the header's
    digest kept true to the arrays, so only the change is wrong)."""
    header = json.loads((SHIPPED / "predictor.json").read_text(encoding="utf-8"))
    with np.load(SHIPPED / "predictor.npz") as data:
        arrays = {name: data[name] for name in data.files}
    if change_arrays:
        change_arrays(arrays)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (tmp_path / "predictor.npz").write_bytes(buffer.getvalue())
    header["arrays_sha256"] = hashlib.sha256(buffer.getvalue()).hexdigest()
    text = json.dumps(header, indent=1).encode()
    path = tmp_path / "predictor.json"
    path.write_bytes(change_header(text) if change_header else text)
    return path


def _set(name: str, value):
    return lambda arrays: arrays.__setitem__(name, value)


PREDICTOR_CASES = {
    "header-latin1": (
        None,
        lambda text: text.replace(b'"cpu-small"', b'"cpu-' + LATIN1 + b'"'),
        "predictor.json:",
        UTF8_HINT,
    ),
    "header-not-json": (None, lambda text: text[:200], "predictor.json:", "not a JSON predictor"),
    "header-missing-field": (
        None,
        lambda text: text.replace(b'"layers"', b'"strata"'),
        "predictor.json",
        "'layers' must be a positive integer, found None",
    ),
    "header-huge-members": (
        None,
        lambda text: text.replace(b'"members": 8', b'"members": 1000000000'),
        "predictor.npz",
        "no array 'm8.quadratic' (expected shape (66,))",
    ),
    "wrong-shape": (
        lambda a: a.__setitem__("m0.w0", a["m0.w0"][:3]),
        None,
        "predictor.npz",
        "array 'm0.w0' has shape (3, 32) (float64), expected numbers of shape (10, 32)",
    ),
    "wrong-bias": (
        _set("m2.b1", np.zeros(4)),
        None,
        "predictor.npz",
        "array 'm2.b1' has shape (4,) (float64), expected numbers of shape (1,)",
    ),
    "wrong-mean": (_set("mean", np.zeros((10, 1))), None, "predictor.npz", "'mean'"),
    "missing-array": (
        lambda a: a.pop("m7.quadratic"),
        None,
        "predictor.npz",
        "no array 'm7.quadratic' (expected shape (66,))",
    ),
    "text-array": (
        _set("scale", np.array(["x"] * 10)),
        None,
        "predictor.npz",
        "array 'scale' has shape (10,) (<U1)",
    ),
}


@pytest.mark.parametrize("case", sorted(PREDICTOR_CASES))
def test_a_damaged_predictor_is_one_line(case, tmp_path):
    change_arrays, change_header, file_name, expected = PREDICTOR_CASES[case]
    predictor = _predictor_copy(tmp_path, change_arrays, change_header)
    dataset = tmp_path / "latency.jsonl"
    dataset.write_text("\n".join(records()) + "\n")
    before = tree_digests(tmp_path)
    result = invoke("predictor", "eval", "--predictor", predictor, "--dataset", dataset)
    assert_one_line_error(result, str(tmp_path / file_name), expected)
    assert_unchanged(before, tmp_path)


def test_an_unchanged_copy_of_the_predictor_loads(tmp_path):
    predictor = _predictor_copy(tmp_path)
    dataset = tmp_path / "latency.jsonl"
    dataset.write_text("\n".join(records()) + "\n")
    result = invoke("predictor", "eval", "--predictor", predictor, "--dataset", dataset)
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------- corpora and models
@pytest.fixture
def corpus_copy(tiny_corpus, tmp_path):
    copy = tmp_path / "corpus"
    shutil.copytree(tiny_corpus.root, copy)
    return copy


def _train(corpus: Path, out: Path) -> list[str]:
    return ["train", "--data", corpus, "--space", TINY_SPACE, "--out", out, "--max-steps", "1"]


def test_a_latin1_corpus_manifest_is_one_line(corpus_copy, tmp_path):
    manifest = corpus_copy / "corpus.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"es"', b'"' + LATIN1 + b'"', 1))
    before = tree_digests(tmp_path)
    result = invoke("data", "tokenize", "--data", corpus_copy)
    assert_one_line_error(result, f"{manifest}:", UTF8_HINT)
    assert_unchanged(before, tmp_path)


@pytest.mark.parametrize(
    "damage, file_name, expected",
    [
        (
            lambda store: (store / "meta.json").write_bytes(
                (store / "meta.json").read_bytes().replace(b'"dtype"', b'"' + LATIN1 + b'"')
            ),
            "meta.json:2:",  # written with one key a line: "dtype" on line 2
            UTF8_HINT,
        ),
        (
            lambda store: (store / "meta.json").write_text('{"files": '),
            "meta.json is not valid JSON",
            "`mos-search data tokenize --data",
        ),
        (
            lambda store: (store / "train.en.bin").write_bytes(
                (store / "train.en.bin").read_bytes()[:-10]
            ),
            "train.en.bin or train.en.idx.npy is damaged",
            "`mos-search data tokenize --data",
        ),
        (
            lambda store: (store / "train.es.idx.npy").write_bytes(b"\x93NUMPY"),
            "train.es.bin or train.es.idx.npy is damaged",
            "`mos-search data tokenize --data",
        ),
    ],
    ids=["meta-latin1", "meta-not-json", "bin-truncated", "idx-truncated"],
)
def test_a_damaged_token_store_is_one_line(damage, file_name, expected, corpus_copy, tmp_path):
    damage(corpus_copy / "tokens")
    before = tree_digests(tmp_path)
    result = invoke(*_train(corpus_copy, tmp_path / "run"))
    assert_one_line_error(result, str(corpus_copy / "tokens"), file_name, expected)
    assert_unchanged(before, tmp_path)


def _identity_onnx(path: Path) -> None:
    """A valid ONNX graph (int64 in, int64 out) that ONNX Runtime loads."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.INT64, [None])
    y = helper.make_tensor_value_info("y", TensorProto.INT64, [None])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.mark.parametrize("keep", [0.5, 0.0], ids=["truncated", "empty"])
def test_a_truncated_tokenizer_model_is_one_line(keep, tiny_corpus, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("encoder.onnx", "decoder_step.onnx"):
        _identity_onnx(model / name)
    spm = tiny_corpus.tokenizer_path.read_bytes()
    (model / "spm.model").write_bytes(spm[: int(len(spm) * keep)])
    (tmp_path / "in.txt").write_text("uno dos\n")
    before = tree_digests(tmp_path)
    result = invoke("translate", "--model", model, "--input", tmp_path / "in.txt")
    assert_one_line_error(
        result, f"{model / 'spm.model'} is not a SentencePiece model", "mos-search data"
    )
    assert_unchanged(before, tmp_path)
