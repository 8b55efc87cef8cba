"""The scoring oracle: validation loss, sacreBLEU and masked-LM perplexity of any sub-network.

Owns the cached `Oracle` (`scoring.py`), its score cache (`cache.py`), its worker pool (`pool.py`)
and decoding: batched beam and greedy search (`beam.py`) over PyTorch steppers (`decode.py`).

May import: the core modules, `arch`, `space`, `data` and `models`.
"""
