"""mos-search: hardware-aware architecture search for Transformers with Mixture-of-Supernets."""

from mos_search.space import Arch, SearchSpace, load_space, preset_names
from mos_search.supernet import Supernet, SupernetConfig
from mos_search.transformer import TranslationTransformer, count_parameters

__version__ = "0.1.0"

__all__ = [
    "Arch",
    "SearchSpace",
    "Supernet",
    "SupernetConfig",
    "TranslationTransformer",
    "__version__",
    "count_parameters",
    "load_space",
    "preset_names",
]
