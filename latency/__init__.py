"""Latency measurement: workloads, the measuring protocol, datasets and per-device predictors."""
