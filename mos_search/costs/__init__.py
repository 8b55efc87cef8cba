"""Costs of a sub-network on a device: measured latency, latency predictors, memory.

Owns profiling a space on a device (`profiling.py`: extract, export, measure with `latency`),
training and evaluating per-device predictors (`predictors.py`), checking that a predictor or
dataset is of a space by content (`identity.py`) and the memory figures of a BERT encoder
(`memory.py`). The measuring itself lives in the lower packages `latency` and `devices`.

May import: the core modules, `arch`, `space`, `data`, `models`, and the packages `latency` and
`devices`.
"""
