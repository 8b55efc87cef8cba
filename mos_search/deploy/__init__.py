"""Deployment: one sub-network as an ONNX model folder with its card, and its use.

Owns export with test scores and measured latency (`package.py`: the folder put together;
`parity.py`: ONNX Runtime vs PyTorch; `int8.py`: quantization; `card.py`: the card's names,
versions and summary line), the pretrained-supernet folders (`pretrained.py`), the torch-free
ONNX Runtime translator (`translate.py`) and fine-tuning of a chosen sub-network (`finetune.py`).

May import: every unit below it (`models`, `training`, `oracle`, `costs`, `search`, ...),
`latency` and `devices`; not `demo` or the CLI.
"""
