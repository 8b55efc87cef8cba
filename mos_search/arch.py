"""Architecture values: the frozen `Arch` (translation) and `BertArch` (BERT) and their base.

An architecture type names its fields in a fixed order; scalar fields take one integer, per-layer
fields one integer per active layer of the layer-count field they repeat over (`PER_LAYER`).
Values check their own shape; membership of a search space is checked by `SearchSpace.validate`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from mos_search.errors import ArchError, SpaceError
from mos_search.files import read_text
from mos_search.settings import dataclass_from_dict

ARCH_FILE = "an architecture as JSON (an object with each field `mos-search space NAME` lists)"

# Which token-embedding tables of a translation model are one table (the space's
# `share_embeddings`): "all" = encoder input, decoder input and output projection (fairseq's
# share-all-embeddings, as HAT; needs one vocabulary for both languages, which every corpus of
# this project has: one SentencePiece model is trained on both sides, `data/corpus.py`);
# "decoder" = a source table, and a target table tied to the output projection.
SHARE_EMBEDDINGS = ("all", "decoder")
# What a space saved before the setting existed means (its checkpoints hold two tables).
SHARE_EMBEDDINGS_DEFAULT = "decoder"


def _as_int_tuple(value: Any, field_name: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        raise ArchError(f"{field_name}: expected a list of integers, found {value!r}")
    items = tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ArchError(f"{field_name}: expected a list of integers, found {list(items)!r}")
    return items


@dataclass(frozen=True)
class ArchBase:
    """Common behaviour of architecture values: per-layer tuples, dict/JSON round-trips."""

    # Per-layer field -> the layer-count field it repeats over. Filled in by each subclass.
    PER_LAYER: ClassVar[dict[str, str]] = {}
    TASK: ClassVar[str] = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self.PER_LAYER:
                object.__setattr__(self, f.name, _as_int_tuple(value, f.name))
            elif not isinstance(value, int) or isinstance(value, bool):
                raise ArchError(f"{f.name}: expected an integer, found {value!r}")
        for per_layer, count_field in self.PER_LAYER.items():
            count, values = getattr(self, count_field), getattr(self, per_layer)
            if len(values) != count:
                raise ArchError(
                    f"{per_layer}: expected one value per layer ({count_field}={count}), "
                    f"found {len(values)}: {list(values)}"
                )

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the architecture's fields, in feature and gene order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def check_choices(cls, choices: Mapping[str, tuple[int, ...]], settings: Mapping) -> None:
        """Raise SpaceError when a space's choices cannot form valid architectures."""

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with lists for per-layer fields (JSON-ready)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchBase:
        """Build from a dict; missing or unknown keys raise ArchError."""
        return dataclass_from_dict(cls, data, "architecture", noun="field", error=ArchError)

    def to_json(self) -> str:
        """Compact, key-ordered JSON text."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> ArchBase:
        """Parse JSON text written by `to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArchError(f"architecture is not valid JSON: {exc}") from exc
        return cls.from_dict(data)


@dataclass(frozen=True)
class Arch(ArchBase):
    """An encoder-decoder translation architecture (HAT's space, with elastic encoder depth).

    `decoder_ende_layers[j]` is how many of the last encoder layers decoder layer j attends to;
    their outputs are concatenated along the key/value length.
    """

    encoder_embed_dim: int
    encoder_layers: int
    encoder_ffn_dims: tuple[int, ...]
    encoder_heads: tuple[int, ...]
    decoder_embed_dim: int
    decoder_layers: int
    decoder_ffn_dims: tuple[int, ...]
    decoder_self_heads: tuple[int, ...]
    decoder_cross_heads: tuple[int, ...]
    decoder_ende_layers: tuple[int, ...]

    TASK: ClassVar[str] = "translation"
    PER_LAYER: ClassVar[dict[str, str]] = {
        "encoder_ffn_dims": "encoder_layers",
        "encoder_heads": "encoder_layers",
        "decoder_ffn_dims": "decoder_layers",
        "decoder_self_heads": "decoder_layers",
        "decoder_cross_heads": "decoder_layers",
        "decoder_ende_layers": "decoder_layers",
    }

    @classmethod
    def check_choices(cls, choices: Mapping[str, tuple[int, ...]], settings: Mapping) -> None:
        """qkv_dim must be divisible by every head count; ende depth within the encoder depth;
        share_embeddings (optional) one of SHARE_EMBEDDINGS."""
        qkv = settings.get("qkv_dim")
        if not isinstance(qkv, int) or qkv <= 0:
            raise SpaceError(f"qkv_dim: expected a positive integer, found {qkv!r}")
        share = settings.get("share_embeddings", SHARE_EMBEDDINGS_DEFAULT)
        if share not in SHARE_EMBEDDINGS:
            raise SpaceError(
                f"share_embeddings: expected one of {', '.join(map(repr, SHARE_EMBEDDINGS))}, "
                f"found {share!r}"
            )
        for name in ("encoder_heads", "decoder_self_heads", "decoder_cross_heads"):
            bad = [h for h in choices[name] if qkv % h]
            if bad:
                raise SpaceError(f"{name}: {bad} do not divide qkv_dim={qkv}")
        if max(choices["decoder_ende_layers"]) > min(choices["encoder_layers"]):
            raise SpaceError(
                f"decoder_ende_layers: {max(choices['decoder_ende_layers'])} exceeds the smallest "
                f"encoder depth {min(choices['encoder_layers'])}"
            )


@dataclass(frozen=True)
class BertArch(ArchBase):
    """A bottleneck BERT encoder: a residual stream of `embed_dim`; layer i works at width
    `hidden_dims[i]` (projected down from and back up to the stream), with `heads[i]` heads and an
    FFN of `ffn_dims[i]`. Attention's q/k/v width is the layer's hidden width.
    """

    embed_dim: int
    layers: int
    hidden_dims: tuple[int, ...]
    heads: tuple[int, ...]
    ffn_dims: tuple[int, ...]

    TASK: ClassVar[str] = "bert"
    PER_LAYER: ClassVar[dict[str, str]] = {
        "hidden_dims": "layers",
        "heads": "layers",
        "ffn_dims": "layers",
    }

    @classmethod
    def check_choices(cls, choices: Mapping[str, tuple[int, ...]], settings: Mapping) -> None:
        """Every head count must divide every hidden width (layers choose them independently)."""
        bad = sorted({(h, d) for h in choices["heads"] for d in choices["hidden_dims"] if d % h})
        if bad:
            pairs = ", ".join(f"{d} by {h}" for h, d in bad)
            raise SpaceError(f"heads: every head count must divide every hidden width ({pairs})")


ARCH_TYPES: dict[str, type[ArchBase]] = {"translation": Arch, "bert": BertArch}


def read_arch_file(path: str | Path, many: bool = False) -> list[dict[str, Any]]:
    """The architectures of the JSON file `path`: one object, or with `many` also a non-empty
    list of them. An error names the file and what was expected when it cannot be read, is
    empty, is not UTF-8 or JSON, or holds something else; the fields are checked later, by the
    space."""
    expected = ARCH_FILE + (", or a list of them" if many else "")
    text = read_text(path)
    if not text.strip():
        raise ArchError(f"{path} is empty: expected {expected}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ArchError(
            f"{path}:{exc.lineno}: not JSON ({exc.msg}: column {exc.colno}); expected {expected}"
        ) from None
    items = data if many and isinstance(data, list) else [data]
    if not items or not all(isinstance(item, dict) for item in items):
        raise ArchError(f"{path}: expected {expected}, found {json.dumps(data)[:60]}")
    return items
