"""HAT SubTransformer configs (the YAML files HAT publishes) read as architectures of a space.

HAT (Wang et al., 2020; mit-han-lab/hardware-aware-transformers, `configs/*/subtransformer/`)
describes a SubTransformer with ten `*-subtransformer` keys, one per `Arch` field (`HAT_KEYS`).
Per-layer keys are lists; like HAT, only the first `*-layer-num-subtransformer` entries are read
(HAT's evolutionary search prints one entry per SuperTransformer layer). HAT's
`decoder-arbitrary-ende-attn` counts the encoder layers attended to besides the last one, with -1
for none: -1, 1, 2 are `decoder_ende_layers` 1, 2, 3.

Other keys (HAT's training and SuperTransformer options, which a merged config file may hold)
describe no sub-network and are ignored; an unknown `*-subtransformer` key is an error. Every
value is checked against the space, and an error names the file, the YAML key, the value and the
space's choices in HAT's terms.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mos_search.arch import ArchBase
from mos_search.errors import ArchError
from mos_search.files import read_text
from mos_search.settings import check_keys
from mos_search.space import SearchSpace

# HAT's key -> the `Arch` field it holds, scalars first so layer counts are known for the lists
HAT_KEYS: dict[str, str] = {
    "encoder-embed-dim-subtransformer": "encoder_embed_dim",
    "encoder-layer-num-subtransformer": "encoder_layers",
    "decoder-embed-dim-subtransformer": "decoder_embed_dim",
    "decoder-layer-num-subtransformer": "decoder_layers",
    "encoder-ffn-embed-dim-all-subtransformer": "encoder_ffn_dims",
    "encoder-self-attention-heads-all-subtransformer": "encoder_heads",
    "decoder-ffn-embed-dim-all-subtransformer": "decoder_ffn_dims",
    "decoder-self-attention-heads-all-subtransformer": "decoder_self_heads",
    "decoder-ende-attention-heads-all-subtransformer": "decoder_cross_heads",
    "decoder-arbitrary-ende-attn-all-subtransformer": "decoder_ende_layers",
}
ENDE_KEY = "decoder-arbitrary-ende-attn-all-subtransformer"
# a HAT option that ends like a SubTransformer key but is a training switch
NOT_ARCH_KEYS = ("train-subtransformer",)


def ende_from_hat(value: int) -> int:
    """`decoder_ende_layers` of HAT's arbitrary-ende-attn value (-1 -> 1, k >= 1 -> k + 1);
    0 for a value HAT does not define (0, below -1), which no space holds."""
    return 1 if value == -1 else value + 1 if value >= 1 else 0


def ende_to_hat(layers: int) -> int:
    """HAT's arbitrary-ende-attn value of `decoder_ende_layers` (1 -> -1, n -> n - 1)."""
    return -1 if layers == 1 else layers - 1


def read_hat_config(path: str | Path) -> dict[str, Any]:
    """The mapping in the YAML file `path`; an ArchError naming the file (and line) when it is
    not UTF-8, not YAML or not a mapping."""
    text = read_text(path)  # not UTF-8: `PATH:LINE: not UTF-8 text`
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ArchError(
            f"{where}: not YAML ({problem}); expected a HAT SubTransformer config"
        ) from None
    if not isinstance(data, dict):
        found = "an empty file" if data is None else f"{type(data).__name__} {data!r}"[:60]
        raise ArchError(
            f"{path}: expected a HAT SubTransformer config (a mapping of "
            f"*-subtransformer keys), found {found}"
        )
    return data


def arch_from_hat(config: Mapping[str, Any], space: SearchSpace, source: str) -> ArchBase:
    """The member of `space` that the HAT SubTransformer `config` describes; `source` (the file)
    starts every error message."""
    space.require_task("translation", "a HAT SubTransformer config")
    arch_keys = {
        str(k): v
        for k, v in config.items()
        if str(k).endswith("subtransformer") and k not in NOT_ARCH_KEYS
    }
    check_keys(arch_keys, HAT_KEYS, source, noun="HAT key", error=ArchError)
    missing = [key for key in HAT_KEYS if key not in arch_keys]
    if missing:
        others = [str(k) for k in config if str(k) not in arch_keys]
        near = sorted(
            {m for key in missing for m in difflib.get_close_matches(key, others, 1, 0.85)}
        )
        hint = f" (the file has {', '.join(near)}: misspelt?)" if near else ""
        raise ArchError(f"{source}: missing HAT key(s): {', '.join(missing)}{hint}")
    values: dict[str, Any] = {}
    for key, field in HAT_KEYS.items():
        count_field = space.arch_type.PER_LAYER.get(field)
        if count_field is None:
            values[field] = _checked(
                _integer(arch_keys[key], key, source), key, field, space, source
            )
            continue
        items = _per_layer(arch_keys[key], key, values[count_field], source)
        if key == ENDE_KEY:
            items = [ende_from_hat(_checked_ende(v, i, space, source)) for i, v in enumerate(items)]
        else:
            items = [_checked(v, f"{key}[{i}]", field, space, source) for i, v in enumerate(items)]
        values[field] = items
    return space.validate(space.arch_type(**values))


def import_hat_file(path: str | Path, space: SearchSpace) -> ArchBase:
    """The member of `space` described by the HAT SubTransformer YAML file `path`."""
    return arch_from_hat(read_hat_config(path), space, str(path))


def arch_json_text(arch: ArchBase) -> str:
    """`arch` as JSON text with one field a line (what `score --arch` reads), newline-ended."""
    fields = [f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in arch.to_dict().items()]
    return "{\n" + ",\n".join(fields) + "\n}\n"


def _integer(value: Any, key: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArchError(f"{source}: {key}: expected an integer, found {value!r}")
    return value


def _per_layer(value: Any, key: str, count: int, source: str) -> list[int]:
    """The first `count` entries of a per-layer list (HAT reads no more)."""
    if not isinstance(value, list):
        raise ArchError(f"{source}: {key}: expected a list of integers, found {value!r}")
    if len(value) < count:
        layer_key = key.split("-", 1)[0] + "-layer-num-subtransformer"
        raise ArchError(
            f"{source}: {key}: expected one value per layer ({layer_key} = {count}), "
            f"found {len(value)}: {value}"
        )
    return [_integer(v, f"{key}[{i}]", source) for i, v in enumerate(value[:count])]


def _checked(value: int, where: str, field: str, space: SearchSpace, source: str) -> int:
    """`value` when the space's `field` allows it; else an error naming `where` (the key)."""
    allowed = space.choices[field]
    if value not in allowed:
        raise ArchError(
            f"{source}: {where} = {value} is not in space {space.name!r}; choices: {list(allowed)}"
        )
    return value


def _checked_ende(value: int, layer: int, space: SearchSpace, source: str) -> int:
    allowed = sorted(ende_to_hat(n) for n in space.choices["decoder_ende_layers"])
    if value not in allowed:
        raise ArchError(
            f"{source}: {ENDE_KEY}[{layer}] = {value} is not in space {space.name!r}; "
            f"choices: {allowed} (HAT's -1, 1, 2 attend to the last 1, 2, 3 encoder layers)"
        )
    return value
