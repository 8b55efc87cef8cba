"""Supernets: elastic models whose sub-networks get sliced or router-generated weights."""

from mos_search.constants import MODES
from mos_search.models.supernet.base import ElasticModel, SupernetConfig
from mos_search.models.supernet.bert import BertSupernet
from mos_search.models.supernet.translation import Supernet


def build_supernet(config: SupernetConfig) -> ElasticModel:
    """The supernet for the task of `config.space` (translation or bert)."""
    return BertSupernet(config) if config.space.task == "bert" else Supernet(config)


__all__ = ["MODES", "BertSupernet", "ElasticModel", "Supernet", "SupernetConfig", "build_supernet"]
