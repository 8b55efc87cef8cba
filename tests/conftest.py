"""Shared fixtures: spaces and small supernets, one per mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mos_search import Supernet, SupernetConfig, load_space

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def cpu_space():
    return load_space("cpu-small")


@pytest.fixture(scope="session")
def hat_space():
    return load_space("hat-wmt14")


@pytest.fixture(scope="session", params=["shared", "layer", "neuron"])
def supernet(request, cpu_space):
    torch.manual_seed(0)
    return Supernet(SupernetConfig(space=cpu_space, mode=request.param, vocab_size=97)).eval()


TINY_SPACE = str(Path(__file__).with_name("tiny.toml"))
WORDS = {
    "uno": "one",
    "dos": "two",
    "tres": "three",
    "casa": "house",
    "perro": "dog",
    "gato": "cat",
    "rojo": "red",
    "verde": "green",
    "grande": "big",
    "come": "eats",
    "ve": "sees",
    "el": "the",
    "y": "and",
    "sol": "sun",
    "agua": "water",
    "mar": "sea",
}


def synthetic_pairs(n: int, seed: int) -> list[tuple[str, str]]:
    """A word-for-word 'translation' task a tiny model can learn."""
    import random as _random

    rng = _random.Random(seed)
    vocab = sorted(WORDS)
    pairs = []
    for _ in range(n):
        words = [rng.choice(vocab) for _ in range(rng.randint(3, 8))]
        pairs.append((" ".join(words), " ".join(WORDS[w] for w in words) + "."))
    return pairs


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    from mos_search.data.corpus import build_corpus

    out = tmp_path_factory.mktemp("corpus")
    splits = {
        "train": synthetic_pairs(400, 0),
        "valid": synthetic_pairs(40, 1),
        "test": synthetic_pairs(40, 2),
    }
    return build_corpus(out, splits, "es", "en", vocab_size=64)


def tiny_train_config(data, out, **overrides):
    """The training config of the tests: a neuron-wise supernet of the tiny space trained for
    30 small steps without validation, in float32 (so figures compared across runs do not depend
    on whether this CPU has bf16, which `auto` would use); `overrides` change any option."""
    from mos_search.training.config import TrainConfig

    base = dict(
        data=str(data),
        out=str(out),
        space=TINY_SPACE,
        mode="neuron",
        max_tokens=512,
        max_steps=30,
        warmup=5,
        lr=3e-3,
        save_every=10,
        valid_every=0,
        log_every=5,
        precision="fp32",
    )
    return TrainConfig(**{**base, **overrides})


@pytest.fixture(scope="session")
def tiny_run(tiny_corpus, tmp_path_factory):
    """A tiny neuron-wise supernet trained for a few steps."""
    from mos_search.training.train import train

    out = tmp_path_factory.mktemp("run")
    train(tiny_train_config(tiny_corpus.root, out), progress=False)
    return out


def flip_last_byte(path: Path) -> None:
    """Damage a file in place: its last byte inverted (a file changed after it was saved)."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def tree_digests(*roots: Path) -> dict[str, str]:
    """sha256 of every file under `roots` (files or folders), by path: compare before and after a
    refused command to show it changed nothing."""
    import hashlib

    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_one_line_error(result, *fragments: str) -> str:
    """A CliRunner result that is a toolkit error: exit code 2, exactly one line `error: ...`
    holding every fragment, no traceback. Returns the line."""
    lines = result.output.strip().splitlines()
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def immutable(path):
    """`path` made immutable with chattr +i (root only, filesystems that support it); a context
    manager that undoes it, or None where it cannot be done."""
    import contextlib
    import os
    import subprocess

    if (
        os.geteuid() != 0
        or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode
    ):
        return None

    @contextlib.contextmanager
    def undo():
        try:
            yield path
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)

    return undo()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory):
    """A throwaway OpenSSH server on 127.0.0.1 (`tests/sshd.py`), stopped at the end of the
    session; skips, saying why, where none can be started."""
    from sshd import SshdUnavailable, start_sshd

    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except SshdUnavailable as exc:
        pytest.skip(f"no test sshd: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def agent_python():
    """The torch-free Python of a measuring target: `.venv-agent/bin/python` (made by
    `make setup`), or `$MOS_AGENT_PYTHON`; skips where there is none, or where it can import
    torch (then it would prove nothing)."""
    import os
    import subprocess

    python = os.environ.get("MOS_AGENT_PYTHON")
    if python and not Path(python).is_file():
        pytest.skip(f"MOS_AGENT_PYTHON={python}: no such file")
    if not python:
        python = str(Path(__file__).resolve().parent.parent / ".venv-agent" / "bin" / "python")
        if not Path(python).is_file():
            pytest.skip("run make setup: .venv-agent missing")
    done = subprocess.run([python, "-c", "import torch"], capture_output=True)
    if done.returncode == 0:
        pytest.skip(f"{python} can import torch: it would not show the agent runs without it")
    return python


@pytest.fixture(scope="session")
def fast_profile(tmp_path_factory) -> str:
    """A device profile (a .toml path) of ONNX Runtime on the CPU with few warm-ups, repeats and
    decoder steps: for tests of what measuring writes, not of how well it times."""
    path = tmp_path_factory.mktemp("fast-profile") / "fast.toml"
    path.write_text(
        'backend = "onnxruntime-cpu"\nthreads = 1\ninter_op_threads = 1\nwarmups = 0\n'
        "repeats = 3\ndecoder_steps = 3\nretries = 0\n"
    )
    return str(path)
