"""Supernets: elastic models whose sub-networks get sliced or router-generated weights."""

from mos_search.supernet.translation import MODES, Supernet, SupernetConfig

__all__ = ["MODES", "Supernet", "SupernetConfig"]
