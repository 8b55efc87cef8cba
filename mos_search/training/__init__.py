"""Training: the supernet and standalone training loop, its tasks, and data parallelism.

Owns `TrainConfig` and what a resume may change (`config.py`), the architectures and learning
rate of each step (`schedule.py`), the trainer (`train.py`), the per-task batches and losses
(`tasks.py`) and torchrun DDP helpers (`distributed.py`).

May import: the core modules, `arch`, `space`, `data` and `models`.
"""
