"""mos-search: hardware-aware architecture search for Transformers with Mixture-of-Supernets.

Public names are imported lazily, so light entry points (the CLI's help, the ONNX-only
`translate`) do not pay for, or need, torch.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# PyTorch's OpenMP threads spin-wait by default; on a small, shared machine that slowed small ops
# 50-100x whenever the other core was busy. Passive waiting costs nothing measurable here.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from mos_search.constants import VERSION as __version__

_EXPORTS = {
    "Arch": "mos_search.arch",
    "BertArch": "mos_search.arch",
    "BertSupernet": "mos_search.models.supernet",
    "MaskedLM": "mos_search.models.bert",
    "count_bert_parameters": "mos_search.models.bert",
    "SearchSpace": "mos_search.space",
    "load_space": "mos_search.space",
    "preset_names": "mos_search.space",
    "Supernet": "mos_search.models.supernet",
    "SupernetConfig": "mos_search.models.supernet",
    "TranslationTransformer": "mos_search.models.transformer",
    "count_parameters": "mos_search.models.transformer",
}

__all__ = [*sorted(_EXPORTS), "__version__"]

if TYPE_CHECKING:
    from mos_search.arch import Arch as Arch
    from mos_search.arch import BertArch as BertArch
    from mos_search.models.bert import MaskedLM as MaskedLM
    from mos_search.models.bert import count_bert_parameters as count_bert_parameters
    from mos_search.models.supernet import BertSupernet as BertSupernet
    from mos_search.models.supernet import Supernet as Supernet
    from mos_search.models.supernet import SupernetConfig as SupernetConfig
    from mos_search.models.transformer import TranslationTransformer as TranslationTransformer
    from mos_search.models.transformer import count_parameters as count_parameters
    from mos_search.space import SearchSpace as SearchSpace
    from mos_search.space import load_space as load_space
    from mos_search.space import preset_names as preset_names


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'mos_search' has no attribute {name!r}")
