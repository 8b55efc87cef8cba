"""A space that cannot be built is refused before anything is allocated: a choice beyond the
ceilings of `space.MAX_LAYERS` / `space.MAX_WIDTH` when the space loads, and a model whose bytes
exceed the memory available when it is about to be built (`models.size`). Each refusal is one
`error:` line naming the file and the field, exit code 2, within seconds, nothing written;
`--allow-large` skips the memory comparison only, and every preset still builds."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mos_search.cli import main
from mos_search.models import size
from mos_search.models.size import ALLOW_LARGE_ENV

from conftest import TINY_SPACE, assert_one_line_error, tree_digests

TINY = Path(TINY_SPACE).read_text(encoding="utf-8")


def with_choice(field: str, values: str) -> str:
    """The tiny space with one field's choices replaced."""
    text, count = re.subn(rf"^{field} = \[[^\]]*\]", f"{field} = {values}", TINY, flags=re.M)
    assert count == 1
    return text


# the three spaces of the issue: a mistyped embedding width, 1,000 and 1,000,000 decoder layers
HOSTILE = {
    "huge-embedding": (
        with_choice("encoder_embed_dim", "[16, 1073741824]"),
        ["encoder_embed_dim: 1,073,741,824 is beyond the ceiling of 65,536 for a width"],
    ),
    "1000-layers": (
        with_choice("decoder_layers", "[1, 1000]"),
        ["decoder_layers: 1,000 is beyond the ceiling of 128 for a layer count"],
    ),
    "1000000-layers": (
        with_choice("decoder_layers", "[1000000]"),
        ["decoder_layers: 1,000,000 is beyond the ceiling of 128"],
    ),
}


def command(name: str, space: Path, data: Path, out: Path) -> list[str]:
    if name == "train":
        return ["train", "--data", str(data), "--space", str(space), "--out", str(out / "run")]
    if name == "profile":
        return ["profile", "--space", str(space), "-n", "1", "--out", str(out / "lat.jsonl")]
    return ["space", str(space)]


@pytest.fixture
def no_allow_large(monkeypatch):
    """The memory check on, whatever the environment; `main` may set the variable, and
    monkeypatch puts it back as it was."""
    monkeypatch.setenv(ALLOW_LARGE_ENV, "0")


@pytest.mark.parametrize("name", ["train", "profile", "space"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_space_beyond_the_ceilings_is_refused_at_once(
    case, name, tiny_corpus, tmp_path, no_allow_large
):
    text, fragments = HOSTILE[case]
    space = tmp_path / "space.toml"
    space.write_text(text, encoding="utf-8")
    before = tree_digests(tmp_path, tiny_corpus.root)
    started = time.perf_counter()
    result = CliRunner().invoke(main, command(name, space, tiny_corpus.root, tmp_path))
    elapsed_s = time.perf_counter() - started
    assert_one_line_error(result, str(space), *fragments)
    assert elapsed_s < 5, elapsed_s  # refused before building, not after minutes of layers
    assert tree_digests(tmp_path, tiny_corpus.root) == before


def test_the_ceilings_hold_even_with_allow_large(tiny_corpus, tmp_path, no_allow_large):
    space = tmp_path / "space.toml"
    space.write_text(HOSTILE["1000-layers"][0], encoding="utf-8")
    result = CliRunner().invoke(main, ["--allow-large", "space", str(space)])
    assert_one_line_error(result, "decoder_layers: 1,000")


def test_a_supernet_beyond_the_memory_is_refused_naming_the_largest_field(
    tiny_corpus, tmp_path, monkeypatch, no_allow_large
):
    # the tiny space with one wide FFN choice: within the ceilings, beyond a (pretended) 1 MiB
    monkeypatch.setattr(size, "available_memory_bytes", lambda: 2**20)
    space = tmp_path / "space.toml"
    space.write_text(with_choice("encoder_ffn_dims", "[16, 4096]"), encoding="utf-8")
    before = tree_digests(tmp_path, tiny_corpus.root)
    args = [*command("train", space, tiny_corpus.root, tmp_path), "--mode", "neuron"]
    line = assert_one_line_error(
        CliRunner().invoke(main, args),
        f"{space}: training the neuron supernet needs",
        "x 16 bytes) and this machine has 1.0 MiB available",
        "most of it comes from encoder_ffn_dims (up to 4,096)",
        "--allow-large",
    )
    count = int(re.search(r"\(([\d,]+) parameters", line).group(1).replace(",", ""))
    from mos_search.models.build import build_model, supernet_spec
    from mos_search.models.supernet import SupernetConfig
    from mos_search.space import load_space

    config = SupernetConfig(
        space=load_space(space), vocab_size=tiny_corpus.vocab_size, mode="neuron"
    )
    model = build_model(supernet_spec(config))  # the count is the real model's, exactly
    assert count == sum(p.numel() for p in model.parameters())
    assert tree_digests(tmp_path, tiny_corpus.root) == before
    profile = CliRunner().invoke(main, command("profile", space, tiny_corpus.root, tmp_path))
    assert_one_line_error(profile, f"{space}: profiling its largest architecture needs")


def test_allow_large_skips_the_memory_check(tiny_corpus, tmp_path, monkeypatch, no_allow_large):
    monkeypatch.setattr(size, "available_memory_bytes", lambda: 2**20)
    args = command("train", Path(TINY_SPACE), tiny_corpus.root, tmp_path)
    args += ["--max-steps", "1", "--max-tokens", "256", "--precision", "fp32", "--valid-every", "0"]
    refused = CliRunner().invoke(main, args)
    assert_one_line_error(refused, "training the neuron supernet needs")
    trained = CliRunner().invoke(main, ["--allow-large", *args])
    assert trained.exit_code == 0, trained.output
    assert (tmp_path / "run" / "checkpoints").is_dir()


def test_a_checkpoint_that_does_not_fit_is_refused_naming_its_state_file(
    tiny_run, tiny_corpus, monkeypatch, no_allow_large
):
    monkeypatch.setattr(size, "available_memory_bytes", lambda: 1)
    args = ["score", "--ckpt", str(tiny_run), "--data", str(tiny_corpus.root)]
    result = CliRunner().invoke(main, [*args, "--preset-arch", "smallest"])
    assert_one_line_error(result, "state.json: loading the neuron supernet needs")


@pytest.mark.parametrize("preset", ["cpu-tiny", "cpu-small", "hat-iwslt14", "bert-cpu"])
def test_every_preset_is_shown_with_what_training_needs(preset):
    result = CliRunner().invoke(main, ["space", preset])
    assert result.exit_code == 0, result.output
    needs = r"neuron supernet +[\d.]+ M parameters; training needs [\d.]+ [MG]iB: fits"
    assert re.search(needs, result.output)


def test_the_presets_train_at_once(cpu_space):
    """The check costs a build on the meta device: well under a second for cpu-small."""
    from mos_search.models.build import check_spec_fits, supernet_spec
    from mos_search.models.supernet import SupernetConfig

    spec = supernet_spec(SupernetConfig(space=cpu_space, vocab_size=8000, mode="neuron"))
    started = time.perf_counter()
    assert check_spec_fits(spec, training=True) == 12_730_368
    assert time.perf_counter() - started < 1
