"""Measured data shipped with mos-search: per-device latency datasets and their predictors.

`onnxruntime-cpu/latency.jsonl` holds 500 `cpu-small` architectures measured with the
`onnxruntime-cpu` profile on the project's 2-core machine, `predictor.json` the MLP trained on
it. Found with `importlib.resources` (`mos_search.costs.predictors.shipped_path`), never through
the current folder. Data only: no code here.
"""
