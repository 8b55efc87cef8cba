"""Models: the standalone Transformers, the supernets that generate their weights, checkpoints.

Owns the translation Transformer and the BERT encoder (`transformer.py`, `bert.py`), the elastic
layers, routers and supernets (`supernet/`), building and loading a model from a checkpoint
(`build.py`, `checkpoint.py`), the losses (`losses.py`, `mlm.py`) and ONNX export of one
sub-network (`onnx.py`).

May import: the core modules (`constants`, `errors`, `files`, `settings`), `arch`, `space`
and `data`.
"""
