"""HAT SubTransformer configs: published YAML files read as members of hat-wmt14 / hat-iwslt14,
through the library and `mos-search space import-hat`; errors name the YAML key."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from click.testing import CliRunner

from mos_search.arch import Arch, read_arch_file
from mos_search.cli import main
from mos_search.errors import ArchError
from mos_search.interop.hat import (
    HAT_KEYS,
    arch_from_hat,
    arch_json_text,
    ende_from_hat,
    ende_to_hat,
    import_hat_file,
)
from mos_search.space import load_space

from conftest import assert_one_line_error, tree_digests

# The YAML texts below are HAT's published files verbatim
# (mit-han-lab/hardware-aware-transformers, commit 35d1282).
HAT_NOTE = """
# for arbitrary encoder decoder attention. -1 means attending to last one encoder layer
# 1 means last two encoder layers, 2 means last three encoder layers
"""

# configs/wmt14.en-de/subtransformer/HAT_wmt14ende_titanxp@91.2ms_bleu@27.6.yml
WMT_TITANXP_91 = f"""encoder-embed-dim-subtransformer: 512
decoder-embed-dim-subtransformer: 512

encoder-ffn-embed-dim-all-subtransformer: [3072, 3072, 3072, 3072, 3072, 3072]
decoder-ffn-embed-dim-all-subtransformer: [3072, 3072]

encoder-layer-num-subtransformer: 6
decoder-layer-num-subtransformer: 2

encoder-self-attention-heads-all-subtransformer: [4, 8, 8, 4, 8, 8]
decoder-self-attention-heads-all-subtransformer: [8, 8]
decoder-ende-attention-heads-all-subtransformer: [8, 8]
{HAT_NOTE}decoder-arbitrary-ende-attn-all-subtransformer: [-1, 1]
"""

# configs/wmt14.en-de/subtransformer/HAT_wmt14ende_xeon@450.9ms_bleu@28.5.yml
WMT_XEON_450 = f"""encoder-embed-dim-subtransformer: 512
decoder-embed-dim-subtransformer: 512

encoder-ffn-embed-dim-all-subtransformer: [3072, 3072, 3072, 3072, 3072, 3072]
decoder-ffn-embed-dim-all-subtransformer: [3072, 3072, 3072, 3072, 3072, 3072]

encoder-layer-num-subtransformer: 6
decoder-layer-num-subtransformer: 6

encoder-self-attention-heads-all-subtransformer: [4, 4, 8, 8, 8, 4]
decoder-self-attention-heads-all-subtransformer: [8, 8, 8, 4, 4, 4]
decoder-ende-attention-heads-all-subtransformer: [4, 8, 8, 8, 8, 8]
{HAT_NOTE}decoder-arbitrary-ende-attn-all-subtransformer: [-1, 1, 1, 1, -1, -1]
"""

# configs/wmt14.en-de/subtransformer/HAT_wmt14ende_raspberrypi@3.5s_bleu@25.8.yml
WMT_RASPBERRYPI_35 = f"""encoder-embed-dim-subtransformer: 512
decoder-embed-dim-subtransformer: 512

encoder-ffn-embed-dim-all-subtransformer: [1024, 3072, 3072, 2048, 2048, 2048]
decoder-ffn-embed-dim-all-subtransformer: [3072]

encoder-layer-num-subtransformer: 6
decoder-layer-num-subtransformer: 1

encoder-self-attention-heads-all-subtransformer: [4, 8, 4, 4, 4, 8]
decoder-self-attention-heads-all-subtransformer: [8]
decoder-ende-attention-heads-all-subtransformer: [8]
{HAT_NOTE}decoder-arbitrary-ende-attn-all-subtransformer: [-1]
"""

# configs/iwslt14.de-en/subtransformer/HAT_iwslt14deen_titanxp@168.8ms_bleu@34.8.yml
IWSLT_TITANXP_168 = f"""encoder-embed-dim-subtransformer: 512
decoder-embed-dim-subtransformer: 512

encoder-ffn-embed-dim-all-subtransformer: [1024, 1024, 1024, 1024, 1024, 1024]
decoder-ffn-embed-dim-all-subtransformer: [2048, 2048, 2048, 1024, 1024]

encoder-layer-num-subtransformer: 6
decoder-layer-num-subtransformer: 5

encoder-self-attention-heads-all-subtransformer: [4, 4, 4, 4, 4, 4]
decoder-self-attention-heads-all-subtransformer: [4, 4, 4, 2, 2]
decoder-ende-attention-heads-all-subtransformer: [4, 4, 4, 4, 4]
{HAT_NOTE}decoder-arbitrary-ende-attn-all-subtransformer: [2, -1, -1, -1, -1]
"""

# configs/iwslt14.de-en/subtransformer/HAT_iwslt14deen_titanxp@45.6ms_bleu@33.4.yml
IWSLT_TITANXP_45 = f"""encoder-embed-dim-subtransformer: 512
decoder-embed-dim-subtransformer: 512

encoder-ffn-embed-dim-all-subtransformer: [1024, 1024, 1024, 1024, 1024, 1024]
decoder-ffn-embed-dim-all-subtransformer: [2048]

encoder-layer-num-subtransformer: 6
decoder-layer-num-subtransformer: 1

encoder-self-attention-heads-all-subtransformer: [4, 4, 2, 4, 4, 4]
decoder-self-attention-heads-all-subtransformer: [4]
decoder-ende-attention-heads-all-subtransformer: [4]
{HAT_NOTE}decoder-arbitrary-ende-attn-all-subtransformer: [-1]
"""

# The search space of configs/iwslt14.de-en/supertransformer/space1.yml (its `*-choice` keys)
IWSLT_SPACE1 = """
encoder-embed-choice: [640, 512]
decoder-embed-choice: [640, 512]

encoder-ffn-embed-dim-choice: [2048, 1024, 512]
decoder-ffn-embed-dim-choice: [2048, 1024, 512]

encoder-layer-num-choice: [6]
decoder-layer-num-choice: [6, 5, 4, 3, 2, 1]

encoder-self-attention-heads-choice: [4, 2]
decoder-self-attention-heads-choice: [4, 2]
decoder-ende-attention-heads-choice: [4, 2]

decoder-arbitrary-ende-attn-choice: [-1, 1, 2]
"""
HAT_CHOICE_KEYS = {
    "encoder-embed-choice": "encoder_embed_dim",
    "decoder-embed-choice": "decoder_embed_dim",
    "encoder-ffn-embed-dim-choice": "encoder_ffn_dims",
    "decoder-ffn-embed-dim-choice": "decoder_ffn_dims",
    "encoder-layer-num-choice": "encoder_layers",
    "decoder-layer-num-choice": "decoder_layers",
    "encoder-self-attention-heads-choice": "encoder_heads",
    "decoder-self-attention-heads-choice": "decoder_self_heads",
    "decoder-ende-attention-heads-choice": "decoder_cross_heads",
    "decoder-arbitrary-ende-attn-choice": "decoder_ende_layers",
}

EXPECTED = {
    "wmt-titanxp-91": (
        WMT_TITANXP_91,
        "hat-wmt14",
        Arch(
            encoder_embed_dim=512,
            encoder_layers=6,
            encoder_ffn_dims=(3072,) * 6,
            encoder_heads=(4, 8, 8, 4, 8, 8),
            decoder_embed_dim=512,
            decoder_layers=2,
            decoder_ffn_dims=(3072, 3072),
            decoder_self_heads=(8, 8),
            decoder_cross_heads=(8, 8),
            decoder_ende_layers=(1, 2),
        ),
    ),
    "wmt-xeon-450": (
        WMT_XEON_450,
        "hat-wmt14",
        Arch(
            encoder_embed_dim=512,
            encoder_layers=6,
            encoder_ffn_dims=(3072,) * 6,
            encoder_heads=(4, 4, 8, 8, 8, 4),
            decoder_embed_dim=512,
            decoder_layers=6,
            decoder_ffn_dims=(3072,) * 6,
            decoder_self_heads=(8, 8, 8, 4, 4, 4),
            decoder_cross_heads=(4, 8, 8, 8, 8, 8),
            decoder_ende_layers=(1, 2, 2, 2, 1, 1),
        ),
    ),
    "wmt-raspberrypi-3.5": (
        WMT_RASPBERRYPI_35,
        "hat-wmt14",
        Arch(
            encoder_embed_dim=512,
            encoder_layers=6,
            encoder_ffn_dims=(1024, 3072, 3072, 2048, 2048, 2048),
            encoder_heads=(4, 8, 4, 4, 4, 8),
            decoder_embed_dim=512,
            decoder_layers=1,
            decoder_ffn_dims=(3072,),
            decoder_self_heads=(8,),
            decoder_cross_heads=(8,),
            decoder_ende_layers=(1,),
        ),
    ),
    "iwslt-titanxp-168": (
        IWSLT_TITANXP_168,
        "hat-iwslt14",
        Arch(
            encoder_embed_dim=512,
            encoder_layers=6,
            encoder_ffn_dims=(1024,) * 6,
            encoder_heads=(4,) * 6,
            decoder_embed_dim=512,
            decoder_layers=5,
            decoder_ffn_dims=(2048, 2048, 2048, 1024, 1024),
            decoder_self_heads=(4, 4, 4, 2, 2),
            decoder_cross_heads=(4,) * 5,
            decoder_ende_layers=(3, 1, 1, 1, 1),
        ),
    ),
    "iwslt-titanxp-45": (
        IWSLT_TITANXP_45,
        "hat-iwslt14",
        Arch(
            encoder_embed_dim=512,
            encoder_layers=6,
            encoder_ffn_dims=(1024,) * 6,
            encoder_heads=(4, 4, 2, 4, 4, 4),
            decoder_embed_dim=512,
            decoder_layers=1,
            decoder_ffn_dims=(2048,),
            decoder_self_heads=(4,),
            decoder_cross_heads=(4,),
            decoder_ende_layers=(1,),
        ),
    ),
}


def _write(tmp_path, text, name="config.yml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_published_configs_become_members(case, tmp_path):
    text, space_name, expected = EXPECTED[case]
    space = load_space(space_name)
    arch = import_hat_file(_write(tmp_path, text), space)
    assert arch == expected
    assert space.arch_from_json(arch.to_json()) == arch
    assert space.from_gene(space.to_gene(arch)) == arch
    assert space.arch_from_dict(json.loads(arch_json_text(arch))) == arch


def test_every_hat_key_maps_to_one_arch_field():
    assert sorted(HAT_KEYS.values()) == sorted(Arch.field_names())
    assert all(key.endswith("-subtransformer") for key in HAT_KEYS)


def test_ende_values_translate_both_ways():
    assert [ende_from_hat(v) for v in (-1, 1, 2)] == [1, 2, 3]
    assert [ende_to_hat(n) for n in (1, 2, 3)] == [-1, 1, 2]
    assert ende_from_hat(0) == ende_from_hat(-2) == 0  # HAT defines neither


def test_hat_iwslt14_preset_is_hats_space1():
    space = load_space("hat-iwslt14")
    published = yaml.safe_load(IWSLT_SPACE1)
    for key, field in HAT_CHOICE_KEYS.items():
        values = published[key]
        if field == "decoder_ende_layers":
            values = [ende_from_hat(v) for v in values]
        assert space.choices[field] == tuple(sorted(values)), key
    assert space.qkv_dim == 512  # space1.yml: qkv-dim: 512
    assert 512 in space.choices["encoder_ffn_dims"] and 2 in space.choices["encoder_heads"]


def test_longer_lists_are_read_up_to_the_layer_count():
    """HAT's evolutionary search prints one entry per SuperTransformer layer; HAT reads the
    first decoder-layer-num of them."""
    config = yaml.safe_load(WMT_TITANXP_91)
    config["decoder-ffn-embed-dim-all-subtransformer"] = [3072, 3072, 1024, 1024, 1024, 1024]
    config["decoder-arbitrary-ende-attn-all-subtransformer"] = [-1, 1, 2, 2, 2, 2]
    arch = arch_from_hat(config, load_space("hat-wmt14"), "x.yml")
    assert arch == EXPECTED["wmt-titanxp-91"][2]


def test_other_hat_options_in_the_file_are_ignored():
    config = yaml.safe_load(WMT_TITANXP_91)
    config.update({"train-subtransformer": True, "arch": "transformersuper_wmt_en_de", "lr": 1e-7})
    assert arch_from_hat(config, load_space("hat-wmt14"), "x.yml") == EXPECTED["wmt-titanxp-91"][2]


@pytest.mark.parametrize(
    "change, message",
    [
        (
            {"decoder-layer-num-subtransformer": 7},
            "x.yml: decoder-layer-num-subtransformer = 7 is not in space 'hat-wmt14'; "
            "choices: [1, 2, 3, 4, 5, 6]",
        ),
        (
            {"decoder-arbitrary-ende-attn-all-subtransformer": [-1, 3]},
            "x.yml: decoder-arbitrary-ende-attn-all-subtransformer[1] = 3 is not in space "
            "'hat-wmt14'; choices: [-1, 1, 2]",
        ),
        (
            {"decoder-arbitrary-ende-attn-all-subtransformer": [0, 1]},
            "decoder-arbitrary-ende-attn-all-subtransformer[0] = 0 is not in space",
        ),
        (
            {"decoder-self-attention-heads-all-subtransformer": [8]},
            "x.yml: decoder-self-attention-heads-all-subtransformer: expected one value per "
            "layer (decoder-layer-num-subtransformer = 2), found 1: [8]",
        ),
        (
            {"encoder-embed-dim-subtransformer": "512"},
            "x.yml: encoder-embed-dim-subtransformer: expected an integer, found '512'",
        ),
        (
            {"encoder-self-attention-heads-all-subtransformer": 8},
            "encoder-self-attention-heads-all-subtransformer: expected a list of integers",
        ),
        (
            {"encoder-heads-all-subtransformer": [8] * 6},
            "x.yml: unknown HAT key(s): encoder-heads-all-subtransformer",
        ),
    ],
)
def test_bad_values_name_the_yaml_key(change, message):
    config = {**yaml.safe_load(WMT_TITANXP_91), **change}
    with pytest.raises(ArchError) as info:
        arch_from_hat(config, load_space("hat-wmt14"), "x.yml")
    assert message in str(info.value)


def test_a_misspelt_key_is_named_as_missing_with_a_hint():
    config = yaml.safe_load(WMT_TITANXP_91)
    config["encoder-embed-dim-subtransfomer"] = config.pop("encoder-embed-dim-subtransformer")
    with pytest.raises(ArchError) as info:
        arch_from_hat(config, load_space("hat-wmt14"), "x.yml")
    assert str(info.value) == (
        "x.yml: missing HAT key(s): encoder-embed-dim-subtransformer "
        "(the file has encoder-embed-dim-subtransfomer: misspelt?)"
    )


def test_a_bert_space_is_refused():
    with pytest.raises(Exception, match="translation spaces; 'bert-cpu' is a bert space"):
        arch_from_hat(yaml.safe_load(WMT_TITANXP_91), load_space("bert-cpu"), "x.yml")


# ----------------------------------------------------------------- through the CLI
def test_cli_writes_the_arch_file(tmp_path):
    config = _write(tmp_path, IWSLT_TITANXP_168, "HAT_iwslt14deen_titanxp@168.8ms_bleu@34.8.yml")
    out = tmp_path / "arch.json"
    result = CliRunner().invoke(
        main, ["space", "import-hat", str(config), "--space", "hat-iwslt14", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out}: an architecture of space 'hat-iwslt14'\n"
    space = load_space("hat-iwslt14")
    assert space.arch_from_dict(read_arch_file(out)[0]) == EXPECTED["iwslt-titanxp-168"][2]


def test_cli_prints_the_arch_without_out(tmp_path):
    config = _write(tmp_path, WMT_XEON_450)
    result = CliRunner().invoke(main, ["space", "import-hat", str(config), "--space", "hat-wmt14"])
    assert result.exit_code == 0, result.output
    arch = load_space("hat-wmt14").arch_from_dict(json.loads(result.output))
    assert arch == EXPECTED["wmt-xeon-450"][2]


def test_cli_out_of_space_is_one_line_and_writes_nothing(tmp_path):
    config = _write(tmp_path, WMT_TITANXP_91)  # FFN 3072: not in HAT's IWSLT space
    out = tmp_path / "arch.json"
    out.write_text('{"kept": true}')
    before = tree_digests(tmp_path)
    result = CliRunner().invoke(
        main, ["space", "import-hat", str(config), "--space", "hat-iwslt14", "--out", str(out)]
    )
    assert_one_line_error(
        result,
        "encoder-ffn-embed-dim-all-subtransformer",
        "[0] = 3072 is not in space 'hat-iwslt14'",
        "choices: [512, 1024, 2048]",
        str(config),
    )
    assert tree_digests(tmp_path) == before


def test_cli_missing_key_is_one_line(tmp_path):
    text = "\n".join(
        line for line in WMT_TITANXP_91.splitlines() if not line.startswith("decoder-embed")
    )
    config = _write(tmp_path, text)
    result = CliRunner().invoke(main, ["space", "import-hat", str(config), "--space", "hat-wmt14"])
    assert_one_line_error(result, "missing HAT key(s): decoder-embed-dim-subtransformer")


@pytest.mark.parametrize(
    "data, fragments",
    [
        (b"encoder-embed-dim-subtransformer: [512,\n  x", ("config.yml:2: not YAML",)),
        (b"encoder-embed-dim-subtransformer: 512\n\xff\n", ("config.yml:2: not UTF-8",)),
        (b"", ("config.yml: expected a HAT SubTransformer config", "empty file")),
        (b"- 512\n", ("config.yml: expected a HAT SubTransformer config", "found list")),
    ],
)
def test_cli_unreadable_files_are_one_line(tmp_path, data, fragments):
    config = tmp_path / "config.yml"
    config.write_bytes(data)
    result = CliRunner().invoke(main, ["space", "import-hat", str(config), "--space", "hat-wmt14"])
    assert_one_line_error(result, *fragments)


def test_space_show_keeps_its_form():
    runner = CliRunner()
    result = runner.invoke(main, ["space", "cpu-small"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("cpu-small (translation): ")
    assert "  encoder_ffn_dims       [256, 512, 1024]" in lines
    assert re.fullmatch(r"  largest {16}\d+\.\d\d M parameters at vocab 8000", lines[-4])
    assert re.fullmatch(r"  smallest {15}\d+\.\d\d M parameters at vocab 8000", lines[-3])
    memory = r"  {mode} supernet +\d+\.\d\d M parameters; training needs [\d.]+ MiB: fits in .*"
    assert re.fullmatch(memory.format(mode="shared"), lines[-2])
    assert re.fullmatch(memory.format(mode="neuron"), lines[-1])
    for args in (["space"], ["space", "show", "cpu-small"], ["space", "show"]):
        same = runner.invoke(main, args).output.splitlines()
        assert same[:-2] == lines[:-2], args  # the last two hold the memory available now
    wide = runner.invoke(main, ["space", "cpu-small", "--vocab-size", "32000"])
    assert wide.exit_code == 0 and "at vocab 32000" in wide.output
    default = runner.invoke(main, ["space", "--vocab-size", "32000"]).output.splitlines()
    assert default[:-2] == wide.output.splitlines()[:-2]  # the last two: memory available now


def test_space_shows_hat_iwslt14():
    result = CliRunner().invoke(main, ["space", "hat-iwslt14"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("hat-iwslt14 (translation): HAT's published IWSLT'14")
    assert "  encoder_ffn_dims       [512, 1024, 2048]" in result.output
    assert "  decoder_cross_heads    [2, 4]" in result.output


def test_space_help_shows_both_uses():
    for flag in ("--help", "-h"):
        result = CliRunner().invoke(main, ["space", flag])
        assert result.exit_code == 0, result.output
        for text in ("Example", "mos-search space hat-wmt14", "import-hat", "show"):
            assert text in result.output, text
    result = CliRunner().invoke(main, ["space", "import-hat", "--help"])
    assert result.exit_code == 0 and "--space" in result.output and "--out" in result.output
