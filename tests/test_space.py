"""Search space: membership, encodings, operators and preset files."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mos_search.arch import Arch
from mos_search.errors import ArchError, SpaceError
from mos_search.space import load_space, preset_names, space_from_toml

SPACES = {name: load_space(name) for name in preset_names()}
seeds = st.integers(min_value=0, max_value=2**32 - 1)
space_names = st.sampled_from(sorted(SPACES))


def test_hat_preset_is_the_published_space(hat_space):
    c = hat_space.choices
    assert c["encoder_embed_dim"] == c["decoder_embed_dim"] == (512, 640)
    assert c["encoder_ffn_dims"] == c["decoder_ffn_dims"] == (1024, 2048, 3072)
    assert c["encoder_heads"] == c["decoder_self_heads"] == c["decoder_cross_heads"] == (4, 8)
    assert c["encoder_layers"] == (6,)
    assert c["decoder_layers"] == (1, 2, 3, 4, 5, 6)
    assert c["decoder_ende_layers"] == (1, 2, 3)
    assert hat_space.qkv_dim == 512


def test_translation_presets_share_all_embeddings():
    """hat-wmt14 shares like HAT, the CPU presets share (their corpora have one vocabulary); a
    space file without the setting means "decoder", as spaces written before it did."""
    for name in ("hat-wmt14", "cpu-small", "cpu-tiny"):
        assert SPACES[name].share_embeddings == "all"
    assert space_from_toml(GOOD).share_embeddings == "decoder"
    with pytest.raises(SpaceError, match="share_embeddings is for translation spaces"):
        _ = SPACES["bert-cpu"].share_embeddings


def test_largest_and_smallest(cpu_space):
    big, small = cpu_space.largest(), cpu_space.smallest()
    assert big.decoder_layers == 3 and set(big.decoder_ffn_dims) == {1024}
    assert small.decoder_layers == 1 and small.encoder_ffn_dims == (256, 256, 256)
    assert cpu_space.features(big) == [1.0] * 10


@settings(max_examples=200, deadline=None)
@given(space_names, seeds)
def test_sample_round_trips_through_gene_and_json(name, seed):
    space = SPACES[name]
    arch = space.sample(random.Random(seed))
    assert space.contains(arch)
    assert space.from_gene(space.to_gene(arch)) == arch
    assert space.arch_from_json(arch.to_json()) == arch
    lower, upper = space.gene_bounds()
    gene = space.to_gene(arch)
    assert ((gene >= lower) & (gene <= upper)).all()


@settings(max_examples=200, deadline=None)
@given(space_names, seeds, st.lists(st.integers(0, 100), min_size=40, max_size=40))
def test_any_in_bounds_gene_decodes_to_a_member(name, seed, raw):
    space = SPACES[name]
    _, upper = space.gene_bounds()
    gene = [r % (u + 1) for r, u in zip(raw, upper)]
    arch = space.from_gene(gene)
    assert space.contains(arch)
    assert space.from_gene(space.to_gene(arch)) == arch


@settings(max_examples=200, deadline=None)
@given(space_names, seeds, st.floats(0.0, 1.0))
def test_mutate_and_crossover_stay_in_space(name, seed, p):
    space = SPACES[name]
    rng = random.Random(seed)
    a, b = space.sample(rng), space.sample(rng)
    assert space.contains(space.mutate(a, p, rng))
    child = space.crossover(a, b, rng)
    assert space.contains(child)
    scalars = [f for f in space.arch_type.field_names() if f not in space.arch_type.PER_LAYER]
    for field in scalars:
        assert getattr(child, field) in (getattr(a, field), getattr(b, field))


def test_mutate_with_p_zero_is_identity_and_p_one_explores(cpu_space):
    rng = random.Random(1)
    arch = cpu_space.sample(rng)
    assert cpu_space.mutate(arch, 0.0, rng) == arch
    assert len({cpu_space.mutate(arch, 1.0, rng) for _ in range(20)}) > 10


def test_sampling_is_deterministic_and_covers_choices(cpu_space):
    first = [cpu_space.sample(random.Random(7)) for _ in range(2)]
    assert first[0] == first[1]
    rng = random.Random(0)
    seen = {cpu_space.sample(rng).decoder_layers for _ in range(200)}
    assert seen == {1, 2, 3}


def test_features_are_documented_order(cpu_space):
    arch = cpu_space.from_gene(cpu_space.gene_bounds()[0])
    feats = dict(zip(cpu_space.feature_names, cpu_space.features(arch)))
    assert feats["encoder_embed_dim"] == pytest.approx(128 / 256)
    assert feats["decoder_layers"] == pytest.approx(1 / 3)
    assert feats["decoder_ende_layers"] == pytest.approx(1 / 3)
    assert len(feats) == 10


def test_validate_names_field_value_and_choices(cpu_space):
    arch = cpu_space.largest()
    bad = Arch(**{**arch.to_dict(), "decoder_ffn_dims": [1024, 999, 1024]})
    with pytest.raises(
        ArchError, match=r"decoder_ffn_dims\[1\] = 999 .*choices: \[256, 512, 1024\]"
    ):
        cpu_space.validate(bad)
    with pytest.raises(ArchError, match=r"encoder_embed_dim = 640"):
        cpu_space.validate(Arch(**{**arch.to_dict(), "encoder_embed_dim": 640}))


def test_arch_structure_errors():
    data = load_space("cpu-small").largest().to_dict()
    with pytest.raises(ArchError, match=r"decoder_self_heads: expected one value per layer"):
        Arch.from_dict({**data, "decoder_self_heads": [2]})
    with pytest.raises(ArchError, match="missing field"):
        Arch.from_dict({k: v for k, v in data.items() if k != "decoder_layers"})
    with pytest.raises(ArchError, match="unknown field"):
        Arch.from_dict({**data, "colour": 1})
    with pytest.raises(ArchError, match="not valid JSON"):
        Arch.from_json("{nope")
    with pytest.raises(ArchError, match="expected an integer"):
        Arch.from_dict({**data, "encoder_layers": "3"})


def test_gene_errors(cpu_space):
    with pytest.raises(ArchError, match="gene has 3 positions"):
        cpu_space.from_gene([0, 0, 0])
    gene = cpu_space.to_gene(cpu_space.largest())
    gene[0] = 7
    with pytest.raises(ArchError, match=r"encoder_embed_dim holds 7; expected 0..2"):
        cpu_space.from_gene(gene)


GOOD = """
name = "t"
task = "translation"
qkv_dim = 8
[choices]
encoder_embed_dim = [8]
encoder_layers = [2]
encoder_ffn_dims = [16]
encoder_heads = [2]
decoder_embed_dim = [8]
decoder_layers = [1, 2]
decoder_ffn_dims = [16]
decoder_self_heads = [2]
decoder_cross_heads = [2]
decoder_ende_layers = [1, 2]
"""


def test_space_from_toml_text():
    space = space_from_toml(GOOD, "good.toml")
    assert space.name == "t" and len(space.gene_layout) == 2 + 2 * 2 + 2 + 4 * 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = [", r"bad\.toml: not valid TOML"),
        (GOOD.replace('task = "translation"', 'task = "vision"'), r"task: expected one of"),
        (GOOD.replace("encoder_heads = [2]\n", ""), r"missing field\(s\): encoder_heads"),
        (GOOD + "colour = [1]\n", r"unknown field\(s\): colour"),
        (
            GOOD.replace("encoder_heads = [2]", "encoder_heads = []"),
            r"encoder_heads: expected a non-empty",
        ),
        (
            GOOD.replace("encoder_heads = [2]", "encoder_heads = [3]"),
            r"\[3\] do not divide qkv_dim=8",
        ),
        (
            GOOD.replace("decoder_ende_layers = [1, 2]", "decoder_ende_layers = [1, 3]"),
            r"exceeds the smallest encoder depth 2",
        ),
        (GOOD.replace("qkv_dim = 8", "qkv_dim = 0"), r"qkv_dim: expected a positive integer"),
        (
            GOOD.replace("qkv_dim = 8", 'qkv_dim = 8\nshare_embeddings = "source"'),
            r"share_embeddings: expected one of 'all', 'decoder', found 'source'",
        ),
        (GOOD.replace("decoder_layers = [1, 2]", "decoder_layers = [1, 1]"), r"repeat a value"),
    ],
)
def test_malformed_preset_files(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(SpaceError, match=message):
        load_space(path)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(
        SpaceError,
        match=r"unknown search space 'tiny'; presets: bert-bottleneck, bert-cpu, cpu-small",
    ):
        load_space("tiny")
    with pytest.raises(SpaceError, match="not found"):
        load_space("missing/space.toml")


def test_space_dict_round_trip(cpu_space):
    from mos_search.space import space_from_dict

    again = space_from_dict(cpu_space.to_dict())
    assert again.choices == cpu_space.choices and again.qkv_dim == cpu_space.qkv_dim
