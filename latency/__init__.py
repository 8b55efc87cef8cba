"""Latency measurement: workloads, the measuring protocol, datasets and per-device predictors.

May import: `devices` only (never `mos_search`), numpy, scikit-learn; torch never at module level.
"""
